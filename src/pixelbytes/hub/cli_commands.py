"""``pixelbytes convert`` / ``export-remote-code`` / ``card``: the Hub sub-commands of the console script.

:func:`add_hub_commands` registers them on an ``argparse`` sub-parser collection; each parser gets
``func=<command>``, a function taking the parsed :class:`argparse.Namespace` and returning an exit code,
so the commands can also be called directly (tests). Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..cli import FlagParser

logger = logging.getLogger(__name__)

__all__ = ["HUB_COMMANDS", "add_hub_commands", "cmd_card", "cmd_convert", "cmd_export_remote_code"]

_USER_ERRORS = (ValueError, NotImplementedError, FileNotFoundError, OSError)


def _error(message: Any) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _data_slicing(value: str) -> int | dict[str, int]:
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or IMAGE,AUDIO strides, got {value!r}") from None
    if len(numbers) == 1:
        return numbers[0]
    if len(numbers) == 2:
        return {"image": numbers[0], "audio": numbers[1]}
    raise argparse.ArgumentTypeError(f"expected N or IMAGE,AUDIO strides, got {value!r}")


def _sample(value: str) -> tuple[str, str]:
    prompt, sep, path = value.rpartition("=")
    if not sep or not prompt or not path:
        raise argparse.ArgumentTypeError(f"expected PROMPT=PATH, got {value!r}")
    return prompt, path


def add_hub_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convert``, ``export-remote-code`` and ``card`` on ``subparsers``."""
    convert = subparsers.add_parser(
        "convert",
        help="convert an original PixelBytes checkpoint into the pixelbytes format",
        description="Convert an original PixelBytes checkpoint (directory or Hub repo id, + --subfolder) into a "
        "pixelbytes model + tokenizer directory, optionally pushed to the Hub.",
    )
    convert.add_argument("source", help="directory or Hub repo id, e.g. ffurfaro/aPixelBytes-Pokemon")
    convert.add_argument("output", help="output directory")
    convert.add_argument("--subfolder", help="checkpoint subfolder, e.g. lstm_autoregressive_last")
    convert.add_argument("--config-name", default="config.json", help="config file to read (default config.json)")
    convert.add_argument("--revision", help="Hub revision")
    convert.add_argument("--local-files-only", action="store_true", help="only use the local Hub cache")
    convert.add_argument(
        "--vocabulary",
        choices=("default", "control", "v1"),
        help="token table the model was trained with: the published 151 ids (default for aPxBy checkpoints), the "
        "control experiments' 151 ids, or the 113 ids of the v1 models (default for v1 checkpoints)",
    )
    convert.add_argument(
        "--audio-normalization",
        choices=("minmax", "zscore", "none"),
        help="tokenizer audio normalisation (default: zscore for the older key set, else minmax)",
    )
    convert.add_argument("--data-slicing", type=_data_slicing, help="tokenizer strides: N or IMAGE,AUDIO")
    convert.add_argument("--remote-code", action="store_true", help="also write the modelling code (auto_map)")
    convert.add_argument("--no-card", action="store_true", help="do not write README.md")
    convert.add_argument("--push-to-hub", metavar="REPO", help="upload the result to this Hub repo")
    convert.add_argument("--private", action="store_true", help="create the Hub repo as private")
    convert.set_defaults(func=cmd_convert)

    export = subparsers.add_parser(
        "export-remote-code",
        help="write a model directory with its modelling code (trust_remote_code loading)",
        description="Copy a pixelbytes model directory to OUTPUT with the flat modelling modules and auto_map "
        "entries, so AutoModel/AutoTokenizer.from_pretrained(..., trust_remote_code=True) work without pixelbytes.",
    )
    export.add_argument("model_dir", help="a pixelbytes model directory (save_pretrained output)")
    export.add_argument("output", nargs="?", help="output directory (default: MODEL_DIR, in place)")
    export.add_argument("--code-repo", help="point auto_map at this Hub repo's code instead of copying it")
    export.set_defaults(func=cmd_export_remote_code)

    card = subparsers.add_parser(
        "card",
        help="render the model card (README.md) of a model directory",
        description="Render the packaged model_card_template.md for a trained checkpoint into MODEL_DIR/README.md.",
    )
    card.add_argument("model_dir", help="a pixelbytes model directory")
    card.add_argument("--repo-id", help="Hub id used in the usage snippet (default: the directory path)")
    card.add_argument("--model-name", help="title (default: repo or directory name)")
    card.add_argument("--dataset", action="append", default=[], help="training dataset id (repeatable)")
    card.add_argument("--metrics", help="JSON file of real evaluation numbers (default: MODEL_DIR/eval_results.json)")
    card.add_argument(
        "--sample",
        type=_sample,
        action="append",
        default=[],
        help="PROMPT=PATH of a generated GIF/PNG/WAV for the gallery (repeatable)",
    )
    card.add_argument("--trainer-state", help="trainer_state.json (default: MODEL_DIR/trainer_state.json)")
    card.add_argument("--converted-from", help="original checkpoint the model was converted from")
    card.add_argument("--license", default="mit")
    card.set_defaults(func=cmd_card)


def _load_pixelbytes(model_dir: Path) -> tuple[Any, Any]:
    import pixelbytes

    model = pixelbytes.PxBySequenceModel.from_pretrained(model_dir).eval()
    tokenizer = pixelbytes.ActionPixelBytesTokenizer.from_pretrained(model_dir)
    return model, tokenizer


def cmd_convert(args: argparse.Namespace) -> int:
    """``pixelbytes convert SOURCE OUTPUT``: original checkpoint → pixelbytes model + tokenizer (+ card, push)."""
    from ..conversion import convert_original
    from .cards import render_model_card
    from .push import push_model
    from .remote_code import export_remote_code

    tokenizer_kwargs: dict[str, Any] = {}
    if args.audio_normalization:
        tokenizer_kwargs["audio_normalization"] = args.audio_normalization
    if args.data_slicing is not None:
        tokenizer_kwargs["data_slicing"] = args.data_slicing
    try:
        model, tokenizer = convert_original(
            args.source,
            args.subfolder,
            config_name=args.config_name,
            revision=args.revision,
            local_files_only=args.local_files_only,
            vocabulary=args.vocabulary,
            tokenizer_kwargs=tokenizer_kwargs,
        )
    except _USER_ERRORS as err:
        return _error(err)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.remote_code:
        export_remote_code(model, tokenizer, output)
    else:
        model.save_pretrained(output)
        tokenizer.save_pretrained(output)
    source = args.source + (f" (subfolder {args.subfolder})" if args.subfolder else "")
    card = None
    if not args.no_card:
        card = render_model_card(model, tokenizer, output, repo_id=args.push_to_hub, converted_from=source)
    print(
        f"converted {source} -> {output} (objective={model.config.objective}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters)"
    )
    if args.push_to_hub:
        info = push_model(
            model,
            tokenizer,
            args.push_to_hub,
            card=card if card is not None else False,
            private=args.private or None,
            remote_code=args.remote_code,
        )
        print(f"pushed to {args.push_to_hub}: {getattr(info, 'commit_url', info)}")
    return 0


def cmd_export_remote_code(args: argparse.Namespace) -> int:
    """``pixelbytes export-remote-code MODEL_DIR [OUTPUT]``: add the modelling code + auto_map."""
    from .remote_code import add_remote_code, export_remote_code

    source = Path(args.model_dir)
    output = Path(args.output) if args.output else source
    try:
        if output.resolve() == source.resolve():
            written = add_remote_code(source, code_repo=args.code_repo)
        else:
            model, tokenizer = _load_pixelbytes(source)
            export_remote_code(model, tokenizer, output, code_repo=args.code_repo)
            for item in source.iterdir():  # README.md, samples/, trainer_state.json, …
                if not (output / item.name).exists():
                    if item.is_dir():
                        shutil.copytree(item, output / item.name)
                    else:
                        shutil.copyfile(item, output / item.name)
            written = sorted(output.iterdir())
    except _USER_ERRORS as err:
        return _error(err)
    print(f"remote code written to {output} ({len(written)} files)")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    """``pixelbytes card MODEL_DIR``: render MODEL_DIR/README.md."""
    from .cards import render_model_card

    model_dir = Path(args.model_dir)
    metrics = None
    metrics_path = Path(args.metrics) if args.metrics else model_dir / "eval_results.json"
    try:
        if args.metrics or metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        model, tokenizer = _load_pixelbytes(model_dir)
        render_model_card(
            model,
            tokenizer,
            model_dir,
            metrics=metrics,
            samples=args.sample or None,
            trainer_state=args.trainer_state,
            repo_id=args.repo_id,
            model_name=args.model_name,
            datasets=args.dataset,
            license=args.license,
            converted_from=args.converted_from,
        )
    except _USER_ERRORS as err:
        return _error(err)
    print(f"model card written to {model_dir / 'README.md'}")
    return 0


def _runner(name: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        parser = FlagParser(prog="pixelbytes")
        add_hub_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args([name, *argv])
        return args.func(args)

    run.__name__ = run.__qualname__ = f"run_{name.replace('-', '_')}"
    run.__doc__ = f"``pixelbytes {name} ...``: parse ``argv`` (the arguments after the command name) and run it."
    return run


#: ``{command: (run(argv) -> exit code, help)}`` for the ``pixelbytes`` console script's dispatcher.
HUB_COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "convert": (_runner("convert"), "convert an original PixelBytes checkpoint (directory or Hub id) to this format"),
    "export-remote-code": (_runner("export-remote-code"), "add the modelling code + auto_map (trust_remote_code)"),
    "card": (_runner("card"), "render the model card (README.md) of a model directory"),
}

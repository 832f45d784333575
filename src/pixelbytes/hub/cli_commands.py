"""``pixelbytes convert`` / ``export-remote-code`` / ``card`` / ``publish``: the Hub sub-commands of the console script.

:func:`add_hub_commands` registers them on an ``argparse`` sub-parser collection; each parser gets
``func=<command>``, a function taking the parsed :class:`argparse.Namespace` and returning an exit code,
so the commands can also be called directly (tests). Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..cli import FlagParser, data_slicing

logger = logging.getLogger(__name__)

__all__ = ["HUB_COMMANDS", "add_hub_commands", "cmd_card", "cmd_convert", "cmd_export_remote_code", "cmd_publish"]

_USER_ERRORS = (ValueError, NotImplementedError, FileNotFoundError, OSError)


def _error(message: Any) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _sample(value: str) -> tuple[str, str]:
    prompt, sep, path = value.rpartition("=")
    if not sep or not prompt or not path:
        raise argparse.ArgumentTypeError(f"expected PROMPT=PATH, got {value!r}")
    return prompt, path


def add_hub_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convert``, ``export-remote-code``, ``card`` and ``publish`` on ``subparsers``."""
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
    convert.add_argument("--data-slicing", type=data_slicing, help="tokenizer strides: N or IMAGE,AUDIO")
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
    card.add_argument(
        "--metrics",
        help="eval_results.json of real held-out numbers (default: MODEL_DIR/eval_results.json if present)",
    )
    card.add_argument(
        "--sample",
        type=_sample,
        action="append",
        default=[],
        help="PROMPT=PATH of a generated GIF/PNG/WAV for the gallery (repeatable)",
    )
    card.add_argument("--trainer-state", help="trainer_state.json (default: MODEL_DIR/trainer_state.json)")
    card.add_argument(
        "--training-summary", help="training_summary.json (default: MODEL_DIR/training_summary.json if present)"
    )
    card.add_argument("--converted-from", help="original checkpoint the model was converted from")
    card.add_argument("--license", default="mit")
    card.set_defaults(func=cmd_card)
    _add_publish(subparsers)


def _add_publish(subparsers: argparse._SubParsersAction) -> None:
    publish = subparsers.add_parser(
        "publish",
        help="build (and push) a Hub release folder: our format at the root, remote code, card, gallery",
        description="Build OUTPUT from MODEL_DIR (a pixelbytes model directory, or an original PixelBytes checkpoint, "
        "converted): config.json (model_type pixelbytes), model.safetensors, tokenizer files, remote code, "
        "eval_results.json / trainer_state.json / figures when present, a gallery and the README.md card; "
        "--push uploads it (HfApi create_repo + upload_folder).",
    )
    publish.add_argument("model_dir", help="a pixelbytes model directory or an original checkpoint directory")
    publish.add_argument("output", help="release folder to build (must be empty or absent; see --overwrite)")
    publish.add_argument("--repo-id", help="Hub id owner/name (usage snippet; the upload target with --push)")
    publish.add_argument("--card-source", help="card source: hub_cards/<name>.md or a directory with card.md")
    publish.add_argument("--subfolder", help="checkpoint subfolder of an original repo layout")
    publish.add_argument(
        "--vocabulary", choices=("default", "control", "v1"), help="token table of an original checkpoint"
    )
    publish.add_argument("--data-slicing", type=data_slicing, help="original checkpoint: tokenizer strides N or I,A")
    publish.add_argument(
        "--prompt", action="append", default=None, help="gallery caption (repeatable; default: a few captions)"
    )
    publish.add_argument("--no-gallery", action="store_true", help="do not generate the gallery")
    publish.add_argument("--sprite-size", type=int, help="gallery sprite height = width in pixels (default 16)")
    publish.add_argument("--upscale", type=int, default=4, help="gallery PNG nearest-neighbour factor (default 4)")
    publish.add_argument("--sound-steps", type=int, help="gallery sound time steps (default: half a second)")
    publish.add_argument("--model-name", help="card title (default: repo or directory name)")
    publish.add_argument("--dataset", action="append", default=[], help="training dataset id (repeatable)")
    publish.add_argument("--license", help="licence (default: the card source's, else mit)")
    publish.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT")
    publish.add_argument("--push", action="store_true", help="upload OUTPUT to --repo-id")
    publish.add_argument("--dry-run", action="store_true", help="with --push: show the upload calls, upload nothing")
    publish.add_argument("--private", action="store_true", help="create the Hub repo as private")
    publish.add_argument("--commit-message", default="Upload PixelBytes model")
    publish.set_defaults(func=cmd_publish)


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
    try:
        model, tokenizer = _load_pixelbytes(model_dir)
        render_model_card(
            model,
            tokenizer,
            model_dir,
            eval_results=args.metrics,  # None: MODEL_DIR/eval_results.json when present
            samples=args.sample or None,
            trainer_state=args.trainer_state,
            training_summary=args.training_summary,
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


def cmd_publish(args: argparse.Namespace) -> int:
    """``pixelbytes publish MODEL_DIR OUTPUT``: build the release folder, and upload it with ``--push``."""
    from .publish import publish_release

    tokenizer_kwargs = {"data_slicing": args.data_slicing} if args.data_slicing is not None else None
    try:
        result = publish_release(
            args.model_dir,
            args.output,
            repo_id=args.repo_id,
            subfolder=args.subfolder,
            card_source=args.card_source,
            prompts=args.prompt,
            gallery=not args.no_gallery,
            sprite_size=args.sprite_size,
            upscale=args.upscale,
            sound_steps=args.sound_steps,
            model_name=args.model_name,
            datasets=args.dataset,
            license=args.license,
            vocabulary=args.vocabulary,
            tokenizer_kwargs=tokenizer_kwargs,
            overwrite=args.overwrite,
            push=args.push,
            dry_run=args.dry_run,
            private=args.private or None,
            commit_message=args.commit_message,
        )
    except (*_USER_ERRORS, FileExistsError) as err:
        return _error(err)
    print(f"release folder {result.folder}: {len(result.files)} files ({result.source_format} source)")
    for call in result.calls:
        print(f"{'would call' if args.dry_run else 'called'}: {call}")
    if result.commit is not None:
        print(f"pushed to {result.repo_id}: {getattr(result.commit, 'commit_url', result.commit)}")
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
    "publish": (_runner("publish"), "build (and push) a Hub release folder: model, remote code, card, gallery"),
}

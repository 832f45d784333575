"""The ``pixelbytes`` command line: ``demo`` (the main job), ``train``, ``generate`` and the Hub tools.

pixelbytes demo --output-dir demo_output          # train a small model on the embedded demo data
pixelbytes train --dataset DIR --output_dir out   # every TrainingArguments flag; --config file.yaml
pixelbytes generate --model out --prompt "a small red heart blinking on black" --image-size 16 16 --frames 2
pixelbytes evaluate --model out --data DIR        # held-out bits per unit vs codecs, protocols, figures

Every long option takes both spellings (``--image-size`` / ``--image_size``). ``pixelbytes --help`` and
``--version`` import neither torch nor transformers (the package loads lazily in this process, see
:mod:`pixelbytes`). User errors (a missing model, impossible window arguments) are one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["FlagParser", "check_model_path", "config_arguments", "data_slicing", "main"]

logger = logging.getLogger("pixelbytes")


class FlagParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that registers every ``--long-option`` under both spellings, ``--long-option``
    and ``--long_option`` (the style of the ``train`` command's ``HfArgumentParser`` flags), so the subcommands
    accept either. Sub-parsers made from it are ``FlagParser`` too."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        names = list(args)
        for name in args:
            if isinstance(name, str) and name.startswith("--") and len(name) > 2:
                body = name[2:]
                for alt in ("--" + body.replace("-", "_"), "--" + body.replace("_", "-")):
                    if alt not in names:
                        names.append(alt)
        return super().add_argument(*names, **kwargs)


def data_slicing(value: str) -> int | dict[str, int]:
    """``N`` (image and audio strides) or ``IMAGE,AUDIO`` → the tokenizer's ``data_slicing``."""
    parts = [p.strip() for p in value.strip("()").split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or IMAGE,AUDIO strides, got {value!r}") from None
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"expected N or IMAGE,AUDIO positive strides, got {value!r}")
    return numbers[0] if len(numbers) == 1 else {"image": numbers[0], "audio": numbers[1]}



_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model_path(value: str) -> str | None:
    """``None`` when ``value`` can name a model (an existing directory with ``config.json``, or a Hub id
    ``owner/name`` that is not a local path), else a one-line reason."""
    if os.path.isdir(value):
        if not os.path.isfile(os.path.join(value, "config.json")):
            return f"{value!r} is a directory without config.json (not a saved model)"
        return None
    if os.path.exists(value):
        return f"{value!r} is a file, not a model directory"
    if _HUB_ID.match(value) and not value.startswith((".", "/", "~")):
        return None
    return f"model path {value!r} does not exist"


def config_arguments(path: str) -> list[str]:
    """The options of a ``--config`` YAML / JSON file (a flat mapping of ``train`` options) as command-line flags,
    so that flags given after it override the file: ``pixelbytes train --config recipe.yaml --output_dir x``."""
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        options = yaml.safe_load(text)
    else:
        options = json.loads(text)
    if not isinstance(options, dict):
        raise ValueError(f"{path} must hold a mapping of option: value, got {type(options).__name__}")
    flags: list[str] = []
    for key, value in options.items():
        if value is None:  # the option's default
            continue
        values = value if isinstance(value, list) else [value]
        flags += [f"--{key}", *(str(v) for v in values)]
    return flags


def _train(argv: Sequence[str]) -> int:
    from transformers import HfArgumentParser, TrainingArguments

    from .training import DataArguments, ModelArguments, run_training
    from .training.trainer import check_data_arguments

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), prog="pixelbytes train")
    argv = list(argv)
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            parser.error("--config needs a YAML or JSON file")
        try:
            argv = config_arguments(argv[at + 1]) + argv[:at] + argv[at + 2 :]  # later flags override the file
        except (OSError, ValueError) as err:
            parser.error(f"--config: {err}")
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    try:
        check_data_arguments(data_args)
    except ValueError as err:
        parser.error(str(err))
    if model_args.model_name_or_path and (problem := check_model_path(model_args.model_name_or_path)):
        parser.error(f"--model_name_or_path: {problem}")
    if data_args.dataset != "demo" and not os.path.exists(data_args.dataset) and not _HUB_ID.match(data_args.dataset):
        parser.error(f"--dataset: {data_args.dataset!r} does not exist")
    metrics = run_training(model_args, data_args, training_args)
    print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, indent=1))
    return 0


def _generate_parser() -> argparse.ArgumentParser:
    parser = FlagParser(
        prog="pixelbytes generate",
        description="Continue a prompt (text and/or an image / audio file) with a trained model and write "
        "the result as text, GIF/PNG and WAV.",
    )
    parser.add_argument("--model", required=True, help="model directory or Hub id (with its tokenizer)")
    parser.add_argument("--prompt", default=None, help="prompt text")
    parser.add_argument("--image", default=None, help="prompt image file (GIF / PNG / ...)")
    parser.add_argument("--audio", default=None, help="prompt audio file (WAV)")
    parser.add_argument(
        "--image-size",
        nargs=2,
        type=_positive_int,
        metavar=("HEIGHT", "WIDTH"),
        default=None,
        help="force a sprite of this size after the prompt",
    )
    parser.add_argument("--frames", type=_positive_int, default=1, help="frames of the forced sprite")
    parser.add_argument("--audio-steps", type=_positive_int, default=None, help="force this many audio time steps")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=256, help="free generation length")
    parser.add_argument(
        "--stop-at",
        choices=("image", "audio", "text"),
        default=None,
        help="free generation: stop at the end of the first generated block of this kind (a caption at its "
        "separator, a clip at its terminator frame, a sprite when the next block starts)",
    )
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--upscale", type=_positive_int, default=1, metavar="N", help="save sprites N times larger (nearest neighbour)"
    )
    parser.add_argument("--output-dir", default="generated", help="where to write the outputs")
    return parser


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _generate(argv: Sequence[str]) -> int:
    parser = _generate_parser()
    args = parser.parse_args(argv)
    if args.prompt is None and args.image is None and args.audio is None:
        parser.error("give at least one of --prompt, --image, --audio")
    if problem := check_model_path(args.model):
        parser.error(f"--model: {problem}")
    for flag, path in (("--image", args.image), ("--audio", args.audio)):
        if path is not None and not os.path.isfile(path):
            parser.error(f"{flag}: file {path!r} does not exist")
    if args.stop_at and (args.image_size or args.audio_steps):
        parser.error("--stop-at applies to free generation (without --image-size / --audio-steps)")

    import numpy as np
    import torch
    from transformers import StoppingCriteriaList

    from .codecs import save_image
    from .data.loading import decode_audio
    from .generation_pixelbytes import AudioLogitsProcessor, BlockEndStoppingCriteria, ImageGridLogitsProcessor
    from .modeling_pixelbytes import PxBySequenceModel
    from .tokenization_pixelbytes import ActionPixelBytesTokenizer

    torch.manual_seed(args.seed)
    try:
        tokenizer = ActionPixelBytesTokenizer.from_pretrained(args.model)
        model = PxBySequenceModel.from_pretrained(args.model).eval()
    except OSError as err:  # a Hub id that is not in the cache / not reachable
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        parser.error(f"--model: cannot load {args.model!r}: {first_line}")
    model.config.check_tokenizer(tokenizer)
    audio, rate = (None, None)
    if args.audio:
        audio, rate = decode_audio(args.audio)
    enc = tokenizer(text=args.prompt, images=args.image, audio=audio, sampling_rate=rate, return_tensors="pt")
    ids = enc["input_ids"]
    sampling = {"do_sample": args.do_sample}
    if args.do_sample:
        sampling.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    stages: list[tuple[Any, int]] = []
    if args.image_size:
        height, width = args.image_size
        processor = ImageGridLogitsProcessor(tokenizer.token_classes, height, width, args.frames)
        stages.append((processor, processor.length))
    if args.audio_steps:
        processor = AudioLogitsProcessor(tokenizer.token_classes, args.audio_steps, tokenizer.audio_channels)
        stages.append((processor, processor.length))
    if not stages:
        stages.append((None, args.max_new_tokens))
    stop = None
    if args.stop_at:
        stop = BlockEndStoppingCriteria(tokenizer.token_classes, tokenizer.audio_channels, kinds=args.stop_at)
    with torch.no_grad():
        for processor, length in stages:
            processors = [processor] if processor is not None else []
            ids = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=length,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([stop] if stop is not None else []),
                **sampling,
            )
    if stop is not None and stop.end_positions[0] is not None:
        ids = ids[:, : stop.end_positions[0]]  # a sprite ends when the next block starts: drop that token
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    decoded = tokenizer.decode_multimodal(ids[0])
    written = []
    (out_dir / "text.txt").write_text(decoded.text + "\n", encoding="utf-8")
    written.append("text.txt")
    if decoded.images:
        name = "image.gif" if len(decoded.frames) > 1 else "image.png"
        frames = decoded.frames
        if args.upscale > 1:
            frames = [f.resize((f.width * args.upscale, f.height * args.upscale), resample=0) for f in frames]
        save_image(out_dir / name, frames)
        written.append(name)
    if decoded.audio is not None and decoded.audio.shape[-1]:
        decoded.save_audio(out_dir / "audio.wav")
        written.append("audio.wav")
    np.save(out_dir / "token_ids.npy", ids[0].numpy())
    print(f"text: {decoded.text!r}")
    print(f"wrote {', '.join(written)} and token_ids.npy to {out_dir}")
    return 0


def _demo(argv: Sequence[str]) -> int:
    from .demo import demo_parser, resolve_cell_frames, run_demo

    parser = demo_parser()
    args = parser.parse_args(argv)
    try:
        resolve_cell_frames(args.caption_memory_cell_frames, args.caption_memory_buckets, args.grid_position_size)
    except ValueError as err:
        parser.error(str(err))
    if args.max_steps < 1 or not args.time_budget > 0:
        parser.error(f"--max-steps must be >= 1 and --time-budget > 0, got {args.max_steps} and {args.time_budget}")
    run_demo(**vars(args))
    return 0


def _control(argv: Sequence[str]) -> int:
    from .control.cli import control_main

    return control_main(argv)


def _evaluate(argv: Sequence[str]) -> int:
    from .evaluation.cli import evaluate_main

    return evaluate_main(argv)


def _tokenize(argv: Sequence[str]) -> int:
    from .evaluation.cli import tokenize_main

    return tokenize_main(argv)


def _app(argv: Sequence[str]) -> int:
    from .app.cli import app_main  # gradio is imported only when the app is served

    return app_main(argv)


COMMANDS = {
    "demo": (_demo, "train a small model on the embedded demo dataset and evaluate caption -> sprite"),
    "train": (_train, "train / fine-tune with transformers.Trainer (all TrainingArguments flags)"),
    "generate": (_generate, "generate text / sprites / sound from a prompt with a trained model"),
    "evaluate": (_evaluate, "bits per pixel / sample / character vs xz, GIF, PNG, FLAC; the papers' protocols"),
    "tokenize": (_tokenize, "write a dataset's token ids as a compact parquet file (for machines without it)"),
    "app": (_app, "Gradio app: caption -> streamed sprite + cry, rectangle edits; --export a Space (pixelbytes[app])"),
    "control": (_control, "setpoint following: build-dataset | train-recipe | evaluate (pixelbytes[control])"),
}


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pixelbytes`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    commands = dict(COMMANDS)
    try:
        from .hub.cli_commands import HUB_COMMANDS

        commands.update(HUB_COMMANDS)
    except ImportError:  # the hub tools are optional
        logger.debug("hub commands unavailable", exc_info=True)
    if argv and argv[0] in ("-V", "--version"):
        print(f"pixelbytes {_version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, commands))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in commands.items()]
        print(
            "usage: pixelbytes [--version] COMMAND [options]   (pixelbytes COMMAND --help)\n\ncommands:\n"
            + "\n".join(lines)
        )
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"pixelbytes: unknown command {name!r}; choose from {', '.join(commands)}", file=sys.stderr)
        return 2
    from . import _load

    _load()  # the Auto classes and pipelines (lazy in this process, see pixelbytes/__init__.py)
    return commands[name][0](rest)


if __name__ == "__main__":
    raise SystemExit(main())

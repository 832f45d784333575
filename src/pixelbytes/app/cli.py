"""``pixelbytes app``: serve the Gradio app, or (``--export DIR``) write a Hugging Face Space folder that runs it.

pixelbytes app --model out/model --port 7860     # a saved model + tokenizer
pixelbytes app                                   # the demo model (cached; trained on first use, a few minutes)
pixelbytes app --export space/ [--model DIR]     # app.py + requirements.txt + README.md (Space front matter)
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["app_main", "app_parser", "export_space"]

_APP_PY = '''"""PixelBytes Space: caption -> pixel-art sprite + cry (written by `pixelbytes app --export`)."""

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pixelbytes.app.cli import app_main

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "model")
ARGS = ["--model", MODEL] if os.path.isdir(MODEL) else ["--cache-dir", os.path.join(HERE, "demo_cache")]

if __name__ == "__main__":
    # on a Space, GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT=7860 are set; locally 127.0.0.1:7860
    sys.exit(app_main(ARGS + sys.argv[1:]))
'''

_README = """---
title: PixelBytes
emoji: 👾
colorFrom: indigo
colorTo: pink
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
license: mit
short_description: Caption to pixel-art sprite and sound, one token stream
---

# PixelBytes

Type a caption (e.g. `a big red heart on black`): the sprite is drawn row by row as the model writes it, then
its cry plays. The second tab regenerates a rectangle of the sprite.

{model_line}

Run locally: `pip install -r requirements.txt && python app.py` (http://127.0.0.1:7860).
"""


def app_parser() -> argparse.ArgumentParser:
    """The ``pixelbytes app`` options."""
    from ..cli import FlagParser

    parser = FlagParser(
        prog="pixelbytes app",
        description="Serve the PixelBytes Gradio app (caption -> streamed sprite + cry; rectangle edits), or "
        "write a Hugging Face Space folder with --export.",
    )
    parser.add_argument("--model", default=None, help="saved model directory (with its tokenizer); default: demo")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where the demo model is kept / trained when --model is not given "
        "(default: $PIXELBYTES_CACHE/demo_app or ~/.cache/pixelbytes/demo_app)",
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--host", default=None, help="address (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--upscale", type=int, default=None, help="pixel size of the shown sprites (default: ~256 px)")
    parser.add_argument("--export", default=None, metavar="DIR", help="write a Space folder to DIR and exit")
    parser.add_argument(
        "--requirement",
        default="pixelbytes[app]",
        help="how the Space installs pixelbytes (requirements.txt line; e.g. a git+https URL or a wheel)",
    )
    return parser


def export_space(directory: str, model_dir: str | None = None, requirement: str = "pixelbytes[app]") -> Path:
    """Write ``app.py`` + ``requirements.txt`` + ``README.md`` (Space front matter) to ``directory``; with
    ``model_dir``, copy the saved model there too (``model/``), else the Space trains the demo model on its first
    start. Returns the folder."""
    out = Path(directory)
    if model_dir is not None:
        from .core import ModelLoadError, load_model

        load_model(model_dir)  # a clear error now rather than on the Space
        if out.resolve() == Path(model_dir).resolve():
            raise ModelLoadError("--export must differ from --model")
    out.mkdir(parents=True, exist_ok=True)
    try:
        from importlib.metadata import version

        gradio_version = version("gradio")
    except Exception:  # gradio is not needed to export
        gradio_version = "6.0.0"
    (out / "app.py").write_text(_APP_PY, encoding="utf-8")
    (out / "requirements.txt").write_text(f"torch\n{requirement}\ngradio>={gradio_version}\n", encoding="utf-8")
    if model_dir is not None:
        target = out / "model"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("checkpoint-*", "checkpoints"))
        model_line = "Model: the folder `model/` of this Space."
    else:
        model_line = (
            "Model: the embedded demo model, trained on the Space's first start (a few minutes on 2 CPU cores) and "
            "cached in `demo_cache/`."
        )
    (out / "README.md").write_text(_README.format(gradio_version=gradio_version, model_line=model_line), "utf-8")
    logger.info("wrote a Space folder to %s (app.py, requirements.txt, README.md%s)", out,
                ", model/" if model_dir else "")  # fmt: skip
    return out


def app_main(argv: Sequence[str]) -> int:
    """Run ``pixelbytes app`` with ``argv``; exit code 2 (one line on stderr) for user errors."""
    if not logging.getLogger().handlers:  # app.py of an exported Space calls this directly
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = app_parser()
    args = parser.parse_args(list(argv))
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    if args.upscale is not None and args.upscale < 1:
        parser.error(f"--upscale must be >= 1, got {args.upscale}")
    from .core import ModelLoadError, SpriteStudio, load_model, load_or_train_demo

    if args.export:
        try:
            folder = export_space(args.export, args.model, args.requirement)
        except ModelLoadError as err:
            parser.error(f"--model: {err}")
        print(f"wrote a Space folder to {folder}")
        return 0
    notice = None
    try:
        if args.model:
            model, tokenizer = load_model(args.model)
        else:
            logger.info("no --model: using the demo model (trained on first use; a few minutes)")
            model, tokenizer = load_or_train_demo(args.cache_dir)
            notice = "Model: the embedded demo model (`pixelbytes demo`), cached after its first training."
    except ModelLoadError as err:
        parser.error(f"--model: {err}")
    try:
        from .ui import build_app, launch_app
    except ImportError as err:  # gradio missing
        parser.error(f"the app needs gradio: pip install 'pixelbytes[app]' ({err})")
    studio = SpriteStudio(model, tokenizer, upscale=args.upscale)
    launch_app(build_app(model, tokenizer, studio=studio, notice=notice), port=args.port, server_name=args.host)
    return 0

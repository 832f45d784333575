"""``pixelbytes app``: a Gradio app (caption → streamed sprite GIF + cry, rectangle edits) and a Space exporter.

Not imported by ``import pixelbytes``; needs ``pip install "pixelbytes[app]"`` (gradio). The gradio-free parts
(:mod:`pixelbytes.app.core`: loading, streaming, edits) import without gradio; :func:`build_app` /
:func:`launch_app` import it on first use::

    from pixelbytes.app import build_app, launch_app
    launch_app(build_app(model, tokenizer), port=7860)

``pixelbytes app --model DIR`` serves a saved model; without ``--model`` the demo model is loaded from the cache
(or trained there first, a few minutes); ``pixelbytes app --export DIR`` writes a Space-ready folder.
"""

from __future__ import annotations

from typing import Any

from .core import ModelLoadError, Rectangle, SpriteState, SpriteStudio, load_model, load_or_train_demo

__all__ = [
    "ModelLoadError",
    "Rectangle",
    "SpriteState",
    "SpriteStudio",
    "app_main",
    "build_app",
    "export_space",
    "launch_app",
    "load_model",
    "load_or_train_demo",
]


def __getattr__(name: str) -> Any:
    if name in ("build_app", "launch_app"):
        from . import ui

        return getattr(ui, name)
    if name in ("export_space", "app_main"):
        from . import cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""pixelbytes: unified text + pixel-art + audio/action sequence models on the Hugging Face stack.

``import pixelbytes`` registers ``PxByConfig`` / ``PxBySequenceModel`` / ``ActionPixelBytesTokenizer`` with
``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM`` and ``AutoTokenizer`` and the ``text-to-sprite`` /
``text-to-sound`` pipelines with transformers' pipeline registry (so it imports torch and transformers) but none of
the optional heavy dependencies (datasets, accelerate, scipy, soundfile, gradio).

One exception keeps the command line quick: in the ``pixelbytes`` command's own process (the console script or
``python -m pixelbytes.cli``) the package loads lazily — on first attribute access, or when
:func:`pixelbytes.cli.main` runs a command — so ``pixelbytes --help`` / ``--version`` never import torch.
"""

from __future__ import annotations

import importlib as _importlib
import os as _os
import sys as _sys
from typing import TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0.dev0"

__all__ = [
    "ActionPixelBytesTokenizer",
    "AudioLogitsProcessor",
    "BatchLayoutTracker",
    "BlockEndStoppingCriteria",
    "ImageGridLogitsProcessor",
    "LayoutTracker",
    "MultimodalOutput",
    "PxByCache",
    "PxByConfig",
    "PxByIteratorStreamer",
    "PxByModelOutput",
    "PxBySequenceModel",
    "PxByStreamer",
    "PxByVocabulary",
    "__version__",
    "batch_context_ids",
    "batch_windows",
    "control_vocabulary",
    "decode_stream",
    "default_vocabulary",
    "encode_audio",
    "encode_image",
    "encode_text",
    "generate_audio",
    "generate_image",
    "save_image",
    "save_wav",
    "stream_contexts",
    "v1_vocabulary",
]

_loaded = False


#: public name → the module defining it
_WHERE = {
    **dict.fromkeys(
        ("decode_stream", "encode_audio", "encode_image", "encode_text", "save_image", "save_wav"), "codecs"
    ),
    "PxByConfig": "configuration_pixelbytes",
    **dict.fromkeys(
        (
            "AudioLogitsProcessor",
            "BlockEndStoppingCriteria",
            "ImageGridLogitsProcessor",
            "PxByCache",
            "PxByIteratorStreamer",
            "PxByStreamer",
            "generate_audio",
            "generate_image",
        ),
        "generation_pixelbytes",
    ),
    **dict.fromkeys(
        ("BatchLayoutTracker", "LayoutTracker", "batch_context_ids", "batch_windows", "stream_contexts"), "layout"
    ),
    **dict.fromkeys(("PxByModelOutput", "PxBySequenceModel"), "modeling_pixelbytes"),
    **dict.fromkeys(("ActionPixelBytesTokenizer", "MultimodalOutput"), "tokenization_pixelbytes"),
    **dict.fromkeys(("PxByVocabulary", "control_vocabulary", "default_vocabulary", "v1_vocabulary"), "vocabulary"),
}

if TYPE_CHECKING:  # pragma: no cover  (static tools see the eager imports)
    from .codecs import decode_stream, encode_audio, encode_image, encode_text, save_image, save_wav
    from .configuration_pixelbytes import PxByConfig
    from .generation_pixelbytes import (
        AudioLogitsProcessor,
        BlockEndStoppingCriteria,
        ImageGridLogitsProcessor,
        PxByCache,
        PxByIteratorStreamer,
        PxByStreamer,
        generate_audio,
        generate_image,
    )
    from .layout import BatchLayoutTracker, LayoutTracker, batch_context_ids, batch_windows, stream_contexts
    from .modeling_pixelbytes import PxByModelOutput, PxBySequenceModel
    from .tokenization_pixelbytes import ActionPixelBytesTokenizer, MultimodalOutput
    from .vocabulary import PxByVocabulary, control_vocabulary, default_vocabulary, v1_vocabulary


def _load() -> None:
    """Import the public API into the package namespace and register the Auto classes and the pipelines."""
    global _loaded
    if _loaded:
        return
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    namespace = globals()
    for name, module in _WHERE.items():
        namespace[name] = getattr(_importlib.import_module(f".{module}", __name__), name)
    _importlib.import_module(".pipelines_pixelbytes", __name__)  # registers the pipelines
    config, model = namespace["PxByConfig"], namespace["PxBySequenceModel"]
    AutoConfig.register(config.model_type, config, exist_ok=True)
    AutoModel.register(config, model, exist_ok=True)
    AutoModelForCausalLM.register(config, model, exist_ok=True)
    AutoTokenizer.register(config, tokenizer_class=namespace["ActionPixelBytesTokenizer"], exist_ok=True)
    _loaded = True


def _is_cli_process() -> bool:
    """True in the ``pixelbytes`` command's process: ``python -m pixelbytes.cli`` or the console script."""
    argv = list(getattr(_sys, "orig_argv", ()))
    if "-m" in argv:
        at = argv.index("-m")
        return at + 1 < len(argv) and argv[at + 1] == "pixelbytes.cli"
    script = _os.path.basename(_sys.argv[0]) if _sys.argv and _sys.argv[0] else ""
    return script in ("pixelbytes", "pixelbytes.exe", "pixelbytes-script.py")


def __getattr__(name: str) -> _Any:
    if name in _WHERE:
        _load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if not _is_cli_process():
    _load()

"""Data for PixelBytes: loading and tokenising datasets (:mod:`.loading`), training windows and the collator
(:mod:`.windows`), and the embedded synthetic demo dataset (:mod:`.synthetic`). ``datasets`` is imported
only when a dataset is actually loaded."""

from .loading import decode_audio, load_samples, stream_lengths, tokenize_samples
from .synthetic import (
    DEMO_TOKENIZER_KWARGS,
    SpriteSpec,
    all_specs,
    demo_samples,
    make_demo_split,
)
from .windows import PxByDataCollator, PxByWindowDataset, window_spans

__all__ = [
    "DEMO_TOKENIZER_KWARGS",
    "PxByDataCollator",
    "PxByWindowDataset",
    "SpriteSpec",
    "all_specs",
    "decode_audio",
    "demo_samples",
    "load_samples",
    "make_demo_split",
    "stream_lengths",
    "tokenize_samples",
    "window_spans",
]

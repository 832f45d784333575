"""Data for PixelBytes: loading and tokenising datasets (:mod:`.loading`), training windows and the collator
(:mod:`.windows`), stateful (truncated BPTT) windows in lanes (:mod:`.stateful`), and the embedded synthetic demo
dataset (:mod:`.synthetic`). ``datasets`` is imported only when a dataset is actually loaded."""

from .loading import decode_audio, load_samples, stream_lengths, tokenize_samples
from .stateful import (
    PxByStatefulCollator,
    PxByStatefulWindowDataset,
    StatefulLaneSampler,
    lane_layout,
    stateful_spans,
)
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
    "PxByStatefulCollator",
    "PxByStatefulWindowDataset",
    "PxByWindowDataset",
    "SpriteSpec",
    "StatefulLaneSampler",
    "all_specs",
    "decode_audio",
    "demo_samples",
    "lane_layout",
    "load_samples",
    "make_demo_split",
    "stateful_spans",
    "stream_lengths",
    "tokenize_samples",
    "window_spans",
]

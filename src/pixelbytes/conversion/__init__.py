"""Conversion of the original PixelBytes research checkpoints into the ``pixelbytes`` format (DESIGN §9)."""

from .original import (
    APXBY_ARCHITECTURE,
    V1_ARCHITECTURES,
    OriginalCheckpoint,
    apxby_config_to_kwargs,
    convert_apxby_state_dict,
    convert_original,
    detect_original_format,
    load_original_checkpoint,
    make_tokenizer,
)

__all__ = [
    "APXBY_ARCHITECTURE",
    "V1_ARCHITECTURES",
    "OriginalCheckpoint",
    "apxby_config_to_kwargs",
    "convert_apxby_state_dict",
    "convert_original",
    "detect_original_format",
    "load_original_checkpoint",
    "make_tokenizer",
]

"""Conversion of the original PixelBytes research checkpoints into the ``pixelbytes`` format (DESIGN §9)."""

from .original import (
    APXBY_ARCHITECTURE,
    V1_ARCHITECTURES,
    OriginalCheckpoint,
    apxby_config_to_kwargs,
    convert_apxby_state_dict,
    convert_original,
    convert_v1_state_dict,
    detect_original_format,
    load_original_checkpoint,
    make_tokenizer,
    read_weights,
    v1_config_to_kwargs,
)

__all__ = [
    "APXBY_ARCHITECTURE",
    "V1_ARCHITECTURES",
    "OriginalCheckpoint",
    "apxby_config_to_kwargs",
    "convert_apxby_state_dict",
    "convert_original",
    "convert_v1_state_dict",
    "detect_original_format",
    "load_original_checkpoint",
    "make_tokenizer",
    "read_weights",
    "v1_config_to_kwargs",
]

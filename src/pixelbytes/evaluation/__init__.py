"""Evaluation of PixelBytes models: caption → sprite metrics (:mod:`.sprites`)."""

from .sprites import (
    chance_levels,
    color_correct,
    exact_match,
    mask_iou,
    pixel_accuracy,
    score_sprite,
    score_sprites,
    shape_correct,
)

__all__ = [
    "chance_levels",
    "color_correct",
    "exact_match",
    "mask_iou",
    "pixel_accuracy",
    "score_sprite",
    "score_sprites",
    "shape_correct",
]

"""Evaluation of PixelBytes models.

- :mod:`.sprites`: caption → sprite metrics;
- :mod:`.similarity`: the v1 Table 1 metrics (Hamming, cosine, BLEU of token ids) without scipy / nltk;
- :mod:`.metrics`: the same metrics and bits per unit as Hugging Face ``evaluate`` modules (:func:`metric_path`);
- :mod:`.figures`: training curves, reference / generated sprite grids, bits-per-unit bars (matplotlib).
"""

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

# --- paper-protocol metrics, `evaluate` modules and figures (similarity, metrics, figures) ---------------
from .figures import plot_modality_bars, plot_training_curves, sprite_grid
from .metrics import METRIC_NAMES, bits_per_unit, metric_path
from .similarity import (
    V1_WINDOW_KEEP,
    cosine_similarity,
    hamming,
    sentence_bleu,
    sequence_similarity,
    summarize,
)

__all__ += [
    "METRIC_NAMES",
    "V1_WINDOW_KEEP",
    "bits_per_unit",
    "cosine_similarity",
    "hamming",
    "metric_path",
    "plot_modality_bars",
    "plot_training_curves",
    "sentence_bleu",
    "sequence_similarity",
    "sprite_grid",
    "summarize",
]

"""Training with ``transformers.Trainer`` (imports ``datasets`` only when a dataset is loaded)."""

from .metrics import make_compute_metrics, preprocess_logits_for_metrics, target_modalities
from .trainer import DataArguments, ModelArguments, TimeBudgetCallback, build_trainer, run_training

__all__ = [
    "DataArguments",
    "ModelArguments",
    "TimeBudgetCallback",
    "build_trainer",
    "make_compute_metrics",
    "preprocess_logits_for_metrics",
    "run_training",
    "target_modalities",
]

"""Training with ``transformers.Trainer`` (imports ``datasets`` only when a dataset is loaded)."""

from .metrics import make_compute_metrics, preprocess_logits_for_metrics, target_modalities
from .stateful import PxByStatefulTrainer, carry_state, check_stateful_model
from .trainer import DataArguments, ModelArguments, TimeBudgetCallback, build_trainer, run_training

__all__ = [
    "DataArguments",
    "ModelArguments",
    "PxByStatefulTrainer",
    "TimeBudgetCallback",
    "build_trainer",
    "carry_state",
    "check_stateful_model",
    "make_compute_metrics",
    "preprocess_logits_for_metrics",
    "run_training",
    "target_modalities",
]

"""Evaluation metrics for the Trainer: next-token accuracy overall and per modality, 6-slot context accuracy.

The modality of a target is read from the target token's class (byte → text, colour → image, level → audio);
structural targets (pad / row / separator) belong to the modality of the token before them (a row separator
closes an image row or an audio frame, a separator closes a text row or an image frame).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..vocabulary import BYTE, COLOUR, LEVEL

__all__ = ["MODALITIES", "make_compute_metrics", "preprocess_logits_for_metrics", "target_modalities"]

MODALITIES = ("text", "image", "audio")


def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
    """Keep argmax ids only (``(B, L)`` and, for the context objective, ``(B, L, 6)``): metrics need no scores."""
    if isinstance(logits, (tuple, list)):
        preds = tuple(t.argmax(-1) for t in logits if torch.is_tensor(t) and t.dim() >= 3)
        return preds[0] if len(preds) == 1 else preds
    return logits.argmax(-1)


def target_modalities(labels: np.ndarray, token_classes: np.ndarray) -> np.ndarray:
    """``(B, L)`` modality index (0 text, 1 image, 2 audio, -1 unknown / ignored) of every label."""
    labels = np.asarray(labels)
    valid = labels >= 0
    classes = np.where(valid, token_classes[np.where(valid, labels, 0)], -1)
    code = np.full(labels.shape, -1, dtype=np.int64)
    code[classes == BYTE] = 0
    code[classes == COLOUR] = 1
    code[classes == LEVEL] = 2
    # structural tokens inherit the modality of the closest content token before them in the row
    positions = np.where(code >= 0, np.arange(labels.shape[-1]), -1)
    last = np.maximum.accumulate(positions, axis=-1)
    filled = np.take_along_axis(code, np.maximum(last, 0), axis=-1)
    filled[last < 0] = -1
    return np.where(valid, filled, -1)


def make_compute_metrics(token_classes: np.ndarray, objective: str) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` for ``transformers.Trainer`` (use with :func:`preprocess_logits_for_metrics`).

    With the context objective, pass ``label_names=["labels", "context_ids"]`` in the TrainingArguments so the
    6-slot targets reach the metric.
    """

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        preds, label_ids = eval_pred.predictions, eval_pred.label_ids
        context_ids = None
        if isinstance(label_ids, (tuple, list)):
            label_ids, context_ids = label_ids[0], label_ids[1] if len(label_ids) > 1 else None
        slot_preds = None
        if isinstance(preds, (tuple, list)):
            preds, slot_preds = preds[0], preds[1] if len(preds) > 1 else None
        preds, labels = np.asarray(preds), np.asarray(label_ids)
        target = labels[:, 1:]
        valid = target != -100
        hit = (preds[:, :-1] == target) & valid
        metrics = {"next_token_accuracy": float(hit.sum() / max(valid.sum(), 1))}
        modality = target_modalities(target, token_classes)
        for index, name in enumerate(MODALITIES):
            chosen = valid & (modality == index)
            if chosen.any():
                metrics[f"{name}_accuracy"] = float(hit[chosen].mean())
        if objective == "context" and slot_preds is not None and context_ids is not None:
            context_ids = np.asarray(context_ids)
            targets = np.concatenate((context_ids[:, 1:, :5], target[..., None]), axis=-1)
            slots = (np.asarray(slot_preds)[:, :-1] == targets) & valid[..., None]
            metrics["context_accuracy"] = float(slots.sum() / max(valid.sum() * 6, 1))
        return metrics

    return compute_metrics

"""The papers' evaluation protocols on held-out items.

**v1 Table 1** (original-system.md §7): every item is cut into segments every ``context + steps`` = 80 tokens
(indices wrap around within the item); the model reads ``context`` = 64 tokens and generates ``steps`` = 16
tokens greedily, free-running. The 3×3 windows of the 16 generated tokens and of the 16 true ones (144 ids each)
are compared as raw id vectors: Hamming distance, cosine similarity, 4-gram BLEU without smoothing; the table
gives mean ± std (ddof 1) over segments. Four of the nine window cells (right of the centre and the bottom row)
are zero by construction, in both vectors, which inflates all three figures: the ``corrected`` variant keeps only
the five cells that can differ (the row above, the left neighbour and the token itself).

Differences from the original, by design: our models derive the neighbourhoods from the ids they see, so both
window sets are computed from the segment's own stream (the 64 prompt tokens followed by the generated or the true
tokens), not from the whole item; and the items are held out, where the published table scored training rows.

**v2 Table 2**: the objectives' validation accuracy — next-token (slot-5) accuracy, and for 6-slot models the
average over the six slots that the paper reports (from :func:`~.scoring.score_streams`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..layout import batch_windows
from .similarity import V1_WINDOW_KEEP, sequence_similarity, summarize

__all__ = ["table2_accuracies", "v1_segments", "v1_table1"]

def v1_segments(length: int, context: int = 64, steps: int = 16) -> np.ndarray:
    """``(n, context + steps)`` indices of the v1 segments of an item of ``length`` tokens (starts every
    ``context + steps`` tokens, wrapping around within the item)."""
    if length < 1:
        raise ValueError(f"an item needs at least one token, got length {length}")
    span = context + steps
    starts = np.arange(0, length, span)
    return (starts[:, None] + np.arange(span)[None, :]) % length


@torch.no_grad()
def _greedy(model: Any, prompts: np.ndarray, steps: int) -> np.ndarray:
    ids = torch.from_numpy(prompts).to(model.device)
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
        num_beams=1,
    )  # fmt: skip
    return out[:, prompts.shape[1] :].cpu().numpy()


def v1_table1(
    model: Any,
    streams: Sequence[np.ndarray],
    context: int = 64,
    steps: int = 16,
    batch_size: int = 64,
    max_segments: int | None = None,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, dict[str, tuple[float, float]]]:
    """The v1 Table 1 protocol (module docstring) → ``{"published": {...}, "corrected": {...}}``, each with
    ``hamming``, ``cosine``, ``bleu`` as ``(mean, std)`` and ``segments`` (the count, as ``(n, 0.0)``).

    ``max_segments`` keeps N segments evenly spaced over all of them (so over every item, deterministically) to
    bound the time; ``progress(n)`` is called
    after every batch of ``n`` segments."""
    if context < 1 or steps < 1:
        raise ValueError(f"context and steps must be >= 1, got {context} and {steps}")
    segments = [np.asarray(s, dtype=np.int64).reshape(-1)[v1_segments(len(s), context, steps)] for s in streams]
    rows = np.concatenate(segments) if segments else np.zeros((0, context + steps), np.int64)
    if max_segments is not None and len(rows) > max_segments:  # evenly spaced: every item, not only the first
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, max_segments).round().astype(np.int64))]
    if len(rows) == 0:
        raise ValueError("no segments to evaluate: the item list is empty")
    classes, channels = model.embeddings.token_classes, model.config.audio_channels
    keep = np.tile(V1_WINDOW_KEEP, steps)  # (steps·9,): the cells that can differ
    published: list[dict[str, float]] = []
    corrected: list[dict[str, float]] = []
    for first in range(0, len(rows), batch_size):
        batch = rows[first : first + batch_size]  # (b, context + steps)
        generated = np.concatenate((batch[:, :context], _greedy(model, batch[:, :context], steps)), 1)
        gen_windows = batch_windows(generated, classes, channels)[:, context:]  # (b, steps, 9)
        true_windows = batch_windows(batch, classes, channels)[:, context:]  # (b, steps, 9)
        for g, t in zip(gen_windows, true_windows):
            published.append(sequence_similarity(g.reshape(-1), t.reshape(-1)))
            corrected.append(sequence_similarity(g.reshape(-1), t.reshape(-1), keep=keep))
        if progress is not None:
            progress(len(batch))
    result = {"published": summarize(published), "corrected": summarize(corrected)}
    for variant in result.values():
        variant["segments"] = (float(len(rows)), 0.0)
    return result


def table2_accuracies(metrics: dict[str, float]) -> dict[str, float]:
    """The v2 Table 2 figures from :meth:`~.scoring.StreamScores.metrics`: ``slot5_accuracy`` (next token) and,
    for 6-slot models, ``six_slot_accuracy`` (the paper's figure)."""
    out = {"slot5_accuracy": metrics["accuracy"]}
    if "context_accuracy" in metrics:
        out["six_slot_accuracy"] = metrics["context_accuracy"]
    return out

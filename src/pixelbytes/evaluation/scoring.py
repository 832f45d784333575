"""Whole-item next-token scoring: bits per pixel / sample / character, accuracy and perplexity per modality.

Every item is scored from its first token to its last, whatever its length. The stream is fed in chunks of
``chunk_length`` tokens and the backbone's state (LSTM / Mamba state, attention key-value cache) is carried from
one chunk to the next, so an item's score does not depend on the chunk size: it equals one forward pass over the
whole item. The neighbourhoods (``context_ids``), grid positions and the caption memory are derived from the WHOLE
item, as in training.

Each predicted token belongs to the block that holds it (:func:`~pixelbytes.layout.stream_blocks`): row and frame
separators count in their image / audio block, the closing separator in its text. A modality's *bits per unit*
is the total information of its block tokens (separators included) divided by its content tokens: pixels (colour
tokens), samples (level tokens, one per channel and time step) or characters (byte tokens).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..embeddings_pixelbytes import caption_prefix
from ..layout import AUDIO, IMAGE, TEXT, stream_blocks
from ..vocabulary import BYTE, COLOUR, LEVEL

__all__ = ["MODALITY_UNITS", "ModalityTotals", "StreamScores", "check_scorable", "modality_of_tokens", "score_streams"]

#: modality name → (block kind, class of its content tokens, name of its unit)
MODALITY_UNITS = {
    "text": (TEXT, BYTE, "character"),
    "image": (IMAGE, COLOUR, "pixel"),
    "audio": (AUDIO, LEVEL, "sample"),
}
_LN2 = math.log(2.0)


def modality_of_tokens(ids: np.ndarray, token_classes: np.ndarray, audio_channels: int) -> np.ndarray:
    """``(L,)`` block kind (TEXT / IMAGE / AUDIO) of every token of one stream."""
    kinds = np.zeros(len(ids), dtype=np.int64)
    for start, end, kind, _closed in stream_blocks(token_classes[ids], audio_channels):
        kinds[start:end] = kind
    return kinds


@dataclass
class ModalityTotals:
    """Sums over the predicted tokens of one modality: information (bits), tokens, hits and content units."""

    bits: float = 0.0
    tokens: int = 0
    hits: int = 0
    units: int = 0

    def add(self, bits: float, tokens: int, hits: int, units: int) -> None:
        self.bits += bits
        self.tokens += tokens
        self.hits += hits
        self.units += units


@dataclass
class StreamScores:
    """Totals of a scored set of streams, per modality and overall; :meth:`metrics` gives the figures."""

    modalities: dict[str, ModalityTotals] = field(default_factory=lambda: {m: ModalityTotals() for m in MODALITY_UNITS})
    overall: ModalityTotals = field(default_factory=ModalityTotals)
    slot_hits: int = 0
    slot_total: int = 0
    items: int = 0

    def metrics(self) -> dict[str, float]:
        """``bits_per_token``, ``accuracy``, ``perplexity`` overall; ``{modality}_bits_per_{unit}``,
        ``{modality}_bits_per_token``, ``{modality}_accuracy``, ``{modality}_perplexity`` for every modality
        present; ``context_accuracy`` (the 6-slot average) for 6-slot heads."""
        out: dict[str, float] = {}
        if self.overall.tokens:
            out.update(_token_metrics("", self.overall))
        for name, totals in self.modalities.items():
            if not totals.tokens:
                continue
            unit = MODALITY_UNITS[name][2]
            out.update(_token_metrics(f"{name}_", totals))
            if totals.units:
                out[f"{name}_bits_per_{unit}"] = totals.bits / totals.units
        if self.slot_total:
            out["context_accuracy"] = self.slot_hits / self.slot_total
        return out


def _token_metrics(prefix: str, totals: ModalityTotals) -> dict[str, float]:
    bits = totals.bits / totals.tokens
    return {
        f"{prefix}bits_per_token": bits,
        f"{prefix}accuracy": totals.hits / totals.tokens,
        f"{prefix}perplexity": 2.0**bits,
    }


def check_scorable(model: Any) -> None:
    """``ValueError`` unless ``model`` gives next-token probabilities at every position (a causal backbone
    with a next-token or 6-slot head): bidirectional encoders and diffusion models have no such scores."""
    config = model.config
    if config.objective not in ("next_token", "context"):
        raise ValueError(
            f"bits per token need next-token probabilities; objective {config.objective!r} has none (use the v1 "
            "Table 1 protocol, which only generates, or evaluate a next_token / context model)"
        )
    if not getattr(model.backbone, "causal", False):
        raise ValueError(
            "bits per token need a causal backbone: this model is bidirectional (it reads the tokens it predicts)"
        )


def _batch(streams: Sequence[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in streams)
    ids = torch.zeros(len(streams), width, dtype=torch.long)
    mask = torch.zeros(len(streams), width, dtype=torch.long)
    for row, stream in enumerate(streams):
        ids[row, : len(stream)] = torch.from_numpy(np.asarray(stream, dtype=np.int64))
        mask[row, : len(stream)] = 1
    return ids.to(device), mask.to(device)


def _prefixes(streams: Sequence[np.ndarray], classes: np.ndarray, start: int, device: torch.device) -> torch.Tensor:
    """The caption prefixes of every row at ``start``, left-padded with 0 as the training collator does."""
    prefixes = [caption_prefix(np.asarray(s, dtype=np.int64), classes, start) for s in streams]
    out = torch.zeros(len(streams), max(1, max(len(p) for p in prefixes)), dtype=torch.long)
    for row, prefix in enumerate(prefixes):
        if len(prefix):
            out[row, -len(prefix) :] = torch.from_numpy(prefix)
    return out.to(device)


@torch.no_grad()
def _score_batch(model: Any, streams: Sequence[np.ndarray], chunk_length: int) -> Iterable[tuple[np.ndarray, ...]]:
    """Per row: ``(bits (L-1,), hits (L-1,), slot_hits (L-1,) or None)`` of the tokens 1 .. L-1 of each stream."""
    device = model.device
    embeddings = model.embeddings
    ids, mask = _batch(streams, device)  # (B, L)
    contexts = embeddings.derive_context_ids(ids, mask)  # (B, L, S): whole items
    grid = embeddings.derive_grid_positions(ids, mask) if embeddings.grid is not None else None  # (B, L, 4)
    lengths = [len(s) for s in streams]
    B, L = ids.shape
    bits = torch.zeros(B, L, dtype=torch.float64, device=device)
    hits = torch.zeros(B, L, dtype=torch.bool, device=device)
    slots = torch.zeros(B, L, dtype=torch.long, device=device) if model.lm_head.needs_contexts else None
    rows = torch.arange(B, device=device)  # the rows still running, in the order of the carried state
    state = None
    for start in range(0, L - 1, chunk_length):
        alive = [i for i in rows.tolist() if lengths[i] - 1 > start]
        if len(alive) < len(rows):
            keep = torch.tensor([rows.tolist().index(i) for i in alive], device=device)
            if state is not None:
                state = model.backbone.reorder_state(state, keep)
            rows = torch.tensor(alive, device=device)
        end = min(L - 1, start + chunk_length)
        span = slice(start, end)
        chunk_mask = mask[rows, span]
        prefix = None
        if embeddings.caption_memory is not None:
            prefix = _prefixes([streams[i] for i in rows.tolist()], embeddings.token_classes, start, device)
        embedded = embeddings(
            ids[rows, span], contexts[rows, span], chunk_mask,
            None if grid is None else grid[rows, span], prefix,
        )  # fmt: skip
        out = model.backbone(embedded.embeddings, chunk_mask, state=state, use_cache=True)  # (b, l, H)
        state = out.state
        logits, context_logits = model.lm_head.scores(out.hidden)  # (b, l, V), (b, l, 6, V) or None
        target = ids[rows, start + 1 : end + 1]  # (b, l): the next tokens
        log_probs = torch.log_softmax(logits.double(), -1)
        bits[rows, span] = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1) / _LN2
        hits[rows, span] = logits.argmax(-1) == target
        if slots is not None and context_logits is not None:
            slot_targets = torch.cat(
                (contexts[rows, start + 1 : end + 1, :5], target.unsqueeze(-1)), -1
            )  # (b, l, 6): the slots of the next position
            slots[rows, span] = (context_logits.argmax(-1) == slot_targets).sum(-1)
    for row, n in enumerate(lengths):
        yield (
            bits[row, : n - 1].cpu().numpy(),
            hits[row, : n - 1].cpu().numpy(),
            None if slots is None else slots[row, : n - 1].cpu().numpy(),
        )


def score_streams(
    model: Any,
    streams: Sequence[np.ndarray],
    chunk_length: int = 2048,
    batch_size: int = 8,
    progress: Any = None,
) -> StreamScores:
    """Score whole token streams (one item each) with a causal model; see the module docstring.

    Args:
        model: a :class:`~pixelbytes.modeling_pixelbytes.PxBySequenceModel` (causal, next-token or 6-slot head).
        streams: the items' ``input_ids`` (1-D integer arrays, any length >= 2).
        chunk_length: tokens fed per step; the score does not depend on it (only memory and speed do).
        batch_size: items scored together (sorted by length so that rows of a batch end close together).
        progress: an optional callable ``progress(num_tokens)`` called after every batch (e.g. ``tqdm.update``).
    """
    check_scorable(model)
    if chunk_length < 1 or batch_size < 1:
        raise ValueError(f"chunk_length and batch_size must be >= 1, got {chunk_length} and {batch_size}")
    streams = [np.asarray(s, dtype=np.int64).reshape(-1) for s in streams]
    vocab_size = model.config.vocab_size
    for i, s in enumerate(streams):
        if len(s) < 2:
            raise ValueError(f"item {i} has {len(s)} token(s): scoring needs at least 2")
        if s.min() < 0 or s.max() >= vocab_size:
            raise ValueError(f"item {i} has ids outside [0, {vocab_size}): tokenizer and model do not match")
    classes = model.embeddings.token_classes
    audio_channels = model.config.audio_channels
    scores = StreamScores()
    was_training = model.training
    model.eval()
    try:
        order = sorted(range(len(streams)), key=lambda i: len(streams[i]))
        for first in range(0, len(order), batch_size):
            batch = [streams[i] for i in order[first : first + batch_size]]
            for stream, (bits, hits, slot_hits) in zip(batch, _score_batch(model, batch, chunk_length)):
                _accumulate(scores, stream, bits, hits, slot_hits, classes, audio_channels)
            if progress is not None:
                progress(sum(len(s) for s in batch))
    finally:
        model.train(was_training)
    return scores


def _accumulate(
    scores: StreamScores,
    stream: np.ndarray,
    bits: np.ndarray,
    hits: np.ndarray,
    slot_hits: np.ndarray | None,
    classes: np.ndarray,
    audio_channels: int,
) -> None:
    targets = stream[1:]
    kinds = modality_of_tokens(stream, classes, audio_channels)[1:]
    target_classes = classes[targets]
    for name, (kind, unit_class, _unit) in MODALITY_UNITS.items():
        chosen = kinds == kind
        if chosen.any():
            scores.modalities[name].add(
                float(bits[chosen].sum()), int(chosen.sum()), int(hits[chosen].sum()),
                int((target_classes[chosen] == unit_class).sum()),
            )  # fmt: skip
    scores.overall.add(float(bits.sum()), len(bits), int(hits.sum()), 0)
    if slot_hits is not None:
        scores.slot_hits += int(slot_hits.sum())
        scores.slot_total += 6 * len(slot_hits)
    scores.items += 1

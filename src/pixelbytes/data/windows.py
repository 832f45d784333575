"""Training windows over tokenised samples, and the collator that batches them (DESIGN §8).

Each sample's stream (``input_ids`` (L,) and its HF-aligned ``context_ids`` (L, 6), computed once on the
WHOLE sample) is cut into windows of ``seq_length`` tokens every ``stride`` tokens, the last window aligned
to the sample's end. With ``stride <= seq_length - 1`` consecutive windows overlap, so every token but the
sample's first is a prediction target; each token is labelled in exactly ONE window (the first that
reaches it) and the overlap before it only warms the recurrent state up (labels -100). The original code
dropped sample tails and could produce empty windows; here nothing is lost.

Windows are sliced on access from a store of tokenised samples (e.g. an Arrow-backed ``datasets.Dataset``
in numpy format): only a ``(num_windows, 3)`` index is kept in memory, so memory stays bounded when the
dataset grows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..embeddings_pixelbytes import caption_prefix
from ..layout import NUM_POSITION_FIELDS, stream_grid_positions

__all__ = ["PxByDataCollator", "PxByWindowDataset", "slice_window", "window_spans"]


def _check_window_args(seq_length: int, stride: int) -> None:
    if not isinstance(seq_length, int) or seq_length < 2:
        raise ValueError(f"seq_length must be an integer >= 2, got {seq_length!r}")
    if not isinstance(stride, int) or not 1 <= stride <= seq_length - 1:
        raise ValueError(
            f"stride must be in [1, seq_length - 1] = [1, {seq_length - 1}] so that windows overlap and every token "
            f"is a target, got {stride!r}"
        )


def window_spans(length: int, seq_length: int, stride: int) -> np.ndarray:
    """``(n, 3)`` rows ``(start, end, first_label)`` of the windows of a sample of ``length`` tokens.

    Window ``[start, end)``; positions ``>= first_label`` are labelled in it (``first_label`` is ``start + 1``
    for the first window, the previous window's ``end`` afterwards), so the labelled positions of all windows
    are exactly ``1 .. length - 1``, each once.
    """
    _check_window_args(seq_length, stride)
    if length <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    if length <= seq_length:
        return np.array([[0, length, 1]], dtype=np.int64)
    starts = list(range(0, length - seq_length, stride)) + [length - seq_length]
    spans = np.empty((len(starts), 3), dtype=np.int64)
    previous_end = 1
    for i, start in enumerate(starts):
        end = start + seq_length
        spans[i] = (start, end, max(start + 1, previous_end))
        previous_end = end
    return spans


class PxByWindowDataset(torch.utils.data.Dataset):
    """Map-style dataset of training windows over tokenised samples.

    Args:
        samples: indexable store whose items are mappings with ``input_ids`` (L,) and ``context_ids`` (L, 6)
            or flattened (L·6,) — e.g. a ``datasets.Dataset`` with ``.with_format("numpy")``.
        lengths: the stream length of every sample (avoids reading the samples to build the index).
        seq_length: window length (tokens).
        stride: distance between window starts, ``1 <= stride <= seq_length - 1``.
        position_layout: ``(token_classes, audio_channels)`` to add ``grid_positions`` (L, 4) to every window,
            derived on the whole sample then sliced (for models with ``grid_position_size > 0``); samples that
            already hold ``grid_positions`` are sliced as they are.
        caption_memory_classes: the token classes, for models with a caption memory
            (``model.caption_memory_classes()``): every window then carries ``caption_prefix_ids``, the tokens
            before it that its caption memory depends on (:func:`~pixelbytes.embeddings_pixelbytes.caption_prefix`),
            so a window that starts after the caption still sees it.
    """

    def __init__(
        self,
        samples: Any,
        lengths: Sequence[int],
        seq_length: int,
        stride: int,
        position_layout: tuple[np.ndarray, int] | None = None,
        caption_memory_classes: np.ndarray | None = None,
    ) -> None:
        _check_window_args(seq_length, stride)
        if len(lengths) != len(samples):
            raise ValueError(f"got {len(lengths)} lengths for {len(samples)} samples")
        self.samples, self.seq_length, self.stride = samples, seq_length, stride
        self.position_layout = position_layout
        self.caption_memory_classes = caption_memory_classes
        spans = [window_spans(int(n), seq_length, stride) for n in lengths]
        owners = [np.full(len(s), i, dtype=np.int64) for i, s in enumerate(spans)]
        self.index = np.concatenate(
            [np.column_stack((o, s)) for o, s in zip(owners, spans) if len(s)] or [np.zeros((0, 4), dtype=np.int64)]
        )  # (num_windows, 4): sample, start, end, first_label

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample_idx, start, end, first_label = (int(v) for v in self.index[i])
        window = slice_window(self.samples[sample_idx], start, end, self.position_layout, self.caption_memory_classes)
        window["labels"][: first_label - start] = -100  # the overlap only warms the state up
        return window


def slice_window(
    sample: Mapping[str, Any],
    start: int,
    stop: int,
    position_layout: tuple[np.ndarray, int] | None = None,
    caption_memory_classes: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Positions ``[start, stop)`` of a tokenised sample as a window: ``input_ids``, ``context_ids``, ``labels``
    (a copy of the ids: every position labelled), ``grid_positions`` when the sample holds them or
    ``position_layout`` is given (derived on the WHOLE sample, then sliced) and ``caption_prefix_ids`` with
    ``caption_memory_classes`` (see :class:`PxByWindowDataset`). Plain and stateful windows are both cut here."""
    ids = np.asarray(sample["input_ids"], dtype=np.int64)
    ctx = np.asarray(sample["context_ids"], dtype=np.int64).reshape(len(ids), -1)
    window_ids = torch.from_numpy(ids[start:stop].copy())  # (n,)
    window = {
        "input_ids": window_ids,
        "context_ids": torch.from_numpy(ctx[start:stop].copy()),  # (n, S)
        "labels": window_ids.clone(),
    }
    if "grid_positions" in sample or position_layout is not None:
        if "grid_positions" in sample:
            where = np.asarray(sample["grid_positions"], dtype=np.int64).reshape(len(ids), -1)
        else:
            where = stream_grid_positions(ids, *position_layout)[1:]  # HF-aligned: next positions
        window["grid_positions"] = torch.from_numpy(where[start:stop].copy())  # (n, 4)
    if caption_memory_classes is not None:
        window["caption_prefix_ids"] = torch.from_numpy(caption_prefix(ids, caption_memory_classes, start))
    return window


@dataclass
class PxByDataCollator:
    """Pads windows into a batch: ``input_ids`` (pad 0), ``context_ids`` (zero rows), ``labels`` (-100),
    ``attention_mask`` and, when the windows carry them, ``grid_positions`` (zero rows) and ``caption_prefix_ids``
    (left-padded with 0 to the longest prefix); ``padding_side``
    "right" (default) or "left". ``include_context_ids=False`` leaves the contexts out (masked-diffusion models
    derive them from the masked stream themselves)."""

    pad_to_multiple_of: int | None = None
    padding_side: str = "right"
    include_context_ids: bool = True

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")
        lengths = [len(f["input_ids"]) for f in features]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        slots = torch.as_tensor(features[0]["context_ids"]).shape[-1] if self.include_context_ids else 0
        B = len(features)
        batch = {
            "input_ids": torch.zeros(B, width, dtype=torch.long),
            "context_ids": torch.zeros(B, width, slots, dtype=torch.long),
            "labels": torch.full((B, width), -100, dtype=torch.long),
            "attention_mask": torch.zeros(B, width, dtype=torch.long),
        }
        with_positions = "grid_positions" in features[0]
        if with_positions:
            batch["grid_positions"] = torch.zeros(B, width, NUM_POSITION_FIELDS, dtype=torch.long)
        for row, (feature, n) in enumerate(zip(features, lengths)):
            span = slice(0, n) if self.padding_side == "right" else slice(width - n, width)
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            batch["input_ids"][row, span] = ids
            if self.include_context_ids:
                contexts = torch.as_tensor(feature["context_ids"], dtype=torch.long)
                batch["context_ids"][row, span] = contexts.reshape(n, slots)
            batch["labels"][row, span] = torch.as_tensor(feature.get("labels", ids), dtype=torch.long)
            batch["attention_mask"][row, span] = 1
            if with_positions:
                batch["grid_positions"][row, span] = torch.as_tensor(feature["grid_positions"], dtype=torch.long)
        if "caption_prefix_ids" in features[0]:
            prefixes = [torch.as_tensor(f["caption_prefix_ids"], dtype=torch.long) for f in features]
            batch["caption_prefix_ids"] = torch.zeros(B, max(len(p) for p in prefixes), dtype=torch.long)
            for row, prefix in enumerate(prefixes):
                if len(prefix):
                    batch["caption_prefix_ids"][row, -len(prefix) :] = prefix
        if not self.include_context_ids:
            del batch["context_ids"]
        return batch

"""Stateful training windows (truncated BPTT): consecutive windows per sample, batched as lanes (issue #13).

Plain windows (:mod:`.windows`) overlap and are shuffled, so a recurrent model starts every window from a zero
state and only the first window of a sample sees its caption. Here a recurrent backbone carries its state from one
window of a sample to the next (:class:`~pixelbytes.training.stateful.PxByStatefulTrainer`):

* **Windows.** A sample of ``n`` tokens feeds its tokens ``0 .. n-2`` to the backbone in consecutive,
  non-overlapping chunks of ``seq_length`` (token ``n-1`` is only ever a target); the LAST chunk holds the
  remainder (``1 .. seq_length`` tokens), so only a sample's last window can be short. A window row is its chunk
  plus one **look-ahead** token, the first token of the next chunk: it is only a label (the target of the chunk's
  last position), never fed to the backbone (``PxBySequenceModel.forward(initial_state=...)``). Every token but a
  sample's first is thus labelled exactly once, and the state after a window is the state after its chunk, where
  the next window starts.
* **Lanes.** ``per_device_train_batch_size`` = B lanes. Each epoch the samples are shuffled (seeded) and dealt to
  the lanes, each to the lane with the fewest windows so far; a lane walks through its samples one after another.
  Batch k holds window k of every lane; a row's ``reset_state`` flag is True where it starts a sample (its state
  must start from zero). Lanes that run out before the longest one are finished with **padding rows** (no tokens,
  labels -100, reset flag set): nothing is dropped, and every batch has B rows.
* **Padding, and no attention mask.** A short (last) window is RIGHT-padded and the batch has no
  ``attention_mask``: the causal backbone reads the padding after the real tokens, which cannot reach them, and
  the state at the end of such a row is never carried (the lane's next row starts a sample, or pads). Every real
  position is then exact, and a batch with a short row costs what a full one does (a mask would make the LSTM
  pack its rows: measured 5-6x slower on CPU with a state, and Mamba moves padding BEFORE the real tokens, between
  them and the carried state). Full rows end with their look-ahead: the column the model does not feed.
* **Processes.** With ``num_replicas`` processes the global lanes are ``num_replicas · B``; process ``rank`` owns
  lanes ``rank·B .. rank·B + B - 1`` and every process yields the same number of batches.
* **Caption memory.** Windows carry ``caption_prefix_ids`` as plain windows do: the caption memory of a window is
  then exactly the one it has in the whole sample, with no state to carry.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..layout import NUM_POSITION_FIELDS
from .windows import PxByDataCollator, slice_window

__all__ = [
    "PAD_WINDOW",
    "PxByStatefulCollator",
    "PxByStatefulWindowDataset",
    "StatefulLaneSampler",
    "lane_layout",
    "stateful_spans",
]

#: The dataset index of a padding row (a lane that has run out of windows).
PAD_WINDOW = -1


def stateful_spans(length: int, seq_length: int) -> np.ndarray:
    """``(m, 2)`` rows ``(start, end)`` of the stateful windows of a sample of ``length`` tokens.

    Window ``ids[start : end + 1]``: the backbone is fed ``[start, end)`` (consecutive chunks covering
    ``0 .. length - 2``, the last one holding the remainder) and ``end`` is the look-ahead label. Its labelled
    targets are ``start + 1 .. end``. No windows for fewer than 2 tokens (nothing to predict)."""
    if not isinstance(seq_length, int) or seq_length < 1:
        raise ValueError(f"seq_length must be a positive integer, got {seq_length!r}")
    fed = length - 1
    if fed < 1:
        return np.zeros((0, 2), dtype=np.int64)
    starts = np.arange(0, fed, seq_length, dtype=np.int64)
    return np.column_stack((starts, np.minimum(starts + seq_length, fed)))


def lane_layout(
    window_counts: Sequence[int], num_lanes: int, order: Sequence[int] | None = None
) -> list[list[tuple[int, int]]]:
    """Deal samples to ``num_lanes`` lanes: ``lanes[j]`` = the ``(sample, window)`` pairs lane j walks through.

    Samples are taken in ``order`` (default: as given), each to the lane with the fewest windows so far (ties:
    the lowest lane), so lanes end as evenly as whole samples allow. Samples without windows are skipped."""
    if not isinstance(num_lanes, int) or num_lanes < 1:
        raise ValueError(f"the number of lanes (batch size) must be a positive integer, got {num_lanes!r}")
    lanes: list[list[tuple[int, int]]] = [[] for _ in range(num_lanes)]
    heap = [(0, lane) for lane in range(num_lanes)]  # (windows so far, lane)
    for sample in range(len(window_counts)) if order is None else order:
        count = int(window_counts[sample])
        if count <= 0:
            continue
        total, lane = heapq.heappop(heap)
        lanes[lane].extend((int(sample), w) for w in range(count))
        heapq.heappush(heap, (total + count, lane))
    return lanes


class PxByStatefulWindowDataset(torch.utils.data.Dataset):
    """Map-style dataset of stateful windows (see the module docstring); index :data:`PAD_WINDOW` = a padding row.

    Args:
        samples: indexable store of tokenised samples (``input_ids`` (L,), ``context_ids`` (L, S) or flat), as for
            :class:`~pixelbytes.data.PxByWindowDataset`.
        lengths: the stream length of every sample.
        seq_length: tokens fed to the backbone per window (a row holds one more: the look-ahead label).
        position_layout: ``(token_classes, audio_channels)`` to add ``grid_positions`` (models with
            ``grid_position_size > 0``).
        caption_memory_classes: the token classes, to add ``caption_prefix_ids`` (models with a caption memory).
    """

    def __init__(
        self,
        samples: Any,
        lengths: Sequence[int],
        seq_length: int,
        position_layout: tuple[np.ndarray, int] | None = None,
        caption_memory_classes: np.ndarray | None = None,
    ) -> None:
        if len(lengths) != len(samples):
            raise ValueError(f"got {len(lengths)} lengths for {len(samples)} samples")
        self.samples, self.seq_length = samples, seq_length
        self.position_layout = position_layout
        self.caption_memory_classes = caption_memory_classes
        spans = [stateful_spans(int(n), seq_length) for n in lengths]
        #: windows per sample, and the flat index of each sample's first window
        self.window_counts = np.array([len(s) for s in spans], dtype=np.int64)
        self.first_window = np.concatenate(([0], np.cumsum(self.window_counts)[:-1])).astype(np.int64)
        self.index = np.concatenate(
            [np.column_stack((np.full(len(s), i, dtype=np.int64), s)) for i, s in enumerate(spans) if len(s)]
            or [np.zeros((0, 3), dtype=np.int64)]
        )  # (num_windows, 3): sample, start, end (= the look-ahead position)
        # what a padding row must hold to be collated with real rows: the context width, grid positions or not
        first = samples[int(self.index[0, 0])] if len(self.index) else None
        self._slots, self._with_positions = 6, position_layout is not None
        if first is not None:
            self._slots = np.asarray(first["context_ids"]).reshape(len(first["input_ids"]), -1).shape[1]
            self._with_positions = self._with_positions or "grid_positions" in first

    def __len__(self) -> int:
        return len(self.index)

    def flat_index(self, sample: int, window: int) -> int:
        """The dataset index of window ``window`` of sample ``sample``."""
        return int(self.first_window[sample] + window)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i == PAD_WINDOW:
            return self._padding_row()
        sample_idx, start, end = (int(v) for v in self.index[i])
        # the look-ahead (end) is part of the row; position 0 is never a target (shifted labels)
        window: dict[str, Any] = slice_window(self.samples[sample_idx], start, end + 1, self.position_layout,
                                              self.caption_memory_classes)  # fmt: skip
        window["reset_state"] = start == 0
        return window

    def _padding_row(self) -> dict[str, Any]:
        """An empty row (a finished lane): no tokens, nothing labelled, a fresh state."""
        row: dict[str, Any] = {
            "input_ids": torch.zeros(0, dtype=torch.long),
            "context_ids": torch.zeros(0, self._slots, dtype=torch.long),
            "labels": torch.zeros(0, dtype=torch.long),
            "reset_state": True,
        }
        if self._with_positions:
            row["grid_positions"] = torch.zeros(0, NUM_POSITION_FIELDS, dtype=torch.long)
        if self.caption_memory_classes is not None:
            row["caption_prefix_ids"] = torch.zeros(0, dtype=torch.long)
        return row


class StatefulLaneSampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler of the lane layout: batch k = window k of each of this process's ``batch_size`` lanes.

    ``shuffle`` draws the sample order from ``(seed, epoch)`` (:meth:`set_epoch`, called by the ``Trainer`` /
    ``accelerate`` at every epoch); batches themselves are never shuffled. ``num_replicas`` / ``rank``: this
    process's share of the global lanes (see the module docstring)."""

    def __init__(
        self,
        dataset: PxByStatefulWindowDataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size (the number of lanes) must be a positive integer, got {batch_size!r}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._cached: tuple[int, list[list[int]], int] | None = None  # (epoch, lanes, longest lane of all)

    def set_epoch(self, epoch: int) -> None:
        """Use the sample order of ``epoch`` from the next iteration on."""
        self.epoch = int(epoch)

    def lanes(self) -> list[list[int]]:
        """This process's lanes for the current epoch: dataset indices in the order each lane walks them."""
        return self._layout()[0]

    def _layout(self) -> tuple[list[list[int]], int]:
        """This process's lanes and the number of batches (the longest lane of ALL processes)."""
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1], self._cached[2]
        counts = self.dataset.window_counts
        order = None
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(counts))
        every = lane_layout(counts, self.batch_size * self.num_replicas, order)
        longest = max((len(lane) for lane in every), default=0)
        mine = every[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        lanes = [[self.dataset.flat_index(s, w) for s, w in lane] for lane in mine]
        self._cached = (self.epoch, lanes, longest)
        return lanes, longest

    def __iter__(self) -> Iterator[list[int]]:
        lanes, longest = self._layout()
        for k in range(longest):
            yield [lane[k] if k < len(lane) else PAD_WINDOW for lane in lanes]

    def __len__(self) -> int:
        return self._layout()[1]


@dataclass
class PxByStatefulCollator(PxByDataCollator):
    """:class:`~pixelbytes.data.PxByDataCollator` for stateful windows: right padding (labels -100), NO
    ``attention_mask`` (see "Padding" in the module docstring), plus ``reset_state`` ``(B,)`` bool, True where a
    row starts a sample (padding rows included)."""

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if self.padding_side != "right":
            raise ValueError("stateful windows are right-padded: padding may only follow a sample's last tokens")
        batch = super().__call__(features)
        del batch["attention_mask"]  # the backbone reads the trailing padding: it cannot reach a real position
        batch["reset_state"] = torch.tensor([bool(f["reset_state"]) for f in features], dtype=torch.bool)  # (B,)
        return batch

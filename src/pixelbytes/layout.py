"""The PxBy stream layout: grid positions and neighbour contexts of a token stream (DESIGN §5).

Every token of a stream lands on a grid position ``(block, t, r, c)`` decided causally, from the
tokens before it only. Its *context* is read from already-placed cells of the current block:

======  ============  ==========  ============  ==============  ============  ==============
slot    0             1           2             3               4             5
value   X(t-1,r-1,c)  X(t-1,r,c)  X(t-1,r+1,c)  X(t,r-1,c-1)    X(t,r-1,c)    previous token
======  ============  ==========  ============  ==============  ============  ==============

Three implementations give the same result and are tested against each other:

* :func:`grid_block_contexts` / :func:`assemble_blocks` — the tokenizer's path: it knows each block's
  ``(T, H, W)`` grid and computes contexts by array slicing;
* :func:`stream_contexts` (and the batched :func:`batch_context_ids`) — derives everything from the ids
  alone, vectorised per block (prompts, the model's forward when ``context_ids`` is absent);
* :class:`LayoutTracker` / :class:`BatchLayoutTracker` — one token at a time, O(1) per token (the
  generation cache).

Hugging Face alignment: ``context_ids[k]`` is the context of position ``k + 1`` (so ``logits[:, k]``,
which predicts token ``k + 1``, is computed from it). :func:`stream_contexts` returns the contexts of
positions ``0 .. L`` (``L + 1`` rows); ``context_ids = stream_contexts(ids)[1:]``.

The v1 3×3 *window* of the token at ``(t, r, c)`` is
``[[X(t,r-1,c-1), X(t,r-1,c), X(t,r-1,c+1)], [X(t,r,c-1), X(t,r,c), 0], [0, 0, 0]]`` flattened
row-major (9 values); row ``k`` is the window of token ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .vocabulary import BYTE, LEVEL, ROW, SEP, SEP_ID

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "AUDIO",
    "FRESH",
    "IMAGE",
    "NUM_CONTEXT_SLOTS",
    "NUM_WINDOW_CELLS",
    "TEXT",
    "BatchLayoutTracker",
    "LayoutTracker",
    "assemble_blocks",
    "batch_context_ids",
    "batch_grid_positions",
    "batch_windows",
    "grid_block_contexts",
    "stream_blocks",
    "stream_contexts",
    "stream_grid_positions",
    "stream_windows",
]

FRESH, TEXT, IMAGE, AUDIO = 0, 1, 2, 3
KIND_NAMES = ("fresh", "text", "image", "audio")
#: block kind opened by a token of each class (PAD, ROW, SEP, BYTE, COLOUR, LEVEL) in the fresh state
KIND_OF_CLASS = (TEXT, TEXT, TEXT, TEXT, IMAGE, AUDIO)
NUM_CONTEXT_SLOTS = 6
NUM_WINDOW_CELLS = 9
#: columns of a grid position: block kind (FRESH / TEXT / IMAGE / AUDIO), frame t, row r, column c
NUM_POSITION_FIELDS = 4

# Dense grids are used while their size stays within this multiple of the block length (+ a constant);
# otherwise (malformed streams with very long rows and many frames) a row-indexed sparse lookup is used.
_DENSE_FACTOR, _DENSE_SLACK = 8, 4096


# ----------------------------------------------------------------------------------------------------
# Block segmentation of a stream
# ----------------------------------------------------------------------------------------------------
def stream_blocks(cls: np.ndarray, audio_channels: int) -> list[tuple[int, int, int, bool]]:
    """Split a stream into blocks from its token classes.

    Returns ``(start, end, kind, closed)`` tuples (``end`` exclusive). ``closed`` means the state after
    the block is *fresh* (a text block ended by SEP, an audio block whose last frame held a
    terminator); an open block either reaches the end of the stream or is an image interrupted by a
    BYTE / LEVEL token right after one of its SEPs.
    """
    L = len(cls)
    blocks: list[tuple[int, int, int, bool]] = []
    if L == 0:
        return blocks
    sep_pos = np.flatnonzero(cls == SEP)
    term_pos = np.flatnonzero(cls <= SEP)  # PAD, ROW or SEP
    follows_sep = cls[:-1] == SEP
    nxt = cls[1:]
    break_pos = np.flatnonzero(follows_sep & ((nxt == BYTE) | (nxt == LEVEL))) + 1
    W = audio_channels
    s = 0
    while s < L:
        kind = KIND_OF_CLASS[int(cls[s])]
        closed = False
        e = L
        if kind == TEXT:
            j = int(np.searchsorted(sep_pos, s))
            if j < len(sep_pos):
                e, closed = int(sep_pos[j]) + 1, True
        elif kind == IMAGE:
            j = int(np.searchsorted(break_pos, s + 1))
            if j < len(break_pos):
                e = int(break_pos[j])
        else:
            j = int(np.searchsorted(term_pos, s))
            if j < len(term_pos):
                frame_end = s + ((int(term_pos[j]) - s) // W + 1) * W
                if frame_end <= L:
                    e, closed = frame_end, True
        blocks.append((s, e, kind, closed))
        s = e
    return blocks


def _image_positions(cb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Landing positions ``(t, r, c)`` of the tokens of one image block and the pending position after it."""
    n = len(cb)
    is_sep = cb == SEP
    is_row = cb == ROW
    t = np.zeros(n, dtype=np.int64)
    np.cumsum(is_sep[:-1], out=t[1:])
    rows_before = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(is_row, out=rows_before[1:])
    frame_starts = np.concatenate(([0], np.flatnonzero(is_sep) + 1))
    r = rows_before[:n] - rows_before[frame_starts[t]]
    idx = np.arange(n, dtype=np.int64)
    last_break = np.maximum.accumulate(np.where(is_sep | is_row, idx, -1))
    c = idx.copy()
    c[1:] -= last_break[:-1] + 1
    last = int(cb[-1])
    if last == ROW:
        pending = (int(t[-1]), int(r[-1]) + 1, 0)
    elif last == SEP:
        pending = (int(t[-1]) + 1, 0, 0)
    else:
        pending = (int(t[-1]), int(r[-1]), int(c[-1]) + 1)
    return t, r, c, pending


class _BlockGrid:
    """Random access ``X(t, r, c)`` over one block's placed tokens (0 outside)."""

    def __init__(self, values: np.ndarray, t: np.ndarray, r: np.ndarray, c: np.ndarray, pending: tuple) -> None:
        self.values = values
        n = len(values)
        T = max(int(t[-1]), pending[0]) + 1
        R = max(int(r.max()), pending[1]) + 1
        C = max(int(c.max()), pending[2]) + 1
        self.dense = (T + 1) * (R + 2) * (C + 2) <= _DENSE_FACTOR * n + _DENSE_SLACK
        if self.dense:
            self.St, self.Sr = (R + 2) * (C + 2), C + 2
            self.flat = np.zeros((T + 1) * self.St, dtype=values.dtype)
            self.flat[self.index(t, r, c)] = values
        else:
            # rows (t, r) are contiguous runs of the stream, in increasing (t, r) order
            self.Sr = R + 2
            row_key = t * self.Sr + r
            starts = np.flatnonzero(np.concatenate(([True], row_key[1:] != row_key[:-1])))
            self.row_keys = row_key[starts]
            self.row_starts = starts
            self.row_lengths = np.diff(np.concatenate((starts, [n])))

    def index(self, t: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (t + 1) * self.St + (r + 1) * self.Sr + (c + 1)

    def get(self, t: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Values at the queried cells; only valid for ``t, r, c >= -1`` and within the grid + 1."""
        if self.dense:
            return self.flat[self.index(t, r, c)]
        key = t * self.Sr + r
        j = np.minimum(np.searchsorted(self.row_keys, key), len(self.row_keys) - 1)
        ok = (self.row_keys[j] == key) & (r >= 0) & (c >= 0) & (c < self.row_lengths[j])
        out = np.zeros(len(key), dtype=self.values.dtype)
        out[ok] = self.values[self.row_starts[j[ok]] + c[ok]]
        return out

    def continuation(self, t: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Slots 0-4 of the continuation context at pending positions ``(t, r, c)``: shape (m, 5)."""
        if self.dense:
            f = self.index(t, r, c)
            St, Sr, X = self.St, self.Sr, self.flat
            return np.stack((X[f - St - Sr], X[f - St], X[f - St + Sr], X[f - Sr - 1], X[f - Sr]), axis=1)
        return np.stack(
            (
                self.get(t - 1, r - 1, c),
                self.get(t - 1, r, c),
                self.get(t - 1, r + 1, c),
                self.get(t, r - 1, c - 1),
                self.get(t, r - 1, c),
            ),
            axis=1,
        )

    def windows_top(self, t: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Window cells above and left of ``(t, r, c)``: X(t,r-1,c-1), X(t,r-1,c), X(t,r-1,c+1), X(t,r,c-1)."""
        if self.dense:
            f = self.index(t, r, c)
            Sr, X = self.Sr, self.flat
            return np.stack((X[f - Sr - 1], X[f - Sr], X[f - Sr + 1], X[f - 1]), axis=1)
        return np.stack(
            (self.get(t, r - 1, c - 1), self.get(t, r - 1, c), self.get(t, r - 1, c + 1), self.get(t, r, c - 1)),
            axis=1,
        )


def _as_int_array(ids: Any) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D stream of token ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _classes_of(ids: np.ndarray, token_classes: np.ndarray) -> np.ndarray:
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= len(token_classes)):
        bad = ids[(ids < 0) | (ids >= len(token_classes))][0]
        raise ValueError(f"token id {int(bad)} is outside the vocabulary (size {len(token_classes)})")
    return token_classes[ids]


def stream_contexts(ids: Any, token_classes: np.ndarray, audio_channels: int) -> np.ndarray:
    """Contexts of positions ``0 .. L`` of a stream (``L + 1`` rows, int64), derived from the ids alone.

    Row ``p`` is the context of position ``p`` (row ``L``: the position after the last token, which
    is what generation needs next). The stream is assumed to start fresh.
    """
    ids = _as_int_array(ids)
    L = len(ids)
    out = np.zeros((L + 1, NUM_CONTEXT_SLOTS), dtype=np.int64)
    if L == 0:
        return out
    cls = _classes_of(ids, token_classes)
    out[1:, 5] = ids
    W = audio_channels
    for s, e, kind, closed in stream_blocks(cls, W):
        b = ids[s:e]
        n = e - s
        if closed:
            out[e, 5] = 0  # the next position is fresh
        if kind == TEXT:
            continue  # slots 0-4 of text are always 0
        if kind == AUDIO:
            # grid (T, 1, W): only slot 1, X(t-1, 0, c), can be non-zero
            if n > W:
                out[s + W : e, 1] = b[: n - W]
            if not closed and n >= W:
                out[e, 1] = b[n - W]
            continue
        t, r, c, pending = _image_positions(cls[s:e])
        grid = _BlockGrid(b, t, r, c, pending)
        if n > 1:
            out[s + 1 : e, :5] = grid.continuation(t[1:], r[1:], c[1:])
        pt, pr, pc = (np.array([v]) for v in pending)
        out[e, :5] = grid.continuation(pt, pr, pc)[0]
    return out


def stream_windows(ids: Any, token_classes: np.ndarray, audio_channels: int) -> np.ndarray:
    """v1 3×3 windows of every token of a stream, flattened to ``(L, 9)`` (row k = window of token k)."""
    ids = _as_int_array(ids)
    L = len(ids)
    out = np.zeros((L, NUM_WINDOW_CELLS), dtype=np.int64)
    if L == 0:
        return out
    cls = _classes_of(ids, token_classes)
    out[:, 4] = ids
    W = audio_channels
    for s, e, kind, _closed in stream_blocks(cls, W):
        b = ids[s:e]
        if kind == TEXT:
            out[s + 1 : e, 3] = b[:-1]
        elif kind == AUDIO:
            left = np.zeros(e - s, dtype=np.int64)
            left[1:] = b[:-1]
            left[np.arange(e - s) % W == 0] = 0
            out[s:e, 3] = left
        else:
            t, r, c, pending = _image_positions(cls[s:e])
            out[s:e, :4] = _BlockGrid(b, t, r, c, pending).windows_top(t, r, c)
    return out


def stream_grid_positions(ids: Any, token_classes: np.ndarray, audio_channels: int) -> np.ndarray:
    """Grid positions of positions ``0 .. L`` (``L + 1`` rows ``(kind, t, r, c)``, int64), aligned with
    :func:`stream_contexts`: row ``p`` is where token ``p`` lands, decided from the tokens before it.

    Text positions are ``(TEXT, 0, 0, index in the block)``, image positions ``(IMAGE, frame, row, column)``,
    audio positions ``(AUDIO, time step, 0, channel)``; a fresh position (no open block: the stream's start,
    after a text's SEP or a finished audio block) is all zeros.
    """
    ids = _as_int_array(ids)
    L = len(ids)
    out = np.zeros((L + 1, NUM_POSITION_FIELDS), dtype=np.int64)
    if L == 0:
        return out
    cls = _classes_of(ids, token_classes)
    W = audio_channels
    for s, e, kind, closed in stream_blocks(cls, W):
        n = e - s
        rows = out[s + 1 : e + 1]  # positions of tokens s+1 .. e-1, then the pending position e
        j = np.arange(1, n + 1)
        if kind == TEXT:
            rows[:, 0], rows[:, 3] = TEXT, j
        elif kind == AUDIO:
            rows[:, 0], rows[:, 1], rows[:, 3] = AUDIO, j // W, j % W
        else:
            t, r, c, pending = _image_positions(cls[s:e])
            rows[:, 0] = IMAGE
            rows[:-1, 1], rows[:-1, 2], rows[:-1, 3] = t[1:], r[1:], c[1:]
            rows[-1, 1:] = pending
        if closed:
            rows[-1] = 0
    return out


def _batched(input_ids: Any, attention_mask: Any, fn, width: int, shift: bool) -> np.ndarray:
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2:
        raise ValueError(f"input_ids must have shape (batch, length), got {ids.shape}")
    B, L = ids.shape
    out = np.zeros((B, L, width), dtype=np.int64)
    mask = None if attention_mask is None else np.asarray(attention_mask).reshape(B, L).astype(bool)
    for b in range(B):
        if mask is None or mask[b].all():
            rows = fn(ids[b])
            out[b] = rows[1:] if shift else rows
        else:
            keep = mask[b]
            rows = fn(ids[b][keep])
            out[b, keep] = rows[1:] if shift else rows
    return out


def batch_context_ids(
    input_ids: Any, token_classes: np.ndarray, audio_channels: int, attention_mask: Any = None
) -> np.ndarray:
    """HF-aligned ``context_ids`` ``(B, L, 6)`` of a batch: row k = context of position k + 1.

    Each row is its own stream made of its tokens with ``attention_mask == 1`` (left- or right-padded
    rows give the same per-token contexts as the row alone); masked positions get all-zero contexts.
    """
    return _batched(
        input_ids,
        attention_mask,
        lambda row: stream_contexts(row, token_classes, audio_channels),
        NUM_CONTEXT_SLOTS,
        shift=True,
    )


def batch_grid_positions(
    input_ids: Any, token_classes: np.ndarray, audio_channels: int, attention_mask: Any = None
) -> np.ndarray:
    """HF-aligned grid positions ``(B, L, 4)`` of a batch: row k = ``(kind, t, r, c)`` of position k + 1
    (padding handled as in :func:`batch_context_ids`)."""
    return _batched(
        input_ids,
        attention_mask,
        lambda row: stream_grid_positions(row, token_classes, audio_channels),
        NUM_POSITION_FIELDS,
        shift=True,
    )


def batch_windows(
    input_ids: Any, token_classes: np.ndarray, audio_channels: int, attention_mask: Any = None
) -> np.ndarray:
    """v1 3×3 windows ``(B, L, 9)`` of a batch (row k = window of token k; masked positions zero)."""
    return _batched(
        input_ids,
        attention_mask,
        lambda row: stream_windows(row, token_classes, audio_channels),
        NUM_WINDOW_CELLS,
        shift=False,
    )


# ----------------------------------------------------------------------------------------------------
# The tokenizer's grid path
# ----------------------------------------------------------------------------------------------------
def grid_block_contexts(grid: np.ndarray) -> np.ndarray:
    """Slots 0-4 of the context of every cell of a ``(T, H, W)`` block grid, by array slicing.

    Returns ``(T*H*W, 5)`` in raster order; each row is the continuation context of that cell
    (the block's first cell is handled by :func:`assemble_blocks`).
    """
    grid = np.ascontiguousarray(grid, dtype=np.int64)
    out = np.zeros((*grid.shape, NUM_CONTEXT_SLOTS), dtype=np.int64)
    _write_grid_contexts(grid, out)
    return out[..., :5].reshape(-1, 5)


def _write_grid_contexts(X: np.ndarray, blk: np.ndarray) -> None:
    """Write slots 0-4 of every cell of grid ``X (T, H, W)`` straight into ``blk (T, H, W, 6)`` (a contiguous view
    of the zero-initialised output, any dtype holding the ids). The block's first cell is left untouched (it
    belongs to the state before the block).

    In raster order every slot is the grid shifted by a constant offset (``S = H * W`` cells per frame):
    X(t-1, r-1, c) = ``x[p - S - W]``, X(t-1, r, c) = ``x[p - S]``, X(t-1, r+1, c) = ``x[p - S + W]``,
    X(t, r-1, c-1) = ``x[p - W - 1]``, X(t, r-1, c) = ``x[p - W]``: one long copy per slot, then the cells whose
    neighbour lies outside the frame (first row, first column, last row) are zeroed again.
    """
    T, H, W = X.shape
    n, S = X.size, H * W
    x = X.reshape(-1)
    rows = blk.reshape(n, NUM_CONTEXT_SLOTS)
    if T > 1:
        rows[S:, 1] = x[: n - S]
    if H == 1:  # one row per frame (text, audio): only X(t-1, 0, c) exists
        return
    if T > 1:
        rows[S + W :, 0] = x[: n - S - W]
        rows[S - W :, 2] = x[: n - S + W]
        blk[1:, 0, :, 0] = 0
        blk[:, H - 1, :, 2] = 0  # H > 1: never the block's first cell
    rows[W + 1 :, 3] = x[: n - W - 1]
    rows[W:, 4] = x[: n - W]
    blk[1:, 0, :, 3] = 0
    blk[1:, 0, :, 4] = 0
    blk[:, 1:, 0, 3] = 0


def _work_dtype(grids: Sequence[np.ndarray]) -> np.dtype:
    """The narrowest dtype holding every id of ``grids`` (uint8 / uint16 grids are not scanned), else int64."""
    top = 0
    for grid in grids:
        if not grid.size:
            continue
        if grid.dtype in (np.uint8, np.uint16):
            top = max(top, int(np.iinfo(grid.dtype).max))
        elif grid.dtype.kind in "iu" and int(grid.min()) >= 0:
            top = max(top, int(grid.max()))
        else:
            return np.dtype(np.int64)
    return np.dtype(np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.int64)


def assemble_blocks(
    blocks: Sequence[tuple[int, np.ndarray]], hf_aligned: bool = False, dtype: Any = np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate tokenizer blocks into one stream and its contexts of positions ``0 .. L``.

    ``blocks`` are ``(kind, grid)`` pairs with ``grid`` of shape ``(T, H, W)`` as the codecs produce
    them: text ``(1, 1, n)`` (ending with SEP, except an unterminated last text), image ``(F, H, W+1)``
    whose frames end with SEP, audio ``(T+1, 1, C)`` (at least one time step) ending with its
    terminator frame. A text ending with SEP and an audio block close (the next position is fresh); an
    unterminated text continues (slot 5 only); an image stays open, so the next position gets the
    image's continuation context at ``(F, 0, 0)``, as in the streaming rule of DESIGN §5.

    ``hf_aligned=True`` returns the contexts of positions ``1 .. L`` only (``L`` rows, the tokenizer's
    ``context_ids``). Everything is computed in the narrowest dtype holding the ids (uint8 for the published
    vocabulary: grids given in uint8 are used as they are) and cast once to ``dtype`` (``None``: left in that
    narrow dtype).
    """
    grids = [np.asarray(grid) for _, grid in blocks]
    work = _work_dtype(grids)
    L = sum(grid.size for grid in grids)
    ids = np.empty(L, dtype=work)
    out = np.zeros((L + 1, NUM_CONTEXT_SLOTS), dtype=work)
    s = 0
    for (kind, _), grid in zip(blocks, grids):
        n = grid.size
        e = s + n
        if n == 0:
            continue
        X = ids[s:e].reshape(grid.shape)
        X[...] = grid
        out[s + 1 : e + 1, 5] = ids[s:e]
        if n > 1:
            _write_grid_contexts(X, out[s:e].reshape(*grid.shape, NUM_CONTEXT_SLOTS))
        if kind == IMAGE:
            T, H, _ = grid.shape
            out[e, 1] = X[T - 1, 0, 0]  # continuation at (T, 0, 0): X(T-1, 0, 0), X(T-1, 1, 0)
            out[e, 2] = X[T - 1, 1, 0] if H > 1 else 0
        elif kind == AUDIO or ids[e - 1] == SEP_ID:
            out[e, 5] = 0
        s = e
    contexts = out[1:] if hf_aligned else out
    if dtype is None:
        return ids, contexts
    return ids.astype(dtype), contexts.astype(dtype)


# ----------------------------------------------------------------------------------------------------
# Incremental tracker (generation)
# ----------------------------------------------------------------------------------------------------
def _cell(frame: list[list[int]], r: int, c: int) -> int:
    if 0 <= r < len(frame) and c >= 0:
        row = frame[r]
        if c < len(row):
            return row[c]
    return 0


class LayoutTracker:
    """Incremental layout state of one stream: :meth:`push` a token, read the next position's context.

    Each push costs O(1) (amortised). Only the current and the previous frame of the open block are
    kept. Any stream, however malformed, is accepted (ids outside the vocabulary are an error).
    """

    __slots__ = ("_W", "_classes", "c", "context", "cur", "kind", "prev", "prev_frame", "r", "seen_term", "t")

    def __init__(self, token_classes: Sequence[int] | np.ndarray, audio_channels: int) -> None:
        self._classes = [int(v) for v in token_classes]
        self._W = int(audio_channels)
        self.reset()

    def reset(self) -> None:
        """Back to the fresh state (no open block)."""
        self.kind = FRESH
        self.t = self.r = self.c = 0
        self.prev = 0
        self.prev_frame: list[list[int]] = []
        self.cur: list[list[int]] = [[]]
        self.seen_term = False
        #: context of the next position (6 ints)
        self.context: list[int] = [0] * NUM_CONTEXT_SLOTS

    def clone(self) -> LayoutTracker:
        """An independent copy; closed frames and rows are shared (they are never mutated)."""
        new = LayoutTracker.__new__(LayoutTracker)
        new._classes, new._W = self._classes, self._W
        new.kind, new.t, new.r, new.c = self.kind, self.t, self.r, self.c
        new.prev, new.seen_term, new.prev_frame = self.prev, self.seen_term, self.prev_frame
        new.cur = self.cur[:-1] + [self.cur[-1][:]]
        new.context = self.context[:]
        return new

    def push(self, token: int) -> list[int]:
        """Place ``token``; returns its v1 3×3 window (9 ints). ``self.context`` is then the next context."""
        token = int(token)
        if not 0 <= token < len(self._classes):
            raise ValueError(f"token id {token} is outside the vocabulary (size {len(self._classes)})")
        cls = self._classes[token]
        kind = self.kind
        if kind == FRESH or (kind == IMAGE and self.r == 0 and self.c == 0 and self.t > 0 and cls in (BYTE, LEVEL)):
            kind = self.kind = KIND_OF_CLASS[cls]
            self.t = self.r = self.c = 0
            self.prev_frame = []
            self.cur = [[]]
            self.seen_term = False
        t, r, c, cur = self.t, self.r, self.c, self.cur
        row = cur[r]
        window = [_cell(cur, r - 1, c - 1), _cell(cur, r - 1, c), _cell(cur, r - 1, c + 1),
                  row[c - 1] if c > 0 else 0, token, 0, 0, 0, 0]  # fmt: skip
        row.append(token)
        if kind == TEXT:
            if cls == SEP:
                self.kind = FRESH
            else:
                self.c = c + 1
        elif kind == IMAGE:
            if cls == ROW:
                self.r, self.c = r + 1, 0
                cur.append([])
            elif cls == SEP:
                self.t, self.r, self.c = t + 1, 0, 0
                self.prev_frame, self.cur = cur, [[]]
            else:
                self.c = c + 1
        else:
            if cls <= SEP:
                self.seen_term = True
            c += 1
            if c == self._W:
                if self.seen_term:
                    self.kind = FRESH
                else:
                    self.t, self.c = t + 1, 0
                    self.prev_frame, self.cur = cur, [[]]
            else:
                self.c = c
        self.prev = token
        if self.kind == FRESH:
            self.context = [0] * NUM_CONTEXT_SLOTS
        else:
            t, r, c, pf, cur = self.t, self.r, self.c, self.prev_frame, self.cur
            self.context = [_cell(pf, r - 1, c), _cell(pf, r, c), _cell(pf, r + 1, c),
                            _cell(cur, r - 1, c - 1), _cell(cur, r - 1, c), token]  # fmt: skip
        return window

    def position(self) -> tuple[str, int, int, int]:
        """``(kind, t, r, c)`` of the pending position (kind ``"fresh"`` when no block is open)."""
        return KIND_NAMES[self.kind], self.t, self.r, self.c

    def grid_position(self) -> list[int]:
        """The pending position as a :func:`stream_grid_positions` row (all zeros when fresh)."""
        if self.kind == FRESH:
            return [0] * NUM_POSITION_FIELDS
        return [self.kind, self.t, self.r, self.c]


class BatchLayoutTracker:
    """One :class:`LayoutTracker` per batch row, with padding and beam reordering.

    Args:
        token_classes: the vocabulary's token classes.
        audio_channels: frame width of audio blocks.
        batch_size: number of rows.
    """

    def __init__(self, token_classes: Sequence[int] | np.ndarray, audio_channels: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        proto = LayoutTracker(token_classes, audio_channels)
        self.rows = [proto] + [proto.clone() for _ in range(batch_size - 1)]

    def __len__(self) -> int:
        return len(self.rows)

    def push(self, tokens: Sequence[int], mask: Sequence[int] | None = None) -> list[list[int]]:
        """Place one token per row (rows with ``mask == 0`` are left untouched); returns their windows."""
        if len(tokens) != len(self.rows):
            raise ValueError(f"expected {len(self.rows)} tokens, got {len(tokens)}")
        windows = []
        for i, (tracker, token) in enumerate(zip(self.rows, tokens)):
            if mask is not None and not mask[i]:
                windows.append([0] * NUM_WINDOW_CELLS)
            else:
                windows.append(tracker.push(token))
        return windows

    def push_sequence(self, input_ids: Any, attention_mask: Any = None) -> None:
        """Feed a whole ``(B, L)`` prompt (masked positions skipped)."""
        ids = np.asarray(input_ids)
        mask = None if attention_mask is None else np.asarray(attention_mask).astype(bool)
        for b, tracker in enumerate(self.rows):
            row = ids[b] if mask is None else ids[b][mask[b]]
            for token in row.tolist():
                tracker.push(token)

    def contexts(self) -> list[list[int]]:
        """Context of each row's next position, ``(B, 6)`` as nested lists."""
        return [tracker.context for tracker in self.rows]

    def grid_positions(self) -> list[list[int]]:
        """Grid position ``(kind, t, r, c)`` of each row's next position, ``(B, 4)`` as nested lists."""
        return [tracker.grid_position() for tracker in self.rows]

    def reorder(self, indices: Sequence[int] | torch.Tensor) -> None:
        """Select / duplicate rows (beam search): row i becomes a copy of old row ``indices[i]``."""
        used: set[int] = set()
        new_rows = []
        for i in (int(v) for v in indices):
            if i in used:
                new_rows.append(self.rows[i].clone())
            else:
                used.add(i)
                new_rows.append(self.rows[i])
        self.rows = new_rows

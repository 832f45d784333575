"""The input embedding of PixelBytes models: ONE module, :class:`PxByInputEmbedder`, used by every path.

What a token's input vector is made of (DESIGN §6):

* its neighbourhood, embedded by one of ``embedding="pxby6"`` (:class:`PxBy6Embedding`, the aPxBy 6-slot
  context), ``"window3x3"`` (:class:`WindowEmbedding`, the v1 ``PxByEmbed``) or ``"center"``
  (:class:`CenterEmbedding`, the token alone);
* ``+`` where the next token lands (:class:`GridPositionEmbedding`, ``grid_position_size > 0``);
* ``+`` the caption memory (:class:`CaptionMemory`, ``caption_memory_buckets > 0``).

:meth:`PxByInputEmbedder.forward` embeds whole sequences (prompts, training windows, the window of a
bidirectional encoder), deriving the contexts and grid positions from ``input_ids`` when they are not given;
:meth:`PxByInputEmbedder.step` embeds one new token per row from the generation cache (its layout tracker and
caption-memory state), O(1) per token. Both give the same vectors (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .configuration_pixelbytes import NUM_CONTEXT_SLOTS, PxByConfig
from .layout import IMAGE, batch_context_ids, batch_grid_positions, batch_windows
from .vocabulary import BYTE, token_classes_for_sizes

if TYPE_CHECKING:
    from .generation_pixelbytes import PxByCache

__all__ = [
    "CaptionMemory",
    "CenterEmbedding",
    "EmbedderOutput",
    "GridPositionEmbedding",
    "PxBy6Embedding",
    "PxByInputEmbedder",
    "WindowEmbedding",
    "caption_prefix",
    "embedding_rows",
]


def embedding_rows(config: PxByConfig) -> int:
    """Rows of the embedding tables: the vocabulary, plus the mask id ``vocab_size`` for masked diffusion."""
    masked = config.objective == "diffusion" and config.diffusion_scheme == "masked"
    return config.vocab_size + (1 if masked else 0)


def caption_prefix(ids: np.ndarray, token_classes: np.ndarray, start: int) -> np.ndarray:
    """The tokens before position ``start`` of a stream that the caption memory from ``start`` on depends on.

    That is the latest text segment before ``start`` (its bytes up to ``start``), followed by one pad id when the
    segment ended before ``start`` (so a text segment that starts at ``start`` is not merged with it). A training
    window ``ids[start:]`` with this prefix gets the caption memory it has in the whole stream."""
    head = np.asarray(ids[:start], dtype=np.int64)
    is_text = np.asarray(token_classes)[head] == BYTE
    if not is_text.any():
        return np.zeros(0, dtype=np.int64)
    end = int(np.flatnonzero(is_text)[-1]) + 1
    non_text = np.flatnonzero(~is_text[:end])
    begin = int(non_text[-1]) + 1 if len(non_text) else 0
    prefix = head[begin:end]
    return prefix if end == start else np.append(prefix, 0)


class WindowEmbedding(nn.Module):
    """v1 ``PxByEmbed``: per-cell ``Embedding(V, E_int)`` of the 3×3 window (``E_int = max(9, E // 9)``), gate
    ``σ(α)·emb + (1 − σ(α))·conv3×3(emb)`` (``σ(α)·emb`` without the conv), channel-major flatten, linear to
    ``E``, LayerNorm. ``context_ids (B, L, 9)`` = the row-major window of each token."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        E = config.embed_size
        self.inner_size = inner = max(9, E // 9)
        self.alpha = nn.Parameter(torch.rand(1, 1, 3, 3))
        self.linear_embedding = nn.Embedding(embedding_rows(config), inner)
        self.patch_embedding = nn.Conv2d(inner, inner, 3, stride=1, padding=1) if config.window_conv else None
        self.projection = nn.Linear(inner * 9, E)
        self.norm = nn.LayerNorm(E)

    def forward(self, context_ids: torch.LongTensor) -> torch.Tensor:
        B, L, _ = context_ids.shape  # (B, L, 9)
        x = self.linear_embedding(context_ids.reshape(B * L, 3, 3)).permute(0, 3, 1, 2)  # (B·L, E_int, 3, 3)
        gate = torch.sigmoid(self.alpha)
        if self.patch_embedding is not None:
            x = gate * x + (1 - gate) * self.patch_embedding(x)
        else:
            x = gate * x
        return self.norm(self.projection(x.reshape(B, L, -1)))  # (B, L, E)


class CenterEmbedding(nn.Module):
    """The v1 "center" baseline: ``Embedding(V, E)`` of the token itself (``context_ids (B, L, 1)``)."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(embedding_rows(config), config.embed_size)

    def forward(self, context_ids: torch.LongTensor) -> torch.Tensor:
        return self.token_embedding(context_ids[..., 0])


class PxBy6Embedding(nn.Module):
    """aPxBy embedding: one ``Embedding(V, E/6, padding_idx=0)`` applied to the 6 context slots, concatenated."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        self.slot_embedding = nn.Embedding(
            embedding_rows(config), config.embed_size // NUM_CONTEXT_SLOTS, padding_idx=0
        )

    def forward(self, context_ids: torch.LongTensor) -> torch.Tensor:
        B, L, _ = context_ids.shape  # (B, L, 6)
        return self.slot_embedding(context_ids).reshape(B, L, -1)  # (B, L, 6·E/6)


class GridPositionEmbedding(nn.Module):
    """Where the next token lands, as an ``(B, L, E)`` vector added to the token embedding.

    ``kind[k] + [k is an image position]·(frame[t] + row[r] + column[c])`` for rows ``(kind, t, r, c)`` of
    :func:`~pixelbytes.layout.stream_grid_positions`; t, r, c are clamped to ``grid_position_size - 1``.
    """

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        P, E = config.grid_position_size, config.embed_size
        self.max_index = P - 1
        self.kind = nn.Embedding(4, E)  # fresh / text / image / audio
        self.frame = nn.Embedding(P, E)
        self.row = nn.Embedding(P, E)
        self.column = nn.Embedding(P, E)

    def forward(self, grid_positions: torch.LongTensor) -> torch.Tensor:
        kind = grid_positions[..., 0]  # (B, L)
        t, r, c = grid_positions[..., 1:].clamp(0, self.max_index).unbind(-1)  # (B, L) each
        image = (kind == IMAGE).unsqueeze(-1)  # (B, L, 1)
        return self.kind(kind) + image * (self.frame(t) + self.row(r) + self.column(c))  # (B, L, E)


class CaptionMemory(nn.Module):
    """The mean embedding of the hashed byte trigrams of the latest text segment, at every position (causal).

    A text segment is a maximal run of byte tokens. At position t the memory averages the trigrams
    ``(b[t-2], b[t-1], b[t])`` of the segment holding t or, past its end, of the last segment before t (zero
    before the first trigram). Added to the input embedding, it hands every pixel the caption's words directly;
    see ``PxByConfig.caption_memory_buckets``. With ``caption_memory_cell_frames`` the output is
    ``m ⊙ (1 + cell[t, r, c])`` at the grid cell where the next token lands (one more vector for non-image
    positions).
    :meth:`forward` runs whole sequences, :meth:`step` one token per row on the state kept in a
    :class:`~pixelbytes.generation_pixelbytes.PxByCache`.
    """

    _HASH = 2_654_435_761  # Knuth's multiplicative hash constant

    def __init__(self, config: PxByConfig, token_classes: np.ndarray) -> None:
        super().__init__()
        self.buckets, self.num_bytes = config.caption_memory_buckets, config.num_bytes
        self.table = nn.Embedding(self.buckets, config.embed_size)
        self.side, self.frames = config.grid_position_size, config.caption_memory_cell_frames
        self.num_cells = self.frames * self.side**2
        # a bare parameter, not an nn.Embedding, so that only PxByPreTrainedModel._init_weights' N(0, 1) sets it
        self.cells = (
            nn.Parameter(torch.empty(self.num_cells + 1, config.embed_size)) if self.frames else None
        )  # (N·P² + 1, E): one vector per grid cell of each frame, the last for non-image positions
        self.byte_offset = int(np.flatnonzero(token_classes == BYTE)[0])
        self._text_ids = frozenset(np.flatnonzero(token_classes == BYTE).tolist())
        # a plain tensor, not a buffer: from_pretrained builds modules on the meta device and loads only weights
        self._is_text = torch.from_numpy(token_classes == BYTE)  # (V,) bool

    def bucket(self, first: torch.Tensor, second: torch.Tensor, third: torch.Tensor) -> torch.LongTensor:
        """Bucket of the byte trigram ``(first, second, third)`` (byte values, any shape)."""
        n = self.num_bytes
        return ((first * n + second) * n + third) * self._HASH % 2**32 % self.buckets

    def per_cell(self, memory: torch.Tensor, grid_positions: torch.LongTensor | None) -> torch.Tensor:
        """``memory (…, E)`` modulated by the cell of ``grid_positions (…, 4)`` (unchanged without ``cells``)."""
        if self.cells is None:
            return memory
        if grid_positions is None:
            raise ValueError("caption_memory_cell_frames needs the grid positions of the tokens")
        kind, frame, row, column = grid_positions.unbind(-1)  # (…) each
        top = self.side - 1
        cell = (frame.clamp(0, self.frames - 1) * self.side + row.clamp(0, top)) * self.side + column.clamp(0, top)
        cell = torch.where(kind == IMAGE, cell, self.num_cells)
        return memory + memory * nn.functional.embedding(cell, self.cells)  # (…, E)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        need_state: bool = False,
        grid_positions: torch.LongTensor | None = None,
        caption_prefix_ids: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``(B, L, E)`` memory of every position (per cell: needs ``grid_positions``) and, with ``need_state``,
        the generation state after each row's last real token: ``[total (B, E), count (B,), recent bytes (B, 2)
        (-1 = none), memory (B, E)]`` (the memory before the per-cell modulation).

        ``caption_prefix_ids (B, P)`` (a training window cut from a longer sample): the stream tokens before the
        window that the memory depends on (:func:`caption_prefix`), left-padded with 0; the window's memory then
        equals the one it has in the whole sample."""
        P = 0 if caption_prefix_ids is None else caption_prefix_ids.shape[1]
        if P:
            input_ids = torch.cat((caption_prefix_ids.to(input_ids), input_ids), 1)  # (B, P + L)
            if attention_mask is not None:
                attention_mask = nn.functional.pad(attention_mask, (P, 0), value=1)
        memory, state = self._memory(input_ids, attention_mask, need_state)
        return self.per_cell(memory[:, P:], grid_positions), state

    def _memory(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None, need_state: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The memory of every position before the per-cell modulation, and the generation state."""
        B, L = input_ids.shape
        text = self._is_text.to(input_ids.device)[input_ids]  # (B, L)
        if attention_mask is not None:
            text = text & attention_mask.bool()
        value = torch.where(text, input_ids - self.byte_offset, 0)  # (B, L) byte values
        before1 = nn.functional.pad(text, (1, 0))[:, :L]  # (B, L): is t-1 text
        before2 = nn.functional.pad(text, (2, 0))[:, :L]
        ends_trigram = text & before1 & before2  # (B, L)
        buckets = self.bucket(nn.functional.pad(value, (2, 0))[:, :L], nn.functional.pad(value, (1, 0))[:, :L], value)
        total = (self.table(buckets) * ends_trigram.unsqueeze(-1)).cumsum(1)  # (B, L, E)
        count = ends_trigram.long().cumsum(1)  # (B, L)
        position = torch.arange(L, device=input_ids.device).expand(B, L)
        segment_start = torch.where(text & ~before1, position, -1).cummax(1).values  # (B, L), -1 before any text
        before_segment = (segment_start - 1).clamp(min=0)
        has_before = (segment_start >= 1).unsqueeze(-1)  # (B, L, 1)
        total = total - total.gather(1, before_segment.unsqueeze(-1).expand_as(total)) * has_before
        count = count - count.gather(1, before_segment) * has_before.squeeze(-1)
        memory = total / count.clamp(min=1).unsqueeze(-1).to(total.dtype)  # (B, L, E)
        if not need_state:
            return memory, None
        last = L - 1 if attention_mask is None else (attention_mask.long() * position).argmax(1)  # (B,) last real
        rows = torch.arange(B, device=input_ids.device)
        last = torch.as_tensor(last, device=input_ids.device).expand(B)
        recent = torch.stack(
            (
                torch.where(text[rows, last] & before1[rows, last], value[rows, (last - 1).clamp(min=0)], -1),
                torch.where(text[rows, last], value[rows, last], -1),
            ),
            1,
        )  # (B, 2)
        return memory, [total[rows, last], count[rows, last], recent, memory[rows, last]]

    def step(self, ids: list[int], cache: PxByCache, grid_positions: torch.LongTensor | None = None) -> torch.Tensor:
        """The ``(B, E)`` memory after one new token per row (``ids``, landing on ``grid_positions (B, 4)``),
        updating the state in ``cache``."""
        total, count, recent, memory = cache.states["caption_memory"]
        has_text = any(i in self._text_ids for i in ids)
        if not has_text and cache.caption_memory_idle:
            return self.per_cell(memory, grid_positions)  # past every segment's end: the memory stays
        new = torch.tensor(ids, dtype=torch.long, device=total.device)  # (B,)
        text = self._is_text.to(new.device)[new]
        value = torch.where(text, new - self.byte_offset, -1)
        second, first = recent.unbind(1)  # the bytes at t-2 and t-1 (-1 = none)
        fresh = (text & (first < 0)).unsqueeze(-1)  # (B, 1): a new segment starts
        total, count = total.masked_fill(fresh, 0.0), count.masked_fill(fresh.squeeze(-1), 0)
        ends_trigram = text & (first >= 0) & (second >= 0)  # (B,)
        bucket = self.bucket(second.clamp(min=0), first.clamp(min=0), value.clamp(min=0))
        total = total + self.table(bucket) * ends_trigram.unsqueeze(-1)  # (B, E)
        count = count + ends_trigram
        memory = total / count.clamp(min=1).unsqueeze(-1).to(total.dtype)
        cache.states["caption_memory"] = [total, count, torch.stack((torch.where(text, first, -1), value), 1), memory]
        cache.caption_memory_idle = not has_text
        return self.per_cell(memory, grid_positions)


@dataclass
class EmbedderOutput:
    """What :meth:`PxByInputEmbedder.forward` returns.

    Attributes:
        embeddings: ``(B, L, E)`` input vectors (only the ``span`` positions when a span was asked for).
        context_ids: the contexts of ALL positions (given or derived), for objectives that read them.
        memory_state: the caption memory's generation state (``need_state`` and a caption memory), else None.
    """

    embeddings: torch.Tensor
    context_ids: torch.LongTensor
    memory_state: list[torch.Tensor] | None = None


class PxByInputEmbedder(nn.Module):
    """Token neighbourhood + grid position + caption memory: the input of the backbone, for every path.

    Submodules: ``tokens`` (the configured neighbourhood embedding), ``grid`` (or None) and ``caption_memory``
    (or None). The layout (contexts, windows, grid positions) is derived from ids with the vocabulary's token
    classes, each row being its own stream; padded positions get zeros.
    """

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        kinds = {"pxby6": PxBy6Embedding, "window3x3": WindowEmbedding, "center": CenterEmbedding}
        self.kind = config.embedding
        self.tokens = kinds[config.embedding](config)
        self.tokens_rows = embedding_rows(config)  # ids the neighbourhood tables accept (the mask id included)
        self.grid = GridPositionEmbedding(config) if config.grid_position_size else None
        self.token_classes = token_classes_for_sizes(config.num_bytes, config.num_colors, config.num_levels)
        self.audio_channels = config.audio_channels
        self.caption_memory = CaptionMemory(config, self.token_classes) if config.caption_memory_buckets else None
        #: the one-token step needs the layout tracker unless it embeds the bare token and nothing else
        self.tracks_layout = self.kind != "center" or self.grid is not None

    # ------------------------------------------------------------------------------------------ layout
    def derive_context_ids(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """``context_ids`` from ids alone: HF-aligned ``(B, L, 6)`` contexts (pxby6), ``(B, L, 9)`` windows of
        each token (window3x3) or the token itself ``(B, L, 1)`` (center); padded positions all zero."""
        if self.kind == "center":
            ids = input_ids if attention_mask is None else input_ids * (attention_mask != 0)
            return ids.unsqueeze(-1)
        return self.layout_array(batch_windows if self.kind == "window3x3" else batch_context_ids,
                                 input_ids, attention_mask)  # fmt: skip

    def derive_grid_positions(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """HF-aligned ``(B, L, 4)`` grid positions ``(kind, t, r, c)`` of the next tokens, from ids alone."""
        return self.layout_array(batch_grid_positions, input_ids, attention_mask)

    def layout_array(self, fn: Any, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Run a :mod:`~pixelbytes.layout` batch function on ``input_ids`` (numpy, on the CPU) → a tensor."""
        mask = None if attention_mask is None else attention_mask.detach().cpu().numpy()
        out = fn(input_ids.detach().cpu().numpy(), self.token_classes, self.audio_channels, mask)
        return torch.from_numpy(out).to(input_ids.device)

    # ------------------------------------------------------------------------------------------ paths
    def forward(
        self,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        grid_positions: torch.LongTensor | None = None,
        caption_prefix_ids: torch.LongTensor | None = None,
        span: slice | None = None,
        need_state: bool = False,
    ) -> EmbedderOutput:
        """Embed whole sequences ``input_ids (B, L)``.

        ``context_ids`` / ``grid_positions`` are derived when absent; ``caption_prefix_ids`` carry what a
        training window needs of the stream before it (:func:`caption_prefix`); ``span`` embeds only those
        positions (the window a bidirectional encoder reads); ``need_state`` also returns the caption memory's
        generation state."""
        if context_ids is None:
            context_ids = self.derive_context_ids(input_ids, attention_mask)
        if self.grid is not None and grid_positions is None:
            grid_positions = self.derive_grid_positions(input_ids, attention_mask)
        span = span or slice(None)
        x = self.tokens(context_ids[:, span])  # (B, L', E)
        if self.grid is not None:
            x = x + self.grid(grid_positions[:, span])
        memory_state = None
        if self.caption_memory is not None:
            memory, memory_state = self.caption_memory(
                input_ids, attention_mask, need_state, grid_positions, caption_prefix_ids
            )
            x = x + memory[:, span]
        return EmbedderOutput(x, context_ids, memory_state)

    def step(
        self,
        ids: list[int],
        cache: PxByCache,
        context_ids: torch.LongTensor | None = None,
        grid_positions: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """Embed one new token per row (``ids``, B ints) on top of ``cache`` → ``(B, E)``; advances the cache's
        layout tracker and caption memory. ``context_ids (B, S)`` / ``grid_positions (B, 4)`` override the
        tracked ones (a cached call that passes them)."""
        device = cache.device
        if self.tracks_layout:
            tracker = cache.tracker
            windows = tracker.push(ids)
            if context_ids is None and self.kind != "center":
                rows = windows if self.kind == "window3x3" else tracker.contexts()
                context_ids = torch.from_numpy(np.array(rows, dtype=np.int64)).to(device)  # (B, S)
            if self.grid is not None and grid_positions is None:
                grid_positions = torch.from_numpy(np.array(tracker.grid_positions(), dtype=np.int64)).to(device)
        if context_ids is None:
            context_ids = torch.tensor(ids, dtype=torch.long, device=device).unsqueeze(-1)  # (B, 1): the token
        if self.kind == "pxby6":
            x = nn.functional.embedding(context_ids, self.tokens.slot_embedding.weight).flatten(1)  # (B, E)
        else:
            x = self.tokens(context_ids.unsqueeze(1)).squeeze(1)  # (B, E)
        if self.grid is not None:
            x = x + self.grid(grid_positions)
        if self.caption_memory is not None:
            x = x + self.caption_memory.step(ids, cache, grid_positions)
        return x

    _TABLES = {"pxby6": "slot_embedding", "window3x3": "linear_embedding", "center": "token_embedding"}

    def get_input_embeddings(self) -> nn.Embedding:
        """The ``nn.Embedding`` over token ids of the neighbourhood embedding."""
        return getattr(self.tokens, self._TABLES[self.kind])

    def set_input_embeddings(self, table: nn.Embedding) -> None:
        """Replace that table (same width; more rows only with a matching vocabulary)."""
        current = self.get_input_embeddings()
        if not isinstance(table, nn.Embedding) or table.embedding_dim != current.embedding_dim:
            raise ValueError(
                f"the input embedding must be an nn.Embedding of width {current.embedding_dim}, got {table!r}"
            )
        setattr(self.tokens, self._TABLES[self.kind], table)

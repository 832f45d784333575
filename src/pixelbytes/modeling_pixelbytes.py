"""``PxBySequenceModel``: embeddings, backbones and heads of PixelBytes models (DESIGN §6).

Input/output contract (labels are ``(B, L)`` token ids, -100 ignored; ``context_ids[:, k]`` is the
context of position ``k + 1`` and ``logits[:, k]`` predicts token ``k + 1``):

* ``objective="next_token"``: ``logits (B, L, V)``, loss = HF ``ForCausalLM`` (shift inside);
* ``objective="context"``: ``context_logits (B, L, 6, V)`` (row k predicts slots 0-4 of
  ``context_ids[k + 1]`` and token ``k + 1`` in slot 5), loss = mean cross-entropy over the 6 slots;
  ``logits`` = the slot-5 head, so ``generate()`` works unchanged;
* ``objective="diffusion"`` (``diffusion_scheme="masked"``, bidirectional backbones): absorbing-state masked
  diffusion; ``logits[:, k]`` scores token k itself; the mask id is ``vocab_size`` (one more embedding row),
  only content tokens are masked, the layout comes from the clean structure and every context value that
  refers to a masked token is the mask id; loss on the masked positions; :meth:`PxBySequenceModel.infill`
  fills chosen positions;
* ``objective="diffusion"``, ``diffusion_scheme="embedding_noise"`` (the original aPxBy scheme, pxby6 only):
  Gaussian noise on the embeddings of chosen context slots, ``x = (1 - α)·N(0, 1) + α·x`` with
  ``α = 1 - t / num_diffusion_steps``; ``context_logits (B, L, 6, V)`` reconstruct every slot of
  ``context_ids`` (no shift) and ``logits`` = slot 5 = token k itself; loss = mean cross-entropy over the 6
  slots of every labelled row, noised or not (as the original); ``diffusion_step`` (t) and a token or slot
  ``diffusion_mask`` control the noise, nothing noised = the clean forward of converted checkpoints;
* bidirectional backbones ("window encoders", v1): the backbone reads ``input_ids[:, :-1]`` and its
  last position predicts ``input_ids[:, -1]``, the only label that counts; generation re-encodes the
  last ``window_size`` tokens at every step (no cache).

With ``grid_position_size > 0`` the embedding also gets WHERE each next token lands: ``grid_positions``
``(B, L, 4)`` HF-aligned rows ``(kind, t, r, c)`` (:func:`~pixelbytes.layout.batch_grid_positions`), derived
like the contexts when absent and tracked by the cache during generation.

When ``context_ids`` is absent it is derived from ``input_ids`` (and ``attention_mask``) by the layout
engine, each row being its own stream: ``(B, L, 6)`` HF-aligned contexts (``embedding="pxby6"``),
``(B, L, 9)`` windows of each token (``"window3x3"``, NOT shifted) or the token itself ``(B, L, 1)``
(``"center"``). Padded positions never touch the state of real tokens: masked rows are packed before the
LSTM, padded keys are masked and rotary positions count real tokens only (attention), padded positions are
moved before the real ones and zeroed (Mamba). Backbones other than the LSTM live in
:mod:`backbones_pixelbytes`; every backbone keeps its generation state in the same
:class:`~pixelbytes.generation_pixelbytes.PxByCache`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbones_pixelbytes import (
    AttentionBackbone,
    CenterEmbedding,
    MambaBackbone,
    V1EncoderBackbone,
    V1MambaBackbone,
    WindowEmbedding,
    embedding_rows,
    init_mamba_mixer,
)
from .configuration_pixelbytes import NUM_CONTEXT_SLOTS, PxByConfig
from .generation_pixelbytes import CACHE_NAME, PxByCache, resolve_cache_argument
from .layout import IMAGE, NUM_POSITION_FIELDS, batch_context_ids, batch_grid_positions, batch_windows
from .vocabulary import BYTE, COLOUR, token_classes_for_sizes

__all__ = ["PxByModelOutput", "PxByPreTrainedModel", "PxBySequenceModel"]


@dataclass
class PxByModelOutput(ModelOutput):
    """Output of :class:`PxBySequenceModel`.

    Attributes:
        loss: training loss (when ``labels`` are given).
        logits: ``(B, L, V)`` next-token scores (the slot-5 head for the context objective).
        context_logits: ``(B, L, 6, V)`` for the context objective.
        cache: a :class:`~pixelbytes.generation_pixelbytes.PxByCache` when ``use_cache``. The field has the name
            that the installed transformers' ``generate()`` reads back (:data:`~pixelbytes.generation_pixelbytes.
            CACHE_NAME`): ``cache`` from 5.24 on, ``past_key_values`` before. ``.cache`` and ``.past_key_values``
            both work on either version (transformers >= 5.24 itself warns that ``.past_key_values`` is
            deprecated); build outputs with ``**{CACHE_NAME: cache}``.
        hidden_states: ``(B, L, H)`` backbone outputs when ``output_hidden_states``.
        next_token_accuracy: accuracy of the next-token prediction on the labelled positions.
        context_accuracy: 6-slot accuracy (context objective).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    context_logits: torch.FloatTensor | None = None
    if CACHE_NAME == "cache":
        cache: PxByCache | None = None
    else:
        past_key_values: PxByCache | None = None

        @property
        def cache(self) -> PxByCache | None:
            """The cache under its transformers >= 5.24 name (this transformers calls it ``past_key_values``)."""
            return self.past_key_values

    hidden_states: torch.FloatTensor | None = None
    next_token_accuracy: torch.FloatTensor | None = None
    context_accuracy: torch.FloatTensor | None = None

    @classmethod
    def for_token_step(cls, **values: Any) -> PxByModelOutput:
        """The same output as ``cls(**values)``, built without ``ModelOutput``'s per-field checks.

        Those checks cost about 45 µs per output, a tenth of a generated token's budget; the one-token
        generation step, whose fields are always valid tensors or ``None``, builds its output here instead
        (≈ 3 µs). Keys, attributes, indexing and ``to_tuple()`` match the regular constructor (tested)."""
        out = cls.__new__(cls)
        for key, value in values.items():
            if value is not None:
                OrderedDict.__setitem__(out, key, value)
                object.__setattr__(out, key, value)
        return out


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
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``(B, L, E)`` memory of every position (per cell: needs ``grid_positions``) and, with ``need_state``,
        the generation state after each row's last real token: ``[total (B, E), count (B,), recent bytes (B, 2)
        (-1 = none), memory (B, E)]`` (the memory before the per-cell modulation)."""
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
        out = self.per_cell(memory, grid_positions)
        if not need_state:
            return out, None
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
        return out, [total[rows, last], count[rows, last], recent, memory[rows, last]]

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


class LSTMBackbone(nn.Module):
    """Stacked LSTM: unidirectional, bidirectional (hidden/2 per direction) or the v1 "first_layer" structure.

    ``forward`` runs whole sequences (packed when rows are padded); ``step`` advances one token with a
    cell-level update per layer (far cheaper than calling ``nn.LSTM`` on one step).
    """

    #: Rows up to which ``step`` uses the fused update. Measured on the paper LSTM, 1 thread (ms/token, lstm_cell
    #: vs fused): 1 row 3.1 vs 1.3, 2 rows 3.9 vs 1.7, 3 rows 5.0 vs 2.5, 4 rows 4.4 vs 6.2, 8 rows 4.7 vs 6.4 (from
    #: 4 rows on, BLAS switches to a matrix-matrix kernel that favours nn.LSTM's own layout).
    FUSED_MAX_ROWS = 3
    _inference_key: tuple | None = None
    _inference_weights: list[tuple[torch.Tensor, torch.Tensor]]

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        E, H, n = config.embed_size, config.hidden_size, config.num_hidden_layers
        drop = config.dropout
        if config.bidirectional == "first_layer":
            modules = [nn.LSTM(E, H // 2, 1, batch_first=True, bidirectional=True)]
            if n > 1:
                modules.append(nn.LSTM(H, H, n - 1, batch_first=True, dropout=drop if n > 2 else 0.0))
        elif config.bidirectional:
            modules = [nn.LSTM(E, H // 2, n, batch_first=True, bidirectional=True, dropout=drop if n > 1 else 0.0)]
        else:
            modules = [nn.LSTM(E, H, n, batch_first=True, dropout=drop if n > 1 else 0.0)]
        self.lstms = nn.ModuleList(modules)
        self.dropout = nn.Dropout(drop)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, state: tuple[list, list] | None = None
    ) -> tuple[torch.Tensor, tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """``x (B, L, E)`` → ``(B, L, H)`` and the per-layer final states ``([h (B, H)], [c (B, H)])``.

        ``lengths`` (B,) marks right-aligned valid prefixes (padding after them is packed away).
        """
        L = x.shape[1]
        h_out: list[torch.Tensor] = []
        c_out: list[torch.Tensor] = []
        data: Any = x
        if lengths is not None:
            data = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        offset = 0
        for i, lstm in enumerate(self.lstms):
            n_state = lstm.num_layers * (2 if lstm.bidirectional else 1)
            hx = None
            if state is not None:
                hx = (
                    torch.stack(state[0][offset : offset + n_state]),
                    torch.stack(state[1][offset : offset + n_state]),
                )
            if i > 0 and lengths is None:
                data = self.dropout(data)
            data, (h, c) = lstm(data, hx)
            h_out.extend(h.unbind(0))
            c_out.extend(c.unbind(0))
            offset += n_state
        if lengths is not None:
            data, _ = pad_packed_sequence(data, batch_first=True, total_length=L)
        return data, (h_out, c_out)

    def step(self, x: torch.Tensor, state: tuple[list, list]) -> tuple[torch.Tensor, tuple[list, list]]:
        """One token for every row: ``x (B, E)`` → ``(B, H)``; unidirectional stacks only.

        With autograd on, or for more than :attr:`FUSED_MAX_ROWS` rows, this is ``torch.lstm_cell`` per layer.
        Otherwise (generating a few rows) one fused product per layer on :meth:`inference_weights`: the same cell
        update, about twice as fast on CPU."""
        lstm = self.lstms[0]
        hs, cs = state
        new_h, new_c = [], []
        if torch.is_grad_enabled() or x.shape[0] > self.FUSED_MAX_ROWS:
            weights = lstm._flat_weights
            for layer in range(lstm.num_layers):
                w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
                h, c = torch.lstm_cell(x, (hs[layer], cs[layer]), w_ih, w_hh, b_ih, b_hh)  # (B, H) each
                new_h.append(h)
                new_c.append(c)
                x = h
            return x, (new_h, new_c)
        H = lstm.hidden_size
        for layer, (w, b) in enumerate(self.inference_weights()):
            gates = torch.addmm(b, torch.cat((x, hs[layer]), 1), w)  # (B, 4H) in (i, f, o, g) order
            ifo = gates[:, : 3 * H].sigmoid()  # (B, 3H)
            c = torch.addcmul(ifo[:, H : 2 * H] * cs[layer], ifo[:, :H], gates[:, 3 * H :].tanh())  # (B, H)
            x = ifo[:, 2 * H :] * c.tanh()  # (B, H)
            new_h.append(x)
            new_c.append(c)
        return x, (new_h, new_c)

    def inference_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer of a unidirectional stack: ``W (E_l + H, 4H)`` = ``[W_ih | W_hh]ᵀ`` with the gate columns
        in (i, f, o, g) order, and ``b (1, 4H)`` = ``b_ih + b_hh`` (detached copies).

        Why: ``nn.LSTM`` keeps ``W (4H, E_l)`` and multiplies ``x @ Wᵀ`` twice per layer; for one token per row
        a single product with the ``(K, N)`` layout is the fast BLAS path (measured in
        ``benchmarks/bench_generate.py``). The copy is rebuilt whenever a weight changes (an in-place update
        bumps its version, ``.to()`` gives new storage); it costs one more copy of the LSTM weights in memory.
        """
        lstm = self.lstms[0]
        weights = lstm._flat_weights
        key = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        if key != self._inference_key:
            H = lstm.hidden_size
            order = torch.cat(
                [torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
            ).to(weights[0].device)  # PyTorch's (i, f, g, o) → (i, f, o, g): one sigmoid over three gates
            fused = []
            with torch.no_grad():
                for layer in range(lstm.num_layers):
                    w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
                    w = torch.cat((w_ih, w_hh), 1)[order].t().contiguous()  # (E_l + H, 4H)
                    fused.append((w, (b_ih + b_hh)[order].unsqueeze(0).contiguous()))  # (1, 4H)
            self._inference_weights, self._inference_key = fused, key
        return self._inference_weights


class PxByPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading conventions shared by PixelBytes models."""

    config_class = PxByConfig
    config: PxByConfig
    base_model_prefix = "pixelbytes"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules: list[str] = []

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.LSTM):
            # forget-gate bias 1 (Jozefowicz et al., 2015): with the zero bias of the default init a cell keeps
            # only half of its memory per step, and a caption is forgotten long before the sprite it describes
            for name, param in module.named_parameters():
                if name.startswith("bias_ih"):
                    param[module.hidden_size : 2 * module.hidden_size] = 1.0
        elif isinstance(module, WindowEmbedding):
            init.uniform_(module.alpha)  # the original's torch.rand
        elif isinstance(module, CaptionMemory) and module.cells is not None:
            init.normal_(module.cells)  # N(0, 1): every cell starts with its own view of the caption
        elif type(module).__name__ == "MambaMixer":
            init_mamba_mixer(module)  # A_log / D / dt / conv / out_proj (NaNs otherwise)


class PxBySequenceModel(PxByPreTrainedModel, GenerationMixin):
    """PixelBytes sequence model: PxBy embedding → backbone → head, with ``generate()`` and a real cache."""

    _is_stateful = True

    def __init__(self, config: PxByConfig) -> None:
        super().__init__(config)
        embeddings = {"pxby6": PxBy6Embedding, "window3x3": WindowEmbedding, "center": CenterEmbedding}
        backbones = {"lstm": LSTMBackbone, "attention": AttentionBackbone, "mamba": MambaBackbone}
        self.embedding = embeddings[config.embedding](config)
        self.grid_embedding = GridPositionEmbedding(config) if config.grid_position_size else None
        classes = token_classes_for_sizes(config.num_bytes, config.num_colors, config.num_levels)
        self.caption_memory = CaptionMemory(config, classes) if config.caption_memory_buckets else None
        if config.backbone == "attention" and config.attention_style == "v1_encoder":
            backbones["attention"] = V1EncoderBackbone
        if config.backbone == "mamba" and config.mamba_style == "v1":
            backbones["mamba"] = V1MambaBackbone
        self.backbone = backbones[config.backbone](config)
        self.lm_head = nn.Linear(config.hidden_size, config.output_size)
        self.loss_type = "ForCausalLM"
        self._token_classes = classes
        # masked diffusion: every content id → another id of its class (same layout, other value)
        other = np.arange(len(classes))
        for cls in np.unique(classes[classes >= BYTE]):
            members = np.flatnonzero(classes == cls)
            if len(members) > 1:
                other[members] = np.roll(members, -1)
        self._same_class_other = torch.from_numpy(other)
        self._colour_lookup = torch.from_numpy(classes == COLOUR)  # (V,) bool: is this id a pixel colour
        # structural choices, read on every generated token (a config attribute lookup costs microseconds)
        self._objective, self._embedding, self._backbone = config.objective, config.embedding, config.backbone
        self._vocab_size, self._is_causal = config.vocab_size, config.is_causal
        # one generated token of the common model (pxby6 + unidirectional LSTM) skips the generic path
        self._token_step_fast = config.embedding == "pxby6" and config.backbone == "lstm" and config.is_causal
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    # ---------------------------------------------------------------------------------------------
    def derive_context_ids(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """``context_ids`` from ids alone (each row its own stream; padded positions all zero): HF-aligned
        ``(B, L, 6)`` contexts (pxby6), ``(B, L, 9)`` windows of each token (window3x3) or the token (center)."""
        if self.config.embedding == "center":
            ids = input_ids if attention_mask is None else input_ids * (attention_mask != 0)
            return ids.unsqueeze(-1)
        fn = batch_windows if self.config.embedding == "window3x3" else batch_context_ids
        return self._layout_array(fn, input_ids, attention_mask)

    def position_layout(self) -> tuple[np.ndarray, int] | None:
        """``(token_classes, audio_channels)`` for datasets to derive ``grid_positions`` with, or None when the
        model has no grid-position embedding (see :class:`~pixelbytes.data.PxByWindowDataset`)."""
        if self.grid_embedding is None:
            return None
        return self._token_classes, self.config.audio_channels

    def derive_grid_positions(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """HF-aligned ``(B, L, 4)`` grid positions ``(kind, t, r, c)`` of the next tokens, from ids alone."""
        return self._layout_array(batch_grid_positions, input_ids, attention_mask)

    def _embed(self, context_ids: torch.LongTensor, grid_positions: torch.LongTensor | None) -> torch.Tensor:
        """Token embedding ``(B, L, E)`` of the contexts, plus the grid-position embedding when configured (then
        ``grid_positions`` is required)."""
        x = self.embedding(context_ids)  # (B, L, E)
        if self.grid_embedding is None:
            return x
        return x + self.grid_embedding(grid_positions)

    def _layout_array(
        self, fn: Any, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None
    ) -> torch.LongTensor:
        mask = None if attention_mask is None else attention_mask.detach().cpu().numpy()
        ctx = fn(input_ids.detach().cpu().numpy(), self._token_classes, self.config.audio_channels, mask)
        return torch.from_numpy(ctx).to(input_ids.device)

    def _check_inputs(
        self,
        input_ids: torch.Tensor,
        context_ids: torch.Tensor | None,
        values: bool = True,
        grid_positions: torch.Tensor | None = None,
    ) -> None:
        """Shapes and dtypes always; id ranges when ``values`` (cached steps skip it: the layout tracker checks
        every pushed id, and a reduction per generated token is measurable overhead)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be integer token ids, got {input_ids.dtype}")
        V = self.config.vocab_size
        if values and input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= V):
            raise ValueError(
                f"input_ids must be in [0, {V}), got values in [{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        if context_ids is not None:
            expected = (*input_ids.shape, self.config.num_context_slots)
            if tuple(context_ids.shape) != expected:
                raise ValueError(f"context_ids must have shape {expected}, got {tuple(context_ids.shape)}")
            top = V + (1 if self._objective == "diffusion" and self.config.diffusion_scheme == "masked" else 0)
            if context_ids.numel() and (int(context_ids.min()) < 0 or int(context_ids.max()) >= top):
                raise ValueError(f"context_ids must be in [0, {top})")
        if grid_positions is not None:
            if self.grid_embedding is None:
                raise ValueError("grid_positions given to a model with grid_position_size=0 (it has no such embedding)")
            expected = (*input_ids.shape, NUM_POSITION_FIELDS)
            if tuple(grid_positions.shape) != expected:
                raise ValueError(f"grid_positions must have shape {expected}, got {tuple(grid_positions.shape)}")
            if grid_positions.numel() and (int(grid_positions.min()) < 0 or int(grid_positions[..., 0].max()) > 3):
                raise ValueError("grid_positions must be non-negative with kinds in [0, 3] (fresh/text/image/audio)")

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        context_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        cache: PxByCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        diffusion_mask: torch.Tensor | None = None,
        grid_positions: torch.LongTensor | None = None,
        past_key_values: PxByCache | None = None,
        **kwargs: Any,
    ) -> PxByModelOutput:
        """Run the model; see the module docstring for the contract. ``kwargs`` carry loss options
        (``num_items_in_batch``) from the Trainer.

        The cache of earlier positions comes as ``cache`` (the transformers >= 5.24 name) or as ``past_key_values``
        (its earlier name, still accepted without a warning); passing both is an error. The output holds the
        updated cache under :data:`~pixelbytes.generation_pixelbytes.CACHE_NAME` (``.cache`` reads it always)."""
        if past_key_values is not None:
            cache = resolve_cache_argument(cache, past_key_values)
        if (
            self._token_step_fast
            and cache is not None
            and context_ids is None
            and grid_positions is None
            and labels is None
            and not output_hidden_states
            and input_ids is not None
            and input_ids.dim() == 2
            and input_ids.shape[1] == 1
            and isinstance(cache, PxByCache)
            and input_ids.shape[0] == cache.batch_size
        ):
            return self._lstm_token_step(input_ids, cache, use_cache is not False)
        if input_ids is None or kwargs.get("inputs_embeds") is not None:
            raise ValueError("PixelBytes models take input_ids (not inputs_embeds): contexts are derived from the ids")
        self._check_inputs(
            input_ids, context_ids, values=cache is None or self._embedding == "center",
            grid_positions=grid_positions,
        )
        if self._objective == "diffusion":
            if use_cache or cache is not None:
                raise ValueError("diffusion models have no cache (they re-encode the whole masked stream)")
            return self._forward_diffusion(
                input_ids, context_ids, attention_mask, labels, diffusion_mask, output_hidden_states, **kwargs
            )
        if diffusion_mask is not None or "diffusion_step" in kwargs or "diffusion_generator" in kwargs:
            raise ValueError("diffusion_mask / diffusion_step / diffusion_generator are only for objective='diffusion'")
        causal = self._is_causal
        if use_cache is None:
            use_cache = self.config.use_cache and causal and not self.training
        if use_cache and not causal:
            raise ValueError(
                "bidirectional models have no cache: they re-encode the last window_size tokens (use_cache=False)"
            )
        if cache is not None:
            hidden, cache = self._forward_cached(input_ids, context_ids, cache, grid_positions)
        else:
            hidden, cache, context_ids = self._forward_full(
                input_ids, context_ids, attention_mask, labels, use_cache, grid_positions
            )
        out = self.lm_head(hidden)  # (B, L, V or 6V)
        context_logits = None
        if self._objective == "context":
            context_logits = out.view(*out.shape[:2], NUM_CONTEXT_SLOTS, self._vocab_size)  # (B, L, 6, V)
            logits = context_logits[:, :, NUM_CONTEXT_SLOTS - 1]
        else:
            logits = out
        loss = next_acc = ctx_acc = None
        if labels is not None and self.config.embedding != "pxby6" and (
            context_logits is not None or self.config.novel_pixel_weight != 1.0
        ):
            # the context objective and the novel-pixel weight read the 6-slot neighbourhood whatever the embedding
            context_ids = self._layout_array(batch_context_ids, input_ids, attention_mask)
        if labels is not None:
            loss, next_acc, ctx_acc = self._loss(logits, context_logits, context_ids, labels, **kwargs)
        return PxByModelOutput(
            loss=loss,
            logits=logits,
            context_logits=context_logits,
            **{CACHE_NAME: cache if use_cache else None},
            hidden_states=hidden if output_hidden_states else None,
            next_token_accuracy=next_acc,
            context_accuracy=ctx_acc,
        )

    def _forward_full(
        self,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        use_cache: bool,
        grid_positions: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, PxByCache | None, torch.LongTensor]:
        """A whole (prompt / training) sequence, no previous state."""
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if context_ids is None:
            context_ids = self.derive_context_ids(input_ids, attention_mask)
        if not self.config.is_causal:
            hidden = self._forward_window(input_ids, context_ids, attention_mask, labels, grid_positions)
            return hidden, None, context_ids
        if self.grid_embedding is not None and grid_positions is None:
            grid_positions = self.derive_grid_positions(input_ids, attention_mask)
        x = self._embed(context_ids, grid_positions)  # (B, L, E)
        memory_state = None
        if self.caption_memory is not None:
            memory, memory_state = self.caption_memory(input_ids, attention_mask, use_cache, grid_positions)
            x = x + memory
        hidden, states = self._encode(x, attention_mask, need_state=use_cache)
        cache = None
        if use_cache:
            cache = PxByCache(
                None, None, input_ids, attention_mask, self._token_classes, self.config.audio_channels, states=states
            )
            if memory_state is not None:
                cache.states["caption_memory"] = memory_state
                cache.caption_memory_idle = not bool((memory_state[2][:, 1] >= 0).any())
        return hidden, cache, context_ids

    def _encode(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None, need_state: bool
    ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]] | None]:
        """Backbone over whole sequences ``x (B, L, E)`` (rows padded where ``attention_mask == 0``)."""
        backbone = self.config.backbone
        if backbone == "lstm":
            if attention_mask is None:
                hidden, (h, c) = self.backbone(x)
            else:
                hidden, (h, c) = self._forward_masked(x, attention_mask, need_final_state=need_state)
            return hidden, {"h": h, "c": c}
        if backbone == "attention":
            hidden, states = self.backbone(x, attention_mask, use_cache=need_state)
            if attention_mask is not None:
                hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
            return hidden, states
        # mamba: padded positions must precede a row's real tokens (then they leave every state at zero)
        if attention_mask is None:
            return self.backbone(x, use_cache=need_state)
        mask = attention_mask.bool()
        order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # pads first, real positions in order
        index = order.unsqueeze(-1)
        compact_mask = mask.gather(1, order)
        hidden, states = self.backbone(x.gather(1, index.expand_as(x)), compact_mask, use_cache=need_state)
        out = torch.zeros_like(hidden).scatter(1, index.expand_as(hidden), hidden)
        return out * mask.unsqueeze(-1), states

    def _forward_masked(
        self, x: torch.Tensor, attention_mask: torch.Tensor, need_final_state: bool = True
    ) -> tuple[torch.Tensor, tuple]:
        """LSTM: gather each row's real positions to the front, run, scatter back (pads → zeros).

        Once right-aligned, trailing pads cannot reach the real positions of a causal LSTM, so the plain
        (fast) kernel is exact; packing is only needed for the final states (cache) and for bidirectional
        models (on CPU a packed backward pass is ~50× slower).
        """
        mask = attention_mask.bool()  # (B, L)
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # real positions first, in order
        index = order.unsqueeze(-1)
        compact = x.gather(1, index.expand_as(x))  # (B, L, E)
        if need_final_state or not self.config.is_causal:
            hidden, state = self.backbone(compact, lengths=mask.sum(1).clamp(min=1))  # (B, L, H)
        else:
            hidden, state = self.backbone(compact)
        out = torch.zeros_like(hidden).scatter(1, index.expand_as(hidden), hidden)
        return out * mask.unsqueeze(-1), state

    def _forward_window(
        self,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        grid_positions: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """Bidirectional window encoder over the last ``window_size`` positions (without the target with labels)."""
        stop = input_ids.shape[1] - (1 if labels is not None else 0)
        start = max(0, stop - self.config.window_size)
        x = self.embedding(context_ids[:, start:stop])
        if self.grid_embedding is not None:
            if grid_positions is None:
                grid_positions = self.derive_grid_positions(input_ids, attention_mask)
            x = x + self.grid_embedding(grid_positions[:, start:stop])
        hidden = torch.zeros(*input_ids.shape, self.config.hidden_size, dtype=x.dtype, device=x.device)
        mask = None if attention_mask is None else attention_mask[:, start:stop]
        if mask is not None and bool(mask.all()):
            mask = None
        window, _ = self._encode(x, mask, need_state=False)
        hidden[:, start:stop] = window
        return hidden

    def _forward_cached(
        self,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        cache: PxByCache,
        grid_positions: torch.LongTensor | None = None,
    ) -> tuple[torch.Tensor, PxByCache]:
        """New tokens on top of a cache: contexts from the layout tracker, O(1) per token."""
        if not isinstance(cache, PxByCache):
            raise TypeError(f"the cache must be a PxByCache, got {type(cache).__name__}")
        if input_ids.shape[0] != cache.batch_size:
            raise ValueError(f"batch size {input_ids.shape[0]} differs from the cache's {cache.batch_size}")
        embedding = self._embedding
        positions = self.grid_embedding is not None
        columns = input_ids.t().tolist()  # (k, B): the new ids, one list per position
        if context_ids is None and embedding == "center" and not positions:
            context_ids = input_ids.unsqueeze(-1)
        else:
            tracker = cache.tracker
            derived, where = [], []
            for column in columns:
                windows = tracker.push(column)
                derived.append(windows if embedding == "window3x3" else tracker.contexts())
                if positions:
                    where.append(tracker.grid_positions())
            if context_ids is None:
                if embedding == "center":
                    context_ids = input_ids.unsqueeze(-1)
                else:
                    context_ids = torch.tensor(derived, dtype=torch.long, device=input_ids.device).transpose(0, 1)
            if positions and grid_positions is None:
                grid_positions = torch.tensor(where, dtype=torch.long, device=input_ids.device).transpose(0, 1)
        x = self.embedding(context_ids)  # (B, k, E)
        if positions:
            x = x + self.grid_embedding(grid_positions)
        if self.caption_memory is not None:
            x = x + torch.stack(
                [
                    self.caption_memory.step(column, cache, None if grid_positions is None else grid_positions[:, j])
                    for j, column in enumerate(columns)
                ],
                1,
            )  # (B, k, E)
        if self._backbone == "lstm":
            state = (cache.h, cache.c)
            if x.shape[1] == 1:
                hidden, (cache.h, cache.c) = self.backbone.step(x[:, 0], state)
                hidden = hidden.unsqueeze(1)  # (B, 1, H)
            else:
                hidden, (cache.h, cache.c) = self.backbone(x, state=state)
        else:
            hidden, states = self.backbone(x, state=cache.states, use_cache=True)
            cache.states.update(states)
        cache.seen_tokens += input_ids.shape[1]
        return hidden, cache

    def _lstm_token_step(self, input_ids: torch.LongTensor, cache: PxByCache, use_cache: bool) -> PxByModelOutput:
        """One new token per row for pxby6 + LSTM: the same computation as ``_forward_cached`` followed by the
        head, with no module-call or branching overhead (it runs once per generated token)."""
        tracker = cache.tracker
        ids = [row[0] for row in input_ids.tolist()]  # (B, 1) → B ids, without a slicing op
        tracker.push(ids)
        context = torch.from_numpy(np.array(tracker.contexts(), dtype=np.int64)).to(input_ids.device)  # (B, 6)
        x = nn.functional.embedding(context, self.embedding.slot_embedding.weight).flatten(1)  # (B, E)
        where = None
        if self.grid_embedding is not None:
            where = torch.tensor(tracker.grid_positions(), dtype=torch.long, device=input_ids.device)  # (B, 4)
            x = x + self.grid_embedding(where)
        if self.caption_memory is not None:
            x = x + self.caption_memory.step(ids, cache, where)  # (B, E)
        hidden, (cache.h, cache.c) = self.backbone.step(x, (cache.h, cache.c))  # (B, H)
        cache.seen_tokens += 1
        out = nn.functional.linear(hidden, self.lm_head.weight, self.lm_head.bias).unsqueeze(1)  # (B, 1, V or 6V)
        if self._objective == "context":
            context_logits = out.view(out.shape[0], 1, NUM_CONTEXT_SLOTS, self._vocab_size)  # (B, 1, 6, V)
            return PxByModelOutput.for_token_step(
                logits=context_logits[:, :, NUM_CONTEXT_SLOTS - 1],
                context_logits=context_logits,
                **{CACHE_NAME: cache if use_cache else None},
            )
        return PxByModelOutput.for_token_step(logits=out, **{CACHE_NAME: cache if use_cache else None})

    # ---------------------------------------------------------------------------------------------
    # diffusion (masked and embedding_noise)
    # ---------------------------------------------------------------------------------------------
    #: Generator of the training-time masks and noise of diffusion models (on the inputs' device). ``None`` (the
    #: default) = torch's global RNG, which ``Trainer`` seeds (``set_seed``) and restores when resuming. In eval
    #: mode, draws come from a generator seeded by the batch itself, so every evaluation of the same batch masks
    #: and noises it the same way (comparable ``eval_loss``).
    diffusion_generator: torch.Generator | None = None

    def content_positions(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, L)`` True where a token may be masked: bytes, colours and levels (never PAD/ROW/SEP or padding)."""
        classes = torch.as_tensor(self._token_classes, device=input_ids.device)[input_ids]
        content = classes >= BYTE
        return content if attention_mask is None else content & attention_mask.bool()

    def _slots_referring_to(
        self, input_ids: torch.LongTensor, masked: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """The clean derived contexts and, per context value, whether it refers to a ``masked`` token. The layout
        depends on token classes only: swap each masked token for another of its class, and every context value
        that changes is one that refers to a masked token."""
        clean = self.derive_context_ids(input_ids, attention_mask)
        other = self._same_class_other.to(input_ids.device)[input_ids]
        swapped = self.derive_context_ids(torch.where(masked, other, input_ids), attention_mask)
        return clean, clean != swapped

    def diffusion_context_ids(
        self, input_ids: torch.LongTensor, masked: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """Contexts of the stream whose ``masked`` positions are hidden: the layout comes from the clean structure
        and every context value that refers to a masked token (slot 5 of the next position, the row below, the
        next frame, the window centre…) becomes the mask id ``vocab_size``."""
        if not bool(masked.any()):
            return self.derive_context_ids(input_ids, attention_mask)
        if self.config.embedding == "center":
            clean = self.derive_context_ids(input_ids, attention_mask)
            return clean.masked_fill(masked.unsqueeze(-1), self.config.vocab_size)
        clean, refers = self._slots_referring_to(input_ids, masked, attention_mask)
        return clean.masked_fill(refers, self.config.vocab_size)

    def embedding_noise_slots(
        self, input_ids: torch.LongTensor, masked: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, L, 6)`` context slots to noise so that the ``masked`` tokens are hidden from an embedding-noise
        model: every slot whose value is a masked token (slot 5 of its own row, the row below, the next frame…)
        plus the original's pattern (reference inventory §3.5) — the whole row of a masked token and slots 0-4 of
        the row after it."""
        masked = masked.bool()
        _, slots = self._slots_referring_to(input_ids, masked, attention_mask)
        slots = slots | masked.unsqueeze(-1)
        following = torch.zeros_like(masked)
        following[:, 1:] = masked[:, :-1]
        if attention_mask is not None:
            following &= attention_mask.bool()
        slots[..., : NUM_CONTEXT_SLOTS - 1] |= following.unsqueeze(-1)
        return slots

    def _diffusion_rng(self, input_ids: torch.LongTensor) -> torch.Generator | None:
        """The generator of random masks / noise: :attr:`diffusion_generator` (or the global RNG) when training,
        one seeded by the batch's ids in eval mode."""
        if self.training:
            generator = self.diffusion_generator
            if generator is not None and generator.device.type != input_ids.device.type:
                raise ValueError(
                    f"diffusion_generator is on {generator.device}, the inputs on {input_ids.device}: "
                    "create it on the model's device"
                )
            return generator
        L = input_ids.shape[1]
        weights = torch.arange(1, L + 1, device=input_ids.device, dtype=torch.long)
        seed = int((input_ids.long() * weights).sum()) % (2**31 - 1) + L
        return torch.Generator(device=input_ids.device).manual_seed(seed)

    @staticmethod
    def _trainer_normalised(
        loss: torch.Tensor, labels: torch.LongTensor, num_items_in_batch: torch.Tensor | int | None
    ) -> torch.Tensor:
        """A per-batch mean loss, rescaled when the Trainer passes ``num_items_in_batch``. The Trainer then sums
        the losses of accumulated batches (and of devices) without dividing: weighting each batch by its share of
        the items the Trainer counted (``labels[:, 1:] != -100``, as ``loss_type="ForCausalLM"``) turns that sum
        into a weighted mean."""
        if num_items_in_batch is None:
            return loss
        share = (labels[:, 1:] != -100).sum()
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        return loss * share.to(loss.dtype) / num_items_in_batch

    def _forward_diffusion(
        self,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        diffusion_mask: torch.Tensor | None,
        output_hidden_states: bool | None,
        **kwargs: Any,
    ) -> PxByModelOutput:
        """``logits[:, k]`` scores token k itself (no shift).

        Masked scheme: with ``labels`` and no ``diffusion_mask``, a masking rate t ~ U(0, 1) is drawn per row and
        each content token is masked with probability t; the loss is the cross-entropy on the masked positions.
        ``kwargs``: ``diffusion_step`` / ``diffusion_generator`` (embedding_noise, see
        :meth:`_forward_embedding_noise`) and ``num_items_in_batch`` (Trainer).
        """
        diffusion_step = kwargs.pop("diffusion_step", None)
        generator = kwargs.pop("diffusion_generator", None)
        num_items = kwargs.get("num_items_in_batch")
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if self.config.diffusion_scheme == "embedding_noise":
            return self._forward_embedding_noise(
                input_ids, context_ids, attention_mask, labels, diffusion_mask, diffusion_step, generator,
                output_hidden_states, num_items,
            )  # fmt: skip
        if diffusion_step is not None:
            raise ValueError("diffusion_step (a noise level) is only for diffusion_scheme='embedding_noise'")
        content = self.content_positions(input_ids, attention_mask)
        if diffusion_mask is not None:
            masked = diffusion_mask.bool().to(input_ids.device)
            if masked.shape != input_ids.shape:
                raise ValueError(f"diffusion_mask must have shape {tuple(input_ids.shape)}")
            if bool((masked & ~content).any()):
                raise ValueError("only content tokens (bytes, colours, levels) can be masked; never PAD/ROW/SEP")
        elif labels is not None:
            rng = generator if generator is not None else self._diffusion_rng(input_ids)
            device = input_ids.device
            rate = torch.rand(input_ids.shape[0], 1, device=device, generator=rng)
            masked = (torch.rand(input_ids.shape, device=device, generator=rng) < rate) & content
            # at least one masked token per row that has content
            empty = ~masked.any(1) & content.any(1)
            if bool(empty.any()):
                pick = torch.multinomial(content[empty].float(), 1, generator=rng)
                masked[empty] = masked[empty].scatter(1, pick, True)
        else:
            masked = torch.zeros_like(content)
        if context_ids is not None:
            raise ValueError("diffusion models derive their contexts from input_ids and the masking: omit context_ids")
        context_ids = self.diffusion_context_ids(input_ids, masked, attention_mask)
        x = self.embedding(context_ids)
        hidden, _ = self._encode(x, attention_mask, need_state=False)
        logits = self.lm_head(hidden)  # (B, L, V)
        loss = acc = None
        if labels is not None:
            targets = labels.masked_fill(~masked, -100)
            valid = targets != -100
            if bool(valid.any()):
                loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
                with torch.no_grad():
                    acc = (logits.argmax(-1) == targets)[valid].float().mean()
            else:
                loss = logits.sum() * 0.0
                acc = logits.new_zeros(())
            loss = self._trainer_normalised(loss, labels, num_items)
        return PxByModelOutput(
            loss=loss,
            logits=logits,
            hidden_states=hidden if output_hidden_states else None,
            next_token_accuracy=acc,
        )

    def _original_noise_slots(
        self, attention_mask: torch.Tensor | None, shape: tuple[int, int], generator: torch.Generator | None,
        device: torch.device,
    ) -> torch.Tensor:  # fmt: skip
        """The original's training noise pattern, per row: ⌊3n/4⌋ positions drawn with replacement among the n
        real ones (≈ 53 % distinct); each drawn row is noised in all 6 slots, the row after it in slots 0-4."""
        B, L = shape
        real = torch.ones(B, L, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
        n = real.sum(1)  # (B,)
        draws = (3 * L) // 4
        picked = torch.zeros(B, L, dtype=torch.bool, device=device)
        if draws:
            index = (torch.rand(B, draws, device=device, generator=generator) * n.unsqueeze(1)).long()
            keep = torch.arange(draws, device=device) < (3 * n // 4).unsqueeze(1)
            order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real positions first, in order
            columns = order.gather(1, index.clamp(max=L - 1))
            counts = torch.zeros(B, L, dtype=torch.long, device=device).scatter_add(1, columns, keep.long())
            picked = (counts > 0) & real
        slots = picked.unsqueeze(-1).expand(B, L, NUM_CONTEXT_SLOTS).clone()
        following = torch.zeros_like(picked)
        following[:, 1:] = picked[:, :-1]
        slots[..., : NUM_CONTEXT_SLOTS - 1] |= (following & real).unsqueeze(-1)
        return slots

    def _forward_embedding_noise(
        self,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        diffusion_mask: torch.Tensor | None,
        diffusion_step: Any,
        generator: torch.Generator | None,
        output_hidden_states: bool | None,
        num_items: Any,
    ) -> PxByModelOutput:
        """The original aPxBy diffusion forward (reference inventory §3.5) on ``context_ids`` (derived when absent).

        Which context slots are noised: ``diffusion_mask`` ``(B, L)`` = content tokens to hide
        (:meth:`embedding_noise_slots`) or ``(B, L, 6)`` = the slots themselves; with ``labels`` and no mask, the
        original's random training pattern; otherwise none (the clean forward). The noise level
        ``diffusion_step`` t ∈ [0, n] (a number or a ``(B,)`` tensor, n = ``num_diffusion_steps``) gives
        α = 1 - t/n; default n (pure noise) with a mask, t ~ U{n-1, n} (the original's training draw) with labels.
        """
        B, L = input_ids.shape
        device = input_ids.device
        n = self.config.num_diffusion_steps
        if context_ids is None:
            context_ids = self.derive_context_ids(input_ids, attention_mask)
        slots = None
        if diffusion_mask is not None:
            mask = diffusion_mask.bool().to(device)
            if mask.shape == (B, L):
                if bool((mask & ~self.content_positions(input_ids, attention_mask)).any()):
                    raise ValueError(
                        "only content tokens (bytes, colours, levels) can be hidden; never PAD/ROW/SEP "
                        "(a (batch, length, 6) slot mask noises any context slot)"
                    )
                slots = self.embedding_noise_slots(input_ids, mask, attention_mask)
            elif mask.shape == (B, L, NUM_CONTEXT_SLOTS):
                slots = mask
            else:
                raise ValueError(
                    f"diffusion_mask must have shape {(B, L)} (tokens to hide) or {(B, L, NUM_CONTEXT_SLOTS)} "
                    f"(context slots to noise), got {tuple(mask.shape)}"
                )
        elif labels is not None:
            generator = generator if generator is not None else self._diffusion_rng(input_ids)
            slots = self._original_noise_slots(attention_mask, (B, L), generator, device)
            if diffusion_step is None:
                diffusion_step = torch.randint(n - 1, n + 1, (B,), device=device, generator=generator)
        elif diffusion_step is not None:
            raise ValueError("diffusion_step needs a diffusion_mask (what to noise) or labels (the training noise)")
        x = self.embedding(context_ids)  # (B, L, 6·e)
        if slots is not None and bool(slots.any()):
            step = torch.as_tensor(n if diffusion_step is None else diffusion_step, dtype=torch.float32, device=device)
            if step.dim() > 1 or (step.dim() == 1 and step.shape[0] != B):
                raise ValueError(f"diffusion_step must be a number or a ({B},) tensor, got shape {tuple(step.shape)}")
            if bool((step < 0).any()) or bool((step > n).any()):
                raise ValueError(f"diffusion_step must be in [0, num_diffusion_steps={n}]")
            alpha = (1.0 - step / n).to(x.dtype).reshape(-1, 1, 1, 1)  # (B or 1, 1, 1, 1)
            if generator is None:
                generator = self._diffusion_rng(input_ids)
            per_slot = x.view(B, L, NUM_CONTEXT_SLOTS, -1)
            noise = torch.randn(per_slot.shape, device=device, dtype=x.dtype, generator=generator)
            noisy = (1.0 - alpha) * noise + alpha * per_slot
            x = torch.where(slots.unsqueeze(-1), noisy, per_slot).reshape(B, L, -1)
        hidden, _ = self._encode(x, attention_mask, need_state=False)
        V = self._vocab_size
        context_logits = self.lm_head(hidden).view(B, L, NUM_CONTEXT_SLOTS, V)
        logits = context_logits[:, :, NUM_CONTEXT_SLOTS - 1]
        loss = next_acc = ctx_acc = None
        if labels is not None:
            rows = labels != -100
            targets = context_ids.masked_fill(~rows.unsqueeze(-1), -100)
            if bool(rows.any()):
                loss = nn.functional.cross_entropy(context_logits.float().reshape(-1, V), targets.reshape(-1))
                with torch.no_grad():
                    predicted = context_logits.argmax(-1)
                    ctx_acc = (predicted == context_ids)[rows].float().mean()
                    next_acc = (predicted[..., -1] == context_ids[..., -1])[rows].float().mean()
            else:
                loss = context_logits.sum() * 0.0
                next_acc = ctx_acc = logits.new_zeros(())
            loss = self._trainer_normalised(loss, labels, num_items)
        return PxByModelOutput(
            loss=loss,
            logits=logits,
            context_logits=context_logits,
            hidden_states=hidden if output_hidden_states else None,
            next_token_accuracy=next_acc,
            context_accuracy=ctx_acc,
        )

    @torch.no_grad()
    def infill(
        self,
        input_ids: torch.LongTensor,
        fill_mask: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.LongTensor:
        """Fill the ``fill_mask`` positions of ``input_ids`` (batched; objective ``"diffusion"``).

        The tokens at the filled positions are placeholders whose CLASS is kept (a sprite pixel stays a colour, an
        audio sample a level), so the layout of the stream never changes; their values are never read. Every
        position outside ``fill_mask`` is returned unchanged, and predictions are restricted to the placeholder's
        class.

        * ``masked``: unmasking runs over ``num_steps`` (default ``config.num_diffusion_steps``) steps, the most
          confident predictions first.
        * ``embedding_noise`` (the original sampler, greedy): ``num_steps + 1`` passes with t = num_steps … 0,
          α = 1 - t/num_steps going from pure noise to clean; each pass noises every context slot of the filled
          tokens (:meth:`embedding_noise_slots`) and rewrites all of them. ``generator`` draws the noise (default:
          one seeded by the inputs).
        """
        if self.config.objective != "diffusion":
            raise ValueError("infill() needs an objective='diffusion' model")
        self._check_inputs(input_ids, None)
        steps = self.config.num_diffusion_steps if num_steps is None else int(num_steps)
        if steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {steps}")
        remaining = fill_mask.bool().to(input_ids.device)
        if remaining.shape != input_ids.shape:
            raise ValueError(f"fill_mask must have shape {tuple(input_ids.shape)}")
        if bool((remaining & ~self.content_positions(input_ids, attention_mask)).any()):
            raise ValueError("only content positions (bytes, colours, levels) can be filled; never PAD/ROW/SEP")
        classes = torch.as_tensor(self._token_classes, device=input_ids.device)
        allowed = classes[input_ids].unsqueeze(-1) == classes  # (B, L, V): the placeholder's class
        ids = input_ids.clone()
        if self.config.diffusion_scheme == "embedding_noise":
            if not bool(remaining.any()):
                return ids
            if generator is None:
                generator = self._diffusion_rng(input_ids)
            n = self.config.num_diffusion_steps
            for t in range(steps, -1, -1):
                logits = self(
                    input_ids=ids, attention_mask=attention_mask, diffusion_mask=remaining,
                    diffusion_step=t * n / steps, diffusion_generator=generator,
                ).logits  # fmt: skip
                prediction = logits.float().masked_fill(~allowed, float("-inf")).argmax(-1)
                ids = torch.where(remaining, prediction, ids)
            return ids
        L = ids.shape[1]
        for step in range(steps):
            left = remaining.sum(1)  # (B,)
            if not bool(left.any()):
                break
            logits = self(input_ids=ids, attention_mask=attention_mask, diffusion_mask=remaining).logits
            probs = logits.float().masked_fill(~allowed, float("-inf")).softmax(-1)
            confidence, prediction = probs.max(-1)  # (B, L)
            confidence = confidence.masked_fill(~remaining, -1.0)
            quota = torch.div(left + (steps - step) - 1, steps - step, rounding_mode="floor")  # ceil(left / steps left)
            order = confidence.argsort(dim=1, descending=True)
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=ids.device).expand_as(order))
            chosen = remaining & (rank < quota.unsqueeze(1))
            ids = torch.where(chosen, prediction, ids)
            remaining = remaining & ~chosen
        return ids

    def _loss(
        self,
        logits: torch.Tensor,
        context_logits: torch.Tensor | None,
        context_ids: torch.LongTensor,
        labels: torch.LongTensor,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        V = self.config.vocab_size
        if not self.config.is_causal:
            # window encoder: the last input position (before the target) predicts the last label
            last = logits[:, -2]  # (B, V)
            target = labels[:, -1]
            loss = nn.functional.cross_entropy(last.float(), target, ignore_index=-100)
            valid = target != -100
            acc = (last.argmax(-1) == target)[valid].float().mean() if valid.any() else last.new_zeros(())
            return loss, acc, None
        target_next = labels[:, 1:]  # (B, L-1)
        valid = target_next != -100
        with torch.no_grad():
            pred = logits[:, :-1].argmax(-1)
            next_acc = (pred == target_next)[valid].float().mean() if valid.any() else logits.new_zeros(())
        weight, novel_weight = self.config.change_token_weight, self.config.novel_pixel_weight
        if context_logits is None and weight == 1.0 and novel_weight == 1.0:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=V, **kwargs)
            return loss, next_acc, None
        # (B, L-1) weight per target row: change_token_weight where the target differs from the token before it,
        # times novel_pixel_weight where a colour target matches none of its neighbours
        row_weight = torch.ones_like(target_next, dtype=torch.float32)
        if weight != 1.0:
            previous = labels[:, :-1].masked_fill(labels[:, :-1] == -100, -1)
            row_weight = row_weight.masked_fill(target_next != previous, weight)
        if novel_weight != 1.0:
            row_weight = row_weight * torch.where(self._novel_pixels(target_next, context_ids), novel_weight, 1.0)
        num_items = kwargs.get("num_items_in_batch")
        denominator = num_items if num_items is not None else valid.sum()
        if torch.is_tensor(denominator):
            denominator = denominator.to(logits.device)
        if context_logits is None:
            per_token = nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, V), target_next.reshape(-1), ignore_index=-100, reduction="none"
            )
            return (per_token * row_weight.reshape(-1)).sum() / denominator, next_acc, None
        targets = torch.cat((context_ids[:, 1:, :5], target_next.clamp(min=0).unsqueeze(-1)), dim=-1)  # (B, L-1, 6)
        targets = targets.masked_fill(~valid.unsqueeze(-1), -100)
        per_slot = nn.functional.cross_entropy(
            context_logits[:, :-1].float().reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="none"
        ).view(*targets.shape)  # (B, L-1, 6)
        loss = (per_slot * row_weight.unsqueeze(-1)).sum() / (denominator * NUM_CONTEXT_SLOTS)
        with torch.no_grad():
            slot_pred = context_logits[:, :-1].argmax(-1)
            ctx_acc = (slot_pred == targets)[valid].float().mean() if valid.any() else logits.new_zeros(())
        return loss, next_acc, ctx_acc

    def _novel_pixels(self, target_next: torch.LongTensor, context_ids: torch.LongTensor) -> torch.Tensor:
        """``(B, L-1)`` True where target ``k+1`` is a colour equal to none of the six context slots of its
        position (HF-aligned row ``k`` of ``context_ids``: the cells above, the previous frame, the token before)."""
        is_colour = self._colour_lookup.to(target_next.device)[target_next.clamp(min=0)]  # (B, L-1)
        seen = (context_ids[:, :-1] == target_next.unsqueeze(-1)).any(-1)  # (B, L-1)
        return is_colour & ~seen & (target_next != -100)

    @classmethod
    def from_original(cls, path_or_repo_id: Any, subfolder: str | None = None, **kwargs: Any) -> PxBySequenceModel:
        """Convert an ORIGINAL PixelBytes checkpoint (directory or Hub repo + ``subfolder``, e.g.
        ``"lstm_autoregressive_last"``); see :func:`pixelbytes.conversion.convert_original` for the options.
        Needs the installed package (it is not part of the Hub remote code)."""
        import importlib

        try:
            conversion = importlib.import_module("pixelbytes.conversion")
        except ImportError as err:
            raise ImportError("from_original needs the pixelbytes package: pip install pixelbytes") from err
        model, _ = conversion.convert_original(path_or_repo_id, subfolder, **kwargs)
        return model

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: PxByCache | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: PxByCache | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Only what ``forward`` uses: the new tokens (the cache holds the rest, layout included), the mask and
        the cache. Leaner than the generic version, which matters at one call per generated token.

        ``generate()`` keeps the cache as ``cache`` (transformers >= 5.24) or ``past_key_values`` (5.23); it goes
        to ``forward`` as ``cache``."""
        if past_key_values is not None:
            cache = resolve_cache_argument(cache, past_key_values)
        if next_sequence_length is not None:
            input_ids = input_ids[:, -next_sequence_length:]
        inputs = {"input_ids": input_ids, "cache": cache, "attention_mask": attention_mask}
        for key, value in kwargs.items():
            if key not in ("labels", "is_first_iteration", "position_ids", "cache_position"):
                inputs[key] = value
        return inputs

    # ---------------------------------------------------------------------------------------------
    def generate(self, inputs: torch.Tensor | None = None, generation_config: Any = None, **kwargs: Any):
        """``GenerationMixin.generate`` with PixelBytes checks (ids range, window length, cache availability).

        A cache to continue from may be passed as ``cache`` or ``past_key_values`` with any transformers version:
        it reaches ``GenerationMixin.generate`` under the installed name (no deprecation warning)."""
        cache = resolve_cache_argument(kwargs.pop("cache", None), kwargs.pop("past_key_values", None))
        if cache is not None:
            kwargs[CACHE_NAME] = cache
        input_ids = inputs if inputs is not None else kwargs.get("input_ids")
        if input_ids is not None:
            self._check_inputs(input_ids, None)
        max_new_tokens = kwargs.get("max_new_tokens")
        if max_new_tokens is not None and max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if self.config.objective == "diffusion":
            raise ValueError("objective='diffusion' models do not generate left to right: use infill()")
        if not self.config.is_causal:
            if kwargs.get("use_cache"):
                raise ValueError(
                    "bidirectional models have no cache; they re-encode a sliding window (use_cache=False)"
                )
            kwargs["use_cache"] = False
            if input_ids is not None and input_ids.shape[1] > self.config.window_size:
                raise ValueError(
                    f"the prompt ({input_ids.shape[1]} tokens) is longer than the bidirectional window "
                    f"(window_size={self.config.window_size})"
                )
        return super().generate(inputs, generation_config, **kwargs)

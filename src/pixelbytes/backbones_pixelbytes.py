"""Backbones of PixelBytes models behind ONE interface (DESIGN §6), the :class:`PxByBackbone` contract.

* :meth:`PxByBackbone.forward` ``(x (B, L, E), attention_mask, state, use_cache, output_hidden_states)`` runs
  whole sequences with ANY padding pattern (positions with ``attention_mask == 0`` never touch the state or the
  outputs of real ones, and their outputs are zero) from an optional state, and returns a
  :class:`BackboneOutput`: ``hidden (B, L, H)``, the state after the last real token (``use_cache``), and the
  output of every layer (``output_hidden_states``);
* :meth:`PxByBackbone.step` ``(x (B, E), state)`` advances one token per row (O(1) per token);
* :meth:`PxByBackbone.reorder_state` selects / repeats rows of a state (beam search).

A state is a dict of per-layer tensor lists whose first dimension is the batch (kept in
:class:`~pixelbytes.generation_pixelbytes.PxByCache`). ``dropout`` (config) has one meaning everywhere: in
training, it drops what each layer passes on, i.e. the residual branches of attention and Mamba blocks and the
output of every recurrent layer that feeds another (``nn.LSTM``'s own ``dropout``; the v1 Mamba's chained
mixers), padded batches included. Gradient checkpointing recomputes one layer at a time.

* :class:`LSTMBackbone`: stacked ``nn.LSTM`` (cuDNN on GPU), unidirectional, bidirectional or the v1
  ``"first_layer"`` structure, with a fused cell update for generation.
* :class:`AttentionBackbone`: pre-norm decoder blocks with rotary positions and SDPA (causal with a KV cache,
  or bidirectional); rotary positions count each row's real tokens (left padding is exact).
* :class:`V1EncoderBackbone`: the v1 ``TransformerEncoder`` (``attention_style="v1_encoder"``, converted checkpoints).
* :class:`MambaBackbone`: stacked ``transformers`` ``MambaBlock``s (RMSNorm, residual, final norm). On CPU the
  mixers run through :func:`mamba_mixer_forward` (a torch / ``mambapy`` implementation that reads the mixer's own
  parameters and carries the conv and ssm states for O(1) cached steps), never through the CUDA kernels that
  ``transformers`` binds at import time without a device check. Bidirectional = a forward and a separately
  weighted time-flipped stack, their mixer outputs summed per layer.
* :class:`V1MambaBackbone` (``mamba_style="v1"``): the v1 ``bMamba`` body of converted checkpoints, plain mixers
  (mamba_ssm's ``Mamba`` = ``transformers``' ``MambaMixer``, same parameter names) with no norm and no residual;
  bidirectional = the first mixer applied forward and on the flipped sequence (shared weights), summed, LayerNorm.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .configuration_pixelbytes import PxByConfig

logger = logging.getLogger(__name__)

__all__ = [
    "AttentionBackbone",
    "BackboneOutput",
    "LSTMBackbone",
    "MambaBackbone",
    "PxByBackbone",
    "V1EncoderBackbone",
    "V1MambaBackbone",
    "build_backbone",
    "mamba_mixer_forward",
]

States = dict[str, list[torch.Tensor]]


class BackboneOutput(NamedTuple):
    """``hidden (B, L, H)``; ``state`` after the last real token (``use_cache``) or None; ``layers`` = the output
    of every layer (``output_hidden_states``; the last one is ``hidden``) or None."""

    hidden: torch.Tensor
    state: States | None = None
    layers: list[torch.Tensor] | None = None


class PxByBackbone(nn.Module):
    """What every backbone implements; see the module docstring. Subclasses set ``causal``."""

    causal: bool = True
    gradient_checkpointing = False

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: States) -> tuple[torch.Tensor, States]:
        """One token per row: ``x (B, E)`` → ``(B, H)`` and the new state (causal backbones only)."""
        out = self(x.unsqueeze(1), state=state, use_cache=True)
        return out.hidden[:, 0], out.state

    @staticmethod
    def reorder_state(state: States, index: torch.LongTensor) -> States:
        """Row i of the result is row ``index[i]`` of ``state`` (beam search, repeated rows)."""
        return {key: [t.index_select(0, index.to(t.device)) for t in tensors] for key, tensors in state.items()}

    def _checkpointing(self) -> bool:
        return self.gradient_checkpointing and self.training and torch.is_grad_enabled()

    def _layer_call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, recomputed in the backward pass when gradient checkpointing is on."""
        if self._checkpointing():
            return self._gradient_checkpointing_func(fn, *args)
        return fn(*args)


def build_backbone(config: PxByConfig) -> PxByBackbone:
    """The backbone ``config`` asks for."""
    if config.backbone == "lstm":
        return LSTMBackbone(config)
    if config.backbone == "attention":
        return V1EncoderBackbone(config) if config.attention_style == "v1_encoder" else AttentionBackbone(config)
    return V1MambaBackbone(config) if config.mamba_style == "v1" else MambaBackbone(config)


def _real_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The mask as bool, or None when every position is real (the unpadded fast paths)."""
    if attention_mask is None:
        return None
    mask = attention_mask.bool()
    return None if bool(mask.all()) else mask


def _align(mask: torch.Tensor, real_first: bool) -> torch.LongTensor:
    """``(B, L)`` gather index that moves each row's real positions first (or last), keeping their order."""
    key = (~mask if real_first else mask).to(torch.int8)
    return torch.argsort(key, dim=1, stable=True)


def _scatter_back(t: torch.Tensor, order: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
    """Undo :func:`_align` on ``t (B, L, H)`` and zero the padded positions."""
    index = order.unsqueeze(-1).expand_as(t)
    return torch.zeros_like(t).scatter(1, index, t) * mask.unsqueeze(-1).to(t.dtype)


def _gather(t: torch.Tensor, order: torch.LongTensor) -> torch.Tensor:
    return t.gather(1, order.unsqueeze(-1).expand_as(t))


# --------------------------------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------------------------------
def _lstm_layer(
    lstm: nn.LSTM, layer: int, data: torch.Tensor, h: torch.Tensor, c: torch.Tensor, batch_sizes: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Layer ``layer`` of ``lstm`` alone (its own weights, both directions): ``data`` is ``(B, L, in)`` or, with
    ``batch_sizes``, the data of a packed sequence (and ``h, c (dirs, B, H)`` in its sorted order)."""
    dirs = 2 if lstm.bidirectional else 1
    params = lstm._flat_weights[4 * dirs * layer : 4 * dirs * (layer + 1)]
    if batch_sizes is None:
        return torch.lstm(data, (h, c), params, True, 1, 0.0, lstm.training, lstm.bidirectional, True)
    return torch.lstm(data, batch_sizes, (h, c), params, True, 1, 0.0, lstm.training, lstm.bidirectional)


class LSTMBackbone(PxByBackbone):
    """Stacked LSTM: unidirectional, bidirectional (hidden/2 per direction) or the v1 "first_layer" structure.

    ``forward`` runs whole sequences (rows right-aligned, packed when a final state or the backward direction
    needs it); with ``output_hidden_states`` or gradient checkpointing it runs one layer at a time on the same
    weights. ``step`` advances one token with a cell-level update per layer (far cheaper than calling
    ``nn.LSTM`` on one step).
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
        self.causal = not config.bidirectional
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
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        mask = _real_mask(attention_mask)
        if mask is None:
            hidden, new_state, layers = self._run(x, None, state, output_hidden_states)
            return BackboneOutput(hidden, new_state if use_cache else None, layers)
        order = _align(mask, real_first=True)  # trailing pads cannot reach a causal row's real positions
        exact_without_packing = self.causal and not use_cache and state is None
        lengths = None if exact_without_packing else mask.sum(1).clamp(min=1)
        hidden, new_state, layers = self._run(_gather(x, order), lengths, state, output_hidden_states)
        layers = None if layers is None else [_scatter_back(t, order, mask) for t in layers]
        return BackboneOutput(_scatter_back(hidden, order, mask), new_state if use_cache else None, layers)

    def _drop(self, data: Any) -> Any:
        if isinstance(data, PackedSequence):
            return data._replace(data=self.dropout(data.data))
        return self.dropout(data)

    def _run(
        self, x: torch.Tensor, lengths: torch.Tensor | None, state: States | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, States, list[torch.Tensor] | None]:
        """The stacked LSTMs over right-aligned rows of ``lengths`` (None = all full)."""
        L = x.shape[1]
        data: Any = x
        if lengths is not None:
            data = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)

        def unpack(d: Any) -> torch.Tensor:
            return pad_packed_sequence(d, batch_first=True, total_length=L)[0] if lengths is not None else d

        per_layer = output_hidden_states or self._checkpointing()
        h_out: list[torch.Tensor] = []
        c_out: list[torch.Tensor] = []
        layers: list[torch.Tensor] = []
        offset = 0
        for i, lstm in enumerate(self.lstms):
            dirs = 2 if lstm.bidirectional else 1
            n_state = lstm.num_layers * dirs
            hx = None
            if state is not None:
                hx = (
                    torch.stack(state["h"][offset : offset + n_state]),
                    torch.stack(state["c"][offset : offset + n_state]),
                )
            if i > 0:
                data = self._drop(data)
            if not per_layer:
                data, (h, c) = lstm(data, hx)
                h_out.extend(h.unbind(0))
                c_out.extend(c.unbind(0))
            else:
                for layer in range(lstm.num_layers):
                    if layer > 0:
                        data = self._drop(data)
                    layer_hx = None if hx is None else (hx[0][layer * dirs : (layer + 1) * dirs],
                                                        hx[1][layer * dirs : (layer + 1) * dirs])  # fmt: skip
                    data, (h, c) = self._one_layer(lstm, layer, data, layer_hx)
                    h_out.extend(h.unbind(0))
                    c_out.extend(c.unbind(0))
                    layers.append(unpack(data))
            offset += n_state
        return unpack(data), {"h": h_out, "c": c_out}, (layers if output_hidden_states else None)

    def _one_layer(
        self, lstm: nn.LSTM, layer: int, data: Any, hx: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[Any, tuple[torch.Tensor, torch.Tensor]]:
        """One layer of ``lstm`` on a tensor or a packed sequence (checkpointed when enabled)."""
        packed = isinstance(data, PackedSequence)
        tensor = data.data if packed else data
        B = int(data.batch_sizes[0]) if packed else tensor.shape[0]
        dirs = 2 if lstm.bidirectional else 1
        if hx is None:
            zeros = tensor.new_zeros(dirs, B, lstm.hidden_size)
            hx = (zeros, zeros)
        h, c = hx
        if packed and data.sorted_indices is not None:
            h, c = h.index_select(1, data.sorted_indices), c.index_select(1, data.sorted_indices)

        def run(t: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return _lstm_layer(lstm, layer, t, h0, c0, data.batch_sizes if packed else None)

        out, h, c = self._layer_call(run, tensor, h, c)
        if not packed:
            return out, (h, c)
        if data.unsorted_indices is not None:
            h, c = h.index_select(1, data.unsorted_indices), c.index_select(1, data.unsorted_indices)
        return data._replace(data=out), (h, c)

    def step(self, x: torch.Tensor, state: States) -> tuple[torch.Tensor, States]:
        """One token for every row: ``x (B, E)`` → ``(B, H)``; unidirectional stacks only.

        With autograd on, or on the CPU for more than :attr:`FUSED_MAX_ROWS` rows, this is ``torch.lstm_cell`` per
        layer. Otherwise (generating) one fused product per layer on :meth:`inference_weights`
        (:meth:`fused_update`): the same cell update, about twice as fast on CPU."""
        lstm = self.lstms[0]
        hs, cs = state["h"], state["c"]
        new_h, new_c = [], []
        if torch.is_grad_enabled() or (x.shape[0] > self.FUSED_MAX_ROWS and not x.is_cuda):
            weights = lstm._flat_weights
            for layer in range(lstm.num_layers):
                w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
                h, c = torch.lstm_cell(x, (hs[layer], cs[layer]), w_ih, w_hh, b_ih, b_hh)  # (B, H) each
                new_h.append(h)
                new_c.append(c)
                x = h
            return x, {"h": new_h, "c": new_c}
        return self.fused_update(x, hs, cs)

    def fused_update(
        self, x: torch.Tensor, hs: list[torch.Tensor], cs: list[torch.Tensor]
    ) -> tuple[torch.Tensor, States]:
        """The cell update of every layer on :meth:`inference_weights` (no autograd): ``x (B, E)``, per-layer
        ``h, c (B, H)`` → the top layer's ``h (B, H)`` and the new states."""
        H = self.lstms[0].hidden_size
        new_h, new_c = [], []
        for layer, (w, b) in enumerate(self.inference_weights()):
            gates = torch.addmm(b, torch.cat((x, hs[layer]), 1), w)  # (B, 4H) in (i, f, o, g) order
            ifo = gates[:, : 3 * H].sigmoid()  # (B, 3H)
            c = torch.addcmul(ifo[:, H : 2 * H] * cs[layer], ifo[:, :H], gates[:, 3 * H :].tanh())  # (B, H)
            x = ifo[:, 2 * H :] * c.tanh()  # (B, H)
            new_h.append(x)
            new_c.append(c)
        return x, {"h": new_h, "c": new_c}

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
            order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]).to(
                weights[0].device
            )  # PyTorch's (i, f, g, o) → (i, f, o, g): one sigmoid over three gates
            fused = []
            with torch.no_grad():
                for layer in range(lstm.num_layers):
                    w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
                    w = torch.cat((w_ih, w_hh), 1)[order].t().contiguous()  # (E_l + H, 4H)
                    fused.append((w, (b_ih + b_hh)[order].unsqueeze(0).contiguous()))  # (1, 4H)
            self._inference_weights, self._inference_key = fused, key
        return self._inference_weights


# --------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------
def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``positions (B, L)`` → ``cos, sin (B, 1, L, head_dim)`` (computed on the fly: no buffer to load)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[..., None] * inv_freq  # (B, L, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class AttentionBlock(nn.Module):
    """Pre-norm decoder block: ``x + attn(norm(x))``, ``x + mlp(norm(x))`` (RMSNorm, rotary MHA, GELU MLP)."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = H // self.num_heads
        inner = config.intermediate_size or 4 * H
        self.input_norm = nn.RMSNorm(H, eps=1e-6)
        self.qkv_proj = nn.Linear(H, 3 * H)
        self.o_proj = nn.Linear(H, H)
        self.post_attention_norm = nn.RMSNorm(H, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(H, inner), nn.GELU(), nn.Linear(inner, H))
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, H = x.shape
        q, k, v = self.qkv_proj(self.input_norm(x)).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, heads, L, hd)
        x = x + self.dropout(self.o_proj(o.transpose(1, 2).reshape(B, L, H)))
        x = x + self.dropout(self.mlp(self.post_attention_norm(x)))
        return x, k, v


class AttentionBackbone(PxByBackbone):
    """Input projection (when ``embed_size != hidden_size``), decoder blocks, final RMSNorm."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        E, H = config.embed_size, config.hidden_size
        self.causal = not config.bidirectional
        self.rope_theta = float(config.rope_theta)
        self.input_proj = nn.Linear(E, H) if E != H else nn.Identity()
        self.layers = nn.ModuleList(AttentionBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(H, eps=1e-6)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        """``x (B, L, E)``; ``attention_mask (B, L)`` marks real positions (padded keys are never attended);
        ``state`` = the cached keys/values of earlier positions."""
        B, L, _ = x.shape
        device = x.device
        x = self.input_proj(x)
        if attention_mask is None:
            new_mask = torch.ones(B, L, dtype=torch.bool, device=device)
        else:
            new_mask = attention_mask.bool()
        if state is not None:
            past_mask, start = state["key_mask"][0], state["position"][0]
        else:
            past_mask = torch.zeros(B, 0, dtype=torch.bool, device=device)
            start = torch.zeros(B, dtype=torch.long, device=device)
        counts = new_mask.long().cumsum(1)
        positions = (start[:, None] + counts - 1).clamp(min=0)  # index among the row's real tokens
        key_mask = torch.cat((past_mask, new_mask), dim=1)  # (B, T)
        T0, T = past_mask.shape[1], key_mask.shape[1]
        q_index = torch.arange(T0, T, device=device)[:, None]  # (L, 1)
        k_index = torch.arange(T, device=device)[None, :]  # (1, T)
        allowed = key_mask[:, None, :].expand(B, L, T)
        if self.causal:
            allowed = allowed & (k_index <= q_index)
        allowed = (allowed | (k_index == q_index))[:, None]  # a query always sees itself (no empty rows)
        head_dim = self.layers[0].head_dim if len(self.layers) else 2
        cos, sin = rotary_cos_sin(positions, head_dim, self.rope_theta, x.dtype)
        keys, values, layers = [], [], []
        for i, layer in enumerate(self.layers):
            past = (state["key"][i], state["value"][i]) if state is not None else None
            x, k, v = self._layer_call(layer, x, cos, sin, allowed, past)
            keys.append(k)
            values.append(v)
            layers.append(x)
        x = self.norm(x)
        if attention_mask is not None:
            x = x * new_mask.unsqueeze(-1).to(x.dtype)
        if output_hidden_states:
            layers = [t * new_mask.unsqueeze(-1).to(t.dtype) for t in layers[:-1]] + [x]
        new_state = None
        if use_cache:
            new_state = {
                "key": keys,
                "value": values,
                "key_mask": [key_mask],
                "position": [start + new_mask.long().sum(1)],
            }
        return BackboneOutput(x, new_state, layers if output_hidden_states else None)


class V1EncoderBackbone(PxByBackbone):
    """``attention_style="v1_encoder"``: the v1 ``SimpleTransformerModel`` body, a PyTorch ``TransformerEncoder``
    (post-norm, ReLU FFN of ``intermediate_size`` (4× by default), ``dropout`` (the v1 models trained with 0.1), no
    positions, no causal mask) of width ``hidden_size``; only padded keys are masked (the v1 model never saw
    padding)."""

    causal = False

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        E, W = config.embed_size, config.hidden_size
        self.input_proj = nn.Linear(E, W) if E != W else nn.Identity()
        layer = nn.TransformerEncoderLayer(
            W,
            config.num_attention_heads,
            config.intermediate_size or 4 * W,
            dropout=config.dropout,
            activation="relu",
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_hidden_layers, enable_nested_tensor=False)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        if state is not None or use_cache:
            raise ValueError("the v1 encoder is bidirectional: it has no cache")
        mask = _real_mask(attention_mask)
        padding = None if mask is None else ~mask
        x = self.input_proj(x)
        layers = []
        for layer in self.encoder.layers:  # what TransformerEncoder(norm=None) runs, one layer at a time
            x = self._layer_call(lambda t, layer=layer: layer(t, src_key_padding_mask=padding), x)
            if mask is not None:
                x = x * mask.unsqueeze(-1).to(x.dtype)
            layers.append(x)
        return BackboneOutput(x, None, layers if output_hidden_states else None)


# --------------------------------------------------------------------------------------------------
# Mamba
# --------------------------------------------------------------------------------------------------
_WARNED_NO_MAMBAPY = False


def _mambapy_pscan() -> Any:
    global _WARNED_NO_MAMBAPY
    if importlib.util.find_spec("mambapy") is not None:
        from mambapy.pscan import pscan

        return pscan
    if not _WARNED_NO_MAMBAPY:
        _WARNED_NO_MAMBAPY = True
        logger.warning(
            "mambapy is not installed: the Mamba backbone uses the sequential PyTorch scan, which is very slow on "
            "CPU (pip install mambapy, or pixelbytes[cpu-mamba])"
        )
    return None


def _selective_scan(dA: torch.Tensor, dBu: torch.Tensor, use_mambapy: bool) -> torch.Tensor:
    """``h_t = dA_t · h_{t-1} + dBu_t`` (``h_{-1} = 0``) over ``(B, L, D, N)`` → all states ``(B, L, D, N)``."""
    L = dA.shape[1]
    if L == 1:
        return dBu
    pscan = _mambapy_pscan() if use_mambapy else None  # warns once when mambapy is asked for but missing
    if pscan is not None:
        return pscan(dA, dBu)
    h = torch.zeros_like(dBu[:, 0])
    states = []
    for t in range(L):
        h = dA[:, t] * h + dBu[:, t]
        states.append(h)
    return torch.stack(states, dim=1)


def mamba_mixer_forward(
    mixer: nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
    use_mambapy: bool = True,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The torch path of ``transformers``' ``MambaMixer`` with its parameters, from an optional state.

    ``hidden_states (B, L, H)``; ``attention_mask (B, L)`` zeroes padded positions (as ``transformers`` does);
    ``state = (conv (B, D, K-1), ssm (B, D, N))`` from earlier positions. Returns the output and the new state.
    """
    dtype = hidden_states.dtype
    if attention_mask is not None:
        hidden_states = hidden_states * attention_mask[:, :, None].to(dtype)
    projected = mixer.in_proj(hidden_states).transpose(1, 2)  # (B, 2D, L)
    u, gate = projected.chunk(2, dim=1)  # (B, D, L) each
    D = u.shape[1]
    K = mixer.conv_kernel_size
    if state is None:
        conv_in = F.pad(u, (K - 1, 0))
    else:
        conv_in = torch.cat((state[0].to(u.dtype), u), dim=-1)
    new_conv = conv_in[:, :, conv_in.shape[-1] - (K - 1) :]
    u = F.conv1d(conv_in, mixer.conv1d.weight, mixer.conv1d.bias, groups=D)  # (B, D, L)
    u = mixer.act(u)
    if attention_mask is not None:
        u = u * attention_mask[:, None, :].to(u.dtype)
    ut = u.transpose(1, 2)  # (B, L, D)
    time_step, Bm, Cm = torch.split(
        mixer.x_proj(ut), [mixer.time_step_rank, mixer.ssm_state_size, mixer.ssm_state_size], dim=-1
    )
    dt = F.softplus(mixer.dt_proj(time_step).float())  # (B, L, D)
    A = -torch.exp(mixer.A_log.float())  # (D, N)
    dA = torch.exp(dt[..., None] * A)  # (B, L, D, N)
    dBu = dt[..., None] * Bm.float()[:, :, None, :] * ut.float()[..., None]  # (B, L, D, N)
    if state is not None:
        dBu = torch.cat((dBu[:, :1] + dA[:, :1] * state[1].float()[:, None], dBu[:, 1:]), dim=1)
    states = _selective_scan(dA, dBu, use_mambapy)  # (B, L, D, N)
    y = (states @ Cm.float()[..., None]).squeeze(-1)  # (B, L, D)
    y = y + ut.float() * mixer.D.float()
    y = y * F.silu(gate.transpose(1, 2).float())
    out = mixer.out_proj(y.to(dtype))
    return out, (new_conv, states[:, -1])


def _mamba_config(config: PxByConfig, **overrides: Any) -> Any:
    """The ``transformers`` ``MambaConfig`` of a PixelBytes Mamba backbone (``overrides`` for the v1 mixers)."""
    from transformers import MambaConfig

    return MambaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        state_size=config.state_size,
        expand=config.expand,
        conv_kernel=config.conv_kernel,
        num_hidden_layers=config.num_hidden_layers,
        use_mambapy=config.use_mambapy,
        **overrides,
    )


class _StateSpaceStack(PxByBackbone):
    """The loop shared by the Mamba stacks: input projection, then layer ``i`` (``_layer``, checkpointed when
    enabled) after ``_between`` (from the second layer on), then ``_final``; per-layer conv / ssm states.

    Padded positions are moved before each row's real tokens (zeroed there, they leave every state at zero), then
    put back."""

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        """``x (B, L, E)``; ``state`` = conv/ssm states of earlier positions."""
        mask = _real_mask(attention_mask)
        if mask is None:
            out = self._stack(x, None, state, use_cache)
            return BackboneOutput(out.hidden, out.state, out.layers if output_hidden_states else None)
        order = _align(mask, real_first=False)
        out = self._stack(_gather(x, order), mask.gather(1, order), state, use_cache)
        layers = [_scatter_back(t, order, mask) for t in out.layers] if output_hidden_states else None
        return BackboneOutput(_scatter_back(out.hidden, order, mask), out.state, layers)

    def _stack(
        self, x: torch.Tensor, mask: torch.Tensor | None, state: States | None, use_cache: bool
    ) -> BackboneOutput:
        x = self.input_proj(x)
        mask = None if mask is None else mask.to(x.dtype)
        convs, ssms, layers = [], [], []
        for i in range(self.num_layers):
            layer_state = (state["conv"][i], state["ssm"][i]) if state is not None else None
            if i > 0:
                x = self._between(x)
            x, new_state = self._layer_call(self._layer, i, x, mask, layer_state, use_cache)
            layers.append(x)
            if use_cache:
                convs.append(new_state[0])
                ssms.append(new_state[1])
        x = self._final(x)
        layers[-1:] = [x]
        return BackboneOutput(x, {"conv": convs, "ssm": ssms} if use_cache else None, layers)

    def _between(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _layer(
        self, i: int, x: torch.Tensor, mask: torch.Tensor | None, layer_state: Any, use_cache: bool
    ) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError


class MambaBackbone(_StateSpaceStack):
    """Input projection, ``transformers`` ``MambaBlock``s (``layers``; ``backward_layers`` for the time-flipped
    pass when bidirectional), final RMSNorm ``norm_f``."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        from transformers.models.mamba.modeling_mamba import MambaBlock, MambaRMSNorm

        E, H, n = config.embed_size, config.hidden_size, config.num_hidden_layers
        mamba_config = _mamba_config(config)
        self.use_mambapy = bool(config.use_mambapy)
        self.bidirectional = bool(config.bidirectional)
        self.causal = not self.bidirectional
        self.num_layers = n
        self.input_proj = nn.Linear(E, H) if E != H else nn.Identity()
        self.layers = nn.ModuleList(MambaBlock(mamba_config, layer_idx=i) for i in range(n))
        if self.bidirectional:
            self.backward_layers = nn.ModuleList(MambaBlock(mamba_config, layer_idx=i) for i in range(n))
        self.norm_f = MambaRMSNorm(H, eps=mamba_config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.dropout)
        #: drive ``MambaMixer.forward`` itself (the ``transformers`` path: its CUDA kernels when installed) for
        #: uncached, unpadded CUDA forwards; CPU tensors always take :func:`mamba_mixer_forward`.
        self.use_transformers_mixer_on_cuda = True

    def _transformers_path(self, x: torch.Tensor) -> bool:
        return x.is_cuda and self.use_transformers_mixer_on_cuda

    def _mixer(
        self, block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, state: Any, need_state: bool
    ) -> tuple[torch.Tensor, Any]:
        h = block.norm(x.to(block.norm.weight.dtype))
        if mask is None and not need_state and state is None and self._transformers_path(x):
            # (with a mask the fused training kernel would let padded positions into the state: our path then)
            return block.mixer(h), None
        return mamba_mixer_forward(block.mixer, h, mask, state, self.use_mambapy)

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_f(x)

    def _layer(
        self, i: int, x: torch.Tensor, mask: torch.Tensor | None, layer_state: Any, use_cache: bool
    ) -> tuple[torch.Tensor, Any]:
        """Block ``i``: ``x + dropout(mixer(norm(x)))`` (plus the time-flipped mixer when bidirectional)."""
        block = self.layers[i]
        residual = x.float() if block.residual_in_fp32 else x
        out, new_state = self._mixer(block, x, mask, layer_state, use_cache)
        if self.bidirectional:
            back, _ = self._mixer(
                self.backward_layers[i], x.flip(1), None if mask is None else mask.flip(1), None, False
            )
            out = out + back.flip(1)
        return (residual + self.dropout(out)).to(x.dtype), new_state


def _run_mixer(
    mixer: nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    state: tuple[torch.Tensor, torch.Tensor] | None,
    need_state: bool,
    use_mambapy: bool,
    allow_transformers: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """One mixer over ``x (B, L, H)``: ``MambaMixer.forward`` (its CUDA kernels) only for uncached, unpadded CUDA
    tensors when ``allow_transformers``; :func:`mamba_mixer_forward` otherwise (always on CPU)."""
    if allow_transformers and x.is_cuda and mask is None and state is None and not need_state:
        return mixer(x), None
    return mamba_mixer_forward(mixer, x, mask, state, use_mambapy)


class V1MambaBackbone(_StateSpaceStack):
    """``mamba_style="v1"``: the v1 ``bMamba`` body (reference inventory §3.2, DESIGN §6).

    ``mixers.0`` = the original ``_mamba``, ``mixers.k`` = ``layers.{k-1}``; each is a mamba_ssm ``Mamba``
    (no bias in ``in_proj`` / ``out_proj``, conv bias, ``dt_rank = ceil(hidden / 16)``), i.e. a ``transformers``
    ``MambaMixer`` with the same parameter names. The mixers are chained with no norm and no residual. With
    ``bidirectional=True`` the first layer is ``norm(mixer(x) + flip(mixer(flip(x))))`` (ONE set of weights,
    ``norm`` a LayerNorm) and the later layers stay causal; the model as a whole then sees the future and has
    no cache. Unidirectional stacks carry the per-layer conv / ssm states for cached generation.
    """

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        from transformers.models.mamba.modeling_mamba import MambaMixer

        E, H, n = config.embed_size, config.hidden_size, config.num_hidden_layers
        mamba_config = _mamba_config(config, use_bias=False, use_conv_bias=True, hidden_act="silu")
        self.use_mambapy = bool(config.use_mambapy)
        self.bidirectional = bool(config.bidirectional)
        self.input_proj = nn.Linear(E, H) if E != H else nn.Identity()
        self.mixers = nn.ModuleList(MambaMixer(mamba_config, layer_idx=i) for i in range(n))
        self.norm = nn.LayerNorm(H) if self.bidirectional else None
        self.causal = not self.bidirectional
        self.num_layers = n
        self.dropout = nn.Dropout(config.dropout)
        #: as :class:`MambaBackbone`: ``MambaMixer.forward`` itself for uncached, unpadded CUDA forwards only
        self.use_transformers_mixer_on_cuda = True

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BackboneOutput:
        """``x (B, L, E)``; ``state`` = per-layer conv / ssm states (unidirectional stacks only); padded positions
        are handled as in :class:`MambaBackbone`."""
        if self.bidirectional and (state is not None or use_cache):
            raise ValueError("the bidirectional v1 Mamba re-encodes its window: it has no cache")
        return super().forward(x, attention_mask, state, use_cache, output_hidden_states)

    def _between(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x)

    def _layer(
        self, i: int, x: torch.Tensor, mask: torch.Tensor | None, layer_state: Any, use_cache: bool
    ) -> tuple[torch.Tensor, Any]:
        run = {"use_mambapy": self.use_mambapy, "allow_transformers": self.use_transformers_mixer_on_cuda}
        mixer = self.mixers[i]
        out, new_state = _run_mixer(mixer, x, mask, layer_state, use_cache, **run)
        if i == 0 and self.norm is not None:
            back, _ = _run_mixer(mixer, x.flip(1), None if mask is None else mask.flip(1), None, False, **run)
            out = self.norm(out + back.flip(1))
        return out, new_state


def init_mamba_mixer(module: nn.Module) -> None:
    """What ``MambaPreTrainedModel._init_weights`` does for a mixer (``MambaBlock`` leaves ``A_log``/``D`` empty)."""
    from transformers import initialization as init

    module.init_mamba_weights()  # A_log, D, dt_proj
    init.kaiming_uniform_(module.conv1d.weight, a=math.sqrt(5))
    if module.conv1d.bias is not None:
        init.zeros_(module.conv1d.bias)
    init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))

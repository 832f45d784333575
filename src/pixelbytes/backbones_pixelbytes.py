"""Embeddings and backbones of PixelBytes models besides the aPxBy ones (DESIGN §6).

* :class:`WindowEmbedding` = v1 ``PxByEmbed`` (3×3 window, gated convolution) and :class:`CenterEmbedding`
  (the token alone); their parameter names are the original ones, so v1 checkpoints convert by renaming.
* :class:`AttentionBackbone`: pre-norm decoder blocks with rotary positions and SDPA (causal with a KV cache,
  or bidirectional without a mask); rotary positions count each row's real tokens (left padding is exact).
* :class:`V1EncoderBackbone`: the v1 ``TransformerEncoder`` (``attention_style="v1_encoder"``, converted checkpoints).
* :class:`MambaBackbone`: stacked ``transformers`` ``MambaBlock``s (RMSNorm, residual, final norm). On CPU the
  mixers run through :func:`mamba_mixer_forward` (a torch / ``mambapy`` implementation that reads the mixer's own
  parameters and carries the conv and ssm states for O(1) cached steps), never through the CUDA kernels that
  ``transformers`` binds at import time without a device check. Bidirectional = a forward and a separately
  weighted time-flipped stack, their mixer outputs summed per layer.
* :class:`V1MambaBackbone` (``mamba_style="v1"``): the v1 ``bMamba`` body of converted checkpoints, plain mixers
  (mamba_ssm's ``Mamba`` = ``transformers``' ``MambaMixer``, same parameter names) with no norm and no residual;
  bidirectional = the first mixer applied forward and on the flipped sequence (shared weights), summed, LayerNorm.

Every backbone returns ``(hidden (B, L, H), states)`` where ``states`` is a dict of per-layer tensor lists with
the batch first (see :class:`~pixelbytes.generation_pixelbytes.PxByCache`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .configuration_pixelbytes import PxByConfig

logger = logging.getLogger(__name__)

__all__ = [
    "AttentionBackbone",
    "CenterEmbedding",
    "MambaBackbone",
    "V1EncoderBackbone",
    "V1MambaBackbone",
    "WindowEmbedding",
    "embedding_rows",
    "mamba_mixer_forward",
]

States = dict[str, list[torch.Tensor]]


def embedding_rows(config: PxByConfig) -> int:
    """Rows of the embedding tables: the vocabulary, plus the mask id ``vocab_size`` for masked diffusion."""
    masked = config.objective == "diffusion" and config.diffusion_scheme == "masked"
    return config.vocab_size + (1 if masked else 0)


# --------------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------------
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


class AttentionBackbone(nn.Module):
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
    ) -> tuple[torch.Tensor, States | None]:
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
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            past = (state["key"][i], state["value"][i]) if state is not None else None
            x, k, v = layer(x, cos, sin, allowed, past)
            keys.append(k)
            values.append(v)
        x = self.norm(x)
        if not use_cache:
            return x, None
        return x, {
            "key": keys,
            "value": values,
            "key_mask": [key_mask],
            "position": [start + new_mask.long().sum(1)],
        }


class V1EncoderBackbone(nn.Module):
    """``attention_style="v1_encoder"``: the v1 ``SimpleTransformerModel`` body, a PyTorch ``TransformerEncoder``
    (post-norm, ReLU FFN of ``intermediate_size`` (4× by default), dropout 0.1, no positions, no causal mask) of
    width ``hidden_size``; only padded keys are masked (the v1 model never saw padding)."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        E, W = config.embed_size, config.hidden_size
        self.input_proj = nn.Linear(E, W) if E != W else nn.Identity()
        layer = nn.TransformerEncoderLayer(
            W,
            config.num_attention_heads,
            config.intermediate_size or 4 * W,
            dropout=0.1,
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
    ) -> tuple[torch.Tensor, States | None]:
        if state is not None or use_cache:
            raise ValueError("the v1 encoder is bidirectional: it has no cache")
        padding = None if attention_mask is None else ~attention_mask.bool()
        return self.encoder(self.input_proj(x), src_key_padding_mask=padding), None


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
    pscan = _mambapy_pscan()  # warns once when mambapy is missing
    if use_mambapy and pscan is not None:
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


class MambaBackbone(nn.Module):
    """Input projection, ``transformers`` ``MambaBlock``s (``layers``; ``backward_layers`` for the time-flipped
    pass when bidirectional), final RMSNorm ``norm_f``."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        from transformers.models.mamba.modeling_mamba import MambaBlock, MambaRMSNorm

        E, H, n = config.embed_size, config.hidden_size, config.num_hidden_layers
        mamba_config = _mamba_config(config)
        self.use_mambapy = bool(config.use_mambapy)
        self.bidirectional = bool(config.bidirectional)
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

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, States | None]:
        """``x (B, L, E)``; padded positions (``attention_mask == 0``) must all come BEFORE a row's real tokens
        (the model right-aligns rows), so they leave the states at zero; ``state`` = conv/ssm states."""
        x = self.input_proj(x)
        mask = None if attention_mask is None else attention_mask.to(x.dtype)
        convs, ssms = [], []
        for i, block in enumerate(self.layers):
            layer_state = (state["conv"][i], state["ssm"][i]) if state is not None else None
            residual = x.float() if block.residual_in_fp32 else x
            out, new_state = self._mixer(block, x, mask, layer_state, use_cache)
            if self.bidirectional:
                flipped = x.flip(1)
                back, _ = self._mixer(
                    self.backward_layers[i], flipped, None if mask is None else mask.flip(1), None, False
                )
                out = out + back.flip(1)
            x = (residual + self.dropout(out)).to(x.dtype)
            if use_cache:
                convs.append(new_state[0])
                ssms.append(new_state[1])
        x = self.norm_f(x)
        return x, ({"conv": convs, "ssm": ssms} if use_cache else None)


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


class V1MambaBackbone(nn.Module):
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
        #: as :class:`MambaBackbone`: ``MambaMixer.forward`` itself for uncached, unpadded CUDA forwards only
        self.use_transformers_mixer_on_cuda = True

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: States | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, States | None]:
        """``x (B, L, E)``; padded positions (``attention_mask == 0``) must come BEFORE a row's real tokens;
        ``state`` = per-layer conv / ssm states (unidirectional stacks only)."""
        if self.bidirectional and (state is not None or use_cache):
            raise ValueError("the bidirectional v1 Mamba re-encodes its window: it has no cache")
        x = self.input_proj(x)
        mask = None if attention_mask is None else attention_mask.to(x.dtype)
        run = {"use_mambapy": self.use_mambapy, "allow_transformers": self.use_transformers_mixer_on_cuda}
        convs, ssms = [], []
        for i, mixer in enumerate(self.mixers):
            layer_state = (state["conv"][i], state["ssm"][i]) if state is not None else None
            out, new_state = _run_mixer(mixer, x, mask, layer_state, use_cache, **run)
            if i == 0 and self.norm is not None:
                back, _ = _run_mixer(mixer, x.flip(1), None if mask is None else mask.flip(1), None, False, **run)
                out = self.norm(out + back.flip(1))
            x = out
            if use_cache:
                convs.append(new_state[0])
                ssms.append(new_state[1])
        return x, ({"conv": convs, "ssm": ssms} if use_cache else None)


def init_mamba_mixer(module: nn.Module) -> None:
    """What ``MambaPreTrainedModel._init_weights`` does for a mixer (``MambaBlock`` leaves ``A_log``/``D`` empty)."""
    from transformers import initialization as init

    module.init_mamba_weights()  # A_log, D, dt_proj
    init.kaiming_uniform_(module.conv1d.weight, a=math.sqrt(5))
    if module.conv1d.bias is not None:
        init.zeros_(module.conv1d.bias)
    init.kaiming_uniform_(module.out_proj.weight, a=math.sqrt(5))

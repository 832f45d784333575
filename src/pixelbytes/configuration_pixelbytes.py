"""``PxByConfig``: every knob of a PixelBytes sequence model (DESIGN §6), validated once.

The defaults are the published aPxBy LSTM (vocabulary 151, pxby6 embedding of 6 × 21 = 126,
2 unidirectional LSTM layers of 512, next-token objective: 3,492,602 parameters; with
``objective="context"`` it is the published ≈3.9 M model).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from transformers import PretrainedConfig

__all__ = ["BACKBONES", "EMBEDDINGS", "OBJECTIVES", "PxByConfig"]

logger = logging.getLogger(__name__)

EMBEDDINGS = ("pxby6", "window3x3", "center")
BACKBONES = ("lstm", "mamba", "attention")
OBJECTIVES = ("next_token", "context", "diffusion")
DIFFUSION_SCHEMES = ("masked", "embedding_noise")
BIDIRECTIONAL = (False, True, "first_layer")
ATTENTION_STYLES = ("modern", "v1_encoder")
MAMBA_STYLES = ("modern", "v1")
NUM_CONTEXT_SLOTS = 6
#: Most caption-memory buckets (the table costs buckets × embed_size parameters).
MAX_CAPTION_MEMORY_BUCKETS = 2**22
#: Keywords that ``transformers`` itself passes to a config (saved files, remote code, pipelines): not warned about.
TRANSFORMERS_KEYWORDS = frozenset(
    {"model_type", "name_or_path", "auto_map", "custom_pipelines", "transformers_version", "architectures", "dtype",
     "torch_dtype", "attn_implementation", "task_specific_params", "problem_type"}
)  # fmt: skip
#: Keywords that look like PxByConfig knobs but are not (other libraries' names): refused with the right name.
MISNAMED_KEYWORDS = {
    "num_layers": "num_hidden_layers",
    "n_layer": "num_hidden_layers",
    "n_layers": "num_hidden_layers",
    "depth": "num_hidden_layers",
    "embedding_dim": "embed_size",
    "embedding_size": "embed_size",
    "n_embd": "embed_size",
    "d_model": "hidden_size",
    "dim": "hidden_size",
    "d_state": "state_size",
    "d_conv": "conv_kernel",
    "n_head": "num_attention_heads",
    "num_heads": "num_attention_heads",
    "window": "window_size",
    "diffusion_steps": "num_diffusion_steps",
    "bidirection": "bidirectional",
    "pxby_emb": "embed_size",
}


class PxByConfig(PretrainedConfig):
    r"""Configuration of :class:`~pixelbytes.modeling_pixelbytes.PxBySequenceModel`.

    Vocabulary:
        vocab_size (`int`, defaults to 151): ``num_bytes + num_colors + num_levels``.
        num_bytes / num_colors / num_levels (`int`, 58 / 55 / 38): sizes of the tokenizer's tables (``num_levels``
            may be 0: the 113-id v1 vocabulary has no action / audio levels); a tokenizer
            whose tables differ is refused (:meth:`check_tokenizer`).
        pad_token_id / row_token_id / sep_token_id (`int`, 0 / 1 / 2): the structural ids (fixed by the layout).
        audio_channels (`int`, 2): frame width of audio blocks in the layout.
        vocab_fingerprint (`str`, optional): hash of the tokenizer's tables (set by :meth:`from_tokenizer`) so a
            tokenizer with the same table sizes but other contents is refused too.
    Embedding:
        embedding (`str`, ``"pxby6"``): ``"pxby6"`` (6 context slots, one shared table, concatenated),
            ``"window3x3"`` (v1 PxByEmbed) or ``"center"`` (the token only).
        embed_size (`int`, 126): embedding width; divisible by 6 for pxby6.
        window_conv (`bool`, True): the 3×3 convolution of PxByEmbed.
        grid_position_size (`int`, 0): add learned embeddings of WHERE the next token lands (block kind, and for
            image positions the frame, row and column, each clamped to ``grid_position_size - 1``) to the token
            embedding. 0 = off, as in the papers; a recurrent model must otherwise count rows and columns to know
            where a shape starts, which it learns slowly. Positions come from the layout (DESIGN §5), derived
            from ``input_ids`` or passed as ``grid_positions``.
        caption_memory_buckets (`int`, 0): add to every token's input the mean embedding of the byte trigrams
            of the LATEST text segment so far (hashed into this many buckets). 0 = off, as in the papers. Why: a
            caption conditions pixels hundreds of tokens later; through the recurrent state alone its effect is
            learnt slowly (credit assignment over the whole frame), while this direct path gives every pixel the
            caption's words as an input. Causal models only. A training window cut from a longer sample gets the
            memory it has in the whole sample (``caption_prefix_ids``, added by the window dataset). At most
            2**22 buckets.
        caption_memory_cell_frames (`int`, 0): modulate the caption memory ``m`` per image cell,
            ``m ⊙ (1 + cell[t, r, c])``, with a learned vector per grid cell of the first N frames (later frames use
            frame N - 1's; one more vector for every non-image position). 0 = off. Whether a pixel is inside a
            shape is a conjunction of the caption and the cell (and, for animations, the frame); the product makes
            it a bilinear, quickly learnt function instead of something the recurrence must build. Needs
            ``caption_memory_buckets`` and ``grid_position_size``; costs N · grid_position_size² · embed_size
            parameters.
    Backbone:
        backbone (`str`, ``"lstm"``): ``"lstm"``, ``"mamba"`` or ``"attention"``.
        hidden_size (`int`, 512): the backbone's OUTPUT width (a bidirectional LSTM layer uses hidden_size/2 per
            direction).
        num_hidden_layers (`int`, 2).
        bidirectional (`bool | "first_layer"`, False): ``"first_layer"`` = the v1 RNN (bidirectional first layer,
            unidirectional rest).
        window_size (`int`, 256): context length of bidirectional models (they re-encode a sliding window).
        dropout (`float`, 0.0): in training, drops what each backbone layer passes on: the residual branches of
            attention and Mamba blocks (and the v1 encoder's own dropouts), the output of every LSTM layer and
            v1 Mamba mixer that feeds another one. With one LSTM layer or one v1 Mamba mixer it has nothing to act
            on: a configuration error. (The v1 attention checkpoints trained with 0.1; conversion sets it.)
        lstm_forget_bias (`float` or None, 1.0): initial forget-gate bias of LSTM layers (``b_ih`` = this value,
            ``b_hh`` = 0 on the forget gate; Jozefowicz et al., 2015): a cell then keeps most of its memory per
            step at the start of training, so a caption is not forgotten before its sprite. ``None`` keeps
            PyTorch's default uniform initialisation, as the original code (and its published models) did.
        state_size / conv_kernel / expand / use_mambapy: Mamba extras.
        mamba_style (`str`, ``"modern"``): ``"modern"`` (``transformers`` ``MambaBlock``s: RMSNorm, residual, final
            norm) or ``"v1"`` (the v1 ``bMamba`` of converted checkpoints: plain mamba_ssm mixers with no norm and no
            residual; with ``bidirectional=True`` the FIRST mixer runs forward and on the time-flipped sequence with
            the same weights, the two summed and LayerNorm-ed, and only that layer sees both directions).
        num_attention_heads / intermediate_size / rope_theta / attention_style: attention extras.
    Objective:
        objective (`str`, ``"next_token"``): ``"next_token"``, ``"context"`` (6-slot prediction) or ``"diffusion"``.
        diffusion_scheme (`str`, ``"masked"``): ``"masked"`` (absorbing-state masked diffusion, a V head scoring
            each token) or ``"embedding_noise"`` (the original aPxBy scheme: Gaussian noise on the pxby6 embeddings,
            a 6·V head reconstructing every context slot).
        num_diffusion_steps (`int`, 5): unmasking steps of ``infill`` (masked) / noise levels n of α = 1 - t/n
            (embedding_noise).
        change_token_weight (`float`, 1.0): loss weight of targets that differ from the token before them.
            On sprites the cross-entropy is dominated by long runs of background; weighting the changes
            (e.g. 4.0) makes shapes and colour switches count.
        novel_pixel_weight (`float`, 1.0): loss weight of pixel (colour) targets equal to none of their known
            neighbours (the six context slots of their position: the cells above, the previous frame, the token
            before). Those are the pixels where a shape starts, which only the caption can predict: a handful
            per sprite, so with equal weights a model learns to copy neighbours long before it learns to start
            shapes (the demo uses 10).
    """

    model_type = "pixelbytes"
    #: outputs the Trainer leaves out of eval predictions; the cache is ``cache`` (transformers >= 5.24) or
    #: ``past_key_values`` (earlier)
    keys_to_ignore_at_inference = [
        "cache",
        "past_key_values",
        "hidden_states",
        "next_token_accuracy",
        "context_accuracy",
    ]

    vocab_size: int = 151
    num_bytes: int = 58
    num_colors: int = 55
    num_levels: int = 38
    pad_token_id: int | None = 0
    row_token_id: int = 1
    sep_token_id: int = 2
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    audio_channels: int = 2
    vocab_fingerprint: str | None = None
    embedding: str = "pxby6"
    embed_size: int = 126
    window_conv: bool = True
    grid_position_size: int = 0
    caption_memory_buckets: int = 0
    caption_memory_cell_frames: int = 0
    backbone: str = "lstm"
    hidden_size: int = 512
    num_hidden_layers: int = 2
    bidirectional: bool | str = False
    window_size: int = 256
    dropout: float = 0.0
    lstm_forget_bias: float | None = 1.0
    state_size: int = 16
    conv_kernel: int = 4
    expand: int = 2
    use_mambapy: bool = True
    mamba_style: str = "modern"
    num_attention_heads: int = 4
    intermediate_size: int | None = None
    rope_theta: float = 10000.0
    attention_style: str = "modern"
    objective: str = "next_token"
    diffusion_scheme: str = "masked"
    num_diffusion_steps: int = 5
    change_token_weight: float = 1.0
    novel_pixel_weight: float = 1.0
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        for name in kwargs:
            if name in MISNAMED_KEYWORDS:
                raise ValueError(
                    f"PxByConfig has no {name!r}: did you mean {MISNAMED_KEYWORDS[name]!r}? (an unknown keyword "
                    "would be stored and do nothing)"
                )
            if name not in TRANSFORMERS_KEYWORDS and not name.startswith("_"):
                logger.warning("PxByConfig got the unknown keyword %r: it is stored, but no model reads it", name)
        self._validate()
        super().__post_init__(**kwargs)

    # ---------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PxByConfig.{name} must be a positive integer, got {value!r}")

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"PxByConfig.{name}={value!r} is not one of {allowed}")

        for name in ("vocab_size", "num_bytes", "num_colors", "audio_channels", "embed_size",
                     "hidden_size", "num_hidden_layers", "window_size", "state_size", "conv_kernel", "expand",
                     "num_attention_heads", "num_diffusion_steps"):  # fmt: skip
            positive_int(name)
        choice("embedding", EMBEDDINGS)
        choice("backbone", BACKBONES)
        choice("objective", OBJECTIVES)
        choice("diffusion_scheme", DIFFUSION_SCHEMES)
        choice("attention_style", ATTENTION_STYLES)
        choice("mamba_style", MAMBA_STYLES)
        if not isinstance(self.num_levels, int) or isinstance(self.num_levels, bool) or self.num_levels < 0:
            raise ValueError(f"PxByConfig.num_levels must be a non-negative integer, got {self.num_levels!r}")
        if self.bidirectional not in BIDIRECTIONAL or (
            isinstance(self.bidirectional, str) and self.bidirectional != "first_layer"
        ):
            raise ValueError(
                f"PxByConfig.bidirectional must be False, True or 'first_layer', got {self.bidirectional!r}"
            )
        if self.num_bytes + self.num_colors + self.num_levels != self.vocab_size:
            raise ValueError(
                f"vocabulary table sizes {self.num_bytes} + {self.num_colors} + {self.num_levels} do not add up to "
                f"vocab_size={self.vocab_size}"
            )
        if (self.pad_token_id, self.row_token_id, self.sep_token_id) != (0, 1, 2):
            raise ValueError("pad/row/sep ids must be 0/1/2 (the layout of DESIGN §5 depends on them)")
        if self.num_bytes < 3:
            raise ValueError("the byte table needs at least the 3 structural bytes")
        if self.embedding == "pxby6" and self.embed_size % NUM_CONTEXT_SLOTS:
            raise ValueError(
                f"embed_size={self.embed_size} must be divisible by 6 for the pxby6 embedding "
                f"(e.g. {self.embed_size // NUM_CONTEXT_SLOTS * NUM_CONTEXT_SLOTS})"
            )
        if self.bidirectional and self.backbone == "lstm" and self.hidden_size % 2:
            raise ValueError(
                f"a bidirectional LSTM needs an even hidden_size (hidden/2 per direction), got {self.hidden_size}"
            )
        if self.bidirectional == "first_layer" and self.backbone != "lstm":
            raise ValueError("bidirectional='first_layer' is the v1 RNN structure: only for backbone='lstm'")
        if self.objective == "diffusion" and not self.bidirectional:
            raise ValueError("objective='diffusion' needs a bidirectional backbone (bidirectional=True)")
        if self.objective == "diffusion" and self.diffusion_scheme == "embedding_noise" and self.embedding != "pxby6":
            raise ValueError(
                "diffusion_scheme='embedding_noise' noises the 6 context-slot embeddings and reconstructs the 6 slots: "
                f"it needs embedding='pxby6', got {self.embedding!r}"
            )
        for name in ("grid_position_size", "caption_memory_buckets", "caption_memory_cell_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"PxByConfig.{name} must be a non-negative integer, got {value!r}")
        if self.caption_memory_buckets and (self.bidirectional or self.objective == "diffusion"):
            raise ValueError(
                "caption_memory_buckets needs a causal model (bidirectional=False and objective != 'diffusion'): "
                "its memory holds the text seen so far"
            )
        if self.caption_memory_cell_frames and not (self.caption_memory_buckets and self.grid_position_size):
            raise ValueError(
                "caption_memory_cell_frames modulates the caption memory by grid cell: it needs "
                "caption_memory_buckets > 0 and grid_position_size > 0"
            )
        if self.grid_position_size and self.objective == "diffusion":
            raise ValueError("grid_position_size is not available with objective='diffusion' (use 0)")
        if self.caption_memory_buckets > MAX_CAPTION_MEMORY_BUCKETS:
            raise ValueError(
                f"caption_memory_buckets={self.caption_memory_buckets} is above the limit {MAX_CAPTION_MEMORY_BUCKETS} "
                f"(its table would hold {self.caption_memory_buckets * self.embed_size:,} parameters)"
            )
        for name in ("change_token_weight", "novel_pixel_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
            if value != 1.0 and self.objective == "diffusion":
                raise ValueError(
                    f"{name} weights next-token targets; objective='diffusion' has none (keep {name}=1.0)"
                )
        if self.lstm_forget_bias is not None and (
            isinstance(self.lstm_forget_bias, bool) or not isinstance(self.lstm_forget_bias, (int, float))
            or not math.isfinite(self.lstm_forget_bias)
        ):  # fmt: skip
            raise ValueError(f"lstm_forget_bias must be a finite number or None, got {self.lstm_forget_bias!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        single_recurrent = self.backbone == "lstm" or (self.backbone == "mamba" and self.mamba_style == "v1")
        if self.dropout and single_recurrent and self.num_hidden_layers == 1:
            raise ValueError(
                f"dropout={self.dropout} acts between layers of backbone={self.backbone!r}, and there is only one "
                "(num_hidden_layers=1): use dropout=0.0 or more layers"
            )
        if self.backbone == "attention" and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be divisible by num_attention_heads={self.num_attention_heads}"
            )
        if (
            self.backbone == "attention"
            and self.attention_style == "modern"
            and (self.hidden_size // self.num_attention_heads) % 2
        ):
            raise ValueError(
                f"the rotary attention needs an even head size, got hidden_size / num_attention_heads = "
                f"{self.hidden_size // self.num_attention_heads}"
            )
        if self.backbone == "attention" and self.attention_style == "v1_encoder" and self.bidirectional is not True:
            raise ValueError(
                "attention_style='v1_encoder' (the v1 TransformerEncoder) has no causal mask: "
                "it needs bidirectional=True"
            )
        if self.intermediate_size is not None and (
            not isinstance(self.intermediate_size, int) or self.intermediate_size < 1
        ):
            raise ValueError(f"PxByConfig.intermediate_size must be a positive integer, got {self.intermediate_size!r}")
        if not float(self.rope_theta) > 0.0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta}")

    # ---------------------------------------------------------------------------------------------
    @property
    def is_causal(self) -> bool:
        """True when the model can generate with a cache (a unidirectional backbone)."""
        return not self.bidirectional

    @property
    def num_context_slots(self) -> int:
        """Width of ``context_ids``: 6 (pxby6), 9 (window3x3) or 1 (center)."""
        return {"pxby6": NUM_CONTEXT_SLOTS, "window3x3": 9, "center": 1}[self.embedding]

    @property
    def output_size(self) -> int:
        """Width of the output head: 6·V for the context objective and embedding-noise diffusion, V otherwise."""
        six = self.objective == "context" or (
            self.objective == "diffusion" and self.diffusion_scheme == "embedding_noise"
        )
        return self.vocab_size * (NUM_CONTEXT_SLOTS if six else 1)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> PxByConfig:
        """A config whose vocabulary settings match ``tokenizer`` (other knobs from ``kwargs``)."""
        vocab = tokenizer.vocabulary
        return cls(
            vocab_size=vocab.vocab_size,
            audio_channels=tokenizer.audio_channels,
            vocab_fingerprint=vocab.fingerprint,
            **vocab.table_sizes(),
            **kwargs,
        )

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise a clear error when ``tokenizer`` does not match this config (vocabulary tables, audio channels)."""
        vocab = getattr(tokenizer, "vocabulary", None)
        if vocab is None:
            raise TypeError(f"expected an ActionPixelBytesTokenizer, got {type(tokenizer).__name__}")
        self.check_vocabulary(vocab, source="the tokenizer")
        if tokenizer.audio_channels != self.audio_channels:
            raise ValueError(
                f"tokenizer/model mismatch: audio_channels {tokenizer.audio_channels} vs {self.audio_channels}"
            )

    def check_vocabulary(self, vocab: Any, source: str = "the tokenizer") -> None:
        """Raise a clear error when the vocabulary ``vocab`` (a :class:`~pixelbytes.vocabulary.PxByVocabulary`,
        from ``source``) differs from the one this model was built for: table sizes, and contents when the config
        records a ``vocab_fingerprint``."""
        ours = {"num_bytes": self.num_bytes, "num_colors": self.num_colors, "num_levels": self.num_levels}
        if vocab.table_sizes() != ours or vocab.vocab_size != self.vocab_size:
            raise ValueError(
                f"tokenizer/model mismatch: the vocabulary tables of {source} {vocab.table_sizes()} "
                f"(vocab_size {vocab.vocab_size}) differ from the model's {ours} (vocab_size {self.vocab_size})"
            )
        if self.vocab_fingerprint is not None and vocab.fingerprint != self.vocab_fingerprint:
            raise ValueError(
                f"tokenizer/model mismatch: the vocabulary tables (colours, levels or bytes) of {source} differ from "
                "the ones this model was trained with (vocab_fingerprint)"
            )

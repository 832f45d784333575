"""``PxBySequenceModel``: embeddings, backbones and heads of PixelBytes models (DESIGN §6).

Input/output contract (labels are ``(B, L)`` token ids, -100 ignored; ``context_ids[:, k]`` is the
context of position ``k + 1`` and ``logits[:, k]`` predicts token ``k + 1``):

* ``objective="next_token"``: ``logits (B, L, V)``, loss = HF ``ForCausalLM`` (shift inside);
* ``objective="context"``: ``context_logits (B, L, 6, V)`` (row k predicts slots 0-4 of
  ``context_ids[k + 1]`` and token ``k + 1`` in slot 5), loss = mean cross-entropy over the 6 slots;
  ``logits`` = the slot-5 head, so ``generate()`` works unchanged;
* bidirectional backbones ("window encoders", v1): the backbone reads ``input_ids[:, :-1]`` and its
  last position predicts ``input_ids[:, -1]``, the only label that counts; generation re-encodes the
  last ``window_size`` tokens at every step (no cache).

When ``context_ids`` is absent it is derived from ``input_ids`` (and ``attention_mask``) by the layout
engine, each row being its own stream. Padded positions never touch the recurrent state of real
tokens: masked rows are packed before the LSTM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_pixelbytes import NUM_CONTEXT_SLOTS, PxByConfig
from .generation_pixelbytes import PxByCache
from .layout import batch_context_ids
from .vocabulary import token_classes_for_sizes

__all__ = ["PxByModelOutput", "PxByPreTrainedModel", "PxBySequenceModel"]


@dataclass
class PxByModelOutput(ModelOutput):
    """Output of :class:`PxBySequenceModel`.

    Attributes:
        loss: training loss (when ``labels`` are given).
        logits: ``(B, L, V)`` next-token scores (the slot-5 head for the context objective).
        context_logits: ``(B, L, 6, V)`` for the context objective.
        past_key_values: a :class:`~pixelbytes.generation_pixelbytes.PxByCache` when ``use_cache``.
        hidden_states: ``(B, L, H)`` backbone outputs when ``output_hidden_states``.
        next_token_accuracy: accuracy of the next-token prediction on the labelled positions.
        context_accuracy: 6-slot accuracy (context objective).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    context_logits: torch.FloatTensor | None = None
    past_key_values: PxByCache | None = None
    hidden_states: torch.FloatTensor | None = None
    next_token_accuracy: torch.FloatTensor | None = None
    context_accuracy: torch.FloatTensor | None = None


class PxBy6Embedding(nn.Module):
    """aPxBy embedding: one ``Embedding(V, E/6, padding_idx=0)`` applied to the 6 context slots, concatenated."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__()
        self.slot_embedding = nn.Embedding(config.vocab_size, config.embed_size // NUM_CONTEXT_SLOTS, padding_idx=0)

    def forward(self, context_ids: torch.LongTensor) -> torch.Tensor:
        B, L, _ = context_ids.shape  # (B, L, 6)
        return self.slot_embedding(context_ids).reshape(B, L, -1)  # (B, L, 6·E/6)


class LSTMBackbone(nn.Module):
    """Stacked LSTM: unidirectional, bidirectional (hidden/2 per direction) or the v1 "first_layer" structure.

    ``forward`` runs whole sequences (packed when rows are padded); ``step`` advances one token with a
    cell-level update per layer (far cheaper than calling ``nn.LSTM`` on one step).
    """

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
        """One token for every row: ``x (B, E)`` → ``(B, H)``; unidirectional stacks only."""
        lstm = self.lstms[0]
        weights = lstm._flat_weights
        hs, cs = state
        new_h, new_c = [], []
        for layer in range(lstm.num_layers):
            w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
            h, c = torch.lstm_cell(x, (hs[layer], cs[layer]), w_ih, w_hh, b_ih, b_hh)  # (B, H) each
            new_h.append(h)
            new_c.append(c)
            x = h
        return x, (new_h, new_c)


class PxByPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading conventions shared by PixelBytes models."""

    config_class = PxByConfig
    config: PxByConfig
    base_model_prefix = "pixelbytes"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules: list[str] = []


class PxBySequenceModel(PxByPreTrainedModel, GenerationMixin):
    """PixelBytes sequence model: PxBy embedding → backbone → head, with ``generate()`` and a real cache."""

    _is_stateful = True

    def __init__(self, config: PxByConfig) -> None:
        super().__init__(config)
        if config.embedding != "pxby6":
            raise NotImplementedError(f"embedding={config.embedding!r} is not available yet; use 'pxby6'")
        if config.backbone != "lstm":
            raise NotImplementedError(f"backbone={config.backbone!r} is not available yet; use 'lstm'")
        if config.objective == "diffusion":
            raise NotImplementedError("objective='diffusion' is not available yet")
        self.embedding = PxBy6Embedding(config)
        self.backbone = LSTMBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.output_size)
        self.loss_type = "ForCausalLM"
        self._token_classes = token_classes_for_sizes(config.num_bytes, config.num_colors, config.num_levels)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    # ---------------------------------------------------------------------------------------------
    def derive_context_ids(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """HF-aligned ``(B, L, 6)`` contexts from ids alone (each row its own stream)."""
        mask = None if attention_mask is None else attention_mask.detach().cpu().numpy()
        ctx = batch_context_ids(input_ids.detach().cpu().numpy(), self._token_classes, self.config.audio_channels, mask)
        return torch.from_numpy(ctx).to(input_ids.device)

    def _check_inputs(self, input_ids: torch.Tensor, context_ids: torch.Tensor | None) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be integer token ids, got {input_ids.dtype}")
        V = self.config.vocab_size
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= V):
            raise ValueError(
                f"input_ids must be in [0, {V}), got values in [{int(input_ids.min())}, {int(input_ids.max())}]"
            )
        if context_ids is not None:
            expected = (*input_ids.shape, self.config.num_context_slots)
            if tuple(context_ids.shape) != expected:
                raise ValueError(f"context_ids must have shape {expected}, got {tuple(context_ids.shape)}")
            if context_ids.numel() and (int(context_ids.min()) < 0 or int(context_ids.max()) >= V):
                raise ValueError(f"context_ids must be in [0, {V})")

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        context_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        past_key_values: PxByCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> PxByModelOutput:
        """Run the model; see the module docstring for the contract. ``kwargs`` carry loss options
        (``num_items_in_batch``) from the Trainer."""
        if input_ids is None:
            raise ValueError("input_ids are required")
        self._check_inputs(input_ids, context_ids)
        causal = self.config.is_causal
        if use_cache is None:
            use_cache = self.config.use_cache and causal and not self.training
        if use_cache and not causal:
            raise ValueError(
                "bidirectional models have no cache: they re-encode the last window_size tokens (use_cache=False)"
            )
        if past_key_values is not None:
            hidden, cache = self._forward_cached(input_ids, context_ids, past_key_values)
        else:
            hidden, cache, context_ids = self._forward_full(input_ids, context_ids, attention_mask, labels, use_cache)
        out = self.lm_head(hidden)  # (B, L, V or 6V)
        context_logits = None
        if self.config.objective == "context":
            context_logits = out.view(*out.shape[:2], NUM_CONTEXT_SLOTS, self.config.vocab_size)  # (B, L, 6, V)
            logits = context_logits[:, :, NUM_CONTEXT_SLOTS - 1]
        else:
            logits = out
        loss = next_acc = ctx_acc = None
        if labels is not None:
            loss, next_acc, ctx_acc = self._loss(logits, context_logits, context_ids, labels, **kwargs)
        return PxByModelOutput(
            loss=loss,
            logits=logits,
            context_logits=context_logits,
            past_key_values=cache if use_cache else None,
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
    ) -> tuple[torch.Tensor, PxByCache | None, torch.LongTensor]:
        """A whole (prompt / training) sequence, no previous state."""
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        if context_ids is None:
            context_ids = self.derive_context_ids(input_ids, attention_mask)
        if not self.config.is_causal:
            return self._forward_window(input_ids, context_ids, attention_mask, labels), None, context_ids
        x = self.embedding(context_ids)  # (B, L, E)
        if attention_mask is None:
            hidden, (h, c) = self.backbone(x)
        else:
            hidden, (h, c) = self._forward_masked(x, attention_mask, need_final_state=use_cache)
        cache = None
        if use_cache:
            cache = PxByCache(h, c, input_ids, attention_mask, self._token_classes, self.config.audio_channels)
        return hidden, cache, context_ids

    def _forward_masked(
        self, x: torch.Tensor, attention_mask: torch.Tensor, need_final_state: bool = True
    ) -> tuple[torch.Tensor, tuple]:
        """Gather each row's real positions to the front, run, scatter back (pads → zeros).

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
    ) -> torch.Tensor:
        """Bidirectional window encoder over the last ``window_size`` positions (without the target with labels)."""
        stop = input_ids.shape[1] - (1 if labels is not None else 0)
        start = max(0, stop - self.config.window_size)
        x = self.embedding(context_ids[:, start:stop])
        hidden = torch.zeros(*input_ids.shape, self.config.hidden_size, dtype=x.dtype, device=x.device)
        if attention_mask is None:
            window, _ = self.backbone(x)
        else:
            window, _ = self._forward_masked(x, attention_mask[:, start:stop], need_final_state=False)
        hidden[:, start:stop] = window
        return hidden

    def _forward_cached(
        self, input_ids: torch.LongTensor, context_ids: torch.LongTensor | None, cache: PxByCache
    ) -> tuple[torch.Tensor, PxByCache]:
        """New tokens on top of a cache: contexts from the layout tracker, O(1) per token."""
        if not isinstance(cache, PxByCache):
            raise TypeError(f"past_key_values must be a PxByCache, got {type(cache).__name__}")
        if input_ids.shape[0] != cache.batch_size:
            raise ValueError(f"batch size {input_ids.shape[0]} differs from the cache's {cache.batch_size}")
        tracker = cache.tracker
        derived = []
        for column in input_ids.t().tolist():
            tracker.push(column)
            derived.append(tracker.contexts())
        if context_ids is None:
            context_ids = torch.tensor(derived, dtype=torch.long, device=input_ids.device).transpose(0, 1)
        x = self.embedding(context_ids)  # (B, k, E)
        state = (cache.h, cache.c)
        if x.shape[1] == 1:
            hidden, (cache.h, cache.c) = self.backbone.step(x[:, 0], state)
            hidden = hidden.unsqueeze(1)  # (B, 1, H)
        else:
            hidden, (cache.h, cache.c) = self.backbone(x, state=state)
        cache.seen_tokens += input_ids.shape[1]
        return hidden, cache

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
        weight = self.config.change_token_weight
        if context_logits is None and weight == 1.0:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=V, **kwargs)
            return loss, next_acc, None
        # (B, L-1) weight per target row: change_token_weight where the target differs from the token before it
        row_weight = torch.ones_like(target_next, dtype=torch.float32)
        if weight != 1.0:
            previous = labels[:, :-1].masked_fill(labels[:, :-1] == -100, -1)
            row_weight = row_weight.masked_fill(target_next != previous, weight)
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

    # ---------------------------------------------------------------------------------------------
    def generate(self, inputs: torch.Tensor | None = None, generation_config: Any = None, **kwargs: Any):
        """``GenerationMixin.generate`` with PixelBytes checks (ids range, window length, cache availability)."""
        input_ids = inputs if inputs is not None else kwargs.get("input_ids")
        if input_ids is not None:
            self._check_inputs(input_ids, None)
        max_new_tokens = kwargs.get("max_new_tokens")
        if max_new_tokens is not None and max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
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

"""``PxBySequenceModel``: embedder → backbone → objective, with ``generate()`` and a real cache (DESIGN §6-§7).

One token's way through the model:

1. :class:`~pixelbytes.embeddings_pixelbytes.PxByInputEmbedder` (``model.embeddings``) turns it into the input
   vector: its neighbourhood (pxby6 / window3x3 / centre), where it lands, the caption memory. Whole sequences
   derive the layout from the ids; a generated token reads it from the cache's layout tracker (``step``).
2. A :class:`~pixelbytes.backbones_pixelbytes.PxByBackbone` (``model.backbone``: LSTM, Mamba or attention, all
   behind one interface) runs it: whole sequences with any padding, or one ``step`` on the cached state.
3. The objective (``model.lm_head``, a :class:`~pixelbytes.objectives_pixelbytes.PxByObjective`) scores it and,
   with labels, computes the loss: next token, 6-slot context, masked diffusion or embedding noise.

Input/output contract (labels are ``(B, L)`` token ids, -100 ignored; ``context_ids[:, k]`` is the context of
position ``k + 1`` and ``logits[:, k]`` predicts token ``k + 1``; diffusion objectives score token k itself):
see :mod:`~pixelbytes.objectives_pixelbytes`. Bidirectional backbones with ``next_token`` / ``context`` ("window
encoders", v1) read ``input_ids[:, :-1]`` (the last ``window_size`` positions) and their last position predicts
``input_ids[:, -1]``; they generate by re-encoding that window at every step (no cache).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, cached_file

from .backbones_pixelbytes import build_backbone, init_mamba_mixer
from .configuration_pixelbytes import PxByConfig
from .embeddings_pixelbytes import CaptionMemory, PxByInputEmbedder, WindowEmbedding
from .generation_pixelbytes import CACHE_NAME, PxByCache, infill, resolve_cache_argument
from .graphs_pixelbytes import CapturedTokenStep, graph_step_supported
from .layout import NUM_POSITION_FIELDS, batch_context_ids
from .objectives_pixelbytes import PxByObjective, build_objective
from .vocabulary import PxByVocabulary

__all__ = ["PxByModelOutput", "PxByPreTrainedModel", "PxBySequenceModel"]

#: The tokenizer's vocabulary file; a model folder that holds one is checked against the model's config.
VOCAB_FILE_NAME = "pxby_vocab.json"


@dataclass
class PxByModelOutput(ModelOutput):
    """Output of :class:`PxBySequenceModel`.

    Attributes:
        loss: training loss (when ``labels`` are given).
        logits: ``(B, L, V)`` next-token scores (the slot-5 head for the context objective).
        context_logits: ``(B, L, 6, V)`` for the context objective.
        cache: a :class:`~pixelbytes.generation_pixelbytes.PxByCache` when ``use_cache``, under this name whatever
            the installed transformers (5.24 renamed ``past_key_values`` to ``cache``); ``.past_key_values`` reads
            the same cache, and ``generate()`` finds it on every version (``_update_model_kwargs_for_generation``).
        hidden_states: with ``output_hidden_states``, one tensor per layer as in ``transformers``: the backbone's
            input ``(B, L, E)``, then the output of every backbone layer ``(B, L, H)`` (the last one is the
            backbone's final output, the head's input).
        next_token_accuracy: accuracy of the next-token prediction on the labelled positions.
        context_accuracy: 6-slot accuracy (context objective).
        state: with ``initial_state`` (a stateful training window), the backbone state after the window's last
            fed position: the next window's initial state.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    context_logits: torch.FloatTensor | None = None
    cache: PxByCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    next_token_accuracy: torch.FloatTensor | None = None
    context_accuracy: torch.FloatTensor | None = None
    state: dict[str, list[torch.Tensor]] | None = None

    @property
    def past_key_values(self) -> PxByCache | None:
        """The cache under its name before transformers 5.24."""
        return self.cache

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


class PxByPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading conventions shared by PixelBytes models."""

    config_class = PxByConfig
    config: PxByConfig
    base_model_prefix = "pixelbytes"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules: list[str] = []

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.LSTM) and self.config.lstm_forget_bias is not None:
            # PxByConfig.lstm_forget_bias (1 by default, Jozefowicz et al., 2015): with the zero-centred default a
            # cell keeps only half of its memory per step, and a caption is forgotten long before its sprite
            for name, param in module.named_parameters():
                if name.startswith("bias_ih"):
                    param[module.hidden_size : 2 * module.hidden_size] = self.config.lstm_forget_bias
                elif name.startswith("bias_hh"):
                    param[module.hidden_size : 2 * module.hidden_size] = 0.0
        elif isinstance(module, WindowEmbedding):
            init.uniform_(module.alpha)  # the original's torch.rand
        elif isinstance(module, CaptionMemory) and module.cells is not None:
            init.normal_(module.cells)  # N(0, 1): every cell starts with its own view of the caption
        elif type(module).__name__ == "MambaMixer":
            init_mamba_mixer(module)  # A_log / D / dt / conv / out_proj (NaNs otherwise)


class PxBySequenceModel(PxByPreTrainedModel, GenerationMixin):
    """PixelBytes sequence model: ``embeddings`` → ``backbone`` → ``lm_head`` (the objective), with
    ``generate()`` and a real cache (see the module docstring)."""

    _is_stateful = True

    def __init__(self, config: PxByConfig) -> None:
        super().__init__(config)
        self.embeddings = PxByInputEmbedder(config)
        self.backbone = build_backbone(config)
        self.lm_head: PxByObjective = build_objective(config)
        self.loss_type = "ForCausalLM"
        self._is_causal, self._diffusion = config.is_causal, config.objective == "diffusion"
        #: replay cached one-token steps as a CUDA graph on GPUs (where :func:`graph_step_supported`); a runtime
        #: switch, not saved: False gives the eager kernels (the reference the graph is tested against)
        self.use_cuda_graphs = True
        self._graph_step_supported = graph_step_supported(self)
        self._captured_steps: dict[int, CapturedTokenStep] = {}
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> PxBySequenceModel:
        """``PreTrainedModel.from_pretrained``, then: when the folder / repo also holds a tokenizer vocabulary
        (``pxby_vocab.json``), it must match the model's (a clear error otherwise, never garbage)."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        options = {
            k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder") if k in kwargs
        }
        vocab_file = cached_file(
            str(pretrained_model_name_or_path), VOCAB_FILE_NAME, _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False, **options,
        )  # fmt: skip
        if vocab_file is not None:
            try:
                with open(vocab_file, encoding="utf-8") as handle:
                    vocab = PxByVocabulary.from_dict(json.load(handle))
            except (OSError, ValueError, TypeError) as err:
                raise ValueError(f"cannot read the tokenizer vocabulary {vocab_file}: {err}") from err
            model.config.check_vocabulary(vocab, source=str(vocab_file))
        return model

    # ------------------------------------------------------------------------------------------ conventions
    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def derive_context_ids(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """``context_ids`` from ids alone (see :meth:`PxByInputEmbedder.derive_context_ids`)."""
        return self.embeddings.derive_context_ids(input_ids, attention_mask)

    def derive_grid_positions(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.LongTensor:
        """HF-aligned ``(B, L, 4)`` grid positions of the next tokens, from ids alone."""
        return self.embeddings.derive_grid_positions(input_ids, attention_mask)

    def position_layout(self) -> tuple[Any, int] | None:
        """``(token_classes, audio_channels)`` for datasets to derive ``grid_positions`` with, or None when the
        model has no grid-position embedding (see :class:`~pixelbytes.data.PxByWindowDataset`)."""
        return None if self.embeddings.grid is None else (self.embeddings.token_classes, self.config.audio_channels)

    def caption_memory_classes(self) -> Any:
        """The token classes for datasets to cut ``caption_prefix_ids`` with, or None without a caption memory."""
        return None if self.embeddings.caption_memory is None else self.embeddings.token_classes

    # ------------------------------------------------------------------------------------------ forward
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
            top = self.embeddings.tokens_rows
            if context_ids.numel() and (int(context_ids.min()) < 0 or int(context_ids.max()) >= top):
                raise ValueError(f"context_ids must be in [0, {top})")
        if grid_positions is not None:
            if self.embeddings.grid is None:
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
        caption_prefix_ids: torch.LongTensor | None = None,
        past_key_values: PxByCache | None = None,
        initial_state: dict[str, list[torch.Tensor]] | None = None,
        **kwargs: Any,
    ) -> PxByModelOutput | tuple:
        """Run the model; see the module docstring for the contract.

        ``kwargs`` carry loss options from the Trainer (``num_items_in_batch``) and the diffusion options
        (``diffusion_step``, ``diffusion_generator``). ``caption_prefix_ids`` (training windows of caption-memory
        models) are the stream tokens before the window that its caption memory depends on. The cache of earlier
        positions comes as ``cache`` (the transformers >= 5.24 name) or as ``past_key_values`` (its earlier name);
        passing both is an error. The output holds the updated cache as ``cache`` (``.past_key_values`` too).

        ``initial_state`` (stateful training windows, truncated BPTT: :mod:`pixelbytes.training.stateful`): the
        backbone state of each row's stream before the window (``{}`` = zeros). The window's LAST position is then a
        look-ahead: only a label (the next window's first token, target of the position before it), not fed to the
        backbone (its logits are the head's bias); ``output.state`` is the state after the position before it."""
        if past_key_values is not None:
            cache = resolve_cache_argument(cache, past_key_values)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if initial_state is not None and not self._is_causal:
            raise ValueError("initial_state (stateful training windows) needs a causal, not a bidirectional, backbone")
        if initial_state is not None and (cache is not None or use_cache):
            raise ValueError("initial_state starts a training window: it cannot be combined with a cache (use_cache)")
        if (
            cache is not None
            and context_ids is None
            and grid_positions is None
            and labels is None
            and not output_hidden_states
            and return_dict
            and input_ids is not None
            and input_ids.dim() == 2
            and input_ids.shape[1] == 1
            and isinstance(cache, PxByCache)
            and input_ids.shape[0] == cache.batch_size
        ):
            return self._token_step(input_ids, cache, use_cache is not False)
        if input_ids is None or kwargs.get("inputs_embeds") is not None:
            raise ValueError("PixelBytes models take input_ids (not inputs_embeds): contexts are derived from the ids")
        self._check_inputs(input_ids, context_ids, values=cache is None, grid_positions=grid_positions)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        options = {key: kwargs.pop(key) for key in ("diffusion_step", "diffusion_generator") if key in kwargs}
        if use_cache is None:
            use_cache = self.config.use_cache and self._is_causal and not self.training and initial_state is None
        if (use_cache or cache is not None) and not self._is_causal:
            kind = "diffusion models" if self._diffusion else "bidirectional models"
            raise ValueError(f"{kind} have no cache: they re-encode their input at every step (use_cache=False)")
        if cache is not None:
            if caption_prefix_ids is not None:
                raise ValueError("caption_prefix_ids are for training windows, not for a cached continuation")
            self.lm_head.prepare(self.embeddings, input_ids, context_ids, None, None, diffusion_mask, options)
            hidden, hidden_states, cache = self._forward_cached(input_ids, context_ids, grid_positions, cache)
            inputs = contexts = state = None
        else:
            if attention_mask is not None and bool(attention_mask.all()):
                attention_mask = None
            inputs = self.lm_head.prepare(
                self.embeddings, input_ids, context_ids, attention_mask, labels, diffusion_mask, options
            )
            hidden, hidden_states, cache, contexts, state = self._forward_sequence(
                input_ids, inputs, attention_mask, labels, grid_positions, caption_prefix_ids, use_cache,
                output_hidden_states, initial_state,
            )  # fmt: skip
        logits, context_logits = self.lm_head.scores(hidden)
        loss, metrics = None, {}
        if labels is not None:
            if self.lm_head.needs_contexts and self.config.embedding != "pxby6":
                # the 6-slot targets and the novel-pixel weight read the neighbourhood whatever the embedding
                contexts = self.embeddings.layout_array(batch_context_ids, input_ids, attention_mask)
            loss, metrics = self.lm_head.loss(
                logits, context_logits, contexts, labels, inputs, kwargs.get("num_items_in_batch")
            )
        output = PxByModelOutput(
            loss=loss,
            logits=logits,
            context_logits=context_logits,
            cache=cache if use_cache else None,
            hidden_states=hidden_states,
            state=state,
            **metrics,
        )
        return output if return_dict else output.to_tuple()

    def _forward_sequence(
        self,
        input_ids: torch.LongTensor,
        inputs: Any,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        grid_positions: torch.LongTensor | None,
        caption_prefix_ids: torch.LongTensor | None,
        use_cache: bool,
        output_hidden_states: bool,
        initial_state: dict[str, list[torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, tuple | None, PxByCache | None, torch.LongTensor, dict | None]:
        """Whole sequences (prompts, training windows), no earlier state but a stateful window's ``initial_state``
        (read all but the look-ahead position; the state after them is returned last). Window encoders read only
        the last ``window_size`` positions before the target; their other outputs are zero."""
        L = input_ids.shape[1]
        span = None
        if initial_state is not None:
            if L < 2:
                raise ValueError("a stateful training window needs at least 2 positions (the last is a look-ahead)")
            span = slice(0, L - 1)
        elif not self._is_causal and not self._diffusion:
            stop = L - (1 if labels is not None else 0)
            span = slice(max(0, stop - self.config.window_size), stop)
        embedded = self.embeddings(
            input_ids, inputs.context_ids, attention_mask, grid_positions, caption_prefix_ids, span, use_cache
        )
        x = self.lm_head.perturb(embedded.embeddings, inputs)  # (B, L', E)
        mask = attention_mask if span is None or attention_mask is None else attention_mask[:, span]
        out = self.backbone(
            x, mask, initial_state or None, use_cache or initial_state is not None, output_hidden_states
        )  # fmt: skip
        hidden_states = (x, *out.layers) if output_hidden_states else None
        hidden = out.hidden
        if span is not None:
            hidden = _place(hidden, span, L)
            hidden_states = None if hidden_states is None else tuple(_place(t, span, L) for t in hidden_states)
        cache = None
        if use_cache:
            states = dict(out.state)
            if embedded.memory_state is not None:
                states["caption_memory"] = embedded.memory_state
            cache = PxByCache(
                states, input_ids, attention_mask, self.embeddings.token_classes, self.config.audio_channels,
                self.backbone.reorder_state,
            )  # fmt: skip
        return hidden, hidden_states, cache, embedded.context_ids, out.state if initial_state is not None else None

    def _forward_cached(
        self,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        grid_positions: torch.LongTensor | None,
        cache: PxByCache,
    ) -> tuple[torch.Tensor, None, PxByCache]:
        """New tokens on top of a cache: each embedded by the cache's layout tracker (O(1) per token), then the
        backbone from the cached state."""
        if not isinstance(cache, PxByCache):
            raise TypeError(f"the cache must be a PxByCache, got {type(cache).__name__}")
        if input_ids.shape[0] != cache.batch_size:
            raise ValueError(f"batch size {input_ids.shape[0]} differs from the cache's {cache.batch_size}")
        columns = input_ids.t().tolist()  # (k, B): the new ids, one list per position
        x = torch.stack(
            [
                self.embeddings.step(
                    column, cache,
                    None if context_ids is None else context_ids[:, j],
                    None if grid_positions is None else grid_positions[:, j],
                )
                for j, column in enumerate(columns)
            ],
            1,
        )  # (B, k, E)  # fmt: skip
        out = self.backbone(x, state=cache.states, use_cache=True)
        cache.states.update(out.state)
        cache.seen_tokens += input_ids.shape[1]
        return out.hidden, None, cache

    def _token_step(self, input_ids: torch.LongTensor, cache: PxByCache, use_cache: bool) -> PxByModelOutput:
        """One generated token per row: embedder ``step`` → backbone ``step`` → head, with none of the generic
        path's checks or branching (it runs once per generated token). On CUDA, without autograd, the models
        :func:`~pixelbytes.graphs_pixelbytes.graph_step_supported` covers replay it as one CUDA graph."""
        ids = [row[0] for row in input_ids.tolist()]  # (B, 1) → B ids, without a slicing op
        if input_ids.is_cuda and self.use_cuda_graphs and self._graph_step_supported and not torch.is_grad_enabled():
            cache.tracker.push(ids)
            out, state = self._captured_step(len(ids))(cache.tracker.contexts(), cache.states)  # (B, V or 6V)
            logits, context_logits = self.lm_head.split(out.unsqueeze(1))
        else:
            x = self.embeddings.step(ids, cache)  # (B, E)
            hidden, state = self.backbone.step(x, cache.states)  # (B, H)
            logits, context_logits = self.lm_head.scores(hidden.unsqueeze(1))  # (B, 1, V), (B, 1, 6, V) or None
        cache.states.update(state)
        cache.seen_tokens += 1
        return PxByModelOutput.for_token_step(
            logits=logits, context_logits=context_logits, cache=cache if use_cache else None
        )

    def _captured_step(self, batch_size: int) -> CapturedTokenStep:
        """The CUDA-graph token step for this batch size, (re)captured when missing or when weights changed."""
        captured = self._captured_steps.get(batch_size)
        if captured is None or not captured.is_current():
            captured = self._captured_steps[batch_size] = CapturedTokenStep(self, batch_size)
        return captured

    # ------------------------------------------------------------------------------------------ generation
    def infill(self, input_ids: torch.LongTensor, fill_mask: torch.Tensor, **kwargs: Any) -> torch.LongTensor:
        """Fill the ``fill_mask`` positions of ``input_ids`` (diffusion models); see
        :func:`pixelbytes.generation_pixelbytes.infill`."""
        return infill(self, input_ids, fill_mask, **kwargs)

    @classmethod
    def from_original(cls, path_or_repo_id: Any, subfolder: str | None = None, **kwargs: Any) -> PxBySequenceModel:
        """Convert an ORIGINAL PixelBytes checkpoint (directory or Hub repo + ``subfolder``, e.g.
        ``"lstm_autoregressive_last"``); see :func:`pixelbytes.conversion.convert_original` for the options.
        Needs the installed package (it is not part of the Hub remote code)."""
        import importlib  # the conversion tools are not part of the remote code: found only when installed

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

    def _update_model_kwargs_for_generation(
        self,
        outputs: ModelOutput,
        model_kwargs: dict[str, Any],
        is_encoder_decoder: bool = False,
        num_new_tokens: int = 1,
    ) -> dict[str, Any]:
        """``GenerationMixin``'s update, plus: the cache of the outputs (always the ``cache`` field) is kept under
        the name this transformers' ``generate()`` passes back (:data:`CACHE_NAME`), and the attention mask stops
        growing once a ``PxByCache`` carries the generation: the cached steps never read it (the cache's layout
        tracker already skipped each row's padding), and growing it costs two more kernels per token (measured
        on a GPU in ``bench_gpu.py``)."""
        cache = outputs.get("cache")
        mask = model_kwargs.pop("attention_mask", None) if isinstance(cache, PxByCache) else None
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        if cache is not None:
            model_kwargs.pop("past_key_values" if CACHE_NAME == "cache" else "cache", None)
            model_kwargs[CACHE_NAME] = cache
        if mask is not None:
            model_kwargs["attention_mask"] = mask
        return model_kwargs

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
            if input_ids.shape[1] == 0 and cache is None:
                raise ValueError(
                    "the prompt is empty (shape (batch, 0)): give at least one token, e.g. a caption ending with id 2"
                )
        max_new_tokens = kwargs.get("max_new_tokens")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
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


def _place(t: torch.Tensor, span: slice, length: int) -> torch.Tensor:
    """``t (B, L', D)`` computed on ``span`` of a length-``length`` sequence → ``(B, length, D)``, zeros elsewhere."""
    full = t.new_zeros(t.shape[0], length, t.shape[-1])
    full[:, span] = t
    return full

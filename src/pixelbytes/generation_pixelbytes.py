"""Generation support: the recurrent state cache and layout-aware decoding rules (DESIGN §7).

* :class:`PxByCache` holds what one more token costs O(1) with: the recurrent state of every layer
  and a per-row :class:`~pixelbytes.layout.BatchLayoutTracker` that yields the next position's context.
* :class:`ImageGridLogitsProcessor` / :class:`AudioLogitsProcessor` force a rectangular sprite of a
  requested size or an audio clip of a requested length right after the prompt, so the result always
  decodes; :func:`generate_image` / :func:`generate_audio` wrap ``model.generate`` with them.
* :func:`infill` fills chosen positions of a stream with a diffusion model (a sprite rectangle, an audio span),
  batched; the other positions never change.

The cache's keyword: transformers 5.24 renamed ``past_key_values`` (and ``cache_params``) to ``cache`` in
``generate()``, model inputs and model outputs. :data:`CACHE_NAME` is the name the installed transformers uses;
PixelBytes models accept both names as inputs and put their cache in their outputs under :data:`CACHE_NAME`
(which is what ``generate()`` reads back), so one code base runs on transformers 5.23 and on 5.24+.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import transformers
from packaging import version
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList

from .layout import BatchLayoutTracker
from .objectives_pixelbytes import content_positions
from .vocabulary import COLOUR, LEVEL, ROW_ID, SEP_ID

__all__ = [
    "CACHE_NAME",
    "AudioLogitsProcessor",
    "ImageGridLogitsProcessor",
    "PxByCache",
    "generate_audio",
    "generate_image",
    "infill",
]


def _installed_cache_name() -> str:
    """The cache keyword of the installed transformers: what ``GenerationMixin.prepare_inputs_for_generation``
    takes (the name ``generate()`` keeps the cache under and reads back from the model outputs), else the version
    (``"cache"`` from 5.24 on)."""
    parameters = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    return "cache" if version.parse(transformers.__version__) >= version.parse("5.24.0.dev0") else "past_key_values"


#: ``"cache"`` with transformers >= 5.24, ``"past_key_values"`` before: the name under which ``generate()`` passes
#: the cache to the model and looks for it in the model outputs (fixed at import).
CACHE_NAME: str = _installed_cache_name()


def resolve_cache_argument(cache: Any, past_key_values: Any) -> Any:
    """The cache given under either name (``cache``, or its pre-5.24 name ``past_key_values``); both is an error."""
    if past_key_values is None:
        return cache
    if cache is not None:
        raise ValueError("pass the cache as `cache` or as `past_key_values`, not both")
    return past_key_values


class PxByCache:
    """Generation state of a :class:`~pixelbytes.modeling_pixelbytes.PxBySequenceModel`.

    Every backbone keeps its state as named lists of tensors whose first dimension is the batch (so beam search
    reorders them all the same way): ``h``/``c`` (LSTM, per layer ``(B, H)``), ``key``/``value``/``key_mask``/
    ``position`` (attention: per layer ``(B, heads, T, head_dim)``, the validity of every cached key ``(B, T)``
    and the rotary position of each row's next token ``(B,)``), ``conv``/``ssm`` (Mamba: per layer
    ``(B, D_inner, conv_kernel - 1)`` and ``(B, D_inner, state_size)``). Models with a caption memory keep
    ``states["caption_memory"]`` = ``[total (B, E), count (B,), recent bytes (B, 2), memory (B, E)]`` (see
    :class:`~pixelbytes.embeddings_pixelbytes.CaptionMemory`).

    Attributes:
        states: the named state lists.
        seen_tokens: number of stream positions already consumed.
        tracker: per-row layout tracker (built lazily from the prompt on the first decoding step, so a plain
            forward with ``use_cache=True`` costs nothing extra).
        device: where the states live.
    """

    is_compileable = False
    is_croppable = False
    #: Caption-memory models: True once no row's last token is text (then a non-text token changes nothing).
    caption_memory_idle = False

    def __init__(
        self,
        states: dict[str, list[torch.Tensor]],
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor | None,
        token_classes: np.ndarray,
        audio_channels: int,
        reorder_state: Callable[[dict, torch.LongTensor], dict] | None = None,
    ) -> None:
        self.states: dict[str, list[torch.Tensor]] = {key: list(value) for key, value in states.items()}
        self.device = prompt_ids.device
        self._batch_size = int(prompt_ids.shape[0])
        self.seen_tokens = int(prompt_ids.shape[1])
        self._prompt: tuple[np.ndarray, np.ndarray | None] | None = (
            prompt_ids.detach().cpu().numpy(),
            None if prompt_mask is None else prompt_mask.detach().cpu().numpy(),
        )
        self._token_classes, self._audio_channels = token_classes, audio_channels
        self._tracker: BatchLayoutTracker | None = None
        self._reorder_state = reorder_state or _select_rows
        if "caption_memory" in self.states:
            self.caption_memory_idle = not bool((self.states["caption_memory"][2][:, 1] >= 0).any())

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tracker(self) -> BatchLayoutTracker:
        if self._tracker is None:
            ids, mask = self._prompt  # type: ignore[misc]
            self._tracker = BatchLayoutTracker(self._token_classes, self._audio_channels, ids.shape[0])
            self._tracker.push_sequence(ids, mask)
            self._prompt = None
        return self._tracker

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    @property
    def is_linear(self) -> list[bool]:
        """Read by ``generate()`` (transformers >= 5.24) on a cache passed in: not all-linear, so, as with the
        attention caches, the prompt is cut to the tokens the cache has not consumed yet (``seen_tokens``)."""
        return [False]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row i becomes old row ``beam_idx[i]`` (states and layout)."""
        self.states = self._reorder_state(self.states, beam_idx)
        index = beam_idx.tolist()
        self._batch_size = len(index)
        if self._tracker is not None:
            self._tracker.reorder(index)
        else:
            ids, mask = self._prompt  # type: ignore[misc]
            self._prompt = (ids[index], None if mask is None else mask[index])

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Expand every row ``repeats`` times (used by some generation modes)."""
        index = torch.arange(self.batch_size).repeat_interleave(repeats)
        self.reorder_cache(index)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)


def _select_rows(states: dict[str, list[torch.Tensor]], index: torch.LongTensor) -> dict[str, list[torch.Tensor]]:
    return {key: [t.index_select(0, index.to(t.device)) for t in tensors] for key, tensors in states.items()}


# --------------------------------------------------------------------------------------------------
# Layout-aware logits processors
# --------------------------------------------------------------------------------------------------
class _StructureLogitsProcessor(LogitsProcessor):
    """Allows, at the j-th generated token, only the ids of ``self.allowed(j)``; free after the structure.

    Where generation started: ``prompt_length`` when given (what :func:`generate_image` / :func:`generate_audio`
    pass); otherwise the length of the ids at the first call of each ``generate()`` run. A run is recognised by
    its lengths growing one token per call with the same batch size, so one processor can serve many
    ``generate()`` calls. At the start every row must end a block (its last token the separator id 2): the
    structure then opens a new block, as the layout requires (DESIGN §5)."""

    def __init__(self, token_classes: np.ndarray, prompt_length: int | None = None) -> None:
        classes = torch.as_tensor(np.asarray(token_classes))
        self._masks = {name: classes == value for name, value in (("colour", COLOUR), ("level", LEVEL))}
        vocab = len(classes)
        for name, token in (("row", ROW_ID), ("sep", SEP_ID)):
            mask = torch.zeros(vocab, dtype=torch.bool)
            mask[token] = True
            self._masks[name] = mask
        if prompt_length is not None and (not isinstance(prompt_length, int) or prompt_length < 1):
            raise ValueError(f"prompt_length must be a positive integer, got {prompt_length!r}")
        self.prompt_length = prompt_length
        self._run: tuple[int, int, int] | None = None  # (start, last length, batch size) of the current run

    @property
    def length(self) -> int:
        raise NotImplementedError

    def allowed(self, j: int) -> str:
        raise NotImplementedError

    def _start(self, input_ids: torch.LongTensor) -> int:
        batch, length = input_ids.shape
        if self.prompt_length is not None:
            start = self.prompt_length
            if length < start:
                raise ValueError(f"the ids ({length} tokens) are shorter than prompt_length={start}")
        elif self._run is not None and (length, batch) == (self._run[1] + 1, self._run[2]):
            start = self._run[0]
        else:
            start = length
        if length == start:
            last = input_ids[:, -1]
            if bool((last != SEP_ID).any()):
                raise ValueError(
                    f"{type(self).__name__}: the prompt must end a block (its last token the separator id "
                    f"{SEP_ID}, e.g. a caption encoded by the tokenizer); got last tokens {last.tolist()}"
                )
        self._run = (start, length, batch)
        return start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        j = input_ids.shape[1] - self._start(input_ids)
        if j >= self.length:
            return scores
        mask = self._masks[self.allowed(j)].to(scores.device)
        if mask.shape[0] != scores.shape[-1]:
            raise ValueError(
                f"the processor's vocabulary ({mask.shape[0]}) differs from the model's ({scores.shape[-1]})"
            )
        return scores.masked_fill(~mask, float("-inf"))


class ImageGridLogitsProcessor(_StructureLogitsProcessor):
    """Forces ``frames`` frames of ``height`` rows × ``width`` colours right after the prompt.

    Inside a row only colours are allowed; column ``width`` holds the row separator (id 1), or on a
    frame's last row the frame separator (id 2). The prompt must end a block (id 2, e.g. a text
    encoded by the tokenizer). After the structure the processor lets every token through.
    """

    def __init__(
        self, token_classes: np.ndarray, height: int, width: int, frames: int = 1, prompt_length: int | None = None
    ) -> None:
        for name, value in (("height", height), ("width", width), ("frames", frames)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(token_classes, prompt_length)
        self.height, self.width, self.frames = height, width, frames

    @property
    def length(self) -> int:
        return self.frames * self.height * (self.width + 1)

    def allowed(self, j: int) -> str:
        in_frame = j % (self.height * (self.width + 1))
        row, col = divmod(in_frame, self.width + 1)
        if col < self.width:
            return "colour"
        return "row" if row < self.height - 1 else "sep"


class AudioLogitsProcessor(_StructureLogitsProcessor):
    """Forces ``num_steps`` time steps of ``channels`` levels, then the terminator frame
    (``[1]`` mono, ``[1, 2, …]`` otherwise), right after a prompt that ends a block (id 2)."""

    def __init__(
        self, token_classes: np.ndarray, num_steps: int, channels: int = 2, prompt_length: int | None = None
    ) -> None:
        for name, value in (("num_steps", num_steps), ("channels", channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(token_classes, prompt_length)
        self.num_steps, self.channels = num_steps, channels

    @property
    def length(self) -> int:
        return (self.num_steps + 1) * self.channels

    def allowed(self, j: int) -> str:
        step, channel = divmod(j, self.channels)
        if step < self.num_steps:
            return "level"
        return "row" if channel == 0 else "sep"


def _prepare_prompts(tokenizer: Any, prompt: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt (text or ids) or a list of them → left-padded ``(input_ids, attention_mask)``."""
    if isinstance(prompt, torch.Tensor):
        prompt = prompt.tolist()
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
        prompt = [prompt]
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise ValueError("prompt must be a text, a list of ids, or a non-empty list of those")
    rows = [tokenizer(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompt]
    if any(len(r) == 0 for r in rows):
        raise ValueError("a prompt is empty")
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _generate_structured(model: Any, tokenizer: Any, prompt: Any, processor: _StructureLogitsProcessor, **kwargs: Any):
    model.config.check_tokenizer(tokenizer)
    input_ids, attention_mask = _prepare_prompts(tokenizer, prompt, model.device)
    processor.prompt_length = input_ids.shape[1]
    processors = LogitsProcessorList([processor, *kwargs.pop("logits_processor", [])])
    kwargs.setdefault("max_new_tokens", processor.length)
    if kwargs["max_new_tokens"] < processor.length:
        raise ValueError(
            f"max_new_tokens={kwargs['max_new_tokens']} is shorter than the structure ({processor.length})"
        )
    with torch.no_grad():
        sequences = model.generate(input_ids, attention_mask=attention_mask, logits_processor=processors, **kwargs)
    mask = torch.cat((attention_mask, torch.ones_like(sequences[:, input_ids.shape[1] :])), dim=1)
    mask = mask.repeat_interleave(sequences.shape[0] // mask.shape[0], dim=0)
    return sequences, [tokenizer.decode_multimodal(row, attention_mask=m) for row, m in zip(sequences, mask)]


def generate_image(
    model: Any, tokenizer: Any, prompt: Any, height: int, width: int, frames: int = 1, **generate_kwargs: Any
):
    """Generate a ``frames`` × ``height`` × ``width`` sprite after ``prompt`` (a text, ids, or a list of them:
    a batch, left-padded).

    Returns ``(sequences, decoded)`` where ``decoded`` is one
    :class:`~pixelbytes.tokenization_pixelbytes.MultimodalOutput` per returned sequence; its ``frames`` always
    have the requested size. Extra keyword arguments go to ``model.generate`` (sampling, beams, …).
    """
    processor = ImageGridLogitsProcessor(tokenizer.token_classes, height, width, frames)
    return _generate_structured(model, tokenizer, prompt, processor, **generate_kwargs)


def generate_audio(model: Any, tokenizer: Any, prompt: Any, num_steps: int, **generate_kwargs: Any):
    """Generate ``num_steps`` audio / action time steps (plus terminators) after ``prompt``."""
    processor = AudioLogitsProcessor(tokenizer.token_classes, num_steps, tokenizer.audio_channels)
    return _generate_structured(model, tokenizer, prompt, processor, **generate_kwargs)


@torch.no_grad()
def infill(
    model: Any,
    input_ids: torch.LongTensor,
    fill_mask: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    num_steps: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """Fill the ``fill_mask`` positions of ``input_ids`` with an ``objective="diffusion"`` model (batched).

    The tokens at the filled positions are placeholders whose CLASS is kept (a sprite pixel stays a colour, an
    audio sample a level), so the layout of the stream never changes; their values are never read. Every position
    outside ``fill_mask`` is returned unchanged, and predictions are restricted to the placeholder's class.

    * ``masked``: unmasking runs over ``num_steps`` (default ``config.num_diffusion_steps``) steps, the most
      confident predictions first.
    * ``embedding_noise`` (the original sampler, greedy): ``num_steps + 1`` passes with t = num_steps … 0,
      α = 1 - t/num_steps going from pure noise to clean; each pass noises every context slot of the filled tokens
      and rewrites all of them. ``generator`` draws the noise (default: one seeded by the inputs).
    """
    config = model.config
    if config.objective != "diffusion":
        raise ValueError("infill() needs an objective='diffusion' model")
    model._check_inputs(input_ids, None)
    steps = config.num_diffusion_steps if num_steps is None else int(num_steps)
    if steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {steps}")
    remaining = fill_mask.bool().to(input_ids.device)
    if remaining.shape != input_ids.shape:
        raise ValueError(f"fill_mask must have shape {tuple(input_ids.shape)}, got {tuple(fill_mask.shape)}")
    token_classes = model.embeddings.token_classes
    if bool((remaining & ~content_positions(token_classes, input_ids, attention_mask)).any()):
        raise ValueError("only content positions (bytes, colours, levels) can be filled; never PAD/ROW/SEP")
    classes = torch.as_tensor(token_classes, device=input_ids.device)
    allowed = classes[input_ids].unsqueeze(-1) == classes  # (B, L, V): the placeholder's class
    ids = input_ids.clone()
    if config.diffusion_scheme == "embedding_noise":
        if not bool(remaining.any()):
            return ids
        if generator is None:
            generator = model.lm_head.rng(input_ids)
        n = config.num_diffusion_steps
        for t in range(steps, -1, -1):
            logits = model(
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
        logits = model(input_ids=ids, attention_mask=attention_mask, diffusion_mask=remaining).logits
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

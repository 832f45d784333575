"""Generation support: the recurrent state cache and layout-aware decoding rules (DESIGN §7).

* :class:`PxByCache` holds what one more token costs O(1) with: the recurrent state of every layer
  and a per-row :class:`~pixelbytes.layout.BatchLayoutTracker` that yields the next position's context.
* :class:`ImageGridLogitsProcessor` / :class:`AudioLogitsProcessor` force a rectangular sprite of a
  requested size or an audio clip of a requested length right after the prompt, so the result always
  decodes; :func:`generate_image` / :func:`generate_audio` wrap ``model.generate`` with them.

The cache's keyword: transformers 5.24 renamed ``past_key_values`` (and ``cache_params``) to ``cache`` in
``generate()``, model inputs and model outputs. :data:`CACHE_NAME` is the name the installed transformers uses;
PixelBytes models accept both names as inputs and put their cache in their outputs under :data:`CACHE_NAME`
(which is what ``generate()`` reads back), so one code base runs on transformers 5.23 and on 5.24+.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
import transformers
from packaging import version
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList

from .layout import BatchLayoutTracker
from .vocabulary import COLOUR, LEVEL, ROW_ID, SEP_ID

__all__ = [
    "CACHE_NAME",
    "AudioLogitsProcessor",
    "ImageGridLogitsProcessor",
    "PxByCache",
    "generate_audio",
    "generate_image",
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
    ``(B, D_inner, conv_kernel - 1)`` and ``(B, D_inner, state_size)``).

    Attributes:
        states: the named state lists.
        h, c: the LSTM states (``states["h"]``, ``states["c"]``).
        seen_tokens: number of stream positions already consumed.
        tracker: per-row layout tracker (built lazily from the prompt on the first decoding step, so a plain
            forward with ``use_cache=True`` costs nothing extra).

    Models with a caption memory keep ``states["caption_memory"]`` = ``[total (B, E), count (B,), recent bytes
    (B, 2), memory (B, E)]`` (see :class:`~pixelbytes.modeling_pixelbytes.CaptionMemory`).
    """

    is_compileable = False
    is_croppable = False
    #: Caption-memory models: True once no row's last token is text (then a non-text token changes nothing).
    caption_memory_idle = False

    def __init__(
        self,
        h: list[torch.Tensor] | None,
        c: list[torch.Tensor] | None,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor | None,
        token_classes: np.ndarray,
        audio_channels: int,
        states: dict[str, list[torch.Tensor]] | None = None,
    ) -> None:
        self.states: dict[str, list[torch.Tensor]] = {}
        if h is not None:
            self.states["h"], self.states["c"] = list(h), list(c if c is not None else [])
        if states:
            self.states.update({key: list(value) for key, value in states.items()})
        self._batch_size = int(prompt_ids.shape[0])
        self.seen_tokens = int(prompt_ids.shape[1])
        self._prompt: tuple[np.ndarray, np.ndarray | None] | None = (
            prompt_ids.detach().cpu().numpy(),
            None if prompt_mask is None else prompt_mask.detach().cpu().numpy(),
        )
        self._token_classes, self._audio_channels = token_classes, audio_channels
        self._tracker: BatchLayoutTracker | None = None

    @property
    def h(self) -> list[torch.Tensor]:
        return self.states["h"]

    @h.setter
    def h(self, value: list[torch.Tensor]) -> None:
        self.states["h"] = list(value)

    @property
    def c(self) -> list[torch.Tensor]:
        return self.states["c"]

    @c.setter
    def c(self, value: list[torch.Tensor]) -> None:
        self.states["c"] = list(value)

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
        for key, tensors in self.states.items():
            self.states[key] = [t.index_select(0, beam_idx.to(t.device)) for t in tensors]
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


# --------------------------------------------------------------------------------------------------
# Layout-aware logits processors
# --------------------------------------------------------------------------------------------------
class _StructureLogitsProcessor(LogitsProcessor):
    """Allows, at the j-th generated token, only the ids of ``self.allowed(j)``; free after the structure."""

    def __init__(self, token_classes: np.ndarray) -> None:
        classes = torch.as_tensor(np.asarray(token_classes))
        self._masks = {name: classes == value for name, value in (("colour", COLOUR), ("level", LEVEL))}
        vocab = len(classes)
        for name, token in (("row", ROW_ID), ("sep", SEP_ID)):
            mask = torch.zeros(vocab, dtype=torch.bool)
            mask[token] = True
            self._masks[name] = mask
        self._start: int | None = None

    @property
    def length(self) -> int:
        raise NotImplementedError

    def allowed(self, j: int) -> str:
        raise NotImplementedError

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._start is None:
            self._start = input_ids.shape[1]
        j = input_ids.shape[1] - self._start
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
    frame's last row the frame separator (id 2). The prompt should end where an image may start
    (e.g. a text terminated by id 2). After the structure the processor lets every token through.
    """

    def __init__(self, token_classes: np.ndarray, height: int, width: int, frames: int = 1) -> None:
        for name, value in (("height", height), ("width", width), ("frames", frames)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(token_classes)
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
    (``[1]`` mono, ``[1, 2, …]`` otherwise), right after the prompt."""

    def __init__(self, token_classes: np.ndarray, num_steps: int, channels: int = 2) -> None:
        for name, value in (("num_steps", num_steps), ("channels", channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(token_classes)
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

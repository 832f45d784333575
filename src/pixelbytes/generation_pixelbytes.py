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

import codecs as codecs_module
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from queue import Queue
from typing import Any

import numpy as np
import torch
import transformers
from packaging import version
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from .layout import AUDIO, FRESH, IMAGE, KIND_NAMES, KIND_OF_CLASS, TEXT, BatchLayoutTracker, LayoutTracker
from .objectives_pixelbytes import content_positions
from .vocabulary import BYTE, COLOUR, LEVEL, PAD_ID, ROW, ROW_ID, SEP, SEP_ID

__all__ = [
    "CACHE_NAME",
    "AudioChunk",
    "AudioLogitsProcessor",
    "BlockEnd",
    "BlockEndStoppingCriteria",
    "ImageGridLogitsProcessor",
    "PxByCache",
    "PxByIteratorStreamer",
    "PxByStreamer",
    "SpriteFrame",
    "SpriteRow",
    "TextChunk",
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
        reorder_state: Callable[[dict, torch.LongTensor], dict],
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
        self._reorder_state = reorder_state  # the backbone's (PxByBackbone.reorder_state)
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
            self._check_prompt_end(input_ids[:, -1])
        self._run = (start, length, batch)
        return start

    def _check_prompt_end(self, last: torch.LongTensor) -> None:
        if bool((last != SEP_ID).any()):
            raise ValueError(
                f"{type(self).__name__}: the prompt must end a block (its last token the separator id "
                f"{SEP_ID}, e.g. a caption encoded by the tokenizer); got last tokens {last.tolist()}"
            )

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
    encoded by the tokenizer), or, with ``frames=1``, end a row of a frame (id 1): the processor then draws
    the ``height`` rows left in that frame (completing a sprite, the papers' Figure 3). After the structure
    the processor lets every token through.
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

    def _check_prompt_end(self, last: torch.LongTensor) -> None:
        if self.frames == 1 and bool((last == ROW_ID).all()):
            return  # every row ends a row of a frame: its remaining rows follow
        if bool((last == ROW_ID).any()) and self.frames != 1:
            raise ValueError(
                f"ImageGridLogitsProcessor: a prompt ending a row (id {ROW_ID}) continues one frame: frames must be "
                f"1, got {self.frames}"
            )
        super()._check_prompt_end(last)

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


# --------------------------------------------------------------------------------------------------
# Streaming: typed events as generate() produces them
# --------------------------------------------------------------------------------------------------
def _lands_in_new_block(tracker: LayoutTracker, cls: int) -> bool:
    """Whether a token of class ``cls`` pushed into ``tracker`` now opens a new block (DESIGN §5)."""
    kind = tracker.kind
    return kind == FRESH or (
        kind == IMAGE and tracker.r == 0 and tracker.c == 0 and tracker.t > 0 and cls in (BYTE, LEVEL)
    )


@dataclass
class TextChunk:
    """Newly decoded text. The chunks of a stream joined give ``decode_multimodal(...).text`` (text blocks are
    joined by a ``"\\n"`` that starts the first chunk of every non-empty text block after the first)."""

    text: str
    block: int


@dataclass
class SpriteRow:
    """A completed sprite row: ``pixels`` ``(W, 3)`` uint8 RGB (cells that hold no colour are black, as in
    :func:`~pixelbytes.codecs.decode_stream`). ``partial`` marks a row cut by the end of generation."""

    pixels: np.ndarray
    frame: int
    row: int
    block: int
    partial: bool = False

    @property
    def image(self) -> Any:
        """The row as a ``W × 1`` RGB PIL image."""
        from PIL import Image

        return Image.fromarray(self.pixels[None], "RGB")


@dataclass
class SpriteFrame:
    """A completed frame: ``pixels`` ``(H, W, 3)`` uint8 RGB (ragged rows padded with black).
    ``partial`` marks a frame cut by the end of generation."""

    pixels: np.ndarray
    frame: int
    block: int
    partial: bool = False

    @property
    def image(self) -> Any:
        """The frame as an RGB PIL image."""
        from PIL import Image

        return Image.fromarray(self.pixels, "RGB")


@dataclass
class AudioChunk:
    """``samples`` ``(C, n)`` float32 in [-1, 1] at ``sampling_rate``: time steps ``start .. start + n`` of the
    clip ``block``. The chunks of a clip concatenated along the last axis give the decoded clip."""

    samples: np.ndarray
    sampling_rate: int
    start: int
    block: int


@dataclass
class BlockEnd:
    """A block (``kind`` ``"text"`` / ``"image"`` / ``"audio"``) is over: closed by the layout, or (``partial``)
    cut by the end of generation."""

    kind: str
    block: int
    partial: bool = False


StreamEvent = TextChunk | SpriteRow | SpriteFrame | AudioChunk | BlockEnd


class PxByStreamer(BaseStreamer):
    """A ``generate()`` streamer that turns tokens into typed events as they arrive (DESIGN §7).

    Events: :class:`TextChunk` (decoded text), :class:`SpriteRow` (each completed sprite row),
    :class:`SpriteFrame` (each completed frame), :class:`AudioChunk` (``(C, n)`` float samples every
    ``audio_chunk_steps`` time steps and at the end of a clip) and :class:`BlockEnd`. A per-stream
    :class:`~pixelbytes.layout.LayoutTracker` says where each token lands, so a row closes at its row separator,
    a frame at its frame separator and a clip at its terminator frame.

    For a rectangular sprite (what :func:`generate_image` produces) the rows received equal the decoded sprite's
    rows in order and the frames equal its frames; audio chunks concatenate to the decoded clip and text chunks
    join to the decoded text. (A free-running model can write ragged rows: those are streamed at their own width,
    while the final decode pads every frame of a block to the block's widest row.)

    Works with ``model.generate(..., streamer=s)``, :func:`generate_image` and :func:`generate_audio` (pass
    ``streamer=``), batch size 1 only (a ``ValueError`` otherwise; beam search does not stream).

    Args:
        tokenizer: an :class:`~pixelbytes.tokenization_pixelbytes.ActionPixelBytesTokenizer` (its vocabulary
            tables, ``audio_channels`` and sampling rate).
        skip_prompt: emit nothing for the prompt (the first ``put``); the prompt still sets the layout state, so a
            row begun in the prompt and finished by the model is streamed whole.
        audio_chunk_steps: time steps per :class:`AudioChunk` (the last chunk of a clip may be shorter).
        callback: called with every event; without it, events are appended to :attr:`events`.
    """

    def __init__(
        self,
        tokenizer: Any,
        skip_prompt: bool = True,
        audio_chunk_steps: int = 256,
        callback: Callable[[StreamEvent], None] | None = None,
    ) -> None:
        if not isinstance(audio_chunk_steps, int) or audio_chunk_steps < 1:
            raise ValueError(f"audio_chunk_steps must be a positive integer, got {audio_chunk_steps!r}")
        vocab = tokenizer.vocabulary
        self.skip_prompt = skip_prompt
        self.audio_chunk_steps = audio_chunk_steps
        self.callback = callback
        self.sampling_rate = max(1, int(tokenizer.sampling_rate) // int(tokenizer.audio_stride))
        self._classes = np.asarray(tokenizer.token_classes)
        self._channels = int(tokenizer.audio_channels)
        self._byte_values = vocab.byte_values
        self._palette = np.asarray(vocab.palette_array, dtype=np.uint8).reshape(-1, 3)
        self._colour_offset = vocab.color_offset
        self._levels = np.asarray(vocab.levels_array, dtype=np.float32)
        self._level_offset = vocab.level_offset
        #: events received so far when no ``callback`` is given
        self.events: list[StreamEvent] = []
        self._reset()

    # ---------------------------------------------------------------- state
    def _reset(self) -> None:
        self._tracker = LayoutTracker(self._classes, self._channels)
        self._started = False
        self._emit = True
        self._block = -1  # index of the current block among the streamed (emitting) blocks
        self._kind = FRESH
        self._any_text = False
        self._text_decoder: Any = None
        self._block_has_text = False
        self._frame_rows: list[list[int]] = []
        self._row: list[int] = []
        self._frame_index = 0
        self._audio_frame: list[int] = []
        self._audio_buffer: list[np.ndarray] = []
        self._audio_steps = 0

    def on_event(self, event: StreamEvent) -> None:
        """Receive one event (override, or give ``callback``)."""
        if self.callback is not None:
            self.callback(event)
        else:
            self.events.append(event)

    def _send(self, event: StreamEvent) -> None:
        if self._emit:
            self.on_event(event)

    # ---------------------------------------------------------------- BaseStreamer API
    def put(self, value: Any) -> None:
        """Receive the prompt ``(1, L)`` (first call), then each new token ``(1,)``."""
        ids = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        if not self._started:
            if ids.ndim == 2 and ids.shape[0] != 1:
                raise ValueError(
                    f"{type(self).__name__} supports batch size 1 only, got {ids.shape[0]} rows "
                    "(generate the prompts one by one, or decode the batch at the end)"
                )
            self._started = True
            tokens = ids.reshape(-1)
            first = np.flatnonzero(tokens != PAD_ID)  # left padding is not part of the stream
            tokens = tokens[first[0] :] if len(first) else tokens[:0]
            self._emit = not self.skip_prompt
            for token in tokens.tolist():
                self._push(int(token))
            self._emit = True
            if self._kind != FRESH and self._block < 0:
                self._block = 0  # a block opened in the prompt and continued by the model is streamed block 0
            return
        if ids.size != 1:
            raise ValueError(f"{type(self).__name__} supports batch size 1 only, got {ids.size} tokens per step")
        self._push(int(ids.reshape(-1)[0]))

    def end(self) -> None:
        """Flush what the end of generation cut (a partial row / frame, buffered audio, undecoded text); the
        streamer is then ready for another ``generate()`` call."""
        self._close_block(partial=True)
        self._reset_keep_events()

    def _reset_keep_events(self) -> None:
        events = self.events
        self._reset()
        self.events = events

    # ---------------------------------------------------------------- token handling
    def _push(self, token: int) -> None:
        if not 0 <= token < len(self._classes):
            raise ValueError(f"token id {token} is outside the vocabulary (size {len(self._classes)})")
        cls = int(self._classes[token])
        tracker = self._tracker
        if _lands_in_new_block(tracker, cls):
            self._close_block(partial=False)
            self._open_block(KIND_OF_CLASS[cls])
        tracker.push(token)
        closes = tracker.kind == FRESH
        if self._kind == TEXT:
            self._text_token(token, cls)
        elif self._kind == IMAGE:
            self._image_token(token, cls)
        else:
            self._audio_token(token, cls)
        if closes:
            self._close_block(partial=False)

    def _open_block(self, kind: int) -> None:
        self._kind = kind
        if self._emit:
            self._block += 1
        if kind == TEXT:
            self._text_decoder = codecs_module.getincrementaldecoder("utf-8")(errors="replace")
            self._block_has_text = False
        elif kind == IMAGE:
            self._frame_rows, self._row, self._frame_index = [], [], 0
        else:
            self._audio_frame, self._audio_buffer, self._audio_steps = [], [], 0

    def _close_block(self, partial: bool) -> None:
        kind = self._kind
        if kind == FRESH:
            return
        if kind == TEXT:
            self._text_out(self._text_decoder.decode(b"", final=True))
        elif kind == IMAGE:
            if self._row:
                self._finish_row(partial=True)
            if self._frame_rows:
                self._finish_frame(partial=True)
        else:
            self._flush_audio()
        self._send(BlockEnd(KIND_NAMES[kind], self._block, partial))
        self._kind = FRESH

    def _text_token(self, token: int, cls: int) -> None:
        if cls == BYTE:
            self._text_out(self._text_decoder.decode(bytes((self._byte_values[token],))))

    def _text_out(self, text: str) -> None:
        if not text:
            return
        if not self._block_has_text and self._any_text:
            text = "\n" + text
        self._block_has_text = True
        if self._emit:
            self._any_text = True
        self._send(TextChunk(text, self._block))

    def _image_token(self, token: int, cls: int) -> None:
        if cls == ROW:
            self._finish_row(partial=False)
        elif cls == SEP:
            if self._row:
                self._finish_row(partial=False)
            self._finish_frame(partial=False)
        else:
            self._row.append(token)

    def _pixels(self, cells: list[int]) -> np.ndarray:
        ids = np.asarray(cells, dtype=np.int64)
        out = np.zeros((len(cells), 3), dtype=np.uint8)
        colour = self._classes[ids] == COLOUR if len(cells) else np.zeros(0, dtype=bool)
        out[colour] = self._palette[ids[colour] - self._colour_offset]
        return out

    def _finish_row(self, partial: bool) -> None:
        row, self._row = self._row, []
        self._frame_rows.append(row)
        if row:
            self._send(SpriteRow(self._pixels(row), self._frame_index, len(self._frame_rows) - 1, self._block, partial))

    def _finish_frame(self, partial: bool) -> None:
        rows, self._frame_rows = self._frame_rows, []
        colour_rows = [i for i, row in enumerate(rows) if any(self._classes[t] == COLOUR for t in row)]
        if not colour_rows:
            return  # a frame without colours is not part of the decoded sprite either
        height = colour_rows[-1] + 1
        width = max(len(row) for row in rows[:height])
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        for r, row in enumerate(rows[:height]):
            if row:
                pixels[r, : len(row)] = self._pixels(row)
        self._send(SpriteFrame(pixels, self._frame_index, self._block, partial))
        self._frame_index += 1

    def _audio_token(self, token: int, cls: int) -> None:
        self._audio_frame.append(token)
        if len(self._audio_frame) < self._channels:
            return
        frame, self._audio_frame = self._audio_frame, []
        ids = np.asarray(frame, dtype=np.int64)
        if (self._classes[ids] == LEVEL).all():  # terminator / malformed frames are not samples
            self._audio_buffer.append(self._levels[ids - self._level_offset])
            if len(self._audio_buffer) >= self.audio_chunk_steps:
                self._flush_audio()

    def _flush_audio(self) -> None:
        if not self._audio_buffer:
            return
        samples = np.stack(self._audio_buffer, axis=1).astype(np.float32)  # (C, n)
        self._audio_buffer = []
        self._send(AudioChunk(samples, self.sampling_rate, self._audio_steps, self._block))
        self._audio_steps += samples.shape[1]


class PxByIteratorStreamer(PxByStreamer):
    """:class:`PxByStreamer` whose events are read by iterating it, while ``generate()`` runs in another thread
    (like ``transformers.TextIteratorStreamer``)::

        streamer = PxByIteratorStreamer(tokenizer, timeout=30)
        job = Thread(target=generate_image, args=(model, tokenizer, "a red heart", 8, 8), kwargs={"streamer": streamer})
        job.start()
        for event in streamer:
            ...

    Args:
        timeout: seconds to wait for the next event before ``queue.Empty`` is raised (``None``: wait forever).
        Other arguments as :class:`PxByStreamer`.
    """

    def __init__(
        self, tokenizer: Any, skip_prompt: bool = True, audio_chunk_steps: int = 256, timeout: float | None = None
    ) -> None:
        super().__init__(tokenizer, skip_prompt=skip_prompt, audio_chunk_steps=audio_chunk_steps)
        self.timeout = timeout
        self.queue: Queue = Queue()
        self._stop_signal = object()

    def on_event(self, event: StreamEvent) -> None:
        self.queue.put(event, timeout=self.timeout)

    def end(self) -> None:
        super().end()
        self.queue.put(self._stop_signal, timeout=self.timeout)

    def __iter__(self) -> PxByIteratorStreamer:
        return self

    def __next__(self) -> StreamEvent:
        value = self.queue.get(timeout=self.timeout)
        if value is self._stop_signal:
            raise StopIteration
        return value


# --------------------------------------------------------------------------------------------------
# Stopping at the end of a block
# --------------------------------------------------------------------------------------------------
BLOCK_KINDS = {"text": TEXT, "image": IMAGE, "audio": AUDIO}


class BlockEndStoppingCriteria(StoppingCriteria):
    """Stops each row once ``count`` blocks of the given ``kinds`` have ended in the generated tokens (DESIGN §5).

    When a block ends:

    * ``"text"``: at its separator (id 2), if it held at least one token before it (a caption);
    * ``"audio"``: at its terminator frame (``[1, 2]`` stereo, ``[1]`` mono);
    * ``"image"``: after ``image_frames`` frames (the frame separator of the last one) when ``image_frames`` is
      given; otherwise when a frame separator is followed by a byte or a level (the next block starts). In that
      case the row's last token already belongs to the next block: :attr:`end_positions` says where the image
      ended, so the caller can cut it (``sequence[:end]``).

    A block opened in the prompt and ended by the model counts. Each row stops on its own (``generate()`` keeps
    finished rows finished); :attr:`end_positions` ``[b]`` is the length of row ``b`` right after the ``count``-th
    block's last token (``None`` while it runs). Rows are followed across steps by their prefixes, so beam search
    reordering is handled. Leading pad ids (left padding) are skipped.

    Args:
        token_classes: the vocabulary's token classes (``tokenizer.token_classes``).
        audio_channels: frame width of audio blocks.
        kinds: block kinds that count (``"image"``, ``"audio"``, ``"text"``).
        count: blocks to wait for.
        image_frames: frames after which an image block counts as ended (``None``: at the next non-image token).
    """

    def __init__(
        self,
        token_classes: np.ndarray,
        audio_channels: int,
        kinds: Sequence[str] | str = ("image", "audio", "text"),
        count: int = 1,
        image_frames: int | None = None,
    ) -> None:
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        unknown = [k for k in kinds if k not in BLOCK_KINDS]
        if unknown or not kinds:
            raise ValueError(f"kinds must be among {sorted(BLOCK_KINDS)}, got {list(kinds)!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        if image_frames is not None and (not isinstance(image_frames, int) or image_frames < 1):
            raise ValueError(f"image_frames must be None or a positive integer, got {image_frames!r}")
        self._classes = np.asarray(token_classes)
        self._channels = int(audio_channels)
        self.kinds = {BLOCK_KINDS[k] for k in kinds}
        self.count = count
        self.image_frames = image_frames
        self._ids: torch.Tensor | None = None
        self._rows: list[_RowEnds] = []

    @property
    def end_positions(self) -> list[int | None]:
        """Per row: the length right after the ``count``-th counted block, or ``None``."""
        return [row.end for row in self._rows]

    def _new_row(self, ids: list[int]) -> _RowEnds:
        row = _RowEnds(LayoutTracker(self._classes, self._channels), self)
        start = next((i for i, t in enumerate(ids) if t != PAD_ID), len(ids))
        row.offset = start
        for token in ids[start:]:
            row.tracker.push(token)
            row.length += 1
        frames = self.image_frames  # an image of the prompt that already has its frames is not counted again
        row.image_counted = row.tracker.kind == IMAGE and frames is not None and row.tracker.t >= frames
        return row

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        ids = input_ids.detach().cpu()
        batch, length = ids.shape
        previous = self._ids
        if previous is not None and previous.shape[1] == length - 1 and bool((ids[:, :-1] == previous).all()):
            rows = self._rows if previous.shape[0] == batch else None
        else:
            rows = None
        if rows is None:
            rows = []
            if previous is not None and previous.shape[1] == length - 1:  # beam reordering: follow the prefixes
                same = (ids[:, None, :-1] == previous[None]).all(-1)  # (B, B_prev)
                for b in range(batch):
                    parents = torch.nonzero(same[b]).flatten()
                    rows.append(
                        self._rows[int(parents[0])].clone() if len(parents) else self._new_row(ids[b, :-1].tolist())
                    )
            else:  # a new generate() run: everything but the last token is the prompt
                rows = [self._new_row(ids[b, :-1].tolist()) for b in range(batch)]
        for b, row in enumerate(rows):
            row.push(int(ids[b, -1]))
        self._rows, self._ids = rows, ids
        return torch.tensor([row.end is not None for row in rows], dtype=torch.bool, device=input_ids.device)


class _RowEnds:
    """Per-row state of :class:`BlockEndStoppingCriteria`."""

    __slots__ = ("criteria", "end", "ended", "image_counted", "length", "offset", "text_tokens", "tracker")

    def __init__(self, tracker: LayoutTracker, criteria: BlockEndStoppingCriteria) -> None:
        self.tracker, self.criteria = tracker, criteria
        self.ended, self.end, self.length, self.offset = 0, None, 0, 0
        self.image_counted, self.text_tokens = False, 0

    def clone(self) -> _RowEnds:
        new = _RowEnds(self.tracker.clone(), self.criteria)
        new.ended, new.end, new.length, new.offset = self.ended, self.end, self.length, self.offset
        new.image_counted, new.text_tokens = self.image_counted, self.text_tokens
        return new

    def _count(self, kind: int, end: int) -> None:
        if self.end is None and kind in self.criteria.kinds:
            self.ended += 1
            if self.ended >= self.criteria.count:
                self.end = end

    def push(self, token: int) -> None:
        criteria, tracker = self.criteria, self.tracker
        if not 0 <= token < len(criteria._classes):
            raise ValueError(f"token id {token} is outside the vocabulary (size {len(criteria._classes)})")
        cls = int(criteria._classes[token])
        position = self.offset + self.length  # index of this token in the row
        if _lands_in_new_block(tracker, cls):
            if tracker.kind == IMAGE and not self.image_counted:  # an image closed by the next block's first token
                self._count(IMAGE, position)
            landing = KIND_OF_CLASS[cls]
            self.image_counted, self.text_tokens = False, 0
        else:
            landing = tracker.kind
        tracker.push(token)
        self.length += 1
        if tracker.kind == FRESH:  # the block closed: a text at its SEP, an audio clip at its terminator frame
            if landing == AUDIO or self.text_tokens > 0:
                self._count(landing, position + 1)
            self.text_tokens = 0
        elif landing == TEXT:
            self.text_tokens += 1
        elif landing == IMAGE and cls == SEP and not self.image_counted:
            frames = criteria.image_frames
            if frames is not None and tracker.t >= frames:
                self.image_counted = True
                self._count(IMAGE, position + 1)

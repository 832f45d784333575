"""What the app does, without gradio: model loading, streamed sprites, the cry, rectangle edits.

:class:`SpriteStudio` wraps one model and its tokenizer. Its methods return plain arrays / PIL images / files, so
they are tested without a browser; :mod:`pixelbytes.app.ui` only wires them to gradio components.

* :meth:`SpriteStudio.stream_sprite` — caption → sprite, one :class:`SpriteUpdate` per completed row (causal
  models: ``generate_image`` in a thread, read through a
  :class:`~pixelbytes.generation_pixelbytes.PxByIteratorStreamer`;
  masked-diffusion models: one :func:`~pixelbytes.generation_pixelbytes.infill` of the whole grid);
* :meth:`SpriteStudio.generate_cry` — the sound after the caption and the sprite (``generate_audio``);
* :meth:`SpriteStudio.edit_rectangle` — a rectangle of the sprite regenerated (diffusion models: ``infill``) or
  continued (causal models: the rows from the rectangle's first row on are generated again).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import LogitsProcessor

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_AUDIO_STEPS",
    "MAX_FRAMES",
    "MAX_SIDE",
    "ModelLoadError",
    "Rectangle",
    "SpriteState",
    "SpriteStudio",
    "SpriteUpdate",
    "default_cache_dir",
    "load_model",
    "load_or_train_demo",
]

#: largest sprite side and frame count the app accepts
MAX_SIDE = 64
MAX_FRAMES = 8
#: time steps of the demo sounds (1,024 samples at stride 32)
DEFAULT_AUDIO_STEPS = 32
#: colour of cells not generated yet (the growing sprite)
PENDING_RGB = (72, 72, 72)


class ModelLoadError(ValueError):
    """A model directory that cannot be used: missing, no ``config.json``, no tokenizer, or a mismatch."""


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def load_model(model_dir: str | os.PathLike) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a saved PixelBytes folder, the model in eval mode.

    Raises :class:`ModelLoadError` with a one-line reason when the folder does not exist, has no ``config.json``,
    has no saved tokenizer (``tokenizer_config.json``; save one with ``tokenizer.save_pretrained(DIR)``) or when the
    tokenizer does not match the model's vocabulary.
    """
    from ..modeling_pixelbytes import PxBySequenceModel
    from ..tokenization_pixelbytes import ActionPixelBytesTokenizer

    path = Path(model_dir)
    if not path.exists():
        raise ModelLoadError(f"model directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"{str(path)!r} is a file, not a model directory")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{str(path)!r} has no config.json (not a saved model)")
    if not (path / "tokenizer_config.json").is_file():
        raise ModelLoadError(
            f"{str(path)!r} has no tokenizer (tokenizer_config.json); save one beside the model with "
            "tokenizer.save_pretrained(DIR)"
        )
    try:
        tokenizer = ActionPixelBytesTokenizer.from_pretrained(str(path))
        model = PxBySequenceModel.from_pretrained(str(path)).eval()
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load {str(path)!r}: {first}") from err
    try:
        model.config.check_tokenizer(tokenizer)
    except ValueError as err:
        raise ModelLoadError(f"{str(path)!r}: the tokenizer does not match the model: {err}") from err
    return model, tokenizer


def default_cache_dir() -> Path:
    """Where the demo model is kept: ``$PIXELBYTES_CACHE`` or ``$XDG_CACHE_HOME/pixelbytes`` (``~/.cache``)."""
    root = os.environ.get("PIXELBYTES_CACHE")
    if root:
        return Path(root).expanduser() / "demo_app"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pixelbytes" / "demo_app"


def load_or_train_demo(
    cache_dir: str | os.PathLike | None = None, train: Callable[[str], Any] | None = None
) -> tuple[Any, Any]:
    """The offline default: the demo model from ``cache_dir/model`` when it was trained before, else train it.

    ``train(output_dir)`` must leave a saved model + tokenizer in ``output_dir/model``; the default is
    :func:`pixelbytes.demo.run_demo` (``pixelbytes demo``: a few minutes on 2 CPU cores).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model_dir = cache / "model"
    if not (model_dir / "config.json").is_file():
        if train is None:
            from ..demo import run_demo

            train = run_demo
        logger.warning(
            "no demo model in %s yet: training it now with `pixelbytes demo` (a few minutes on 2 CPU cores; "
            "the next start loads it from the cache)",
            cache,
        )
        cache.mkdir(parents=True, exist_ok=True)
        train(str(cache))
    else:
        logger.info("loading the demo model from %s", model_dir)
    return load_model(model_dir)


# --------------------------------------------------------------------------------------------------
# Values passed around
# --------------------------------------------------------------------------------------------------
@dataclass
class SpriteState:
    """A generated sprite as tokens: ``ids`` = caption (``prompt_length`` ids, ending with the separator) followed
    by ``frames`` × ``height`` rows × (``width`` colours + a row / frame separator)."""

    ids: list[int]
    prompt_length: int
    height: int
    width: int
    frames: int
    caption: str = ""

    def position(self, frame: int, row: int, col: int) -> int:
        """Index in :attr:`ids` of the pixel ``(frame, row, col)``."""
        return self.prompt_length + (frame * self.height + row) * (self.width + 1) + col

    @property
    def sprite_end(self) -> int:
        """Index just after the sprite's last token."""
        return self.prompt_length + self.frames * self.height * (self.width + 1)


@dataclass
class SpriteUpdate:
    """One step of a streamed sprite: ``preview`` (the frame being drawn, upscaled; cells not generated yet are
    grey), the finished ``frames`` so far, and at the end (``done``) the :class:`SpriteState` and a GIF path."""

    preview: Image.Image
    frames: list[np.ndarray] = field(default_factory=list)
    rows_done: int = 0
    rows_total: int = 0
    done: bool = False
    state: SpriteState | None = None
    gif_path: str | None = None


@dataclass(frozen=True)
class Rectangle:
    """Inclusive 0-based ranges of a sprite: ``frame``, rows ``row_start..row_end``, columns
    ``col_start..col_end``."""

    frame: int
    row_start: int
    row_end: int
    col_start: int
    col_end: int

    def check(self, state: SpriteState) -> None:
        """``ValueError`` unless the rectangle lies inside the sprite of ``state``."""
        if not 0 <= self.frame < state.frames:
            raise ValueError(f"frame must be in 0..{state.frames - 1}, got {self.frame}")
        for name, start, end, size in (
            ("rows", self.row_start, self.row_end, state.height),
            ("columns", self.col_start, self.col_end, state.width),
        ):
            if not 0 <= start <= end < size:
                raise ValueError(f"{name} must satisfy 0 <= start <= end <= {size - 1}, got {start}..{end}")


class _GridContinuation(LogitsProcessor):
    """Forces the rest of a ``frames × height × width`` grid whose first ``offset`` tokens are already in the
    prompt (:class:`~pixelbytes.generation_pixelbytes.ImageGridLogitsProcessor` starts a grid after a separator;
    this one resumes it mid-sprite)."""

    def __init__(self, token_classes: np.ndarray, height: int, width: int, frames: int, offset: int, start: int):
        from ..vocabulary import COLOUR, ROW_ID, SEP_ID

        classes = torch.as_tensor(np.asarray(token_classes))
        self.colour = classes == COLOUR
        self.row = torch.zeros_like(self.colour)
        self.row[ROW_ID] = True
        self.sep = torch.zeros_like(self.colour)
        self.sep[SEP_ID] = True
        self.height, self.width, self.frames = height, width, frames
        self.offset, self.start = offset, start

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        j = self.offset + input_ids.shape[1] - self.start
        if j >= self.frames * self.height * (self.width + 1):
            return scores
        row, col = divmod(j % (self.height * (self.width + 1)), self.width + 1)
        mask = self.colour if col < self.width else (self.row if row < self.height - 1 else self.sep)
        return scores.masked_fill(~mask.to(scores.device), float("-inf"))


# --------------------------------------------------------------------------------------------------
# The studio
# --------------------------------------------------------------------------------------------------
class SpriteStudio:
    """Caption → sprite / cry and rectangle edits with one model (see the module docstring).

    Args:
        model: a :class:`~pixelbytes.PxBySequenceModel` (causal, or ``objective="diffusion"`` masked diffusion).
        tokenizer: its :class:`~pixelbytes.ActionPixelBytesTokenizer`.
        upscale: nearest-neighbour factor of the images shown (``None``: about 256 px on the longer side).
        output_dir: where GIFs are written (default: a fresh temporary folder).
        stream_timeout: seconds to wait for the next streamed row before giving up.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        upscale: int | None = None,
        output_dir: str | os.PathLike | None = None,
        stream_timeout: float = 120.0,
    ) -> None:
        try:
            model.config.check_tokenizer(tokenizer)
        except ValueError as err:
            raise ModelLoadError(f"the tokenizer does not match the model: {err}") from err
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.upscale = upscale
        self.output_dir = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="pxby_app_"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.stream_timeout = stream_timeout
        self._lock = threading.Lock()  # one generation at a time (the model and the global seed are shared)
        self._counter = 0

    # ---------------------------------------------------------------- properties
    @property
    def is_diffusion(self) -> bool:
        """Whether the model is a masked-diffusion model (sprites by ``infill``, edits regenerate)."""
        return getattr(self.model.config, "objective", None) == "diffusion"

    @property
    def sampling_rate(self) -> int:
        """Rate of the played sound: the tokenizer's rate (the model's levels are upsampled to it)."""
        return int(self.tokenizer.sampling_rate)

    def describe(self) -> str:
        """One line about the model (kind, backbone, parameters)."""
        config = self.model.config
        kind = "masked diffusion (edits regenerate)" if self.is_diffusion else "causal (edits continue)"
        params = sum(p.numel() for p in self.model.parameters())
        return f"{config.backbone} model, {params:,} parameters, {kind}"

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def check_size(height: Any, width: Any, frames: Any) -> tuple[int, int, int]:
        """Validated ``(height, width, frames)``: integers in 1..:data:`MAX_SIDE` / 1..:data:`MAX_FRAMES`."""
        out = []
        limits = (("height", height, MAX_SIDE), ("width", width, MAX_SIDE), ("frames", frames, MAX_FRAMES))
        for name, value, top in limits:
            try:
                whole = value is not None and not isinstance(value, bool) and float(value) == int(float(value))
            except (TypeError, ValueError):
                whole = False
            if not whole:
                raise ValueError(f"{name} must be a whole number in 1..{top}, got {value!r}")
            number = int(float(value))
            if not 1 <= number <= top:
                raise ValueError(f"{name} must be in 1..{top}, got {number}")
            out.append(number)
        return out[0], out[1], out[2]

    def _scale(self, height: int, width: int) -> int:
        if self.upscale is not None:
            return max(1, int(self.upscale))
        return max(1, 256 // max(height, width))

    def enlarge(self, pixels: np.ndarray) -> Image.Image:
        """``(H, W, 3)`` uint8 → an upscaled (nearest neighbour) PIL image."""
        image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
        k = self._scale(*pixels.shape[:2])
        return image.resize((image.width * k, image.height * k), Image.NEAREST)

    def _sampling(self, temperature: float) -> dict[str, Any]:
        temperature = float(temperature)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if temperature == 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": temperature, "top_k": 0}

    def _prompt(self, caption: str) -> list[int]:
        caption = (caption or "").strip()
        if not caption:
            raise ValueError("write a caption first")
        ids = self.tokenizer(caption)["input_ids"]
        if not ids:
            raise ValueError(f"the caption {caption!r} has no characters the tokenizer knows")
        return list(ids)

    def frames_of(self, state: SpriteState) -> list[np.ndarray]:
        """The ``(H, W, 3)`` frames of a sprite state (decoded by the tokenizer)."""
        decoded = self.tokenizer.decode_multimodal(state.ids[: state.sprite_end])
        return [np.asarray(f.convert("RGB")) for f in decoded.frames]

    def save_gif(self, frames: list[np.ndarray], name: str = "sprite") -> str:
        """Write the upscaled frames as a looping GIF (a PNG-like one-frame GIF for a still sprite); its path."""
        with self._lock:
            self._counter += 1
            index = self._counter
        path = self.output_dir / f"{name}_{os.getpid()}_{index}.gif"
        images = [self.enlarge(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=250, loop=0, disposal=1)
        return str(path)

    # ---------------------------------------------------------------- caption → sprite
    def stream_sprite(
        self, caption: str, height: int, width: int, frames: int = 1, temperature: float = 0.0, seed: int = 0
    ) -> Iterator[SpriteUpdate]:
        """Generate a sprite for ``caption``, yielding a :class:`SpriteUpdate` after every completed row (the last
        one has ``done=True``, the :class:`SpriteState` and the GIF). ``ValueError`` for bad inputs."""
        height, width, frames = self.check_size(height, width, frames)
        sampling = self._sampling(temperature)
        prompt = self._prompt(caption)
        total = height * frames
        canvas = np.empty((height, width, 3), dtype=np.uint8)
        canvas[:] = PENDING_RGB
        yield SpriteUpdate(self.enlarge(canvas), rows_total=total)
        if self.is_diffusion:
            state = self._diffuse_sprite(prompt, height, width, frames, caption)
            done = self.frames_of(state)
            yield SpriteUpdate(self.enlarge(done[-1]), done, total, total, True, state, self.save_gif(done))
            return
        result = yield from self._stream_causal(prompt, height, width, frames, sampling, int(seed), canvas, total)
        state = SpriteState(result, len(prompt), height, width, frames, caption.strip())
        done = self.frames_of(state)
        yield SpriteUpdate(self.enlarge(done[-1]), done, total, total, True, state, self.save_gif(done))

    def _stream_causal(
        self, prompt, height, width, frames, sampling, seed, canvas, total
    ) -> Iterator[SpriteUpdate]:
        from ..generation_pixelbytes import PxByIteratorStreamer, SpriteFrame, SpriteRow, generate_image

        streamer = PxByIteratorStreamer(self.tokenizer, timeout=self.stream_timeout)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with self._lock:
                    torch.manual_seed(seed)
                    sequences, _ = generate_image(
                        self.model, self.tokenizer, prompt, height, width, frames, streamer=streamer, **sampling
                    )
                outcome["ids"] = sequences[0].tolist()
            except Exception as err:  # reported in the caller's thread
                outcome["error"] = err
                streamer.end()

        job = threading.Thread(target=run, name="pixelbytes-app-generate", daemon=True)
        job.start()
        finished: list[np.ndarray] = []
        rows = 0
        for event in streamer:
            if isinstance(event, SpriteRow):
                rows += 1
                if event.row == 0 and event.frame > 0:
                    canvas[:] = PENDING_RGB
                canvas[event.row, : len(event.pixels)] = event.pixels[:width]
                yield SpriteUpdate(self.enlarge(canvas), list(finished), rows, total)
            elif isinstance(event, SpriteFrame):
                finished.append(event.pixels)
        job.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["ids"]

    def _placeholders(self, height: int, width: int, frames: int) -> list[int]:
        from ..vocabulary import ROW_ID, SEP_ID

        colour = int(self.tokenizer.vocabulary.color_offset)
        ids: list[int] = []
        for _ in range(frames):
            for r in range(height):
                ids += [colour] * width + [ROW_ID if r < height - 1 else SEP_ID]
        return ids

    def _diffuse_sprite(self, prompt: list[int], height: int, width: int, frames: int, caption: str) -> SpriteState:
        from ..generation_pixelbytes import infill

        state = SpriteState(prompt + self._placeholders(height, width, frames), len(prompt), height, width, frames,
                            caption.strip())  # fmt: skip
        mask = torch.zeros(1, len(state.ids), dtype=torch.bool)
        mask[0, state.prompt_length : state.sprite_end] = True
        from ..vocabulary import ROW_ID, SEP_ID

        ids = torch.tensor([state.ids])
        mask &= (ids != ROW_ID) & (ids != SEP_ID)
        with self._lock:
            filled = infill(self.model, ids, mask)
        return replace(state, ids=filled[0].tolist())

    # ---------------------------------------------------------------- the cry
    def generate_cry(self, state: SpriteState, steps: int = DEFAULT_AUDIO_STEPS, temperature: float = 0.0,
                     seed: int = 0) -> tuple[int, np.ndarray] | None:  # fmt: skip
        """The sound after the caption and the sprite: ``(sampling_rate, int16 array (samples, channels))`` as
        ``gr.Audio`` plays it, or ``None`` when ``steps`` is 0. The model's levels (at the tokenizer's rate /
        ``audio_stride``) are linearly upsampled to the tokenizer's rate, which every browser plays."""
        steps = int(steps)
        if steps < 0:
            raise ValueError(f"sound steps must be >= 0, got {steps}")
        if steps == 0:
            return None
        prompt = state.ids[: state.sprite_end]
        if self.is_diffusion:
            audio = self._diffuse_audio(prompt, steps)
        else:
            from ..generation_pixelbytes import generate_audio

            with self._lock:
                torch.manual_seed(int(seed))
                _, decoded = generate_audio(self.model, self.tokenizer, prompt, steps, **self._sampling(temperature))
            audio = decoded[0].audio
        if audio is None or not audio.shape[-1]:
            return None
        return self.sampling_rate, self.to_playable(audio)

    def to_playable(self, audio: np.ndarray) -> np.ndarray:
        """``(C, T)`` float in [-1, 1] at the model's rate → ``(T * stride, C)`` int16 at :attr:`sampling_rate`."""
        stride = max(1, int(self.tokenizer.audio_stride))
        audio = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
        steps = audio.shape[-1]
        target = np.arange(steps * stride, dtype=np.float64) / stride
        up = np.stack([np.interp(target, np.arange(steps), channel) for channel in audio], axis=1)
        return (up * 32767).astype(np.int16)

    def _diffuse_audio(self, prompt: list[int], steps: int) -> np.ndarray | None:
        from ..generation_pixelbytes import infill
        from ..vocabulary import ROW_ID, SEP_ID

        channels = int(self.tokenizer.audio_channels)
        level = int(self.tokenizer.vocabulary.level_offset)
        terminator = [ROW_ID] + [SEP_ID] * (channels - 1) if channels > 1 else [ROW_ID]
        ids = torch.tensor([prompt + [level] * (steps * channels) + terminator])
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, len(prompt) : len(prompt) + steps * channels] = True
        with self._lock:
            filled = infill(self.model, ids, mask)
        return self.tokenizer.decode_multimodal(filled[0]).audio

    # ---------------------------------------------------------------- rectangle edits
    def outline(self, state: SpriteState, rect: Rectangle) -> Image.Image:
        """The rectangle's frame, upscaled, with the rectangle outlined (what will change)."""
        from PIL import ImageDraw

        frame = self.frames_of(state)[rect.frame]
        image = self.enlarge(frame)
        k = self._scale(state.height, state.width)
        draw = ImageDraw.Draw(image)
        box = (rect.col_start * k, rect.row_start * k, (rect.col_end + 1) * k - 1, (rect.row_end + 1) * k - 1)
        draw.rectangle(box, outline=(255, 0, 255), width=max(1, k // 4))
        return image

    def edit_rectangle(self, state: SpriteState, rect: Rectangle, temperature: float = 0.0, seed: int = 0,
                       num_steps: int | None = None) -> SpriteState:  # fmt: skip
        """Regenerate ``rect`` of the sprite: a masked-diffusion model infills exactly its pixels (nothing else
        changes); a causal model keeps everything before the rectangle's first row (in its frame) and generates
        the rest of the sprite again. Returns the new state (the caption and size are kept)."""
        rect.check(state)
        ids = torch.tensor([state.ids[: state.sprite_end]])
        if self.is_diffusion:
            from ..generation_pixelbytes import infill

            mask = torch.zeros_like(ids, dtype=torch.bool)
            for r in range(rect.row_start, rect.row_end + 1):
                a = state.position(rect.frame, r, rect.col_start)
                mask[0, a : a + rect.col_end - rect.col_start + 1] = True
            with self._lock:
                filled = infill(self.model, ids, mask, num_steps=num_steps)
            return replace(state, ids=filled[0].tolist())
        cut = state.position(rect.frame, rect.row_start, 0)
        processor = _GridContinuation(
            self.tokenizer.token_classes, state.height, state.width, state.frames, cut - state.prompt_length, cut
        )
        with self._lock, torch.no_grad():
            torch.manual_seed(int(seed))
            out = self.model.generate(
                ids[:, :cut],
                attention_mask=torch.ones_like(ids[:, :cut]),
                max_new_tokens=state.sprite_end - cut,
                logits_processor=[processor],
                **self._sampling(temperature),
            )
        new_ids = out[0].tolist()
        if len(new_ids) != state.sprite_end:  # generation stopped early (an end-of-sequence id): keep the layout
            raise RuntimeError(f"the model stopped after {len(new_ids) - cut} of {state.sprite_end - cut} tokens")
        return replace(state, ids=new_ids)


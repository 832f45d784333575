"""Modality codecs: text, images and audio / action signals ⇄ token-id grids (DESIGN §4).

Pure functions of a :class:`~pixelbytes.vocabulary.PxByVocabulary`. Each encoder returns a block
grid of ids of shape ``(T, H, W)`` (text ``(1, 1, n)``, image ``(F, H, W + 1)``, audio
``(T + 1, 1, C)``) whose raster order is the token stream; the layout engine turns grids into
contexts. Decoding goes through the stream layout, so any stream (even a malformed generated one)
decodes without error.

Faithful to the original tokenizer by default; deviations (documented, tested):

* text: ``\\t``, ``\\n`` and every other whitespace become a space (they would collide with the
  separators); typographic quotes and dashes become their ASCII counterparts; characters outside the
  vocabulary are dropped and counted (the original turned them into the pad id 0);
* images: alpha is composited on ``background`` (white by default, like the published dataset;
  ``None`` = plain ``convert("RGB")``); 16-bit greyscale is scaled to 8 bits (PIL would clip it);
  ``frame_stride`` is separate from the spatial stride; decoding keeps every row;
* audio: constant or empty clips never produce NaN; mono clips keep the original single
  terminator ``[1]``.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .layout import AUDIO, IMAGE, TEXT, _image_positions, stream_blocks
from .vocabulary import BYTE, COLOUR, LEVEL, ROW_ID, SEP_ID, PxByVocabulary

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_NORMALIZATIONS",
    "DecodedStream",
    "decode_stream",
    "encode_audio",
    "encode_image",
    "encode_text",
    "image_to_frames",
    "mono_to_stereo",
    "normalize_audio",
    "quantize_colors",
    "quantize_levels",
    "resample_audio",
    "rgb_to_lab",
    "save_image",
    "save_wav",
    "stereo_to_mono",
]

AUDIO_NORMALIZATIONS = ("minmax", "zscore", "none")
DEFAULT_MAX_IMAGE_PIXELS = 1 << 24

# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------
_WHITESPACE = re.compile(r"\s")
# typographic punctuation that has an exact ASCII counterpart in the vocabulary (the original dropped it)
_TYPOGRAPHIC = str.maketrans(
    {**dict.fromkeys("‘’‚‛′", "'"), **dict.fromkeys("“”„‟″", '"'), **dict.fromkeys("‐‑‒–—−", "-")}
)


def normalize_text(text: str) -> str:
    """Lower-case, NFKD, typographic quotes / dashes → ASCII, whitespace → space (before ASCII folding)."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKD", text.lower()).translate(_TYPOGRAPHIC))


def encode_text(text: str, vocab: PxByVocabulary, terminate: bool = True) -> tuple[np.ndarray, int]:
    """Text → ids, ending with the separator (id 2) when ``terminate``.

    Lower-case, NFKD, whitespace to space, fold to ASCII (accents are stripped), then bytes → ids.
    Returns ``(ids, dropped)`` where ``dropped`` counts the characters that had no token (emoji,
    ``?``, ``&``, control characters, …); combining accents removed by the folding are not counted.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    norm = normalize_text(text)
    raw = norm.encode("ascii", "ignore")
    dropped = sum(1 for ch in norm if ord(ch) > 127 and not unicodedata.combining(ch))
    ids = vocab.byte_to_id[np.frombuffer(raw, dtype=np.uint8)]
    keep = ids > SEP_ID  # excludes bytes outside the table and the structural \x00 \t \n
    dropped += int(len(ids) - keep.sum())
    ids = ids[keep]
    if terminate:
        ids = np.concatenate((ids, [SEP_ID]))
    return ids.astype(np.int64, copy=False), dropped


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
# sRGB (D65) -> XYZ matrix and the D65 / 2° reference white used by skimage.color.rgb2lab.
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB ``(..., 3)`` → CIE-Lab (D65, 2° observer) in float64, the math of ``skimage.color.rgb2lab``."""
    arr = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(arr > 0.04045, ((arr + 0.055) / 1.055) ** 2.4, arr / 12.92)
    xyz = (linear @ _XYZ_FROM_RGB.T) / _D65_WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), axis=-1)


class _ColorCache:
    """Nearest-palette-colour lookup over the 24-bit RGB cube, filled lazily per unique colour.

    A dense table (16 MiB for ≤ 254 colours) starts as "unknown"; each image computes the CIE-Lab
    nearest colour only for the colours it is the first to use. No start-up table build.
    """

    def __init__(self, palette: np.ndarray) -> None:
        self.palette_lab = rgb_to_lab(palette)  # (P, 3)
        self.dtype = np.uint8 if len(palette) < 255 else np.uint16
        self.unknown = np.iinfo(self.dtype).max
        self.table: np.ndarray | None = None

    def lookup(self, packed: np.ndarray) -> np.ndarray:
        if self.table is None:
            self.table = np.full(1 << 24, self.unknown, dtype=self.dtype)
        idx = self.table[packed]
        missing = idx == self.unknown
        if missing.any():
            new = np.unique(packed[missing])
            rgb = np.stack(((new >> 16) & 255, (new >> 8) & 255, new & 255), axis=-1)
            self.table[new] = nearest_palette_index(rgb, self.palette_lab)
            idx = self.table[packed]
        return idx


def nearest_palette_index(rgb: np.ndarray, palette_lab: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Index of the nearest palette colour (Euclidean distance in CIE-Lab, float64) for ``(N, 3)`` RGB."""
    rgb = np.asarray(rgb).reshape(-1, 3)
    out = np.empty(len(rgb), dtype=np.int64)
    for start in range(0, len(rgb), chunk):
        lab = rgb_to_lab(rgb[start : start + chunk])
        d2 = ((lab[:, None, :] - palette_lab[None, :, :]) ** 2).sum(-1)
        out[start : start + chunk] = d2.argmin(1)
    return out


_COLOR_CACHES: dict[tuple, _ColorCache] = {}


def quantize_colors(rgb: np.ndarray, vocab: PxByVocabulary) -> np.ndarray:
    """Palette index (0-based) of the nearest palette colour for every pixel of a ``(..., 3)`` uint8 array."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"expected uint8 RGB pixels of shape (..., 3), got {rgb.dtype} {rgb.shape}")
    cache = _COLOR_CACHES.get(vocab.palette)
    if cache is None:
        cache = _COLOR_CACHES[vocab.palette] = _ColorCache(vocab.palette_array)
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    return cache.lookup((r << 16) | (g << 8) | b)


def _background_rgb(background: Sequence[int] | None) -> tuple[int, int, int] | None:
    if background is None:
        return None
    bg = tuple(int(v) for v in background)
    if len(bg) != 3 or any(not 0 <= v < 256 for v in bg):
        raise ValueError(f"image_background must be None or 3 values in [0, 255], got {background!r}")
    return bg  # type: ignore[return-value]


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _frame_to_rgb(frame: Image.Image, background: tuple[int, int, int] | None) -> np.ndarray:
    """One PIL frame of any mode → ``(H, W, 3)`` uint8 RGB."""
    mode = frame.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(frame, dtype=np.float64)
        if mode.startswith("I;16") or (values.size and values.max() > 255):
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in frame.info
    if background is None or not has_alpha:
        return np.asarray(frame.convert("RGB"))
    rgba = np.asarray(frame.convert("RGBA"))
    alpha = rgba[..., 3:4].astype(np.uint16)
    bg = np.asarray(background, dtype=np.uint16)
    mixed = (rgba[..., :3].astype(np.uint16) * alpha + bg * (255 - alpha) + 127) // 255
    return mixed.astype(np.uint8)


def image_to_frames(
    image: Any,
    background: Sequence[int] | None = (255, 255, 255),
    frame_stride: int = 1,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode every ``frame_stride``-th frame of an image into ``(F, H, W, 3)`` uint8 RGB.

    ``image`` is a PIL image (animated GIF/PNG/WebP: every frame), a path, or a uint8 array of shape
    ``(H, W)``, ``(H, W, 3|4)`` or ``(F, H, W, 3|4)``. Images larger than ``max_pixels``
    (frames × height × width) are refused before decoding (decompression bombs).
    """
    bg = _background_rgb(background)
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if isinstance(image, np.ndarray):
        return _array_to_frames(image, bg, frame_stride, max_pixels)
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as opened:
                return image_to_frames(opened, background, frame_stride, max_pixels)
        except (Image.DecompressionBombError, Image.UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read image {os.fspath(image)!r}: {err}") from err
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, a path or a uint8 array, got {type(image).__name__}")
    width, height = image.size
    n_frames = int(getattr(image, "n_frames", 1))
    if width == 0 or height == 0:
        raise ValueError(f"image has zero size ({width}x{height})")
    _check_pixels(n_frames, height, width, max_pixels)
    frames = []
    position = image.tell() if n_frames > 1 else 0
    try:
        for i in range(0, n_frames, frame_stride):
            if n_frames > 1:
                image.seek(i)
            frame = _frame_to_rgb(image, bg)
            if frames and frame.shape != frames[0].shape:
                raise ValueError(f"frame {i} has size {frame.shape[:2]}, frame 0 has {frames[0].shape[:2]}")
            frames.append(frame)
    except (OSError, EOFError) as err:
        raise ValueError(f"corrupted or truncated image: {err}") from err
    finally:
        if n_frames > 1:
            image.seek(position)
    return np.stack(frames)


def _check_pixels(frames: int, height: int, width: int, max_pixels: int | None) -> None:
    if max_pixels is not None and frames * height * width > max_pixels:
        raise ValueError(
            f"image too large: {frames} frame(s) x {height} x {width} = {frames * height * width} pixels exceeds "
            f"max_image_pixels={max_pixels} (raise the tokenizer's max_image_pixels to allow it)"
        )


def _array_to_frames(arr: np.ndarray, bg: tuple | None, frame_stride: int, max_pixels: int | None) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {arr.dtype} (scale float images to 0..255 first)")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"image arrays must be (H, W), (H, W, 3|4) or (F, H, W, 3|4), got {arr.shape}")
    F, H, W, _ = arr.shape
    if F == 0 or H == 0 or W == 0:
        raise ValueError(f"image has zero size ({F} frames of {W}x{H})")
    _check_pixels(F, H, W, max_pixels)
    arr = arr[::frame_stride]
    if arr.shape[-1] == 4:
        if bg is None:
            return np.ascontiguousarray(arr[..., :3])
        alpha = arr[..., 3:4].astype(np.uint16)
        arr = (arr[..., :3].astype(np.uint16) * alpha + np.asarray(bg, np.uint16) * (255 - alpha) + 127) // 255
        return arr.astype(np.uint8)
    return arr


def encode_image(
    image: Any,
    vocab: PxByVocabulary,
    image_stride: int = 1,
    frame_stride: int = 1,
    background: Sequence[int] | None = (255, 255, 255),
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Image → ``(F', H', W' + 1)`` id grid: nearest palette colour per pixel, then one extra column per row
    (1 = row separator, 2 on each frame's last row)."""
    if image_stride < 1:
        raise ValueError(f"image_stride must be >= 1, got {image_stride}")
    frames = image_to_frames(image, background, frame_stride, max_pixels)[:, ::image_stride, ::image_stride]
    F, H, W, _ = frames.shape
    grid = np.empty((F, H, W + 1), dtype=np.int64)
    grid[:, :, :W] = quantize_colors(frames, vocab) + vocab.color_offset
    grid[:, :, W] = ROW_ID
    grid[:, -1, W] = SEP_ID
    return grid


def save_image(path: str | os.PathLike, frames: Sequence[Image.Image], duration_ms: int = 100) -> None:
    """Save frames as an animated GIF (several frames, or a ``.gif`` path) or a still image (PNG, …)."""
    if not frames:
        raise ValueError("no frames to save")
    if len(frames) > 1 or os.fspath(path).lower().endswith(".gif"):
        frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=duration_ms, loop=0)
    else:
        frames[0].save(path)


# --------------------------------------------------------------------------------------------------
# Audio / action signals
# --------------------------------------------------------------------------------------------------
def mono_to_stereo(audio: np.ndarray) -> np.ndarray:
    """``(N,)`` or ``(1, N)`` → ``(2, N)`` by duplicating the channel."""
    x = np.asarray(audio)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (N,) or (1, N), got {x.shape}")
    return np.stack((x, x))


def stereo_to_mono(audio: np.ndarray) -> np.ndarray:
    """``(C, N)`` → ``(N,)`` channel mean."""
    x = np.asarray(audio)
    if x.ndim != 2:
        raise ValueError(f"expected channels-first audio of shape (C, N), got {x.shape}")
    return x.mean(axis=0)


def resample_audio(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited FFT resampling along the last axis (periodic-signal assumption, like
    ``scipy.signal.resample``): the spectrum is truncated or zero-padded to the new length."""
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_rate} -> {target_rate}")
    x = np.asarray(audio, dtype=np.float64)
    if orig_rate == target_rate or x.shape[-1] == 0:
        return x
    n = x.shape[-1]
    m = max(1, round(n * target_rate / orig_rate))
    spectrum = np.fft.rfft(x, axis=-1)
    out = np.zeros((*x.shape[:-1], m // 2 + 1), dtype=complex)
    shared = min(m, n)
    out[..., : shared // 2 + 1] = spectrum[..., : shared // 2 + 1]
    if shared % 2 == 0:  # a Nyquist bin is shared by the two lengths: split or join its two halves
        out[..., shared // 2] *= 2.0 if m < n else 0.5
    return np.fft.irfft(out, n=m, axis=-1) * (m / n)


def validate_audio(audio: Any, channels: int) -> np.ndarray:
    """Check a clip and return it as float ``(channels, N)`` (float32 kept, integer PCM scaled to [-1, 1]
    in float64); every other layout is a clear error."""
    if isinstance(audio, dict):
        if "array" not in audio:
            raise ValueError("audio dicts must hold an 'array' (and optionally a 'sampling_rate')")
        audio = audio["array"]
    if not isinstance(audio, np.ndarray):
        if hasattr(audio, "detach"):  # torch tensor
            audio = audio.detach().cpu().numpy()
        else:
            raise TypeError(f"audio must be a numpy array (C, N) or (N,), got {type(audio).__name__}")
    x = audio
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"audio must be a float or integer PCM array, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.unsignedinteger):  # offset PCM (8-bit WAV): silence is the mid value
        half = float(np.iinfo(x.dtype).max + 1) / 2.0
        x = (x.astype(np.float64) - half) / half
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64) / float(np.iinfo(x.dtype).max)
    elif x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    # float32 clips are normalised in float32 like the original code (this decides exact ties between levels)
    if x.ndim == 1:
        if channels != 1:
            raise ValueError(
                f"got mono audio of shape {x.shape} but the tokenizer expects {channels} channels: convert it "
                "with pixelbytes.codecs.mono_to_stereo(x) or use a tokenizer with audio_channels=1"
            )
        x = x[None]
    elif x.ndim == 2:
        if x.shape[0] != channels:
            if x.shape[1] == channels:
                raise ValueError(
                    f"audio of shape {x.shape} looks channels-last; pass it channels-first as (C, N), e.g. x.T"
                )
            raise ValueError(f"audio has {x.shape[0]} channels (shape {x.shape}), the tokenizer expects {channels}")
    else:
        raise ValueError(f"audio must be (C, N) or (N,), got a {x.ndim}-D array of shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite values")
    if x.shape[-1] == 0:
        raise ValueError("the audio clip is empty (0 samples); leave audio=None for a sample without sound")
    return x


def normalize_audio(x: np.ndarray, mode: str) -> np.ndarray:
    """Map a ``(C, N)`` clip to [-1, 1].

    ``"minmax"``: one global min-max over all channels (the current original code);
    ``"zscore"``: per-channel z-score then clamp (the published Pokémon checkpoints);
    ``"none"``: values are already in [-1, 1] and are only clipped (streaming / control).
    Constant input maps to 0, never NaN (empty clips are refused by :func:`validate_audio`).
    """
    if mode not in AUDIO_NORMALIZATIONS:
        raise ValueError(f"unknown audio_normalization {mode!r}; expected one of {AUDIO_NORMALIZATIONS}")
    if x.shape[-1] == 0:
        return x
    if mode == "minmax":
        lo, hi = x.min(), x.max()
        if hi > lo:
            return 2.0 * (x - lo) / (hi - lo) - 1.0
        return np.zeros_like(x)
    if mode == "zscore":
        mean = x.mean(axis=-1, keepdims=True)
        std = x.std(axis=-1, keepdims=True)
        safe = np.where(std > 0, std, 1.0)
        return np.clip(np.where(std > 0, (x - mean) / safe, 0.0), -1.0, 1.0)
    return np.clip(x, -1.0, 1.0)


def quantize_levels(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest level for every value (ties go to the lower index, like ``argmin``)."""
    x = np.asarray(x, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)
    gaps = np.diff(levels)
    if np.all(gaps > 0):
        if np.allclose(gaps, gaps[0], rtol=1e-9, atol=0.0):  # evenly spaced (linspace): bracket arithmetically
            lo = np.clip(np.floor((x - levels[0]) / gaps[0]).astype(np.int64), 0, len(levels) - 2)
        else:
            lo = np.clip(np.searchsorted(levels, x), 1, len(levels) - 1) - 1
        hi = lo + 1
        return np.where(np.abs(x - levels[lo]) <= np.abs(x - levels[hi]), lo, hi)
    flat = x.reshape(-1)
    return np.abs(flat[:, None] - levels[None, :]).argmin(1).reshape(x.shape)


def encode_audio(
    audio: Any,
    vocab: PxByVocabulary,
    channels: int = 2,
    normalization: str = "minmax",
    stride: int = 1,
    sampling_rate: int | None = None,
    target_rate: int | None = None,
) -> np.ndarray:
    """Audio / action clip → ``(T' + 1, 1, C)`` id grid: one frame per (strided) time step, then a
    terminator frame ``[1, 2, 2, ...][:C]`` (``[1]`` for mono, ``[1, 2]`` for stereo)."""
    if stride < 1:
        raise ValueError(f"audio_stride must be >= 1, got {stride}")
    x = validate_audio(audio, channels)
    if sampling_rate is not None and target_rate is not None and sampling_rate != target_rate:
        x = resample_audio(x, sampling_rate, target_rate)
    q = quantize_levels(normalize_audio(x, normalization)[:, ::stride], vocab.levels_array)
    T = q.shape[1]
    grid = np.empty((T + 1, 1, channels), dtype=np.int64)
    grid[:T, 0, :] = q.T + vocab.level_offset
    grid[T, 0, :] = SEP_ID
    grid[T, 0, 0] = ROW_ID
    return grid


def save_wav(path: str | os.PathLike, audio: np.ndarray, sampling_rate: int = 16000) -> None:
    """Write a ``(C, T)`` (or ``(T,)``) array in [-1, 1] as 16-bit PCM WAV (standard library only)."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"expected audio of shape (C, T) or (T,), got {x.shape}")
    pcm = np.clip(np.rint(np.clip(x, -1.0, 1.0) * 32767), -32768, 32767).astype("<i2")
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(x.shape[0])
        out.setsampwidth(2)
        out.setframerate(int(sampling_rate))
        out.writeframes(np.ascontiguousarray(pcm.T).tobytes())


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------
@dataclass
class DecodedStream:
    """Content of a token stream: text blocks, images (each a list of ``(H, W, 3)`` uint8 frames) and
    audio clips (each ``(C, T)`` float32 in [-1, 1]), in stream order per modality."""

    texts: list[str] = field(default_factory=list)
    images: list[list[np.ndarray]] = field(default_factory=list)
    audios: list[np.ndarray] = field(default_factory=list)


def decode_stream(ids: Any, vocab: PxByVocabulary, audio_channels: int = 2) -> DecodedStream:
    """Exact inverse of the encoders on their output; tolerant of any malformed stream.

    Image frames take the size of the largest row / frame of their block; cells that hold no colour
    (ragged generated rows) are black, like the original ``construct_images``. Audio keeps complete
    frames made of levels only.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab.vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab.vocab_size}), got {int(ids.min())}..{int(ids.max())}")
    cls = vocab.token_classes[ids]
    out = DecodedStream()
    for s, e, kind, _closed in stream_blocks(cls, audio_channels):
        b, cb = ids[s:e], cls[s:e]
        if kind == TEXT:
            raw = bytes(vocab.byte_values[i] for i in b[cb == BYTE].tolist())
            out.texts.append(raw.decode("utf-8", errors="replace"))
        elif kind == IMAGE:
            t, r, c, _ = _image_positions(cb)
            colour = cb == COLOUR
            if not colour.any():
                continue
            F, H, W = int(t[colour].max()) + 1, int(r[colour].max()) + 1, int(c[colour].max()) + 1
            canvas = np.zeros((F, H, W, 3), dtype=np.uint8)
            canvas[t[colour], r[colour], c[colour]] = vocab.palette_array[b[colour] - vocab.color_offset]
            present = np.zeros(F, dtype=bool)
            present[t[colour]] = True
            out.images.append([canvas[i] for i in range(F) if present[i]])
        elif kind == AUDIO:
            T = len(b) // audio_channels
            frames = b[: T * audio_channels].reshape(T, audio_channels)
            good = (vocab.token_classes[frames] == LEVEL).all(axis=1)
            values = vocab.levels_array[frames[good] - vocab.level_offset].T.astype(np.float32)
            out.audios.append(values.reshape(audio_channels, -1))
    return out

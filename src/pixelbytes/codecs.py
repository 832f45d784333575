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

Limits (each a tokenizer setting, a clear ``ValueError`` beyond it, so one input cannot cost gigabytes):
``max_pixels`` (frames × height × width of an image, also of an image block being decoded),
``max_samples`` (audio time steps per channel after resampling) and ``max_resample_ratio`` (how far a clip's
rate may be from the target rate, either way). Non-finite values (NaN pixels of a float image, audio whose
range overflows during normalisation) are errors too, never silently a black pixel or the lowest level.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import struct
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
    "DEFAULT_MAX_AUDIO_SAMPLES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_RESAMPLE_RATIO",
    "DecodedStream",
    "decode_stream",
    "encode_audio",
    "encode_image",
    "encode_text",
    "id_dtype",
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
#: default cap on frames × height × width of one image (encoding) or one decoded image block: 2,097,152 pixels,
#: e.g. a 1448 × 1448 still or 64 frames of 181 × 181 (~0.2 GB of peak memory, see benchmarks/bench_limits.py)
DEFAULT_MAX_IMAGE_PIXELS = 1 << 21
#: default cap on the time steps per channel of one clip after resampling: 1,048,576 (65.5 s at 16 kHz)
DEFAULT_MAX_AUDIO_SAMPLES = 1 << 20
#: default limit on max(clip rate / target rate, target rate / clip rate): 2 kHz … 128 kHz for a 16 kHz tokenizer
DEFAULT_MAX_RESAMPLE_RATIO = 8.0

# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------
_WHITESPACE = re.compile(r"[^\S ]")  # every whitespace character but the space itself (\s → space)
# typographic punctuation that has an exact ASCII counterpart in the vocabulary (the original dropped it)
_TYPOGRAPHIC_CHARS = {**dict.fromkeys("‘’‚‛′", "'"), **dict.fromkeys("“”„‟″", '"'), **dict.fromkeys("‐‑‒–—−", "-")}
_TYPOGRAPHIC = str.maketrans(_TYPOGRAPHIC_CHARS)
_HAS_TYPOGRAPHIC = re.compile("[" + re.escape("".join(_TYPOGRAPHIC_CHARS)) + "]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def normalize_text(text: str) -> str:
    """Lower-case, NFKD, typographic quotes / dashes → ASCII, whitespace → space (before ASCII folding)."""
    norm = unicodedata.normalize("NFKD", text.lower())
    if _HAS_TYPOGRAPHIC.search(norm):  # str.translate costs ~0.1 µs per character on non-ASCII text
        norm = norm.translate(_TYPOGRAPHIC)
    return _WHITESPACE.sub(" ", norm)


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
    dropped = sum(1 for ch in _NON_ASCII.findall(norm) if not unicodedata.combining(ch))
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

    A dense table (16 MiB for ≤ 254 colours) indexed by the packed colour ``R | G << 8 | B << 16`` (the
    little-endian ``uint32`` of an RGBA/RGBX pixel without its last byte, see :func:`_pack_rgb`) starts as
    "unknown"; each image computes the CIE-Lab nearest colour only for the colours it is the first to use.
    No start-up table build.
    """

    def __init__(self, palette: np.ndarray) -> None:
        self.palette_lab = rgb_to_lab(palette)  # (P, 3)
        self.dtype = np.uint8 if len(palette) < 255 else np.uint16
        self.unknown = np.iinfo(self.dtype).max
        self.table: np.ndarray | None = None

    def lookup(self, packed: np.ndarray) -> np.ndarray:
        """Palette index of every packed colour (any shape, integer values < 2**24)."""
        if self.table is None:
            self.table = np.full(1 << 24, self.unknown, dtype=self.dtype)
        idx = np.take(self.table, packed)  # np.take: ~3x faster than fancy indexing here
        missing = idx == self.unknown
        if missing.any():
            new = np.unique(packed[missing])
            self.table[new] = nearest_palette_index(_unpack_rgb(new), self.palette_lab)
            idx = np.take(self.table, packed)
        return idx


#: keys of the separator column in :func:`_image_keys`, just above the 24-bit colours
_ROW_KEY, _SEP_KEY = 1 << 24, (1 << 24) + 1
_ID_TABLES: dict[tuple, np.ndarray] = {}


def _image_ids(keys: np.ndarray, vocab: PxByVocabulary) -> np.ndarray:
    """Token ids of :func:`_image_keys` keys in one gather, in :func:`id_dtype` (colour keys → ``color_offset`` +
    nearest palette index, the two separator keys → ROW / SEP).

    The table (16 MiB per vocabulary, kept for the process) is indexed by key; 0, which is never a colour id,
    marks colours not seen yet: only those are computed (CIE-Lab nearest colour), once per process.
    """
    key = (vocab.palette, vocab.color_offset)
    table = _ID_TABLES.get(key)
    if table is None:
        table = _ID_TABLES[key] = np.zeros(_SEP_KEY + 1, dtype=id_dtype(vocab))
        table[_ROW_KEY], table[_SEP_KEY] = ROW_ID, SEP_ID
    ids = np.take(table, keys)
    if not ids.all():
        new = np.unique(keys[ids == 0])
        lab = _color_cache(vocab).palette_lab
        table[new] = nearest_palette_index(_unpack_rgb(new), lab) + vocab.color_offset
        ids = np.take(table, keys)
    return ids


def _unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack_rgb`: ``(N,)`` packed colours → ``(N, 3)`` RGB (int64)."""
    packed = packed.astype(np.int64)
    return np.stack((packed & 255, (packed >> 8) & 255, (packed >> 16) & 255), axis=-1)


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB → ``(...)`` uint32 ``R | G << 8 | B << 16`` (the colour table's key)."""
    packed = rgb[..., 0].astype(np.uint32)
    packed |= rgb[..., 1].astype(np.uint32) << 8
    packed |= rgb[..., 2].astype(np.uint32) << 16
    return packed


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


def _color_cache(vocab: PxByVocabulary) -> _ColorCache:
    cache = _COLOR_CACHES.get(vocab.palette)
    if cache is None:
        cache = _COLOR_CACHES[vocab.palette] = _ColorCache(vocab.palette_array)
    return cache


def quantize_colors(rgb: np.ndarray, vocab: PxByVocabulary) -> np.ndarray:
    """Palette index (0-based) of the nearest palette colour for every pixel of a ``(..., 3)`` uint8 array."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"expected uint8 RGB pixels of shape (..., 3), got {rgb.dtype} {rgb.shape}")
    return _color_cache(vocab).lookup(_pack_rgb(rgb))


def _background_rgb(background: Sequence[int] | None) -> tuple[int, int, int] | None:
    if background is None:
        return None
    bg = tuple(int(v) for v in background)
    if len(bg) != 3 or any(not 0 <= v < 256 for v in bg):
        raise ValueError(f"image_background must be None or 3 values in [0, 255], got {background!r}")
    return bg  # type: ignore[return-value]


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _sixteen_bit_grey(frame: Image.Image) -> np.ndarray:
    """A 16-bit / 32-bit greyscale PIL frame → ``(H, W, 3)`` uint8 RGB (16-bit scaled to 8 bits, not clipped)."""
    values = np.asarray(frame, dtype=np.float64)
    if frame.mode == "F" and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"image has {bad} NaN or infinite pixel value(s) (a float 'F' mode image); fix or drop them")
    if frame.mode.startswith("I;16") or (values.size and values.max() > 255):
        values = values / 257.0
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_RGB24 = np.uint32(0xFFFFFF)
_OPAQUE = np.uint32(0xFF000000)


def _frame_source(frame: Image.Image, bg: tuple[int, int, int] | None) -> tuple[Image.Image, bool]:
    """One PIL frame as an ``RGB`` or ``RGBA`` PIL image (4 bytes per pixel in PIL's storage, RGB first) and
    whether its alpha must be composited on ``bg`` (done later, on all kept pixels at once, by :func:`_rgb24`).

    Without compositing, the RGB bytes are those of ``frame.convert("RGB")`` (an ``RGB`` / ``RGBA`` frame is used
    as it is: ``convert("RGB")`` would only copy them); with it, those of ``frame.convert("RGBA")``.
    """
    mode = frame.mode
    if mode in _SIXTEEN_BIT_MODES:
        return Image.fromarray(_sixteen_bit_grey(frame)), False
    if bg is not None and (mode in _ALPHA_MODES or "transparency" in frame.info):
        return (frame if mode == "RGBA" else frame.convert("RGBA")), True
    return (frame if mode in ("RGB", "RGBA") else frame.convert("RGB")), False


def _decode_frames(
    image: Image.Image, bg: tuple[int, int, int] | None, frame_stride: int, max_pixels: int | None
) -> tuple[np.ndarray, bool]:
    """Decode every ``frame_stride``-th frame of a PIL image into ``(F, H, W)`` little-endian ``uint32`` pixels.

    The low 24 bits are ``R | G << 8 | B << 16``. When the returned flag is True (``bg`` set and some frame has
    alpha), the top byte is the alpha to composite (255 for frames without alpha); otherwise it is meaningless.
    Each frame is copied once by PIL into one tall ``RGBA`` strip (no per-frame array), read back in one call.
    """
    width, height = image.size
    n_frames = int(getattr(image, "n_frames", 1))
    if width == 0 or height == 0:
        raise ValueError(f"image has zero size ({width}x{height})")
    _check_pixels(n_frames, height, width, max_pixels)
    kept = range(0, n_frames, frame_stride)
    strip = Image.new("RGBA", (width, height * len(kept)))
    core = strip.im
    alpha = np.zeros(len(kept), dtype=bool)
    position = image.tell() if n_frames > 1 else 0
    try:
        for k, i in enumerate(kept):
            if n_frames > 1:
                image.seek(i)
            image.load()
            source, alpha[k] = _frame_source(image, bg)
            if source.size != (width, height):
                raise ValueError(f"frame {i} has size {source.size[::-1]}, frame 0 has {(height, width)}")
            core.paste(source.im, (0, k * height, width, (k + 1) * height))
    except (OSError, EOFError) as err:
        raise ValueError(f"corrupted or truncated image: {err}") from err
    finally:
        if n_frames > 1:
            image.seek(position)
    pixels = np.frombuffer(strip.tobytes(), dtype="<u4").reshape(len(kept), height, width)
    if not alpha.any():
        return pixels, False
    if not alpha.all():
        pixels = pixels.copy()
        pixels[~alpha] |= _OPAQUE
    return pixels, True


def _rgb24(
    pixels: np.ndarray,
    has_alpha: bool,
    bg: tuple[int, int, int] | None,
    stride: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Kept pixels ``[:, ::stride, ::stride]`` of :func:`_decode_frames`'s output as ``(F, H', W')`` uint32
    packed RGB (top byte 0), alpha composited on ``bg``: ``(c * a + bg * (255 - a) + 127) // 255`` per
    channel. Written into ``out`` (any uint32 view of that shape) when given, else into a new array."""
    kept = pixels[:, ::stride, ::stride] if stride > 1 else pixels
    rgb = np.bitwise_and(kept, _RGB24, out=out)
    if has_alpha and bg is not None:
        a = kept >> 24
        rgb[a == 0] = bg[0] | bg[1] << 8 | bg[2] << 16  # (bg * 255 + 127) // 255 == bg
        partial = (a != 0) & (a != 255)  # a == 255 leaves the colour unchanged
        if partial.any():
            px, pa = kept[partial], a[partial]
            mixed = np.zeros(len(px), dtype=np.uint32)
            for channel, value in enumerate(bg):
                c = (px >> (8 * channel)) & 255
                mixed |= ((c * pa + value * (255 - pa) + 127) // 255) << (8 * channel)
            rgb[partial] = mixed
    return rgb


def _open_path(image: str | os.PathLike, fn: Any, *args: Any) -> Any:
    try:
        with Image.open(image) as opened:
            return fn(opened, *args)
    except (Image.DecompressionBombError, Image.UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {os.fspath(image)!r}: {err}") from err


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
        return _open_path(image, image_to_frames, background, frame_stride, max_pixels)
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, a path or a uint8 array, got {type(image).__name__}")
    rgb = _rgb24(*_decode_frames(image, bg, frame_stride, max_pixels), bg)
    return np.ascontiguousarray(rgb.view(np.uint8).reshape(*rgb.shape, 4)[..., :3])


def _image_keys(
    image: Any, bg: tuple[int, int, int] | None, frame_stride: int, image_stride: int, max_pixels: int | None
) -> np.ndarray:
    """The id grid of an image before the colour lookup: ``(F, H, W + 1)`` uint32 keys, the packed RGB of the kept
    pixels (every ``frame_stride``-th frame, every ``image_stride``-th row and column: the colours of
    ``image_to_frames(...)[:, ::s, ::s]``) then a separator column (``_ROW_KEY``, ``_SEP_KEY`` on the last row)."""
    if isinstance(image, (str, os.PathLike)):
        return _open_path(image, _image_keys, bg, frame_stride, image_stride, max_pixels)
    if isinstance(image, np.ndarray):
        frames = _array_to_frames(image, bg, frame_stride, max_pixels)[:, ::image_stride, ::image_stride]
        pixels, has_alpha, shape = None, False, frames.shape[:3]
    elif isinstance(image, Image.Image):
        pixels, has_alpha = _decode_frames(image, bg, frame_stride, max_pixels)
        shape = pixels[:, ::image_stride, ::image_stride].shape
    else:
        raise TypeError(f"image must be a PIL image, a path or a uint8 array, got {type(image).__name__}")
    F, H, W = shape
    keys = np.empty((F, H, W + 1), dtype=np.uint32)
    if pixels is None:
        keys[:, :, :W] = _pack_rgb(frames)
    else:
        _rgb24(pixels, has_alpha, bg, image_stride, out=keys[:, :, :W])
    keys[:, :, W] = _ROW_KEY
    keys[:, -1, W] = _SEP_KEY
    return keys


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


def id_dtype(vocab: PxByVocabulary) -> np.dtype:
    """The narrowest unsigned dtype holding every id of ``vocab`` (uint8 for the published vocabulary)."""
    if vocab.vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if vocab.vocab_size <= 1 << 16 else np.dtype(np.int64)


def encode_image(
    image: Any,
    vocab: PxByVocabulary,
    image_stride: int = 1,
    frame_stride: int = 1,
    background: Sequence[int] | None = (255, 255, 255),
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    dtype: Any = np.int64,
) -> np.ndarray:
    """Image → ``(F', H', W' + 1)`` id grid: nearest palette colour per pixel, then one extra column per row
    (1 = row separator, 2 on each frame's last row). ``dtype`` must hold every id (see :func:`id_dtype`)."""
    if image_stride < 1:
        raise ValueError(f"image_stride must be >= 1, got {image_stride}")
    bg = _background_rgb(background)
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    grid = _image_ids(_image_keys(image, bg, frame_stride, image_stride, max_pixels), vocab)
    return grid.astype(dtype, copy=False)


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
    orig_rate = check_sampling_rate(orig_rate, "orig_rate")
    target_rate = check_sampling_rate(target_rate, "target_rate")
    x = np.asarray(audio)
    if orig_rate == target_rate or x.shape[-1] == 0:
        return x.astype(np.float64, copy=False)
    n = x.shape[-1]
    m = resampled_length(n, orig_rate, target_rate)
    shared = min(m, n)
    rows = x.reshape(-1, n)
    result = np.empty((len(rows), m), dtype=np.float64)
    for i, row in enumerate(rows):  # one channel at a time: the spectra of a long clip are its largest temporaries
        spectrum = np.fft.rfft(row.astype(np.float64, copy=False))
        out = np.zeros(m // 2 + 1, dtype=complex)
        out[: shared // 2 + 1] = spectrum[: shared // 2 + 1]
        del spectrum
        if shared % 2 == 0:  # a Nyquist bin is shared by the two lengths: split or join its two halves
            out[shared // 2] *= 2.0 if m < n else 0.5
        result[i] = np.fft.irfft(out, n=m)
        result[i] *= m / n
    return result.reshape(*x.shape[:-1], m)


def resampled_length(n: int, orig_rate: float, target_rate: float) -> int:
    """Length of an ``n``-sample clip resampled from ``orig_rate`` to ``target_rate`` (at least 1; 0 stays 0)."""
    if n == 0 or orig_rate == target_rate:
        return n
    return max(1, round(n * target_rate / orig_rate))


def check_sampling_rate(value: Any, name: str = "sampling_rate") -> float:
    """A sampling rate as a positive finite number (an ``int`` stays an ``int``); a clear error otherwise.

    Strings are refused (``"8000"`` is a ``TypeError`` naming ``name``), as are booleans, NaN, infinities, zero and
    negative rates (``ValueError``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number of samples per second (int), got {type(value).__name__} {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number of samples per second, got {value!r}")
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


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
    Constant input maps to 0, never NaN (empty clips are refused by :func:`validate_audio`). Finite values so large
    that the normalisation would overflow the clip's float type (an infinite range, mean or variance) are first
    divided by the clip's peak (both normalisations are scale-invariant), so they never collapse to the lowest
    level; input that still cannot be normalised is a ``ValueError``.
    """
    if mode not in AUDIO_NORMALIZATIONS:
        raise ValueError(f"unknown audio_normalization {mode!r}; expected one of {AUDIO_NORMALIZATIONS}")
    if x.shape[-1] == 0:
        return x
    if mode == "minmax":
        lo, hi = x.min(), x.max()
        if hi > lo:
            with np.errstate(over="ignore"):
                overflow = not np.isfinite((hi - lo) * 2)
            if overflow:
                return _normalize_scaled(x, mode)
            return 2.0 * (x - lo) / (hi - lo) - 1.0
        return np.zeros_like(x)
    if mode == "zscore":
        with np.errstate(over="ignore", invalid="ignore"):
            mean = x.mean(axis=-1, keepdims=True)
            std = x.std(axis=-1, keepdims=True)
            overflow = not (np.isfinite(mean).all() and np.isfinite(std).all())
        if overflow:
            return _normalize_scaled(x, mode)
        safe = np.where(std > 0, std, 1.0)
        return np.clip(np.where(std > 0, (x - mean) / safe, 0.0), -1.0, 1.0)
    return np.clip(x, -1.0, 1.0)


def _normalize_scaled(x: np.ndarray, mode: str) -> np.ndarray:
    """:func:`normalize_audio` of ``x / peak`` in float64 (same result up to rounding), for clips whose own range,
    mean or variance overflows their float type; a ``ValueError`` naming the problem if even that fails."""
    peak = float(np.abs(x).max())
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = normalize_audio(x.astype(np.float64) / peak, mode) if 0.0 < peak < np.inf else None
    if out is None or not np.isfinite(out).all():
        raise ValueError(
            f"audio values {float(x.min()):.3g}..{float(x.max()):.3g} overflow {x.dtype} during {mode!r} "
            "normalisation; scale the clip down (e.g. divide it by its peak) before tokenising"
        )
    return out.astype(x.dtype, copy=False)


_LEVEL_THRESHOLDS: dict[bytes, tuple[np.ndarray, bool]] = {}


def _float_key(x: float) -> int:
    """Integer key with the order of the float64 values (adjacent floats have adjacent keys)."""
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else -(bits & 0x7FFFFFFFFFFFFFFF)


def _key_float(key: int) -> float:
    bits = key if key >= 0 else (-key) | -0x8000000000000000
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def _tie_threshold(lo: float, hi: float) -> float:
    """The largest float64 ``x`` with ``abs(x - lo) <= abs(x - hi)`` (float64 arithmetic), for ``lo < hi``.

    On ``[lo, hi]`` the rounded ``x - lo`` never decreases and ``abs(x - hi)`` never increases as ``x`` grows, so
    the comparison holds up to this value and fails above it: ``argmin`` picks ``lo`` (ties included) exactly
    for ``x <= threshold``. Found by bisection over the ordered float64 values between ``lo`` and ``hi``.
    """
    good, bad = _float_key(lo), _float_key(hi)  # the comparison holds at lo and fails at hi
    while bad - good > 1:
        mid = (good + bad) // 2
        x = _key_float(mid)
        if abs(x - lo) <= abs(x - hi):
            good = mid
        else:
            bad = mid
    return _key_float(good)


def _level_thresholds(levels: np.ndarray) -> tuple[np.ndarray, bool]:
    """Exact tie thresholds between consecutive sorted levels (float64) and whether the levels are evenly spaced."""
    key = levels.tobytes()
    cached = _LEVEL_THRESHOLDS.get(key)
    if cached is None:
        values = levels.tolist()
        thresholds = np.array([_tie_threshold(a, b) for a, b in itertools.pairwise(values)], dtype=np.float64)
        gaps = np.diff(levels)
        even = bool(np.allclose(gaps, gaps[0], rtol=1e-9, atol=0.0))
        cached = _LEVEL_THRESHOLDS[key] = (thresholds, even)
    return cached


def quantize_levels(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest level for every value: exactly ``np.abs(x[..., None] - levels).argmin(-1)`` computed in
    float64 (ties go to the lower index), without the ``(..., n_levels)`` temporary.

    For increasing levels, the index is the number of exact tie thresholds (:func:`_tie_threshold`) below ``x``.
    Evenly spaced levels (``linspace``, the vocabulary's) get a candidate bracket ``j`` arithmetically, then
    ``j + (x > threshold[j])``; a candidate off by one near a level is corrected by that same comparison.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    levels = np.asarray(levels, dtype=np.float64).reshape(-1)
    if len(levels) > 1 and np.all(np.diff(levels) > 0) and np.isfinite(levels).all() and np.isfinite(x).all():
        thresholds, even = _level_thresholds(levels)
        if not even:
            return np.searchsorted(thresholds, x, side="left")
        # the candidate only has to be within one of the bracket: float32 input stays float32 for short tables
        u = (x if len(levels) <= 4096 else x.astype(np.float64)) - float(levels[0])
        u *= float(1.0 / (levels[1] - levels[0]))
        np.clip(u, 0, len(levels) - 2, out=u)
        j = u.astype(np.intp)
        j += x > np.take(thresholds, j)  # compared in float64: exact
        return j
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
    dtype: Any = np.int64,
    max_samples: int | None = DEFAULT_MAX_AUDIO_SAMPLES,
    max_resample_ratio: float | None = DEFAULT_MAX_RESAMPLE_RATIO,
) -> np.ndarray:
    """Audio / action clip → ``(T' + 1, 1, C)`` id grid: one frame per (strided) time step, then a
    terminator frame ``[1, 2, 2, ...][:C]`` (``[1]`` for mono, ``[1, 2]`` for stereo). ``dtype`` must hold
    every id (see :func:`id_dtype`).

    A clip at ``sampling_rate`` (a positive number; ``None`` = already at ``target_rate``) is resampled to
    ``target_rate`` first. Refused with a ``ValueError`` before any work: a rate more than ``max_resample_ratio``
    times above or below ``target_rate``, and a clip of more than ``max_samples`` time steps per channel after
    resampling (``None`` = no limit)."""
    if stride < 1:
        raise ValueError(f"audio_stride must be >= 1, got {stride}")
    x = validate_audio(audio, channels)
    n = x.shape[-1]
    if sampling_rate is not None and target_rate is not None:
        sampling_rate = check_sampling_rate(sampling_rate)
        target_rate = check_sampling_rate(target_rate, "the tokenizer's sampling_rate")
        ratio = max(sampling_rate / target_rate, target_rate / sampling_rate)
        if max_resample_ratio is not None and ratio > max_resample_ratio:
            raise ValueError(
                f"audio at sampling_rate={sampling_rate} is {ratio:.6g} times "
                f"{'above' if sampling_rate > target_rate else 'below'} the tokenizer's rate {target_rate}, more than "
                f"max_resample_ratio={max_resample_ratio:g}; resample it yourself or raise the tokenizer's "
                "max_resample_ratio"
            )
        n = resampled_length(n, sampling_rate, target_rate)
    if max_samples is not None and n > max_samples:
        at = f" after resampling to {target_rate} Hz" if n != x.shape[-1] else ""
        raise ValueError(
            f"audio clip too long: {n} time steps per channel{at} exceeds max_audio_samples={max_samples} "
            "(cut the clip, or raise the tokenizer's max_audio_samples to allow it)"
        )
    if n != x.shape[-1]:
        x = resample_audio(x, sampling_rate, target_rate)
    q = quantize_levels(normalize_audio(x, normalization)[:, ::stride], vocab.levels_array)
    T = q.shape[1]
    grid = np.empty((T + 1, 1, channels), dtype=dtype)
    levels = grid[:T, 0, :]
    levels[...] = q.T
    levels += vocab.level_offset
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


def decode_stream(
    ids: Any, vocab: PxByVocabulary, audio_channels: int = 2, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> DecodedStream:
    """Exact inverse of the encoders on their output; tolerant of any malformed stream.

    Image frames take the size of the largest row / frame of their block; cells that hold no colour
    (ragged generated rows) are black, like the original ``construct_images``. Audio keeps complete
    frames made of levels only.

    A malformed stream can describe a frame far larger than its tokens (a tall column of one-pixel rows, then
    one long row, spans height × width cells): an image block whose frames × height × width exceeds
    ``max_pixels`` is a ``ValueError`` before its canvas is allocated (``None`` = no limit). ``ids`` must be
    integers (floats are refused, never truncated).
    """
    raw = np.asarray(ids)
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got dtype {raw.dtype}")
    ids = raw.astype(np.int64, copy=False).reshape(-1)
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
            if max_pixels is not None and F * H * W > max_pixels:
                raise ValueError(
                    f"cannot decode the image block at tokens {s}..{e}: its {F} frame(s) x {H} x {W} = {F * H * W} "
                    f"pixels exceed max_image_pixels={max_pixels} (from {int(colour.sum())} colour tokens: the "
                    "stream's rows are probably ragged); raise the tokenizer's max_image_pixels to decode it anyway"
                )
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

"""General-purpose codecs on the same tokens the model scores: is the model better than a compressor?

For every item, each modality's blocks are taken from the token stream (:func:`~.scoring.modality_of_tokens`)
and compressed on their own, item by item (a model's state also starts fresh for every item):

- ``xz``: ``lzma`` preset 9 (``xz -9``, container included) of the modality's token ids, one byte
  each (two above 256 ids);
- ``gif``: the quantised sprite (palette indices of every frame, at the tokenised resolution) as an animated
  palette GIF (Pillow, 55-colour palette);
- ``png``: the first frame alone as an optimised palette PNG (bits per pixel of that frame);
- ``flac``: the quantised audio (level indices, every channel) as 16-bit FLAC (soundfile / libsndfile).

All are reported in bits per unit of the modality (pixel, sample, character), the units of
:class:`~.scoring.StreamScores`: bits per pixel over all frames for xz / GIF, of the first frame for PNG.
"""

from __future__ import annotations

import io
import lzma
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..layout import AUDIO, IMAGE, TEXT, _image_positions, stream_blocks
from ..vocabulary import COLOUR, LEVEL, PxByVocabulary
from .scoring import MODALITY_UNITS

__all__ = ["CodecTotals", "audio_levels", "codec_baselines", "sprite_frames", "xz_bits"]


def xz_bits(data: bytes) -> int:
    """Size in bits of ``data`` compressed by ``xz -9`` (the .xz container included)."""
    return 8 * len(lzma.compress(data, preset=9))


def sprite_frames(ids: np.ndarray, token_classes: np.ndarray, color_offset: int) -> np.ndarray:
    """``(T, H, W)`` palette indices of one image block's frames (cells without a colour token stay 0)."""
    classes = token_classes[ids]
    t, r, c, _ = _image_positions(classes)
    colour = classes == COLOUR
    if not colour.any():
        return np.zeros((0, 0, 0), dtype=np.uint8)
    frames = np.zeros((int(t[colour].max()) + 1, int(r[colour].max()) + 1, int(c[colour].max()) + 1), np.uint8)
    frames[t[colour], r[colour], c[colour]] = ids[colour] - color_offset
    return frames


def audio_levels(ids: np.ndarray, token_classes: np.ndarray, level_offset: int, channels: int) -> np.ndarray:
    """``(T, channels)`` level indices of one audio block (its complete frames of levels)."""
    levels = ids[token_classes[ids] == LEVEL] - level_offset
    T = len(levels) // channels
    return levels[: T * channels].reshape(T, channels).astype(np.int16)


def _palette_image(frame: np.ndarray, palette: bytes) -> Image.Image:
    image = Image.fromarray(frame, mode="P")
    image.putpalette(palette)
    return image


def gif_bits(frames: np.ndarray, palette: bytes) -> int:
    """Size in bits of ``frames (T, H, W)`` saved as one looping palette GIF."""
    images = [_palette_image(f, palette) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0, duration=100)
    return 8 * buffer.getbuffer().nbytes


def png_bits(frame: np.ndarray, palette: bytes) -> int:
    """Size in bits of one frame ``(H, W)`` saved as an optimised palette PNG."""
    buffer = io.BytesIO()
    _palette_image(frame, palette).save(buffer, format="PNG", optimize=True)
    return 8 * buffer.getbuffer().nbytes


def flac_bits(levels: np.ndarray, sampling_rate: int) -> int:
    """Size in bits of ``levels (T, C)`` saved as 16-bit FLAC."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, levels, sampling_rate, format="FLAC", subtype="PCM_16")
    return 8 * buffer.getbuffer().nbytes


@dataclass
class CodecTotals:
    """Compressed bits and units per ``(codec, modality)``; :meth:`metrics` gives bits per unit."""

    bits: dict[tuple[str, str], int] = field(default_factory=dict)
    units: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, codec: str, modality: str, bits: int, units: int) -> None:
        key = (codec, modality)
        self.bits[key] = self.bits.get(key, 0) + bits
        self.units[key] = self.units.get(key, 0) + units

    def metrics(self) -> dict[str, dict[str, float]]:
        """``{codec: {"{modality}_bits_per_{unit}": value}}`` for every codec that saw its modality."""
        out: dict[str, dict[str, float]] = {}
        for (codec, modality), bits in sorted(self.bits.items()):
            if self.units[(codec, modality)]:
                unit = MODALITY_UNITS[modality][2]
                out.setdefault(codec, {})[f"{modality}_bits_per_{unit}"] = bits / self.units[(codec, modality)]
        return out


def codec_baselines(
    streams: Sequence[np.ndarray],
    vocabulary: PxByVocabulary,
    audio_channels: int,
    sampling_rate: int,
    codecs: Sequence[str] = ("xz", "gif", "png", "flac"),
) -> CodecTotals:
    """Compress every item's modalities with ``codecs`` (see the module docstring); returns the totals."""
    unknown = set(codecs) - {"xz", "gif", "png", "flac"}
    if unknown:
        raise ValueError(f"unknown codec(s) {sorted(unknown)}: choose among xz, gif, png, flac")
    classes = vocabulary.token_classes
    palette = bytes(np.asarray(vocabulary.palette, dtype=np.uint8).reshape(-1))
    dtype = np.uint8 if vocabulary.vocab_size <= 256 else np.uint16  # one byte per id when ids fit
    totals = CodecTotals()
    for stream in streams:
        ids = np.asarray(stream, dtype=np.int64).reshape(-1)
        per_kind: dict[int, list[np.ndarray]] = {TEXT: [], IMAGE: [], AUDIO: []}
        for start, end, kind, _closed in stream_blocks(classes[ids], audio_channels):
            per_kind[kind].append(ids[start:end])
        for name, (kind, unit_class, _unit) in MODALITY_UNITS.items():
            blocks = per_kind[kind]
            if not blocks:
                continue
            units = sum(int((classes[b] == unit_class).sum()) for b in blocks)
            if "xz" in codecs:
                totals.add("xz", name, xz_bits(np.concatenate(blocks).astype(dtype).tobytes()), units)
            if kind == IMAGE:
                for block in blocks:
                    frames = sprite_frames(block, classes, vocabulary.color_offset)
                    if frames.size == 0:
                        continue
                    if "gif" in codecs:
                        totals.add("gif", name, gif_bits(frames, palette), frames.size)
                    if "png" in codecs:
                        totals.add("png", name, png_bits(frames[0], palette), frames[0].size)
            elif kind == AUDIO and "flac" in codecs:
                for block in blocks:
                    levels = audio_levels(block, classes, vocabulary.level_offset, audio_channels)
                    if len(levels):
                        totals.add("flac", name, flac_bits(levels, sampling_rate), levels.size)
    return totals

"""The embedded demo dataset: captions → 16×16 NES sprites (+ a short stereo sound), generated in code.

Deterministic and license-clean (every bitmap below is hand-made for this package). A sample is described
by a :class:`SpriteSpec` of five attributes:

* ``shape``: one of :data:`SHAPES` (8 hand-drawn binary masks, 12 px wide when ``big``, 8 px when ``small``:
  heart, square, ring, diamond (an outline), plus, cross, triangle and arrow; any two masks of a size have
  IoU ≤ 0.625);
* ``colour``: one of :data:`COLOURS` (8 named colours, each EXACTLY a colour of the NES palette
  :data:`~pixelbytes.vocabulary.DEFAULT_PALETTE`, so tokenisation is lossless);
* ``background``: ``"black"`` (0, 0, 0) or ``"white"`` (252, 252, 252), also palette colours;
* ``size``: ``"small"`` or ``"big"``;
* ``animation``: ``"static"`` (1 frame), ``"blinking"`` (2 frames: the sprite, then only background),
  ``"moving"`` (4 frames, horizontal offsets 0, +2, 0, -2 px) or ``"spinning"`` (4 frames, rotated by
  90° clockwise per frame).

Its caption reads ``"a small red heart blinking on black"`` (static sprites have no animation word:
``"a big blue ring on white"``). Its sound (:meth:`SpriteSpec.sound`) is 64 ms of stereo audio whose
pitch is set by the colour, waveform by the shape, envelope by the animation and loudness by the size;
channel 1 is a Game Boy style band-pass (2nd-order biquad, 100–3000 Hz) of channel 0.

The demo split (:func:`make_demo_split`) holds out whole colour × shape PAIRS: no training sample has a
held-out pair, while every shape, colour, size, background and animation appears in training (asserted),
so held-out captions measure composition of known attributes. With the defaults: 56 training pairs and
8 held-out pairs (each shape and each colour held out exactly once), 4 samples per pair (one per
animation, sizes × backgrounds balanced): 224 training and 32 held-out samples.

Tokenise with ``ActionPixelBytesTokenizer(**DEMO_TOKENIZER_KWARGS)``: ``audio_stride=32`` keeps
32 time steps of the 1024-sample clip (66 audio tokens with the terminator) and
``audio_normalization="none"`` keeps the clip's own amplitude (it is already in [-1, 1]; the default
``"minmax"`` would stretch every clip to full scale and erase the size → loudness cue). A sample is then
≈ 41 text + 272 per frame + 66 audio tokens: 1, 2 or 4 frames give about 370, 650 and 1190 tokens.

Determinism: no random generator is involved (splits use SHA-256 ranks of the attribute names), the
bitmaps are literals and the sound uses only IEEE arithmetic (no ``sin``; the biquad coefficients come
from ``math.cos``/``math.sin`` rounded to 12 decimals) — the same output on every run and machine.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..vocabulary import DEFAULT_PALETTE

__all__ = [
    "ANIMATIONS",
    "ANIMATION_FRAMES",
    "BACKGROUNDS",
    "COLOURS",
    "DEMO_TOKENIZER_KWARGS",
    "SAMPLING_RATE",
    "SHAPES",
    "SIZES",
    "SOUND_SECONDS",
    "SPRITE_SIZE",
    "SpriteSpec",
    "all_specs",
    "band_pass",
    "demo_samples",
    "heldout_pairs",
    "make_demo_split",
    "parse_caption",
    "shape_mask",
]

#: Side of every frame, in pixels.
SPRITE_SIZE = 16
#: Default sampling rate of the sounds (the tokenizer's default rate).
SAMPLING_RATE = 16000
#: Duration of every sound: 1024 samples at 16 kHz.
SOUND_SECONDS = 0.064
#: Recommended tokenizer settings for the demo data: ``ActionPixelBytesTokenizer(**DEMO_TOKENIZER_KWARGS)``.
DEMO_TOKENIZER_KWARGS: dict[str, Any] = {"audio_stride": 32, "audio_normalization": "none"}

#: Named foreground colours, each exactly an NES palette colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (248, 56, 0),
    "orange": (252, 160, 68),
    "yellow": (248, 184, 0),
    "green": (0, 168, 0),
    "cyan": (0, 252, 252),
    "blue": (0, 88, 248),
    "purple": (148, 0, 132),
    "pink": (248, 120, 248),
}
#: Background colours (palette colours too).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "white": (252, 252, 252)}
SIZES: tuple[str, ...] = ("small", "big")
#: Animation → number of frames.
ANIMATION_FRAMES: dict[str, int] = {"static": 1, "blinking": 2, "moving": 4, "spinning": 4}
ANIMATIONS: tuple[str, ...] = tuple(ANIMATION_FRAMES)
_MOVING_OFFSETS = (0, 2, 0, -2)
_SIZE_PIXELS = {"small": 8, "big": 12}

# Hand-drawn masks: "#" = shape. Big = 12×12, small = 8×8; both are centred in the 16×16 frame.
_BITMAPS: dict[str, dict[str, str]] = {
    "heart": {
        "big": """
            ............
            .###....###.
            #####..#####
            ############
            ############
            ############
            .##########.
            ..########..
            ...######...
            ....####....
            .....##.....
            ............""",
        "small": """
            .##..##.
            ########
            ########
            ########
            .######.
            ..####..
            ...##...
            ........""",
    },
    "square": {
        "big": "\n".join(["#" * 12] * 12),
        "small": "\n".join(["#" * 8] * 8),
    },
    "ring": {
        "big": """
            ....####....
            ..########..
            .###....###.
            .##......##.
            ##........##
            ##........##
            ##........##
            ##........##
            .##......##.
            .###....###.
            ..########..
            ....####....""",
        "small": """
            ..####..
            .######.
            ##....##
            ##....##
            ##....##
            ##....##
            .######.
            ..####..""",
    },
    "diamond": {
        "big": """
            .....##.....
            ....####....
            ...##..##...
            ..##....##..
            .##......##.
            ##........##
            ##........##
            .##......##.
            ..##....##..
            ...##..##...
            ....####....
            .....##.....""",
        "small": """
            ...##...
            ..####..
            .##..##.
            ##....##
            ##....##
            .##..##.
            ..####..
            ...##...""",
    },
    "plus": {
        "big": """
            ....####....
            ....####....
            ....####....
            ....####....
            ############
            ############
            ############
            ############
            ....####....
            ....####....
            ....####....
            ....####....""",
        "small": """
            ...##...
            ...##...
            ...##...
            ########
            ########
            ...##...
            ...##...
            ...##...""",
    },
    "cross": {
        "big": """
            ##........##
            ###......###
            .###....###.
            ..###..###..
            ...######...
            ....####....
            ....####....
            ...######...
            ..###..###..
            .###....###.
            ###......###
            ##........##""",
        "small": """
            ##....##
            ###..###
            .######.
            ..####..
            ..####..
            .######.
            ###..###
            ##....##""",
    },
    "triangle": {
        "big": """
            .....##.....
            .....##.....
            ....####....
            ....####....
            ...######...
            ...######...
            ..########..
            ..########..
            .##########.
            .##########.
            ############
            ############""",
        "small": """
            ...##...
            ...##...
            ..####..
            ..####..
            .######.
            .######.
            ########
            ########""",
    },
    "arrow": {
        "big": """
            .......#....
            .......##...
            .......###..
            .......####.
            ############
            ############
            ############
            ############
            .......####.
            .......###..
            .......##...
            .......#....""",
        "small": """
            ....#...
            ....##..
            ########
            ########
            ########
            ########
            ....##..
            ....#...""",
    },
}
SHAPES: tuple[str, ...] = tuple(_BITMAPS)

# Sound design: colour → pitch (an E minor pentatonic run, E2..A3, low enough to survive audio_stride=32,
# i.e. 500 Hz once tokenised), shape → waveform, animation → envelope, size → loudness.
_PITCH_HZ = dict(zip(COLOURS, (82.41, 98.0, 110.0, 130.81, 146.83, 164.81, 196.0, 220.0)))
_WAVEFORMS = dict(zip(SHAPES, ("pulse50+octave", "pulse50", "triangle", "stepped", "pulse25", "pulse12", "saw",
                               "saw_down")))  # fmt: skip
_LOUDNESS = {"small": 0.5, "big": 0.9}
# The band-pass rings on the pulse edges (peaks up to 1.65x the input): this gain keeps channel 1 below 0.91.
_BAND_PASS_GAIN = 0.55


def _parse_bitmap(art: str) -> np.ndarray:
    rows = [line.strip() for line in art.strip().splitlines()]
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


_MASKS: dict[tuple[str, str], np.ndarray] = {}
for _shape, _arts in _BITMAPS.items():
    for _size, _art in _arts.items():
        _mask = _parse_bitmap(_art)
        if _mask.shape != (_SIZE_PIXELS[_size],) * 2:
            raise AssertionError(f"bitmap {_shape}/{_size} has shape {_mask.shape}")
        _MASKS[_shape, _size] = _mask
        _mask.flags.writeable = False


def shape_mask(shape: str, size: str) -> np.ndarray:
    """The ``(16, 16)`` boolean mask of a shape, centred in the frame (a copy)."""
    mask = _MASKS[shape, size]
    n = mask.shape[0]
    start = (SPRITE_SIZE - n) // 2
    out = np.zeros((SPRITE_SIZE, SPRITE_SIZE), dtype=bool)
    out[start : start + n, start : start + n] = mask
    return out


def _check(name: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")


@dataclass(frozen=True, order=True)
class SpriteSpec:
    """One demo sample: ``SpriteSpec("heart", "red", "black", "small", "blinking")``."""

    shape: str
    colour: str
    background: str = "black"
    size: str = "big"
    animation: str = "static"

    def __post_init__(self) -> None:
        _check("shape", self.shape, SHAPES)
        _check("colour", self.colour, COLOURS)
        _check("background", self.background, BACKGROUNDS)
        _check("size", self.size, SIZES)
        _check("animation", self.animation, ANIMATIONS)

    @property
    def caption(self) -> str:
        """E.g. ``"a small red heart blinking on black"``; static sprites have no animation word."""
        motion = "" if self.animation == "static" else f" {self.animation}"
        return f"a {self.size} {self.colour} {self.shape}{motion} on {self.background}"

    @property
    def colour_rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        return BACKGROUNDS[self.background]

    @property
    def num_frames(self) -> int:
        return ANIMATION_FRAMES[self.animation]

    @property
    def pair(self) -> tuple[str, str]:
        """The ``(shape, colour)`` pair the demo split holds out."""
        return self.shape, self.colour

    def masks(self) -> np.ndarray:
        """``(F, 16, 16)`` boolean foreground masks of the frames."""
        base = shape_mask(self.shape, self.size)
        if self.animation == "static":
            frames = [base]
        elif self.animation == "blinking":
            frames = [base, np.zeros_like(base)]
        elif self.animation == "moving":
            frames = [_shift_columns(base, dx) for dx in _MOVING_OFFSETS]
        else:  # spinning: a quarter turn clockwise per frame (the masks are centred, so they stay in frame)
            frames = [np.rot90(base, -k) for k in range(4)]
        return np.stack(frames)

    def render(self) -> np.ndarray:
        """``(F, 16, 16, 3)`` uint8 RGB frames using only palette colours."""
        masks = self.masks()
        frames = np.empty(masks.shape + (3,), dtype=np.uint8)
        frames[...] = np.asarray(self.background_rgb, dtype=np.uint8)
        frames[masks] = np.asarray(self.colour_rgb, dtype=np.uint8)
        return frames

    def sound(self, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
        """``(2, N)`` float32 in [-1, 1], ``N = round(0.064 * sampling_rate)`` (1024 at 16 kHz).

        Channel 0: the colour's pitch with the shape's waveform, shaped by the animation's envelope
        (static: flat with 4 ms fades; blinking: two bursts; moving: rise then fall; spinning: four
        decaying plucks) at the size's loudness (big 0.9, small 0.5). Channel 1: :func:`band_pass` of
        channel 0 times 0.55 (the filter rings on the pulse edges; this keeps it unclipped).
        """
        if not isinstance(sampling_rate, (int, np.integer)) or sampling_rate < 1000:
            raise ValueError(f"sampling_rate must be an integer >= 1000, got {sampling_rate!r}")
        n = round(SOUND_SECONDS * sampling_rate)
        idx = np.arange(n, dtype=np.float64)
        phase = np.mod(idx * (_PITCH_HZ[self.colour] / sampling_rate), 1.0)
        wave = _waveform(_WAVEFORMS[self.shape], phase)
        left = wave * _envelope(self.animation, n, sampling_rate) * _LOUDNESS[self.size]
        right = np.clip(_BAND_PASS_GAIN * band_pass(left, sampling_rate), -1.0, 1.0)
        return np.stack((left, right)).astype(np.float32)

    def sample(self, sampling_rate: int = SAMPLING_RATE) -> dict[str, Any]:
        """The sample dict of :func:`demo_samples`."""
        out: dict[str, Any] = {
            "text": self.caption,
            "image": self.render(),
            "audio": self.sound(sampling_rate),
            "sampling_rate": int(sampling_rate),
        }
        out.update({f.name: getattr(self, f.name) for f in fields(self)})
        return out


def _shift_columns(mask: np.ndarray, dx: int) -> np.ndarray:
    out = np.zeros_like(mask)
    if dx >= 0:
        out[:, dx:] = mask[:, : mask.shape[1] - dx]
    else:
        out[:, :dx] = mask[:, -dx:]
    if out.sum() != mask.sum():
        raise AssertionError("a moving sprite left the frame")
    return out


def _waveform(kind: str, phase: np.ndarray) -> np.ndarray:
    """Chiptune oscillators of ``phase`` in [0, 1), values in [-1, 1] (no transcendental functions)."""
    if kind.startswith("pulse"):
        if kind == "pulse50+octave":  # square plus its octave: a "fuller" tone
            return 0.5 * _waveform("pulse50", phase) + 0.5 * _waveform("pulse50", np.mod(2.0 * phase, 1.0))
        duty = {"pulse50": 0.5, "pulse25": 0.25, "pulse12": 0.125}[kind]
        return np.where(phase < duty, 1.0, -1.0)
    if kind == "triangle":
        return 1.0 - 4.0 * np.abs(phase - 0.5)
    if kind == "stepped":  # the NES triangle channel: a 16-step triangle
        return (np.floor((1.0 - 2.0 * np.abs(phase - 0.5)) * 15.999) / 15.0) * 2.0 - 1.0
    if kind == "saw":
        return 2.0 * phase - 1.0
    if kind == "saw_down":
        return 1.0 - 2.0 * phase
    raise ValueError(f"unknown waveform {kind!r}")


def _envelope(animation: str, n: int, sampling_rate: int) -> np.ndarray:
    idx = np.arange(n, dtype=np.float64)
    if animation == "static":
        fade = max(1.0, 0.004 * sampling_rate)
        return np.minimum(1.0, np.minimum(idx, n - 1 - idx) / fade)
    if animation == "blinking":
        return (np.floor(idx * 4.0 / n) % 2 == 0).astype(np.float64)
    if animation == "moving":
        return 1.0 - np.abs(2.0 * idx / max(n - 1, 1) - 1.0)
    if animation == "spinning":
        return (1.0 - np.mod(idx * 4.0 / n, 1.0)) ** 2
    raise ValueError(f"unknown animation {animation!r}")


def _biquad_band_pass(low_hz: float, high_hz: float, sampling_rate: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RBJ cookbook band-pass (0 dB peak) centred on ``sqrt(low * high)`` with ``Q = f0 / (high - low)``."""
    f0 = math.sqrt(low_hz * high_hz)
    q = f0 / (high_hz - low_hz)
    w0 = 2.0 * math.pi * f0 / sampling_rate
    alpha = math.sin(w0) / (2.0 * q)
    a0 = 1.0 + alpha
    b = (alpha / a0, 0.0, -alpha / a0)
    a = (1.0, -2.0 * math.cos(w0) / a0, (1.0 - alpha) / a0)
    return tuple(round(v, 12) for v in b), tuple(round(v, 12) for v in a)


def band_pass(x: np.ndarray, sampling_rate: int = SAMPLING_RATE, low_hz: float = 100.0,
              high_hz: float = 3000.0) -> np.ndarray:  # fmt: skip
    """Game Boy style band-pass of a 1-D signal: one 2nd-order IIR (biquad) section, direct form I, in float64."""
    high_hz = min(high_hz, 0.45 * sampling_rate)
    (b0, b1, b2), (_, a1, a2) = _biquad_band_pass(low_hz, high_hz, sampling_rate)
    y = np.zeros(len(x), dtype=np.float64)
    x1 = x2 = y1 = y2 = 0.0
    for i, xi in enumerate(np.asarray(x, dtype=np.float64).tolist()):
        yi = b0 * xi + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
        y[i] = yi
        x2, x1, y2, y1 = x1, xi, y1, yi
    return y


# --------------------------------------------------------------------------------------------------
# The dataset and its split
# --------------------------------------------------------------------------------------------------
def all_specs() -> tuple[SpriteSpec, ...]:
    """Every attribute combination (8 shapes × 8 colours × 2 backgrounds × 2 sizes × 4 animations = 1024),
    ordered by shape, colour, background, size, animation."""
    return tuple(SpriteSpec(*values) for values in itertools.product(SHAPES, COLOURS, BACKGROUNDS, SIZES, ANIMATIONS))


def _rank(seed: int, *parts: Any) -> bytes:
    """A seed-dependent sort key that is identical on every machine and numpy version."""
    return hashlib.sha256(repr((int(seed), *parts)).encode("utf-8")).digest()


def _shuffled(seed: int, label: str, items: Sequence[Any]) -> list[Any]:
    return sorted(items, key=lambda item: _rank(seed, label, item))


def _pair_variants(seed: int, shape: str, colour: str, count: int) -> list[SpriteSpec]:
    """``count`` balanced (size, background, animation) variants of a pair.

    Block b assigns animation j the (size, background) combination ``(j + b) mod 4`` of a per-pair
    shuffle, so the first 4 variants hold every animation once and every size × background once.
    """
    anims = _shuffled(seed, f"anim/{shape}/{colour}", ANIMATIONS)
    looks = _shuffled(seed, f"look/{shape}/{colour}", list(itertools.product(SIZES, BACKGROUNDS)))
    variants = [
        SpriteSpec(shape, colour, background=looks[(j + b) % len(looks)][1], size=looks[(j + b) % len(looks)][0],
                   animation=anim)
        for b in range(len(looks))
        for j, anim in enumerate(anims)
    ]  # fmt: skip
    return variants[:count]


def heldout_pairs(seed: int = 0, heldout_fraction: float = 0.125) -> list[tuple[str, str]]:
    """The held-out (shape, colour) pairs: ``round(fraction × 64)`` pairs laid on shifted diagonals of
    seed-shuffled shape and colour orders, so each shape and each colour loses as few pairs as possible
    (with the default 1/8: exactly one each)."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    shapes = _shuffled(seed, "shapes", SHAPES)
    colours = _shuffled(seed, "colours", list(COLOURS))
    n_held = max(1, round(heldout_fraction * len(shapes) * len(colours)))
    pairs = []
    for k in range(n_held):
        diagonal, i = divmod(k, len(shapes))
        pairs.append((shapes[i], colours[(i + diagonal) % len(colours)]))
    return pairs


def make_demo_split(
    seed: int = 0, heldout_fraction: float = 0.125, variants_per_pair: int = 4
) -> tuple[list[SpriteSpec], list[SpriteSpec]]:
    """``(train_specs, heldout_specs)``: held-out colour × shape pairs never appear in training.

    Every pair gets ``variants_per_pair`` (1..16) balanced variants (see :func:`_pair_variants`); with the
    defaults 56 × 4 = 224 training and 8 × 4 = 32 held-out samples. Raises ``ValueError`` when the
    fraction is so large that some attribute value would be missing from training.
    """
    n_variants = len(SIZES) * len(BACKGROUNDS) * len(ANIMATIONS)
    if not 1 <= variants_per_pair <= n_variants:
        raise ValueError(f"variants_per_pair must be in [1, {n_variants}], got {variants_per_pair}")
    held = set(heldout_pairs(seed, heldout_fraction))
    train: list[SpriteSpec] = []
    heldout: list[SpriteSpec] = []
    for shape, colour in itertools.product(SHAPES, COLOURS):
        specs = _pair_variants(seed, shape, colour, variants_per_pair)
        (heldout if (shape, colour) in held else train).extend(specs)
    assert not {s.pair for s in train} & {s.pair for s in heldout}, "a held-out pair leaked into training"
    attributes = {"shape": SHAPES, "colour": COLOURS, "background": BACKGROUNDS, "size": SIZES, "animation": ANIMATIONS}
    for name, values in attributes.items():
        missing = set(values) - {getattr(s, name) for s in train}
        if missing:
            raise ValueError(
                f"heldout_fraction={heldout_fraction}, variants_per_pair={variants_per_pair} leave no training "
                f"sample with {name} {sorted(missing)}: every attribute value must appear in training"
            )
    return train, heldout


def demo_samples(specs: Iterable[SpriteSpec], sampling_rate: int = SAMPLING_RATE) -> list[dict[str, Any]]:
    """One dict per spec: ``text`` (caption), ``image`` ((F, 16, 16, 3) uint8), ``audio`` ((2, N) float32),
    ``sampling_rate`` and the attribute fields ``shape``, ``colour``, ``background``, ``size``, ``animation``.

    Tokenise a sample with ``tok(text=s["text"], images=s["image"], audio=s["audio"],
    sampling_rate=s["sampling_rate"])`` and ``tok = ActionPixelBytesTokenizer(**DEMO_TOKENIZER_KWARGS)``.
    """
    return [spec.sample(sampling_rate) for spec in specs]


def parse_caption(caption: str) -> SpriteSpec:
    """Inverse of :attr:`SpriteSpec.caption` (``ValueError`` for any other text)."""
    words = caption.strip().lower().split()
    if len(words) == 6:
        words.insert(4, "static")
    if len(words) != 7 or words[0] != "a" or words[5] != "on":
        raise ValueError(f"not a demo caption: {caption!r} (expected 'a <size> <colour> <shape> [<motion>] on <bg>')")
    _, size, colour, shape, animation, _, background = words
    if animation == "static" and len(caption.split()) == 7:
        raise ValueError(f"not a demo caption: {caption!r} (static sprites have no animation word)")
    return SpriteSpec(shape, colour, background, size, animation)


# The named colours must be palette colours (exact quantisation) distinct from the backgrounds.
assert set(COLOURS.values()) | set(BACKGROUNDS.values()) <= set(DEFAULT_PALETTE)
assert not set(COLOURS.values()) & set(BACKGROUNDS.values())

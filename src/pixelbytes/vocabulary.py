"""Token tables of PixelBytes: bytes, an RGB palette and action/audio levels.

The vocabulary is the concatenation ``bytes + palette + levels``. The default tables reproduce the
published 151-id vocabulary (DESIGN §3); :func:`control_vocabulary` builds the variant used by the
control (setpoint) experiments and :func:`v1_vocabulary` the 113-id table of the v1 models (the same
58 bytes and 55 colours, no levels: a vocabulary without levels tokenises text and images only).
Ids 0/1/2 must be the bytes ``\\x00`` (pad), ``\\t`` (row separator) and ``\\n`` (frame / modality
separator) in every vocabulary, because the layout engine (§5) relies on them.

Hugging Face tokenizers need string tokens, so every entry also has a canonical string:
a byte ``b`` is ``chr(b)`` (latin-1, like ByT5), a colour is ``<rgb:R,G,B>`` and a level ``v`` is
``<act:{v:+.4f}>``.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = [
    "BYTE",
    "COLOUR",
    "DEFAULT_BYTES",
    "DEFAULT_PALETTE",
    "LEVEL",
    "PAD",
    "PAD_ID",
    "ROW",
    "ROW_ID",
    "SEP",
    "SEP_ID",
    "PxByVocabulary",
    "control_vocabulary",
    "default_vocabulary",
    "generate_action_levels",
    "generate_bytes",
    "generate_palette",
    "token_classes_for_sizes",
    "v1_vocabulary",
]

#: Token classes used by the layout engine (DESIGN §5).
PAD, ROW, SEP, BYTE, COLOUR, LEVEL = 0, 1, 2, 3, 4, 5
CLASS_NAMES = ("PAD", "ROW", "SEP", "BYTE", "COLOUR", "LEVEL")

PAD_ID, ROW_ID, SEP_ID = 0, 1, 2

#: The 58 bytes of the published vocabulary, in id order (ids 0..57).
DEFAULT_BYTES: tuple[int, ...] = tuple(
    b"\x00\t\n" + b" \"'()*,-+.0123456789" + b"\xc2\xa0" + b":[];/%!" + b"abcdefghijklmnopqrstuvwxyz"
)

#: The 55 NES colours of the published vocabulary, in id order (ids 58..112).
DEFAULT_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (252, 252, 252), (248, 248, 248), (188, 188, 188), (124, 124, 124), (164, 228, 252),
    (60, 188, 252), (0, 120, 248), (0, 0, 252), (184, 184, 248), (104, 136, 252), (0, 88, 248),
    (0, 0, 188), (216, 184, 248), (152, 120, 248), (104, 68, 252), (68, 40, 188), (248, 184, 248),
    (248, 120, 248), (216, 0, 204), (148, 0, 132), (248, 164, 192), (248, 88, 152), (228, 0, 88),
    (168, 0, 32), (240, 208, 176), (248, 120, 88), (248, 56, 0), (168, 16, 0), (252, 224, 168),
    (252, 160, 68), (228, 92, 16), (136, 20, 0), (248, 216, 120), (248, 184, 0), (172, 124, 0),
    (80, 48, 0), (216, 248, 120), (184, 248, 24), (0, 184, 0), (0, 120, 0), (184, 248, 184),
    (88, 216, 84), (0, 168, 0), (0, 104, 0), (184, 248, 216), (88, 248, 152), (0, 168, 68),
    (0, 88, 0), (0, 252, 252), (0, 232, 216), (0, 136, 136), (0, 64, 88), (248, 216, 248),
    (120, 120, 120),
)  # fmt: skip

DEFAULT_NUM_LEVELS = 38


def generate_bytes(characters: str | bytes | Iterable[int]) -> tuple[int, ...]:
    """Return a byte table that starts with the three structural bytes ``\\x00 \\t \\n``.

    ``characters`` lists the content bytes (as a ``str`` of latin-1 characters, ``bytes`` or ints);
    structural bytes in it are ignored, duplicates are an error.
    """
    if isinstance(characters, str):
        values = [ord(ch) for ch in characters]
    else:
        values = [int(v) for v in characters]
    content = [v for v in values if v not in (0, 9, 10)]
    if any(not 0 <= v < 256 for v in content):
        raise ValueError("byte values must be in [0, 255]")
    if len(set(content)) != len(content):
        raise ValueError("duplicate bytes in the byte table")
    return (0, 9, 10, *content)


def generate_palette(n: int, saturation: float = 0.8, value: float = 0.9) -> tuple[tuple[int, int, int], ...]:
    """``n`` evenly spaced HSV hues ``hsv(i/n, saturation, value)`` truncated to 8-bit RGB.

    With the defaults and ``n=5`` this is the palette of the original control tokenizer:
    ``(229,45,45) (192,229,45) (45,229,119) (45,119,229) (192,45,229)``.
    """
    if n < 1:
        raise ValueError(f"palette size must be >= 1, got {n}")
    return tuple(
        tuple(int(channel * 255) for channel in colorsys.hsv_to_rgb(i / n, saturation, value))  # type: ignore[misc]
        for i in range(n)
    )


def generate_action_levels(n: int, low: float = -1.0, high: float = 1.0) -> tuple[float, ...]:
    """``n`` evenly spaced levels ``linspace(low, high, n)`` (the published table: 38 in [-1, 1])."""
    if n < 2:
        raise ValueError(f"need at least 2 action levels, got {n}")
    return tuple(float(v) for v in np.linspace(low, high, n))


def token_classes_for_sizes(num_bytes: int, num_colors: int, num_levels: int) -> np.ndarray:
    """Layout class of every id of a ``bytes + palette + levels`` vocabulary (ids 0/1/2 = pad/row/sep)."""
    classes = np.empty(num_bytes + num_colors + num_levels, dtype=np.int8)
    classes[:num_bytes] = BYTE
    classes[PAD_ID], classes[ROW_ID], classes[SEP_ID] = PAD, ROW, SEP
    classes[num_bytes : num_bytes + num_colors] = COLOUR
    classes[num_bytes + num_colors :] = LEVEL
    return classes


def _color_token(rgb: Sequence[int]) -> str:
    return f"<rgb:{rgb[0]},{rgb[1]},{rgb[2]}>"


def _level_token(value: float) -> str:
    return f"<act:{value:+.4f}>"


@dataclass(frozen=True)
class PxByVocabulary:
    """The three token tables and everything derived from them (computed once, cached).

    Attributes:
        byte_values: byte values of ids ``0 .. len(byte_values) - 1``; must start with 0, 9, 10.
        palette: RGB colours of the next ids.
        levels: action / audio levels (floats in [-1, 1]) of the last ids; empty for a vocabulary without
            audio / action tokens (the v1 one), otherwise at least 2.
    """

    byte_values: tuple[int, ...] = DEFAULT_BYTES
    palette: tuple[tuple[int, int, int], ...] = DEFAULT_PALETTE
    levels: tuple[float, ...] = field(default_factory=lambda: generate_action_levels(DEFAULT_NUM_LEVELS))

    def __post_init__(self) -> None:
        object.__setattr__(self, "byte_values", tuple(int(b) for b in self.byte_values))
        object.__setattr__(self, "palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))
        if self.byte_values[:3] != (0, 9, 10):
            raise ValueError(
                "the byte table must start with \\x00 (pad), \\t (row separator), \\n (separator); "
                f"got {self.byte_values[:3]}"
            )
        if len(set(self.byte_values)) != len(self.byte_values):
            raise ValueError("duplicate bytes in the byte table")
        if any(not 0 <= b < 256 for b in self.byte_values):
            raise ValueError("byte values must be in [0, 255]")
        if not self.palette:
            raise ValueError("the palette must hold at least one colour")
        for colour in self.palette:
            if len(colour) != 3 or any(not 0 <= v < 256 for v in colour):
                raise ValueError(f"palette colours must be 3 values in [0, 255], got {colour}")
        if len(set(self.palette)) != len(self.palette):
            raise ValueError("duplicate colours in the palette")
        if len(self.levels) == 1:
            raise ValueError("need at least 2 action levels (or none, for a vocabulary without audio)")
        if not all(np.isfinite(self.levels)) or len(set(self.levels)) != len(self.levels):
            raise ValueError("action levels must be finite and distinct")
        if len(set(map(_level_token, self.levels))) != len(self.levels):
            raise ValueError("action levels must differ in their first 4 decimals (string names collide)")

    # sizes and offsets -------------------------------------------------------------------------
    @property
    def num_bytes(self) -> int:
        return len(self.byte_values)

    @property
    def num_colors(self) -> int:
        return len(self.palette)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def color_offset(self) -> int:
        """Id of the first colour."""
        return self.num_bytes

    @property
    def level_offset(self) -> int:
        """Id of the first action level."""
        return self.num_bytes + self.num_colors

    @property
    def vocab_size(self) -> int:
        return self.num_bytes + self.num_colors + self.num_levels

    # derived tables ----------------------------------------------------------------------------
    @cached_property
    def tokens(self) -> tuple[str, ...]:
        """Canonical string of every id, in id order."""
        return (
            tuple(chr(b) for b in self.byte_values)
            + tuple(_color_token(c) for c in self.palette)
            + tuple(_level_token(v) for v in self.levels)
        )

    @cached_property
    def token_to_id(self) -> dict[str, int]:
        return {tok: i for i, tok in enumerate(self.tokens)}

    @cached_property
    def token_classes(self) -> np.ndarray:
        """``(vocab_size,)`` int8 array: the layout class (PAD, ROW, SEP, BYTE, COLOUR, LEVEL) of each id."""
        return token_classes_for_sizes(self.num_bytes, self.num_colors, self.num_levels)

    @cached_property
    def byte_to_id(self) -> np.ndarray:
        """``(256,)`` int64 array mapping a byte value to its id, -1 when the byte is not in the table."""
        table = np.full(256, -1, dtype=np.int64)
        table[list(self.byte_values)] = np.arange(self.num_bytes)
        return table

    @cached_property
    def palette_array(self) -> np.ndarray:
        """``(num_colors, 3)`` uint8 RGB array."""
        return np.asarray(self.palette, dtype=np.uint8).reshape(-1, 3)

    @cached_property
    def levels_array(self) -> np.ndarray:
        """``(num_levels,)`` float64 array of the levels, in id order."""
        return np.asarray(self.levels, dtype=np.float64)

    # (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready tables (what ``pxby_vocab.json`` holds), with the string names for reference."""
        return {
            "bytes": list(self.byte_values),
            "palette": [list(c) for c in self.palette],
            "levels": list(self.levels),
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PxByVocabulary:
        try:
            vocab = cls(byte_values=data["bytes"], palette=data["palette"], levels=data["levels"])
        except KeyError as err:
            raise ValueError(f"vocabulary file is missing the {err.args[0]!r} table") from err
        if "tokens" in data and list(data["tokens"]) != list(vocab.tokens):
            raise ValueError("vocabulary file is inconsistent: its 'tokens' do not match its tables")
        return vocab

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of the token strings: equal tables ⇔ equal fingerprints (stored in model configs)."""
        return hashlib.sha256("\x1f".join(self.tokens).encode("utf-8")).hexdigest()[:16]

    @property
    def has_levels(self) -> bool:
        """False for a vocabulary without action / audio levels (it cannot encode audio)."""
        return bool(self.levels)

    def table_sizes(self) -> dict[str, int]:
        """The sizes a model config records to detect a tokenizer/model mismatch."""
        return {"num_bytes": self.num_bytes, "num_colors": self.num_colors, "num_levels": self.num_levels}


def default_vocabulary() -> PxByVocabulary:
    """The published 151-id vocabulary (58 bytes, 55 NES colours, 38 levels)."""
    return _DEFAULT


def control_vocabulary() -> PxByVocabulary:
    """The 151-id vocabulary of the control experiments: bytes ``\\x00 \\t \\n 0 1``, 5 HSV colours,
    141 levels ``linspace(-1, 1, 141)`` (exact 0 at id 80)."""
    return PxByVocabulary(
        byte_values=generate_bytes("01"), palette=generate_palette(5), levels=generate_action_levels(141)
    )


def v1_vocabulary() -> PxByVocabulary:
    """The 113-id vocabulary of the v1 PixelBytes models (``SimpleRNNModel`` / ``bMamba`` /
    ``SimpleTransformerModel``): the 58 bytes and 55 NES colours of the published table, in the same order,
    and no action levels. Text and images tokenise as with the default table; audio is refused."""
    return _V1


_DEFAULT = PxByVocabulary()
_V1 = PxByVocabulary(levels=())

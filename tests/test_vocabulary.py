"""Vocabulary tables (DESIGN §3): the published 151-id table, the control variant, (de)serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixelbytes.vocabulary import (
    BYTE,
    COLOUR,
    LEVEL,
    PAD,
    ROW,
    SEP,
    PxByVocabulary,
    control_vocabulary,
    default_vocabulary,
    generate_action_levels,
    generate_bytes,
    generate_palette,
    v1_vocabulary,
)

# DESIGN §3, written out independently of the implementation.
NES_PALETTE = [
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
]  # fmt: skip
BYTES_3_TO_22 = [ord(ch) for ch in " \"'()*,-+.0123456789"]
BYTES_25_TO_31 = [ord(ch) for ch in ":[];/%!"]


def test_default_sizes_and_offsets(vocab):
    assert vocab.vocab_size == 151
    assert (vocab.num_bytes, vocab.num_colors, vocab.num_levels) == (58, 55, 38)
    assert (vocab.color_offset, vocab.level_offset) == (58, 113)
    assert vocab.table_sizes() == {"num_bytes": 58, "num_colors": 55, "num_levels": 38}
    assert len(vocab.tokens) == 151 and len(set(vocab.tokens)) == 151


def test_default_byte_table_exact_order(vocab):
    b = vocab.byte_values
    assert b[0:3] == (0, 9, 10)  # pad, row separator, frame / modality separator
    assert list(b[3:23]) == BYTES_3_TO_22
    assert b[3] == ord(" ") and b[13] == ord("0") and b[22] == ord("9")
    assert b[23:25] == (0xC2, 0xA0)
    assert list(b[25:32]) == BYTES_25_TO_31
    assert list(b[32:58]) == list(range(ord("a"), ord("z") + 1))


def test_default_palette_exact(vocab):
    assert list(vocab.palette) == NES_PALETTE
    assert vocab.palette[58 - 58] == (0, 0, 0)
    assert vocab.palette[59 - 58] == (252, 252, 252)
    assert vocab.palette[112 - 58] == (120, 120, 120)
    assert vocab.palette_array.dtype == np.uint8 and vocab.palette_array.shape == (55, 3)


def test_default_levels(vocab):
    levels = vocab.levels_array
    assert levels.dtype == np.float64 and levels.shape == (38,)
    assert levels[0] == -1.0 and levels[-1] == 1.0  # ids 113 and 150
    np.testing.assert_allclose(np.diff(levels), 2 / 37, rtol=1e-12)
    assert not np.any(levels == 0.0)  # the published table has no exact 0
    assert levels[18] < 0 < levels[19]


def test_default_canonical_strings(vocab):
    tokens = vocab.tokens
    assert tokens[0] == "\x00" and tokens[1] == "\t" and tokens[2] == "\n"
    assert tokens[3] == " " and tokens[32] == "a" and tokens[57] == "z"
    assert tokens[23] == "\xc2" and tokens[24] == "\xa0"  # latin-1 chr(b), like ByT5
    assert tokens[58] == "<rgb:0,0,0>"
    assert tokens[59] == "<rgb:252,252,252>"
    assert tokens[112] == "<rgb:120,120,120>"
    assert tokens[113] == "<act:-1.0000>"
    assert tokens[131] == "<act:-0.0270>"
    assert tokens[132] == "<act:+0.0270>"
    assert tokens[150] == "<act:+1.0000>"
    assert all(vocab.token_to_id[t] == i for i, t in enumerate(tokens))


def test_default_token_classes(vocab):
    cls = vocab.token_classes
    assert cls.shape == (151,)
    assert (cls[0], cls[1], cls[2]) == (PAD, ROW, SEP)
    assert (cls[3:58] == BYTE).all()
    assert (cls[58:113] == COLOUR).all()
    assert (cls[113:] == LEVEL).all()


def test_byte_to_id(vocab):
    table = vocab.byte_to_id
    assert table.shape == (256,)
    assert table[ord("a")] == 32 and table[ord(" ")] == 3 and table[ord("\n")] == 2
    assert table[ord("?")] == -1 and table[ord("&")] == -1 and table[ord("A")] == -1


def test_default_vocabulary_is_shared_and_equals_fresh(vocab):
    assert default_vocabulary() is default_vocabulary()
    assert PxByVocabulary() == vocab


def test_control_vocabulary():
    v = control_vocabulary()
    assert v.vocab_size == 151
    assert v.byte_values == (0, 9, 10, ord("0"), ord("1"))
    assert [v.tokens[i] for i in range(5)] == ["\x00", "\t", "\n", "0", "1"]
    assert list(v.palette) == [(229, 45, 45), (192, 229, 45), (45, 229, 119), (45, 119, 229), (192, 45, 229)]
    assert v.color_offset == 5 and v.level_offset == 10
    assert v.num_levels == 141
    assert v.levels_array[0] == -1.0 and v.levels_array[-1] == 1.0
    assert v.levels_array[80 - 10] == 0.0  # exact 0 at id 80
    assert v.tokens[80] == "<act:+0.0000>"
    np.testing.assert_allclose(np.diff(v.levels_array), 1 / 70, rtol=1e-9)
    assert v.tokens[5] == "<rgb:229,45,45>"
    assert list(v.token_classes[:5]) == [PAD, ROW, SEP, BYTE, BYTE]
    assert (v.token_classes[5:10] == COLOUR).all() and (v.token_classes[10:] == LEVEL).all()


def test_generators():
    assert generate_bytes("01") == (0, 9, 10, 48, 49)
    assert generate_bytes(b"\x00ab\n") == (0, 9, 10, 97, 98)  # structural bytes in the input are ignored
    assert generate_bytes([120, 121]) == (0, 9, 10, 120, 121)
    assert generate_palette(5) == ((229, 45, 45), (192, 229, 45), (45, 229, 119), (45, 119, 229), (192, 45, 229))
    assert generate_palette(1) == ((229, 45, 45),)
    assert generate_action_levels(3) == (-1.0, 0.0, 1.0)
    assert generate_action_levels(5, 0.0, 1.0) == (0.0, 0.25, 0.5, 0.75, 1.0)
    with pytest.raises(ValueError):
        generate_bytes("aa")
    with pytest.raises(ValueError):
        generate_bytes([300])
    with pytest.raises(ValueError):
        generate_palette(0)
    with pytest.raises(ValueError):
        generate_action_levels(1)


def test_custom_vocabulary_layout():
    v = PxByVocabulary(byte_values=generate_bytes("xy"), palette=((1, 2, 3), (4, 5, 6)), levels=(-0.5, 0.5))
    assert v.vocab_size == 9
    assert v.tokens == ("\x00", "\t", "\n", "x", "y", "<rgb:1,2,3>", "<rgb:4,5,6>", "<act:-0.5000>", "<act:+0.5000>")
    assert list(v.token_classes) == [PAD, ROW, SEP, BYTE, BYTE, COLOUR, COLOUR, LEVEL, LEVEL]


def test_v1_vocabulary_is_the_published_table_without_levels(vocab):
    """The 113 ids of the v1 models: the same 58 bytes and 55 colours in the same order, no action levels."""
    v1 = v1_vocabulary()
    assert v1.vocab_size == 113 and v1.table_sizes() == {"num_bytes": 58, "num_colors": 55, "num_levels": 0}
    assert list(v1.byte_values[3:23]) == BYTES_3_TO_22 and list(v1.byte_values[25:32]) == BYTES_25_TO_31
    assert list(v1.palette) == NES_PALETTE
    assert v1.tokens == vocab.tokens[:113] and not v1.has_levels and vocab.has_levels
    assert set(v1.token_classes.tolist()) == {PAD, ROW, SEP, BYTE, COLOUR}
    assert v1.fingerprint != vocab.fingerprint


@pytest.mark.parametrize("make", [default_vocabulary, control_vocabulary, v1_vocabulary])
def test_to_dict_from_dict_round_trip(make):
    v = make()
    data = json.loads(json.dumps(v.to_dict()))  # what pxby_vocab.json holds
    assert set(data) == {"bytes", "palette", "levels", "tokens"}
    assert data["tokens"] == list(v.tokens)
    back = PxByVocabulary.from_dict(data)
    assert back == v
    assert back.tokens == v.tokens
    np.testing.assert_array_equal(back.token_classes, v.token_classes)
    without_tokens = {k: data[k] for k in ("bytes", "palette", "levels")}
    assert PxByVocabulary.from_dict(without_tokens) == v


@pytest.mark.parametrize(
    "kwargs",
    [
        {"byte_values": (9, 0, 10, 97)},  # structural bytes not first
        {"byte_values": (0, 9, 10, 97, 97)},  # duplicate
        {"byte_values": (0, 9, 10, 256)},  # out of range
        {"byte_values": (0, 9, 10, -1)},
        {"byte_values": (0, 9)},  # too short: no separator
        {"palette": ()},
        {"palette": ((1, 2, 3), (1, 2, 3))},
        {"palette": ((1, 2),)},
        {"palette": ((1, 2, 256),)},
        {"palette": ((-1, 2, 3),)},
        {"levels": (0.5,)},
        {"levels": (0.0, 0.0)},
        {"levels": (0.0, float("nan"))},
        {"levels": (0.0, float("inf"))},
        {"levels": (0.1, 0.10000001)},  # distinct floats, colliding '<act:+0.1000>' names
    ],
)
def test_invalid_tables_raise(kwargs):
    with pytest.raises(ValueError):
        PxByVocabulary(**kwargs)


@pytest.mark.parametrize("missing", ["bytes", "palette", "levels"])
def test_from_dict_missing_table(missing):
    data = default_vocabulary().to_dict()
    del data[missing]
    with pytest.raises(ValueError, match=missing):
        PxByVocabulary.from_dict(data)


def test_from_dict_inconsistent_tokens():
    data = default_vocabulary().to_dict()
    data["tokens"][60] = "<rgb:1,1,1>"
    with pytest.raises(ValueError, match="inconsistent"):
        PxByVocabulary.from_dict(data)


def test_vocabulary_is_frozen(vocab):
    with pytest.raises(AttributeError):
        vocab.levels = (0.0, 1.0)

"""Modality codecs (DESIGN §4): text, images (colour quantisation vs the skimage reference), audio, decoding."""

from __future__ import annotations

import io
import itertools
import re
import unicodedata
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.spatial.distance import cdist
from skimage.color import rgb2lab

from pixelbytes import codecs
from pixelbytes.codecs import (
    decode_stream,
    encode_audio,
    encode_image,
    encode_text,
    image_to_frames,
    mono_to_stereo,
    normalize_audio,
    quantize_colors,
    quantize_levels,
    resample_audio,
    rgb_to_lab,
    save_image,
    save_wav,
    stereo_to_mono,
    validate_audio,
)
from pixelbytes.vocabulary import PxByVocabulary


# ==================================================================================================
# Colour quantisation: must equal the float64 CIE-Lab nearest colour (skimage rgb2lab + Euclidean argmin)
# ==================================================================================================
def reference_nearest(rgb: np.ndarray, palette: np.ndarray, chunk: int = 50_000) -> np.ndarray:
    """The published algorithm: skimage rgb2lab (float64) then Euclidean argmin against the palette's Lab."""
    rgb = np.asarray(rgb).reshape(-1, 3)
    palette_lab = rgb2lab(np.asarray(palette, dtype=np.float64).reshape(-1, 3) / 255.0)
    out = np.empty(len(rgb), dtype=np.int64)
    for start in range(0, len(rgb), chunk):
        lab = rgb2lab(rgb[start : start + chunk].astype(np.float64) / 255.0)
        out[start : start + chunk] = cdist(lab, palette_lab).argmin(1)  # Euclidean, float64 (like torch.cdist)
    return out


@pytest.fixture
def fresh_colour_cache(monkeypatch):
    """Start from an empty per-palette cache so the lazy computation itself is exercised."""
    monkeypatch.setattr(codecs, "_COLOR_CACHES", {})


def test_quantize_random_sample_matches_skimage(vocab, fresh_colour_cache):
    rng = np.random.default_rng(20240915)
    rgb = rng.integers(0, 256, size=(300_000, 3), dtype=np.uint8)
    expected = reference_nearest(rgb, vocab.palette_array)
    got = quantize_colors(rgb, vocab)
    np.testing.assert_array_equal(got, expected)
    # second call: served entirely from the cache
    np.testing.assert_array_equal(quantize_colors(rgb[::-1], vocab), expected[::-1])
    # mixed call: half cached colours, half new ones, in an image-shaped array
    more = rng.integers(0, 256, size=(20_000, 3), dtype=np.uint8)
    mixed = np.concatenate((rgb[:20_000], more)).reshape(200, 200, 3)
    got_mixed = quantize_colors(mixed, vocab)
    assert got_mixed.shape == (200, 200)
    np.testing.assert_array_equal(got_mixed.reshape(-1), reference_nearest(mixed, vocab.palette_array))


def test_quantize_palette_colours_and_neighbours_match_skimage(vocab, fresh_colour_cache):
    palette = vocab.palette_array.astype(np.int64)
    offsets = np.array(list(itertools.product(range(-2, 3), repeat=3)))  # {-2..2}^3, includes (0,0,0)
    neighbours = np.clip(palette[:, None, :] + offsets[None, :, :], 0, 255).reshape(-1, 3).astype(np.uint8)
    neighbours = np.unique(neighbours, axis=0)
    np.testing.assert_array_equal(quantize_colors(neighbours, vocab), reference_nearest(neighbours, palette))
    # every palette colour maps to itself
    np.testing.assert_array_equal(quantize_colors(vocab.palette_array, vocab), np.arange(vocab.num_colors))


# The 24-bit colours whose two nearest palette colours (float64 Lab) are the closest to a tie (64 smallest gaps over
# the whole RGB cube, 6.9e-7 .. 2.5e-5), plus the 10 colours a float32 computation gets wrong. Found offline by a
# full-cube skimage scan; packed 0xRRGGBB.
HARDEST_COLOURS = [
    0x0BB099,
    0x18FE51,
    0x248C41,
    0x24FE50,
    0x27C781,
    0x2B63C5,
    0x2F7830,
    0x30905A,
    0x386871,
    0x3A48A2,
    0x407DF3,
    0x43613B,
    0x492242,
    0x4B3735,
    0x4D7AA9,
    0x557DA9,
    0x5647E3,
    0x5BFB7E,
    0x5D05E6,
    0x637BA3,
    0x654CCC,
    0x659843,
    0x6D814B,
    0x723A63,
    0x7A9857,
    0x7AAF33,
    0x7B9046,
    0x7BA590,
    0x807B58,
    0x807C47,
    0x836098,
    0x837B48,
    0x839733,
    0x85786A,
    0x88794E,
    0x89719A,
    0x8B747D,
    0x8C7192,
    0x8CC018,
    0x907186,
    0x920146,
    0x95735E,
    0x964EE6,
    0x98C2AC,
    0x99A75F,
    0x9A6B92,
    0x9C5240,
    0x9F98B0,
    0xA06C74,
    0xA3B58A,
    0xA86A5F,
    0xAFA066,
    0xB05C96,
    0xB96EA9,
    0xBEF493,
    0xC34FBB,
    0xCDF1C0,
    0xD4677B,
    0xD69E64,
    0xDF7FBE,
    0xE80C35,
    0xE850E5,
    0xF09661,
    0xF7803E,
    0xFBB741,
]


def test_quantize_hardest_colours_match_skimage(vocab, fresh_colour_cache):
    packed = np.array(HARDEST_COLOURS)
    rgb = np.stack(((packed >> 16) & 255, (packed >> 8) & 255, packed & 255), axis=-1).astype(np.uint8)
    expected = reference_nearest(rgb, vocab.palette_array)
    np.testing.assert_array_equal(quantize_colors(rgb, vocab), expected)
    # the set really discriminates: the same algorithm in float32 gets some of them wrong
    lab32 = rgb2lab((rgb / 255.0).astype(np.float32)).astype(np.float32)
    pal32 = rgb2lab(vocab.palette_array / 255.0).astype(np.float32)
    nearest32 = np.sqrt(((lab32[:, None, :] - pal32[None]) ** 2).sum(-1, dtype=np.float32)).argmin(1)
    assert (nearest32 != expected).sum() >= 5


def test_quantize_extremes_and_greys(vocab, fresh_colour_cache):
    greys = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    corners = np.array(list(itertools.product((0, 255), repeat=3)), dtype=np.uint8)
    rgb = np.concatenate((greys, corners))
    np.testing.assert_array_equal(quantize_colors(rgb, vocab), reference_nearest(rgb, vocab.palette_array))
    assert quantize_colors(np.array([255, 255, 255], np.uint8), vocab) == 1  # white -> (252,252,252), id 59


def test_quantize_control_palette_matches_skimage(control_vocab, fresh_colour_cache):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(50_000, 3), dtype=np.uint8)
    expected = reference_nearest(rgb, control_vocab.palette_array)
    np.testing.assert_array_equal(quantize_colors(rgb, control_vocab), expected)
    np.testing.assert_array_equal(quantize_colors(control_vocab.palette_array, control_vocab), np.arange(5))


def test_quantize_large_palette_uses_wide_table(fresh_colour_cache):
    # >= 255 colours: the lazy table needs uint16 entries (255 would collide with the "unknown" marker)
    rng = np.random.default_rng(3)
    colours = np.unique(rng.integers(0, 256, size=(400, 3)), axis=0)[:300]
    vocab = PxByVocabulary(palette=tuple(map(tuple, colours)))
    rgb = rng.integers(0, 256, size=(20_000, 3), dtype=np.uint8)
    np.testing.assert_array_equal(quantize_colors(rgb, vocab), reference_nearest(rgb, colours))
    np.testing.assert_array_equal(quantize_colors(colours.astype(np.uint8), vocab), np.arange(300))


def test_rgb_to_lab_matches_skimage(vocab):
    rng = np.random.default_rng(11)
    rgb = np.concatenate((rng.integers(0, 256, size=(100_000, 3)), vocab.palette_array, [[0, 0, 0], [255, 255, 255]]))
    ours = rgb_to_lab(rgb.astype(np.uint8))
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, rgb2lab(rgb / 255.0), rtol=0, atol=1e-9)


def test_quantize_colors_rejects_bad_input(vocab):
    with pytest.raises(ValueError):
        quantize_colors(np.zeros((4, 3), dtype=np.float64), vocab)
    with pytest.raises(ValueError):
        quantize_colors(np.zeros((4, 4), dtype=np.uint8), vocab)


# ==================================================================================================
# Text
# ==================================================================================================
def ids_of(text: str, vocab) -> list[int]:
    return [int(vocab.byte_to_id[ord(ch)]) for ch in text]


def test_text_basic(vocab):
    ids, dropped = encode_text("hello", vocab)
    assert ids.tolist() == [39, 36, 43, 43, 46, 2] and dropped == 0
    assert ids.dtype == np.int64
    assert encode_text("HeLLo", vocab)[0].tolist() == [39, 36, 43, 43, 46, 2]
    assert encode_text("hello", vocab, terminate=False)[0].tolist() == [39, 36, 43, 43, 46]


def test_text_accents_are_stripped(vocab):
    assert encode_text("é", vocab)[0].tolist() == [36, 2]
    ids, dropped = encode_text("Çà Noël", vocab)
    assert ids.tolist() == ids_of("ca noel", vocab) + [2]
    assert dropped == 0  # combining accents removed by the folding are not counted


def test_text_whitespace_becomes_space(vocab):
    ids, dropped = encode_text("a\tb\nc\rd\x0be\x0cf\u00a0g\u2003h", vocab)
    assert ids.tolist() == ids_of("a b c d e f g h", vocab) + [2]
    assert dropped == 0
    assert 1 not in ids.tolist() and ids.tolist().count(2) == 1  # never collides with the separators


def test_text_unknown_characters_dropped_and_counted(vocab):
    ids, dropped = encode_text("hi?&#😀", vocab)
    assert ids.tolist() == [39, 40, 2]
    assert dropped == 4
    ids, dropped = encode_text("a\x00b\x01c", vocab)  # control characters: dropped, never pad ids
    assert ids.tolist() == ids_of("abc", vocab) + [2] and dropped == 2
    ids, dropped = encode_text("ß 中文", vocab)
    assert ids.tolist() == ids_of(" ", vocab) + [2] and dropped == 3


def test_text_empty(vocab):
    ids, dropped = encode_text("", vocab)
    assert ids.tolist() == [2] and dropped == 0
    assert encode_text("", vocab, terminate=False)[0].tolist() == []
    assert encode_text("😀", vocab)[0].tolist() == [2]


def test_text_every_known_byte(vocab):
    known = "".join(chr(b) for b in vocab.byte_values[3:] if chr(b).isascii())
    ids, dropped = encode_text(known, vocab)
    assert dropped == 0
    assert ids.tolist() == list(range(3, 23)) + list(range(25, 58)) + [2]  # \xc2 \xa0 are never produced


def test_text_control_vocabulary(control_vocab):
    ids, dropped = encode_text("0110 ab", control_vocab)
    assert ids.tolist() == [3, 4, 4, 3, 2] and dropped == 3


def test_text_type_error(vocab):
    with pytest.raises(TypeError):
        encode_text(b"bytes", vocab)


@given(st.text(max_size=60))
@settings(max_examples=100)
def test_text_property(text):
    vocab = PxByVocabulary()
    ids, dropped = encode_text(text, vocab)
    body = ids[:-1]
    assert ids[-1] == 2
    assert ((body >= 3) & (body < 58)).all()  # only content bytes, never pad/row/sep
    norm = codecs.normalize_text(text)  # lower-case, NFKD, whitespace -> space (before ASCII folding)
    assert not any(ch.isspace() and ch != " " for ch in norm)
    counted = [ch for ch in norm if not unicodedata.combining(ch)]
    assert len(body) + dropped == len(counted)  # every character is either a token or counted as dropped
    kept = "".join(ch for ch in counted if ch.isascii() and vocab.byte_to_id[ord(ch)] > 2)
    assert decode_stream(ids, vocab).texts == [kept]


# ==================================================================================================
# Images
# ==================================================================================================
def expected_grid(vocab, indices: np.ndarray) -> np.ndarray:
    """Hand-built grid of palette indices (F, H, W): colours then 1 per row, 2 on each frame's last row."""
    F, H, W = indices.shape
    grid = np.empty((F, H, W + 1), dtype=np.int64)
    grid[..., :W] = indices + vocab.color_offset
    grid[..., W] = 1
    grid[:, -1, W] = 2
    return grid


@pytest.fixture(scope="module")
def gif_indices() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 55, size=(3, 4, 5))  # 3 frames of 4 rows x 5 columns, every frame different


def test_animated_gif(vocab, make_gif, gif_indices):
    gif = make_gif(gif_indices, vocab.palette)
    assert gif.n_frames == 3
    grid = encode_image(gif, vocab)
    assert grid.shape == (3, 4, 6)
    np.testing.assert_array_equal(grid, expected_grid(vocab, gif_indices))
    assert (grid[:, :-1, 5] == 1).all() and (grid[:, -1, 5] == 2).all()
    # background None (plain convert("RGB")) gives the same ids on an opaque GIF
    np.testing.assert_array_equal(encode_image(gif, vocab, background=None), grid)


def test_gif_position_is_restored(vocab, make_gif, gif_indices):
    gif = make_gif(gif_indices, vocab.palette)
    gif.seek(1)
    grid = encode_image(gif, vocab)
    assert gif.tell() == 1
    assert grid.shape[0] == 3  # every frame, whatever the current position


def test_image_strides(vocab, make_gif, gif_indices):
    gif = make_gif(gif_indices, vocab.palette)
    np.testing.assert_array_equal(
        encode_image(gif, vocab, image_stride=2), expected_grid(vocab, gif_indices[:, ::2, ::2])
    )
    assert encode_image(gif, vocab, image_stride=2).shape == (3, 2, 4)
    np.testing.assert_array_equal(encode_image(gif, vocab, frame_stride=2), expected_grid(vocab, gif_indices[::2]))
    np.testing.assert_array_equal(
        encode_image(gif, vocab, image_stride=3, frame_stride=3), expected_grid(vocab, gif_indices[::3, ::3, ::3])
    )
    with pytest.raises(ValueError):
        encode_image(gif, vocab, image_stride=0)
    with pytest.raises(ValueError):
        encode_image(gif, vocab, frame_stride=0)


def test_image_from_path(vocab, make_gif, gif_indices, tmp_path):
    path = tmp_path / "sprite.gif"
    save_image(path, [Image.fromarray(vocab.palette_array[f]) for f in gif_indices])
    np.testing.assert_array_equal(encode_image(path, vocab), expected_grid(vocab, gif_indices))
    np.testing.assert_array_equal(encode_image(str(path), vocab), expected_grid(vocab, gif_indices))
    with pytest.raises(ValueError, match="cannot read image"):
        encode_image(tmp_path / "missing.png", vocab)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        encode_image(tmp_path / "junk.png", vocab)


def test_image_type_error(vocab):
    with pytest.raises(TypeError):
        encode_image(12, vocab)


# --- PIL modes ------------------------------------------------------------------------------------
RGB_SMALL = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14


def check_frames(image, expected_rgb, vocab, background=(255, 255, 255)):
    frames = image_to_frames(image, background)
    np.testing.assert_array_equal(frames, np.asarray(expected_rgb, dtype=np.uint8)[None])
    np.testing.assert_array_equal(
        encode_image(image, vocab, background=background)[0, :, :-1],
        quantize_colors(np.asarray(expected_rgb, dtype=np.uint8), vocab) + 58,
    )


def test_mode_rgb(vocab):
    check_frames(Image.fromarray(RGB_SMALL, "RGB"), RGB_SMALL, vocab)


def test_mode_p_with_palette(vocab):
    idx = np.array([[0, 1, 2], [3, 4, 0]], dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    colours = [(10, 20, 30), (200, 0, 0), (0, 200, 0), (0, 0, 200), (250, 250, 5)]
    im.putpalette([v for c in colours for v in c])
    check_frames(im, np.array(colours, np.uint8)[idx], vocab)


def test_mode_l_and_1(vocab):
    grey = np.array([[0, 50, 100], [150, 200, 255]], dtype=np.uint8)
    check_frames(Image.fromarray(grey, "L"), np.repeat(grey[..., None], 3, -1), vocab)
    bw = Image.fromarray(grey, "L").convert("1", dither=Image.Dither.NONE)
    expected = np.repeat(np.where(grey >= 128, 255, 0).astype(np.uint8)[..., None], 3, -1)
    check_frames(bw, expected, vocab)


def test_mode_cmyk(vocab):
    im = Image.fromarray(RGB_SMALL, "RGB").convert("CMYK")
    assert im.mode == "CMYK"
    check_frames(im, RGB_SMALL, vocab)


def test_mode_rgba_composited_on_white_or_ignored(vocab):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = RGB_SMALL
    rgba[0, :, 3] = 255  # opaque row
    rgba[1, :, 3] = 0  # transparent row
    rgba[1, 2, 3] = 128  # one half-transparent pixel
    im = Image.fromarray(rgba, "RGBA")
    frames = image_to_frames(im)[0]
    np.testing.assert_array_equal(frames[0], RGB_SMALL[0])
    np.testing.assert_array_equal(frames[1, :2], 255)  # white background
    half = RGB_SMALL[1, 2].astype(float) * 128 / 255 + 255 * 127 / 255
    assert np.abs(frames[1, 2].astype(float) - half).max() <= 1
    # a custom background
    np.testing.assert_array_equal(image_to_frames(im, (10, 20, 30))[0, 1, 0], [10, 20, 30])
    # None: alpha ignored, plain convert("RGB")
    np.testing.assert_array_equal(image_to_frames(im, None)[0], RGB_SMALL)
    grid = encode_image(im, vocab)
    assert (grid[0, 1, :2] == 59).all()  # white -> (252, 252, 252)


def test_mode_la(vocab):
    la = np.zeros((1, 2, 2), dtype=np.uint8)
    la[0, :, 0] = [40, 40]
    la[0, :, 1] = [255, 0]
    im = Image.fromarray(la)
    assert im.mode == "LA"
    np.testing.assert_array_equal(image_to_frames(im)[0, 0], [[40, 40, 40], [255, 255, 255]])
    np.testing.assert_array_equal(image_to_frames(im, None)[0, 0], [[40, 40, 40], [40, 40, 40]])


def test_mode_16bit_png(vocab):
    values = np.array([[0, 257, 13000], [26000, 52000, 65535]], dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    buffer.seek(0)
    im = Image.open(buffer)
    assert im.mode.startswith("I")  # I;16 (or I on old Pillow)
    grey = np.rint(values / 257).astype(np.uint8)
    check_frames(im, np.repeat(grey[..., None], 3, -1), vocab)
    assert image_to_frames(im)[0].max() == 255  # scaled to 8 bits, not clipped


def test_palette_png_with_transparency(vocab):
    idx = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    buffer = io.BytesIO()
    im.save(buffer, "PNG", transparency=0)
    buffer.seek(0)
    png = Image.open(buffer)
    assert png.mode == "P" and "transparency" in png.info
    np.testing.assert_array_equal(image_to_frames(png)[0], [[[255] * 3, [200, 0, 0]], [[200, 0, 0], [255] * 3]])
    np.testing.assert_array_equal(image_to_frames(png, None)[0], [[[0] * 3, [200, 0, 0]], [[200, 0, 0], [0] * 3]])
    assert encode_image(png, vocab)[0, 0, 0] == 59
    assert encode_image(png, vocab, background=None)[0, 0, 0] == 58


def test_invalid_background(vocab):
    with pytest.raises(ValueError):
        image_to_frames(Image.new("RGB", (2, 2)), background=(1, 2))
    with pytest.raises(ValueError):
        image_to_frames(Image.new("RGB", (2, 2)), background=(1, 2, 300))


# --- sizes ----------------------------------------------------------------------------------------
def test_zero_size_image(vocab):
    with pytest.raises(ValueError):
        encode_image(Image.new("RGB", (0, 0)), vocab)
    with pytest.raises(ValueError):
        encode_image(Image.new("RGB", (3, 0)), vocab)
    with pytest.raises(ValueError):
        encode_image(np.zeros((0, 3, 3), dtype=np.uint8), vocab)
    with pytest.raises(ValueError):
        encode_image(np.zeros((0, 2, 2, 3), dtype=np.uint8), vocab)


def test_one_pixel_image(vocab):
    grid = encode_image(Image.new("RGB", (1, 1), (0, 120, 248)), vocab)
    assert grid.tolist() == [[[58 + 7, 2]]]
    assert encode_image(np.full((1, 1, 3), 255, np.uint8), vocab).tolist() == [[[59, 2]]]


def test_decompression_bomb_guard(vocab, make_gif, gif_indices):
    im = Image.new("RGB", (10, 10))
    with pytest.raises(ValueError, match="max_image_pixels"):
        encode_image(im, vocab, max_pixels=99)
    assert encode_image(im, vocab, max_pixels=100).shape == (1, 10, 11)
    gif = make_gif(gif_indices, vocab.palette)  # 3 frames x 4 x 5 = 60 pixels
    with pytest.raises(ValueError, match="max_image_pixels"):
        encode_image(gif, vocab, max_pixels=59)
    assert encode_image(gif, vocab, max_pixels=60).shape == (3, 4, 6)
    with pytest.raises(ValueError, match="max_image_pixels"):
        encode_image(np.zeros((3, 4, 5, 3), np.uint8), vocab, max_pixels=59)
    assert encode_image(im, vocab, max_pixels=None).shape == (1, 10, 11)


def test_decompression_bomb_guard_runs_before_decoding(vocab, tmp_path):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]  # header intact, pixel data cut
    # decoding it fails ...
    with pytest.raises(ValueError, match="truncated"):
        encode_image(Image.open(io.BytesIO(truncated)), vocab, max_pixels=None)
    # ... but the size check refuses it first, without touching the pixel data
    with pytest.raises(ValueError, match="max_image_pixels"):
        encode_image(Image.open(io.BytesIO(truncated)), vocab, max_pixels=100)
    path = tmp_path / "truncated.png"
    path.write_bytes(truncated)
    with pytest.raises(ValueError, match="max_image_pixels"):
        encode_image(path, vocab, max_pixels=100)


# --- numpy arrays ---------------------------------------------------------------------------------
def test_numpy_arrays(vocab):
    rng = np.random.default_rng(2)
    hw3 = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    grid = encode_image(hw3, vocab)
    assert grid.shape == (1, 4, 6)
    np.testing.assert_array_equal(grid[0, :, :5], reference_nearest(hw3, vocab.palette_array).reshape(4, 5) + 58)
    np.testing.assert_array_equal(grid, encode_image(Image.fromarray(hw3), vocab))
    fhw3 = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    grid = encode_image(fhw3, vocab)
    assert grid.shape == (3, 4, 6)
    np.testing.assert_array_equal(grid[1], encode_image(fhw3[1], vocab)[0])
    np.testing.assert_array_equal(encode_image(fhw3, vocab, frame_stride=2), grid[::2])
    grey = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(encode_image(grey, vocab), encode_image(Image.fromarray(grey, "L"), vocab))


def test_numpy_rgba_matches_pil(vocab):
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    pil = Image.fromarray(rgba, "RGBA")
    np.testing.assert_array_equal(image_to_frames(rgba), image_to_frames(pil))
    np.testing.assert_array_equal(image_to_frames(rgba, None), image_to_frames(pil, None))
    np.testing.assert_array_equal(image_to_frames(rgba)[0, 0, 0], [255, 255, 255])
    np.testing.assert_array_equal(encode_image(rgba, vocab), encode_image(pil, vocab))


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 5, 3), dtype=np.float32),
        np.zeros((4, 5, 3), dtype=np.uint16),
        np.zeros((4, 5, 3), dtype=bool),
        np.zeros((4, 5, 2), dtype=np.uint8),
        np.zeros((1, 2, 4, 5, 3), dtype=np.uint8),
        np.zeros(5, dtype=np.uint8),
    ],
)
def test_bad_numpy_images(vocab, array):
    with pytest.raises(ValueError):
        encode_image(array, vocab)


# ==================================================================================================
# Audio / action signals
# ==================================================================================================
def nearest_level_ids(values: np.ndarray, vocab) -> np.ndarray:
    """Hand reference: argmin distance to the level table (ties -> lower id), plus the level offset."""
    v = np.asarray(values, dtype=np.float64)
    return np.abs(v[..., None] - vocab.levels_array).argmin(-1) + vocab.level_offset


def test_stereo_minmax(vocab):
    x = np.array([[0.0, 1.0, 2.0], [4.0, 3.0, 2.0]])
    grid = encode_audio(x, vocab)
    assert grid.shape == (4, 1, 2)
    norm = np.array([[-1.0, -0.5, 0.0], [1.0, 0.5, 0.0]])  # one global min-max over both channels
    np.testing.assert_allclose(normalize_audio(x, "minmax"), norm)
    np.testing.assert_array_equal(grid[:3, 0, :], nearest_level_ids(norm, vocab).T)
    assert grid[3, 0].tolist() == [1, 2]
    assert grid[0, 0].tolist() == [113, 150]
    assert grid.reshape(-1).tolist()[:2] == [113, 150]  # interleaved per time step


def test_mono(vocab):
    x = np.array([0.0, 2.0, 1.0])
    grid = encode_audio(x, vocab, channels=1)
    assert grid.shape == (4, 1, 1)
    assert grid.reshape(-1).tolist() == [113, 150, *nearest_level_ids([0.0], vocab).tolist(), 1]
    np.testing.assert_array_equal(encode_audio(x[None], vocab, channels=1), grid)  # (1, N) is fine too


def test_three_channels_terminator(vocab):
    grid = encode_audio(np.zeros((3, 2)), vocab, channels=3)
    assert grid.shape == (3, 1, 3) and grid[-1, 0].tolist() == [1, 2, 2]


def test_zscore_hand_computed(vocab):
    x = np.array([[0.0, 0.0, 0.0, 3.0], [1.0, 2.0, 3.0, 4.0]])
    std0 = np.sqrt((3 * 0.75**2 + 2.25**2) / 4)
    std1 = np.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 4)
    expected = np.array(
        [
            [-0.75 / std0, -0.75 / std0, -0.75 / std0, 1.0],  # 2.25 / std0 = 1.73 is clamped
            [-1.0, -0.5 / std1, 0.5 / std1, 1.0],  # 1.5 / std1 = 1.34 is clamped
        ]
    )
    np.testing.assert_allclose(normalize_audio(x, "zscore"), expected)
    grid = encode_audio(x, vocab, normalization="zscore")
    np.testing.assert_array_equal(grid[:4, 0, :], nearest_level_ids(expected, vocab).T)


def test_none_normalization_clips(vocab):
    x = np.array([[-2.0, -0.5, 0.25, 3.0]])
    np.testing.assert_allclose(normalize_audio(x, "none"), [[-1.0, -0.5, 0.25, 1.0]])
    grid = encode_audio(x, vocab, channels=1, normalization="none")
    assert grid.reshape(-1).tolist() == [113, *nearest_level_ids([-0.5, 0.25], vocab).tolist(), 150, 1]


def test_unknown_normalization(vocab):
    with pytest.raises(ValueError, match="audio_normalization"):
        normalize_audio(np.zeros((2, 3)), "peak")
    with pytest.raises(ValueError):
        encode_audio(np.zeros((2, 3)), vocab, normalization="peak")


@pytest.mark.parametrize("mode", ["minmax", "zscore", "none"])
@pytest.mark.parametrize("value", [0.0, 0.7, -3.0])
def test_constant_clip_never_nan(vocab, mode, value):
    x = np.full((2, 6), value, dtype=np.float32)
    norm = normalize_audio(x, mode)
    assert np.isfinite(norm).all()
    grid = encode_audio(x, vocab, normalization=mode)
    body = grid[:-1].reshape(-1)
    assert len(set(body.tolist())) == 1
    assert 113 <= body[0] <= 150


def test_empty_clip(vocab):
    with pytest.raises(ValueError, match="empty"):
        encode_audio(np.zeros((2, 0), np.float32), vocab)
    with pytest.raises(ValueError, match="empty"):
        encode_audio(np.zeros(0, np.float32), vocab, channels=1)
    for mode in ("minmax", "zscore", "none"):
        assert normalize_audio(np.zeros((2, 0)), mode).shape == (2, 0)


def test_audio_stride(vocab):
    x = np.array([[0.0, 10.0, 5.0, 5.0, 2.5]])
    grid = encode_audio(x, vocab, channels=1, stride=2)
    # normalised over the whole clip (max 10 is dropped by the stride), then every 2nd step kept
    assert grid.reshape(-1).tolist() == [113, *nearest_level_ids([0.0, -0.5], vocab).tolist(), 1]
    assert encode_audio(np.zeros((2, 10)), vocab, stride=3).shape == (5, 1, 2)  # steps 0, 3, 6, 9 + terminator
    with pytest.raises(ValueError):
        encode_audio(x, vocab, channels=1, stride=0)


def test_mono_to_stereo_tokenizer_refuses_mono(vocab):
    with pytest.raises(ValueError, match="mono_to_stereo"):
        encode_audio(np.zeros(10), vocab, channels=2)


def test_channels_last_refused(vocab):
    with pytest.raises(ValueError, match="channels-last"):
        encode_audio(np.zeros((10, 2)), vocab, channels=2)


@pytest.mark.parametrize("shape", [(3, 10), (1, 10), (2, 3, 10), ()])
def test_bad_audio_shapes(vocab, shape):
    with pytest.raises(ValueError):
        encode_audio(np.zeros(shape), vocab, channels=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio(vocab, bad):
    x = np.zeros((2, 5))
    x[1, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        encode_audio(x, vocab)


def test_bad_audio_types(vocab):
    with pytest.raises(TypeError):
        encode_audio([0.1, 0.2], vocab, channels=1)
    with pytest.raises(ValueError):
        encode_audio(np.zeros((2, 3), dtype=bool), vocab)
    with pytest.raises(ValueError):
        encode_audio(np.zeros((2, 3), dtype=complex), vocab)
    with pytest.raises(ValueError):
        validate_audio({"sampling_rate": 16000}, 2)


def test_audio_dict_and_torch_inputs(vocab):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).normal(size=(2, 20)).astype(np.float32)
    grid = encode_audio(x, vocab)
    np.testing.assert_array_equal(encode_audio({"array": x}, vocab), grid)
    np.testing.assert_array_equal(encode_audio(torch.from_numpy(x), vocab), grid)


def test_int16_pcm(vocab):
    pcm = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    grid = encode_audio(pcm, vocab, channels=1, normalization="none")
    expected = nearest_level_ids(np.clip(pcm / 32767.0, -1, 1), vocab)
    assert grid.reshape(-1).tolist() == [*expected.tolist(), 1]
    assert grid[0, 0, 0] == 113 and grid[4, 0, 0] == 150
    # scaling does not change min-max normalised ids
    np.testing.assert_array_equal(
        encode_audio(pcm, vocab, channels=1), encode_audio(pcm.astype(np.float64), vocab, channels=1)
    )


def test_uint8_pcm_is_centred(vocab):
    pcm = np.array([0, 128, 255], dtype=np.uint8)  # 8-bit WAV: unsigned, 128 = silence
    x = validate_audio(pcm, 1)
    assert abs(float(x[0, 1])) < 0.01
    assert float(x[0, 0]) == pytest.approx(-1.0, abs=0.01)


def test_mono_stereo_helpers():
    x = np.arange(5.0)
    np.testing.assert_array_equal(mono_to_stereo(x), np.stack((x, x)))
    np.testing.assert_array_equal(mono_to_stereo(x[None]), np.stack((x, x)))
    np.testing.assert_array_equal(stereo_to_mono(np.stack((x, 3 * x))), 2 * x)
    with pytest.raises(ValueError):
        mono_to_stereo(np.zeros((2, 5)))
    with pytest.raises(ValueError):
        stereo_to_mono(np.zeros(5))


def test_quantize_levels_ties_and_unsorted():
    levels = np.array([-1.0, 0.0, 1.0])
    assert quantize_levels(np.array([-0.5, 0.5, 0.2, -2.0, 2.0]), levels).tolist() == [0, 1, 1, 0, 2]
    unsorted = np.array([1.0, -1.0, 0.0])
    x = np.random.default_rng(0).uniform(-1.5, 1.5, 100)
    np.testing.assert_array_equal(quantize_levels(x, unsorted), np.abs(x[:, None] - unsorted).argmin(1))


@given(st.lists(st.floats(-1.5, 1.5, allow_nan=False), min_size=1, max_size=50))
@settings(max_examples=100)
def test_quantize_levels_equals_argmin(values):
    levels = PxByVocabulary().levels_array
    x = np.array(values)
    np.testing.assert_array_equal(quantize_levels(x, levels), np.abs(x[:, None] - levels).argmin(1))


# --- resampling -----------------------------------------------------------------------------------
def test_resample_length_ratio():
    x = np.random.default_rng(0).normal(size=(2, 1000))
    assert resample_audio(x, 44100, 16000).shape == (2, 363)
    assert resample_audio(x, 8000, 16000).shape == (2, 2000)
    np.testing.assert_array_equal(resample_audio(x, 16000, 16000), x)
    assert resample_audio(np.zeros((2, 0)), 8000, 16000).shape == (2, 0)
    with pytest.raises(ValueError):
        resample_audio(x, 0, 16000)


@pytest.mark.parametrize(("orig", "target", "n"), [(8000, 16000, 800), (16000, 8000, 1600), (22050, 16000, 2205)])
def test_resample_preserves_low_frequency_sine(orig, target, n):
    freq = 100.0  # whole number of periods in every window (the FFT method assumes a periodic signal)
    t = np.arange(n) / orig
    x = np.stack((np.sin(2 * np.pi * freq * t), 0.5 * np.cos(2 * np.pi * freq * t)))
    y = resample_audio(x, orig, target)
    m = round(n * target / orig)
    assert y.shape == (2, m)
    tt = np.arange(m) / target
    np.testing.assert_allclose(y[0], np.sin(2 * np.pi * freq * tt), atol=1e-9)
    np.testing.assert_allclose(y[1], 0.5 * np.cos(2 * np.pi * freq * tt), atol=1e-9)


def test_resample_matches_scipy_odd_lengths():
    signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(1).normal(size=(2, 101))
    for m in (203, 51, 33):
        np.testing.assert_allclose(resample_audio(x, 101, m), signal.resample(x, m, axis=-1), atol=1e-12)


def test_resample_upsampling_even_length_nyquist():
    x = (-1.0) ** np.arange(8)  # a cosine at the Nyquist frequency
    y = resample_audio(x, 8, 16)
    np.testing.assert_allclose(y, np.cos(np.pi * np.arange(16) / 2), atol=1e-12)


def test_resample_downsampling_to_even_length_nyquist():
    x = np.cos(np.pi * np.arange(16) / 2)  # band-limited: frequency 4 cycles per 16 samples
    y = resample_audio(x, 16, 8)
    np.testing.assert_allclose(y, (-1.0) ** np.arange(8), atol=1e-12)


def test_encode_audio_resamples(vocab):
    x = np.random.default_rng(2).normal(size=(2, 100))
    assert encode_audio(x, vocab, sampling_rate=8000, target_rate=16000).shape == (201, 1, 2)
    assert encode_audio(x, vocab, sampling_rate=16000, target_rate=16000).shape == (101, 1, 2)
    assert encode_audio(x, vocab, sampling_rate=None, target_rate=16000).shape == (101, 1, 2)


# ==================================================================================================
# Decoding: decode(encode(x)) == quantised x, for every modality, no lost rows
# ==================================================================================================
def test_decode_text(vocab):
    ids, _ = encode_text("Hello, World! 123 (Pixel-Bytes): ok?", vocab)
    assert decode_stream(ids, vocab).texts == ["hello, world! 123 (pixel-bytes): ok"]


def test_decode_image_keeps_every_row(vocab):
    rng = np.random.default_rng(8)
    for shape in [(1, 1, 1), (1, 3, 4), (3, 4, 5), (2, 5, 1), (2, 1, 6)]:
        rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        grid = encode_image(rgb, vocab)
        decoded = decode_stream(grid.reshape(-1), vocab)
        assert decoded.texts == [] and decoded.audios == []
        assert len(decoded.images) == 1 and len(decoded.images[0]) == shape[0]
        quantised = vocab.palette_array[quantize_colors(rgb, vocab)]
        for frame, expected in zip(decoded.images[0], quantised):
            assert frame.shape == (shape[1], shape[2], 3) and frame.dtype == np.uint8
            np.testing.assert_array_equal(frame, expected)


@pytest.mark.parametrize("channels", [1, 2])
def test_decode_audio(vocab, channels):
    x = np.random.default_rng(9).normal(size=(channels, 37)).astype(np.float32)
    grid = encode_audio(x, vocab, channels=channels)
    decoded = decode_stream(grid.reshape(-1), vocab, audio_channels=channels)
    assert len(decoded.audios) == 1
    audio = decoded.audios[0]
    assert audio.shape == (channels, 37) and audio.dtype == np.float32
    np.testing.assert_array_equal(audio, vocab.levels_array[grid[:-1, 0, :].T - 113].astype(np.float32))


def test_decode_concatenated_sample(vocab):
    rng = np.random.default_rng(10)
    text, _ = encode_text("a cat", vocab)
    rgb = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    image = encode_image(rgb, vocab)
    audio = encode_audio(rng.normal(size=(2, 9)), vocab)
    stream = np.concatenate((text, image.reshape(-1), audio.reshape(-1)))
    decoded = decode_stream(stream, vocab)
    assert decoded.texts == ["a cat"]
    assert len(decoded.images) == 1 and len(decoded.images[0]) == 2
    np.testing.assert_array_equal(np.stack(decoded.images[0]), vocab.palette_array[image[..., :4] - 58])
    np.testing.assert_array_equal(decoded.audios[0], vocab.levels_array[audio[:-1, 0].T - 113].astype(np.float32))


def test_decode_rejects_ids_outside_vocabulary(vocab):
    with pytest.raises(ValueError):
        decode_stream([3, 151], vocab)
    with pytest.raises(ValueError):
        decode_stream([-1], vocab)
    empty = decode_stream([], vocab)
    assert empty.texts == [] and empty.images == [] and empty.audios == []


@given(st.lists(st.integers(0, 150), max_size=200), st.sampled_from([1, 2]))
@settings(max_examples=150)
def test_decode_garbage_never_crashes(ids, channels):
    vocab = PxByVocabulary()
    out = decode_stream(ids, vocab, audio_channels=channels)
    for frames in out.images:
        assert frames and all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    for audio in out.audios:
        assert audio.ndim == 2 and audio.shape[0] == channels
        assert np.isin(audio, vocab.levels_array.astype(np.float32)).all()
    assert all(isinstance(t, str) for t in out.texts)


# ==================================================================================================
# Saving
# ==================================================================================================
def test_save_wav(tmp_path):
    x = np.array([[0.0, 0.5, -1.0, 1.0], [0.25, -0.25, 2.0, -2.0]])
    save_wav(tmp_path / "a.wav", x, 8000)
    with wave.open(str(tmp_path / "a.wav"), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()) == (2, 2, 8000, 4)
        pcm = np.frombuffer(f.readframes(4), dtype="<i2").reshape(4, 2).T
    np.testing.assert_array_equal(pcm, np.rint(np.clip(x, -1, 1) * 32767))
    save_wav(tmp_path / "m.wav", x[0])
    with wave.open(str(tmp_path / "m.wav"), "rb") as f:
        assert (f.getnchannels(), f.getframerate(), f.getnframes()) == (1, 16000, 4)
    with pytest.raises(ValueError):
        save_wav(tmp_path / "bad.wav", np.zeros((1, 2, 3)))


def test_save_image(tmp_path, vocab):
    frames = [Image.fromarray(vocab.palette_array[np.full((3, 4), i)]) for i in (0, 7, 20)]
    save_image(tmp_path / "a.gif", frames)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (4, 3)
    save_image(tmp_path / "a.png", frames[1:2])
    with Image.open(tmp_path / "a.png") as png:
        assert png.format == "PNG" and png.size == (4, 3)
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), vocab.palette_array[np.full((3, 4), 7)])
    save_image(tmp_path / "one.gif", frames[:1])
    with Image.open(tmp_path / "one.gif") as gif:
        assert gif.format == "GIF"
    with pytest.raises(ValueError):
        save_image(tmp_path / "none.png", [])


# ==================================================================================================
# Fast paths: exact level quantiser, one-strip frame decoding, one-gather image ids, text normalisation
# ==================================================================================================
def argmin_levels(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The original definition: float64 absolute differences, argmin (ties → lower index)."""
    return np.abs(np.asarray(x, dtype=np.float64).reshape(-1)[:, None] - levels[None, :]).argmin(1)


def ulp_neighbours(values: np.ndarray, steps: int, dtype: type = np.float64) -> np.ndarray:
    """Every value and its ``steps`` nearest representable neighbours on both sides, in ``dtype``."""
    out = [np.asarray(values, dtype=dtype)]
    down = up = out[0]
    for _ in range(steps):
        down, up = np.nextafter(down, dtype(-np.inf)), np.nextafter(up, dtype(np.inf))
        out += [down, up]
    return np.concatenate(out)


@pytest.mark.parametrize(
    ("lo", "hi"), [(-1.0, -0.9459459459459459), (-1.0, 1.0), (-0.02702702702702703, 0.02702702702702703), (0.5, 0.75)]
)
def test_tie_threshold_is_the_last_value_choosing_lo(lo, hi):
    t = codecs._tie_threshold(lo, hi)
    assert abs(t - lo) <= abs(t - hi)
    after = float(np.nextafter(t, np.inf))
    assert not abs(after - lo) <= abs(after - hi)


def test_quantize_levels_exact_at_every_threshold_and_level():
    levels = PxByVocabulary().levels_array
    thresholds, even = codecs._level_thresholds(levels)
    assert even and len(thresholds) == len(levels) - 1
    # float64: every tie threshold and every level, +- 6 ulps
    x = ulp_neighbours(np.concatenate((thresholds, levels, [0.0, -1.5, 1.5])), 6)
    np.testing.assert_array_equal(quantize_levels(x, levels), argmin_levels(x, levels))
    # float32 input (the tokenizer's): the float32 neighbours of the thresholds and levels, compared in float64
    x32 = ulp_neighbours(np.concatenate((thresholds, levels)), 4, np.float32)
    np.testing.assert_array_equal(quantize_levels(x32, levels), argmin_levels(x32, levels))
    # exact decimal ties: the lower index wins
    assert quantize_levels(np.array([-0.5, 0.5, 0.0, -0.0, 1e-300]), np.array([-1.0, 0.0, 1.0])).tolist() == [
        0,
        1,
        1,
        1,
        1,
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_quantize_levels_random_and_shapes(dtype):
    levels = PxByVocabulary().levels_array
    rng = np.random.default_rng(3)
    x = (rng.uniform(-1.3, 1.3, (2, 5000)) * (20000 if dtype == np.int16 else 1)).astype(dtype)
    got = quantize_levels(x, levels)
    assert got.shape == x.shape
    np.testing.assert_array_equal(got.reshape(-1), argmin_levels(x, levels))


def test_quantize_levels_uneven_levels_and_non_finite_values():
    rng = np.random.default_rng(4)
    uneven = np.sort(rng.uniform(-1, 1, 17))
    thresholds, even = codecs._level_thresholds(uneven)
    assert not even
    x = np.concatenate((rng.uniform(-1.5, 1.5, 20000), ulp_neighbours(np.concatenate((thresholds, uneven)), 3)))
    np.testing.assert_array_equal(quantize_levels(x, uneven), argmin_levels(x, uneven))
    levels = PxByVocabulary().levels_array
    special = np.array([np.nan, np.inf, -np.inf, 0.3, 1e300])
    np.testing.assert_array_equal(quantize_levels(special, levels), argmin_levels(special, levels))


def test_encode_audio_narrow_dtype_equals_int64(vocab):
    audio = np.random.default_rng(5).normal(size=(2, 3001)).astype(np.float32)
    for stride in (1, 2, 3):
        wide = encode_audio(audio, vocab, stride=stride)
        narrow = encode_audio(audio, vocab, stride=stride, dtype=np.uint8)
        assert wide.dtype == np.int64 and narrow.dtype == np.uint8
        np.testing.assert_array_equal(narrow, wide)


def per_frame_reference(image: Image.Image, background, frame_stride=1, image_stride=1) -> np.ndarray:
    """The straightforward decoding: seek, then convert("RGB") (no background) or convert("RGBA") + composite."""
    frames = []
    for i in range(0, getattr(image, "n_frames", 1), frame_stride):
        image.seek(i)
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        if background is None or not has_alpha:
            rgb = np.asarray(image.convert("RGB"))
        else:
            rgba = np.asarray(image.convert("RGBA")).astype(np.uint16)
            a = rgba[..., 3:]
            rgb = ((rgba[..., :3] * a + np.asarray(background, np.uint16) * (255 - a) + 127) // 255).astype(np.uint8)
        frames.append(rgb)
    return np.stack(frames)[:, ::image_stride, ::image_stride]


def animated_gif(transparency: bool, frames: int = 7, size: tuple[int, int] = (9, 6)) -> Image.Image:
    rng = np.random.default_rng(11)
    palette = rng.integers(0, 256, 3 * 16).tolist()
    images = []
    for _ in range(frames):
        frame = Image.fromarray(rng.integers(0, 16, size[::-1], dtype=np.uint8), "P")
        frame.putpalette(palette)
        images.append(frame)
    buffer = io.BytesIO()
    extra = {"transparency": 0, "disposal": 2} if transparency else {}
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0, **extra)
    return Image.open(io.BytesIO(buffer.getvalue()))


def animated_rgba_png(frames: int = 5) -> Image.Image:
    rng = np.random.default_rng(12)
    arrays = rng.integers(0, 256, (frames, 5, 7, 4), dtype=np.uint8)
    arrays[..., 3] = rng.choice([0, 1, 77, 128, 254, 255], size=arrays.shape[:3])  # partial alpha everywhere
    images = [Image.fromarray(a, "RGBA") for a in arrays]
    buffer = io.BytesIO()
    images[0].save(buffer, "PNG", save_all=True, append_images=images[1:], duration=50, loop=0)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("background", [None, (255, 255, 255), (10, 200, 30)])
@pytest.mark.parametrize("make", [lambda: animated_gif(True), lambda: animated_gif(False), animated_rgba_png])
def test_strip_decoding_equals_per_frame_conversion(make, background, vocab):
    image = make()
    modes = set()
    for i in range(image.n_frames):
        image.seek(i)
        modes.add(image.mode)
    assert image.n_frames > 1 and len(modes) >= 1
    for frame_stride, image_stride in [(1, 1), (2, 2), (3, 1), (1, 2)]:
        expected = per_frame_reference(make(), background, frame_stride, image_stride)
        image = make()
        frames = image_to_frames(image, background, frame_stride)[:, ::image_stride, ::image_stride]
        np.testing.assert_array_equal(frames, expected)
        assert image.tell() == 0  # the caller's frame is restored
        grid = encode_image(make(), vocab, image_stride, frame_stride, background)
        np.testing.assert_array_equal(grid[:, :, :-1], quantize_colors(expected, vocab) + vocab.color_offset)
        assert (grid[:, :-1, -1] == 1).all() and (grid[:, -1, -1] == 2).all()
        narrow = encode_image(make(), vocab, image_stride, frame_stride, background, dtype=np.uint8)
        assert narrow.dtype == np.uint8
        np.testing.assert_array_equal(narrow, grid)


def test_image_ids_fill_the_table_lazily(vocab, monkeypatch):
    monkeypatch.setattr(codecs, "_ID_TABLES", {})
    monkeypatch.setattr(codecs, "_COLOR_CACHES", {})
    rgb = np.random.default_rng(13).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    expected = reference_nearest(rgb, vocab.palette_array).reshape(3, 20, 30) + vocab.color_offset
    first = encode_image(rgb, vocab)  # every colour is new
    np.testing.assert_array_equal(first[:, :, :-1], expected)
    again = encode_image(np.concatenate((rgb, rgb[:, ::-1])), vocab)  # served from the table
    np.testing.assert_array_equal(again[:3, :, :-1], expected)
    np.testing.assert_array_equal(again[3:, :, :-1], expected[:, ::-1])


def test_normalize_text_equals_its_definition():
    typographic = str.maketrans({**dict.fromkeys("‘’‚‛′", "'"), **dict.fromkeys("“”„‟″", '"'),
                                 **dict.fromkeys("‐‑‒–—−", "-")})  # fmt: skip
    rng = np.random.default_rng(14)
    alphabet = list("abcXYZ é\t\n\r\x0b\x0c\u2003\u00a0\u2028‘’“”–—−ß\u0301&?\x00Ω😀")
    for _ in range(3000):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 40))))
        expected = re.sub(r"\s", " ", unicodedata.normalize("NFKD", text.lower()).translate(typographic))
        norm = codecs.normalize_text(text)
        assert norm == expected, repr(text)
        vocab = PxByVocabulary()
        dropped = sum(1 for ch in norm if ord(ch) > 127 and not unicodedata.combining(ch))
        dropped += sum(1 for b in norm.encode("ascii", "ignore") if vocab.byte_to_id[b] <= 2)
        assert encode_text(text, vocab)[1] == dropped

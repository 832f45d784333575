"""The embedded demo dataset (pixelbytes.data.synthetic) and the caption → sprite metrics (pixelbytes.evaluation)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from pixelbytes import ActionPixelBytesTokenizer
from pixelbytes.codecs import quantize_levels
from pixelbytes.data import synthetic
from pixelbytes.data.synthetic import (
    ANIMATION_FRAMES,
    ANIMATIONS,
    BACKGROUNDS,
    COLOURS,
    DEMO_TOKENIZER_KWARGS,
    SHAPES,
    SIZES,
    SpriteSpec,
    all_specs,
    band_pass,
    demo_samples,
    heldout_pairs,
    make_demo_split,
    parse_caption,
    shape_mask,
)
from pixelbytes.evaluation.sprites import (
    blank_pixel_accuracy,
    chance_levels,
    color_correct,
    dominant_color,
    exact_match,
    mask_iou,
    pixel_accuracy,
    score_sprite,
    score_sprites,
    shape_correct,
)
from pixelbytes.vocabulary import DEFAULT_PALETTE

ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS), "size": SIZES,
              "animation": ANIMATIONS}  # fmt: skip


@pytest.fixture(scope="module")
def split():
    return make_demo_split()


@pytest.fixture(scope="module")
def demo_tok():
    return ActionPixelBytesTokenizer(**DEMO_TOKENIZER_KWARGS)


def _digest(chunks) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:16]


# ==================================================================================================
# Dataset
# ==================================================================================================
def test_deterministic_and_golden(split):
    train, heldout = split
    assert make_demo_split() == (train, heldout)
    a, b = demo_samples(train[:8]), demo_samples(train[:8])
    for x, y in zip(a, b):
        assert x["text"] == y["text"]
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["audio"], y["audio"])
    # Golden digests: the same data on every run and machine (update them only on purpose).
    assert _digest(s.caption.encode() + b"|" for s in train + heldout) == "80c6774e515b9124"
    specs = all_specs()
    assert _digest(s.render().tobytes() for s in specs) == "f4e7fe076cd4abab"
    assert _digest(s.sound().tobytes() for s in specs) == "4ece08af85d2a735"


def test_seed_changes_the_heldout_pairs():
    assert set(heldout_pairs(0)) != set(heldout_pairs(1))
    assert set(heldout_pairs(1)) == set(heldout_pairs(1))


def test_all_specs_and_frames_use_only_palette_colours():
    specs = all_specs()
    assert len(specs) == len(set(specs)) == 8 * 8 * 2 * 2 * 4
    palette = set(DEFAULT_PALETTE)
    for spec in specs:
        frames = spec.render()
        assert frames.dtype == np.uint8 and frames.shape == (ANIMATION_FRAMES[spec.animation], 16, 16, 3)
        used = {tuple(c) for c in np.unique(frames.reshape(-1, 3), axis=0).tolist()}
        assert used <= palette
        assert used <= {spec.colour_rgb, spec.background_rgb}
        assert spec.colour_rgb in used and spec.background_rgb in used
        np.testing.assert_array_equal((frames != spec.background_rgb).any(-1), spec.masks())


def test_shapes_are_distinct_and_sized():
    for size, width in (("small", 8), ("big", 12)):
        masks = {shape: shape_mask(shape, size) for shape in SHAPES}
        for mask in masks.values():
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert cols.max() - cols.min() + 1 == width
            assert 7 <= rows.max() - rows.min() + 1 <= width
        for a, b in itertools.combinations(SHAPES, 2):
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou <= 0.625, (size, a, b, iou)


def test_animations():
    heart = SpriteSpec("heart", "red", "black", "small", "static")
    base = heart.masks()[0]
    blink = dataclasses.replace(heart, animation="blinking").masks()
    np.testing.assert_array_equal(blink[0], base)
    assert not blink[1].any()
    moving = dataclasses.replace(heart, animation="moving").masks()
    np.testing.assert_array_equal(moving[1], np.roll(base, 2, axis=1))
    np.testing.assert_array_equal(moving[3], np.roll(base, -2, axis=1))
    spinning = dataclasses.replace(heart, animation="spinning").masks()
    np.testing.assert_array_equal(spinning[1], np.rot90(base, -1))
    assert len({m.tobytes() for m in spinning}) == 4


def test_captions_and_parse():
    assert SpriteSpec("heart", "red", "black", "small", "blinking").caption == "a small red heart blinking on black"
    assert SpriteSpec("ring", "blue", "white", "big", "static").caption == "a big blue ring on white"
    for spec in all_specs():
        assert parse_caption(spec.caption) == spec
    for bad in ("a red heart", "a big red heart static on black", "a huge red heart on black"):
        with pytest.raises(ValueError):
            parse_caption(bad)
    with pytest.raises(ValueError, match="colour"):
        SpriteSpec("heart", "mauve")


def test_sound():
    spec = SpriteSpec("square", "green", "black", "big", "static")
    audio = spec.sound()
    assert audio.shape == (2, 1024) and audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0
    np.testing.assert_allclose(audio[1], np.clip(0.55 * band_pass(audio[0].astype(np.float64)), -1, 1), atol=1e-6)
    assert spec.sound(8000).shape == (2, 512)

    def crossings(colour: str) -> int:
        x = dataclasses.replace(spec, colour=colour).sound()[0]
        return int((np.diff(np.sign(x[10:-10])) != 0).sum())

    # pitch rises with the colour order; envelope follows the animation; loudness the size
    pitches = [crossings(c) for c in COLOURS]
    assert pitches == sorted(pitches) and len(set(pitches)) == len(pitches)
    blink = dataclasses.replace(spec, animation="blinking").sound()
    assert not blink[0, 300:500].any() and np.abs(blink[0, :250]).max() > 0.8
    small = dataclasses.replace(spec, size="small").sound()
    assert np.abs(small[0]).max() < 0.6 < np.abs(audio[0]).max()
    assert len({s.sound().tobytes() for s in all_specs() if s.background == "black"}) == 512


def test_band_pass_response():
    t = np.arange(16000) / 16000

    def gain(freq: float) -> float:
        return float(np.abs(band_pass(np.sin(2 * np.pi * freq * t))[8000:]).max())

    assert gain(550) == pytest.approx(1.0, abs=0.02)
    assert 0.6 < gain(100) < 0.8 and 0.6 < gain(3000) < 0.8  # ≈ -3 dB at the band edges
    assert gain(20) < 0.2 and gain(7500) < 0.2


def test_split_holds_out_pairs_and_covers_every_attribute(split):
    train, heldout = split
    assert (len(train), len(heldout)) == (224, 32)
    train_pairs, held_pairs = {s.pair for s in train}, {s.pair for s in heldout}
    assert not train_pairs & held_pairs
    assert held_pairs == set(heldout_pairs())
    assert len(train_pairs) == 56 and len(held_pairs) == 8
    for name, values in ATTRIBUTES.items():
        assert {getattr(s, name) for s in train} == set(values), name
        assert {getattr(s, name) for s in heldout} == set(values), name
    # with the default 1/8: every shape and every colour is held out exactly once
    assert sorted(s for s, _ in held_pairs) == sorted(SHAPES)
    assert sorted(c for _, c in held_pairs) == sorted(COLOURS)
    # every pair has one sample per animation and every size × background once
    for pair in train_pairs | held_pairs:
        specs = [s for s in train + heldout if s.pair == pair]
        assert sorted(s.animation for s in specs) == sorted(ANIMATIONS)
        assert len({(s.size, s.background) for s in specs}) == 4
    smaller = make_demo_split(variants_per_pair=2, heldout_fraction=0.25)
    assert (len(smaller[0]), len(smaller[1])) == (96, 32)
    with pytest.raises(ValueError):
        make_demo_split(heldout_fraction=0.95)


def test_samples_and_token_lengths(split, demo_tok):
    train, heldout = split
    samples = demo_samples(train + heldout)
    assert set(samples[0]) == {"text", "image", "audio", "sampling_rate", *ATTRIBUTES}
    lengths = []
    for sample in samples:
        ids = demo_tok(text=sample["text"], images=sample["image"], audio=sample["audio"],
                       sampling_rate=sample["sampling_rate"])["input_ids"]  # fmt: skip
        lengths.append(len(ids))
    assert 300 <= min(lengths) and max(lengths) <= 1200
    assert 800 <= float(np.median(lengths)) <= 1000
    # audio part: 1024 samples / stride 32 = 32 steps (+ terminator) × 2 channels
    assert (1024 // DEMO_TOKENIZER_KWARGS["audio_stride"] + 1) * 2 <= 100


def test_tokenizer_round_trip(split, demo_tok):
    train, heldout = split
    stride = DEMO_TOKENIZER_KWARGS["audio_stride"]
    for sample in demo_samples(train[::7] + heldout[::3]):
        ids = demo_tok(text=sample["text"], images=sample["image"], audio=sample["audio"],
                       sampling_rate=sample["sampling_rate"])["input_ids"]  # fmt: skip
        out = demo_tok.decode_multimodal(ids)
        assert out.text == sample["text"]
        np.testing.assert_array_equal(np.stack([np.asarray(f) for f in out.frames]), sample["image"])
        assert out.audio.shape == (2, 1024 // stride)
        levels = demo_tok.vocabulary.levels_array
        expected = levels[quantize_levels(sample["audio"][:, ::stride], levels)]
        np.testing.assert_allclose(out.audio, expected, atol=1e-6)  # "none" normalisation keeps amplitudes


def test_no_heavy_imports_in_these_modules():
    """Pure numpy + PIL: no datasets / accelerate / scipy / soundfile imported by these modules."""
    root = Path(synthetic.__file__).parents[1]
    for path in (root / "data" / "synthetic.py", root / "evaluation" / "sprites.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}  # fmt: skip
        assert names <= {"__future__", "hashlib", "itertools", "math", "collections", "dataclasses", "typing",
                         "numpy"}, (path.name, names)  # fmt: skip


# ==================================================================================================
# Metrics
# ==================================================================================================
SPEC = SpriteSpec("heart", "red", "black", "big", "blinking")


def test_identical_sprites_score_one():
    ref = SPEC.render()
    bg = SPEC.background_rgb
    assert pixel_accuracy(ref, ref) == mask_iou(ref, ref, bg) == exact_match(ref, ref) == 1.0
    assert color_correct(ref, ref, bg) == 1.0
    scores = score_sprite(SPEC, ref.copy())
    assert {k: v for k, v in scores.items() if k != "blank_pixel_accuracy"} == dict.fromkeys(
        ["pixel_accuracy", "mask_iou", "color_accuracy", "shape_accuracy", "exact_match", "frame_count_accuracy"], 1.0
    )
    # PIL frames are accepted too
    from PIL import Image

    assert score_sprite(SPEC, [Image.fromarray(f) for f in ref])["exact_match"] == 1.0


def test_blob_of_the_right_colour_is_not_rewarded():
    ref = SPEC.render()
    blob = np.empty_like(ref)
    blob[...] = SPEC.colour_rgb
    scores = score_sprite(SPEC, blob)
    assert scores["color_accuracy"] == 1.0  # the colour is right...
    assert scores["mask_iou"] < 0.2  # ...but the mask is not
    assert scores["pixel_accuracy"] < 0.2 < scores["blank_pixel_accuracy"]
    assert scores["shape_accuracy"] == 0.0 and scores["exact_match"] == 0.0


def test_wrong_colour_and_wrong_shape():
    ref = SPEC.render()
    purple = dataclasses.replace(SPEC, colour="purple").render()
    scores = score_sprite(SPEC, purple)
    assert scores["color_accuracy"] == 0.0
    assert scores["shape_accuracy"] == scores["mask_iou"] == 1.0
    ring = dataclasses.replace(SPEC, shape="ring").render()
    scores = score_sprite(SPEC, ring)
    assert scores["color_accuracy"] == 1.0 and scores["shape_accuracy"] == 0.0 and scores["mask_iou"] < 0.5
    candidates = {s: dataclasses.replace(SPEC, shape=s).render() for s in SHAPES}  # frames work as candidates
    assert shape_correct(ring, SPEC.background_rgb, candidates, "ring") == 1.0
    assert shape_correct(ref[:, :, :, :] * 0, SPEC.background_rgb, candidates, "heart") == 0.0  # nothing drawn
    assert dominant_color(ref, SPEC.background_rgb) == SPEC.colour_rgb


def test_frame_count_and_size_mismatch():
    ref = SPEC.render()  # 2 frames
    assert pixel_accuracy(ref, ref[:1]) == pytest.approx(0.5)  # the missing frame counts as wrong
    assert exact_match(ref, ref[:1]) == 0.0
    assert mask_iou(ref, ref[:1], SPEC.background_rgb) == 1.0  # frame 2 of a blink is all background
    longer = np.concatenate([ref, ref[:1]])
    assert pixel_accuracy(ref, longer) == pytest.approx(2 / 3)
    assert score_sprite(SPEC, longer)["frame_count_accuracy"] == 0.0
    wide = np.concatenate([ref, ref[:, :, :1]], axis=2)  # one extra column
    assert pixel_accuracy(ref, wide) == pytest.approx(16 / 17) and exact_match(ref, wide) == 0.0
    nothing = score_sprite(SPEC, None)
    assert nothing["pixel_accuracy"] == nothing["mask_iou"] == nothing["color_accuracy"] == 0.0


def test_chance_levels_and_score_sprites():
    assert chance_levels() == {"color": 1 / len(COLOURS), "shape": 1 / len(SHAPES)}
    assert chance_levels(6, ["a", "b"]) == {"color": 1 / 6, "shape": 0.5}
    specs = [SPEC, SpriteSpec("ring", "blue", "white", "small", "static")]
    blank = np.empty_like(specs[1].render())
    blank[...] = specs[1].background_rgb
    result = score_sprites([(specs[0], specs[0].render()), (specs[1], blank)])
    assert result["count"] == 2
    assert result["exact_match"] == result["color_accuracy"] == result["shape_accuracy"] == 0.5
    assert result["pixel_accuracy"] == pytest.approx(
        (1 + blank_pixel_accuracy(specs[1].render(), specs[1].background_rgb)) / 2
    )
    assert result["color_chance"] == 1 / 8 and result["shape_chance"] == 1 / 8
    assert np.isnan(score_sprites([])["pixel_accuracy"])

"""Limits and bad input of the codecs and the tokenizer (issue #16): size caps saved with the tokenizer, clear
errors for non-finite pixels / overflowing audio / string rates / float ids / wrong masks, and a decode cap."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixelbytes import ActionPixelBytesTokenizer
from pixelbytes.codecs import (
    DEFAULT_MAX_AUDIO_SAMPLES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_RESAMPLE_RATIO,
    decode_stream,
    encode_audio,
    normalize_audio,
    resample_audio,
)
from pixelbytes.vocabulary import default_vocabulary


@pytest.fixture(scope="module")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


def noise(channels: int, n: int) -> np.ndarray:
    return np.random.default_rng(n).uniform(-1, 1, (channels, n)).astype(np.float32)


# -------------------------------------------------------------------------------------------------
# settings
# -------------------------------------------------------------------------------------------------
def test_limits_have_defaults_and_are_saved(tmp_path, tok):
    assert (tok.max_image_pixels, tok.max_audio_samples, tok.max_resample_ratio) == (
        DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_AUDIO_SAMPLES, DEFAULT_MAX_RESAMPLE_RATIO)  # fmt: skip
    assert DEFAULT_MAX_IMAGE_PIXELS == 1 << 21 and DEFAULT_MAX_AUDIO_SAMPLES == 1 << 20
    custom = ActionPixelBytesTokenizer(max_image_pixels=77, max_audio_samples=55, max_resample_ratio=3)
    custom.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (config["max_image_pixels"], config["max_audio_samples"], config["max_resample_ratio"]) == (77, 55, 3.0)
    loaded = ActionPixelBytesTokenizer.from_pretrained(tmp_path)
    assert (loaded.max_image_pixels, loaded.max_audio_samples, loaded.max_resample_ratio) == (77, 55, 3.0)
    unlimited = ActionPixelBytesTokenizer(max_image_pixels=None, max_audio_samples=None, max_resample_ratio=None)
    unlimited.save_pretrained(tmp_path / "none")
    loaded = ActionPixelBytesTokenizer.from_pretrained(tmp_path / "none")
    assert (loaded.max_image_pixels, loaded.max_audio_samples, loaded.max_resample_ratio) == (None, None, None)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_audio_samples": 0}, {"max_audio_samples": 2.5}, {"max_audio_samples": "10"}, {"max_image_pixels": True},
     {"max_resample_ratio": 0.5}, {"max_resample_ratio": float("inf")}, {"max_resample_ratio": "8"}],
)  # fmt: skip
def test_bad_limit_settings(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ActionPixelBytesTokenizer(**kwargs)


# -------------------------------------------------------------------------------------------------
# images
# -------------------------------------------------------------------------------------------------
def test_default_image_cap_refuses_a_small_file_of_many_pixels(tok):
    buffer = io.BytesIO()
    Image.new("L", (1449, 1449)).save(buffer, "PNG")  # a few KB, 2,099,601 pixels
    assert len(buffer.getvalue()) < 20_000
    with pytest.raises(ValueError, match="max_image_pixels=2097152"):
        tok(images=Image.open(io.BytesIO(buffer.getvalue())))
    edge = ActionPixelBytesTokenizer(max_image_pixels=1449 * 1449)
    assert len(edge(images=Image.open(io.BytesIO(buffer.getvalue())))["input_ids"]) == 1449 * 1450


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_image_is_an_error(tok, bad):
    image = Image.fromarray(np.array([[bad, 1.0], [2.0, 300.0]], dtype=np.float32), "F")
    with pytest.raises(ValueError, match="NaN or infinite pixel"):
        tok(images=image)
    finite = Image.fromarray(np.array([[0.0, 1.0], [2.0, 255.0]], dtype=np.float32), "F")
    assert len(tok(images=finite)["input_ids"]) == 6


# -------------------------------------------------------------------------------------------------
# audio
# -------------------------------------------------------------------------------------------------
def test_audio_sample_cap_counts_steps_after_resampling():
    tok = ActionPixelBytesTokenizer(max_audio_samples=100, audio_stride=4)
    assert len(tok(audio=noise(2, 100))["input_ids"]) == 2 * 25 + 2  # the cap is before audio_stride
    with pytest.raises(ValueError, match="101 time steps per channel exceeds max_audio_samples=100"):
        tok(audio=noise(2, 101))
    assert len(tok(audio=noise(2, 50), sampling_rate=8000)["input_ids"]) == 2 * 25 + 2  # 50 -> 100 steps
    with pytest.raises(ValueError, match="102 time steps per channel after resampling to 16000 Hz"):
        tok(audio=noise(2, 51), sampling_rate=8000)
    assert len(tok(audio=noise(2, 400), sampling_rate=64000)["input_ids"]) == 2 * 25 + 2  # 400 -> 100
    mono = ActionPixelBytesTokenizer(audio_channels=1, max_audio_samples=100)
    with pytest.raises(ValueError, match="max_audio_samples"):
        mono(audio=noise(1, 101)[0])


def test_resample_ratio_limit():
    tok = ActionPixelBytesTokenizer(max_resample_ratio=4)
    for rate in (4000, 64000, 16000, 5333.5):
        assert tok(audio=noise(2, 64), sampling_rate=rate)["input_ids"]
    for rate, direction in ((3999, "below"), (64001, "above")):
        with pytest.raises(ValueError, match=f"times {direction} the tokenizer's rate 16000, more than "
                                             "max_resample_ratio=4"):  # fmt: skip
            tok(audio=noise(2, 64), sampling_rate=rate)
    with pytest.raises(ValueError, match="max_resample_ratio=8"):  # 100 samples would become 1.6 million
        ActionPixelBytesTokenizer()(audio=noise(2, 100), sampling_rate=1)
    free = ActionPixelBytesTokenizer(max_resample_ratio=None, max_audio_samples=None)
    assert len(free(audio=noise(2, 10), sampling_rate=1000)["input_ids"]) == 2 * 160 + 2


@pytest.mark.parametrize(
    ("rate", "error", "message"),
    [("8000", TypeError, "sampling_rate must be a number.*str '8000'"), (True, TypeError, "sampling_rate"),
     (0, ValueError, "positive finite"), (-8000, ValueError, "positive finite"), (float("nan"), ValueError, "finite"),
     (float("inf"), ValueError, "finite")],
)  # fmt: skip
def test_bad_sampling_rates_are_clear_errors(tok, rate, error, message):
    with pytest.raises(error, match=message):
        tok(audio=noise(2, 10), sampling_rate=rate)
    with pytest.raises(error, match="orig_rate"):
        resample_audio(noise(2, 10), rate, 16000)


def test_float_and_numpy_rates_equal_the_int(tok):
    expected = tok(audio=noise(2, 30), sampling_rate=8000)["input_ids"]
    assert tok(audio=noise(2, 30), sampling_rate=8000.0)["input_ids"] == expected
    assert tok(audio=noise(2, 30), sampling_rate=np.int32(8000))["input_ids"] == expected


@pytest.mark.parametrize("mode", ["minmax", "zscore"])
@pytest.mark.parametrize(("dtype", "big"), [(np.float64, 1e308), (np.float64, 1e200), (np.float32, 3e38)])
def test_audio_whose_normalisation_overflows_keeps_its_levels(mode, dtype, big):
    """Values whose range / variance overflow the float type used to become NaN, then the lowest level."""
    vocab = default_vocabulary()
    x = np.array([[big, -big, 0.0, big / 2]] * 2, dtype=dtype)
    with np.errstate(all="raise"):  # no numpy warning either
        grid = encode_audio(x, vocab, normalization=mode)
    expected = encode_audio((x.astype(np.float64) / big), vocab, normalization=mode)
    np.testing.assert_array_equal(grid, expected)
    assert grid[:2, 0, 0].tolist() == [150, 113]  # the highest and the lowest level, not 113 everywhere
    assert np.isfinite(normalize_audio(x, mode)).all()


# -------------------------------------------------------------------------------------------------
# decoding
# -------------------------------------------------------------------------------------------------
def ragged_stream(rows: int, width: int) -> list[int]:
    """A malformed image: ``rows`` one-pixel rows, then one row ``width`` pixels wide (rows x width cells)."""
    return [60, 1] * rows + [61] * width + [2]


def test_decoding_a_ragged_stream_is_capped():
    ids = ragged_stream(40, 50)  # 91 colour tokens spanning a 41 x 50 frame
    small = ActionPixelBytesTokenizer(max_image_pixels=41 * 50 - 1)
    with pytest.raises(ValueError, match=r"1 frame\(s\) x 41 x 50 = 2050 pixels exceed max_image_pixels=2049"):
        small.decode_multimodal(ids)
    frames = ActionPixelBytesTokenizer(max_image_pixels=41 * 50).decode_multimodal(ids).frames
    assert len(frames) == 1 and frames[0].size == (50, 41)
    with pytest.raises(ValueError, match="max_image_pixels"):
        decode_stream(ids, default_vocabulary(), max_pixels=100)
    assert len(decode_stream(ids, default_vocabulary(), max_pixels=None).images) == 1


def test_decode_refuses_float_ids(tok):
    with pytest.raises(TypeError, match="integer token ids, got dtype float64"):
        tok.decode_multimodal([60.7, 61.2, 1.0, 2.0])
    with pytest.raises(TypeError, match="integer token ids, got dtype float32"):
        tok.decode_multimodal(torch.tensor([60.0, 2.0]))
    with pytest.raises(TypeError, match="must be integers"):
        decode_stream(np.array([60.0, 2.0]), default_vocabulary())
    assert tok.decode_multimodal(torch.tensor([[60, 61, 2]])).frames[0].size == (2, 1)


def test_decode_mask_must_match_the_stream(tok):
    ids = [0, 0, 60, 61, 2]
    with pytest.raises(ValueError, match=r"attention_mask of shape \(3,\) does not match the stream of 5"):
        tok.decode_multimodal(ids, attention_mask=[1, 1, 1])
    with pytest.raises(ValueError, match="attention_mask"):
        tok.decode_multimodal(ids, attention_mask=[[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="only 0 and 1"):
        tok.decode_multimodal(ids, attention_mask=[0, 0, 2, 1, 1])
    decoded = tok.decode_multimodal(torch.tensor([ids]), attention_mask=torch.tensor([[0, 0, 1, 1, 1]]))
    assert decoded.frames[0].size == (2, 1)
    assert tok.decode_multimodal(ids, attention_mask=np.array([False, False, True, True, True])).frames

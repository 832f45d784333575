"""ActionPixelBytesTokenizer: golden streams of the original tokenizer, HF text behaviour, multimodal calls,
serialisation, decoding, and the package import contract."""

from __future__ import annotations

import json
import pickle
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pixelbytes import ActionPixelBytesTokenizer, control_vocabulary
from pixelbytes.codecs import encode_audio, encode_image, encode_text
from pixelbytes.layout import batch_windows, stream_contexts
from pixelbytes.vocabulary import PxByVocabulary

GOLDEN_FILE = Path(__file__).parent / "fixtures" / "golden" / "tokenizer_golden.json"
GOLDEN = json.loads(GOLDEN_FILE.read_text())
README = Path(__file__).resolve().parents[1] / "README.md"


# ==================================================================================================
# Golden streams made by the original code
# ==================================================================================================
def golden_inputs(name: str, golden_dir: Path) -> dict:
    inputs: dict = {}
    if name.startswith("text"):
        inputs["text"] = GOLDEN["text"]
    if "gif" in name:
        inputs["images"] = Image.open(golden_dir / "image.gif")
    if "png" in name:
        inputs["images"] = Image.open(golden_dir / "image.png")
    if "stereo" in name:
        inputs["audio"] = np.load(golden_dir / "audio_stereo.npy")
    if "mono" in name:
        inputs["audio"] = np.load(golden_dir / "audio_mono.npy")
    return inputs


def image_continuation(image_ids: list[int]) -> list[int]:
    """Continuation context after an image block's last SEP, by hand: [0, X(F-1,0,0), X(F-1,1,0), 0, 0, 2]."""
    seps = [i for i, x in enumerate(image_ids) if x == 2]
    last_frame = image_ids[(seps[-2] + 1 if len(seps) > 1 else 0) :]
    rows = [i for i, x in enumerate(last_frame) if x in (1, 2)]
    second_row = last_frame[rows[0] + 1] if len(rows) > 1 else 0
    return [0, last_frame[0], second_row, 0, 0, 2]


@pytest.mark.parametrize("name", sorted(GOLDEN["cases"]))
def test_golden(name, golden_dir):
    case = GOLDEN["cases"][name]
    labels, original = case["labels"], np.array(case["contexts"])
    s = int(name.rsplit("slice", 1)[1])
    tok = ActionPixelBytesTokenizer(
        data_slicing={"image": s, "audio": s}, image_background=None, audio_channels=1 if "mono" in name else 2
    )
    enc = tok(**golden_inputs(name, golden_dir), return_context_ids=True)
    assert enc["input_ids"] == labels  # streams match the original exactly
    ours = np.array(enc["context_ids"])
    L = len(labels)
    assert ours.shape == original.shape == (L, 6)
    assert not original[0].any()
    expected = np.zeros((L, 6), dtype=np.int64)
    expected[: L - 1] = original[1:]  # context_ids[k] = the original's context of position k + 1
    levels = [k for k, x in enumerate(labels) if x >= 113]
    colours = [k for k, x in enumerate(labels) if 58 <= x < 113]
    if colours and levels:
        # the one documented difference: the audio block after the image's SEP gets the continuation context
        start = levels[0]
        assert not original[start].any()  # the original gave zeros
        expected[start - 1] = image_continuation(labels[colours[0] : start])
    if colours and not levels:
        expected[L - 1] = image_continuation(labels[colours[0] :])  # the image stays open after its last SEP
    np.testing.assert_array_equal(ours, expected)
    # the same contexts from the ids alone
    np.testing.assert_array_equal(tok.context_ids([labels])[0], expected)
    if name.startswith("text_slice"):
        assert tok(GOLDEN["text"])["input_ids"] == labels == tok.encode(GOLDEN["text"])


def test_golden_documented_difference_value(golden_dir):
    """text_gif_stereo: the first audio token's context, written out by hand."""
    tok = ActionPixelBytesTokenizer(data_slicing={"image": 1, "audio": 1}, image_background=None)
    labels = GOLDEN["cases"]["text_gif_stereo_slice1"]["labels"]
    enc = tok(**golden_inputs("text_gif_stereo_slice1", golden_dir), return_context_ids=True)
    start = next(k for k, x in enumerate(labels) if x >= 113)
    assert labels[start - 1] == 2
    # the GIF is 4 wide, 5 high: its last frame = the 5 rows of (4 colours + separator) before the audio
    last_frame = labels[start - 25 : start]
    assert last_frame[4::5] == [1, 1, 1, 1, 2]
    assert enc["context_ids"][start - 1] == [0, last_frame[0], last_frame[5], 0, 0, 2] == [0, 63, 100, 0, 0, 2]


# ==================================================================================================
# Hugging Face behaviour on text
# ==================================================================================================
def test_text_call(tok):
    enc = tok("hello")
    assert enc["input_ids"] == [39, 36, 43, 43, 46, 2]
    assert enc["attention_mask"] == [1] * 6
    assert "context_ids" not in enc
    assert tok.encode("hello") == [39, 36, 43, 43, 46, 2]
    assert tok.encode("hello", add_special_tokens=False) == [39, 36, 43, 43, 46]
    assert tok("a\tb\nc")["input_ids"] == [32, 3, 33, 3, 34, 2]  # separators typed in text are spaces
    assert tok.tokenize("Hi\tthere") == list("hi there")


def test_decode(tok):
    ids = tok.encode("Hello, World!")
    out = tok.decode(ids)
    assert isinstance(out, str) and out == "hello, world!\n"
    assert tok.decode(ids, skip_special_tokens=True) == "hello, world!"
    assert tok.decode(torch.tensor(ids), skip_special_tokens=True) == "hello, world!"
    assert tok.batch_decode([[39, 2], [40, 2]], skip_special_tokens=True) == ["h", "i"]
    assert tok.decode([39, 58, 113]) == "h<rgb:0,0,0><act:-1.0000>"
    with pytest.raises(ValueError):
        tok.decode([151])


def test_vocab_api(tok):
    assert tok.vocab_size == 151 and len(tok) == 151
    vocab = tok.get_vocab()
    assert len(vocab) == 151 and vocab["\x00"] == 0 and vocab["\t"] == 1 and vocab["\n"] == 2
    assert vocab["<rgb:120,120,120>"] == 112 and vocab["<act:+1.0000>"] == 150
    assert (tok.pad_token_id, tok.sep_token_id, tok.eos_token_id) == (0, 2, None)
    assert tok.convert_ids_to_tokens([58, 113, 2]) == ["<rgb:0,0,0>", "<act:-1.0000>", "\n"]
    assert tok.convert_tokens_to_ids(["<rgb:0,0,0>", "<act:-1.0000>", "a"]) == [58, 113, 32]
    with pytest.raises(ValueError):
        tok.convert_tokens_to_ids("<rgb:1,2,3>")
    assert tok.get_special_tokens_mask([39, 2, 0], already_has_special_tokens=True) == [0, 1, 1]


def test_text_batch_padding(tok):
    right = tok(["hello", "hi"], padding=True)
    assert right["input_ids"] == [[39, 36, 43, 43, 46, 2], [39, 40, 2, 0, 0, 0]]
    assert right["attention_mask"] == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    left = tok(["hello", "hi"], padding=True, padding_side="left")
    assert left["input_ids"] == [[39, 36, 43, 43, 46, 2], [0, 0, 0, 39, 40, 2]]
    assert left["attention_mask"] == [[1] * 6, [0, 0, 0, 1, 1, 1]]
    pt = tok(["hello", "hi"], padding=True, return_tensors="pt")
    assert pt["input_ids"].shape == (2, 6) and pt["attention_mask"].shape == (2, 6)
    assert pt["input_ids"].dtype == torch.long
    assert tok(["hello", "hi"])["input_ids"] == [[39, 36, 43, 43, 46, 2], [39, 40, 2]]


TEXTS = ["hello", "", "Héllo\tWörld\n?&#😀", "  spaces  ", "ÀÉÎÕÜ çñ", "123 (pixel-bytes): ok.", "a\x00b"]


@pytest.mark.parametrize("text", TEXTS)
def test_text_ids_identical_in_every_path(tok, text):
    ids = tok.encode(text)
    assert tok(text)["input_ids"] == ids
    assert tok(text=text, return_context_ids=True)["input_ids"] == ids
    assert tok([text])["input_ids"] == [ids]
    image = np.zeros((2, 2, 3), np.uint8)
    assert tok(text=text, images=image)["input_ids"][: len(ids)] == ids
    assert tok(text=text, audio=np.zeros((2, 3), np.float32))["input_ids"][: len(ids)] == ids
    assert ids == encode_text(text, tok.vocabulary)[0].tolist()


_TOK = ActionPixelBytesTokenizer()  # module-level: hypothesis tests cannot take function-scoped fixtures
_PIXEL = np.zeros((1, 1, 3), np.uint8)


@given(st.text(max_size=40))
@settings(max_examples=100)
def test_text_ids_identical_property(text):
    tok = _TOK
    ids = tok.encode(text)
    assert tok(text)["input_ids"] == ids
    assert tok(text=text, images=_PIXEL)["input_ids"][: len(ids)] == ids
    assert tok.decode(ids, skip_special_tokens=True) == tok.decode_multimodal(ids).text


# ==================================================================================================
# Multimodal calls
# ==================================================================================================
def make_sample(seed: int = 0, frames: int = 2, height: int = 3, width: int = 4, samples: int = 10):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    audio = rng.normal(size=(2, samples)).astype(np.float32)
    return image, audio


def test_multimodal_single(tok, vocab):
    image, audio = make_sample()
    enc = tok(text="a cat", images=image, audio=audio)
    expected = np.concatenate(
        (encode_text("a cat", vocab)[0], encode_image(image, vocab).reshape(-1), encode_audio(audio, vocab).reshape(-1))
    ).tolist()
    assert enc["input_ids"] == expected
    assert len(expected) == 6 + 2 * 3 * 5 + 11 * 2
    assert enc["attention_mask"] == [1] * len(expected)
    assert "context_ids" not in enc
    with_ctx = tok(text="a cat", images=image, audio=audio, return_context_ids=True)
    assert with_ctx["input_ids"] == expected
    ctx = np.array(with_ctx["context_ids"])
    assert ctx.shape == (len(expected), 6)
    np.testing.assert_array_equal(ctx, stream_contexts(expected, vocab.token_classes, 2)[1:])
    pt = tok(text="a cat", images=image, audio=audio, return_context_ids=True, return_tensors="pt")
    assert pt["input_ids"].shape == (1, len(expected)) and pt["context_ids"].shape == (1, len(expected), 6)
    assert pt["attention_mask"].shape == (1, len(expected))
    assert pt["input_ids"][0].tolist() == expected
    assert (
        tok(text="a cat", images=image, add_special_tokens=False)["input_ids"]
        == tok(text="a cat", images=image)["input_ids"]
    )  # a text followed by another block is always terminated
    assert "attention_mask" not in tok(images=image, return_attention_mask=False)


@pytest.mark.parametrize("side", ["left", "right"])
def test_multimodal_batch(tok, side):
    image, audio = make_sample(1)
    texts = ["a", None, "bcd"]
    images = [image, image[:1, :2], None]
    clips = [None, audio, audio[:, :3]]
    enc = tok(text=texts, images=images, audio=clips, return_context_ids=True, padding=True, padding_side=side)
    singles = [tok(text=t, images=i, audio=a, return_context_ids=True) for t, i, a in zip(texts, images, clips)]
    L = max(len(s["input_ids"]) for s in singles)
    assert len(enc["input_ids"]) == 3
    for b, single in enumerate(singles):
        n = len(single["input_ids"])
        ids, mask, ctx = enc["input_ids"][b], enc["attention_mask"][b], enc["context_ids"][b]
        assert len(ids) == len(mask) == len(ctx) == L
        real = slice(L - n, L) if side == "left" else slice(0, n)
        pad = slice(0, L - n) if side == "left" else slice(n, L)
        assert ids[real] == single["input_ids"] and ctx[real] == single["context_ids"]
        assert mask[real] == [1] * n and mask[pad] == [0] * (L - n)
        assert ids[pad] == [0] * (L - n) and ctx[pad] == [[0] * 6] * (L - n)
    pt = tok(text=texts, images=images, audio=clips, return_context_ids=True, padding=True, return_tensors="pt",
             padding_side=side)  # fmt: skip
    assert pt["input_ids"].shape == (3, L) and pt["context_ids"].shape == (3, L, 6)
    assert pt["input_ids"].tolist() == enc["input_ids"] and pt["context_ids"].tolist() == enc["context_ids"]
    # the ids-only derivation agrees on the padded batch
    np.testing.assert_array_equal(tok.context_ids(pt["input_ids"], pt["attention_mask"]), pt["context_ids"].numpy())
    np.testing.assert_array_equal(
        tok.window_ids(pt["input_ids"], pt["attention_mask"]),
        batch_windows(pt["input_ids"].numpy(), tok.token_classes, 2, pt["attention_mask"].numpy()),
    )


def test_batch_without_padding_and_padding_options(tok):
    image, _ = make_sample(2)
    unpadded = tok(text=["a", "bb"], images=[image, image])
    assert [len(x) for x in unpadded["input_ids"]] == [2 + 30, 3 + 30]
    with pytest.raises(ValueError, match="padding"):
        tok(text=["a", "bb"], images=[image, image], return_tensors="pt")
    multiple = tok(text=["a", "bb"], images=[image, image], padding=True, pad_to_multiple_of=16)
    assert all(len(x) == 48 for x in multiple["input_ids"])
    fixed = tok(text=["a", "bb"], images=[image, image], padding="max_length", max_length=50)
    assert all(len(x) == 50 for x in fixed["input_ids"])
    with pytest.raises(ValueError):
        tok(text=["a", "bb"], images=[image, image], padding="max_length")
    with pytest.raises(ValueError):
        tok(text=["a", "bb"], images=[image, image], padding=True, padding_side="middle")


def test_batch_errors(tok):
    image, audio = make_sample(3)
    with pytest.raises(ValueError):
        tok(text=["a", "b"], images=[image])  # different numbers of samples
    with pytest.raises(ValueError):
        tok(text=[None], images=[None], audio=[None], return_context_ids=True)  # an empty sample
    with pytest.raises(ValueError):
        tok(images=[])
    with pytest.raises(ValueError):
        tok(audio=[audio, audio], sampling_rate=[16000])


@pytest.mark.parametrize("max_length", [1, 5, 6, 20, 47, 200])
def test_truncation_keeps_context_prefix(tok, max_length):
    image, audio = make_sample(4)
    full = tok(text="hello", images=image, audio=audio, return_context_ids=True)
    cut = tok(text="hello", images=image, audio=audio, return_context_ids=True, truncation=True, max_length=max_length)
    assert cut["input_ids"] == full["input_ids"][:max_length]
    assert cut["context_ids"] == full["context_ids"][:max_length]
    assert cut["attention_mask"] == [1] * min(max_length, len(full["input_ids"]))


def test_sampling_rate(tok):
    x = np.random.default_rng(5).normal(size=(2, 50)).astype(np.float32)
    native = tok(audio=x)["input_ids"]
    assert len(native) == 51 * 2
    assert len(tok(audio=x, sampling_rate=16000)["input_ids"]) == 51 * 2
    assert len(tok(audio=x, sampling_rate=8000)["input_ids"]) == 101 * 2  # FFT-resampled to 16 kHz
    assert len(tok(audio={"array": x, "sampling_rate": 8000})["input_ids"]) == 101 * 2
    batch = tok(audio=[x, x], sampling_rate=[16000, 8000])["input_ids"]
    assert [len(b) for b in batch] == [102, 202]
    assert len(ActionPixelBytesTokenizer(sampling_rate=8000)(audio=x, sampling_rate=16000)["input_ids"]) == 26 * 2


def test_audio_errors_through_tokenizer(tok, tok_mono):
    with pytest.raises(ValueError, match="mono_to_stereo"):
        tok(audio=np.zeros(20, np.float32))
    with pytest.raises(ValueError, match="channels-last"):
        tok(audio=np.zeros((20, 2), np.float32))
    with pytest.raises(ValueError):
        tok(audio=np.zeros((2, 2, 20), np.float32))
    with pytest.raises(ValueError):
        tok(audio=np.full((2, 20), np.nan, np.float32))
    with pytest.raises(TypeError):
        tok(audio=[0.1, 0.2, 0.3])
    assert tok_mono(audio=np.zeros(4, np.float32))["input_ids"][-1] == 1
    assert tok(audio=np.zeros((2, 4), np.float32))["input_ids"][-2:] == [1, 2]


def test_image_settings_through_tokenizer():
    rgba = np.zeros((2, 2, 4), np.uint8)  # fully transparent black
    assert ActionPixelBytesTokenizer()(images=rgba)["input_ids"] == [59, 59, 1, 59, 59, 2]
    assert ActionPixelBytesTokenizer(image_background=None)(images=rgba)["input_ids"] == [58, 58, 1, 58, 58, 2]
    assert ActionPixelBytesTokenizer(image_background=(0, 120, 248))(images=rgba)["input_ids"][0] == 65
    small = ActionPixelBytesTokenizer(max_image_pixels=15)
    with pytest.raises(ValueError, match="max_image_pixels"):
        small(images=np.zeros((4, 4, 3), np.uint8))
    assert len(small(images=np.zeros((3, 5, 3), np.uint8))["input_ids"]) == 18


def test_data_slicing_sets_strides():
    tok = ActionPixelBytesTokenizer(data_slicing={"image": 2, "audio": 3})
    assert (tok.image_stride, tok.frame_stride, tok.audio_stride) == (2, 2, 3)
    tok = ActionPixelBytesTokenizer(data_slicing=2)
    assert (tok.image_stride, tok.frame_stride, tok.audio_stride) == (2, 2, 2)
    tok = ActionPixelBytesTokenizer(image_stride=2)
    assert (tok.image_stride, tok.frame_stride, tok.audio_stride) == (2, 1, 1)
    image, audio = make_sample(6, frames=3, height=4, width=5, samples=9)
    enc = ActionPixelBytesTokenizer(data_slicing={"image": 2, "audio": 3})(images=image, audio=audio)
    assert len(enc["input_ids"]) == 2 * 2 * 4 + 4 * 2  # frames 0, 2; rows 0, 2; cols 0, 2, 4 (+sep); steps 0, 3, 6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"audio_normalization": "peak"},
        {"image_stride": 0},
        {"frame_stride": 0},
        {"audio_stride": 0},
        {"audio_stride": 1.5},
        {"audio_channels": 0},
        {"sampling_rate": 0},
        {"data_slicing": {"image": 0}},
        {"data_slicing": {"video": 2}},
        {"image_background": (1, 2)},
        {"image_background": (0, 0, 256)},
        {"max_image_pixels": 0},
        {"vocabulary": control_vocabulary(), "vocab_file": "x.json"},
    ],
)
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        ActionPixelBytesTokenizer(**kwargs)


def test_unterminated_text_contexts(tok):
    enc = tok(text="hi", add_special_tokens=False, return_context_ids=True)
    assert enc["input_ids"] == [39, 40]
    assert enc["context_ids"] == [[0, 0, 0, 0, 0, 39], [0, 0, 0, 0, 0, 40]]


# ==================================================================================================
# Serialisation
# ==================================================================================================
def multimodal_ids(tok, seed=7):
    image, audio = make_sample(seed, frames=3, height=4, width=5, samples=12)
    audio = audio[: tok.audio_channels] if tok.audio_channels < 2 else audio
    enc = tok(text=["Héllo", "x"], images=[image, None], audio=[audio, audio], return_context_ids=True, padding=True)
    return enc["input_ids"], enc["context_ids"]


def test_save_and_load_default(tmp_path, tok):
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "pxby_vocab.json").is_file()
    data = json.loads((tmp_path / "pxby_vocab.json").read_text())
    assert PxByVocabulary.from_dict(data) == tok.vocabulary
    loaded = ActionPixelBytesTokenizer.from_pretrained(tmp_path)
    assert loaded.vocabulary == tok.vocabulary
    assert multimodal_ids(loaded) == multimodal_ids(tok)
    assert loaded("hello")["input_ids"] == [39, 36, 43, 43, 46, 2]
    assert (loaded.pad_token_id, loaded.sep_token_id, loaded.eos_token_id) == (0, 2, None)
    assert loaded.image_background == [255, 255, 255]


def test_save_and_load_control_vocabulary_with_settings(tmp_path):
    settings_ = {
        "image_stride": 2,
        "frame_stride": 3,
        "audio_stride": 2,
        "audio_normalization": "zscore",
        "audio_channels": 1,
        "sampling_rate": 8000,
        "image_background": None,
        "max_image_pixels": 12345,
    }
    tok = ActionPixelBytesTokenizer(vocabulary=control_vocabulary(), **settings_)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    for key, value in settings_.items():
        assert config[key] == value, key
    assert "vocabulary" not in config  # the tables live in pxby_vocab.json only
    vocab_data = json.loads((tmp_path / "pxby_vocab.json").read_text())
    assert vocab_data["bytes"] == [0, 9, 10, 48, 49] and len(vocab_data["levels"]) == 141
    loaded = ActionPixelBytesTokenizer.from_pretrained(tmp_path)
    assert loaded.vocabulary == control_vocabulary()
    for key, value in settings_.items():
        assert getattr(loaded, key) == value, key
    assert multimodal_ids(loaded) == multimodal_ids(tok)
    assert loaded.encode("0110 2") == [3, 4, 4, 3, 2]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2, 3]",
        json.dumps({"bytes": [0, 9, 10, 10], "palette": [[1, 2, 3]], "levels": [0, 1]}),
        json.dumps({"bytes": [0, 9, 10], "palette": [[1, 2, 3]]}),
        json.dumps({**control_vocabulary().to_dict(), "tokens": ["x"] * 151}),
    ],
)
def test_corrupted_vocab_file(tmp_path, tok, content):
    tok.save_pretrained(tmp_path)
    (tmp_path / "pxby_vocab.json").write_text(content)
    with pytest.raises(ValueError):
        ActionPixelBytesTokenizer.from_pretrained(tmp_path)


def test_vocab_file_argument(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(control_vocabulary().to_dict()))
    assert ActionPixelBytesTokenizer(vocab_file=str(path)).vocabulary == control_vocabulary()
    with pytest.raises(ValueError):
        ActionPixelBytesTokenizer(vocab_file=str(tmp_path / "missing.json"))


def test_pickle(tok):
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.vocabulary == tok.vocabulary
    assert multimodal_ids(clone) == multimodal_ids(tok)
    control = ActionPixelBytesTokenizer(vocabulary=control_vocabulary(), audio_channels=1)
    assert multimodal_ids(pickle.loads(pickle.dumps(control))) == multimodal_ids(control)


# ==================================================================================================
# Decoding
# ==================================================================================================
def test_decode_multimodal(tok, vocab, tmp_path):
    image, audio = make_sample(8, frames=3, height=4, width=5, samples=12)
    ids = tok(text="A cat!", images=image, audio=audio, return_tensors="pt")["input_ids"]
    out = tok.decode_multimodal(ids[0])
    assert out.text == "a cat!"
    assert len(out.images) == 1 and len(out.frames) == 3
    assert all(isinstance(f, Image.Image) and f.mode == "RGB" and f.size == (5, 4) for f in out.frames)
    quantised = encode_image(image, vocab)[..., :5] - 58
    for frame, q in zip(out.frames, quantised):
        np.testing.assert_array_equal(np.asarray(frame), vocab.palette_array[q])
    assert out.audio.shape == (2, 12) and out.audio.dtype == np.float32
    expected_audio = vocab.levels_array[encode_audio(audio, vocab)[:-1, 0].T - 113].astype(np.float32)
    np.testing.assert_array_equal(out.audio, expected_audio)
    assert out.sampling_rate == 16000
    assert tok.decode_multimodal(ids).text == "a cat!"  # (1, L) is accepted too

    out.save_image(tmp_path / "sprite.gif")
    with Image.open(tmp_path / "sprite.gif") as gif:
        assert gif.n_frames == 3 and gif.size == (5, 4)
        np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), np.asarray(out.frames[0]))
    single = tok.decode_multimodal(tok(images=image[0])["input_ids"])
    single.save_image(tmp_path / "sprite.png")
    with Image.open(tmp_path / "sprite.png") as png:
        assert png.format == "PNG" and png.size == (5, 4)
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), np.asarray(single.frames[0]))
    out.save_audio(tmp_path / "cry.wav")
    with wave.open(str(tmp_path / "cry.wav"), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (2, 2, 16000, 12)
        pcm = np.frombuffer(wav.readframes(12), dtype="<i2").reshape(12, 2).T
    np.testing.assert_array_equal(pcm, np.rint(out.audio.astype(np.float64) * 32767))


def test_decode_multimodal_strided_rate_and_missing_parts(tmp_path):
    tok = ActionPixelBytesTokenizer(audio_stride=4, audio_channels=1)
    out = tok.decode_multimodal(tok(text="hi", audio=np.linspace(-1, 1, 20))["input_ids"])
    assert out.text == "hi" and out.audio.shape == (1, 5) and out.sampling_rate == 4000
    assert out.images == [] and out.frames == []
    with pytest.raises(ValueError):
        out.save_image(tmp_path / "none.png")
    text_only = tok.decode_multimodal(tok.encode("hi"))
    assert text_only.audio is None
    with pytest.raises(ValueError):
        text_only.save_audio(tmp_path / "none.wav")


def test_decode_multimodal_left_padded_row(tok):
    image, audio = make_sample(9)
    enc = tok(text=["a", "longer text"], images=[image, None], audio=[audio, None], padding=True,
              padding_side="left", return_tensors="pt")  # fmt: skip
    alone = tok.decode_multimodal(tok(text="a", images=image, audio=audio)["input_ids"])
    for out in (tok.decode_multimodal(enc["input_ids"][0]),
                tok.decode_multimodal(enc["input_ids"][0], attention_mask=enc["attention_mask"][0])):  # fmt: skip
        assert out.text == alone.text == "a"
        assert len(out.frames) == len(alone.frames) == 2
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out.frames, alone.frames))
        np.testing.assert_array_equal(out.audio, alone.audio)
    right = tok(text=["a", "longer text"], padding=True)
    assert tok.decode_multimodal(right["input_ids"][0], attention_mask=right["attention_mask"][0]).text == "a"
    with pytest.raises(ValueError):
        tok.decode_multimodal(np.zeros((2, 3), np.int64))


def test_empty_clip_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="empty"):
        tok(audio=np.zeros((2, 0), np.float32))


def test_context_ids_method_equals_return_context_ids(tok):
    image, audio = make_sample(10)
    enc = tok(text=["x", None], images=[image, image[:1]], audio=[None, audio], return_context_ids=True,
              padding=True, padding_side="left", return_tensors="pt")  # fmt: skip
    derived = tok.context_ids(enc["input_ids"], enc["attention_mask"])
    assert derived.shape == tuple(enc["context_ids"].shape)
    np.testing.assert_array_equal(derived, enc["context_ids"].numpy())
    np.testing.assert_array_equal(
        tok.context_ids(enc["input_ids"][1:].tolist()), enc["context_ids"][1:].numpy()
    )  # unpadded row: no mask needed


# ==================================================================================================
# Package contract
# ==================================================================================================
# transformers' own model machinery imports accelerate / scipy whenever they are installed (that is outside this
# package's control); the contract checked here is that no pixelbytes module imports them and that the package
# works with all of them missing.
def test_pixelbytes_itself_imports_no_heavy_dependency(import_checks):
    """Whatever transformers imports by itself, no pixelbytes module imports a heavy package."""
    importers = json.loads(import_checks["import"])["importers"]
    assert not [name for name in importers if name.split(".")[0] == "pixelbytes"], importers


def test_import_works_without_optional_dependencies(import_checks):
    """With the optional packages made unimportable, the package and its tokenizer still work."""
    assert import_checks["blocked"] == "[39, 40, 2] 17"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:  # every python example of the README, in order
        exec(compile(block, str(README), "exec"), namespace)
    assert "tok" in namespace


def test_public_api():
    import pixelbytes

    for name in pixelbytes.__all__:
        assert hasattr(pixelbytes, name), name
    assert isinstance(pixelbytes.__version__, str)


# ==================================================================================================
# Narrow grid path (uint8 grids and contexts, one int64 cast) and tensor outputs
# ==================================================================================================
def test_assemble_blocks_narrow_and_aligned_equal_int64():
    from pixelbytes.layout import AUDIO, IMAGE, TEXT, assemble_blocks

    vocab = PxByVocabulary()
    rng = np.random.default_rng(21)
    image = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    one_row = rng.integers(0, 256, (2, 1, 6, 3), dtype=np.uint8)
    audio = rng.normal(size=(2, 9)).astype(np.float32)
    text = encode_text("hi", vocab)[0].reshape(1, 1, -1)
    cases = [
        [(TEXT, text), (IMAGE, encode_image(image, vocab)), (AUDIO, encode_audio(audio, vocab))],
        [(IMAGE, encode_image(image, vocab)), (AUDIO, encode_audio(audio, vocab))],  # H = 1 block after an image
        [(IMAGE, encode_image(one_row, vocab)), (TEXT, text)],  # one-row frames
        [(IMAGE, encode_image(image[:1], vocab))],
        [(AUDIO, encode_audio(audio[:, :1], vocab))],
    ]
    for blocks in cases:
        ids, ctx = assemble_blocks(blocks)
        assert ids.dtype == np.int64 and ctx.dtype == np.int64 and ctx.shape == (len(ids) + 1, 6)
        np.testing.assert_array_equal(ctx, stream_contexts(ids, vocab.token_classes, 2))
        narrow_blocks = [(kind, grid.astype(np.uint8)) for kind, grid in blocks]
        n_ids, n_ctx = assemble_blocks(narrow_blocks, hf_aligned=True, dtype=None)
        assert n_ids.dtype == np.uint8 and n_ctx.dtype == np.uint8
        np.testing.assert_array_equal(n_ids, ids)
        np.testing.assert_array_equal(n_ctx, ctx[1:])
        _, a_ctx = assemble_blocks(blocks, hf_aligned=True)
        assert a_ctx.dtype == np.int64 and a_ctx.flags.c_contiguous
        np.testing.assert_array_equal(a_ctx, ctx[1:])
    wide = [(IMAGE, encode_image(image, vocab) + 1000)]  # ids that need more than 8 bits stay exact
    w_ids, _ = assemble_blocks(wide, dtype=None)
    assert w_ids.dtype == np.uint16
    np.testing.assert_array_equal(w_ids, wide[0][1].reshape(-1))


def test_tensor_outputs_are_int64_and_equal(tok):
    image, audio = make_sample(4, frames=3, height=5, width=6, samples=40)
    lists = tok(text="tensors", images=image, audio=audio, return_context_ids=True)
    for kind in ("np", "pt"):
        enc = tok(text="tensors", images=image, audio=audio, return_context_ids=True, return_tensors=kind)
        for key in ("input_ids", "attention_mask", "context_ids"):
            value = enc[key]
            assert (value.dtype == np.int64) if kind == "np" else (value.dtype == torch.int64)
            assert np.asarray(value)[0].tolist() == lists[key]
    batch = tok(text=["a", "bb"], images=[image, image[:1]], audio=[audio, audio[:, :5]], return_context_ids=True,
                padding=True, return_tensors="pt")  # fmt: skip
    assert batch["context_ids"].dtype == torch.int64 and batch["context_ids"].shape[0] == 2

"""Folder-dataset row validation (wrong types, missing files, --strict) and the tokenised-store cache key
(issue #16): the cache is reused only while everything the tokens depend on is unchanged."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixelbytes
from folder_data import make_folder_dataset
from pixelbytes import ActionPixelBytesTokenizer, control_vocabulary
from pixelbytes.data import load_samples, tokenize_samples
from pixelbytes.data.loading import tokenization_fingerprint
from pixelbytes.training import DataArguments
from pixelbytes.training.trainer import build_window_datasets, resume_argument


def write_rows(folder: Path, rows: list) -> None:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder_dataset(tmp_path / "data", n=3, corrupt=False)


# -------------------------------------------------------------------------------------------------
# row validation
# -------------------------------------------------------------------------------------------------
BAD_ROWS = [
    ({"text": 123, "image": "images/0.gif"}, "'text' must be a string or null, got int '123'"),
    ({"text": "x", "image": "images/nope.gif"}, "image file 'images/nope.gif' not found"),
    ({"text": "x", "audio": ["audio/0.wav"]}, "'audio' must be a file path (string) or null, got list"),
    ({"text": None, "image": None}, "no text, image or audio"),
    ('{"text": "cut', "invalid JSON"),
    ("[1, 2]", "a row must be a JSON object, got list"),
]


def test_unusable_rows_are_skipped_with_file_line_and_reason(folder, caplog):
    good = [{"text": f"creature {i}", "image": f"images/{i}.gif", "audio": f"audio/{i}.wav"} for i in range(3)]
    write_rows(folder, [good[0], *[row for row, _ in BAD_ROWS], good[1], "", good[2]])
    with caplog.at_level(logging.WARNING):
        raw = load_samples(folder)
    assert raw["text"] == ["creature 0", "creature 1", "creature 2"]
    meta = folder / "metadata.jsonl"
    for line, (_, reason) in enumerate(BAD_ROWS, start=2):
        assert f"{meta}:{line}: {reason}" in caplog.text
    assert f"skipped 6 of 9 row(s) of {meta} (" in caplog.text
    assert "3 wrong type" in caplog.text and "1 missing file" in caplog.text and "1 invalid JSON" in caplog.text
    tokenized = tokenize_samples(raw, ActionPixelBytesTokenizer(audio_stride=8))  # the rest trains
    assert len(tokenized) == 3


def test_strict_makes_unusable_rows_an_error(folder):
    rows = [{"text": "ok", "image": "images/0.gif"}, {"text": 123}, {"image": "images/missing.gif"}]
    write_rows(folder, rows)
    with pytest.raises(ValueError, match=r"(?s)2 unusable row\(s\).*strict.*metadata.jsonl:2: 'text' must be a "
                                         r"string.*metadata.jsonl:3: image file"):  # fmt: skip
        load_samples(folder, strict=True)
    assert len(load_samples(folder)) == 1


def test_strict_makes_unreadable_files_an_error(folder):
    (folder / "images" / "bad.gif").write_bytes(b"GIF89a not really")
    write_rows(folder, [{"text": "ok", "image": "images/0.gif"}, {"text": "broken", "image": "images/bad.gif"}])
    tok = ActionPixelBytesTokenizer()
    assert len(tokenize_samples(load_samples(folder), tok)) == 1
    with pytest.raises(ValueError, match=r"sample 1: cannot decode image.*strict"):
        tokenize_samples(load_samples(folder, strict=True), tok, strict=True)


def test_a_row_of_the_wrong_type_no_longer_stops_training(folder, tmp_path):
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    write_rows(folder, [*rows, {"text": 123, "image": "images/0.gif"}])
    args = DataArguments(dataset=str(folder), seq_length=64, stride=48, audio_stride=8, validation_fraction=0)
    train, _ = build_window_datasets(args, ActionPixelBytesTokenizer(audio_stride=8))
    assert len(train.samples) == 3
    with pytest.raises(ValueError, match=r"metadata\.jsonl:4"):
        build_window_datasets(DataArguments(**{**vars(args), "strict": True}), ActionPixelBytesTokenizer())


# -------------------------------------------------------------------------------------------------
# cache key
# -------------------------------------------------------------------------------------------------
def cached_tokens(folder: Path, cache: Path, tok: ActionPixelBytesTokenizer) -> list[list[int]]:
    args = DataArguments(dataset=str(folder), seq_length=64, stride=48, validation_fraction=0,
                         tokenized_cache_dir=str(cache))  # fmt: skip
    train, _ = build_window_datasets(args, tok)
    store = train.samples.store
    return [store[i]["input_ids"].tolist() for i in range(len(store))]


def fresh_tokens(folder: Path, tok: ActionPixelBytesTokenizer) -> list[list[int]]:
    store = tokenize_samples(load_samples(folder), tok)
    return [store[i]["input_ids"].tolist() for i in range(len(store))]


@pytest.fixture
def counted(monkeypatch):
    """Counts the samples actually tokenised (0 when the cached store is reused)."""
    import pixelbytes.data.loading as loading

    calls = [0]
    original = loading._tokenize_one

    def counting(tokenizer, row):
        calls[0] += 1
        return original(tokenizer, row)

    monkeypatch.setattr(loading, "_tokenize_one", counting)
    return calls


def test_cache_is_reused_when_nothing_changed(folder, tmp_path, counted):
    tok = ActionPixelBytesTokenizer(audio_stride=8)
    first = cached_tokens(folder, tmp_path / "cache", tok)
    assert counted[0] == 3
    again = cached_tokens(folder, tmp_path / "cache", ActionPixelBytesTokenizer(audio_stride=8))
    assert counted[0] == 3 and again == first  # read back from the Arrow store, not tokenised again
    assert len(list((tmp_path / "cache").glob("tokenized-*.arrow"))) == 1


@pytest.mark.parametrize(
    "settings",
    [{"image_stride": 2}, {"audio_stride": 4}, {"audio_normalization": "zscore"}, {"data_slicing": {"image": 2,
     "audio": 8}}, {"frame_stride": 2}, {"vocabulary": control_vocabulary()}, {"max_image_pixels": 41}],
)  # fmt: skip
def test_each_tokenizer_setting_gives_new_tokens(folder, tmp_path, counted, settings):
    base = ActionPixelBytesTokenizer(audio_stride=8)
    before = cached_tokens(folder, tmp_path / "cache", base)
    changed = ActionPixelBytesTokenizer(**{"audio_stride": 8, **settings})
    after = cached_tokens(folder, tmp_path / "cache", changed)
    assert counted[0] == 6  # tokenised again
    assert after == fresh_tokens(folder, changed) and after != before


def test_editing_a_file_in_place_gives_new_tokens(folder, tmp_path, counted):
    tok = ActionPixelBytesTokenizer(audio_stride=8)
    before = cached_tokens(folder, tmp_path / "cache", tok)
    path = folder / "images" / "1.gif"
    stat = os.stat(path)
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(path)  # a 1-frame black sprite instead of 2 noisy frames
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # mtime moves even on a coarse clock
    after = cached_tokens(folder, tmp_path / "cache", tok)
    assert counted[0] == 6
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]
    assert after == fresh_tokens(folder, tok)


def test_same_size_edit_and_package_version_change_the_key(folder, monkeypatch):
    tok = ActionPixelBytesTokenizer()
    raw = load_samples(folder)
    key = tokenization_fingerprint(raw, tok)
    assert tokenization_fingerprint(load_samples(folder), ActionPixelBytesTokenizer()) == key  # stable
    path = folder / "audio" / "2.wav"
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5))  # same size, new mtime
    touched = tokenization_fingerprint(raw, tok)
    assert touched != key
    monkeypatch.setattr(pixelbytes, "__version__", pixelbytes.__version__ + ".post1")
    assert tokenization_fingerprint(raw, tok) != touched


# -------------------------------------------------------------------------------------------------
# --resume_from_checkpoint true
# -------------------------------------------------------------------------------------------------
def test_resume_argument():
    assert resume_argument("true") is True and resume_argument("True") is True and resume_argument(True) is True
    assert resume_argument("false") is None and resume_argument(None) is None
    assert resume_argument("runs/x/checkpoint-3") == "runs/x/checkpoint-3"

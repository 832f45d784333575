"""Grid positions ``(kind, t, r, c)`` of a stream: vectorised == incremental tracker, hand cases, batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import TrainingArguments

from folder_data import make_folder_dataset
from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
from pixelbytes.data import PxByDataCollator, PxByWindowDataset
from pixelbytes.layout import (
    AUDIO,
    IMAGE,
    TEXT,
    BatchLayoutTracker,
    LayoutTracker,
    batch_grid_positions,
    stream_contexts,
    stream_grid_positions,
)
from pixelbytes.training import DataArguments, ModelArguments, run_training
from pixelbytes.vocabulary import default_vocabulary
from test_layout import any_stream, channels
from tiny_models import tiny_model

VOCAB = default_vocabulary()
CLASSES = np.asarray(VOCAB.token_classes)


def tracked_positions(ids, W):
    tracker = LayoutTracker(CLASSES, W)
    rows = [tracker.grid_position()]
    for token in ids:
        tracker.push(token)
        rows.append(tracker.grid_position())
    return np.array(rows, dtype=np.int64).reshape(len(ids) + 1, 4)


@given(any_stream, channels)
@settings(max_examples=300)
def test_vectorised_equals_tracker(ids, W):
    np.testing.assert_array_equal(stream_grid_positions(ids, CLASSES, W), tracked_positions(ids, W))


@given(any_stream.filter(len), st.data(), channels)
@settings(max_examples=150)
def test_positions_never_look_ahead(ids, data, W):
    k = data.draw(st.integers(0, len(ids) - 1))
    changed = list(ids)
    changed[k] = data.draw(st.integers(0, 150))
    before = stream_grid_positions(ids, CLASSES, W)
    after = stream_grid_positions(changed, CLASSES, W)
    np.testing.assert_array_equal(before[: k + 1], after[: k + 1])


def test_hand_case_text_image_audio():
    tok = ActionPixelBytesTokenizer()
    c = tok.vocabulary.color_offset
    lv = tok.vocabulary.level_offset
    ids = [tok.vocabulary.byte_to_id[ord("h")], tok.vocabulary.byte_to_id[ord("i")], 2]  # "hi" SEP
    ids += [c, c + 1, 1, c + 2, c + 3, 1, 2]  # one 2×2 frame
    ids += [lv, lv + 1, lv + 2, 2]  # two stereo steps, the last one terminated
    got = stream_grid_positions(ids, CLASSES, 2)
    expected = [
        [0, 0, 0, 0],  # "h" opens a text block
        [TEXT, 0, 0, 1],
        [TEXT, 0, 0, 2],  # SEP of the text
        [0, 0, 0, 0],  # fresh: first colour
        [IMAGE, 0, 0, 1],
        [IMAGE, 0, 0, 2],  # ROW
        [IMAGE, 0, 1, 0],
        [IMAGE, 0, 1, 1],
        [IMAGE, 0, 1, 2],  # ROW
        [IMAGE, 0, 2, 0],  # SEP ends the frame
        [IMAGE, 1, 0, 0],  # a level after the frame's SEP opens an audio block there
        [AUDIO, 0, 0, 1],
        [AUDIO, 1, 0, 0],
        [AUDIO, 1, 0, 1],
        [0, 0, 0, 0],  # the terminated audio frame closes the block
    ]
    np.testing.assert_array_equal(got, expected)


def test_rows_align_with_contexts():
    ids = [60, 61, 1, 62, 63, 1, 2, 64]
    assert stream_grid_positions(ids, CLASSES, 2).shape == stream_contexts(ids, CLASSES, 2).shape[:1] + (4,)


def test_batch_positions_honour_padding_and_match_tracker():
    rows = [[60, 61, 1, 62, 63, 1, 2], [5, 6, 2, 70, 71, 1]]
    width = 9
    ids = np.zeros((2, width), dtype=np.int64)
    mask = np.zeros((2, width), dtype=np.int64)
    ids[0, width - 7 :], mask[0, width - 7 :] = rows[0], 1  # left padded
    ids[1, :6], mask[1, :6] = rows[1], 1  # right padded
    got = batch_grid_positions(ids, CLASSES, 2, mask)
    np.testing.assert_array_equal(got[0, width - 7 :], stream_grid_positions(rows[0], CLASSES, 2)[1:])
    np.testing.assert_array_equal(got[1, :6], stream_grid_positions(rows[1], CLASSES, 2)[1:])
    assert not got[0, : width - 7].any() and not got[1, 6:].any()
    tracker = BatchLayoutTracker(CLASSES, 2, 2)
    tracker.push_sequence(ids, mask)
    np.testing.assert_array_equal(
        tracker.grid_positions(), [stream_grid_positions(r, CLASSES, 2)[-1] for r in rows]
    )


def test_empty_stream():
    np.testing.assert_array_equal(stream_grid_positions([], CLASSES, 2), np.zeros((1, 4), dtype=np.int64))


# ==================================================================================================
# the grid-position embedding in the model
# ==================================================================================================
def _sprite_stream(tok):
    rng = np.random.default_rng(0)
    sprite = rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    return tok(text="a sprite", images=sprite, return_tensors="pt")["input_ids"]


@pytest.mark.parametrize("backbone", ["lstm", "attention", "mamba"])
def test_cached_steps_equal_full_forward_with_positions(backbone):
    tok = ActionPixelBytesTokenizer()
    stream = _sprite_stream(tok)
    model = tiny_model(seed=5, backbone=backbone, grid_position_size=8)
    L = stream.shape[1]
    with torch.no_grad():
        full = model(input_ids=stream).logits
        for split in (1, 12, L - 3):
            prefix = model(input_ids=stream[:, :split], use_cache=True)
            step = model(input_ids=stream[:, split : split + 1], cache=prefix.cache)
            torch.testing.assert_close(step.logits[:, 0], full[:, split], atol=1e-5, rtol=1e-5)
            rest = model(input_ids=stream[:, split + 1 :], cache=step.cache, use_cache=True)
            torch.testing.assert_close(rest.logits, full[:, split + 1 :], atol=1e-5, rtol=1e-5)


def test_positions_change_the_model_and_given_equals_derived():
    tok = ActionPixelBytesTokenizer()
    stream = _sprite_stream(tok)
    model = tiny_model(seed=6, grid_position_size=8)
    plain = tiny_model(seed=6)
    with torch.no_grad():
        derived = model(input_ids=stream).logits
        given_positions = model(
            input_ids=stream, grid_positions=torch.from_numpy(batch_grid_positions(stream.numpy(), CLASSES, 2))
        ).logits
        assert torch.equal(derived, given_positions)
        assert not torch.allclose(derived, plain(input_ids=stream).logits)
        # only the image part can differ between two models that differ in their image-position tables
        model.embeddings.grid.row.weight.add_(1.0)
        moved = model(input_ids=stream).logits
    first_colour = int((stream[0] >= tok.vocabulary.color_offset).nonzero()[0])
    torch.testing.assert_close(moved[:, :first_colour], derived[:, :first_colour])
    assert not torch.allclose(moved[:, first_colour:], derived[:, first_colour:])


def test_cached_greedy_with_positions_equals_recompute_left_padded():
    tok = ActionPixelBytesTokenizer()
    model = tiny_model(seed=7, grid_position_size=6)
    batch = tok(["a red heart", "hi"], padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**batch, max_new_tokens=30, do_sample=False)
        recomputed = model.generate(**batch, max_new_tokens=30, do_sample=False, use_cache=False)
    assert torch.equal(cached, recomputed)


def test_positions_survive_save_load(tmp_path):
    tok = ActionPixelBytesTokenizer()
    stream = _sprite_stream(tok)
    model = tiny_model(seed=8, grid_position_size=4)
    model.save_pretrained(tmp_path)
    loaded = PxBySequenceModel.from_pretrained(tmp_path).eval()
    assert loaded.config.grid_position_size == 4
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=stream).logits, model(input_ids=stream).logits)


def test_bad_grid_positions():
    model = tiny_model(grid_position_size=4)
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="grid_positions must have shape"):
        model(input_ids=ids, grid_positions=torch.zeros(1, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="kinds in"):
        model(input_ids=ids, grid_positions=torch.full((1, 3, 4), 7, dtype=torch.long))
    with pytest.raises(ValueError, match="grid_position_size=0"):
        tiny_model()(input_ids=ids, grid_positions=torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative integer"):
        PxByConfig(grid_position_size=-1)
    with pytest.raises(ValueError, match="diffusion"):
        PxByConfig(grid_position_size=4, objective="diffusion", bidirectional=True)


# ==================================================================================================
# data windows, collator and the Trainer path
# ==================================================================================================
def test_window_positions_are_slices_of_whole_sample_positions():
    tok = ActionPixelBytesTokenizer(audio_stride=8)
    rng = np.random.default_rng(1)
    samples = []
    for n in (3, 5):
        enc = tok(text="sprite " * n, images=rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8),
                  return_context_ids=True, return_tensors="np")  # fmt: skip
        samples.append({"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]})
    lengths = [len(s["input_ids"]) for s in samples]
    dataset = PxByWindowDataset(samples, lengths, seq_length=40, stride=25, position_layout=(CLASSES, 2))
    assert len(dataset) > len(samples)
    for i in range(len(dataset)):
        owner, start, end, _ = dataset.index[i]
        whole = stream_grid_positions(samples[owner]["input_ids"], CLASSES, 2)[1:]
        np.testing.assert_array_equal(dataset[i]["grid_positions"].numpy(), whole[start:end])
    assert "grid_positions" not in PxByWindowDataset(samples, lengths, 40, 25)[0]
    batch = PxByDataCollator(padding_side="left")([dataset[0], dataset[len(dataset) - 1]])
    assert batch["grid_positions"].shape == (*batch["input_ids"].shape, 4)
    assert not batch["grid_positions"][batch["attention_mask"] == 0].any()


def test_trainer_trains_a_model_with_grid_positions(tmp_path):
    data_dir = make_folder_dataset(tmp_path / "data")
    model_args = ModelArguments(embed_size=12, hidden_size=16, num_hidden_layers=1, grid_position_size=8)
    data_args = DataArguments(dataset=str(data_dir), seq_length=64, stride=48, audio_stride=8,
                              validation_fraction=0.34)  # fmt: skip
    training_args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=2, learning_rate=1e-2,
        eval_strategy="no", report_to="none", save_strategy="no", use_cpu=True, dataloader_num_workers=0,
    )  # fmt: skip
    metrics = run_training(model_args, data_args, training_args)
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["eval_loss"])
    loaded = PxBySequenceModel.from_pretrained(tmp_path / "out")
    assert loaded.config.grid_position_size == 8
    assert loaded.embeddings.grid.row.weight.abs().sum() > 0

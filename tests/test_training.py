"""Data windows, collator, dataset loading and the Trainer path (next_token / context, resume)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from folder_data import make_folder_dataset
from pixelbytes import ActionPixelBytesTokenizer
from pixelbytes.data import PxByDataCollator, PxByWindowDataset, load_samples, tokenize_samples, window_spans
from pixelbytes.training import DataArguments, ModelArguments, run_training, target_modalities


# -------------------------------------------------------------------------------------------------
# windows and collator
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 2, 5, 16, 17, 33, 100])
@pytest.mark.parametrize(("seq_length", "stride"), [(16, 8), (16, 15), (16, 1), (2, 1)])
def test_windows_label_every_token_but_the_first_exactly_once(length, seq_length, stride):
    spans = window_spans(length, seq_length, stride)
    labelled = np.zeros(length, dtype=int)
    for start, end, first in spans:
        assert 0 <= start < end <= length and end - start <= seq_length
        assert start + 1 <= first <= end
        labelled[first:end] += 1
    assert labelled[0] == 0
    assert (labelled[1:] == 1).all()
    if length > seq_length:
        assert spans[-1][1] == length  # the last window is aligned to the end


@pytest.mark.parametrize(("seq_length", "stride"), [(1, 1), (16, 16), (16, 0), (16, 20)])
def test_bad_window_arguments(seq_length, stride):
    with pytest.raises(ValueError, match=r"seq_length|stride"):
        window_spans(10, seq_length, stride)


def _store(tok, n=3):
    rng = np.random.default_rng(0)
    store = []
    for i in range(n):
        sprite = rng.integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
        enc = tok(text=f"sample {i}", images=sprite, audio=rng.uniform(-1, 1, (2, 9 + i)).astype(np.float32),
                  return_context_ids=True, return_tensors="np")  # fmt: skip
        store.append({"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]})
    return store


def test_window_contexts_are_slices_of_whole_sample_contexts():
    tok = ActionPixelBytesTokenizer()
    store = _store(tok)
    lengths = [len(s["input_ids"]) for s in store]
    dataset = PxByWindowDataset(store, lengths, seq_length=20, stride=13)
    seen = [np.zeros(n, dtype=int) for n in lengths]
    for i in range(len(dataset)):
        sample_idx, start, end, _ = dataset.index[i]
        item = dataset[i]
        whole = store[sample_idx]
        assert torch.equal(item["input_ids"], torch.from_numpy(whole["input_ids"][start:end]))
        assert torch.equal(item["context_ids"], torch.from_numpy(whole["context_ids"][start:end]))
        labelled = (item["labels"] != -100).numpy()
        assert (item["labels"][labelled] == item["input_ids"][labelled]).all()
        seen[sample_idx][start:end] += labelled
    for counts in seen:
        assert counts[0] == 0 and (counts[1:] == 1).all()


@pytest.mark.parametrize("side", ["left", "right"])
def test_collator_pads_and_masks(side):
    tok = ActionPixelBytesTokenizer()
    store = _store(tok)
    dataset = PxByWindowDataset(store, [len(s["input_ids"]) for s in store], seq_length=50, stride=25)
    items = [dataset[0], dataset[len(dataset) - 1]]
    batch = PxByDataCollator(pad_to_multiple_of=8, padding_side=side)(items)
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and batch["context_ids"].shape == (2, width, 6)
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        real = slice(0, n) if side == "right" else slice(width - n, width)
        assert torch.equal(batch["input_ids"][row, real], item["input_ids"])
        assert torch.equal(batch["context_ids"][row, real], item["context_ids"])
        assert batch["attention_mask"][row].sum() == n
        assert (batch["labels"][row][batch["attention_mask"][row] == 0] == -100).all()
        assert (batch["context_ids"][row][batch["attention_mask"][row] == 0] == 0).all()


def test_target_modalities():
    tok = ActionPixelBytesTokenizer()
    labels = np.array([[39, 40, 2, 60, 61, 1, 60, 2, 120, 121, 1, 2, -100]])
    assert target_modalities(labels, tok.token_classes).tolist() == [[0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, -1]]


# -------------------------------------------------------------------------------------------------
# loading a local folder (with corrupt files)
# -------------------------------------------------------------------------------------------------
@pytest.fixture
def folder_dataset(tmp_path):
    return make_folder_dataset(tmp_path / "data")


def test_folder_loading_skips_corrupt_items(folder_dataset, caplog):
    tok = ActionPixelBytesTokenizer(audio_stride=4)
    raw = load_samples(folder_dataset)
    assert set(raw.column_names) == {"text", "image", "audio"}
    with caplog.at_level(logging.WARNING):
        store = tokenize_samples(raw, tok)
    assert len(store) == 6
    assert "skipped 2 unreadable sample(s)" in caplog.text
    first = store[0]
    assert first["context_ids"].reshape(-1, 6).shape[0] == len(first["input_ids"]) == int(first["length"])
    decoded = tok.decode_multimodal(first["input_ids"])
    assert decoded.text == "creature number 0"
    assert len(decoded.frames) == 2 and decoded.frames[0].size == (7, 6)
    assert decoded.audio.shape == (2, 400 * 16000 // 8000 // 4)  # resampled 8 kHz -> 16 kHz, stride 4


def test_missing_columns_are_a_clear_error(tmp_path):
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"caption": "x"}) + "\n")
    with pytest.raises(ValueError, match="no text / image / audio column"):
        load_samples(tmp_path)


# -------------------------------------------------------------------------------------------------
# Trainer
# -------------------------------------------------------------------------------------------------
def _args(tmp_path, **overrides):
    base = {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 5,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "learning_rate": 1e-2,
        "eval_strategy": "steps",
        "eval_steps": 5,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "seed": 0,
        "dataloader_num_workers": 0,
    }
    base.update(overrides)
    return TrainingArguments(**base)


TINY_MODEL = {"embed_size": 12, "hidden_size": 16, "num_hidden_layers": 1}


@pytest.mark.parametrize("objective", ["next_token", "context"])
def test_trainer_five_steps(folder_dataset, tmp_path, objective):
    model_args = ModelArguments(objective=objective, **TINY_MODEL)
    data_args = DataArguments(dataset=str(folder_dataset), seq_length=64, stride=48, audio_stride=8,
                              validation_fraction=0.34)  # fmt: skip
    metrics = run_training(model_args, data_args, _args(tmp_path))
    assert metrics["train_loss"] > 0
    for key in ("eval_loss", "eval_next_token_accuracy", "eval_image_accuracy", "eval_text_accuracy"):
        assert 0 <= metrics[key] < 10, key
    if objective == "context":
        assert 0 <= metrics["eval_context_accuracy"] <= 1
    saved = tmp_path / "out"
    assert (saved / "model.safetensors").exists() and (saved / "pxby_vocab.json").exists()
    reloaded = ActionPixelBytesTokenizer.from_pretrained(saved)
    assert reloaded.audio_stride == 8


def test_trainer_with_gradient_checkpointing_and_caption_memory(folder_dataset, tmp_path):
    """``--gradient_checkpointing`` works, and caption-memory windows carry their caption prefix."""
    model_args = ModelArguments(caption_memory_buckets=32, **{**TINY_MODEL, "num_hidden_layers": 2})
    data_args = DataArguments(dataset=str(folder_dataset), seq_length=32, stride=24, audio_stride=8,
                              validation_fraction=0)  # fmt: skip
    metrics = run_training(model_args, data_args, _args(tmp_path, gradient_checkpointing=True, eval_strategy="no"))
    assert metrics["train_loss"] > 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["caption_memory_buckets"] == 32


def test_vocabulary_option_builds_the_control_tokenizer():
    from pixelbytes import control_vocabulary
    from pixelbytes.training.trainer import make_tokenizer

    tokenizer = make_tokenizer(ModelArguments(), DataArguments(vocabulary="control", audio_normalization="none"))
    assert tokenizer.vocabulary.fingerprint == control_vocabulary().fingerprint
    with pytest.raises(ValueError, match="--vocabulary must be one of"):
        make_tokenizer(ModelArguments(), DataArguments(vocabulary="nes"))


def test_resume_from_checkpoint_gives_the_same_steps(folder_dataset, tmp_path):
    model_args = ModelArguments(**TINY_MODEL)
    data_args = DataArguments(dataset=str(folder_dataset), seq_length=64, stride=48, audio_stride=8,
                              validation_fraction=0)  # fmt: skip
    # a constant schedule, so that the interrupted 3-step run and the 6-step run share their first 3 steps
    common = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3, "eval_strategy": "no", "logging_steps": 1,
              "lr_scheduler_type": "constant"}  # fmt: skip
    straight = run_training(model_args, data_args, _args(tmp_path / "a", **common))
    run_training(model_args, data_args, _args(tmp_path / "b", **{**common, "max_steps": 3}))
    checkpoint = tmp_path / "b" / "out" / "checkpoint-3"
    assert checkpoint.exists()
    # "true" (as typed on the command line) = the latest checkpoint of output_dir, here checkpoint-3
    resumed = run_training(model_args, data_args, _args(tmp_path / "b", **common, resume_from_checkpoint="true"))
    wa = load_file(tmp_path / "a" / "out" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "out" / "model.safetensors")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-6, rtol=1e-5)
    assert resumed["train_loss"] > 0 and straight["train_loss"] > 0


def test_fine_tuning_continues_a_saved_model(folder_dataset, tmp_path):
    data_args = DataArguments(dataset=str(folder_dataset), seq_length=64, stride=48, audio_stride=8,
                              validation_fraction=0)  # fmt: skip
    run_training(ModelArguments(**TINY_MODEL), data_args, _args(tmp_path / "first", eval_strategy="no"))
    saved = tmp_path / "first" / "out"
    # the tokenizer settings come with the model: a different audio_stride in the data args is ignored
    tuned = DataArguments(dataset=str(folder_dataset), seq_length=64, stride=48, audio_stride=2,
                          validation_fraction=0)  # fmt: skip
    run_training(ModelArguments(model_name_or_path=str(saved)), tuned, _args(tmp_path / "second", eval_strategy="no"))
    assert ActionPixelBytesTokenizer.from_pretrained(tmp_path / "second" / "out").audio_stride == 8

"""Stateful training windows (truncated BPTT, issue #13): lane layout, exact state carry, detached gradients,
the Trainer end to end, and the clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import TrainingArguments

from folder_data import make_folder_dataset
from pixelbytes import ActionPixelBytesTokenizer, PxBySequenceModel
from pixelbytes.data import (
    PxByStatefulCollator,
    PxByStatefulWindowDataset,
    StatefulLaneSampler,
    lane_layout,
    stateful_spans,
)
from pixelbytes.data.stateful import PAD_WINDOW
from pixelbytes.training import DataArguments, ModelArguments, carry_state, check_stateful_model, run_training
from pixelbytes.training.trainer import build_trainer, build_window_datasets, make_tokenizer
from tiny_models import tiny_model


# -------------------------------------------------------------------------------------------------
# fixtures
# -------------------------------------------------------------------------------------------------
def _encode(tok, rng, text, frames, samples):
    sprite = rng.integers(0, 256, (frames, 5, 6, 3), dtype=np.uint8)
    sound = rng.uniform(-1, 1, (2, samples)).astype(np.float32)
    enc = tok(text=text, images=sprite, audio=sound, return_context_ids=True, return_tensors="np")
    return {"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]}


@pytest.fixture(scope="module")
def store():
    """Tokenised samples of varied lengths (≈ 60 to 200 tokens), plus a one-token and a two-token sample."""
    tok = ActionPixelBytesTokenizer()
    rng = np.random.default_rng(0)
    samples = [_encode(tok, rng, f"sprite {i}", 1 + i % 3, 5 + 3 * i) for i in range(7)]
    samples.insert(3, {"input_ids": samples[0]["input_ids"][:1], "context_ids": samples[0]["context_ids"][:1]})
    samples.append({"input_ids": samples[1]["input_ids"][:2], "context_ids": samples[1]["context_ids"][:2]})
    return samples


def _lengths(store):
    return [len(s["input_ids"]) for s in store]


def _tensors(sample):
    ids = torch.from_numpy(sample["input_ids"])
    return ids, torch.from_numpy(sample["context_ids"].reshape(len(ids), -1))


# -------------------------------------------------------------------------------------------------
# (a) the lane layout
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [0, 1, 2, 3, 16, 17, 18, 33, 100])
@pytest.mark.parametrize("seq_length", [1, 2, 16])
def test_spans_are_consecutive_and_label_every_token_but_the_first_once(length, seq_length):
    spans = stateful_spans(length, seq_length)
    labelled = np.zeros(max(length, 1), dtype=int)
    for k, (start, end) in enumerate(spans):
        assert 1 <= end - start <= seq_length
        if k:  # consecutive; only the last window may be short
            assert start == spans[k - 1][1] and spans[k - 1][1] - spans[k - 1][0] == seq_length
        labelled[start + 1 : end + 1] += 1
    if length >= 2:
        assert spans[0][0] == 0 and spans[-1][1] == length - 1  # the last look-ahead is the last token
        assert labelled[0] == 0 and (labelled[1:length] == 1).all()
    else:
        assert len(spans) == 0


def test_lane_layout_balances_whole_samples():
    lanes = lane_layout([5, 0, 1, 2, 2, 3], num_lanes=2, order=[5, 0, 1, 2, 3, 4])
    # each sample goes to the lane with the fewest windows so far: 5 → lane 0 (3), 0 → lane 1 (5), 2 → lane 0 (4),
    # 3 → lane 0 (6), 4 → lane 1 (7); sample 1 has no windows
    assert lanes[0] == [(5, 0), (5, 1), (5, 2), (2, 0), (3, 0), (3, 1)]
    assert lanes[1] == [(0, w) for w in range(5)] + [(4, 0), (4, 1)]
    with pytest.raises(ValueError, match="number of lanes"):
        lane_layout([1], 0)


def _walk(dataset, sampler, collator):
    """Every batch of one epoch: its dataset indices (per lane) and the collated batch."""
    return [(indices, collator([dataset[i] for i in indices])) for indices in sampler]


@pytest.mark.parametrize("lanes", [1, 3])
def test_lanes_cover_every_target_once_in_order_with_resets_at_sample_starts(store, lanes):
    seq_length = 16
    dataset = PxByStatefulWindowDataset(store, _lengths(store), seq_length)
    sampler = StatefulLaneSampler(dataset, lanes, shuffle=True, seed=3)
    batches = _walk(dataset, sampler, PxByStatefulCollator())
    assert len(batches) == len(sampler) == max(len(lane) for lane in sampler.lanes())
    seen = [np.zeros(n, dtype=int) for n in _lengths(store)]
    previous = [None] * lanes  # (sample, end) of each lane's last window
    for indices, batch in batches:
        assert batch["input_ids"].shape[0] == lanes and batch["input_ids"].shape[1] <= seq_length + 1
        assert "attention_mask" not in batch  # the backbone reads the trailing padding (see the module docstring)
        for row, i in enumerate(indices):
            reset = bool(batch["reset_state"][row])
            if i == PAD_WINDOW:  # a finished lane: padding to the end, nothing labelled, a fresh state
                assert reset and not batch["input_ids"][row].any() and (batch["labels"][row] == -100).all()
                previous[row] = "done"
                continue
            assert previous[row] != "done"
            sample, start, end = (int(v) for v in dataset.index[i])
            n = len(store[sample]["input_ids"])
            assert reset == (start == 0)
            if not reset:  # the window right after the lane's previous one
                assert previous[row] == (sample, start)
            else:  # the previous sample of the lane (if any) is finished
                assert previous[row] is None or previous[row][1] == len(store[previous[row][0]]["input_ids"]) - 1
            previous[row] = (sample, end)
            width = end + 1 - start  # right padded: a full row ends with its look-ahead
            assert width == seq_length + 1 or end == n - 1  # only a sample's last window is short
            ids = torch.from_numpy(store[sample]["input_ids"][start : end + 1])
            assert torch.equal(batch["input_ids"][row, :width], ids) and not batch["input_ids"][row, width:].any()
            assert (batch["labels"][row, width:] == -100).all()
            targets = batch["labels"][row, 1:] != -100  # as the model and the Trainer count them
            assert torch.equal(batch["labels"][row, 1:][targets], ids[1:])
            seen[sample][start + 1 : end + 1] += 1
    for counts in seen:
        assert counts[:1].sum() == 0 and (counts[1:] == 1).all()


def test_epochs_reshuffle_and_processes_share_the_lanes(store):
    dataset = PxByStatefulWindowDataset(store, _lengths(store), 8)
    sampler = StatefulLaneSampler(dataset, 2, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # seeded: the same order again
    ranks = [StatefulLaneSampler(dataset, 2, seed=0, num_replicas=2, rank=r) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])  # every process runs the same number of batches
    windows = sorted(i for r in ranks for batch in r for i in batch if i != PAD_WINDOW)
    assert windows == list(range(len(dataset)))
    assert StatefulLaneSampler(dataset, 2, shuffle=False).lanes() == StatefulLaneSampler(dataset, 2, False).lanes()


def test_windows_carry_caption_prefix_and_grid_positions(store):
    model = tiny_model(caption_memory_buckets=16, grid_position_size=4)
    dataset = PxByStatefulWindowDataset(store, _lengths(store), 8, model.position_layout(),
                                        model.caption_memory_classes())  # fmt: skip
    batch = PxByStatefulCollator()([dataset[0], dataset[PAD_WINDOW], dataset[3]])
    assert batch["grid_positions"].shape == (*batch["input_ids"].shape, 4)
    assert batch["caption_prefix_ids"].shape[0] == 3 and not batch["caption_prefix_ids"][1].any()
    assert batch["reset_state"].tolist() == [True, True, False]


# -------------------------------------------------------------------------------------------------
# (b) exactness of the carried state, (c) truncated gradients
# -------------------------------------------------------------------------------------------------
def _model(backbone, **overrides):
    return tiny_model(backbone=backbone, **overrides)


@pytest.mark.parametrize("backbone", ["lstm", "mamba"])
def test_consecutive_windows_with_the_carried_state_equal_one_forward(store, backbone):
    model = _model(backbone)
    sample = store[6]
    ids, ctx = _tensors(sample)
    n = len(ids)
    with torch.no_grad():
        full = model(input_ids=ids[None], context_ids=ctx[None], labels=ids[None])  # (1, n, V)
    dataset = PxByStatefulWindowDataset([sample], [n], 16)
    assert len(dataset) >= 3
    collator, state, loss = PxByStatefulCollator(), None, 0.0
    for i in range(len(dataset)):
        batch = collator([dataset[i]])
        _, start, end = dataset.index[i]
        with torch.no_grad():
            out = model(**batch, initial_state=carry_state(state, batch.pop("reset_state")), num_items_in_batch=n - 1)
        state = out.state
        fed = end - start
        torch.testing.assert_close(out.logits[0, :fed], full.logits[0, start:end], atol=1e-5, rtol=0)
        loss += out.loss
    torch.testing.assert_close(loss, full.loss, atol=1e-5, rtol=0)  # each window's share of the sample's loss


def _state_before(model, dataset, sample, window):
    """The backbone state of ``sample``'s stream before its window ``window`` (windows run one at a time)."""
    collator, state = PxByStatefulCollator(), {}
    for w in range(window):
        batch = collator([dataset[dataset.flat_index(sample, w)]])
        state = model(**batch, initial_state=carry_state(state, batch.pop("reset_state"))).state
    return state


def _rows(states):
    """One batch state from single-row states."""
    return {key: [torch.cat(ts) for ts in zip(*(s[key] for s in states))] for key in states[0]}


@pytest.mark.parametrize("backbone", ["lstm", "mamba"])
def test_a_batch_of_lanes_is_exact_and_a_reset_row_starts_fresh(store, backbone):
    """Lanes at different points of their samples, in one batch: a short right-padded last window, a full window
    from the carried state, and a sample's first window whose row held another sample's state (reset)."""
    model = _model(backbone)
    dataset = PxByStatefulWindowDataset(store, _lengths(store), 16)
    collator = PxByStatefulCollator()
    last = int(dataset.window_counts[5]) - 1  # sample 5's last window is short (115 tokens: 2 of 16 fed)
    with torch.no_grad():
        fulls = [model(input_ids=ids[None], context_ids=ctx[None]).logits[0] for ids, ctx in map(_tensors, store)]
        before = [_state_before(model, dataset, 5, last), _state_before(model, dataset, 6, 2),
                  _state_before(model, dataset, 5, 3)]  # fmt: skip
        batch = collator([dataset[dataset.flat_index(5, last)], dataset[dataset.flat_index(6, 2)],
                          dataset[dataset.flat_index(6, 0)]])  # fmt: skip
        reset = batch.pop("reset_state")
        assert reset.tolist() == [False, False, True] and (batch["labels"][0, 4:] == -100).all()  # row 0: padded
        out = model(**batch, initial_state=carry_state(_rows(before), reset))
    for row, (sample, window) in enumerate([(5, last), (6, 2), (6, 0)]):
        _, start, end = dataset.index[dataset.flat_index(sample, window)]
        torch.testing.assert_close(out.logits[row, : end - start], fulls[sample][start:end], atol=1e-5, rtol=0)


def test_carry_state_zeroes_reset_rows_and_detaches():
    h = torch.ones(3, 4, requires_grad=True) * 2
    carried = carry_state({"h": [h], "c": [h + 1]}, torch.tensor([False, True, False]))
    assert not carried["h"][0].requires_grad
    assert carried["h"][0][1].abs().sum() == 0 and (carried["c"][0][[0, 2]] == 3).all()
    assert carry_state(None, torch.tensor([False])) == {} and carry_state({"h": [h]}, torch.ones(3, dtype=bool)) == {}
    assert carry_state({"h": [h]}, torch.zeros(2, dtype=bool)) == {}  # another batch size: start from zeros


@pytest.mark.parametrize("backbone", ["lstm", "mamba"])
def test_gradients_stop_at_the_window_boundary(store, backbone):
    model = _model(backbone).train()
    dataset = PxByStatefulWindowDataset([store[6]], [len(store[6]["input_ids"])], 16)
    collator = PxByStatefulCollator()
    batches = [collator([dataset[i]]) for i in range(2)]
    first = model(**{k: v for k, v in batches[0].items() if k != "reset_state"}, initial_state={})
    state = next(iter(first.state.values()))[-1]  # a tensor of the state after window 1 (part of its graph)
    carried = carry_state(first.state, batches[1]["reset_state"])
    second = model(**{k: v for k, v in batches[1].items() if k != "reset_state"}, initial_state=carried)
    assert torch.autograd.grad(second.loss, [state], allow_unused=True, retain_graph=True) == (None,)
    assert all(p is None or not p.requires_grad for t in carried.values() for p in t)
    # without the detach the gradient would flow back (the check above is not vacuous)
    attached = model(**{k: v for k, v in batches[1].items() if k != "reset_state"}, initial_state=first.state)
    assert torch.autograd.grad(attached.loss, [state])[0].abs().sum() > 0


# -------------------------------------------------------------------------------------------------
# the Trainer
# -------------------------------------------------------------------------------------------------
@pytest.fixture
def folder_dataset(tmp_path):
    return make_folder_dataset(tmp_path / "data")


def _args(tmp_path, **overrides):
    base = {
        "output_dir": str(tmp_path / "out"), "max_steps": 4, "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2, "learning_rate": 1e-2, "eval_strategy": "no", "logging_steps": 1,
        "report_to": "none", "save_strategy": "no", "use_cpu": True, "seed": 0, "dataloader_num_workers": 0,
    }  # fmt: skip
    base.update(overrides)
    return TrainingArguments(**base)


TINY_MODEL = {"embed_size": 12, "hidden_size": 16, "num_hidden_layers": 1}


def test_trainer_carries_the_state_across_accumulated_micro_batches(folder_dataset, tmp_path):
    """With gradient accumulation, every forward starts from the (detached) state the one before ended with."""
    model_args = ModelArguments(**TINY_MODEL)
    data_args = DataArguments(dataset=str(folder_dataset), seq_length=16, stateful_windows=True, audio_stride=8,
                              validation_fraction=0)  # fmt: skip
    tokenizer = make_tokenizer(model_args, data_args)
    model = PxBySequenceModel(PxBySequenceModel.config_class.from_tokenizer(tokenizer, **TINY_MODEL))
    train, _ = build_window_datasets(data_args, tokenizer)
    trainer = build_trainer(model, tokenizer, _args(tmp_path, max_steps=3, gradient_accumulation_steps=2), train)
    calls = []
    forward = model.forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        calls.append((kwargs["initial_state"], kwargs["input_ids"].shape[0], out.state))
        return out

    model.forward = spy
    trainer.train()
    assert len(calls) == 6
    assert calls[0][0] == {}  # the epoch starts every lane afresh
    sampler_batches = list(trainer.get_train_dataloader().batch_sampler)
    for k in range(1, len(calls)):
        reset = torch.tensor([dataset_reset(train, i) for i in sampler_batches[k]])
        expected = carry_state(calls[k - 1][2], reset)
        assert expected.keys() == calls[k][0].keys()
        for key in expected:
            for a, b in zip(expected[key], calls[k][0][key]):
                assert torch.equal(a, b) and not b.requires_grad


def dataset_reset(dataset, index):
    return bool(dataset[index]["reset_state"])


def test_run_training_stateful_trains_saves_and_reloads(folder_dataset, tmp_path):
    model_args = ModelArguments(**TINY_MODEL)
    data_args = DataArguments(dataset=str(folder_dataset), seq_length=24, stateful_windows=True, audio_stride=8,
                              validation_fraction=0.34)  # fmt: skip
    args = _args(tmp_path, max_steps=40, eval_strategy="steps", eval_steps=40, save_strategy="steps", save_steps=40,
                 learning_rate=2e-2)  # fmt: skip
    metrics = run_training(model_args, data_args, args)
    history = json.loads((tmp_path / "out" / "checkpoint-40" / "trainer_state.json").read_text())["log_history"]
    losses = [row["loss"] for row in history if "loss" in row]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    assert 0 < metrics["eval_loss"] < 10 and 0 <= metrics["eval_next_token_accuracy"] <= 1
    saved = tmp_path / "out"
    model = PxBySequenceModel.from_pretrained(saved)
    assert model.config.backbone == "lstm"
    tok = ActionPixelBytesTokenizer.from_pretrained(saved)
    prompt = tok(text="creature", return_tensors="pt")["input_ids"]
    assert model.generate(prompt, max_new_tokens=4, do_sample=False).shape == (1, prompt.shape[1] + 4)


def test_mamba_stateful_training_runs(folder_dataset, tmp_path):
    model_args = ModelArguments(backbone="mamba", **TINY_MODEL)
    data_args = DataArguments(dataset=str(folder_dataset), seq_length=32, stateful_windows=True, audio_stride=8,
                              validation_fraction=0.34)  # fmt: skip
    metrics = run_training(model_args, data_args, _args(tmp_path, max_steps=3, eval_strategy="steps", eval_steps=3))
    assert metrics["train_loss"] > 0 and 0 < metrics["eval_loss"] < 10


# -------------------------------------------------------------------------------------------------
# (e) errors
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"backbone": "attention"}, "backbone='attention'"),
        ({"bidirectional": True}, "bidirectional=True"),
        ({"bidirectional": True, "objective": "diffusion"}, "a diffusion objective"),
    ],
)
def test_models_without_a_recurrent_state_are_refused(tmp_path, overrides, match):
    data_args = DataArguments(dataset=str(tmp_path / "never-read"), seq_length=16, stateful_windows=True)
    with pytest.raises(ValueError, match=f"stateful windows need a causal recurrent backbone.*{match}"):
        run_training(ModelArguments(**TINY_MODEL, **overrides), data_args, _args(tmp_path))


@pytest.mark.parametrize("stride", [8, 15, 17])
def test_a_stride_other_than_the_default_or_seq_length_is_an_error(tmp_path, stride):
    data_args = DataArguments(dataset="demo", seq_length=16, stride=stride, stateful_windows=True)
    with pytest.raises(ValueError, match=f"--stride {stride} does not apply to --stateful_windows"):
        run_training(ModelArguments(**TINY_MODEL), data_args, _args(tmp_path))


def test_model_level_errors():
    with pytest.raises(ValueError, match="causal"):
        check_stateful_model(tiny_model(bidirectional="first_layer"))
    model = tiny_model(bidirectional=True)
    ids = torch.tensor([[3, 4, 5]])
    with pytest.raises(ValueError, match="needs a causal, not a bidirectional, backbone"):
        model(input_ids=ids, initial_state={})
    with pytest.raises(ValueError, match="cannot be combined with a cache"):
        tiny_model()(input_ids=ids, initial_state={}, use_cache=True)
    with pytest.raises(ValueError, match="at least 2 positions"):
        tiny_model()(input_ids=ids[:, :1], initial_state={})


def test_the_command_line_flag():
    from transformers import HfArgumentParser

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    _, data_args, _ = parser.parse_args_into_dataclasses(
        ["--stateful_windows", "--seq_length", "64", "--output_dir", "unused"]
    )
    assert data_args.stateful_windows and data_args.stride == 512  # the default stride is accepted (ignored)

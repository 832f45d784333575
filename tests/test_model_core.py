"""The model core: the Trainer's loss normalisation for every objective × backbone, the caption memory of training
windows, Hugging Face conventions (tuples, per-layer hidden states, input embeddings, gradient checkpointing),
knobs that do what they say, and the vocabulary check of ``from_pretrained``."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from pixelbytes import PxByConfig, PxBySequenceModel, control_vocabulary
from pixelbytes.data import PxByDataCollator, PxByWindowDataset
from pixelbytes.embeddings_pixelbytes import caption_prefix
from pixelbytes.objectives_pixelbytes import content_positions
from tiny_models import layout_stream, tiny_model

BACKBONES = {
    "lstm": {},
    "attention": {"backbone": "attention", "num_attention_heads": 2},
    "mamba": {"backbone": "mamba", "state_size": 4, "expand": 1},
}
OBJECTIVES = {
    "next_token": {},
    "context": {"objective": "context"},
    "window_next_token": {"bidirectional": True},
    "window_context": {"bidirectional": True, "objective": "context"},
    "masked_diffusion": {"bidirectional": True, "objective": "diffusion"},
    "embedding_noise": {"bidirectional": True, "objective": "diffusion", "diffusion_scheme": "embedding_noise"},
}


def _padded_batch(tok, rows: int = 4):
    """Four right-padded rows of different lengths cut from the every-layout-case stream."""
    stream = layout_stream(tok)[0]
    lengths = [40, 33, 27, 21][:rows]
    ids = torch.zeros(rows, max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = stream[i : i + n]
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_gradient_accumulation_equals_one_large_batch(tok, backbone, objective):
    """What the Trainer does with gradient_accumulation_steps=2 × batch 2 (each loss over the SAME
    num_items_in_batch, summed) gives the gradients of one batch of 4, padded rows included."""
    if objective == "embedding_noise" and backbone != "lstm":
        pytest.skip("embedding noise is the original aPxBy (LSTM) scheme; one backbone is enough")
    model = tiny_model(seed=3, **BACKBONES[backbone], **OBJECTIVES[objective]).train()
    ids, mask, labels = _padded_batch(tok)
    num_items = (labels[:, 1:] != -100).sum()
    extra = {}
    if objective == "masked_diffusion":
        generator = torch.Generator().manual_seed(0)
        content = content_positions(model.embeddings.token_classes, ids, mask)
        extra["diffusion_mask"] = content & (torch.rand(ids.shape, generator=generator) < 0.5)
    if objective == "embedding_noise":
        extra["diffusion_mask"] = content_positions(model.embeddings.token_classes, ids, mask) & (ids % 3 == 0)
        extra["diffusion_step"] = 0  # α = 1: the noise term vanishes exactly, so both runs see the same inputs

    def grads(parts):
        model.zero_grad()
        for part in parts:
            batch = {"input_ids": ids[part], "attention_mask": mask[part], "labels": labels[part]}
            batch |= {key: value[part] for key, value in extra.items() if torch.is_tensor(value)}
            batch |= {key: value for key, value in extra.items() if not torch.is_tensor(value)}
            model(**batch, num_items_in_batch=num_items).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    whole = grads([slice(0, 4)])
    accumulated = grads([slice(0, 2), slice(2, 4)])
    assert whole and whole.keys() == accumulated.keys()
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], atol=1e-6, rtol=1e-5, msg=name)


def test_window_encoder_loss_is_not_scaled_by_the_number_of_batches(tok):
    model = tiny_model(seed=1, bidirectional=True)
    ids, mask, labels = _padded_batch(tok)
    num_items = (labels[:, 1:] != -100).sum()
    halves = sum(
        model(input_ids=ids[s], attention_mask=mask[s], labels=labels[s], num_items_in_batch=num_items).loss
        for s in (slice(0, 2), slice(2, 4))
    )
    whole = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(halves, whole)


@pytest.mark.parametrize("weights", [{"novel_pixel_weight": 5.0}, {"change_token_weight": 3.0}])
def test_target_weights_act_on_window_encoders(tok, weights):
    ids = layout_stream(tok)[:, :30]
    plain = tiny_model(seed=2, bidirectional=True)
    weighted = tiny_model(seed=2, bidirectional=True, **weights)
    losses = []
    for end in range(8, 30):
        window = ids[:, :end]
        losses.append((plain(input_ids=window, labels=window).loss, weighted(input_ids=window, labels=window).loss))
    assert any(not torch.allclose(a, b) for a, b in losses)  # the knob changes the loss of some windows
    assert all(b >= a - 1e-6 for a, b in losses)  # weights >= 1 never lower it


def _caption_stream(tok) -> torch.Tensor:
    sprite = np.random.default_rng(1).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    first = tok(text="a red heart", images=sprite, return_tensors="pt")["input_ids"]
    second = tok(text="blue", images=sprite[:1], return_tensors="pt")["input_ids"]
    return torch.cat((first, second), 1)


def test_a_training_window_gets_the_caption_memory_of_the_whole_sample(tok):
    model = tiny_model(seed=4, caption_memory_buckets=64, grid_position_size=8, caption_memory_cell_frames=2)
    with torch.no_grad():
        model.embeddings.caption_memory.table.weight.normal_()
    ids = _caption_stream(tok)
    classes = model.embeddings.token_classes
    embedder = model.embeddings
    with torch.no_grad():
        whole = embedder(ids)
        contexts, where = whole.context_ids, embedder.derive_grid_positions(ids)
        text_end = int(np.flatnonzero(tok.token_classes[ids[0].numpy()] != 3)[0])
        second_start = int(ids.shape[1] - 1 - np.flatnonzero(ids[0].numpy()[::-1] == 2)[1])  # after the 1st sprite
        starts = [3, text_end, text_end + 5, 30, second_start, second_start + 2, ids.shape[1] - 4]
        for start in starts:
            prefix = torch.from_numpy(caption_prefix(ids[0].numpy(), classes, start)).unsqueeze(0)
            window = embedder(ids[:, start:], contexts[:, start:], None, where[:, start:], prefix).embeddings
            torch.testing.assert_close(window, whole.embeddings[:, start:], msg=f"window from {start}")
            cut = embedder(ids[:, start:], contexts[:, start:], None, where[:, start:]).embeddings
            if start in (text_end + 5, 30):
                assert not torch.allclose(cut, whole.embeddings[:, start:])  # without the prefix: no caption


def test_window_dataset_carries_caption_prefixes_the_collator_pads(tok):
    model = tiny_model(seed=4, caption_memory_buckets=64)
    ids = _caption_stream(tok)[0].numpy()
    contexts = tok.context_ids(ids[None])[0] if hasattr(tok, "context_ids") else None
    sample = {"input_ids": ids, "context_ids": np.asarray(contexts)}
    dataset = PxByWindowDataset([sample], [len(ids)], 24, 16, caption_memory_classes=model.caption_memory_classes())
    windows = [dataset[i] for i in range(len(dataset))]
    assert len(windows[0]["caption_prefix_ids"]) == 0  # the first window holds the caption itself
    assert all(len(w["caption_prefix_ids"]) > 0 for w in windows[1:])
    batch = PxByDataCollator()(windows)
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss)
    longest = max(len(w["caption_prefix_ids"]) for w in windows)
    assert batch["caption_prefix_ids"].shape == (len(windows), longest)
    last = windows[-1]["caption_prefix_ids"]
    assert batch["caption_prefix_ids"][-1, longest - len(last) :].tolist() == last.tolist()


# ------------------------------------------------------------------------------------------------ conventions
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_return_dict_false_returns_a_tuple(tok, backbone):
    model = tiny_model(**BACKBONES[backbone])
    ids = layout_stream(tok)[:, :12]
    out = model(input_ids=ids, labels=ids, use_cache=False)
    as_tuple = model(input_ids=ids, labels=ids, use_cache=False, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], out.loss)
    torch.testing.assert_close(as_tuple[1], out.logits)


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_hidden_states_are_one_tensor_per_layer(tok, backbone, bidirectional):
    model = tiny_model(num_hidden_layers=3, bidirectional=bidirectional, **BACKBONES[backbone])
    batch = tok(["a red heart", "hi"], padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, use_cache=False)
        plain = model(**batch, use_cache=False)
    assert len(out.hidden_states) == 3 + 1  # the backbone's input, then every layer
    assert out.hidden_states[0].shape[-1] == model.config.embed_size
    assert all(h.shape[-1] == model.config.hidden_size for h in out.hidden_states[1:])
    torch.testing.assert_close(out.logits, plain.logits)
    torch.testing.assert_close(model.lm_head.scores(out.hidden_states[-1])[0], out.logits)
    assert not torch.allclose(out.hidden_states[1], out.hidden_states[2])


@pytest.mark.parametrize("embedding", ["pxby6", "window3x3", "center"])
def test_input_embeddings_get_and_set(tok, embedding):
    model = tiny_model(embedding=embedding)
    table = model.get_input_embeddings()
    assert isinstance(table, torch.nn.Embedding) and table.num_embeddings == 151
    ids = layout_stream(tok)[:, :10]
    replacement = torch.nn.Embedding(151, table.embedding_dim, padding_idx=table.padding_idx)
    with torch.no_grad():
        replacement.weight.zero_()
        before = model(input_ids=ids).logits
        model.set_input_embeddings(replacement)
        after = model(input_ids=ids).logits
    assert model.get_input_embeddings() is replacement and not torch.allclose(before, after)
    assert model.get_output_embeddings() is model.lm_head
    with pytest.raises(ValueError, match="width"):
        model.set_input_embeddings(torch.nn.Embedding(151, table.embedding_dim + 1))


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tok, backbone, bidirectional):
    model = tiny_model(seed=5, bidirectional=bidirectional, **BACKBONES[backbone]).train()
    ids, mask, labels = _padded_batch(tok)

    def run():
        model.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = run()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    calls = []
    recompute = model.backbone._gradient_checkpointing_func
    model.backbone._gradient_checkpointing_func = lambda *a, **k: calls.append(1) or recompute(*a, **k)
    checkpointed_loss, checkpointed = run()
    assert len(calls) == model.config.num_hidden_layers  # one recomputed layer at a time
    torch.testing.assert_close(checkpointed_loss, loss)
    for name in grads:
        torch.testing.assert_close(checkpointed[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_dropout_acts_on_padded_batches():
    """The v1 "first_layer" LSTM: dropout between its bidirectional first layer and the rest, padded or not."""
    model = tiny_model(seed=1, bidirectional="first_layer", dropout=0.5).train()
    ids = torch.tensor([[32, 33, 34, 35, 2, 0, 0], [36, 37, 38, 39, 40, 41, 2]])
    mask = (torch.arange(7) < torch.tensor([[5], [7]])).long()
    first = model(input_ids=ids, attention_mask=mask).logits
    second = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(first, second)
    model.eval()
    with torch.no_grad():
        evaluated = [model(input_ids=ids, attention_mask=mask).logits for _ in range(2)]
    torch.testing.assert_close(*evaluated)


def test_unknown_config_keywords_warn(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        config = PxByConfig(hiden_size=32)  # a typo
    assert "unknown keyword 'hiden_size'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        model = tiny_model()
        model.save_pretrained(tmp_path)
        PxBySequenceModel.from_pretrained(tmp_path)
    assert "unknown keyword" not in caplog.text  # what transformers itself passes is not warned about
    assert config.hidden_size == 512


def test_lstm_forget_bias_is_a_knob():
    hidden = 16
    default = tiny_model().backbone.lstms[0]
    assert torch.all(default.bias_ih_l0[hidden : 2 * hidden] == 1.0)
    assert torch.all(default.bias_hh_l0[hidden : 2 * hidden] == 0.0)
    original = tiny_model(lstm_forget_bias=None).backbone.lstms[0]
    assert not torch.all(original.bias_ih_l0[hidden : 2 * hidden] == 1.0)  # PyTorch's uniform init, as published


def test_use_mambapy_false_does_not_warn_about_mambapy(tok, caplog, monkeypatch):
    import pixelbytes.backbones_pixelbytes as backbones

    monkeypatch.setattr(backbones.importlib.util, "find_spec", lambda name: None)  # as if mambapy were missing
    monkeypatch.setattr(backbones, "_WARNED_NO_MAMBAPY", False)
    model = tiny_model(backbone="mamba", state_size=4, expand=1, use_mambapy=False)
    with caplog.at_level(logging.WARNING):
        model(input_ids=layout_stream(tok)[:, :12])
    assert "mambapy" not in caplog.text
    model = tiny_model(backbone="mamba", state_size=4, expand=1, use_mambapy=True)
    with caplog.at_level(logging.WARNING):
        model(input_ids=layout_stream(tok)[:, :12])
    assert "mambapy is not installed" in caplog.text


# ------------------------------------------------------------------------------------------------ bad input
def test_empty_prompt_and_zero_new_tokens_are_clear_errors(tok):
    model = tiny_model()
    with pytest.raises(ValueError, match="prompt is empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=3)
    ids = tok("hi", return_tensors="pt")["input_ids"]
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
            model.generate(ids, max_new_tokens=bad)


def test_from_pretrained_checks_the_tokenizer_saved_beside_the_model(tok, tmp_path):
    from pixelbytes import ActionPixelBytesTokenizer

    model = PxBySequenceModel(PxByConfig.from_tokenizer(tok, embed_size=12, hidden_size=16))
    model.save_pretrained(tmp_path / "ok")
    tok.save_pretrained(tmp_path / "ok")
    assert PxBySequenceModel.from_pretrained(tmp_path / "ok").config.vocab_fingerprint == tok.vocabulary.fingerprint
    model.save_pretrained(tmp_path / "bad")
    ActionPixelBytesTokenizer(vocabulary=control_vocabulary()).save_pretrained(tmp_path / "bad")  # also 151 ids
    with pytest.raises(ValueError, match="tokenizer/model mismatch"):
        PxBySequenceModel.from_pretrained(tmp_path / "bad")
    (tmp_path / "bad" / "pxby_vocab.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the tokenizer vocabulary"):
        PxBySequenceModel.from_pretrained(tmp_path / "bad")

"""PxByConfig and PxBySequenceModel: sizes, validation, forward contract, padding, loss, save/load, Auto classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from pixelbytes import (
    ActionPixelBytesTokenizer,
    PxByConfig,
    PxBySequenceModel,
    PxByVocabulary,
    control_vocabulary,
    default_vocabulary,
)
from tiny_models import tiny_model


@pytest.fixture(scope="module")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


def sample_stream(tok: ActionPixelBytesTokenizer, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    sprite = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    sound = rng.uniform(-1, 1, (2, 12)).astype(np.float32)
    return tok(text="a red heart", images=sprite, audio=sound, return_context_ids=True, return_tensors="pt")


# -------------------------------------------------------------------------------------------------
# config
# -------------------------------------------------------------------------------------------------
def test_published_parameter_counts():
    assert sum(p.numel() for p in PxBySequenceModel(PxByConfig()).parameters()) == 3_492_602
    context = PxBySequenceModel(PxByConfig(objective="context"))
    assert sum(p.numel() for p in context.parameters()) == 3_879_917


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embed_size": 128}, "divisible by 6"),
        ({"backbone": "gru"}, "backbone"),
        ({"embedding": "conv"}, "embedding"),
        ({"objective": "predict"}, "objective"),
        ({"num_colors": 54}, "do not add up"),
        ({"bidirectional": "first_layer", "backbone": "attention"}, "first_layer"),
        ({"objective": "diffusion"}, "bidirectional"),
        ({"hidden_size": 0}, "positive integer"),
        ({"bidirectional": True, "hidden_size": 15}, "even hidden_size"),
        ({"bidirectional": "both"}, "bidirectional"),
        ({"dropout": 1.5}, "dropout"),
        ({"change_token_weight": 0.0}, "change_token_weight must be a positive finite number"),
        ({"novel_pixel_weight": -2.0}, "novel_pixel_weight must be a positive finite number"),
        ({"novel_pixel_weight": float("inf")}, "novel_pixel_weight must be a positive finite number"),
        ({"novel_pixel_weight": float("nan")}, "novel_pixel_weight must be a positive finite number"),
        ({"caption_memory_buckets": 10**9}, "above the limit"),
        ({"caption_memory_buckets": 1e9}, "non-negative integer"),
        ({"num_layers": 3}, "did you mean 'num_hidden_layers'"),
        ({"embedding_dim": 60}, "did you mean 'embed_size'"),
        ({"dropout": 0.1, "num_hidden_layers": 1}, "only one"),
        ({"dropout": 0.1, "num_hidden_layers": 1, "bidirectional": True}, "only one"),
        ({"dropout": 0.1, "num_hidden_layers": 1, "backbone": "mamba", "mamba_style": "v1"}, "only one"),
        ({"novel_pixel_weight": 4.0, "objective": "diffusion", "bidirectional": True}, "diffusion"),
        ({"change_token_weight": 4.0, "objective": "diffusion", "bidirectional": True}, "diffusion"),
        ({"lstm_forget_bias": float("inf")}, "lstm_forget_bias"),
        ({"pad_token_id": 3}, "0/1/2"),
        ({"num_levels": -1, "vocab_size": 112}, "num_levels must be a non-negative integer"),
        ({"num_levels": 0}, "do not add up"),  # 0 levels is the v1 vocabulary: vocab_size 113
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PxByConfig(**kwargs)


def test_config_round_trip_and_autoconfig(tmp_path):
    cfg = PxByConfig(objective="context", hidden_size=64, bidirectional="first_layer", window_size=32)
    cfg.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "pixelbytes"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, PxByConfig)
    for key in ("objective", "hidden_size", "bidirectional", "window_size", "embed_size", "vocab_size"):
        assert getattr(loaded, key) == getattr(cfg, key)


def test_unavailable_options_are_clear_errors():
    with pytest.raises(ValueError, match="mamba_style"):
        PxByConfig(backbone="mamba", mamba_style="v2")
    v1 = PxByConfig(vocab_size=113, num_levels=0, backbone="mamba", mamba_style="v1")  # the v1 bMamba: available
    assert (v1.num_levels, v1.mamba_style) == (0, "v1")
    # the original diffusion scheme is available: a 6·V head and no mask row
    noisy = PxBySequenceModel(PxByConfig(objective="diffusion", bidirectional=True, diffusion_scheme="embedding_noise"))
    assert noisy.lm_head.out_features == 6 * 151 and noisy.embeddings.tokens.slot_embedding.num_embeddings == 151


def test_tokenizer_model_mismatch(tok):
    model_cfg = PxByConfig.from_tokenizer(tok)
    model_cfg.check_tokenizer(tok)
    with pytest.raises(ValueError, match="mismatch"):
        model_cfg.check_tokenizer(ActionPixelBytesTokenizer(vocabulary=control_vocabulary()))
    with pytest.raises(ValueError, match="audio_channels"):
        model_cfg.check_tokenizer(ActionPixelBytesTokenizer(audio_channels=1))
    # same table sizes, other colours: only the fingerprint can tell
    other = default_vocabulary()
    recoloured = PxByVocabulary(other.byte_values, ((1, 2, 3), *other.palette[1:]), other.levels)
    with pytest.raises(ValueError, match="fingerprint"):
        model_cfg.check_tokenizer(ActionPixelBytesTokenizer(vocabulary=recoloured))


# -------------------------------------------------------------------------------------------------
# forward contract
# -------------------------------------------------------------------------------------------------
def test_derived_contexts_equal_tokenizer_contexts(tok):
    enc = sample_stream(tok)
    model = tiny_model()
    derived = model.derive_context_ids(enc["input_ids"])
    assert torch.equal(derived, enc["context_ids"])
    with torch.no_grad():
        a = model(input_ids=enc["input_ids"], context_ids=enc["context_ids"]).logits
        b = model(input_ids=enc["input_ids"]).logits
    assert a.shape == (1, enc["input_ids"].shape[1], 151)
    torch.testing.assert_close(a, b)


def test_bad_inputs_are_clear_errors(tok):
    model = tiny_model()
    ids = tok("abc", return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match=r"\[0, 151\)"):
        model(input_ids=ids + 200)
    with pytest.raises(ValueError, match="context_ids must have shape"):
        model(input_ids=ids, context_ids=torch.zeros(1, ids.shape[1], 5, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, length"):
        model(input_ids=ids[0])
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(ids, max_new_tokens=-1)


@pytest.mark.parametrize("bidirectional", [False, True, "first_layer"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_leak(tok, bidirectional, side):
    model = tiny_model(bidirectional=bidirectional)
    texts = ["a red heart on black", "hi", "pixel bytes!"]
    batch = tok(texts, padding=True, padding_side=side, return_tensors="pt")
    with torch.no_grad():
        padded = model(**batch).logits
        for i, text in enumerate(texts):
            alone = tok(text, return_tensors="pt")
            row = model(**alone).logits[0]
            keep = batch["attention_mask"][i].bool()
            torch.testing.assert_close(padded[i][keep], row, atol=1e-5, rtol=1e-5)


def test_cached_step_equals_full_forward(tok):
    model = tiny_model()
    ids = sample_stream(tok)["input_ids"]
    L = ids.shape[1]
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        for split in (1, 7, L // 2, L - 3):
            prefix = model(input_ids=ids[:, :split], use_cache=True)
            cache = prefix.cache
            step = model(input_ids=ids[:, split : split + 1], cache=cache, use_cache=True)
            torch.testing.assert_close(step.logits[:, 0], full[:, split], atol=1e-5, rtol=1e-5)
            rest = model(input_ids=ids[:, split + 1 :], cache=step.cache, use_cache=True)
            torch.testing.assert_close(rest.logits, full[:, split + 1 :], atol=1e-5, rtol=1e-5)
            assert rest.cache.get_seq_length() == L


@pytest.mark.parametrize("layers", [1, 2])
def test_inference_step_equals_lstm_cell_step(layers):
    backbone = tiny_model(num_hidden_layers=layers).backbone
    torch.manual_seed(1)
    E, H = backbone.lstms[0].input_size, backbone.lstms[0].hidden_size
    rows = backbone.FUSED_MAX_ROWS  # the fused update's largest batch
    x = torch.randn(rows, E)
    state = {"h": [torch.randn(rows, H) for _ in range(layers)], "c": [torch.randn(rows, H) for _ in range(layers)]}
    with torch.no_grad():
        fast_out, fast = backbone.step(x, state)
    with torch.enable_grad():
        ref_out, ref = backbone.step(x, state)  # the torch.lstm_cell path
    torch.testing.assert_close(fast_out, ref_out, atol=1e-6, rtol=1e-6)
    for a, b in zip(fast["h"] + fast["c"], ref["h"] + ref["c"]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_inference_weights_follow_weight_updates():
    model = tiny_model()
    backbone = model.backbone
    first = backbone.inference_weights()
    assert backbone.inference_weights() is first  # cached while the weights are unchanged
    with torch.no_grad():
        backbone.lstms[0].weight_hh_l0.mul_(0.5)  # an in-place update, as an optimiser step makes
    rebuilt = backbone.inference_weights()
    assert rebuilt is not first
    H = backbone.lstms[0].hidden_size
    torch.testing.assert_close(rebuilt[0][0][-H:, :H], backbone.lstms[0].weight_hh_l0[:H].t())
    assert not any("inference" in name for name in model.state_dict())
    model.double()
    assert backbone.inference_weights()[0][0].dtype == torch.float64


@pytest.mark.parametrize("with_context", [False, True])
def test_token_step_output_matches_regular_output(with_context):
    from pixelbytes.modeling_pixelbytes import PxByModelOutput

    logits, context_logits = torch.randn(2, 1, 7), (torch.randn(2, 1, 6, 7) if with_context else None)
    values = {"logits": logits, "context_logits": context_logits, "cache": object()}
    regular, fast = PxByModelOutput(**values), PxByModelOutput.for_token_step(**values)
    assert type(fast) is PxByModelOutput
    assert list(fast.keys()) == list(regular.keys())
    assert all(a is b for a, b in zip(fast.to_tuple(), regular.to_tuple()))
    assert fast[0] is regular[0] is logits and fast["logits"] is logits
    assert fast.cache is regular.cache is values["cache"] is fast.past_key_values
    assert fast.loss is None and fast.hidden_states is None
    assert fast.context_logits is context_logits


def test_bidirectional_has_no_cache(tok):
    model = tiny_model(bidirectional=True, window_size=8)
    ids = tok("hello", return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match="no cache"):
        model(input_ids=ids, use_cache=True)
    with pytest.raises(ValueError, match="no cache"):
        model.generate(ids, max_new_tokens=2, use_cache=True)
    with pytest.raises(ValueError, match="window"):
        model.generate(tok("a much longer prompt", return_tensors="pt")["input_ids"], max_new_tokens=2)


# -------------------------------------------------------------------------------------------------
# losses and training
# -------------------------------------------------------------------------------------------------
def test_next_token_loss_is_shifted_cross_entropy(tok):
    model = tiny_model()
    enc = tok(["a red heart", "hi"], padding=True, return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    out = model(**enc, labels=labels)
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, 151), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)
    n_items = (labels[:, 1:] != -100).sum()
    summed = model(**enc, labels=labels, num_items_in_batch=n_items * 2).loss
    torch.testing.assert_close(summed, expected / 2)


def _two_shape_sprite() -> np.ndarray:
    """A 4×4 black frame with a red pixel at (1, 2) and a red run at (2, 1)-(2, 2)."""
    sprite = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    sprite[0, 1, 2] = sprite[0, 2, 1] = sprite[0, 2, 2] = (248, 56, 0)
    return sprite


def test_novel_pixels_are_the_shape_starts(tok):
    model = tiny_model()
    enc = tok(text="ab", images=_two_shape_sprite(), return_context_ids=True, return_tensors="pt")
    ids = enc["input_ids"]
    novel = model.lm_head.novel_pixels(ids[:, 1:], enc["context_ids"])[0]  # target k + 1 for k = 0 .. L-2
    grid = model.derive_grid_positions(ids)[0]  # (L, 4): row k = where token k + 1 lands
    marked = {tuple(grid[k, 1:].tolist()) for k in torch.nonzero(novel).flatten().tolist()}
    # the sprite's first pixel (nothing known yet) and the two pixels where a shape starts; not (2, 2),
    # whose left neighbour is red, nor background after a shape (the cell above is black)
    assert marked == {(0, 0, 0), (0, 1, 2), (0, 2, 1)}


def test_weighted_losses(tok):
    enc = tok(text="ab", images=_two_shape_sprite(), return_context_ids=True, return_tensors="pt")
    ids, labels = enc["input_ids"], enc["input_ids"].clone()
    base = tiny_model()
    with torch.no_grad():
        logits = base(input_ids=ids).logits
    per_token = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], reduction="none")
    changed = labels[0, 1:] != labels[0, :-1]
    novel = base.lm_head.novel_pixels(labels[:, 1:], enc["context_ids"])[0]
    for change, new in ((1.0, 1.0), (3.0, 1.0), (1.0, 20.0), (3.0, 20.0)):
        model = tiny_model(change_token_weight=change, novel_pixel_weight=new)
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        weight = torch.where(changed, change, 1.0) * torch.where(novel, new, 1.0)
        torch.testing.assert_close(loss, (per_token * weight).sum() / len(per_token))


def test_context_loss_and_slot5_accuracy(tok):
    model = tiny_model(objective="context")
    enc = sample_stream(tok)
    ids, ctx = enc["input_ids"], enc["context_ids"]
    out = model(input_ids=ids, context_ids=ctx, labels=ids)
    assert out.context_logits.shape == (1, ids.shape[1], 6, 151)
    torch.testing.assert_close(out.logits, out.context_logits[:, :, 5])
    targets = torch.cat((ctx[:, 1:, :5], ids[:, 1:, None]), dim=-1)
    expected = torch.nn.functional.cross_entropy(out.context_logits[:, :-1].reshape(-1, 151), targets.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    slot5 = (out.logits[:, :-1].argmax(-1) == ids[:, 1:]).float().mean()
    torch.testing.assert_close(out.next_token_accuracy, slot5)
    six = (out.context_logits[:, :-1].argmax(-1) == targets).float().mean()
    torch.testing.assert_close(out.context_accuracy, six)


@pytest.mark.parametrize("objective", ["next_token", "context"])
def test_training_decreases_loss(tok, objective):
    model = tiny_model(objective=objective, hidden_size=32).train()
    sprite = np.zeros((4, 4, 3), dtype=np.uint8)
    sprite[1:3, 1:3] = 255
    enc = tok(text="a white square", images=sprite, return_context_ids=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(60):
        loss = model(input_ids=enc["input_ids"], context_ids=enc["context_ids"], labels=enc["input_ids"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_window_encoder_loss_uses_last_label_only(tok):
    model = tiny_model(bidirectional=True, window_size=64)
    ids = tok("abcdefg", return_tensors="pt")["input_ids"]
    out = model(input_ids=ids, labels=ids)
    with torch.no_grad():
        reference = model(input_ids=ids[:, :-1]).logits[:, -1]
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(reference, ids[:, -1]))


# -------------------------------------------------------------------------------------------------
# persistence and Auto classes
# -------------------------------------------------------------------------------------------------
def test_save_load_round_trip_with_auto_classes(tmp_path, tok):
    model = tiny_model(objective="context")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    ids = sample_stream(tok)["input_ids"]
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        for loader in (PxBySequenceModel, AutoModel, AutoModelForCausalLM):
            loaded = loader.from_pretrained(tmp_path).eval()
            assert isinstance(loaded, PxBySequenceModel)
            torch.testing.assert_close(loaded(input_ids=ids).logits, reference)
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded_tok, ActionPixelBytesTokenizer)
    assert loaded_tok("hello")["input_ids"] == tok("hello")["input_ids"]

"""Every embedding × backbone × direction × objective: forward/backward, save/load, Auto loading, cached ==
uncached generation, one-step cached logits, causality, padding; backbone-specific checks (PxByEmbed formula,
Mamba initialisation / CPU path / mambapy, rotary positions under left padding); clear errors for the rest."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import torch
from transformers import AutoModel

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
from pixelbytes import backbones_pixelbytes as backbones
from pixelbytes.layout import batch_windows
from pixelbytes.objectives_pixelbytes import content_positions
from tiny_models import layout_stream

BACKBONES = ("lstm", "attention", "mamba")
EMBEDDINGS = ("pxby6", "window3x3", "center")
OBJECTIVES = ("next_token", "context")
TINY = {"embed_size": 18, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "state_size": 4,
        "window_size": 64}  # fmt: skip

ALL = list(itertools.product(BACKBONES, (False, True), EMBEDDINGS, OBJECTIVES))
CAUSAL = [combo for combo in ALL if not combo[1]]


def combo_id(combo) -> str:
    backbone, bidirectional, embedding, objective = combo
    return f"{backbone}-{'bi' if bidirectional else 'uni'}-{embedding}-{objective}"


def make_model(combo, seed: int = 0, **overrides) -> PxBySequenceModel:
    backbone, bidirectional, embedding, objective = combo
    torch.manual_seed(seed)
    config = PxByConfig(
        **{**TINY, "backbone": backbone, "bidirectional": bidirectional, "embedding": embedding,
           "objective": objective, **overrides}
    )  # fmt: skip
    return PxBySequenceModel(config).eval()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models: thread hand-offs dominate (and 2 busy cores make them ~30× slower)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


@pytest.fixture(scope="module")
def stream(tok) -> torch.Tensor:
    return layout_stream(tok)


PROMPTS = ["a red heart", "hi"]


# -------------------------------------------------------------------------------------------------
# every combination
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("combo", ALL, ids=combo_id)
def test_forward_backward_finite(combo, stream):
    model = make_model(combo).train()
    out = model(input_ids=stream, labels=stream)
    L = stream.shape[1]
    assert out.logits.shape == (1, L, 151)
    if combo[3] == "context":
        assert out.context_logits.shape == (1, L, 6, 151)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("combo", ALL, ids=combo_id)
def test_save_load_round_trip_and_auto(combo, stream, tmp_path):
    model = make_model(combo)
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        reference = model(input_ids=stream).logits
        loaded = AutoModel.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, PxBySequenceModel)
        torch.testing.assert_close(loaded(input_ids=stream).logits, reference)
    # nothing left uninitialised (Mamba's A_log / D in particular)
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


@pytest.mark.parametrize("combo", ALL, ids=combo_id)
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_equal_rows_alone(combo, side, tok):
    model = make_model(combo, seed=1)
    texts = ["a red heart on black", "hi"]
    batch = tok(texts, padding=True, padding_side=side, return_tensors="pt")
    with torch.no_grad():
        padded = model(**batch).logits
        for i, text in enumerate(texts):
            alone = model(**tok(text, return_tensors="pt")).logits[0]
            keep = batch["attention_mask"][i].bool()
            torch.testing.assert_close(padded[i][keep], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("combo", CAUSAL, ids=combo_id)
def test_cached_greedy_equals_recompute_left_padded(combo, tok):
    model = make_model(combo, seed=2)
    batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**batch, max_new_tokens=10, do_sample=False)
        recomputed = model.generate(**batch, max_new_tokens=10, do_sample=False, use_cache=False)
        alone = model.generate(**tok(PROMPTS[1], return_tensors="pt"), max_new_tokens=10, do_sample=False)
    assert cached.shape == (2, batch["input_ids"].shape[1] + 10)
    assert torch.equal(cached, recomputed)
    assert torch.equal(cached[1, -10:], alone[0, -10:])


@pytest.mark.parametrize("combo", CAUSAL, ids=combo_id)
def test_cached_steps_equal_full_forward(combo, stream):
    model = make_model(combo, seed=3)
    L = stream.shape[1]
    with torch.no_grad():
        full = model(input_ids=stream, use_cache=False).logits
        for split in (1, 9, L - 4):
            prefix = model(input_ids=stream[:, :split], use_cache=True)
            step = model(input_ids=stream[:, split : split + 1], cache=prefix.cache)
            torch.testing.assert_close(step.logits[:, 0], full[:, split], atol=1e-5, rtol=1e-5)
            rest = model(input_ids=stream[:, split + 1 :], cache=step.cache, use_cache=True)
            torch.testing.assert_close(rest.logits, full[:, split + 1 :], atol=1e-5, rtol=1e-5)
            assert rest.cache.get_seq_length() == L


@pytest.mark.parametrize("combo", CAUSAL, ids=combo_id)
def test_causality(combo, stream):
    model = make_model(combo, seed=4)
    L = stream.shape[1]
    with torch.no_grad():
        reference = model(input_ids=stream).logits
        for k in (3, L // 2, L - 2):
            changed = stream.clone()
            changed[0, k] = 60 if int(stream[0, k]) != 60 else 61
            logits = model(input_ids=changed).logits
            torch.testing.assert_close(logits[:, :k], reference[:, :k], atol=0, rtol=0)
            assert not torch.equal(logits[:, k:], reference[:, k:])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bidirectional_window_encoder(backbone, tok):
    model = make_model((backbone, True, "window3x3", "next_token"), window_size=16)
    ids = tok("abcdefg", return_tensors="pt")["input_ids"]
    out = model(input_ids=ids, labels=ids)
    with torch.no_grad():
        reference = model(input_ids=ids[:, :-1]).logits[:, -1]
        # the last position sees the whole window (bidirectional): changing the first token changes it
        changed = ids[:, :-1].clone()
        changed[0, 0] = 70
        assert not torch.equal(model(input_ids=changed).logits[:, -1], reference)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(reference, ids[:, -1]))
    generated = model.generate(**tok("ab", return_tensors="pt"), max_new_tokens=20, do_sample=False)
    assert generated.shape[1] == 3 + 20
    with pytest.raises(ValueError, match="no cache"):
        model(input_ids=ids, use_cache=True)


@pytest.mark.parametrize("backbone", ["attention", "mamba"])
def test_training_decreases_loss(backbone, tok):
    model = make_model((backbone, False, "window3x3", "next_token"), hidden_size=32).train()
    sprite = np.zeros((4, 4, 3), dtype=np.uint8)
    sprite[1:3, 1:3] = 255
    ids = tok(text="a white square", images=sprite, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# -------------------------------------------------------------------------------------------------
# embeddings
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conv", [True, False])
def test_window_embedding_is_pxbyembed(conv, tok, stream):
    model = make_model(("lstm", False, "window3x3", "next_token"), embed_size=81, window_conv=conv)
    emb = model.embeddings.tokens
    names = {name for name, _ in model.named_parameters() if name.startswith("embeddings.tokens.")}
    expected = {"embeddings.tokens." + name for name in (
        "alpha", "linear_embedding.weight", "projection.weight", "projection.bias", "norm.weight", "norm.bias"
    )}  # fmt: skip
    if conv:
        expected |= {"embeddings.tokens.patch_embedding.weight", "embeddings.tokens.patch_embedding.bias"}
    assert names == expected
    alpha = emb.alpha.detach()
    assert alpha.shape == (1, 1, 3, 3) and 0 <= float(alpha.min()) and float(alpha.max()) < 1
    assert emb.linear_embedding.weight.shape == (151, 9) and emb.linear_embedding.padding_idx is None
    assert emb.projection.weight.shape == (81, 81)
    windows = model.derive_context_ids(stream)
    expected_windows = batch_windows(stream.numpy(), tok.token_classes, tok.audio_channels)
    assert torch.equal(windows, torch.from_numpy(expected_windows))
    assert torch.equal(windows[0, :, 4], stream[0])  # row k = window of token k (centre = the token)
    # Algorithm 1 of the v1 paper, written out
    with torch.no_grad():
        x = emb.linear_embedding(windows[0].view(-1, 3, 3)).permute(0, 3, 1, 2)
        a = torch.sigmoid(emb.alpha)
        x = a * x + (1 - a) * emb.patch_embedding(x) if conv else a * x
        manual = emb.norm(emb.projection(x.flatten(1)))
        torch.testing.assert_close(emb(windows), manual[None])


def test_center_embedding(stream):
    model = make_model(("lstm", False, "center", "next_token"))
    assert [n for n, _ in model.named_parameters() if n.startswith("embeddings.tokens.")] == [
        "embeddings.tokens.token_embedding.weight"
    ]
    ctx = model.derive_context_ids(stream)
    assert torch.equal(ctx, stream[..., None])
    with torch.no_grad():
        torch.testing.assert_close(model.embeddings.tokens(ctx), model.embeddings.tokens.token_embedding(stream))


def test_context_objective_with_other_embeddings_targets_pxby6_slots(tok, stream):
    model = make_model(("attention", False, "center", "context"))
    pxby6 = make_model(("attention", False, "pxby6", "context"))
    targets = pxby6.derive_context_ids(stream)
    out = model(input_ids=stream, labels=stream)
    expected_targets = torch.cat((targets[:, 1:, :5], stream[:, 1:, None]), dim=-1)
    flat = out.context_logits[:, :-1].reshape(-1, 151)
    expected = torch.nn.functional.cross_entropy(flat, expected_targets.reshape(-1))
    torch.testing.assert_close(out.loss, expected)


# -------------------------------------------------------------------------------------------------
# attention
# -------------------------------------------------------------------------------------------------
def test_attention_rotary_positions_and_projection(tok):
    model = make_model(("attention", False, "pxby6", "next_token"), embed_size=12, hidden_size=16)
    assert isinstance(model.backbone.input_proj, torch.nn.Linear)
    same = make_model(("attention", False, "pxby6", "next_token"), embed_size=12, hidden_size=12)
    assert isinstance(same.backbone.input_proj, torch.nn.Identity)
    # positions count real tokens: a left-padded prompt continues exactly like the prompt alone
    ids = tok("hello", return_tensors="pt")["input_ids"]
    padded = torch.cat((torch.zeros(1, 3, dtype=torch.long), ids), dim=1)
    mask = torch.cat((torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)), dim=1)
    with torch.no_grad():
        cache = model(input_ids=padded, attention_mask=mask, use_cache=True).cache
        assert cache.states["position"][0].tolist() == [ids.shape[1]]
        assert cache.states["key"][0].shape == (1, 2, padded.shape[1], 8)
        step = model(input_ids=torch.tensor([[70]]), cache=cache).logits[:, 0]
        full = model(input_ids=torch.cat((ids, torch.tensor([[70]])), dim=1)).logits[:, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["attention", "mamba"])
def test_beam_search_cached_equals_recompute(backbone, tok):
    model = make_model((backbone, False, "window3x3", "next_token"), seed=5)
    batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    kwargs = {"max_new_tokens": 8, "num_beams": 3, "num_return_sequences": 2, "do_sample": False}
    with torch.no_grad():
        cached = model.generate(**batch, **kwargs)
        recomputed = model.generate(**batch, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)


V1_ENCODER = {"attention_style": "v1_encoder", "hidden_size": 16, "num_attention_heads": 4}


@pytest.mark.parametrize("embedding", EMBEDDINGS)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_v1_encoder_backbone(embedding, objective, stream, tok, tmp_path):
    model = make_model(("attention", True, embedding, objective), **V1_ENCODER).train()
    out = model(input_ids=stream, labels=stream)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval().save_pretrained(tmp_path)
    with torch.no_grad():
        reference = model(input_ids=stream).logits
        torch.testing.assert_close(AutoModel.from_pretrained(tmp_path).eval()(input_ids=stream).logits, reference)
        batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
        padded = model(**batch).logits
        alone = model(**tok(PROMPTS[1], return_tensors="pt")).logits[0]
        torch.testing.assert_close(padded[1][batch["attention_mask"][1].bool()], alone, atol=1e-5, rtol=1e-5)


def test_v1_encoder_structure_is_the_original():
    model = make_model(
        ("attention", True, "window3x3", "next_token"), **V1_ENCODER, embed_size=16, num_hidden_layers=1, dropout=0.1
    )
    encoder = model.backbone.encoder
    layer = encoder.layers[0]
    assert not layer.norm_first and layer.activation_relu_or_gelu == 1  # post-norm, ReLU
    assert layer.dropout.p == 0.1 and layer.self_attn.num_heads == 4
    assert layer.linear1.weight.shape == (64, 16)
    assert isinstance(model.backbone.input_proj, torch.nn.Identity)
    # no positions and no mask: permuting the inputs permutes the outputs
    x = torch.randn(1, 7, 16)
    perm = torch.randperm(7)
    with torch.no_grad():
        out = model.backbone(x).hidden
        permuted = model.backbone(x[:, perm]).hidden
    torch.testing.assert_close(permuted, out[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["attention", "mamba"])
def test_sampling_with_several_return_sequences_cached_equals_recompute(backbone, tok):
    model = make_model((backbone, False, "pxby6", "next_token"), seed=6)
    batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    kwargs = {"max_new_tokens": 8, "do_sample": True, "top_k": 20, "num_return_sequences": 2}
    with torch.no_grad():
        torch.manual_seed(0)
        cached = model.generate(**batch, **kwargs)
        torch.manual_seed(0)
        recomputed = model.generate(**batch, use_cache=False, **kwargs)
    assert cached.shape == (4, batch["input_ids"].shape[1] + 8)
    assert torch.equal(cached, recomputed)


# -------------------------------------------------------------------------------------------------
# mamba
# -------------------------------------------------------------------------------------------------
def test_mamba_weights_are_initialised():
    model = make_model(("mamba", False, "pxby6", "next_token"))
    mixer = model.backbone.layers[0].mixer
    expected = torch.log(torch.arange(1, 5, dtype=torch.float32)).expand_as(mixer.A_log)
    torch.testing.assert_close(mixer.A_log.data, expected)
    torch.testing.assert_close(mixer.D.data, torch.ones_like(mixer.D))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_mamba_torch_path_equals_transformers_mixer(stream):
    """Our CPU path reads the mixer's parameters like ``MambaMixer.forward`` (here on its torch path)."""
    model = make_model(("mamba", False, "pxby6", "next_token"))
    x = torch.randn(2, 37, 16)
    mask = torch.ones(2, 37)
    mask[1, :5] = 0
    for block in model.backbone.layers:
        for sequential in (False, True):
            ours, _ = backbones.mamba_mixer_forward(block.mixer, x, mask, use_mambapy=not sequential)
            with torch.no_grad():
                theirs = block.mixer(x, attention_mask=mask)
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_mamba_transformers_mixer_path_matches(monkeypatch, stream, bidirectional):
    """The CUDA route (``MambaMixer.forward`` itself, uncached and unpadded) gives our path's logits (checked here
    on CPU, where transformers' mixer runs its torch path)."""
    model = make_model(("mamba", bidirectional, "window3x3", "next_token"))
    with torch.no_grad():
        ours = model(input_ids=stream, use_cache=False).logits
        calls = []
        for block in model.backbone.layers:
            block.mixer.register_forward_hook(lambda *args: calls.append(1))
        monkeypatch.setattr(backbones.MambaBackbone, "_transformers_path", lambda self, x: True)
        theirs = model(input_ids=stream, use_cache=False).logits
    assert len(calls) == 2
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)


def test_mamba_cpu_never_calls_transformers_kernels(monkeypatch, stream):
    """transformers binds mamba-ssm / causal-conv1d kernels at import with no device check: CPU must not use them."""
    from transformers.models.mamba import modeling_mamba

    def kernel(*args, **kwargs):
        raise AssertionError("a CUDA kernel was called with CPU tensors")

    for name in ("mamba_inner_fn", "causal_conv1d_fn", "causal_conv1d_update", "mamba_selective_scan",
                 "mamba_selective_state_update"):  # fmt: skip
        monkeypatch.setattr(modeling_mamba, name, kernel)
    for bidirectional in (False, True):
        model = make_model(("mamba", bidirectional, "pxby6", "next_token")).train()
        model(input_ids=stream, labels=stream).loss.backward()
    model.eval()
    with torch.no_grad():
        model.generate(input_ids=stream[:, :10], max_new_tokens=3, do_sample=False)


def test_mamba_without_mambapy_warns_once_and_matches(monkeypatch, caplog, stream):
    model = make_model(("mamba", False, "pxby6", "next_token"))
    with torch.no_grad():
        fast = model(input_ids=stream).logits
    monkeypatch.setitem(__import__("sys").modules, "mambapy", None)
    monkeypatch.setattr(backbones, "_WARNED_NO_MAMBAPY", False)
    with caplog.at_level(logging.WARNING, logger=backbones.__name__), torch.no_grad():
        slow = model(input_ids=stream).logits
        model(input_ids=stream)
    warnings = [r for r in caplog.records if "mambapy is not installed" in r.getMessage()]
    assert len(warnings) == 1
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-4)


def test_mamba_cache_holds_conv_and_ssm_states(stream):
    model = make_model(("mamba", False, "pxby6", "next_token"), conv_kernel=3, expand=2)
    with torch.no_grad():
        cache = model(input_ids=stream[:, :12], use_cache=True).cache
    assert [t.shape for t in cache.states["conv"]] == [(1, 32, 2)] * 2
    assert [t.shape for t in cache.states["ssm"]] == [(1, 32, 4)] * 2


@pytest.mark.parametrize("bidirectional", [False, True])
def test_v1_mamba_style(bidirectional, stream, tok, tmp_path):
    """mamba_style="v1" (the v1 bMamba, exact against the mamba_ssm math in test_conversion): plain mixers, one
    LayerNorm after the shared-weight bidirectional first layer; trains, reloads, padding-exact, cached == full."""
    model = make_model(("mamba", bidirectional, "window3x3", "next_token"), mamba_style="v1", hidden_size=18).train()
    names = {name.split(".", 2)[1] for name, _ in model.named_parameters() if name.startswith("backbone.")}
    assert names == ({"mixers", "norm"} if bidirectional else {"mixers"})
    assert not any(name.startswith("backbone.mixers.0.in_proj.bias") for name, _ in model.named_parameters())
    out = model(input_ids=stream, labels=stream)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval().save_pretrained(tmp_path)
    with torch.no_grad():
        reference = model(input_ids=stream).logits
        torch.testing.assert_close(AutoModel.from_pretrained(tmp_path).eval()(input_ids=stream).logits, reference)
        batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
        padded = model(**batch).logits
        alone = model(**tok(PROMPTS[1], return_tensors="pt")).logits[0]
        torch.testing.assert_close(padded[1][batch["attention_mask"][1].bool()], alone, atol=1e-5, rtol=1e-5)
        if not bidirectional:
            cached = model.generate(**batch, max_new_tokens=6, do_sample=False)
            recomputed = model.generate(**batch, max_new_tokens=6, do_sample=False, use_cache=False)
            assert torch.equal(cached, recomputed)


# -------------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "mamba", "bidirectional": "first_layer"}, "first_layer"),
        ({"backbone": "attention", "bidirectional": "first_layer"}, "first_layer"),
        ({"backbone": "attention", "hidden_size": 18, "num_attention_heads": 4}, "divisible"),
        ({"backbone": "attention", "hidden_size": 18, "num_attention_heads": 6}, "even head size"),
        ({"backbone": "attention", "intermediate_size": 0}, "intermediate_size"),
        ({"objective": "diffusion", "backbone": "mamba"}, "bidirectional"),
        ({"embedding": "pxby9"}, "embedding"),
        ({"backbone": "attention", "attention_style": "v1_encoder"}, "bidirectional=True"),
        (
            {"backbone": "attention", "attention_style": "v1_encoder", "bidirectional": True, "hidden_size": 18},
            "divisible",
        ),
    ],
)
def test_invalid_combinations_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PxByConfig(**kwargs)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_embedding_noise_diffusion_every_backbone(backbone, stream):
    """The original diffusion scheme (pxby6 only; more in test_diffusion.py): 6·V head, clean forward = no noise."""
    model = diffusion_model(backbone, "pxby6", diffusion_scheme="embedding_noise").train()
    out = model(input_ids=stream, labels=stream)
    assert out.context_logits.shape == (1, stream.shape[1], 6, 151)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    with torch.no_grad():
        clean = model.eval()(input_ids=stream)
        torch.testing.assert_close(clean.logits, clean.context_logits[:, :, 5])
    with pytest.raises(ValueError, match="pxby6"):
        PxByConfig(**{**TINY, "objective": "diffusion", "bidirectional": True, "diffusion_scheme": "embedding_noise",
                      "embedding": "window3x3"})  # fmt: skip


# -------------------------------------------------------------------------------------------------
# masked diffusion
# -------------------------------------------------------------------------------------------------
def diffusion_model(backbone: str, embedding: str, seed: int = 0, **overrides) -> PxBySequenceModel:
    return make_model((backbone, True, embedding, "diffusion"), seed=seed, **overrides)


def fixed_mask(model: PxBySequenceModel, ids: torch.Tensor, seed: int = 0) -> torch.Tensor:
    content = content_positions(model.embeddings.token_classes, ids)
    generator = torch.Generator().manual_seed(seed)
    return content & (torch.rand(ids.shape, generator=generator) < 0.4)


@pytest.mark.parametrize("embedding", EMBEDDINGS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_diffusion_forward_backward_and_round_trip(backbone, embedding, stream, tmp_path):
    model = diffusion_model(backbone, embedding).train()
    torch.manual_seed(0)
    out = model(input_ids=stream, labels=stream)
    assert out.logits.shape == (1, stream.shape[1], 151)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval().save_pretrained(tmp_path)
    mask = fixed_mask(model, stream)
    with torch.no_grad():
        reference = model(input_ids=stream, diffusion_mask=mask).logits
        loaded = AutoModel.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(loaded(input_ids=stream, diffusion_mask=mask).logits, reference)


@pytest.mark.parametrize("embedding", EMBEDDINGS)
def test_diffusion_masked_tokens_are_hidden_everywhere(embedding, stream):
    model = diffusion_model("lstm", embedding)
    mask = fixed_mask(model, stream, seed=1)
    other = model.lm_head._same_class_other[stream]
    changed = torch.where(mask, other, stream)
    assert not torch.equal(changed, stream)
    with torch.no_grad():
        a = model(input_ids=stream, diffusion_mask=mask).logits
        b = model(input_ids=changed, diffusion_mask=mask).logits
        clean = model(input_ids=stream).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # the masked values are never read
    assert not torch.equal(a, clean)
    ctx = model.lm_head.masked_context_ids(model.embeddings, stream, mask)
    assert int(ctx.max()) == 151  # the mask id appears in the contexts
    loss = model(input_ids=stream, diffusion_mask=mask, labels=stream).loss
    expected = torch.nn.functional.cross_entropy(a[mask], stream[mask])
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_infill_keeps_unmasked_tokens(backbone, tok):
    model = diffusion_model(backbone, "window3x3", seed=2)
    rng = np.random.default_rng(3)
    sprite = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    sound = rng.uniform(-1, 1, (2, 5)).astype(np.float32)
    rows = [tok(text="a sprite", images=sprite)["input_ids"], tok(text="hi", audio=sound)["input_ids"]]
    width = max(len(r) for r in rows)
    ids = torch.zeros(2, width, dtype=torch.long)
    attention = torch.zeros(2, width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        attention[i, width - len(row) :] = 1
    fill = content_positions(model.embeddings.token_classes, ids, attention)
    fill[:, : width // 2] = False  # fill the second half's content (a block of the sprite / audio samples)
    filled = model.infill(ids, fill, attention_mask=attention, num_steps=3)
    assert torch.equal(filled[~fill], ids[~fill])
    classes = torch.as_tensor(tok.token_classes)
    assert torch.equal(classes[filled], classes[ids])  # the structure never changes
    # a batch row fills exactly like the row alone
    alone = model.infill(ids[1:, attention[1].bool()], fill[1:, attention[1].bool()], num_steps=3)
    assert torch.equal(alone[0], filled[1, attention[1].bool()])
    # one step per token when num_steps >= the number of masked tokens: still only the masked positions change
    single = model.infill(ids[:1], fill[:1], attention_mask=attention[:1], num_steps=int(fill[0].sum()))
    assert torch.equal(single[0][~fill[0]], ids[0][~fill[0]])


def test_diffusion_training_decreases_loss(tok):
    model = diffusion_model("attention", "pxby6", hidden_size=32).train()
    sprite = np.zeros((4, 4, 3), dtype=np.uint8)
    sprite[1:3, 1:3] = 255
    ids = tok(text="a white square", images=sprite, return_tensors="pt")["input_ids"]
    mask = fixed_mask(model, ids, seed=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(input_ids=ids, labels=ids, diffusion_mask=mask).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_diffusion_errors(stream, tok):
    model = diffusion_model("lstm", "pxby6")
    structural = stream < 3
    with pytest.raises(ValueError, match="only content tokens"):
        model(input_ids=stream, diffusion_mask=structural)
    with pytest.raises(ValueError, match="only content positions"):
        model.infill(stream, structural)
    with pytest.raises(ValueError, match="infill"):
        model.generate(stream[:, :5], max_new_tokens=2)
    with pytest.raises(ValueError, match="no cache"):
        model(input_ids=stream, use_cache=True)
    with pytest.raises(ValueError, match="context_ids"):
        model(input_ids=stream, context_ids=model.derive_context_ids(stream))
    with pytest.raises(ValueError, match="diffusion"):
        make_model(("lstm", False, "pxby6", "next_token")).infill(stream, structural)
    with pytest.raises(ValueError, match="diffusion_mask"):
        make_model(("lstm", False, "pxby6", "next_token"))(input_ids=stream, diffusion_mask=structural)

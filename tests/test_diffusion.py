"""Diffusion objectives (DESIGN §6): the original aPxBy ``embedding_noise`` scheme (converted golden checkpoint,
noise formula, training pattern, infill) and both schemes trained with ``transformers.Trainer`` / the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, TrainingArguments

from folder_data import make_folder_dataset
from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
from pixelbytes.cli import main
from pixelbytes.conversion import convert_original, load_original_checkpoint
from pixelbytes.data import PxByDataCollator, PxByWindowDataset
from pixelbytes.objectives_pixelbytes import content_positions
from pixelbytes.training.trainer import build_trainer
from tiny_models import layout_stream

GOLDEN = Path(__file__).parent / "fixtures" / "original" / "apxby_diffusion_bi"
ATOL = 1e-5
V = 151
TINY = {"embed_size": 12, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "state_size": 4}
SCHEMES = ("masked", "embedding_noise")
BACKBONES = ("lstm", "attention", "mamba")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
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


def diffusion_model(scheme: str, backbone: str = "lstm", seed: int = 0, **overrides) -> PxBySequenceModel:
    torch.manual_seed(seed)
    config = PxByConfig(**{**TINY, "backbone": backbone, "bidirectional": True, "objective": "diffusion",
                           "diffusion_scheme": scheme, **overrides})  # fmt: skip
    return PxBySequenceModel(config).eval()


def golden_io() -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "golden_io.safetensors")


def content_mask(model: PxBySequenceModel, ids: torch.Tensor, rate: float = 0.4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return content_positions(model.embeddings.token_classes, ids) & (torch.rand(ids.shape, generator=generator) < rate)


# -------------------------------------------------------------------------------------------------
# the converted original checkpoint
# -------------------------------------------------------------------------------------------------
def test_golden_diffusion_checkpoint_clean_forward():
    model, tokenizer = convert_original(GOLDEN)
    config = model.config
    assert (config.objective, config.diffusion_scheme) == ("diffusion", "embedding_noise")
    assert config.num_diffusion_steps == 5
    assert (config.embedding, config.backbone, config.bidirectional) == ("pxby6", "lstm", True)
    assert (config.embed_size, config.hidden_size, config.num_hidden_layers) == (24, 16, 2)
    assert model.embeddings.tokens.slot_embedding.num_embeddings == V  # no mask row: the original table as it is
    config.check_tokenizer(tokenizer)
    io = golden_io()
    contexts = io["inputs"]  # (B, L, 6) contexts fed to the original model
    with torch.no_grad():
        out = model(input_ids=contexts[..., 5], context_ids=contexts)  # clean: t = 0, nothing noised
    assert out.context_logits.shape == io["logits"].shape == (2, 12, 6, V)
    difference = float((out.context_logits - io["logits"]).abs().max())
    assert difference <= ATOL, difference
    torch.testing.assert_close(out.logits, io["logits"][:, :, 5], atol=ATOL, rtol=0)
    # noising every slot at t = 0 (α = 1) is the clean forward too
    everything = torch.ones(*contexts.shape, dtype=torch.bool)
    with torch.no_grad():
        at_zero = model(input_ids=contexts[..., 5], context_ids=contexts, diffusion_mask=everything, diffusion_step=0)
    torch.testing.assert_close(at_zero.context_logits, io["logits"], atol=ATOL, rtol=0)


class OriginalNoisyAPxBy(nn.Module):
    """The original aPxBy diffusion forward (reference inventory §3.5) with a GIVEN slot mask m (True = noised),
    noise tensor and step t: ``x = where(m, (1 - α)·noise + α·x, x)``, α = 1 - t/n, then LSTM and fc."""

    def __init__(self, state_dict: dict[str, torch.Tensor], hidden: int, layers: int, n: int) -> None:
        super().__init__()
        vocab, pxby_emb = state_dict["embedding.weight"].shape
        self.n = n
        self.embedding = nn.Embedding(vocab, pxby_emb, padding_idx=0)
        self.sequence_model = nn.LSTM(6 * pxby_emb, hidden, layers, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(2 * hidden, 6 * vocab)
        self.load_state_dict(state_dict)

    def forward(self, x: torch.Tensor, t: float, m: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        emb = self.embedding(x)  # (B, L, 6, e)
        alpha = 1 - t / self.n
        emb = torch.where(m.unsqueeze(-1), (1 - alpha) * noise + alpha * emb, emb)
        return self.fc(self.sequence_model(emb.view(B, L, -1))[0]).view(B, L, 6, -1)


@pytest.mark.parametrize("t", [0, 2.5, 4, 5])
def test_golden_noise_formula_is_the_original(t):
    model, _ = convert_original(GOLDEN)
    checkpoint = load_original_checkpoint(GOLDEN)
    original = OriginalNoisyAPxBy(checkpoint.state_dict, hidden=8, layers=2, n=5).eval()
    contexts = golden_io()["inputs"]
    slots = torch.rand(contexts.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    with torch.no_grad():
        ours = model(input_ids=contexts[..., 5], context_ids=contexts, diffusion_mask=slots, diffusion_step=t,
                     diffusion_generator=torch.Generator().manual_seed(7)).context_logits  # fmt: skip
        noise = torch.randn((*contexts.shape, 4), generator=torch.Generator().manual_seed(7))
        expected = original(contexts, t, slots, noise)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    if t > 0:  # and the noise does change the output
        assert float((ours - golden_io()["logits"]).abs().max()) > 1e-3


def test_golden_model_infills_a_real_stream(tok):
    model, tokenizer = convert_original(GOLDEN)
    sprite = np.zeros((5, 5, 3), dtype=np.uint8)
    sprite[1:4, 1:4] = (255, 0, 0)
    ids = tokenizer(text="red", images=sprite, return_tensors="pt")["input_ids"]
    fill = content_positions(model.embeddings.token_classes, ids)
    fill[:, : ids.shape[1] // 2] = False
    filled = model.infill(ids, fill, num_steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filled[~fill], ids[~fill])
    classes = torch.as_tensor(tokenizer.token_classes)
    assert torch.equal(classes[filled], classes[ids])
    again = model.infill(ids, fill, num_steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, filled)


def test_converted_diffusion_model_round_trips(tmp_path):
    model, _ = convert_original(GOLDEN)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["objective"], saved["diffusion_scheme"]) == ("diffusion", "embedding_noise")
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    contexts = golden_io()["inputs"]
    with torch.no_grad():
        got = loaded(input_ids=contexts[..., 5], context_ids=contexts).context_logits
    torch.testing.assert_close(got, golden_io()["logits"], atol=ATOL, rtol=0)


# -------------------------------------------------------------------------------------------------
# embedding_noise: forward, hiding, training pattern, loss
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", BACKBONES)
def test_embedding_noise_forward_backward_and_round_trip(backbone, stream, tmp_path):
    model = diffusion_model("embedding_noise", backbone).train()
    out = model(input_ids=stream, labels=stream)
    L = stream.shape[1]
    assert out.context_logits.shape == (1, L, 6, V) and out.logits.shape == (1, L, V)
    assert torch.isfinite(out.loss) and 0 <= float(out.context_accuracy) <= 1
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval().save_pretrained(tmp_path)
    mask = content_mask(model, stream)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        for t in (0, 3, 5):
            kwargs = {"diffusion_mask": mask, "diffusion_step": t}
            reference = model(input_ids=stream, diffusion_generator=torch.Generator().manual_seed(t), **kwargs)
            got = loaded(input_ids=stream, diffusion_generator=torch.Generator().manual_seed(t), **kwargs)
            torch.testing.assert_close(got.context_logits, reference.context_logits)


def test_embedding_noise_hides_masked_tokens_everywhere(stream):
    model = diffusion_model("embedding_noise", seed=3)
    mask = content_mask(model, stream, seed=2)
    changed = torch.where(mask, model.lm_head._same_class_other[stream], stream)
    assert not torch.equal(changed, stream)
    slots = model.lm_head.noise_slots(model.embeddings, stream, mask)
    clean = model.derive_context_ids(stream)
    assert torch.equal(clean != model.derive_context_ids(changed), (clean != model.derive_context_ids(changed)) & slots)
    assert slots[mask].all()  # the masked token's own row, as the original
    with torch.no_grad():
        run = {"diffusion_mask": mask, "diffusion_step": 5}  # pure noise on the hidden slots
        a = model(input_ids=stream, diffusion_generator=torch.Generator().manual_seed(0), **run).logits
        b = model(input_ids=changed, diffusion_generator=torch.Generator().manual_seed(0), **run).logits
        c = model(input_ids=stream).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # the hidden values are never read
    assert not torch.equal(a, c)


def test_embedding_noise_training_pattern_is_the_original():
    """⌊3n/4⌋ rows drawn with replacement (≈ 53 % distinct), all 6 slots of a drawn row, slots 0-4 of the next;
    padding never; t ∈ {n-1, n}."""
    model = diffusion_model("embedding_noise")
    B, L = 64, 200
    attention = torch.ones(B, L, dtype=torch.long)
    attention[: B // 2, 150:] = 0  # right-padded rows
    slots = model.lm_head.training_slots(attention, (B, L), torch.Generator().manual_seed(0), torch.device("cpu"))
    rows = slots[..., 5]  # slot 5 is noised only on drawn rows
    assert torch.equal(slots[..., :5] | rows.unsqueeze(-1), slots[..., :5])  # a drawn row is noised everywhere
    following = torch.zeros_like(rows)
    following[:, 1:] = rows[:, :-1]
    assert torch.equal(slots[..., 0], rows | (following & attention.bool()))
    assert not slots[attention == 0].any()
    expected = 1 - (1 - 1 / L) ** ((3 * L) // 4)
    assert abs(float(rows[B // 2 :].float().mean()) - expected) < 0.02
    assert abs(float(rows[: B // 2, :150].float().mean()) - (1 - (1 - 1 / 150) ** 112)) < 0.02


def test_embedding_noise_training_forward_is_the_original():
    """A training forward (labels, no mask) = the original forward with its pattern, t ~ U{n-1, n} per row and
    the noise, all drawn from ``diffusion_generator`` in that order; the loss covers all rows and 6 slots."""
    model, _ = convert_original(GOLDEN)
    checkpoint = load_original_checkpoint(GOLDEN)
    original = OriginalNoisyAPxBy(checkpoint.state_dict, hidden=8, layers=2, n=5).eval()
    contexts = golden_io()["inputs"].repeat(4, 1, 1)  # 8 rows: both noise levels appear
    B, L, _ = contexts.shape
    model.train()
    out = model(input_ids=contexts[..., 5], context_ids=contexts, labels=contexts[..., 5],
                diffusion_generator=torch.Generator().manual_seed(3))  # fmt: skip
    replay = torch.Generator().manual_seed(3)
    slots = model.lm_head.training_slots(None, (B, L), replay, torch.device("cpu"))
    steps = torch.randint(4, 6, (B,), generator=replay)
    noise = torch.randn((B, L, 6, 4), generator=replay)
    assert set(steps.tolist()) == {4, 5}
    with torch.no_grad():
        expected = torch.cat([original(contexts[i : i + 1], float(steps[i]), slots[i : i + 1], noise[i : i + 1])
                              for i in range(B)])  # fmt: skip
        torch.testing.assert_close(out.context_logits, expected, atol=ATOL, rtol=0)
        loss = nn.functional.cross_entropy(expected.reshape(-1, V), contexts.reshape(-1))
        torch.testing.assert_close(out.loss, loss, atol=ATOL, rtol=0)


def test_embedding_noise_loss_is_the_mean_over_six_slots(stream):
    model = diffusion_model("embedding_noise")
    mask = content_mask(model, stream)
    labels = stream.clone()
    labels[:, :10] = -100
    run = {"input_ids": stream, "diffusion_mask": mask, "diffusion_step": 4}
    with torch.no_grad():
        out = model(**run, labels=labels, diffusion_generator=torch.Generator().manual_seed(0))
        targets = model.derive_context_ids(stream)[:, 10:]
        expected = nn.functional.cross_entropy(out.context_logits[:, 10:].reshape(-1, V), targets.reshape(-1))
        torch.testing.assert_close(out.loss, expected)
        # Trainer normalisation: weighted by this batch's share of the counted items (labels[:, 1:] != -100)
        scaled = model(**run, labels=labels, diffusion_generator=torch.Generator().manual_seed(0),
                       num_items_in_batch=torch.tensor(400))  # fmt: skip
        share = int((labels[:, 1:] != -100).sum())
        torch.testing.assert_close(scaled.loss, expected * share / 400)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_eval_mode_loss_is_deterministic_and_training_draws_vary(scheme, stream):
    model = diffusion_model(scheme)
    with torch.no_grad():
        first = model(input_ids=stream, labels=stream).loss
        second = model(input_ids=stream, labels=stream).loss
        assert float(first) == float(second)  # the same batch is masked / noised the same way at every evaluation
        model.train()
        model.lm_head.generator = torch.Generator().manual_seed(0)
        a = model(input_ids=stream, labels=stream).loss
        b = model(input_ids=stream, labels=stream).loss
        model.lm_head.generator = torch.Generator().manual_seed(0)
        assert float(model(input_ids=stream, labels=stream).loss) == float(a)  # the seeded generator repeats
    assert float(a) != float(b)


# -------------------------------------------------------------------------------------------------
# infill (embedding_noise)
# -------------------------------------------------------------------------------------------------
def test_embedding_noise_infill_keeps_unmasked_tokens(tok):
    model = diffusion_model("embedding_noise", "attention", seed=2)
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
    fill[:, : width // 2] = False
    generator = torch.Generator().manual_seed(0)
    filled = model.infill(ids, fill, attention_mask=attention, num_steps=3, generator=generator)
    assert torch.equal(filled[~fill], ids[~fill])
    classes = torch.as_tensor(tok.token_classes)
    assert torch.equal(classes[filled], classes[ids])
    # the placeholder values are never read (the first pass is pure noise)
    other = torch.where(fill, model.lm_head._same_class_other[ids], ids)
    again = model.infill(other, fill, attention_mask=attention, num_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, filled)
    # nothing to fill: unchanged
    assert torch.equal(model.infill(ids, torch.zeros_like(fill), attention_mask=attention), ids)


# -------------------------------------------------------------------------------------------------
# Trainer and CLI (both schemes)
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def windows(tok) -> PxByWindowDataset:
    store = []
    for i in range(4):
        sprite = np.zeros((2, 6, 6, 3), dtype=np.uint8)
        sprite[:, 1:4, 2:5] = (255, 0, 0) if i % 2 else (0, 0, 255)
        enc = tok(text=f"square {i}", images=sprite, return_context_ids=True, return_tensors="np")
        store.append({"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]})
    return PxByWindowDataset(store, [len(s["input_ids"]) for s in store], seq_length=48, stride=32)


def _training_args(tmp_path, **overrides) -> TrainingArguments:
    base = {"output_dir": str(tmp_path / "out"), "max_steps": 5, "per_device_train_batch_size": 2,
            "per_device_eval_batch_size": 4, "gradient_accumulation_steps": 2, "learning_rate": 2e-2,
            "logging_steps": 1, "report_to": "none", "save_strategy": "no", "use_cpu": True, "seed": 0,
            "eval_strategy": "no", "dataloader_num_workers": 0}  # fmt: skip
    return TrainingArguments(**{**base, **overrides})


def _trainer_losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_trainer_five_steps(scheme, tok, windows, tmp_path):
    torch.manual_seed(0)
    config = PxByConfig.from_tokenizer(tok, objective="diffusion", bidirectional=True, diffusion_scheme=scheme,
                                       **TINY)  # fmt: skip
    model = PxBySequenceModel(config)
    trainer = build_trainer(model, tok, _training_args(tmp_path), windows, windows)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    losses = _trainer_losses(trainer)
    assert len(losses) == 5 and all(math.isfinite(x) for x in losses)
    # gradient accumulation (2) + num_items_in_batch: a weighted mean per step, ≈ ln V at the start, not 2 ln V
    assert losses[0] < 1.1 * math.log(V)
    assert after < before  # the same (deterministic) evaluation masks / noise before and after
    trainer.save_model(str(tmp_path / "saved"))
    loaded = AutoModel.from_pretrained(tmp_path / "saved").eval()
    assert loaded.config.diffusion_scheme == scheme
    ids = torch.as_tensor(windows[0]["input_ids"]).unsqueeze(0)
    fill = content_positions(loaded.embeddings.token_classes, ids) & (torch.arange(ids.shape[1]) > 20)
    filled = loaded.infill(ids, fill)
    assert torch.equal(filled[~fill], ids[~fill])


def test_trainer_diffusion_runs_are_reproducible(tok, windows, tmp_path):
    runs = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        config = PxByConfig.from_tokenizer(tok, objective="diffusion", bidirectional=True,
                                           diffusion_scheme="embedding_noise", **TINY)  # fmt: skip
        trainer = build_trainer(PxBySequenceModel(config), tok, _training_args(tmp_path / name, max_steps=3), windows)
        trainer.train()
        runs.append(_trainer_losses(trainer))
    assert runs[0] == runs[1]


def test_collator_without_context_ids(windows):
    batch = PxByDataCollator(include_context_ids=False)([windows[0], windows[1]])
    assert "context_ids" not in batch
    assert set(batch) == {"input_ids", "labels", "attention_mask"}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_cli_trains_a_diffusion_model(scheme, tmp_path):
    data = make_folder_dataset(tmp_path / "data", n=3, corrupt=False)
    out = tmp_path / "model"
    flags = ["--embed_size", "12", "--hidden_size", "16", "--num_hidden_layers", "1", "--seq_length", "64",
             "--stride", "48", "--audio_stride", "8", "--max_steps", "2", "--per_device_train_batch_size", "2",
             "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true", "--validation_fraction", "0.34",
             "--eval_strategy", "steps", "--eval_steps", "2"]  # fmt: skip
    argv = ["train", "--dataset", str(data), "--output_dir", str(out), "--objective", "diffusion", "--bidirectional",
            "--diffusion_scheme", scheme, "--num_diffusion_steps", "4", *flags]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["objective"], config["bidirectional"]) == ("diffusion", True)
    assert (config["diffusion_scheme"], config["num_diffusion_steps"]) == (scheme, 4)
    metrics = json.loads((out / "final_results.json").read_text())
    assert math.isfinite(metrics["eval_loss"]) and math.isfinite(metrics["train_loss"])


# -------------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------------
NOISE = {"objective": "diffusion", "bidirectional": True, "diffusion_scheme": "embedding_noise"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "diffusion"}, "bidirectional"),
        ({"objective": "diffusion", "diffusion_scheme": "embedding_noise", "backbone": "mamba"}, "bidirectional"),
        ({"objective": "diffusion", "bidirectional": True, "diffusion_scheme": "gaussian"}, "diffusion_scheme"),
        ({**NOISE, "embedding": "center"}, "pxby6"),
        ({"objective": "diffusion", "bidirectional": True, "num_diffusion_steps": 0}, "num_diffusion_steps"),
    ],
)
def test_bad_configs_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PxByConfig(**kwargs)


def test_bad_inputs_are_clear_errors(stream):
    noisy = diffusion_model("embedding_noise")
    masked = diffusion_model("masked")
    mask = content_mask(noisy, stream)
    structural = stream < 3
    with pytest.raises(ValueError, match="only for diffusion_scheme='embedding_noise'"):
        masked(input_ids=stream, diffusion_mask=mask, diffusion_step=2)
    with pytest.raises(ValueError, match=r"\[0, num_diffusion_steps=5\]"):
        noisy(input_ids=stream, diffusion_mask=mask, diffusion_step=6)
    with pytest.raises(ValueError, match="needs a diffusion_mask"):
        noisy(input_ids=stream, diffusion_step=2)
    with pytest.raises(ValueError, match="diffusion_mask must have shape"):
        noisy(input_ids=stream, diffusion_mask=mask[:, :-1])
    with pytest.raises(ValueError, match="only content tokens"):
        noisy(input_ids=stream, diffusion_mask=structural)
    with pytest.raises(ValueError, match="only content positions"):
        noisy.infill(stream, structural)
    with pytest.raises(ValueError, match="num_steps"):
        noisy.infill(stream, mask, num_steps=0)
    with pytest.raises(ValueError, match="context_ids must be in"):
        noisy(input_ids=stream, context_ids=torch.full((*stream.shape, 6), V))  # no mask id in this scheme
    with pytest.raises(ValueError, match="no cache"):
        noisy(input_ids=stream, use_cache=True)
    with pytest.raises(ValueError, match="infill"):
        noisy.generate(stream[:, :5], max_new_tokens=2)
    causal = PxBySequenceModel(PxByConfig(**TINY)).eval()
    with pytest.raises(ValueError, match="only for objective='diffusion'"):
        causal(input_ids=stream, diffusion_step=1)
    with pytest.raises(ValueError, match="diffusion"):
        causal.infill(stream, mask)

"""Caption memory (PxByConfig.caption_memory_buckets): the vectorised memory against a per-token reference,
cached steps and generation against full recompute for every causal backbone, padding, beams, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
from pixelbytes.layout import IMAGE
from pixelbytes.vocabulary import BYTE

TINY = {"embed_size": 18, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "state_size": 4,
        "caption_memory_buckets": 64}  # fmt: skip
BACKBONES = ("lstm", "attention", "mamba")
PROMPTS = ["a red heart", "hi", "pixel bytes: 12 colours"]


def memory_model(backbone: str = "lstm", seed: int = 0, per_cell: bool = False, **overrides) -> PxBySequenceModel:
    torch.manual_seed(seed)
    if per_cell:
        overrides = {"caption_memory_cell_frames": 2, "grid_position_size": 4, **overrides}
    model = PxBySequenceModel(PxByConfig(**{**TINY, "backbone": backbone, **overrides})).eval()
    with torch.no_grad():  # a visible memory: table entries as large as the token embeddings
        model.embeddings.caption_memory.table.weight.normal_(0.0, 1.0)
    return model


@pytest.fixture(scope="module")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


@pytest.fixture(scope="module")
def two_captions(tok) -> torch.Tensor:
    """Text, a 3-frame sprite, a second text, a sound: two text segments with pixels and levels after each."""
    rng = np.random.default_rng(0)
    sprite = rng.integers(0, 256, (3, 3, 4, 3), dtype=np.uint8)  # 3 frames: the third shares the second's cells
    first = tok(text="a red heart", images=sprite, return_tensors="pt")["input_ids"]
    sound = rng.uniform(-1, 1, (2, 5)).astype(np.float32)
    second = tok(text="then a beep", audio=sound, return_tensors="pt")["input_ids"]
    return torch.cat((first, second), 1)


def reference_memory(model: PxBySequenceModel, ids: list[int]) -> torch.Tensor:
    """Per position: mean table row of the trigrams of the latest text segment, by a plain loop."""
    memory = model.embeddings.caption_memory
    classes = model.embeddings.token_classes
    out, segment, total, count = [], [], torch.zeros(memory.table.embedding_dim), 0
    for i, token in enumerate(ids):
        if classes[token] == BYTE:
            if i == 0 or classes[ids[i - 1]] != BYTE:
                segment, total, count = [], torch.zeros_like(total), 0
            segment.append(token - memory.byte_offset)
            if len(segment) >= 3:
                total = total + memory.table.weight[memory.bucket(*(torch.tensor(b) for b in segment[-3:]))]
                count += 1
        out.append(total / max(count, 1))
    return torch.stack(out)


def test_memory_equals_per_token_reference(two_captions):
    model = memory_model()
    with torch.no_grad():
        memory, _ = model.embeddings.caption_memory(two_captions, None)
        expected = reference_memory(model, two_captions[0].tolist())
    torch.testing.assert_close(memory[0], expected, atol=1e-5, rtol=1e-5)
    first_text_end = int((two_captions[0] == 2).nonzero()[0])  # the first text's terminator
    assert memory[0, 0].abs().sum() == 0 and memory[0, first_text_end].abs().sum() > 0


def test_memory_ignores_padding(tok):
    model = memory_model()
    batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        padded, _ = model.embeddings.caption_memory(batch["input_ids"], batch["attention_mask"])
        for i, prompt in enumerate(PROMPTS):
            alone, _ = model.embeddings.caption_memory(tok(prompt, return_tensors="pt")["input_ids"], None)
            keep = batch["attention_mask"][i].bool()
            torch.testing.assert_close(padded[i][keep], alone[0], atol=1e-6, rtol=1e-6)


def test_per_cell_memory_is_the_memory_times_one_plus_the_cell(two_captions):
    model = memory_model(per_cell=True)
    cells = model.embeddings.caption_memory.cells.detach()
    assert cells.shape == (2 * 4 * 4 + 1, TINY["embed_size"]) and 0.8 < float(cells.std()) < 1.2  # N(0, 1) init
    where = model.derive_grid_positions(two_captions)[0]  # (L, 4): where each next token lands
    with torch.no_grad():
        memory, _ = model.embeddings.caption_memory(two_captions, None, grid_positions=where.unsqueeze(0))
        plain = reference_memory(model, two_captions[0].tolist())
    for k, (kind, frame, row, column) in enumerate(where.tolist()):
        cell = (min(frame, 1) * 4 + min(row, 3)) * 4 + min(column, 3) if kind == IMAGE else 2 * 16
        torch.testing.assert_close(memory[0, k], plain[k] * (1 + cells[cell]), atol=1e-5, rtol=1e-5)
    assert {int(kind) for kind in where[:, 0]} >= {IMAGE} and set(where[where[:, 0] == IMAGE, 1].tolist()) >= {0, 1, 2}
    with pytest.raises(ValueError, match="grid positions"):
        model.embeddings.caption_memory(two_captions, None)


@pytest.mark.parametrize("per_cell", [False, True])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_cached_steps_equal_full_forward(backbone, per_cell, two_captions):
    model = memory_model(backbone, per_cell=per_cell)
    L = two_captions.shape[1]
    with torch.no_grad():
        full = model(input_ids=two_captions, use_cache=False).logits
        for split in (2, 5, 20, L - 12, L - 3):  # inside a text, after it, inside the second text
            cache = model(input_ids=two_captions[:, :split], use_cache=True).cache
            for k in range(split, L):
                out = model(input_ids=two_captions[:, k : k + 1], cache=cache)
                torch.testing.assert_close(out.logits[:, 0], full[:, k], atol=1e-5, rtol=1e-5)
                cache = out.cache
            several = model(input_ids=two_captions[:, :split], use_cache=True).cache
            rest = model(input_ids=two_captions[:, split:], cache=several).logits
            torch.testing.assert_close(rest, full[:, split:], atol=1e-5, rtol=1e-5)


def test_memory_changes_the_output(two_captions):
    model = memory_model()
    with torch.no_grad():
        with_memory = model(input_ids=two_captions).logits
        model.embeddings.caption_memory.table.weight.zero_()
        without = model(input_ids=two_captions).logits
    assert not torch.allclose(with_memory, without)


@pytest.mark.parametrize("per_cell", [False, True])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_cached_generation_equals_recompute_left_padded(backbone, per_cell, tok):
    model = memory_model(backbone, seed=1, per_cell=per_cell)
    batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        cached = model.generate(**batch, max_new_tokens=16, do_sample=False)
        recomputed = model.generate(**batch, max_new_tokens=16, do_sample=False, use_cache=False)
        alone = model.generate(**tok(PROMPTS[1], return_tensors="pt"), max_new_tokens=16, do_sample=False)
    assert torch.equal(cached, recomputed)
    assert torch.equal(cached[1, -16:], alone[0, -16:])


@pytest.mark.parametrize("per_cell", [False, True])
def test_beam_search_reorders_the_memory(tok, per_cell):
    model = memory_model(seed=2, per_cell=per_cell)
    batch = tok(PROMPTS[:2], padding=True, padding_side="left", return_tensors="pt")
    kwargs = {"max_new_tokens": 10, "num_beams": 3, "num_return_sequences": 2, "do_sample": False}
    with torch.no_grad():
        cached = model.generate(**batch, **kwargs)
        recomputed = model.generate(**batch, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)


def test_save_load_and_training(tok, tmp_path, two_captions):
    model = memory_model(per_cell=True).train()
    out = model(input_ids=two_captions, labels=two_captions)
    out.loss.backward()
    assert model.embeddings.caption_memory.table.weight.grad.abs().sum() > 0
    assert model.embeddings.caption_memory.cells.grad.abs().sum() > 0
    model.eval().save_pretrained(tmp_path)
    loaded = PxBySequenceModel.from_pretrained(tmp_path).eval()
    assert loaded.config.caption_memory_buckets == 64
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=two_captions).logits, model(input_ids=two_captions).logits)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"caption_memory_buckets": -1}, "non-negative integer"),
        ({"caption_memory_buckets": 2.5}, "non-negative integer"),
        ({"caption_memory_buckets": 8, "bidirectional": True}, "causal model"),
        ({"caption_memory_buckets": 8, "bidirectional": True, "objective": "diffusion"}, "causal model"),
        ({"caption_memory_cell_frames": 1, "grid_position_size": 4}, "caption_memory_buckets > 0"),
        ({"caption_memory_cell_frames": 2, "caption_memory_buckets": 8}, "grid_position_size > 0"),
        ({"caption_memory_cell_frames": -1}, "non-negative integer"),
    ],
)
def test_invalid_caption_memory_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        PxByConfig(**overrides)

"""Tiny random PixelBytes models and a small every-layout-case stream, shared by the model tests."""

from __future__ import annotations

import numpy as np
import torch

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel

TINY = {"embed_size": 12, "hidden_size": 16, "num_hidden_layers": 2}


def tiny_model(seed: int = 0, **overrides) -> PxBySequenceModel:
    """A seeded tiny model (embed 12, hidden 16, 2 layers unless overridden) in eval mode."""
    torch.manual_seed(seed)
    return PxBySequenceModel(PxByConfig(**{**TINY, **overrides})).eval()


def layout_stream(tok: ActionPixelBytesTokenizer) -> torch.Tensor:
    """``(1, L)`` ids of text + a 2-frame sprite + stereo audio: every layout case in ~90 tokens."""
    rng = np.random.default_rng(0)
    sprite = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    sound = rng.uniform(-1, 1, (2, 6)).astype(np.float32)
    return tok(text="a heart", images=sprite, audio=sound, return_tensors="pt")["input_ids"]

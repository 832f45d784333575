"""Tiny random PixelBytes models shared by the model and generation tests."""

from __future__ import annotations

import torch

from pixelbytes import PxByConfig, PxBySequenceModel

TINY = {"embed_size": 12, "hidden_size": 16, "num_hidden_layers": 2}


def tiny_model(seed: int = 0, **overrides) -> PxBySequenceModel:
    """A seeded tiny model (embed 12, hidden 16, 2 layers unless overridden) in eval mode."""
    torch.manual_seed(seed)
    return PxBySequenceModel(PxByConfig(**{**TINY, **overrides})).eval()

"""Bits per pixel / sample / character from per-token negative log-likelihoods.

The input is what any scorer of a token stream can produce, one value per predicted token:

- ``nll``: the negative log-likelihood of the token, in nats (``-log_softmax(logits)[target]``);
- ``modality``: ``"image"``, ``"audio"`` or ``"text"``, the block the token belongs to;
- ``units``: how many units of its modality the token carries: 1 for a colour token (a pixel), a level token
  (a sample) or a byte token (a character), 0 for a structural token (row / frame separator, end of text).

A modality's *bits per unit* is the information of all its tokens, structural ones included, divided by its
units: ``sum(nll) / ln 2 / sum(units)``. These are the definitions (and key names) of
:class:`pixelbytes.evaluation.scoring.StreamScores`, so a model scored either way reports the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["MODALITY_UNIT_NAMES", "bits_per_unit"]

#: modality → name of its unit, as in the result keys ``{modality}_bits_per_{unit}``
MODALITY_UNIT_NAMES = {"image": "pixel", "audio": "sample", "text": "character"}

_LN2 = math.log(2.0)


def bits_per_unit(
    nll: Sequence[Sequence[float]], modality: Sequence[Sequence[str]], units: Sequence[Sequence[int]]
) -> dict[str, float]:
    """Pool per-token values of several items into bits per unit of every modality, and bits per token.

    Args:
        nll: per item, the negative log-likelihood of every predicted token, in nats.
        modality: per item, the modality of every token (``"image"``, ``"audio"`` or ``"text"``).
        units: per item, the units of its modality that every token carries (non-negative integers).

    Returns:
        ``bits_per_token`` over all tokens, and ``{modality}_bits_per_{unit}`` (e.g. ``image_bits_per_pixel``)
        for every modality whose tokens carry at least one unit.
    """
    if not (len(nll) == len(modality) == len(units)):
        raise ValueError(
            f"nll, modality and units hold different numbers of items: {len(nll)}, {len(modality)}, {len(units)}"
        )
    nats = {name: 0.0 for name in MODALITY_UNIT_NAMES}
    counts = dict.fromkeys(MODALITY_UNIT_NAMES, 0)
    total_nats, total_tokens = 0.0, 0
    for item, (item_nll, item_modality, item_units) in enumerate(zip(nll, modality, units)):
        values = np.asarray(item_nll, dtype=np.float64).reshape(-1)
        amounts = np.asarray(item_units).reshape(-1)
        names = list(item_modality)
        if not (len(values) == len(names) == len(amounts)):
            raise ValueError(
                f"item {item}: lengths differ (nll {len(values)}, modality {len(names)}, units {len(amounts)})"
            )
        if not np.isfinite(values).all():
            raise ValueError(f"item {item}: nll contains NaN or infinite values")
        if amounts.size and not np.issubdtype(amounts.dtype, np.integer):
            raise TypeError(f"item {item}: units must be integers, got dtype {amounts.dtype}")
        if (amounts < 0).any():
            raise ValueError(f"item {item}: units contain negative counts")
        unknown = sorted(set(names) - set(MODALITY_UNIT_NAMES))
        if unknown:
            raise ValueError(
                f"item {item}: unknown modality {unknown[0]!r}, expected one of {sorted(MODALITY_UNIT_NAMES)}"
            )
        kinds = np.asarray(names, dtype=object)
        for name in MODALITY_UNIT_NAMES:
            chosen = kinds == name
            nats[name] += float(values[chosen].sum())
            counts[name] += int(amounts[chosen].sum())
        total_nats += float(values.sum())
        total_tokens += len(values)
    if total_tokens == 0:
        raise ValueError("bits_per_unit got no tokens (empty input)")
    out = {"bits_per_token": total_nats / _LN2 / total_tokens}
    for name, unit in MODALITY_UNIT_NAMES.items():
        if counts[name]:
            out[f"{name}_bits_per_{unit}"] = nats[name] / _LN2 / counts[name]
    return out

"""The v1 Table 1 metrics: Hamming, cosine similarity and sentence BLEU of raw token-id sequences.

The PixelBytes v1 protocol (see ``shared/reference/original-system.md`` §7) generates 16 windows of 3×3
token ids, flattens generated and target windows to 144 ints each and reports, per segment:

``hamming``
    ``scipy.spatial.distance.hamming(gen, tgt)``: the fraction of unequal entries (lower is better).
``cosine``
    ``1 - scipy.spatial.distance.cosine(gen, tgt)``: the cosine of the two *integer id vectors* (ids are
    categories, so this mostly measures "same ids in the same places", weighted by the id values).
``bleu``
    ``nltk.translate.bleu_score.sentence_bleu([list(map(str, tgt))], list(map(str, gen)))``: uniform
    4-gram weights, no smoothing.

The paper's table is the mean ± standard deviation (ddof 1) of these per-segment rows (:func:`summarize`).

These functions reproduce the published numbers bit for bit (the tests compare them with scipy and nltk)
without needing scipy or nltk at run time. The only deliberate departure: integer ids of any width are
multiplied exactly, where ``np.dot`` on narrow dtypes (uint8 windows) would silently wrap around.

Caveat of the protocol: in every v1 window the 4 cells after the centre in raster order are always 0 in
both sequences, which caps Hamming at 80/144 and inflates cosine and BLEU. :func:`sequence_similarity`
takes a ``keep`` mask (e.g. :data:`V1_WINDOW_KEEP`) to score only the informative cells ("corrected" rows).
"""

from __future__ import annotations

import logging
import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "V1_WINDOW_KEEP",
    "cosine_similarity",
    "hamming",
    "sentence_bleu",
    "sequence_similarity",
    "summarize",
]

logger = logging.getLogger(__name__)

#: The cells of a flattened v1 3×3 window that can differ: the row above, the left neighbour and the centre.
#: The right neighbour and the whole bottom row are structurally 0 (causal window), so they are dropped.
V1_WINDOW_KEEP = np.array([True, True, True, True, True, False, False, False, False])
V1_WINDOW_KEEP.setflags(write=False)

_INT64_MAX = np.iinfo(np.int64).max


def _as_ids(values: Any, name: str, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a numeric array; errors name the problem (non-numeric, empty, NaN / infinite)."""
    array = np.asarray(values)
    if array.dtype == np.bool_:
        array = array.astype(np.int64)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (token ids), got dtype {array.dtype}")
    if array.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _pair(generated: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both sequences as arrays of one shape, flattened in row-major order."""
    gen = _as_ids(generated, "generated")
    tgt = _as_ids(target, "target")
    if gen.shape != tgt.shape:
        raise ValueError(f"generated and target differ in shape: {gen.shape} vs {tgt.shape}")
    return gen.reshape(-1), tgt.reshape(-1)


def hamming(generated: Any, target: Any) -> float:
    """Fraction of positions where ``generated`` and ``target`` differ (``scipy.spatial.distance.hamming``).

    Both are token-id sequences of one shape (any number of dimensions, compared cell by cell); 0 means
    identical, 1 means every cell differs.
    """
    gen, tgt = _pair(generated, target)
    return float(np.mean(gen != tgt))


def _exact_dot(a: np.ndarray, b: np.ndarray) -> int:
    """Exact integer dot product: int64 when it cannot overflow, Python integers otherwise."""
    bound = int(np.abs(a.astype(np.float64)).max()) * int(np.abs(b.astype(np.float64)).max()) * a.size
    if bound < _INT64_MAX // 2:
        return int(np.dot(a.astype(np.int64), b.astype(np.int64)))
    return sum(x * y for x, y in zip(a.tolist(), b.tolist()))


def cosine_similarity(generated: Any, target: Any) -> float:
    """Cosine of the two id vectors, ``1 - scipy.spatial.distance.cosine(generated, target)``.

    Computed as scipy does (``1 - (1 - u·v / sqrt(|u|²|v|²))`` with the distance clipped to [0, 2]) so
    that the float is identical. Integer ids are multiplied exactly (no uint8 / int64 wrap-around).

    When either vector is all zeros the cosine is undefined: like scipy, the result is ``nan`` (not an
    error), and :func:`summarize` skips it as ``pandas.DataFrame.describe`` does.
    """
    gen, tgt = _pair(generated, target)
    if np.issubdtype(gen.dtype, np.integer) and np.issubdtype(tgt.dtype, np.integer):
        uv, uu, vv = _exact_dot(gen, tgt), _exact_dot(gen, gen), _exact_dot(tgt, tgt)
    else:
        gen, tgt = gen.astype(np.float64), tgt.astype(np.float64)
        uv, uu, vv = float(np.dot(gen, tgt)), float(np.dot(gen, gen)), float(np.dot(tgt, tgt))
    norms = uu * vv
    if norms == 0:
        logger.debug("cosine of an all-zero id vector is undefined: returning nan")
        return math.nan
    distance = min(max(1.0 - uv / math.sqrt(norms), 0.0), 2.0)
    return 1.0 - distance


def _tokens(values: Any, name: str, allow_empty: bool) -> list[str]:
    """Flattened tokens as strings, the way the protocol hands them to nltk (``list(map(str, ids))``)."""
    return [str(token) for token in _as_ids(values, name, allow_empty).reshape(-1).tolist()]


def _ngram_counts(tokens: Sequence[str], order: int) -> Counter[tuple[str, ...]]:
    if len(tokens) < order:
        return Counter()
    return Counter(zip(*(tokens[start:] for start in range(order))))


def _clipped_precision(reference: Sequence[str], hypothesis: Sequence[str], order: int) -> tuple[int, int]:
    """nltk's modified n-gram precision as (matches clipped by the reference counts, max(1, hypothesis n-grams))."""
    hyp_counts = _ngram_counts(hypothesis, order)
    ref_counts = _ngram_counts(reference, order)
    matches = sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
    return matches, max(1, sum(hyp_counts.values()))


def sentence_bleu(target: Any, generated: Any, max_order: int = 4) -> float:
    """Sentence BLEU of ``generated`` against the single reference ``target``, exactly as nltk computes it.

    Equals ``nltk.translate.bleu_score.sentence_bleu([list(map(str, target))], list(map(str, generated)),
    weights=(1 / max_order,) * max_order)`` with no smoothing (the v1 protocol uses ``max_order=4``):

    - modified precision ``p_n`` = n-gram matches clipped by the reference counts / max(1, hypothesis n-grams);
    - 0.0 when no unigram matches;
    - otherwise a zero ``p_n`` (no n-gram match, or fewer than n tokens) is replaced by
      ``sys.float_info.min``, so the score is tiny (about 1e-77 per missing order) but not 0;
    - brevity penalty ``exp(1 - r / c)`` when the hypothesis (length c) is not longer than the reference
      (length r), 1 when it is longer.

    Sequences may differ in length. An empty ``generated`` scores 0.0; an empty ``target`` is an error.
    """
    if isinstance(max_order, bool) or not isinstance(max_order, int | np.integer) or max_order < 1:
        raise ValueError(f"max_order must be a positive integer, got {max_order!r}")
    reference = _tokens(target, "target", allow_empty=False)
    hypothesis = _tokens(generated, "generated", allow_empty=True)
    weight = 1 / max_order
    log_terms = []
    for order in range(1, max_order + 1):
        matches, total = _clipped_precision(reference, hypothesis, order)
        if matches == 0 and order == 1:
            return 0.0
        precision = matches / total if matches else sys.float_info.min
        log_terms.append(weight * math.log(precision))
    hyp_len, ref_len = len(hypothesis), len(reference)
    penalty = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return penalty * math.exp(math.fsum(log_terms))


def sequence_similarity(generated: Any, target: Any, keep: Any = None) -> dict[str, float]:
    """The three v1 Table 1 metrics of one segment: ``{"hamming", "cosine", "bleu"}``.

    Args:
        generated: generated token ids, e.g. ``(16, 9)`` windows or their flattened 144 ids.
        target: the target ids, same shape.
        keep: optional boolean mask broadcastable to that shape (e.g. :data:`V1_WINDOW_KEEP` for ``(16, 9)``
            windows); only the kept cells are scored, in row-major order. ``None`` scores every cell, as the
            paper does.
    """
    gen = _as_ids(generated, "generated")
    tgt = _as_ids(target, "target")
    if gen.shape != tgt.shape:
        raise ValueError(f"generated and target differ in shape: {gen.shape} vs {tgt.shape}")
    if keep is not None:
        mask = np.asarray(keep)
        if mask.dtype != np.bool_:
            raise TypeError(f"keep must be a boolean mask, got dtype {mask.dtype}")
        try:
            mask = np.broadcast_to(mask, gen.shape)
        except ValueError:
            raise ValueError(
                f"keep of shape {mask.shape} does not broadcast to the sequences' shape {gen.shape}"
            ) from None
        gen, tgt = gen[mask], tgt[mask]
        if gen.size == 0:
            raise ValueError("keep drops every cell: nothing left to compare")
    return {
        "hamming": hamming(gen, tgt),
        "cosine": cosine_similarity(gen, tgt),
        "bleu": sentence_bleu(tgt, gen),
    }


def summarize(rows: Iterable[Mapping[str, Any]], keys: Sequence[str] | None = None) -> dict[str, tuple[float, float]]:
    """``{key: (mean, std)}`` over per-segment rows, as the paper's ``DataFrame.describe()`` reports them.

    ``std`` uses ddof=1 (``nan`` with fewer than two values). NaN values (an undefined cosine) are skipped,
    as pandas does. ``keys`` defaults to the keys of the first row; every row must have them.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("summarize needs at least one row, got none")
    keys = list(rows[0].keys()) if keys is None else list(keys)
    if not keys:
        raise ValueError("summarize needs at least one key, got none")
    out: dict[str, tuple[float, float]] = {}
    for key in keys:
        values = []
        for index, row in enumerate(rows):
            if key not in row:
                raise ValueError(f"row {index} has no {key!r} value")
            try:
                values.append(float(row[key]))
            except (TypeError, ValueError):
                raise ValueError(f"row {index} has a non-numeric {key!r} value: {row[key]!r}") from None
        column = np.asarray(values, dtype=np.float64)
        column = column[~np.isnan(column)]
        mean = float(column.mean()) if column.size else math.nan
        std = float(column.std(ddof=1)) if column.size > 1 else math.nan
        out[key] = (mean, std)
    return out

"""`evaluate` module of the PixelBytes v1 Table 1 metrics: Hamming, cosine similarity and BLEU of token ids.

Load it offline by path: ``evaluate.load(pixelbytes.evaluation.metric_path("pxby_sequence_similarity"))``.
Every pair is scored by :func:`pixelbytes.evaluation.similarity.sequence_similarity` (bit-identical to the
scipy / nltk calls of the original protocol) and the rows are summarised like the paper's table.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from pixelbytes.evaluation.similarity import sequence_similarity, summarize

_CITATION = """\
@misc{furfaro2024pixelbytes,
  title = {PixelBytes: Catching Unified Embedding for Multimodal Generation},
  author = {Furfaro, Fabien},
  year = {2024},
}
"""

_DESCRIPTION = """\
The generation metrics of the PixelBytes v1 paper (Table 1), computed on raw token-id sequences: for every
(generated, target) pair of equal length, the Hamming distance (fraction of unequal ids, lower is better),
the cosine similarity of the integer id vectors and the sentence BLEU (uniform 4-gram weights, no smoothing,
nltk's exact conventions). The result is the mean and the standard deviation (ddof 1) over the pairs.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: generated token ids, one int sequence per segment (v1: 16 windows x 9 cells = 144 ids).
    references: the target token ids, one sequence of the same length per segment.
    keep: optional list of booleans, the cells to score. Its length is either a segment's length or divides
        it, in which case it is repeated (v1: the 9-cell window mask [True] * 5 + [False] * 4, which drops
        the four cells that are always 0 -- the "corrected" variant). Default: score every cell, as the paper.
Returns:
    hamming, cosine, bleu: means over the segments (an undefined cosine, all-zero ids, is skipped);
    hamming_std, cosine_std, bleu_std: their standard deviations (ddof 1, nan for a single segment);
    num_sequences: the number of segments.
Examples:
    >>> metric = evaluate.load(metric_path("pxby_sequence_similarity"))
    >>> metric.compute(predictions=[[1, 2, 3, 4]], references=[[1, 2, 3, 4]])["bleu"]
    1.0
"""


def _apply_keep(ids: np.ndarray, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Reshape a flat segment into rows of ``len(keep)`` cells so that the mask broadcasts over them."""
    if keep is None:
        return ids, None
    if len(keep) == 0 or len(ids) % len(keep):
        raise ValueError(f"keep of length {len(keep)} does not tile segments of length {len(ids)}")
    return ids.reshape(-1, len(keep)), keep


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PxbySequenceSimilarity(evaluate.Metric):
    """Hamming / cosine / BLEU of generated vs target token-id sequences (PixelBytes v1 Table 1)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
            reference_urls=["https://github.com/fabienfrfr/PixelBytes"],
        )

    def _compute(self, predictions, references, keep=None) -> dict:
        mask = None if keep is None else np.asarray(keep)
        if mask is not None and (mask.dtype != np.bool_ or mask.ndim != 1):
            raise ValueError(f"keep must be a 1-D list of booleans, got {keep!r}")
        rows = []
        for generated, target in zip(predictions, references):
            generated, row_mask = _apply_keep(np.asarray(generated, dtype=np.int64), mask)
            target, _ = _apply_keep(np.asarray(target, dtype=np.int64), mask)
            rows.append(sequence_similarity(generated, target, keep=row_mask))
        out = {}
        for key, (mean, std) in summarize(rows, keys=["hamming", "cosine", "bleu"]).items():
            out[key] = mean
            out[f"{key}_std"] = std
        out["num_sequences"] = len(rows)
        return out

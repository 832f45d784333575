"""`evaluate` module of bits per pixel / sample / character from per-token negative log-likelihoods.

Load it offline by path: ``evaluate.load(pixelbytes.evaluation.metric_path("pxby_bits_per_unit"))``.
The computation is :func:`pixelbytes.evaluation.metrics.units.bits_per_unit`.
"""

from __future__ import annotations

import datasets
import evaluate

from pixelbytes.evaluation.metrics.units import bits_per_unit

_DESCRIPTION = """\
Compression-style scores of a next-token model on multimodal token streams: the information the model
assigns to every token of a modality (in bits, structural tokens included) divided by the number of units
of that modality (pixels, audio samples, characters). Lower is better; comparable with codec sizes.
"""

_KWARGS_DESCRIPTION = """\
Args:
    nll: per item, the negative log-likelihood of every predicted token, in nats (floats).
    modality: per item, the modality of every token: "image", "audio" or "text".
    units: per item, the units every token carries: 1 for a colour / level / byte token, 0 for a separator.
Returns:
    bits_per_token: over all tokens;
    image_bits_per_pixel, audio_bits_per_sample, text_bits_per_character: for the modalities with units.
Examples:
    >>> metric = evaluate.load(metric_path("pxby_bits_per_unit"))
    >>> metric.compute(nll=[[0.6931471805599453]], modality=[["text"]], units=[[1]])
    {'bits_per_token': 1.0, 'text_bits_per_character': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PxbyBitsPerUnit(evaluate.Metric):
    """Bits per pixel / sample / character of a model, pooled over items."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "nll": datasets.Sequence(datasets.Value("float64")),
                    "modality": datasets.Sequence(datasets.Value("string")),
                    "units": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, nll, modality, units) -> dict:
        return bits_per_unit(nll, modality, units)

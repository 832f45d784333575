"""Hugging Face ``evaluate`` modules of the PixelBytes metrics, shipped inside the package.

Each module is one script, ``metrics/<name>/<name>.py``, loaded offline by its path::

    import evaluate
    from pixelbytes.evaluation import metric_path

    similarity = evaluate.load(metric_path("pxby_sequence_similarity"))

The scripts only wrap functions of :mod:`pixelbytes.evaluation` (so a module and a direct call agree);
:func:`~.units.bits_per_unit` is the function behind ``pxby_bits_per_unit``.
"""

from __future__ import annotations

from pathlib import Path

from .units import MODALITY_UNIT_NAMES, bits_per_unit

__all__ = ["METRIC_NAMES", "MODALITY_UNIT_NAMES", "bits_per_unit", "metric_path"]

#: The ``evaluate`` modules shipped with the package.
METRIC_NAMES = ("pxby_bits_per_unit", "pxby_sequence_similarity")

_HERE = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """Absolute path of the ``evaluate`` module script ``name`` (one of :data:`METRIC_NAMES`).

    Pass it to ``evaluate.load``: loading a local script needs no network access.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}: expected one of {', '.join(METRIC_NAMES)}")
    script = _HERE / name / f"{name}.py"
    if not script.is_file():
        raise FileNotFoundError(f"metric script {script} is missing from the installed package")
    return str(script)

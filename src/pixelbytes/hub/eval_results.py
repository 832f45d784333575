"""The ``eval_results.json`` schema shared by ``pixelbytes train``, ``pixelbytes evaluate``, ``demo`` and the cards.

One JSON object per model directory; only ``metrics`` is required::

    {"model": "<path or id>",
     "dataset": {"name": "...", "split": "validation", "num_items": 54},
     "metrics": {"image_bits_per_pixel": 1.01, "image_accuracy": 0.81, "loss": 2.3, ...},
     "baselines": {"xz": {"image_bits_per_pixel": 0.49}, "png": {"image_bits_per_pixel": 4.05}},
     "protocols": {"v1_table1": {"hamming": [0.149, 0.062], ...}},
     "runtime_seconds": 12.3, "machine": "..."}

``metrics`` holds the REAL held-out numbers only (the model-index of a card is built from them); training
numbers (``train_*``) and Trainer bookkeeping (runtime, samples / steps per second, epoch, FLOs) never belong
there. :func:`load_eval_results` checks a file or dict against this schema with one-line errors;
:func:`metrics_from_trainer` turns ``Trainer.evaluate()`` output into ``metrics``. Standard library only, so the
training code can import it without the card machinery.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "EVAL_RESULTS_NAME",
    "TRAINER_STATE_NAME",
    "TRAINING_SUMMARY_NAME",
    "load_eval_results",
    "make_eval_results",
    "metrics_from_trainer",
    "model_index_metrics",
    "read_json_object",
    "write_eval_results",
]

EVAL_RESULTS_NAME = "eval_results.json"
TRAINER_STATE_NAME = "trainer_state.json"
#: the training hyper-parameters ``run_training`` records for the card (learning rate, batch, steps, seed, …)
TRAINING_SUMMARY_NAME = "training_summary.json"
#: name fragments of Trainer bookkeeping values that are not metrics
BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "epoch", "total_flos", "mem_")
_OPTIONAL_OBJECTS = ("dataset", "baselines", "protocols")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_bookkeeping(name: str) -> bool:
    return name == "step" or any(part in name for part in BOOKKEEPING)


def metrics_from_trainer(metrics: Mapping[str, Any], prefix: str = "eval_") -> dict[str, float]:
    """The ``metrics`` object from a ``Trainer`` metrics dict: the ``prefix``-ed (validation) values only, prefix
    stripped, bookkeeping dropped (runtime, samples / steps per second, epoch), non-finite values dropped."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if not name.startswith(prefix):
            continue
        base = name[len(prefix) :]
        if base and not _is_bookkeeping(base) and _is_number(value):
            out[base] = float(value)
    return out


def make_eval_results(
    metrics: Mapping[str, Any],
    *,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = "validation",
    num_items: int | None = None,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    protocols: Mapping[str, Any] | None = None,
    runtime_seconds: float | None = None,
    machine: str | None = None,
) -> dict[str, Any]:
    """An ``eval_results.json`` object (fields left ``None`` are omitted), checked by :func:`load_eval_results`."""
    results: dict[str, Any] = {}
    if model is not None:
        results["model"] = str(model)
    info = {"name": dataset, "split": split, "num_items": num_items}
    if dataset is not None:
        results["dataset"] = {key: value for key, value in info.items() if value is not None}
    results["metrics"] = dict(metrics)
    for key, value in (("baselines", baselines), ("protocols", protocols)):
        if value:
            results[key] = {name: dict(item) if isinstance(item, Mapping) else item for name, item in value.items()}
    if runtime_seconds is not None:
        results["runtime_seconds"] = float(runtime_seconds)
    if machine is not None:
        results["machine"] = str(machine)
    return load_eval_results(results)


def read_json_object(path: Path, expected: str = "a JSON object") -> dict[str, Any]:
    """The JSON object in ``path``; an unreadable file, bad JSON or another JSON value is a ``ValueError`` naming
    the file (the records a card or a release reads: ``eval_results.json``, ``config.json`` ...)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold {expected}")
    return data


def load_eval_results(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Read (a path) or check (a dict) an ``eval_results.json`` object; returns a plain dict.

    A flat dict of numbers with no ``metrics`` key (what ``Trainer.save_metrics("eval", ...)`` writes under the same
    file name) is accepted as ``{"metrics": metrics_from_trainer(...)}`` with a warning. Anything else that does
    not follow the schema is a one-line ``ValueError`` naming the field.
    """
    where = "eval results"
    if not isinstance(source, Mapping):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        source = read_json_object(path, "a JSON object with a 'metrics' object")
    data = dict(source)
    if "metrics" not in data:
        if data and all(_is_number(v) for v in data.values()):
            logger.warning("%s is a flat Trainer metrics dict: its eval_* values are used as the metrics", where)
            stripped = metrics_from_trainer(data)
            return {"metrics": stripped or {k: float(v) for k, v in data.items() if not _is_bookkeeping(k)}}
        raise ValueError(f"{where} has no 'metrics' object (expected the pixelbytes eval_results.json schema)")
    metrics = data["metrics"]
    if not isinstance(metrics, Mapping):
        raise ValueError(f"{where}: 'metrics' must be an object of metric name -> number")
    bad = [name for name, value in metrics.items() if not isinstance(value, (int, float)) or isinstance(value, bool)]
    if bad:
        raise ValueError(f"{where}: metrics {bad} are not numbers")
    for key in _OPTIONAL_OBJECTS:
        if key in data and data[key] is not None and not isinstance(data[key], Mapping):
            raise ValueError(f"{where}: '{key}' must be an object")
    for codec, values in (data.get("baselines") or {}).items():
        if not isinstance(values, Mapping) or not all(_is_number(v) for v in values.values()):
            raise ValueError(f"{where}: baselines[{codec!r}] must be an object of metric name -> number")
    if data.get("runtime_seconds") is not None and not _is_number(data["runtime_seconds"]):
        raise ValueError(f"{where}: 'runtime_seconds' must be a number")
    num_items = (data.get("dataset") or {}).get("num_items")
    if num_items is not None and (not isinstance(num_items, int) or isinstance(num_items, bool) or num_items < 0):
        raise ValueError(f"{where}: dataset.num_items must be a non-negative integer, got {num_items!r}")
    return data


def model_index_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The numbers a card's model-index may show: ``results["metrics"]``, finite values only, never a training
    number (``train_*``) or Trainer bookkeeping."""
    return {
        name: float(value)
        for name, value in (results.get("metrics") or {}).items()
        if _is_number(value) and not name.startswith("train_") and not _is_bookkeeping(name)
    }


def write_eval_results(directory: str | os.PathLike, results: Mapping[str, Any]) -> Path:
    """Check ``results`` and write ``directory/eval_results.json``; returns its path."""
    path = Path(directory) / EVAL_RESULTS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    checked = load_eval_results(results)
    path.write_text(json.dumps(checked, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("evaluation results written to %s", path)
    return path

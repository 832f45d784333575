"""The papers' figures from evaluation outputs: training curves, reference / generated sprites, bits per unit.

- :func:`plot_training_curves`: training and eval loss (and eval accuracies) vs step from a transformers
  ``trainer_state.json``, like Figure 2 of the PixelBytes papers;
- :func:`sprite_grid`: reference frames on the left, generated frames on the right, one pair per row, upscaled
  with nearest neighbour so that every pixel stays a sharp square, like the papers' Figure 3;
- :func:`plot_modality_bars`: a model's bits per pixel / sample / character next to general-purpose codecs.

matplotlib is imported only when a plot is drawn, and drawn on an explicit Agg canvas: nothing here needs a
display or changes pyplot's global backend. Every function writes a PNG (whatever the suffix of ``path``),
creates the parent folder if needed and returns the path written.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["LABEL_HEIGHT", "MODALITY_METRICS", "plot_modality_bars", "plot_training_curves", "sprite_grid"]

logger = logging.getLogger(__name__)

#: Height in pixels of the band that holds a row's label in :func:`sprite_grid`.
LABEL_HEIGHT = 14

#: modality → (key of its bits-per-unit value in eval results, axis label)
MODALITY_METRICS = {
    "image": ("image_bits_per_pixel", "bits / pixel"),
    "audio": ("audio_bits_per_sample", "bits / sample"),
    "text": ("text_bits_per_character", "bits / character"),
}

_DPI = 100


def _new_figure(width: float, height: float) -> Any:
    """A matplotlib figure bound to an Agg canvas (no pyplot state); clear ImportError without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('pixelbytes figures need matplotlib: pip install "pixelbytes[eval]"') from exc
    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _output(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    path = _output(path)
    figure.savefig(path, format="png", dpi=_DPI)
    logger.info("wrote %s", path)
    return path


# --- training curves --------------------------------------------------------------------------------------


def _load_trainer_state(trainer_state: Mapping[str, Any] | str | os.PathLike[str]) -> Mapping[str, Any]:
    """The trainer state as a dict: given as one, or read from a ``trainer_state.json`` (or its folder)."""
    if isinstance(trainer_state, Mapping):
        return trainer_state
    path = Path(trainer_state)
    if path.is_dir():
        path = path / "trainer_state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a JSON object (a trainer state)")
    return state


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of every log entry that has ``key`` and a step."""
    steps, values = [], []
    for index, entry in enumerate(history):
        if key in entry and "step" in entry:
            try:
                steps.append(float(entry["step"]))
                values.append(float(entry[key]))
            except (TypeError, ValueError):
                raise ValueError(f"log_history[{index}] has a non-numeric {key!r} or step") from None
    return steps, values


def plot_training_curves(
    trainer_state: Mapping[str, Any] | str | os.PathLike[str],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Plot training / eval loss vs step, and the eval accuracies when logged, into a PNG.

    Args:
        trainer_state: a transformers ``trainer_state.json`` (its path, its checkpoint folder, or its dict).
            Its ``log_history`` entries with ``loss`` (training) and ``eval_loss`` are the loss curves; every
            ``eval_*accuracy`` key (``eval_next_token_accuracy``, ``eval_image_accuracy``, ...) gets a curve in
            a second panel.
        path: the PNG to write.
        title: figure title (default: none).
    """
    state = _load_trainer_state(trainer_state)
    history = state.get("log_history")
    if not isinstance(history, Sequence) or isinstance(history, str) or not history:
        raise ValueError("trainer state has no log_history entries: nothing to plot")
    if not all(isinstance(entry, Mapping) for entry in history):
        raise ValueError("trainer state log_history must be a list of objects")
    losses = {"training loss": _series(history, "loss"), "eval loss": _series(history, "eval_loss")}
    losses = {name: series for name, series in losses.items() if series[0]}
    if not losses:
        raise ValueError("log_history has no 'loss' or 'eval_loss' entry: nothing to plot")
    accuracy_keys = sorted({k for entry in history for k in entry if k.startswith("eval_") and k.endswith("accuracy")})
    accuracies = {key.removeprefix("eval_"): _series(history, key) for key in accuracy_keys}

    figure = _new_figure(11.0 if accuracies else 6.4, 4.0)
    axes = figure.subplots(1, 2 if accuracies else 1, squeeze=False)[0]
    for name, (steps, values) in losses.items():
        axes[0].plot(steps, values, marker="o" if name == "eval loss" else None, markersize=3, label=name)
    axes[0].set(xlabel="step", ylabel="loss (nats / token)", title="loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if accuracies:
        for name, (steps, values) in accuracies.items():
            axes[1].plot(steps, values, marker="o", markersize=3, label=name)
        axes[1].set(xlabel="step", ylabel="accuracy", title="eval accuracy")
        axes[1].legend()
        axes[1].grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


# --- sprite grid ------------------------------------------------------------------------------------------


def _frame(value: Any, where: str) -> np.ndarray:
    frame = np.asarray(value)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or 0 in frame.shape:
        raise ValueError(f"{where}: expected a non-empty uint8 (H, W, 3) RGB frame, got {frame.dtype} {frame.shape}")
    return frame


def sprite_grid(
    rows: Sequence[tuple[Any, Any]],
    path: str | os.PathLike[str],
    scale: int = 4,
    labels: Sequence[str] | None = None,
    gap: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Path:
    """Save (reference, generated) RGB frames as one PNG grid: reference left, generated right.

    Layout, in pixels of the output: every frame is upscaled ``scale`` times with nearest neighbour and
    pasted at the top-left of its cell. The reference column starts at ``x = gap``, the generated column at
    ``x = 2 * gap + scale * (widest reference)``; the image is ``3 * gap + scale * (widest reference +
    widest generated)`` wide. Row ``i`` is ``scale * max(its two heights)`` high and rows are separated by
    ``gap``; with ``labels``, a band of :data:`LABEL_HEIGHT` pixels above each row holds its label.

    Args:
        rows: ``(reference, generated)`` pairs of uint8 ``(H, W, 3)`` arrays (or PIL RGB images), any sizes.
        path: the PNG to write.
        scale: integer upscaling factor (>= 1).
        labels: optional text of each row (e.g. the caption), one per row; text wider than the grid is cut.
        gap: margin and spacing in output pixels (>= 0).
        background: RGB colour of the margins and of the cells around smaller frames.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("sprite_grid needs at least one (reference, generated) pair, got none")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"gap must be an integer >= 0, got {gap!r}")
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"got {len(labels)} labels for {len(rows)} rows")
    pairs = []
    for index, row in enumerate(rows):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or len(row) != 2:
            raise ValueError(f"row {index} must be a (reference, generated) pair")
        pairs.append((_frame(row[0], f"row {index} reference"), _frame(row[1], f"row {index} generated")))

    band = LABEL_HEIGHT if labels is not None else 0
    ref_width = scale * max(ref.shape[1] for ref, _ in pairs)
    gen_width = scale * max(gen.shape[1] for _, gen in pairs)
    heights = [scale * max(ref.shape[0], gen.shape[0]) for ref, gen in pairs]
    width = 3 * gap + ref_width + gen_width
    height = gap + sum(band + h + gap for h in heights)
    canvas = Image.new("RGB", (width, height), tuple(background))
    draw = ImageDraw.Draw(canvas)
    y = gap
    for index, ((ref, gen), row_height) in enumerate(zip(pairs, heights)):
        if labels is not None:
            draw.text((gap, y), str(labels[index]), fill=(0, 0, 0))
        y += band
        for x, frame in ((gap, ref), (2 * gap + ref_width, gen)):
            up = Image.fromarray(frame, "RGB").resize(
                (scale * frame.shape[1], scale * frame.shape[0]), Image.Resampling.NEAREST
            )
            canvas.paste(up, (x, y))
        y += row_height + gap
    path = _output(path)
    canvas.save(path, format="PNG")
    logger.info("wrote %s", path)
    return path


# --- bits per unit vs codecs ------------------------------------------------------------------------------


def _bits(entry: Any, where: str) -> dict[str, float]:
    """The bits-per-unit values of one results entry, keyed by modality (missing keys are skipped)."""
    if entry is None:
        return {}
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping of metric names to values, got {type(entry).__name__}")
    out = {}
    for modality, (key, _label) in MODALITY_METRICS.items():
        if key not in entry or entry[key] is None:
            continue
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"{where}[{key!r}] is not a number: {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}[{key!r}] is NaN or infinite")
        out[modality] = float(value)
    return out


def plot_modality_bars(results: Mapping[str, Any], path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Grouped bars of bits per unit per modality: the model next to each codec baseline (lower is better).

    Args:
        results: an eval-results dict ``{"metrics": {"image_bits_per_pixel": .., "audio_bits_per_sample": ..,
            "text_bits_per_character": ..}, "baselines": {"xz": {...}, "gif": {...}, "png": {...},
            "flac": {...}}}``; any entry may be missing (its bar is left out, a modality without any value
            is left out). Other keys are ignored.
        path: the PNG to write.
        title: figure title (default: "bits per unit (lower is better)").
    """
    if not isinstance(results, Mapping):
        raise ValueError(f"results must be a mapping with 'metrics' / 'baselines', got {type(results).__name__}")
    baselines = results.get("baselines") or {}
    if not isinstance(baselines, Mapping):
        raise ValueError(f"results['baselines'] must map codec names to metrics, got {type(baselines).__name__}")
    series = {"model": _bits(results.get("metrics"), "results['metrics']")}
    for codec, entry in baselines.items():
        series[str(codec)] = _bits(entry, f"results['baselines'][{codec!r}]")
    groups = [m for m in MODALITY_METRICS if any(m in values for values in series.values())]
    if not groups:
        keys = ", ".join(key for key, _ in MODALITY_METRICS.values())
        raise ValueError(f"results hold no bits-per-unit value to plot (expected {keys})")

    widest = max(sum(m in values for values in series.values()) for m in groups)
    bar_width = 0.8 / widest
    figure = _new_figure(max(5.0, 1.2 + 0.5 * widest * len(groups) + 0.6 * len(groups)), 4.0)
    axes = figure.subplots()
    colours = {name: f"C{index % 10}" for index, name in enumerate(series)}
    labelled: set[str] = set()
    for position, modality in enumerate(groups):
        present = [(name, values[modality]) for name, values in series.items() if modality in values]
        for slot, (name, value) in enumerate(present):
            x = position + (slot - (len(present) - 1) / 2) * bar_width
            bars = axes.bar(
                x, value, bar_width * 0.95, color=colours[name], label=None if name in labelled else name,
                edgecolor="black" if name == "model" else None,
            )  # fmt: skip
            labelled.add(name)
            axes.bar_label(bars, labels=[f"{value:.3g}"], fontsize=8, padding=2)
    axes.set_xticks(range(len(groups)), [f"{m}\n({MODALITY_METRICS[m][1]})" for m in groups])
    axes.set_ylabel("bits per unit (lower is better)")
    axes.set_title(title or "bits per unit (lower is better)")
    axes.margins(y=0.15)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)

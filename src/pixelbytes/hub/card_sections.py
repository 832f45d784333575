"""The tables and lists of a PixelBytes model card, built from the model, its tokenizer and the JSON records of a
checkpoint directory (``trainer_state.json``, ``training_summary.json``, ``eval_results.json``).

Each builder returns plain rows (``[(name, value)]`` or lists of cells) that the Jinja template lays out, so a
card source (``hub_cards/``) can reuse them. Numbers are formatted here, once (:func:`fmt`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .eval_results import read_json_object

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "baseline_table",
    "config_rows",
    "fmt",
    "gallery_items",
    "limitations",
    "load_json_record",
    "protocol_rows",
    "tokenizer_rows",
    "training_rows",
]

IMAGE_SUFFIXES = {".gif", ".png", ".jpg", ".jpeg", ".webp"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg"}


def fmt(value: Any) -> str:
    """A table cell: floats with 6 significant digits, ``[mean, std]`` pairs as ``mean ± std``, ``None`` as –."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"{fmt(float(value[0]))} ± {fmt(float(value[1]))}"
    return str(value)


def load_json_record(
    record: str | os.PathLike | Mapping[str, Any] | None, directory: Path, default_name: str
) -> dict[str, Any] | None:
    """``record`` as a dict: a mapping as is, a path read, ``None`` = ``directory/default_name`` if present."""
    if record is None:
        candidate = directory / default_name
        if not candidate.is_file():
            return None
        record = candidate
    if isinstance(record, Mapping):
        return dict(record)
    return read_json_object(Path(record))


def config_rows(model: Any) -> list[tuple[str, str]]:
    """Architecture facts from the config (and the parameter count)."""
    config = model.config
    rows: list[tuple[str, Any]] = [
        ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
        ("objective", config.objective),
        ("embedding", f"{config.embedding} ({config.embed_size})"),
        ("backbone", config.backbone),
        ("hidden size", config.hidden_size),
        ("layers", config.num_hidden_layers),
        ("bidirectional", config.bidirectional),
    ]
    if config.bidirectional:
        rows.append(("window size", config.window_size))
    if config.objective == "diffusion":
        rows.append(("diffusion", f"{config.diffusion_scheme}, {config.num_diffusion_steps} steps"))
    rows.append(
        (
            "vocabulary",
            f"{config.vocab_size} ids = {config.num_bytes} bytes + {config.num_colors} colours + "
            f"{config.num_levels} levels",
        )
    )
    return [(name, fmt(value)) for name, value in rows]


def tokenizer_rows(tokenizer: Any) -> list[tuple[str, str]]:
    """The tokenizer settings that change the token stream (strides, audio normalisation, rate)."""
    names = ("image_stride", "frame_stride", "audio_stride", "audio_normalization", "audio_channels", "sampling_rate")
    rows = [(name.replace("_", " "), fmt(getattr(tokenizer, name))) for name in names if hasattr(tokenizer, name)]
    vocab = getattr(tokenizer, "vocabulary", None)
    if vocab is not None:
        rows.append(("vocabulary fingerprint", f"`{vocab.fingerprint}`"))
    return rows


#: ``training_summary.json`` key → card row (the configured values; see ``pixelbytes.training.run_training``)
_SUMMARY_ROWS = (
    ("learning_rate", "initial learning rate"),
    ("lr_scheduler_type", "learning-rate schedule"),
    ("warmup_steps", "warm-up steps"),
    ("weight_decay", "weight decay"),
    ("optimizer", "optimizer"),
    ("per_device_train_batch_size", "batch size per device"),
    ("gradient_accumulation_steps", "gradient accumulation steps"),
    ("total_train_batch_size", "effective batch size"),
    ("max_steps", "max steps"),
    ("num_train_epochs", "planned epochs"),
    ("seed", "seed"),
    ("precision", "precision"),
    ("seq_length", "window length (tokens)"),
    ("stride", "window stride"),
    ("train_samples", "training samples"),
    ("validation_samples", "validation samples"),
)
_STATE_ROWS = (
    ("global_step", "optimizer steps"),
    ("epoch", "epochs"),
    ("total_flos", "total FLOs"),
)


def training_rows(state: Mapping[str, Any] | None, summary: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Training details: the configured hyper-parameters (``training_summary.json``) and what ran
    (``trainer_state.json``). The initial learning rate comes from the summary only: the log history holds the
    scheduled rate at each logging step (after warm-up / decay), not the configured one."""
    rows: list[tuple[str, Any]] = []
    summary = dict(summary or {})
    state = dict(state or {})
    for key, name in _SUMMARY_ROWS:
        if summary.get(key) is not None:
            rows.append((name, summary[key]))
    if "per_device_train_batch_size" not in summary and state.get("train_batch_size") is not None:
        rows.append(("batch size per device", state["train_batch_size"]))
    if "num_train_epochs" not in summary and state.get("num_train_epochs") is not None and not state.get("max_steps"):
        rows.append(("planned epochs", state["num_train_epochs"]))
    for key, name in _STATE_ROWS:  # what ran: the trainer state, else the summary (e.g. the demo's)
        value = state.get(key, summary.get(key))
        if value is not None:
            rows.append((name, value))
    history = state.get("log_history") or []
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    if train:
        rows.append(("final training loss", train[-1]["loss"]))
    if evals:
        rows.append(("final eval loss", evals[-1]["eval_loss"]))
    if state.get("best_metric") is not None:
        rows.append(("best metric", state["best_metric"]))
    return [(name, fmt(value)) for name, value in rows]


def baseline_table(
    metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]] | None
) -> tuple[list[str], list[list[str]]]:
    """The "model vs codecs" table: header ``["metric", "this model", codec…]`` and one row per metric that a
    codec reports (– where a column has no value). Empty when there are no baselines."""
    if not baselines:
        return [], []
    codecs = list(baselines)
    names = list(dict.fromkeys(name for codec in codecs for name in baselines[codec]))
    header = ["metric", "this model", *codecs]
    rows = [[name, fmt(metrics.get(name)), *(fmt(baselines[c].get(name)) for c in codecs)] for name in names]
    return header, rows


def protocol_rows(protocols: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """``(protocol, metric, value)`` rows; ``[mean, std]`` values print as ``mean ± std``."""
    rows = []
    for protocol, values in (protocols or {}).items():
        if isinstance(values, Mapping):
            rows.extend((protocol, name, fmt(value)) for name, value in values.items())
        else:
            rows.append((protocol, "", fmt(values)))
    return rows


def gallery_items(samples: Any, output_dir: Path) -> list[dict[str, str]]:
    """Normalise samples to ``{"prompt", "url", "kind"}`` with files inside ``output_dir`` (copied under
    ``samples/`` when they live elsewhere). ``samples``: ``{prompt: path}``, ``[(prompt, path)]`` or
    ``[{"prompt": …, "path": …}]``."""
    if not samples:
        return []
    items = samples.items() if isinstance(samples, Mapping) else samples
    out: list[dict[str, str]] = []
    used: set[str] = set()
    for item in items:
        if isinstance(item, Mapping):
            prompt, path = item["prompt"], item["path"]
        else:
            prompt, path = item
        path = Path(path)
        if not path.is_absolute() and (output_dir / path).is_file():
            path = output_dir / path
        if not path.is_file():
            raise FileNotFoundError(f"sample file {path} does not exist")
        try:
            relative = path.resolve().relative_to(output_dir.resolve())
        except ValueError:
            relative = Path("samples") / path.name
            if (output_dir / relative).exists() and relative.as_posix() in used:
                relative = Path("samples") / f"{len(out)}_{path.name}"
            (output_dir / "samples").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, output_dir / relative)
        used.add(relative.as_posix())
        suffix = path.suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "audio" if suffix in AUDIO_SUFFIXES else "file"
        out.append({"prompt": str(prompt), "url": relative.as_posix(), "kind": kind})
    return out


def limitations(model: Any, datasets: Sequence[str]) -> list[str]:
    """What the model cannot do, from its config."""
    config = model.config
    data = f" ({', '.join(datasets)})" if datasets else ""
    items = [
        f"A small research model: it only reproduces the kind of content its training data{data} covered; outputs "
        "are low-resolution pixel art, short sounds and short texts, not general-purpose text, images or audio.",
        "Only the tokens of its vocabulary exist: lower-case ASCII text (other characters are dropped), the "
        f"{config.num_colors}-colour palette, and "
        + (f"{config.num_levels} audio / action levels." if config.num_levels else "no audio (text + image only)."),
        "Images and audio come out at the tokenizer's strides and rate; quality depends on the sampling settings; "
        "use the layout logits processors (`generate_image` / `generate_audio`) for well-formed structures.",
        "Needs the `pixelbytes` package or `trust_remote_code=True`; the hosted inference widgets cannot run it "
        "(the gallery shows pre-generated samples).",
    ]
    if config.bidirectional:
        items.append(
            f"Bidirectional model: it has no generation cache and re-encodes the last {config.window_size} tokens "
            "at every step (slow generation, bounded context)."
        )
    if config.objective == "context":
        items.append(
            "Trained with the 6-slot context objective: `context_logits` predict the next position's whole "
            "neighbourhood; generation samples the next token from the slot-5 head."
        )
    items.append("Not evaluated for bias or safety; do not use for decisions about people.")
    return items

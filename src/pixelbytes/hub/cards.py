"""Hub model cards for PixelBytes checkpoints, rendered from the packaged template (``templates/``) (DESIGN §9).

:func:`render_model_card` fills ``templates/model_card_template.md`` (Jinja, ``{{ card_data }}`` front
matter) through ``ModelCard.from_template``: metadata (``library_name``, ``pipeline_tag: text-to-image`` (the
``text-to-sprite`` pipeline's alias in an exported folder's ``custom_pipelines``), tags,
datasets, license, model-index only from real evaluation numbers), a usage snippet that runs, a sample
gallery (generated GIF / PNG / WAV files referenced by widget entries), model and training details from
the config, tokenizer and ``trainer_state.json``, and limitations.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TAGS", "PIPELINE_TAG", "default_template_path", "render_model_card"]

DEFAULT_TAGS = ("pixelbytes", "text-to-image", "text-to-audio", "custom_code")
#: tags that only hold for models whose vocabulary has audio / action levels
AUDIO_TAGS = ("text-to-audio",)
TEMPLATE_NAME = "model_card_template.md"
#: the card's ``pipeline_tag``: a task that works with the exported remote code (``pipeline("text-to-image", model=repo,
#: trust_remote_code=True)`` resolves to the sprite pipeline through ``custom_pipelines``); transformers' own
#: ``any-to-any`` pipeline needs a processor this model does not have.
PIPELINE_TAG = "text-to-image"
IMAGE_SUFFIXES = {".gif", ".png", ".jpg", ".jpeg", ".webp"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg"}
#: Trainer bookkeeping keys that are not evaluation metrics.
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "step", "total_flos", "mem_")


def default_template_path() -> Path:
    """The packaged ``templates/model_card_template.md`` (``PIXELBYTES_CARD_TEMPLATE`` overrides it)."""
    override = os.environ.get("PIXELBYTES_CARD_TEMPLATE")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "templates" / TEMPLATE_NAME


# -------------------------------------------------------------------------------------------------
# sections
# -------------------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _config_rows(model: Any) -> list[tuple[str, str]]:
    config = model.config
    rows = [
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
    return [(name, _fmt(value)) for name, value in rows]


def _tokenizer_rows(tokenizer: Any) -> list[tuple[str, str]]:
    names = ("image_stride", "frame_stride", "audio_stride", "audio_normalization", "audio_channels", "sampling_rate")
    rows = [(name.replace("_", " "), _fmt(getattr(tokenizer, name))) for name in names if hasattr(tokenizer, name)]
    vocab = getattr(tokenizer, "vocabulary", None)
    if vocab is not None:
        rows.append(("vocabulary fingerprint", f"`{vocab.fingerprint}`"))
    return rows


def _load_trainer_state(trainer_state: str | os.PathLike | Mapping | None, output_dir: Path) -> dict | None:
    if trainer_state is None:
        candidate = output_dir / "trainer_state.json"
        if not candidate.is_file():
            return None
        trainer_state = candidate
    if isinstance(trainer_state, Mapping):
        return dict(trainer_state)
    return json.loads(Path(trainer_state).read_text(encoding="utf-8"))


def _training_rows(state: dict | None) -> list[tuple[str, str]]:
    if not state:
        return []
    rows: list[tuple[str, Any]] = []
    for key, name in (
        ("global_step", "optimizer steps"),
        ("epoch", "epochs"),
        ("num_train_epochs", "planned epochs"),
        ("train_batch_size", "batch size per device"),
        ("total_flos", "total FLOs"),
    ):
        if state.get(key) is not None:
            rows.append((name, state[key]))
    history = state.get("log_history") or []
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    if train:
        rows.append(("final training loss", train[-1]["loss"]))
        if "learning_rate" in train[0]:
            rows.append(("initial learning rate", train[0]["learning_rate"]))
    if evals:
        rows.append(("final eval loss", evals[-1]["eval_loss"]))
    if state.get("best_metric") is not None:
        rows.append(("best metric", state["best_metric"]))
    return [(name, _fmt(value)) for name, value in rows]


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    clean = {}
    for name, value in (metrics or {}).items():
        if any(part in name for part in _NOT_METRICS):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            clean[name] = float(value)
    return clean


def _metric_type(name: str) -> str:
    base = name.removeprefix("eval_").removeprefix("test_")
    for known in ("perplexity", "accuracy", "loss", "bleu", "f1"):
        if known in base:
            return known
    return base


def _samples(samples: Any, output_dir: Path) -> list[dict[str, str]]:
    """Normalise samples to ``{"prompt", "url", "kind"}`` with files inside ``output_dir`` (copied under
    ``samples/`` when they live elsewhere)."""
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


def _limitations(model: Any, datasets: Sequence[str]) -> list[str]:
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


# -------------------------------------------------------------------------------------------------
# entry point
# -------------------------------------------------------------------------------------------------
def render_model_card(
    model: Any,
    tokenizer: Any,
    output_dir: str | os.PathLike,
    metrics: Mapping[str, Any] | None = None,
    samples: Mapping[str, str | os.PathLike] | Sequence[Any] | None = None,
    trainer_state: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    model_name: str | None = None,
    datasets: Sequence[str] | None = None,
    eval_dataset: str | None = None,
    license: str = "mit",
    language: Sequence[str] | None = ("en",),
    tags: Sequence[str] = (),
    converted_from: str | None = None,
    usage_prompt: str = "pikachu",
    template_path: str | os.PathLike | None = None,
    save: bool = True,
) -> ModelCard:
    """Render the model card of ``model`` / ``tokenizer`` and (by default) save it as ``output_dir/README.md``.

    Args:
        model, tokenizer: the :class:`~pixelbytes.PxBySequenceModel` and its tokenizer.
        output_dir: the checkpoint directory (sample files outside it are copied to ``output_dir/samples``).
        metrics: REAL evaluation numbers (e.g. ``trainer.evaluate()``'s dict); they become the model-index and
            an evaluation table. Bookkeeping keys (runtime, samples per second, epoch) are ignored.
        samples: generated outputs for the gallery: ``{prompt: path}`` or ``[(prompt, path)]`` or
            ``[{"prompt": …, "path": …}]`` with GIF / PNG / WAV files; they become widget entries.
        trainer_state: ``trainer_state.json`` path or dict (default: ``output_dir/trainer_state.json`` if present).
        repo_id: the Hub id used in the usage snippet (default: the directory path).
        model_name: the title (default: the repo name or directory name).
        datasets: Hub dataset ids the model was trained on.
        eval_dataset: dataset id of ``metrics`` (default: the first of ``datasets``).
        license, language, tags: metadata (``DEFAULT_TAGS`` are always included).
        converted_from: the original checkpoint this model was converted from (mentioned in the text).
        usage_prompt: the prompt of the usage snippet.
        template_path: a Jinja template (default: :func:`default_template_path`).
        save: write ``README.md`` into ``output_dir``.
    """
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ref = repo_id or directory.as_posix()
    name = model_name or (repo_id.split("/")[-1] if repo_id else directory.resolve().name)
    gallery = _samples(samples, directory)
    real_metrics = _clean_metrics(metrics)
    datasets = list(datasets or [])
    eval_on = eval_dataset or (datasets[0] if datasets else "a held-out split")
    eval_results = None
    if real_metrics:
        eval_results = [
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name="PixelBytes next-token prediction",
                dataset_type=eval_on,
                dataset_name=eval_on,
                metric_type=_metric_type(key),
                metric_name=key,
                metric_value=value,
            )
            for key, value in real_metrics.items()
        ]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=license,
        language=list(language) if language else None,
        tags=[
            tag
            for tag in dict.fromkeys([*DEFAULT_TAGS, *tags])
            if model.config.num_levels or tag not in AUDIO_TAGS
        ],
        datasets=datasets or None,
        metrics=sorted({_metric_type(k) for k in real_metrics}) or None,
        model_name=name,
        eval_results=eval_results,
        widget=[{"text": s["prompt"], "output": {"url": s["url"]}} for s in gallery] or None,
        inference=False,
    )
    config = model.config
    backbone = {"lstm": "An LSTM", "mamba": "A Mamba", "attention": "An attention"}.get(
        config.backbone, f"A {config.backbone}"
    )
    summary = (
        f"{backbone} PixelBytes model ({config.objective} objective, "
        f"{'bidirectional' if config.bidirectional else 'causal'}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters) that generates text, pixel-art sprites"
        + (" and audio / action sequences" if config.num_levels else "")
        + " from one token stream."
    )
    state = _load_trainer_state(trainer_state, directory)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path or default_template_path()),
        model_name=name,
        model_ref=ref,
        summary=summary,
        converted_from=converted_from,
        usage_prompt=usage_prompt.replace('"', "'"),
        image_size=4,
        pipeline_tag=PIPELINE_TAG,
        audio=bool(model.config.num_levels),
        remote_code=(directory / "modeling_pixelbytes.py").is_file(),
        samples=gallery,
        config_rows=_config_rows(model),
        tokenizer_rows=_tokenizer_rows(tokenizer),
        training_rows=_training_rows(state),
        metric_rows=[(k, _fmt(v)) for k, v in real_metrics.items()],
        eval_dataset=eval_on,
        limitations=_limitations(model, datasets),
    )
    card = ModelCard(re.sub(r"\n{3,}", "\n\n", str(card)))  # Jinja block tags leave runs of blank lines
    if save:
        card.save(directory / "README.md")
        logger.info("model card written to %s", directory / "README.md")
    return card

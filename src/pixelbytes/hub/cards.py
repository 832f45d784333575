"""Hub model cards for PixelBytes checkpoints, rendered from the packaged template (``templates/``) (DESIGN §9).

:func:`render_model_card` fills ``templates/model_card_template.md`` (Jinja, ``{{ card_data }}`` front matter):
metadata (``library_name``, ``pipeline_tag: text-to-image`` (the ``text-to-sprite`` pipeline's alias in an
exported folder's ``custom_pipelines``), tags, datasets, license, and a model-index built ONLY from the
``metrics`` of ``eval_results.json`` (:mod:`.eval_results`), named after its dataset and split), a usage snippet
that runs, a sample gallery (GIF / PNG inline, WAV as links, widget entries), model and training details from the
config, tokenizer, ``training_summary.json`` and ``trainer_state.json``, a "model vs codecs" table from the
``baselines`` of ``eval_results.json``, and limitations.

Templates are rendered with a Jinja environment whose loader also sees the packaged templates, so a card source
(``hub_cards/*.md``, see ``pixelbytes publish``) can ``{% extends "model_card_template.md" %}`` and override its
blocks (``description``, ``published``, ``extra``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from . import card_sections as sections
from .eval_results import (
    EVAL_RESULTS_NAME,
    TRAINER_STATE_NAME,
    TRAINING_SUMMARY_NAME,
    load_eval_results,
    model_index_metrics,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TAGS", "PIPELINE_TAG", "default_template_path", "render_model_card", "render_template"]

DEFAULT_TAGS = ("pixelbytes", "text-to-image", "text-to-audio", "custom_code")
#: tags that only hold for models whose vocabulary has audio / action levels
AUDIO_TAGS = ("text-to-audio",)
TEMPLATE_NAME = "model_card_template.md"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
#: the card's ``pipeline_tag``: a task that works with the exported remote code (``pipeline("text-to-image", model=repo,
#: trust_remote_code=True)`` resolves to the sprite pipeline through ``custom_pipelines``); transformers' own
#: ``any-to-any`` pipeline needs a processor this model does not have.
PIPELINE_TAG = "text-to-image"
TASK_NAME = "PixelBytes next-token prediction"


def default_template_path() -> Path:
    """The packaged ``templates/model_card_template.md`` (``PIXELBYTES_CARD_TEMPLATE`` overrides it)."""
    override = os.environ.get("PIXELBYTES_CARD_TEMPLATE")
    if override:
        return Path(override)
    return TEMPLATE_DIR / TEMPLATE_NAME


def render_template(
    card_data: ModelCardData,
    template_path: str | os.PathLike | None = None,
    template_str: str | None = None,
    **context: Any,
) -> ModelCard:
    """Render a card template (a file, or a string such as a card source's body) like
    ``ModelCard.from_template`` (``{{ card_data }}`` = the YAML front matter, every card-data field a variable),
    with the packaged templates on the loader path so ``{% extends "model_card_template.md" %}`` works."""
    import jinja2

    if template_str is None:
        path = Path(template_path) if template_path is not None else default_template_path()
        template_str = path.read_text(encoding="utf-8")
        search = [str(path.resolve().parent), str(TEMPLATE_DIR)]
    else:
        search = [str(TEMPLATE_DIR)]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(search), keep_trailing_newline=True)
    variables = {**card_data.to_dict(), **context}
    text = env.from_string(template_str).render(card_data=card_data.to_yaml(), **variables)
    return ModelCard(re.sub(r"\n{3,}", "\n\n", text))  # Jinja block tags leave runs of blank lines


def _flat_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics=`` (a flat dict such as ``trainer.evaluate()``'s) as an ``eval_results`` object; names are kept."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return load_eval_results({"metrics": numbers})


def _resolve_results(
    metrics: Mapping[str, Any] | None,
    eval_results: str | os.PathLike | Mapping[str, Any] | None,
    directory: Path,
) -> dict[str, Any] | None:
    if metrics is not None and eval_results is not None:
        raise ValueError("pass either metrics (a flat dict) or eval_results (the eval_results.json schema), not both")
    if metrics is not None:
        return _flat_metrics(metrics)
    if eval_results is None:
        candidate = directory / EVAL_RESULTS_NAME
        return load_eval_results(candidate) if candidate.is_file() else None
    return load_eval_results(eval_results)


def _eval_dataset(results: Mapping[str, Any] | None, override: str | None, datasets: Sequence[str]) -> dict[str, Any]:
    info = dict((results or {}).get("dataset") or {})
    if override:
        info["name"] = override
    info.setdefault("name", datasets[0] if datasets else "a held-out split")
    return info


def _eval_description(info: Mapping[str, Any], results: Mapping[str, Any] | None) -> str:
    parts = [f"`{info['name']}`"]
    details = []
    if info.get("split"):
        details.append(f"split `{info['split']}`")
    if info.get("num_items") is not None:
        details.append(f"{info['num_items']} items")
    if details:
        parts.append(f"({', '.join(details)})")
    results = results or {}
    if results.get("runtime_seconds") is not None:
        parts.append(f"in {sections.fmt(float(results['runtime_seconds']))} s")
    if results.get("machine"):
        parts.append(f"on {results['machine']}")
    return " ".join(parts)


def render_model_card(
    model: Any,
    tokenizer: Any,
    output_dir: str | os.PathLike,
    metrics: Mapping[str, Any] | None = None,
    samples: Mapping[str, str | os.PathLike] | Sequence[Any] | None = None,
    trainer_state: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    eval_results: str | os.PathLike | Mapping[str, Any] | None = None,
    training_summary: str | os.PathLike | Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    datasets: Sequence[str] | None = None,
    eval_dataset: str | None = None,
    license: str = "mit",
    language: Sequence[str] | None = ("en",),
    tags: Sequence[str] = (),
    converted_from: str | None = None,
    usage_prompt: str = "pikachu",
    figures: Sequence[str] = (),
    published: Sequence[Mapping[str, Any]] = (),
    template_path: str | os.PathLike | None = None,
    template_str: str | None = None,
    extra_context: Mapping[str, Any] | None = None,
    save: bool = True,
) -> ModelCard:
    """Render the model card of ``model`` / ``tokenizer`` and (by default) save it as ``output_dir/README.md``.

    Args:
        model, tokenizer: the :class:`~pixelbytes.PxBySequenceModel` and its tokenizer.
        output_dir: the checkpoint directory (sample files outside it are copied to ``output_dir/samples``).
        metrics: a flat dict of REAL held-out numbers (e.g. ``trainer.evaluate()``'s); bookkeeping (runtime,
            samples per second, epoch) and training numbers (``train_*``) are ignored. Exclusive with ``eval_results``.
        samples: generated outputs for the gallery: ``{prompt: path}`` or ``[(prompt, path)]`` or
            ``[{"prompt": …, "path": …}]`` with GIF / PNG / WAV files; they become widget entries.
        trainer_state: ``trainer_state.json`` path or dict (default: ``output_dir/trainer_state.json`` if present).
        eval_results: an ``eval_results.json`` path or dict (:mod:`.eval_results`; default:
            ``output_dir/eval_results.json`` if present and no ``metrics`` are given). Its ``metrics`` become the
            model-index (dataset and split from its ``dataset``), its ``baselines`` a "model vs codecs" table.
        training_summary: ``training_summary.json`` path or dict (the configured learning rate, batch size, steps,
            seed; default: ``output_dir/training_summary.json`` if present).
        repo_id: the Hub id used in the usage snippet (default: the directory path).
        model_name: the title (default: the repo name or directory name).
        datasets: Hub dataset ids the model was trained on.
        eval_dataset: dataset name of the evaluation (default: from ``eval_results``, else the first of ``datasets``).
        license, language, tags: metadata (``DEFAULT_TAGS`` are always included).
        converted_from: the original checkpoint this model was converted from (mentioned in the text).
        usage_prompt: the prompt of the usage snippet.
        figures: evaluation figures (PNG paths relative to ``output_dir``) shown in the evaluation section.
        published: numbers published by the original project, each ``{"title", "source", "note", "columns",
            "rows"}``; shown in their own, clearly labelled section, never in the model-index.
        template_path / template_str: a Jinja template file or string (default: :func:`default_template_path`).
        extra_context: more template variables (card sources).
        save: write ``README.md`` into ``output_dir``.
    """
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ref = repo_id or directory.as_posix()
    name = model_name or (repo_id.split("/")[-1] if repo_id else directory.resolve().name)
    gallery = sections.gallery_items(samples, directory)
    results = _resolve_results(metrics, eval_results, directory)
    real_metrics = model_index_metrics(results) if results else {}
    datasets = list(datasets or [])
    eval_info = _eval_dataset(results, eval_dataset, datasets)
    eval_entries = None
    if real_metrics:
        eval_entries = [
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name=TASK_NAME,
                dataset_type=str(eval_info["name"]),
                dataset_name=str(eval_info["name"]),
                dataset_split=eval_info.get("split"),
                metric_type=_metric_type(key),
                metric_name=key,
                metric_value=value,
            )
            for key, value in real_metrics.items()
        ]
    config = model.config
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=license,
        language=list(language) if language else None,
        tags=[tag for tag in dict.fromkeys([*DEFAULT_TAGS, *tags]) if config.num_levels or tag not in AUDIO_TAGS],
        datasets=datasets or None,
        metrics=sorted({_metric_type(k) for k in real_metrics}) or None,
        model_name=name,
        eval_results=eval_entries,
        widget=[{"text": s["prompt"], "output": {"url": s["url"]}} for s in gallery] or None,
        inference=False,
    )
    backbone = {"lstm": "An LSTM", "mamba": "A Mamba", "attention": "An attention"}.get(
        config.backbone, f"A {config.backbone}"
    )
    n_params = sum(p.numel() for p in model.parameters())
    summary = (
        f"{backbone} PixelBytes model ({config.objective} objective, "
        f"{'bidirectional' if config.bidirectional else 'causal'}, {n_params:,} parameters) that generates text, "
        "pixel-art sprites" + (" and audio / action sequences" if config.num_levels else "") + " from one token stream."
    )
    state = sections.load_json_record(trainer_state, directory, TRAINER_STATE_NAME)
    hyper = sections.load_json_record(training_summary, directory, TRAINING_SUMMARY_NAME)
    baseline_header, baseline_rows = sections.baseline_table(real_metrics, (results or {}).get("baselines"))
    card = render_template(
        card_data,
        template_path=template_path,
        template_str=template_str,
        **{
            "model_name": name,
            "model_ref": ref,
            "summary": summary,
            "converted_from": converted_from,
            "usage_prompt": usage_prompt.replace('"', "'"),
            "image_size": 4,
            "pipeline_tag": PIPELINE_TAG,
            "audio": bool(config.num_levels),
            "generates": config.objective != "diffusion",  # diffusion models fill in (infill), never generate()
            "remote_code": (directory / "modeling_pixelbytes.py").is_file(),
            "samples": gallery,
            "config_rows": sections.config_rows(model),
            "tokenizer_rows": sections.tokenizer_rows(tokenizer),
            "training_rows": sections.training_rows(state, hyper),
            "metric_rows": [(k, sections.fmt(v)) for k, v in real_metrics.items()],
            "eval_dataset": _eval_description(eval_info, results),
            "baseline_header": baseline_header,
            "baseline_rows": baseline_rows,
            "protocol_rows": sections.protocol_rows((results or {}).get("protocols")),
            "figures": [Path(f).as_posix() for f in figures],
            "published": [dict(table) for table in published],
            "limitations": sections.limitations(model, datasets),
            **dict(extra_context or {}),
        },
    )
    if save:
        card.save(directory / "README.md")
        logger.info("model card written to %s", directory / "README.md")
    return card


def _metric_type(name: str) -> str:
    base = name.removeprefix("eval_").removeprefix("test_")
    for known in ("perplexity", "accuracy", "loss", "bleu", "f1"):
        if known in base:
            return known
    return base

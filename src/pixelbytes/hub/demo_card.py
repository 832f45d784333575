"""The model card of a ``pixelbytes demo`` run: its held-out caption → sprite metrics as ``eval_results.json``,
its configured training settings as ``training_summary.json``, and ``README.md``, all in the demo's model folder
(``<output_dir>/model``), so that ``pixelbytes publish <output_dir>/model`` carries them to the Hub.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cards import render_model_card
from .eval_results import TRAINING_SUMMARY_NAME, make_eval_results, write_eval_results

logger = logging.getLogger(__name__)

__all__ = ["DEMO_DATASET", "write_demo_card"]

DEMO_DATASET = "pixelbytes synthetic demo captions (held-out colour x shape pairs)"
#: held-out metrics of ``metrics.json`` (``heldout_<name>``) that become the card's model-index
HELDOUT_METRICS = ("pixel_accuracy", "mask_iou", "color_accuracy", "shape_accuracy", "exact_match")


def write_demo_card(
    model: Any,
    tokenizer: Any,
    output_dir: str | os.PathLike,
    metrics: Mapping[str, Any],
    settings: Mapping[str, Any],
    max_samples: int = 4,
) -> Path:
    """Write ``eval_results.json``, ``training_summary.json`` and ``README.md`` into ``output_dir/model``.

    ``metrics`` is the demo's ``metrics.json`` content; ``settings`` its options (``learning_rate``,
    ``batch_size``, ``max_steps``, ``seed``). The gallery shows the first ``max_samples`` held-out GIF / WAV
    files of ``output_dir/samples``. Returns the card's path.
    """
    out = Path(output_dir)
    model_dir = out / "model"
    baselines = {
        "all-background sprite": {"pixel_accuracy": metrics["heldout_blank_pixel_accuracy"]},
        "chance": {
            "color_accuracy": metrics["heldout_color_accuracy_chance"],
            "shape_accuracy": metrics["heldout_shape_accuracy_chance"],
        },
    }
    results = make_eval_results(
        {name: metrics[f"heldout_{name}"] for name in HELDOUT_METRICS},
        model="model",
        dataset=DEMO_DATASET,
        split="heldout",
        num_items=int(metrics["heldout_captions"]),
        baselines=baselines,
    )
    write_eval_results(model_dir, results)
    summary = {
        "learning_rate": settings.get("learning_rate"),
        "lr_scheduler_type": "cosine",
        "per_device_train_batch_size": settings.get("batch_size"),
        "max_steps": metrics.get("max_steps"),
        "global_step": metrics.get("train_steps"),
        "seed": settings.get("seed"),
    }
    (model_dir / TRAINING_SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    gifs = sorted((out / "samples").glob("*.gif"))[:max_samples]
    samples = []
    for gif in gifs:
        caption = gif.stem.replace("_", " ")
        samples.append((caption, gif))
        if gif.with_suffix(".wav").is_file():
            samples.append((caption, gif.with_suffix(".wav")))
    render_model_card(
        model,
        tokenizer,
        model_dir,
        samples=samples,
        model_name="pixelbytes-demo",
        usage_prompt=samples[0][0] if samples else "red circle",
        language=("en",),
        tags=("demo",),
    )
    logger.info("demo model card written to %s", model_dir / "README.md")
    return model_dir / "README.md"

"""The control recipe: build the dataset, train a small model on CPU, evaluate it beside PID / LQG / bang-bang.

``train_recipe`` trains with :func:`pixelbytes.training.run_training` on the control vocabulary
(``pixelbytes train --vocabulary control --audio_normalization none``). ``evaluate_recipe`` runs
the model controller and the baselines on the dataset's held-out plants and writes ``results.json``, a Markdown
table and plots of y(t) and u(t).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RECIPE_MODEL", "control_tokenizer", "evaluate_recipe", "train_recipe"]

logger = logging.getLogger(__name__)

#: the recipe's model: a 2-layer LSTM of width 128 on 48-wide pxby6 embeddings
RECIPE_MODEL = {"embed_size": 48, "hidden_size": 128, "num_hidden_layers": 2}


def control_tokenizer() -> Any:
    """The control tokenizer: control vocabulary (141 levels), stereo, ``audio_normalization="none"``."""
    from ..tokenization_pixelbytes import ActionPixelBytesTokenizer
    from ..vocabulary import control_vocabulary

    return ActionPixelBytesTokenizer(vocabulary=control_vocabulary(), audio_channels=2, audio_normalization="none")


def train_recipe(
    dataset_dir: str | Path,
    output_dir: str | Path,
    objective: str = "diffusion",
    max_steps: int = 400,
    time_budget_seconds: float | None = None,
    seed: int = 0,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    seq_length: int = 256,
) -> dict[str, Any]:
    """Train the recipe model on ``dataset_dir/train`` and save it (with its tokenizer) to ``output_dir``.

    ``objective="diffusion"`` trains a bidirectional masked-diffusion model (the infill controller);
    ``"next_token"`` a causal one (the candidate-scoring controller). Returns the training metrics plus
    ``train_seconds`` (wall clock of the whole call).
    """
    import torch
    from transformers import TrainingArguments

    from ..training import DataArguments, ModelArguments, run_training

    if objective not in ("diffusion", "next_token"):
        raise ValueError(f"objective must be 'diffusion' or 'next_token', got {objective!r}")
    train_dir = Path(dataset_dir) / "train"
    if not (train_dir / "metadata.jsonl").is_file():
        raise FileNotFoundError(f"{train_dir}/metadata.jsonl not found: run `pixelbytes control build-dataset` first")
    start = time.perf_counter()
    out = Path(output_dir)
    # an audio-only view of the training split: the control vocabulary holds only the bytes 0 and 1, so the CSV
    # description would shrink to its digits 0 / 1, and the model controller's streams hold no text either
    view = out / "train_audio"
    view.mkdir(parents=True, exist_ok=True)
    with open(view / "metadata.jsonl", "w", encoding="utf-8") as handle:
        for line in (train_dir / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                handle.write(json.dumps({"audio": str((train_dir / row["audio"]).resolve())}) + "\n")
    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=learning_rate, lr_scheduler_type="cosine",
        warmup_steps=min(20, max_steps // 10), logging_steps=25, eval_strategy="no", save_strategy="no",
        report_to=[], seed=seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
    )  # fmt: skip
    data = DataArguments(dataset=str(view), seq_length=seq_length, stride=seq_length // 2, vocabulary="control",
                         audio_normalization="none", validation_fraction=0.1, split_seed=seed,
                         time_budget_seconds=time_budget_seconds)  # fmt: skip
    model = ModelArguments(objective=objective, bidirectional=objective == "diffusion", **RECIPE_MODEL)
    metrics = run_training(model, data, args)
    metrics["train_seconds"] = time.perf_counter() - start
    record = {"objective": objective, "max_steps": max_steps, "seed": seed, "model": RECIPE_MODEL, "metrics": metrics}
    (out / "recipe.json").write_text(json.dumps(record, indent=1, default=str))
    return metrics


def evaluate_recipe(
    dataset_dir: str | Path,
    model_dirs: list[str | Path],
    output_dir: str | Path,
    steps: int = 200,
    seed: int = 0,
    max_plants: int | None = None,
    horizon: int = 4,
    history: int = 40,
    reference_tau: float | None = None,
    plot_plants: int = 1,
) -> dict[str, Any]:
    """Evaluate model controllers (``model_dirs``) and the baselines on the held-out plants of ``dataset_dir``.

    Writes ``results.json`` (per-plant metrics and the summary), ``table.md`` and ``plot_<plant>.png`` for the first
    ``plot_plants`` plants to ``output_dir``; returns the results without trajectories.
    """
    from ..modeling_pixelbytes import PxBySequenceModel
    from ..tokenization_pixelbytes import ActionPixelBytesTokenizer
    from .datasets import load_plants
    from .model_controller import (
        ModelController,
        baseline_factories,
        evaluate_controllers,
        format_table,
        plot_trajectories,
    )

    plants = load_plants(dataset_dir, "test")[:max_plants]
    if not plants:
        raise ValueError(f"{dataset_dir} has no held-out (test) plants")
    factories: dict[str, Any] = {}
    for model_dir in model_dirs:
        tokenizer = ActionPixelBytesTokenizer.from_pretrained(model_dir)
        model = PxBySequenceModel.from_pretrained(model_dir).eval()
        label = f"pixelbytes-{'infill' if model.config.objective == 'diffusion' else 'score'}"

        def factory(plant: Any, model: Any = model, tokenizer: Any = tokenizer) -> Any:
            return ModelController(model, tokenizer, horizon=horizon, history=history, reference_tau=reference_tau,
                                   dt=plant.dt)  # fmt: skip

        factories[label] = factory
    factories.update(baseline_factories(seed))
    start = time.perf_counter()
    results = evaluate_controllers(plants, factories, steps=steps, seed=seed)
    seconds = time.perf_counter() - start
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for plant in plants[:plot_plants]:
        title = f"{plant.name} (order {plant.order}, delay {plant.delay}, noise {plant.noise_std:.3f})"
        plot_trajectories(results["trajectories"][plant.name], out / f"plot_{plant.name}.png", title=title)
    table = format_table(results["summary"])
    orders = np.bincount([p.order for p in plants], minlength=6)[1:].tolist()
    header = (f"{len(plants)} held-out plants (orders 1-5: {orders}), {steps} steps of {plants[0].dt} s, "
              f"2 setpoints each, seed {seed}")  # fmt: skip
    (out / "table.md").write_text(header + "\n\n" + table + "\n")
    saved = {"plants": len(plants), "orders": orders, "steps": steps, "seed": seed, "eval_seconds": seconds,
             "summary": results["summary"], "per_plant": results["per_plant"]}  # fmt: skip
    (out / "results.json").write_text(json.dumps(saved, indent=1))
    logger.info("%s\n%s", header, table)
    return saved

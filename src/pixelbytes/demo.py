"""``pixelbytes demo``: the main job on the embedded default data.

Trains a small PixelBytes LSTM on the synthetic caption → sprite (+ sound) dataset
(:mod:`pixelbytes.data.synthetic`) for a fixed number of optimiser steps (the clock is only a cap), saves it,
generates sprites and sounds for training captions and for HELD-OUT captions (colour × shape pairs never seen in
training), and reports caption → sprite metrics (pixel accuracy, foreground IoU, colour / shape correctness, exact
match, each beside its chance level) in ``metrics.json``, a contact sheet (reference vs generated) and GIF / WAV
files.

The model is the papers' pxby6 LSTM plus three conditioning aids (see :class:`PxByConfig`): grid-position
embeddings, a caption memory (the caption's hashed byte trigrams fed to every input) and its cells per grid
position and frame. Without them it draws blobs in these steps; with them the captioned shapes.

Training runs ``--max-steps`` steps (1,750: what an idle 2-core machine ran in the former 210 s budget) with a
step-based cosine learning rate, so the result does not depend on how busy the machine is; ``--time-budget``
(420 s, twice the idle time) only stops a machine that is far too slow, and ``metrics.json`` then says so
(``time_cap_hit``), beside the steps that ran and whether each goal (``DEMO_GOALS``) was met.

Decoding is greedy under :class:`~pixelbytes.generation_pixelbytes.ImageGridLogitsProcessor` (16 × 16,
as many frames as the caption's animation has), then :class:`AudioLogitsProcessor` for the sound.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from .configuration_pixelbytes import PxByConfig
from .generation_pixelbytes import generate_audio, generate_image
from .modeling_pixelbytes import PxBySequenceModel
from .tokenization_pixelbytes import ActionPixelBytesTokenizer

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_STEPS", "DEFAULT_TIME_CAP", "DEMO_GOALS", "demo_parser", "run_demo"]

#: optimiser steps of a default run (an idle 2-core machine ran 1,683–1,823 in the former 210 s budget)
DEFAULT_MAX_STEPS = 1750
#: seconds after which training stops even if the steps are not done (about twice an idle machine's time)
DEFAULT_TIME_CAP = 420.0
#: the goals of a default run: metric → minimum (reported as met / not met in metrics.json)
DEMO_GOALS = {"train_pixel_accuracy": 0.90, "train_mask_iou": 0.80, "heldout_color_accuracy": 0.90}


def demo_parser() -> argparse.ArgumentParser:
    from .cli import FlagParser  # --long-option and --long_option

    parser = FlagParser(prog="pixelbytes demo", description=__doc__.split("\n\n")[1])
    parser.add_argument("--output-dir", default="demo_output", help="where the model, samples and metrics go")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=DEFAULT_MAX_STEPS,
        help=f"optimiser steps; the learning rate's cosine follows them (default {DEFAULT_MAX_STEPS})",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=DEFAULT_TIME_CAP,
        help=f"cap on training seconds: a slower machine stops early, with fewer steps and a learning rate that "
        f"has not decayed, and metrics.json says so (default {DEFAULT_TIME_CAP:g}, about twice an idle 2-core "
        "machine's time)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="lstm", choices=["lstm", "attention", "mamba"])
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--embed-size", type=int, default=126)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=8e-3)
    parser.add_argument("--change-token-weight", type=float, default=1.0)
    parser.add_argument(
        "--novel-pixel-weight",
        type=float,
        default=10.0,
        help="loss weight of pixels that start a shape (equal to none of their neighbours); see PxByConfig",
    )
    parser.add_argument(
        "--grid-position-size", type=int, default=16, help="grid-position embeddings (0 = off, the papers' model)"
    )
    parser.add_argument(
        "--caption-memory-buckets",
        type=int,
        default=512,
        help="caption memory: the caption's hashed byte trigrams added to every input (0 = off); see PxByConfig",
    )
    parser.add_argument(
        "--caption-memory-cell-frames",
        type=int,
        default=None,
        help="modulate the caption memory per grid cell of this many frames (0 = off; default 4 when the caption "
        "memory and the grid positions are on, else 0; a value > 0 without them is an error); see PxByConfig",
    )
    parser.add_argument("--train-eval-samples", type=int, default=32, help="training captions to evaluate")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: all cores on an idle machine, 1 when other processes keep the CPUs busy "
        "— oversubscribed OpenMP threads make CPU training several times slower)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (few samples, seconds)")
    return parser


def _tokenize(samples: list[dict[str, Any]], tokenizer: ActionPixelBytesTokenizer) -> list[dict[str, np.ndarray]]:
    store = []
    for sample in tqdm(samples, desc="Tokenizing", leave=False):
        enc = tokenizer(
            text=sample["text"],
            images=sample["image"],
            audio=sample["audio"],
            sampling_rate=sample["sampling_rate"],
            return_context_ids=True,
            return_tensors="np",
        )
        store.append({"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]})
    return store


def _train(model, tokenizer, store, args, output_dir: Path) -> tuple[float, dict[str, Any]]:
    """``args.max_steps`` optimiser steps (linear warm-up, then a cosine to zero over the steps), stopped early only
    when ``args.time_budget`` seconds have passed. Returns the seconds and what ran (steps, cap hit, last rate)."""
    from transformers import TrainingArguments

    from .data.windows import PxByWindowDataset
    from .training.trainer import TimeBudgetCallback, build_trainer

    lengths = [len(s["input_ids"]) for s in store]
    dataset = PxByWindowDataset(
        store, lengths, seq_length=max(lengths), stride=max(lengths) - 1, position_layout=model.position_layout()
    )
    start = time.perf_counter()
    max_steps = int(args.max_steps)
    fit = _steps_within(model, dataset, lengths, args.batch_size, args.time_budget)
    if fit < max_steps:
        logger.warning(
            "demo: this machine looks too slow for %d steps within the %.0f s cap (about %d would fit): training "
            "will stop at the cap with a learning rate that has not decayed, and the goals may be missed (raise "
            "--time-budget, or free the CPUs)", max_steps, args.time_budget, fit,
        )  # fmt: skip
    training_args = TrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        max_steps=max_steps,
        per_device_train_batch_size=args.batch_size,
        train_sampling_strategy="group_by_length",  # 1-frame and 4-frame sprites: batches of similar lengths pad less
        learning_rate=args.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, max_steps // 20),
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=max(1, max_steps // 20),
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=args.seed,
        dataloader_num_workers=0,
    )
    cap = TimeBudgetCallback(max(0.0, args.time_budget - (time.perf_counter() - start)))
    trainer = build_trainer(model, tokenizer, training_args, dataset, callbacks=[cap])
    result = trainer.train()
    seconds = time.perf_counter() - start
    if cap.hit:
        logger.warning("demo: the %.0f s time cap stopped training after %d of %d steps",
                       args.time_budget, result.global_step, max_steps)  # fmt: skip
    return seconds, {
        "train_loss": float(result.training_loss),
        "train_steps": int(result.global_step),
        "max_steps": max_steps,
        "time_cap_seconds": float(args.time_budget),
        "time_cap_hit": bool(cap.hit),
        "final_learning_rate": float(trainer.lr_scheduler.get_last_lr()[0]),
    }


def _steps_within(model, dataset, lengths: list[int], batch_size: int, seconds: float, probes: int = 4) -> int:
    """How many optimiser steps fit in ``seconds`` here: times forward + backward on ``probes`` batches.

    Training batches are grouped by length, so the probes are too: windows taken at evenly spaced offsets of
    the length order, their mean time standing for the mean step. The estimate only warns, before training,
    that the time cap will probably stop it early. Gradients are cleared after."""
    from .data.windows import PxByDataCollator

    collate = PxByDataCollator()
    order = np.argsort(lengths, kind="stable")
    offsets = np.linspace(0, max(0, len(order) - batch_size), probes).astype(int)
    model.train()
    warm_up = collate([dataset[int(i)] for i in order[:batch_size]])
    model(**warm_up).loss.backward()  # the first call pays one-off allocations
    times = []
    for offset in offsets:
        batch = collate([dataset[int(i)] for i in order[offset : offset + batch_size]])
        start = time.perf_counter()
        model(**batch).loss.backward()
        times.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    per_step = 1.05 * float(np.mean(times))  # + the optimiser step and data loading
    steps = max(1, int((seconds - sum(times)) / per_step))
    logger.info("demo: %.2f s per training step measured: %d steps fit in %.0f s", per_step, steps, seconds)
    return steps


def resolve_cell_frames(cell_frames: int | None, memory_buckets: int, grid_position_size: int) -> int:
    """``--caption-memory-cell-frames``: ``None`` → 4 when the caption memory and the grid positions are both on,
    else 0; an explicit value > 0 without both is a ``ValueError`` naming the options (never silently zeroed)."""
    if cell_frames is None:
        return 4 if memory_buckets and grid_position_size else 0
    if cell_frames < 0:
        raise ValueError(f"--caption-memory-cell-frames must be >= 0, got {cell_frames}")
    if cell_frames and not (memory_buckets and grid_position_size):
        raise ValueError(
            f"--caption-memory-cell-frames {cell_frames} modulates the caption memory per grid cell: it needs "
            f"--caption-memory-buckets > 0 and --grid-position-size > 0 (got {memory_buckets} and "
            f"{grid_position_size}); pass --caption-memory-cell-frames 0 to turn it off"
        )
    return int(cell_frames)


def _default_threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return 1 if busy >= 1.0 else cores


def _strip_left_padding(row: torch.Tensor) -> list[int]:
    nonzero = torch.nonzero(row).flatten()
    return row[int(nonzero[0]) :].tolist() if len(nonzero) else []


def _generate(model, tokenizer, specs, batch_size: int, audio_steps: int) -> list[dict[str, Any]]:
    """Greedy sprite, then sound, for every spec; batched by frame count (one structure per batch)."""
    by_frames: dict[int, list[int]] = defaultdict(list)
    for i, spec in enumerate(specs):
        by_frames[spec.num_frames].append(i)
    results: list[dict[str, Any]] = [{} for _ in specs]
    model.eval()
    with tqdm(total=len(specs), desc="Generating", leave=False) as progress:
        for frames, indices in sorted(by_frames.items()):
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                prompts = [specs[i].caption for i in chunk]
                sequences, _ = generate_image(model, tokenizer, prompts, 16, 16, frames=frames, do_sample=False)
                rows = [_strip_left_padding(row) for row in sequences]
                _, decoded = generate_audio(model, tokenizer, rows, audio_steps, do_sample=False)
                for k, i in enumerate(chunk):
                    out = decoded[k]
                    results[i] = {
                        "frames": np.stack([np.asarray(f) for f in out.frames]),
                        "audio": out.audio,
                        "text": out.text,
                    }
                progress.update(len(chunk))
    return results


def _contact_sheet(specs, results, path: Path, scale: int = 4, max_rows: int = 32) -> None:
    """One row per caption: reference frames, a gap, generated frames (``scale``× nearest), caption on the left."""
    cell, label_width = 16 * scale, 260
    max_frames = max(spec.num_frames for spec in specs[:max_rows])
    width = label_width + (2 * max_frames) * (cell + 2) + cell
    sheet = Image.new("RGB", (width, min(len(specs), max_rows) * (cell + 4) + 20), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), "caption", fill=(255, 255, 255))
    draw.text((label_width, 4), "reference", fill=(255, 255, 255))
    draw.text((label_width + max_frames * (cell + 2) + cell // 2, 4), "generated", fill=(255, 255, 255))
    for row, (spec, result) in enumerate(zip(specs[:max_rows], results[:max_rows])):
        y = 20 + row * (cell + 4)
        draw.text((4, y + cell // 2 - 6), spec.caption, fill=(255, 255, 255))
        for j, frame in enumerate(spec.render()):
            sheet.paste(Image.fromarray(frame).resize((cell, cell), Image.NEAREST), (label_width + j * (cell + 2), y))
        x0 = label_width + max_frames * (cell + 2) + cell // 2
        for j, frame in enumerate(result["frames"]):
            sheet.paste(Image.fromarray(frame).resize((cell, cell), Image.NEAREST), (x0 + j * (cell + 2), y))
    sheet.save(path)


def run_demo(
    output_dir: str = "demo_output",
    max_steps: int = DEFAULT_MAX_STEPS,
    time_budget: float = DEFAULT_TIME_CAP,
    seed: int = 0,
    backbone: str = "lstm",
    hidden_size: int = 128,
    embed_size: int = 126,
    num_layers: int = 1,
    batch_size: int = 4,
    learning_rate: float = 8e-3,
    change_token_weight: float = 1.0,
    novel_pixel_weight: float = 10.0,
    grid_position_size: int = 16,
    caption_memory_buckets: int = 512,
    caption_memory_cell_frames: int | None = None,
    train_eval_samples: int = 32,
    threads: int | None = None,
    quick: bool = False,
) -> dict[str, Any]:
    """Train, save, generate, evaluate; returns (and writes) the metrics. See the module docstring.

    ``caption_memory_cell_frames=None`` means 4 when the caption memory and the grid positions are on, else 0; a
    value > 0 without both is a ``ValueError`` (it is never silently dropped)."""
    from .data.synthetic import DEMO_TOKENIZER_KWARGS, demo_samples, make_demo_split
    from .evaluation.sprites import score_sprites

    caption_memory_cell_frames = resolve_cell_frames(
        caption_memory_cell_frames, caption_memory_buckets, grid_position_size
    )
    if max_steps < 1 or not time_budget > 0:
        raise ValueError(f"max_steps must be >= 1 and time_budget > 0, got {max_steps} and {time_budget}")
    args = argparse.Namespace(**{k: v for k, v in locals().items() if k != "score_sprites"})
    torch.set_num_threads(threads or _default_threads())
    torch.manual_seed(seed)
    out = Path(output_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    total_start = time.perf_counter()

    tokenizer = ActionPixelBytesTokenizer(**DEMO_TOKENIZER_KWARGS)
    train_specs, heldout_specs = make_demo_split(seed=seed)
    if quick:
        train_specs, heldout_specs = train_specs[::28], heldout_specs[::8]
        args.max_steps = min(max_steps, 4)
        train_eval_samples = min(train_eval_samples, 4)
    store = _tokenize(demo_samples(train_specs, tokenizer.sampling_rate), tokenizer)
    config = PxByConfig.from_tokenizer(
        tokenizer,
        backbone=backbone,
        embed_size=embed_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        change_token_weight=change_token_weight,
        novel_pixel_weight=novel_pixel_weight,
        grid_position_size=grid_position_size,
        caption_memory_buckets=caption_memory_buckets,
        caption_memory_cell_frames=caption_memory_cell_frames,
    )
    model = PxBySequenceModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("demo: %d training / %d held-out captions, model %s parameters, %d torch thread(s)",
                len(train_specs), len(heldout_specs), f"{n_params:,}", torch.get_num_threads())  # fmt: skip
    training_seconds, train_stats = _train(model, tokenizer, store, args, out)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")

    # the same training captions on every run of a seed (str hashes change from one process to the next)
    train_eval = sorted(random.Random(seed).sample(train_specs, min(train_eval_samples, len(train_specs))))
    audio_steps = math.ceil(train_specs[0].sound(tokenizer.sampling_rate).shape[-1] / tokenizer.audio_stride)
    generated_train = _generate(model, tokenizer, train_eval, batch_size, audio_steps)
    generated_heldout = _generate(model, tokenizer, heldout_specs, batch_size, audio_steps)

    train_scores = score_sprites(zip(train_eval, (r["frames"] for r in generated_train)))
    heldout_scores = score_sprites(zip(heldout_specs, (r["frames"] for r in generated_heldout)))
    for spec, result in zip(heldout_specs, generated_heldout):
        stem = spec.caption.replace(" ", "_")
        frames = [Image.fromarray(f) for f in result["frames"]]
        frames[0].save(out / "samples" / f"{stem}.gif", save_all=True, append_images=frames[1:], duration=200, loop=0)
        if result["audio"] is not None and result["audio"].shape[-1]:
            from .codecs import save_wav

            save_wav(
                out / "samples" / f"{stem}.wav", result["audio"], tokenizer.sampling_rate // tokenizer.audio_stride
            )
    _contact_sheet(heldout_specs + train_eval, generated_heldout + generated_train, out / "contact_sheet.png")

    metrics: dict[str, Any] = {
        "training_seconds": round(training_seconds, 1),
        "total_seconds": None,
        "parameters": n_params,
        **train_stats,
        "train_captions": len(train_eval),
        "heldout_captions": len(heldout_specs),
    }
    for prefix, scores in (("train", train_scores), ("heldout", heldout_scores)):
        for key in ("pixel_accuracy", "mask_iou", "color_accuracy", "shape_accuracy", "exact_match",
                    "blank_pixel_accuracy"):  # fmt: skip
            metrics[f"{prefix}_{key}"] = round(scores[key], 4)
    metrics["heldout_color_accuracy_chance"] = heldout_scores["color_chance"]
    metrics["heldout_shape_accuracy_chance"] = heldout_scores["shape_chance"]
    metrics["pixel_accuracy_chance_note"] = "blank_pixel_accuracy = score of an all-background sprite"
    metrics["goals"] = {key: {"minimum": minimum, "value": metrics[key], "met": metrics[key] >= minimum}
                        for key, minimum in DEMO_GOALS.items()}  # fmt: skip
    metrics["all_goals_met"] = all(goal["met"] for goal in metrics["goals"].values())
    metrics["total_seconds"] = round(time.perf_counter() - total_start, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    try:  # model/README.md + eval_results.json (held-out metrics): needs the hub extra (huggingface_hub, jinja2)
        from .hub.demo_card import write_demo_card

        write_demo_card(model, tokenizer, out, metrics, vars(args))
    except ImportError as err:
        logger.warning("demo: no model card written (%s): install pixelbytes[hub]", err)
    _print_table(metrics, out)
    return metrics


def _print_table(metrics: dict[str, Any], out: Path) -> None:
    rows = [
        ("pixel accuracy (all-background baseline)", "pixel_accuracy", "blank_pixel_accuracy"),
        ("foreground mask IoU", "mask_iou", None),
        ("colour correct (chance 1/8)", "color_accuracy", None),
        ("shape correct (chance 1/8)", "shape_accuracy", None),
        ("exact match", "exact_match", None),
    ]
    capped = f", stopped by the {metrics['time_cap_seconds']:g} s time cap" if metrics["time_cap_hit"] else ""
    print(
        f"\ntrained {metrics['train_steps']} of {metrics['max_steps']} steps in {metrics['training_seconds']} s"
        f"{capped} (final loss {metrics['train_loss']:.3f}); total {metrics['total_seconds']} s"
    )
    print(f"{'metric':<44}{'train captions':>16}{'held-out pairs':>16}")
    for name, key, baseline in rows:
        cells = []
        for prefix in ("train", "heldout"):
            value = f"{metrics[f'{prefix}_{key}']:.3f}"
            if baseline:
                value += f" ({metrics[f'{prefix}_{baseline}']:.2f})"
            cells.append(value)
        print(f"{name:<44}{cells[0]:>16}{cells[1]:>16}")
    goals = ", ".join(f"{key} {goal['value']:.3f} >= {goal['minimum']:g}: {'met' if goal['met'] else 'NOT met'}"
                      for key, goal in metrics["goals"].items())  # fmt: skip
    print(f"goals: {goals}")
    print(f"\nwrote {out / 'metrics.json'}, {out / 'contact_sheet.png'}, {out / 'model'} and {out / 'samples'}")

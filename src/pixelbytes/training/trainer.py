"""Training with ``transformers.Trainer``: arguments, dataset building, model creation, one entry point.

``run_training(model_args, data_args, training_args)`` does what ``pixelbytes train`` does: tokenise the data
(cached Arrow store), cut windows, split train / validation with a seed, build (or continue) the model,
train with evaluation every N steps, checkpoints / resume / best-model selection from ``TrainingArguments``,
and save model + tokenizer. It runs unchanged under ``accelerate launch`` / ``torchrun``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from ..configuration_pixelbytes import PxByConfig
from ..data.stateful import PxByStatefulCollator, PxByStatefulWindowDataset
from ..data.windows import PxByDataCollator, PxByWindowDataset
from ..data.windows import _check_window_args as check_window_args
from ..modeling_pixelbytes import PxBySequenceModel
from ..tokenization_pixelbytes import ActionPixelBytesTokenizer
from ..vocabulary import control_vocabulary, default_vocabulary, v1_vocabulary
from .metrics import make_compute_metrics, preprocess_logits_for_metrics
from .stateful import PxByStatefulTrainer, check_stateful_model

logger = logging.getLogger(__name__)

__all__ = ["DataArguments", "ModelArguments", "TimeBudgetCallback", "build_trainer", "run_training"]


@dataclass
class ModelArguments:
    """Model options of ``pixelbytes train`` (ignored, except ``model_name_or_path``, when continuing)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Saved / converted model directory or Hub id to continue from."}
    )
    backbone: str = field(default="lstm", metadata={"help": "lstm, mamba or attention."})
    embedding: str = field(default="pxby6", metadata={"help": "pxby6, window3x3 or center."})
    embed_size: int = field(default=126, metadata={"help": "Embedding width (divisible by 6 for pxby6)."})
    hidden_size: int = field(default=512, metadata={"help": "Backbone output width."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Number of recurrent layers."})
    objective: str = field(
        default="next_token", metadata={"help": "next_token, context (6-slot) or diffusion (needs --bidirectional)."}
    )
    bidirectional: bool = field(
        default=False, metadata={"help": "Bidirectional backbone (needed by diffusion; a window encoder otherwise)."}
    )
    diffusion_scheme: str = field(
        default="masked", metadata={"help": "Diffusion: masked (absorbing mask id) or embedding_noise (original)."}
    )
    num_diffusion_steps: int = field(default=5, metadata={"help": "Diffusion: infill steps / noise levels."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout between recurrent layers."})
    change_token_weight: float = field(
        default=1.0, metadata={"help": "Loss weight of targets that differ from the previous token."}
    )
    novel_pixel_weight: float = field(
        default=1.0,
        metadata={"help": "Loss weight of pixels equal to none of their neighbours (where shapes start)."},
    )
    grid_position_size: int = field(
        default=0,
        metadata={"help": "Embed where each next token lands (kind, frame, row, column clamped to this); 0 = off."},
    )
    caption_memory_buckets: int = field(
        default=0,
        metadata={"help": "Add the latest text's hashed byte trigrams (this many buckets) to every input; 0 = off."},
    )
    caption_memory_cell_frames: int = field(
        default=0,
        metadata={"help": "Modulate the caption memory per grid cell of this many frames (needs the two options "
                  "above); 0 = off."},
    )


@dataclass
class DataArguments:
    """Data options of ``pixelbytes train``."""

    dataset: str = field(
        default="demo",
        metadata={"help": "'demo' (embedded synthetic sprites), a folder with metadata.jsonl, a .parquet/.arrow "
                  "file or a Hub dataset id (e.g. ffurfaro/PixelBytes-PokemonAll)."},
    )  # fmt: skip
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub / parquet dataset."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Samples held out for evaluation."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the train / validation split."})
    max_samples: int | None = field(default=None, metadata={"help": "Use only the first N samples."})
    seq_length: int = field(default=1024, metadata={"help": "Window length in tokens."})
    stride: int = field(default=512, metadata={"help": "Distance between window starts (<= seq_length - 1)."})
    image_stride: int = field(default=1, metadata={"help": "Tokenizer: keep every n-th image row / column."})
    frame_stride: int | None = field(default=None, metadata={"help": "Tokenizer: keep every n-th frame."})
    audio_stride: int = field(default=1, metadata={"help": "Tokenizer: keep every n-th audio time step."})
    audio_normalization: str = field(default="minmax", metadata={"help": "minmax, zscore or none."})
    vocabulary: str = field(
        default="default",
        metadata={"help": "Token tables of a new tokenizer: 'default' (the published 151 ids), 'control' (the "
                  "control experiments: bytes 0/1, 5 colours, 141 action levels) or 'v1' (113 ids, no levels)."},
    )  # fmt: skip
    tokenized_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where to keep the tokenised Arrow store, reused only while the data files, tokenizer "
                  "settings, vocabulary and pixelbytes version are unchanged (default: tokenise in memory)."},
    )  # fmt: skip
    strict: bool = field(
        default=False,
        metadata={"help": "Stop on the first unusable item (a metadata.jsonl row of the wrong type or naming a "
                  "missing file, a corrupt image / sound) instead of skipping it with a warning."},
    )  # fmt: skip
    stateful_windows: bool = field(
        default=False,
        metadata={"help": "Truncated BPTT for lstm / mamba: per_device_train_batch_size lanes each walk through "
                  "whole samples in consecutive, non-overlapping windows of seq_length, the backbone state carried "
                  "(detached) from one window to the next; validation windows too. --stride does not apply (leave "
                  "it at its default or set it to seq_length)."},
    )  # fmt: skip
    time_budget_seconds: float | None = field(
        default=None, metadata={"help": "Stop training after this many seconds (then evaluate and save)."}
    )


class TimeBudgetCallback(TrainerCallback):
    """Stops training once ``seconds`` have elapsed since ``on_train_begin`` (checked after every step);
    :attr:`hit` tells afterwards whether it did (before ``max_steps`` was reached)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = 0.0
        #: whether the budget stopped training before its last step
        self.hit = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.perf_counter()
        self.hit = False

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if time.perf_counter() - self.start >= self.seconds and not control.should_training_stop:
            control.should_training_stop = True
            self.hit = state.max_steps <= 0 or state.global_step < state.max_steps
        return control


def make_tokenizer(model_args: ModelArguments, data_args: DataArguments) -> ActionPixelBytesTokenizer:
    """The tokenizer saved with ``model_name_or_path`` when continuing, else one from the data options."""
    if model_args.model_name_or_path:
        return ActionPixelBytesTokenizer.from_pretrained(model_args.model_name_or_path)
    tables = {"default": default_vocabulary, "control": control_vocabulary, "v1": v1_vocabulary}
    if data_args.vocabulary not in tables:
        raise ValueError(f"--vocabulary must be one of {sorted(tables)}, got {data_args.vocabulary!r}")
    return ActionPixelBytesTokenizer(
        vocabulary=tables[data_args.vocabulary](),
        image_stride=data_args.image_stride,
        frame_stride=data_args.frame_stride,
        audio_stride=data_args.audio_stride,
        audio_normalization=data_args.audio_normalization,
    )


def make_model(model_args: ModelArguments, tokenizer: ActionPixelBytesTokenizer) -> PxBySequenceModel:
    """Continue from ``model_name_or_path`` (checked against the tokenizer) or build a fresh model."""
    if model_args.model_name_or_path:
        model = PxBySequenceModel.from_pretrained(model_args.model_name_or_path)
        model.config.check_tokenizer(tokenizer)
        return model
    config = PxByConfig.from_tokenizer(
        tokenizer,
        backbone=model_args.backbone,
        embedding=model_args.embedding,
        embed_size=model_args.embed_size,
        hidden_size=model_args.hidden_size,
        num_hidden_layers=model_args.num_hidden_layers,
        objective=model_args.objective,
        bidirectional=model_args.bidirectional,
        diffusion_scheme=model_args.diffusion_scheme,
        num_diffusion_steps=model_args.num_diffusion_steps,
        dropout=model_args.dropout,
        change_token_weight=model_args.change_token_weight,
        novel_pixel_weight=model_args.novel_pixel_weight,
        grid_position_size=model_args.grid_position_size,
        caption_memory_buckets=model_args.caption_memory_buckets,
        caption_memory_cell_frames=model_args.caption_memory_cell_frames,
    )
    return PxBySequenceModel(config)


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_eval = math.ceil(n * fraction) if fraction > 0 and n > 1 else 0
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


def check_data_arguments(data_args: DataArguments) -> None:
    """``ValueError`` (one line) for window / sample arguments that cannot work: ``seq_length >= 2``,
    ``1 <= stride <= seq_length - 1`` (with ``stateful_windows``: ``stride`` at its default or ``== seq_length``),
    ``max_samples >= 1``."""
    if data_args.stateful_windows:
        _check_stateful_stride(data_args.seq_length, data_args.stride)
    else:
        check_window_args(data_args.seq_length, data_args.stride)
    n = data_args.max_samples
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"max_samples must be a positive integer, got {n!r}")


def _check_stateful_stride(seq_length: int, stride: int) -> None:
    """Stateful windows are consecutive: a ``stride`` other than the default or ``seq_length`` would be ignored,
    which is an error. (The default cannot be told apart from the same value typed explicitly.)"""
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 2:
        raise ValueError(f"seq_length must be an integer >= 2, got {seq_length!r}")
    default = DataArguments.__dataclass_fields__["stride"].default
    if stride not in (default, seq_length):
        raise ValueError(
            f"--stride {stride} does not apply to --stateful_windows (consecutive windows): leave it unset or set it "
            f"to seq_length ({seq_length})"
        )


def build_window_datasets(
    data_args: DataArguments,
    tokenizer: ActionPixelBytesTokenizer,
    position_layout: tuple[np.ndarray, int] | None = None,
    caption_memory_classes: np.ndarray | None = None,
) -> tuple[PxByWindowDataset, PxByWindowDataset | None]:
    """Tokenised train / validation window datasets for ``data_args.dataset`` (with ``grid_positions`` when
    ``position_layout`` is given and ``caption_prefix_ids`` when ``caption_memory_classes`` are, see
    :class:`PxByWindowDataset`). The window arguments are checked and ``max_samples`` applied before any
    tokenising."""
    check_data_arguments(data_args)
    if data_args.dataset == "demo":
        from ..data.synthetic import demo_samples, make_demo_split

        train_specs, _ = make_demo_split(seed=data_args.split_seed)
        rows = demo_samples(train_specs, sampling_rate=tokenizer.sampling_rate)
        if data_args.max_samples is not None:
            rows = rows[: data_args.max_samples]
        store = _tokenize_rows(rows, tokenizer)
        lengths = [len(row["input_ids"]) for row in store]
    else:
        from ..data.loading import load_samples, stream_lengths, tokenization_fingerprint, tokenize_samples

        raw = load_samples(data_args.dataset, split=data_args.dataset_split, strict=data_args.strict)
        if data_args.max_samples is not None:  # select the rows first: only those are tokenised
            raw = _take(raw, data_args.max_samples)
        cache = None
        if data_args.tokenized_cache_dir:
            os.makedirs(data_args.tokenized_cache_dir, exist_ok=True)
            key = tokenization_fingerprint(raw, tokenizer)
            cache = os.path.join(data_args.tokenized_cache_dir, f"tokenized-{key}.arrow")
        store = tokenize_samples(raw, tokenizer, cache_file_name=cache, strict=data_args.strict)
        lengths = stream_lengths(store)
    train_idx, eval_idx = _split(len(lengths), data_args.validation_fraction, data_args.split_seed)
    if data_args.stateful_windows:
        return _stateful_datasets(store, lengths, train_idx, eval_idx, data_args, position_layout,
                                  caption_memory_classes)  # fmt: skip
    train = PxByWindowDataset(_Subset(store, train_idx), [lengths[i] for i in train_idx], data_args.seq_length,
                              data_args.stride, position_layout, caption_memory_classes)  # fmt: skip
    evaluation = None
    if len(eval_idx):
        evaluation = PxByWindowDataset(_Subset(store, eval_idx), [lengths[i] for i in eval_idx],
                                       data_args.seq_length, data_args.stride, position_layout,
                                       caption_memory_classes)  # fmt: skip
    logger.info("%d training windows, %d validation windows", len(train), len(evaluation or []))
    return train, evaluation


def _stateful_datasets(
    store: Any,
    lengths: list[int],
    train_idx: np.ndarray,
    eval_idx: np.ndarray,
    data_args: DataArguments,
    position_layout: tuple[np.ndarray, int] | None,
    caption_memory_classes: np.ndarray | None,
) -> tuple[PxByStatefulWindowDataset, PxByStatefulWindowDataset | None]:
    """:func:`build_window_datasets` with ``stateful_windows``: consecutive windows for training and validation."""

    def build(indices: np.ndarray) -> PxByStatefulWindowDataset:
        return PxByStatefulWindowDataset(_Subset(store, indices), [lengths[i] for i in indices],
                                         data_args.seq_length, position_layout, caption_memory_classes)  # fmt: skip

    train, evaluation = build(train_idx), (build(eval_idx) if len(eval_idx) else None)
    logger.info("stateful windows: %d training, %d validation", len(train), len(evaluation or []))
    return train, evaluation


def _tokenize_rows(rows: list[dict[str, Any]], tokenizer: ActionPixelBytesTokenizer) -> list[dict[str, np.ndarray]]:
    store = []
    for row in rows:
        enc = tokenizer(text=row.get("text"), images=row.get("image"), audio=row.get("audio"),
                        return_context_ids=True, return_tensors="np")  # fmt: skip
        store.append({"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]})
    return store


def _take(store: Any, n: int) -> Any:
    return store[:n] if isinstance(store, list) else store.select(range(min(n, len(store))))


class _Subset:
    """Index view over a sample store (list or ``datasets.Dataset``)."""

    def __init__(self, store: Any, indices: np.ndarray) -> None:
        self.store, self.indices = store, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.store[self.indices[i]]


def build_trainer(
    model: PxBySequenceModel,
    tokenizer: ActionPixelBytesTokenizer,
    training_args: TrainingArguments,
    train_dataset: PxByWindowDataset,
    eval_dataset: PxByWindowDataset | None = None,
    callbacks: list[TrainerCallback] | None = None,
    optimizers: tuple[Any, Any] = (None, None),
) -> Trainer:
    """A ``Trainer`` wired for PixelBytes windows: collator, metrics (per modality, 6-slot for context).
    ``optimizers`` = ``(optimizer, lr_scheduler)`` as for ``Trainer`` (``None`` = built from ``training_args``).
    Stateful windows (a :class:`~pixelbytes.data.stateful.PxByStatefulWindowDataset`) get the
    :class:`~pixelbytes.training.stateful.PxByStatefulTrainer` and its collator."""
    training_args.remove_unused_columns = False
    config = model.config
    if config.objective == "context":
        training_args.label_names = ["labels", "context_ids"]
    else:
        training_args.label_names = ["labels"]
    diffusion = config.objective == "diffusion"
    # diffusion: the model masks / noises each batch itself (random per batch, see PxBySequenceModel's
    # diffusion_generator); masked diffusion derives its contexts from the masked stream, so the collator leaves
    # them out. Its shifted next-token metrics would be meaningless: evaluation reports the denoising eval_loss.
    collator = PxByDataCollator(include_context_ids=not (diffusion and config.diffusion_scheme == "masked"))
    trainer_class = Trainer
    if isinstance(train_dataset, PxByStatefulWindowDataset):
        trainer_class, collator = PxByStatefulTrainer, PxByStatefulCollator()
    return trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=None if diffusion else make_compute_metrics(tokenizer.token_classes, config.objective),
        preprocess_logits_for_metrics=None if diffusion else preprocess_logits_for_metrics,
        callbacks=callbacks,
        optimizers=optimizers,
    )


def resume_argument(value: str | bool | None) -> str | bool | None:
    """``--resume_from_checkpoint`` as ``Trainer.train`` takes it: the strings ``"true"`` / ``"false"`` (any case,
    as typed on the command line or in a YAML file) become ``True`` (the latest checkpoint in ``output_dir``) and
    ``None``; a path is kept."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return True if value.strip().lower() == "true" else None
    return value


def run_training(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict[str, Any]:
    """Train (or continue training) and save model + tokenizer to ``training_args.output_dir``.

    Also written at the ``output_dir`` root, for ``pixelbytes card`` / ``publish``: ``trainer_state.json`` (the
    log history), ``training_summary.json`` (the configured hyper-parameters: initial learning rate, batch size,
    accumulation, max steps / epochs, seed, data sizes) and, when a validation split exists, ``eval_results.json``
    (the final validation metrics in the schema of :mod:`pixelbytes.hub.eval_results`).

    Returns the train metrics and, when a validation split exists, the final evaluation metrics.
    """
    tokenizer = make_tokenizer(model_args, data_args)
    set_seed(training_args.seed)  # the model's initial weights depend on it
    model = make_model(model_args, tokenizer)
    if data_args.stateful_windows:
        check_stateful_model(model)  # before any tokenising
    train_dataset, eval_dataset = build_window_datasets(
        data_args, tokenizer, model.position_layout(), model.caption_memory_classes()
    )
    if len(train_dataset) == 0:
        raise ValueError("no training windows: the dataset is empty after tokenisation")
    if eval_dataset is None and training_args.eval_strategy != "no":
        logger.warning("no validation split (validation_fraction=0): evaluation disabled")
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    callbacks = [TimeBudgetCallback(data_args.time_budget_seconds)] if data_args.time_budget_seconds else None
    trainer = build_trainer(model, tokenizer, training_args, train_dataset, eval_dataset, callbacks)
    result = trainer.train(resume_from_checkpoint=resume_argument(training_args.resume_from_checkpoint))
    trainer.save_model()
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)
    metrics: dict[str, Any] = dict(result.metrics)
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    trainer.log_metrics("final", metrics)
    trainer.save_metrics("final", metrics)
    trainer.save_state()  # trainer_state.json (log history, steps) at the output_dir root, for the model card
    if trainer.is_world_process_zero():
        _write_training_records(trainer, data_args, train_dataset, eval_dataset, metrics)
    return metrics


def _training_summary(
    trainer: Trainer, data_args: DataArguments, train_dataset: PxByWindowDataset, eval_dataset: PxByWindowDataset | None
) -> dict[str, Any]:
    """The hyper-parameters a model card reports, as configured (``TrainingArguments``), not as logged: the log
    history only holds the scheduled learning rate at each logging step, never the initial one."""
    args, state = trainer.args, trainer.state
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return {
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_steps": args.warmup_steps,
        "weight_decay": args.weight_decay,
        "optimizer": str(getattr(args.optim, "value", args.optim)),
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "total_train_batch_size": (
            args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        ),
        "max_steps": args.max_steps if args.max_steps > 0 else None,
        "num_train_epochs": args.num_train_epochs if args.max_steps <= 0 else None,
        "global_step": state.global_step,
        "epoch": state.epoch,
        "seed": args.seed,
        "precision": precision,
        "dataset": data_args.dataset,
        "seq_length": data_args.seq_length,
        "stride": data_args.stride,
        "train_samples": _num_samples(train_dataset),
        "train_windows": len(train_dataset),
        "validation_samples": _num_samples(eval_dataset),
        "validation_windows": len(eval_dataset) if eval_dataset is not None else 0,
    }


def _num_samples(dataset: Any) -> int | None:
    """Samples (not windows) behind a window dataset; 0 for no dataset, ``None`` when it does not say."""
    if dataset is None:
        return 0
    samples = getattr(dataset, "samples", None)
    return len(samples) if samples is not None else None


def _write_training_records(
    trainer: Trainer,
    data_args: DataArguments,
    train_dataset: PxByWindowDataset,
    eval_dataset: PxByWindowDataset | None,
    metrics: dict[str, Any],
) -> None:
    """Write, at the ``output_dir`` root, ``training_summary.json`` (:func:`_training_summary`) and, when a
    validation split exists, ``eval_results.json`` in the shared schema (:mod:`pixelbytes.hub.eval_results`): the
    final validation metrics with the ``eval_`` prefix stripped and the Trainer bookkeeping dropped."""
    import json

    from ..hub.eval_results import TRAINING_SUMMARY_NAME, make_eval_results, metrics_from_trainer, write_eval_results

    output_dir = trainer.args.output_dir
    summary = _training_summary(trainer, data_args, train_dataset, eval_dataset)
    path = os.path.join(output_dir, TRAINING_SUMMARY_NAME)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    validation = metrics_from_trainer(metrics)
    if eval_dataset is None or not validation:
        logger.info("no validation metrics: %s not written", "eval_results.json")
        return
    results = make_eval_results(
        validation,
        model=output_dir,
        dataset=data_args.dataset,
        split="validation",
        num_items=_num_samples(eval_dataset),
        runtime_seconds=metrics.get("eval_runtime"),
    )
    write_eval_results(output_dir, results)

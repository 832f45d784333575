"""``pixelbytes evaluate``: score a model on held-out items, beside general-purpose codecs of the same tokens.

:func:`run_evaluation` loads the model and its tokenizer (checking that their vocabularies match), loads and
tokenises the data (a folder with ``metadata.jsonl``, a parquet / arrow file, a pre-tokenised parquet written by
``pixelbytes tokenize``, or a Hub dataset id), selects the split, and then — every input checked before any long
work starts — scores whole items (:mod:`.scoring`), compresses the same tokens (:mod:`.baselines`), runs the
papers' protocols (:mod:`.protocols`) and draws the figures (:mod:`.figures`). It writes ``eval_results.json``
(the schema the model card reads), ``evaluation_report.md`` and PNG figures into the output directory.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList

from ..hub.eval_results import write_eval_results
from ..vocabulary import ROW_ID
from .baselines import codec_baselines
from .protocols import table2_accuracies, v1_table1
from .scoring import MODALITY_UNITS, check_scorable, score_streams

logger = logging.getLogger(__name__)

__all__ = ["EvaluationOptions", "format_table", "run_evaluation"]

SPLITS = ("validation", "test", "all")
PROTOCOLS = ("scores", "codecs", "v1", "figures")


@dataclass
class EvaluationOptions:
    """Options of ``pixelbytes evaluate`` (see its ``--help``)."""

    model: str
    data: str
    split: str = "validation"
    output_dir: str | None = None
    data_slicing: int | dict[str, int] | None = None
    validation_fraction: float = 0.1
    split_seed: int = 42
    max_items: int | None = None
    chunk_length: int = 2048
    batch_size: int = 8
    protocols: tuple[str, ...] = PROTOCOLS
    v1_max_segments: int | None = 512
    figure_items: int = 4
    device: str | None = None
    tokenized_cache_dir: str | None = None
    dataset_name: str | None = None  # the name results and cards give the data (default: ``data`` as given)


def _check_options(options: EvaluationOptions) -> None:
    if options.split not in SPLITS:
        raise ValueError(f"unknown split {options.split!r}: choose validation, test or all")
    unknown = set(options.protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocol(s) {sorted(unknown)}: choose among {', '.join(PROTOCOLS)}")
    if not 0.0 < options.validation_fraction < 1.0 and options.split == "validation":
        raise ValueError(f"validation_fraction must be in (0, 1) for the validation split, got "
                         f"{options.validation_fraction}")  # fmt: skip
    if options.max_items is not None and options.max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {options.max_items}")


def load_model_and_tokenizer(model_path: str, data_slicing: Any = None, device: str | None = None) -> tuple[Any, Any]:
    """The model (eval mode, on ``device``) and its tokenizer, with ``data_slicing`` overriding the tokenizer's
    strides; a tokenizer whose vocabulary differs from the model's is a ``ValueError``."""
    from ..modeling_pixelbytes import PxBySequenceModel
    from ..tokenization_pixelbytes import ActionPixelBytesTokenizer

    model = PxBySequenceModel.from_pretrained(model_path).eval()
    kwargs = {} if data_slicing is None else {"data_slicing": data_slicing}
    tokenizer = ActionPixelBytesTokenizer.from_pretrained(model_path, **kwargs)
    model.config.check_vocabulary(tokenizer.vocabulary, source=f"the tokenizer of {model_path}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device), tokenizer


def _select_split(options: EvaluationOptions, tokenizer: Any) -> tuple[list[np.ndarray], int]:
    """The token streams of the chosen split and the number of rows it was chosen from."""
    from ..data.loading import load_samples, stream_lengths, tokenization_fingerprint, tokenize_samples
    from ..training.trainer import _split

    source_split = "test" if options.split == "test" else "train"
    path = Path(options.data)
    if options.split == "test" and path.is_dir():
        raise ValueError(f"{options.data} is a folder: it has no test split (use --split validation or all)")
    raw = load_samples(options.data, split=source_split)
    if len(raw) == 0:
        raise ValueError(f"{options.data}: the {source_split} split is empty")
    cache = None
    if options.tokenized_cache_dir:
        Path(options.tokenized_cache_dir).mkdir(parents=True, exist_ok=True)
        cache = str(Path(options.tokenized_cache_dir) / f"tokenized-{tokenization_fingerprint(raw, tokenizer)}.arrow")
    store = tokenize_samples(raw, tokenizer, cache_file_name=cache)
    n = len(stream_lengths(store))
    if options.split == "validation":
        _, chosen = _split(n, options.validation_fraction, options.split_seed)
    else:
        chosen = np.arange(n)
    if options.max_items is not None:
        chosen = chosen[: options.max_items]
    if len(chosen) == 0:
        raise ValueError(
            f"the {options.split} split of {options.data} is empty ({n} usable item(s), validation_fraction "
            f"{options.validation_fraction})"
        )
    streams = [np.asarray(store[int(i)]["input_ids"], dtype=np.int64) for i in chosen]
    return streams, n


def _progress(total: int, desc: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True)


def _sprite_rows(model: Any, tokenizer: Any, streams: list[np.ndarray], count: int) -> list[tuple[Any, Any]]:
    """(reference, generated) first frames: the model completes the bottom half of each item's first frame from
    everything before it (caption, top rows), greedily, in the frame's shape (``ImageGridLogitsProcessor``
    continuing after a row separator) — the papers' Figure 3."""
    from ..generation_pixelbytes import ImageGridLogitsProcessor
    from ..layout import IMAGE, stream_blocks

    classes = tokenizer.token_classes
    rows = []
    for stream in streams:
        if len(rows) == count:
            break
        blocks = [b for b in stream_blocks(classes[stream], tokenizer.audio_channels) if b[2] == IMAGE]
        if not blocks:
            continue
        start, end = blocks[0][0], blocks[0][1]
        frame_end = start + int(np.flatnonzero(stream[start:end] == tokenizer.sep_token_id)[0]) + 1
        row_ends = start + np.flatnonzero(stream[start:frame_end] == ROW_ID)  # (height - 1,)
        if len(row_ends) == 0:
            continue  # a one-row frame has no top half to continue
        height, width = len(row_ends) + 1, int(row_ends[0] - start)
        top = (height + 1) // 2  # rows given: the top half, rounded up
        cut = int(row_ends[top - 1]) + 1  # just after the row separator of the top half's last row
        processor = ImageGridLogitsProcessor(classes, height - top, width, prompt_length=cut)
        prompt = torch.from_numpy(stream[None, :cut]).to(model.device)
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=processor.length,
                                 min_new_tokens=processor.length, logits_processor=LogitsProcessorList([processor]),
                                 do_sample=False)  # fmt: skip
        reference = tokenizer.decode_multimodal(stream[:frame_end]).frames
        generated = tokenizer.decode_multimodal(out[0].cpu().numpy()).frames
        if reference and generated:
            rows.append((np.asarray(reference[0].convert("RGB")), np.asarray(generated[0].convert("RGB"))))
    return rows


def format_table(results: dict[str, Any]) -> str:
    """The Markdown table of ``eval_results.json``: per modality, the model's bits per unit, accuracy and
    perplexity beside every codec's bits per unit."""
    metrics, baselines = results.get("metrics", {}), results.get("baselines", {})
    codecs = [c for c in ("xz", "gif", "png", "flac") if c in baselines]
    header = ["modality", "model bits/unit", "accuracy", "perplexity", *[f"{c} bits/unit" for c in codecs]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, (_kind, _cls, unit) in MODALITY_UNITS.items():
        key = f"{name}_bits_per_{unit}"
        if key not in metrics:
            continue
        row = [f"{name} (per {unit})", f"{metrics[key]:.3f}", f"{metrics[f'{name}_accuracy']:.3f}",
               f"{metrics[f'{name}_perplexity']:.2f}"]  # fmt: skip
        row += [f"{baselines[c][key]:.3f}" if key in baselines[c] else "–" for c in codecs]
        lines.append("| " + " | ".join(row) + " |")
    if "bits_per_token" in metrics:
        overall = ["all tokens (per token)", f"{metrics['bits_per_token']:.3f}", f"{metrics['accuracy']:.3f}",
                   f"{metrics['perplexity']:.2f}", *["–"] * len(codecs)]  # fmt: skip
        lines.append("| " + " | ".join(overall) + " |")
    return "\n".join(lines)


def _report(results: dict[str, Any]) -> str:
    data = results["dataset"]
    parts = [
        f"# Evaluation of `{results['model']}`",
        "",
        f"Data: `{data['name']}`, split `{data['split']}` ({data['num_items']} items, {data['num_tokens']:,} tokens); "
        f"{results['runtime_seconds']:.0f} s on {results['machine']}.",
        "",
    ]
    if results.get("metrics") or results.get("baselines"):
        parts += ["## Bits per unit (lower is better)", "", format_table(results), ""]
    if "context_accuracy" in results.get("metrics", {}):
        parts += [f"6-slot accuracy (v2 Table 2's figure): {results['metrics']['context_accuracy']:.4f}; slot-5 "
                  f"(next token): {results['metrics']['accuracy']:.4f}.", ""]  # fmt: skip
    v1 = {name.removeprefix("v1_table1_"): row for name, row in results.get("protocols", {}).items()
          if name.startswith("v1_table1_")}  # fmt: skip
    if v1:
        parts += ["## v1 Table 1 protocol (64 tokens → 16 greedy steps)", "",
                  "| variant | segments | Hamming ↓ | cosine ↑ | BLEU ↑ |", "|---|---|---|---|---|"]  # fmt: skip
        for variant, row in v1.items():
            cells = [f"{row[m][0]:.3f} ± {row[m][1]:.3f}" for m in ("hamming", "cosine", "bleu")]
            parts.append(f"| {variant} | {int(row['segments'][0])} | " + " | ".join(cells) + " |")
        parts.append("")
    for name, path in results.get("figures", {}).items():
        parts += [f"![{name}]({path})", ""]
    return "\n".join(parts)


def run_evaluation(options: EvaluationOptions) -> dict[str, Any]:
    """Evaluate (see the module docstring); returns the ``eval_results.json`` content."""
    _check_options(options)
    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(options.model, options.data_slicing, options.device)
    if "scores" in options.protocols:
        check_scorable(model)  # before the data is read
    streams, num_rows = _select_split(options, tokenizer)
    out_dir = Path(options.output_dir or options.model)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_tokens = int(sum(len(s) for s in streams))
    logger.info("evaluating %d items (%d tokens) of %s", len(streams), num_tokens, options.data)
    results: dict[str, Any] = {
        "model": options.model,
        "dataset": {
            "name": options.dataset_name or options.data, "split": options.split, "num_items": len(streams),
            "num_tokens": num_tokens, "source_rows": num_rows, "split_seed": options.split_seed,
            "validation_fraction": options.validation_fraction, "tokenizer": tokenizer.encoding_settings,
        },
        "metrics": {},
    }  # fmt: skip
    if "scores" in options.protocols:
        with _progress(num_tokens, "Scoring", "tok") as bar:
            scores = score_streams(model, streams, options.chunk_length, options.batch_size, progress=bar.update)
        results["metrics"] = scores.metrics()
        results["protocols"] = {"v2_table2": table2_accuracies(results["metrics"])}
    if "codecs" in options.protocols:
        rate = max(1, tokenizer.sampling_rate // tokenizer.audio_stride)
        results["baselines"] = codec_baselines(streams, tokenizer.vocabulary, tokenizer.audio_channels, rate).metrics()
    if "v1" in options.protocols:
        total = sum(-(-len(s) // 80) for s in streams)
        total = min(total, options.v1_max_segments or total)
        with _progress(total, "v1 Table 1", "seg") as bar:
            table = v1_table1(model, streams, max_segments=options.v1_max_segments, progress=bar.update)
        for variant, row in table.items():  # flat, as the model card lists protocols
            results.setdefault("protocols", {})[f"v1_table1_{variant}"] = row
    if "figures" in options.protocols:
        results["figures"] = _figures(model, tokenizer, streams, results, out_dir, options)
    results["runtime_seconds"] = time.perf_counter() - started
    device = str(model.device)
    if model.device.type == "cuda":
        device = torch.cuda.get_device_name(model.device)
    results["machine"] = f"{platform.machine()} {torch.get_num_threads()} threads, {device}"
    write_eval_results(out_dir, results)
    (out_dir / "evaluation_report.md").write_text(_report(results) + "\n")
    return results


def _figures(model: Any, tokenizer: Any, streams: list[np.ndarray], results: dict[str, Any], out_dir: Path,
             options: EvaluationOptions) -> dict[str, str]:  # fmt: skip
    """Draw the figures the results allow; returns ``{name: file name}`` (relative to ``out_dir``)."""
    from .figures import plot_modality_bars, plot_training_curves, sprite_grid

    figures: dict[str, str] = {}
    if results.get("metrics") and results.get("baselines"):
        plot_modality_bars(results, out_dir / "eval_bits_per_unit.png")
        figures["bits per unit, model vs codecs"] = "eval_bits_per_unit.png"
    state = Path(options.model) / "trainer_state.json"
    if state.is_file():
        try:
            plot_training_curves(state, out_dir / "training_curves.png")
            figures["training curves"] = "training_curves.png"
        except ValueError as err:  # a state without logged losses
            logger.warning("no training-curve figure: %s", err)
    if options.figure_items > 0 and model.config.is_causal and model.config.objective != "diffusion":
        rows = _sprite_rows(model, tokenizer, streams, options.figure_items)
        if rows:
            sprite_grid(rows, out_dir / "sprites_reference_vs_generated.png")
            figures["reference (left) vs generated (right) sprites"] = "sprites_reference_vs_generated.png"
    return figures

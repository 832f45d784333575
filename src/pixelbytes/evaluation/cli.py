"""``pixelbytes evaluate`` and ``pixelbytes tokenize`` (pre-tokenised data for machines without the raw files).

pixelbytes evaluate --model runs/pokemon --data ../shared/data/pokemon-train --split validation
pixelbytes tokenize --data ../shared/data/pokemon-train --data-slicing 2 --output pokemon-train-s2.parquet
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..cli import FlagParser, check_model_path, data_slicing

__all__ = ["evaluate_main", "tokenize_main"]

logger = logging.getLogger(__name__)


def evaluate_parser() -> argparse.ArgumentParser:
    from .runner import PROTOCOLS, SPLITS

    parser = FlagParser(prog="pixelbytes evaluate", description=(
        "Score a model on whole held-out items: bits per pixel / sample / character, accuracy and perplexity per "
        "modality, beside xz / GIF / PNG / FLAC of the same tokens, the papers' v1 Table 1 and v2 Table 2 "
        "protocols, and figures. Writes eval_results.json, evaluation_report.md and PNGs."))  # fmt: skip
    parser.add_argument("--model", required=True, help="saved model directory or Hub id (with its tokenizer)")
    parser.add_argument("--data", required=True, help="folder with metadata.jsonl, .parquet / .arrow, a "
                        "pre-tokenised .parquet (pixelbytes tokenize) or a Hub dataset id")  # fmt: skip
    parser.add_argument("--split", default="validation", choices=SPLITS,
                        help="validation: the seeded split training held out (default); test: the dataset's test "
                        "split; all: every item")  # fmt: skip
    parser.add_argument("--output-dir", help="where results go (default: the model directory, for its card)")
    parser.add_argument("--data-slicing", type=data_slicing, help="tokenizer strides N or IMAGE,AUDIO (default: "
                        "the model's tokenizer)")  # fmt: skip
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="as in training (default 0.1)")
    parser.add_argument("--split-seed", type=int, default=42, help="as in training (default 42)")
    parser.add_argument("--max-items", type=int, help="evaluate only the first N items of the split")
    parser.add_argument("--chunk-length", type=int, default=2048, help="tokens per forward step (state carried)")
    parser.add_argument("--batch-size", type=int, default=8, help="items scored together")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS),
                        help=f"comma-separated subset of {','.join(PROTOCOLS)} (default: all)")  # fmt: skip
    parser.add_argument("--v1-max-segments", type=int, default=512,
                        help="v1 Table 1: at most N segments (0 = all; 16 greedy steps each)")  # fmt: skip
    parser.add_argument("--figure-items", type=int, default=4, help="items in the sprite figure (0 = none)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--tokenized-cache-dir", help="keep the tokenised items here for the next run")
    parser.add_argument("--dataset-name", help="the data's name in eval_results.json and the card's model-index "
                        "(e.g. the Hub id of a dataset given as a local copy; default: --data as given)")
    return parser


def evaluate_main(argv: Sequence[str]) -> int:
    """``pixelbytes evaluate``: parse, check, run, print the table."""
    from .runner import EvaluationOptions, format_table, run_evaluation

    parser = evaluate_parser()
    args = parser.parse_args(argv)
    problem = check_model_path(args.model)
    if problem:
        parser.error(problem)
    options = EvaluationOptions(
        model=args.model, data=args.data, split=args.split, output_dir=args.output_dir,
        data_slicing=args.data_slicing, validation_fraction=args.validation_fraction, split_seed=args.split_seed,
        max_items=args.max_items, chunk_length=args.chunk_length, batch_size=args.batch_size,
        protocols=tuple(p.strip() for p in args.protocols.split(",") if p.strip()),
        v1_max_segments=args.v1_max_segments or None, figure_items=args.figure_items, device=args.device,
        tokenized_cache_dir=args.tokenized_cache_dir, dataset_name=args.dataset_name,
    )  # fmt: skip
    try:
        results = run_evaluation(options)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"pixelbytes evaluate: error: {err}", file=sys.stderr)
        return 2
    data = results["dataset"]
    print(f"{data['num_items']} items, {data['num_tokens']:,} tokens of {data['name']} ({data['split']}), "
          f"{results['runtime_seconds']:.0f} s on {results['machine']}")  # fmt: skip
    if results.get("metrics") or results.get("baselines"):
        print(format_table(results))
    for name, row in results.get("protocols", {}).items():
        if not name.startswith("v1_table1_"):
            continue
        print(f"v1 Table 1 ({name.removeprefix('v1_table1_')}, {int(row['segments'][0])} segments): " + ", ".join(
            f"{m} {row[m][0]:.3f} ± {row[m][1]:.3f}" for m in ("hamming", "cosine", "bleu")))  # fmt: skip
    if "context_accuracy" in results.get("metrics", {}):
        print(f"6-slot accuracy {results['metrics']['context_accuracy']:.4f} (slot 5: "
              f"{results['metrics']['accuracy']:.4f})")  # fmt: skip
    print(f"wrote {options.output_dir or options.model}/eval_results.json and evaluation_report.md")
    return 0


def tokenize_main(argv: Sequence[str]) -> int:
    """``pixelbytes tokenize``: write a dataset's token ids as a compact parquet file (``load_samples`` reads
    it, ``evaluate`` / ``train`` take it as ``--data`` / ``--dataset``)."""
    from ..data.loading import load_samples, save_tokenized, tokenize_samples
    from ..tokenization_pixelbytes import ActionPixelBytesTokenizer

    parser = FlagParser(prog="pixelbytes tokenize", description=tokenize_main.__doc__)
    parser.add_argument("--data", required=True, help="folder with metadata.jsonl, .parquet / .arrow, or Hub id")
    parser.add_argument("--output", required=True, help="the .parquet file to write")
    parser.add_argument("--tokenizer", help="a saved tokenizer / model directory (default: a new default one)")
    parser.add_argument("--data-slicing", type=data_slicing, help="tokenizer strides N or IMAGE,AUDIO")
    parser.add_argument("--split", default="train", help="split of a Hub / parquet dataset")
    parser.add_argument("--max-image-pixels", type=int, help="accept sprites up to this many pixels (frames x "
                        "height x width, before the strides; default: the tokenizer's limit)")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.output.endswith(".parquet"):
        parser.error(f"--output must end with .parquet, got {args.output!r}")
    kwargs: dict = {} if args.data_slicing is None else {"data_slicing": args.data_slicing}
    if args.max_image_pixels is not None:
        kwargs["max_image_pixels"] = args.max_image_pixels
    try:
        if args.tokenizer:
            tokenizer = ActionPixelBytesTokenizer.from_pretrained(args.tokenizer, **kwargs)
        else:
            tokenizer = ActionPixelBytesTokenizer(**kwargs)
        store = tokenize_samples(load_samples(args.data, split=args.split), tokenizer)
        path = save_tokenized(store, args.output, tokenizer)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"pixelbytes tokenize: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(store)} items to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0

"""Train a Pokémon recipe (``examples/recipes/pokemon-*.yaml``) and evaluate it on its held-out validation items.

    python examples/train_pokemon.py --recipe paper --data ../shared/data/pokemon-train --time-budget 600

It runs what these two commands run (the recipe's options, then the flags given here on top):

    pixelbytes train --config examples/recipes/pokemon-paper.yaml --dataset DATA --output_dir OUT
    pixelbytes evaluate --model OUT --data DATA --split validation

``--data`` takes the folder, or the ids written by ``pixelbytes tokenize --data FOLDER --data-slicing 2 --output
pokemon-train-s2.parquet`` (the same items and split, for a machine without the raw files). Recipes: ``paper``
(the papers' next-token LSTM), ``context`` (their 6-slot "AR" LSTM), ``caption`` (+ caption memory), ``stateful``
(windows carry the LSTM state from one to the next, truncated BPTT), ``best`` (see its YAML).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from pixelbytes.cli import config_arguments
from pixelbytes.evaluation.runner import EvaluationOptions, format_table, run_evaluation
from pixelbytes.training import DataArguments, ModelArguments, run_training

RECIPES = Path(__file__).resolve().parent / "recipes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = sorted(p.stem.removeprefix("pokemon-") for p in RECIPES.glob("pokemon-*.yaml"))
    parser.add_argument("--recipe", default="paper", choices=names)
    parser.add_argument("--data", default="../shared/data/pokemon-train", help="folder or pre-tokenised parquet")
    parser.add_argument("--output-dir", help="default: runs/pokemon-RECIPE")
    parser.add_argument("--time-budget", type=float, help="stop training after this many seconds")
    parser.add_argument("--max-steps", type=int, help="override the recipe's max_steps")
    parser.add_argument("--v1-max-segments", type=int, default=512, help="v1 Table 1 segments (0 = all)")
    parser.add_argument("--skip-training", action="store_true", help="only evaluate an existing output dir")
    parser.add_argument("extra", nargs="*", help="more `pixelbytes train` flags after --, e.g. -- --bf16 true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    output_dir = args.output_dir or f"runs/pokemon-{args.recipe}"
    flags = config_arguments(str(RECIPES / f"pokemon-{args.recipe}.yaml"))
    flags += ["--dataset", args.data, "--output_dir", output_dir]
    if args.time_budget:
        flags += ["--time_budget_seconds", str(args.time_budget)]
    if args.max_steps:
        flags += ["--max_steps", str(args.max_steps)]
    flags += args.extra
    model_args, data_args, training_args = HfArgumentParser(
        (ModelArguments, DataArguments, TrainingArguments)
    ).parse_args_into_dataclasses(args=flags)
    started = time.perf_counter()
    if not args.skip_training:
        run_training(model_args, data_args, training_args)
    trained = time.perf_counter() - started
    results = run_evaluation(
        EvaluationOptions(
            model=output_dir, data=args.data, split="validation", validation_fraction=data_args.validation_fraction,
            split_seed=data_args.split_seed, v1_max_segments=args.v1_max_segments or None,
        )
    )  # fmt: skip
    print(f"\nrecipe {args.recipe}: trained {trained:.0f} s; evaluated {results['dataset']['num_items']} held-out "
          f"items in {results['runtime_seconds']:.0f} s on {results['machine']}")  # fmt: skip
    print(format_table(results))


if __name__ == "__main__":
    main()

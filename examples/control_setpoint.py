"""Setpoint following: build a small control dataset, compare PID / LQG / bang-bang (and a trained model).

python examples/control_setpoint.py --output runs/control_example               # baselines only, ~15 s
python examples/control_setpoint.py --output runs/control_example --model RUN   # + a `train-recipe` model

The full recipe (README, "Control (setpoint following)"):
pixelbytes control build-dataset --output-dir runs/ctl_data --n-plants 60 --seed 0
pixelbytes control train-recipe --dataset runs/ctl_data --output-dir runs/ctl_diffusion --time-budget 300
pixelbytes control evaluate --dataset runs/ctl_data --model runs/ctl_diffusion --output-dir runs/ctl_eval
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pixelbytes.control.datasets import build_control_dataset
from pixelbytes.control.recipe import evaluate_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder for the dataset and the evaluation")
    parser.add_argument("--model", action="append", default=[], help="trained model folder (repeatable)")
    parser.add_argument("--n-plants", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = build_control_dataset(f"{args.output}/data", n_plants=args.n_plants, seed=args.seed, steps=120)
    print(f"dataset: {summary['train_rows']} train / {summary['test_rows']} test episodes")
    results = evaluate_recipe(f"{args.output}/data", args.model, f"{args.output}/eval", steps=120, seed=args.seed)
    print(Path(args.output, "eval", "table.md").read_text())
    print(f"{results['plants']} held-out plants; plots in {args.output}/eval")


if __name__ == "__main__":
    main()

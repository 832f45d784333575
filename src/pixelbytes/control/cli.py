"""``pixelbytes control build-dataset | train-recipe | evaluate``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

__all__ = ["control_main"]


def _parser() -> argparse.ArgumentParser:
    from ..cli import FlagParser  # both flag spellings (--output-dir / --output_dir), as every subcommand

    parser = FlagParser(prog="pixelbytes control", description="Setpoint following with PixelBytes.")
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build-dataset", help="simulate plants x controllers into a dataset folder")
    build.add_argument("--output-dir", required=True)
    build.add_argument("--n-plants", type=int, default=60)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--test-fraction", type=float, default=0.2)
    build.add_argument("--steps", type=int, default=200)
    build.add_argument("--max-delay", type=int, default=5, help="samples")
    build.add_argument("--max-noise", type=float, default=0.1)
    build.add_argument("--orders", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    build.add_argument("--controllers", nargs="+", default=["bang-bang", "pid", "lqg"])
    build.add_argument("--no-text", action="store_true", help="leave the CSV description out of metadata.jsonl")
    build.add_argument("--push", default=None, metavar="REPO_ID", help="also upload to this Hub dataset repo")
    build.add_argument("--private", action="store_true")
    train = sub.add_parser("train-recipe", help="train the recipe model (CPU minutes) on DATASET/train")
    train.add_argument("--dataset", required=True)
    train.add_argument("--output-dir", required=True)
    train.add_argument("--objective", choices=["diffusion", "next_token"], default="diffusion")
    train.add_argument("--max-steps", type=int, default=400)
    train.add_argument("--time-budget", type=float, default=None, help="seconds")
    train.add_argument("--seed", type=int, default=0)
    evaluate = sub.add_parser("evaluate", help="model controller(s) vs PID / LQG / bang-bang on held-out plants")
    evaluate.add_argument("--dataset", required=True)
    evaluate.add_argument(
        "--model", action="append", default=[], help="trained model dir (repeatable; none = baselines)"
    )
    evaluate.add_argument("--output-dir", required=True)
    evaluate.add_argument("--steps", type=int, default=200)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--max-plants", type=int, default=None)
    evaluate.add_argument("--horizon", type=int, default=4)
    evaluate.add_argument("--history", type=int, default=40)
    evaluate.add_argument("--reference-tau", type=float, default=None, help="s; default: the setpoint itself")
    return parser


def control_main(argv: Sequence[str]) -> int:
    """Entry point of ``pixelbytes control``."""
    args = _parser().parse_args(list(argv))
    if args.action == "build-dataset":
        from .datasets import build_control_dataset, push_control_dataset

        summary = build_control_dataset(
            args.output_dir, n_plants=args.n_plants, seed=args.seed, test_fraction=args.test_fraction,
            orders=tuple(args.orders), controllers=tuple(args.controllers), steps=args.steps,
            max_delay=args.max_delay, max_noise=args.max_noise, include_text=not args.no_text,
        )  # fmt: skip
        if args.push:
            info = push_control_dataset(args.output_dir, args.push, private=args.private)
            summary["pushed"] = str(getattr(info, "commit_url", info))
        print(json.dumps(summary, indent=1))
    elif args.action == "train-recipe":
        from .recipe import train_recipe

        metrics = train_recipe(args.dataset, args.output_dir, objective=args.objective, max_steps=args.max_steps,
                               time_budget_seconds=args.time_budget, seed=args.seed)  # fmt: skip
        print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, indent=1))
    else:
        from .recipe import evaluate_recipe

        results = evaluate_recipe(args.dataset, args.model, args.output_dir, steps=args.steps, seed=args.seed,
                                  max_plants=args.max_plants, horizon=args.horizon, history=args.history,
                                  reference_tau=args.reference_tau)  # fmt: skip
        print(json.dumps(results["summary"], indent=1))
    return 0

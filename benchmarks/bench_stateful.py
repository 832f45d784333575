"""Stateful training windows (truncated BPTT) vs plain overlapping windows vs plain + caption memory (issue #13).

    python benchmarks/bench_stateful.py                  # demo data, 4 configurations, under 3 minutes on 2 cores
    python benchmarks/bench_stateful.py --quick          # smoke run (seconds)
    python benchmarks/bench_stateful.py --dataset ../shared/data/pokemon-sample --image-stride 2 --audio-stride 8

The same LSTM (pxby6 embedding 48, hidden 128, 2 layers, next-token objective) is trained from the same seed for
the same number of optimizer steps, i.e. the same number of window tokens through the model (``--tokens``), with
``per_device_train_batch_size`` = ``--batch-size`` and windows of ``--seq-length``:

* ``plain``: overlapping windows (stride = seq_length / 2, shuffled), each from a zero state: a token is fed
  about twice, and only the first window of a sample sees its caption;
* ``stateful``: consecutive windows in lanes, the state carried (detached) from window to window
  (:class:`pixelbytes.training.stateful.PxByStatefulTrainer`);
* ``plain+memory``: plain windows with the caption memory (``caption_memory_buckets=512``, each window carrying
  its caption prefix);
* ``stateful+memory``: both.

Held-out score: next-token bits per token on WHOLE held-out samples (one forward from the start of each stream,
as generation sees it), overall and per target modality (text / image / audio); the demo's held-out samples are its
held-out colour × shape captions. ``windowed``: the same samples cut into plain overlapping windows, each from a
zero state (what the ``Trainer``'s ``eval_loss`` of plain windows measures). ``tok/s`` = real tokens fed to the
backbone per second of training (wall clock, ``--threads`` torch threads); ``targets`` = labelled next-token targets
trained on.

The data: the embedded demo (default; tokenised with the ``pixelbytes train`` defaults, ≈ 3,000 tokens per
sample: caption, 1-4 frames of 16×16, stereo audio) or a folder with ``metadata.jsonl`` (read only; the last
``--heldout-fraction`` of a seeded shuffle is held out).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="demo", help="'demo' or a folder with metadata.jsonl (read only)")
    parser.add_argument("--configs", default="plain,stateful,plain+memory,stateful+memory",
                        help="comma-separated: plain, stateful, plain+memory, stateful+memory")  # fmt: skip
    parser.add_argument("--tokens", type=int, default=800_000, help="window tokens per configuration")
    parser.add_argument("--seq-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-samples", type=int, default=32, help="held-out samples scored (at most)")
    parser.add_argument("--heldout-fraction", type=float, default=0.125, help="folder data: held-out share")
    parser.add_argument("--image-stride", type=int, default=1, help="folder data: tokenizer image_stride")
    parser.add_argument("--audio-stride", type=int, default=1, help="folder data: tokenizer audio_stride")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few tokens and held-out samples")
    return parser.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
# glibc hands freed blocks of a few MB back to the kernel and faults them in again at the next step; on this VM a
# fresh page is so slow that the first ~50 s of a process trained 15-20x slower than the rest (measured: the same
# steps at 1.2 k vs 22 k tok/s). Keeping freed memory in the process (read by glibc at start-up: re-exec once)
# makes every configuration pay the same.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 30)}
if any(os.environ.get(key) != value for key, value in MALLOC.items()):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC})

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel  # noqa: E402
from pixelbytes.data import PxByDataCollator, PxByStatefulWindowDataset, PxByWindowDataset  # noqa: E402
from pixelbytes.training.metrics import MODALITIES, target_modalities  # noqa: E402
from pixelbytes.training.trainer import build_trainer  # noqa: E402

logger = logging.getLogger("bench_stateful")
MODEL = {"embed_size": 48, "hidden_size": 128, "num_hidden_layers": 2}
MEMORY_BUCKETS = 512


def encode(tokenizer: ActionPixelBytesTokenizer, row: dict[str, Any]) -> dict[str, np.ndarray]:
    enc = tokenizer(text=row.get("text"), images=row.get("image"), audio=row.get("audio"),
                    sampling_rate=row.get("sampling_rate"), return_context_ids=True, return_tensors="np")  # fmt: skip
    return {"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]}


def load_data(args: argparse.Namespace) -> tuple[ActionPixelBytesTokenizer, list[dict], list[dict], str]:
    """Tokenised training and held-out samples, and a line saying what they are."""
    if args.dataset == "demo":
        from pixelbytes.data import demo_samples, make_demo_split

        tokenizer = ActionPixelBytesTokenizer()  # the `pixelbytes train --dataset demo` defaults
        train_specs, heldout_specs = make_demo_split(seed=42)
        if args.quick:
            train_specs = train_specs[::8]
        train = [encode(tokenizer, r) for r in demo_samples(train_specs, tokenizer.sampling_rate)]
        heldout = [encode(tokenizer, r) for r in demo_samples(heldout_specs[: args.heldout_samples],
                                                              tokenizer.sampling_rate)]  # fmt: skip
        return tokenizer, train, heldout, f"demo: {len(train)} training, {len(heldout)} held-out samples"
    from pixelbytes.data import load_samples, tokenize_samples

    tokenizer = ActionPixelBytesTokenizer(image_stride=args.image_stride, audio_stride=args.audio_stride)
    store = tokenize_samples(load_samples(args.dataset), tokenizer).with_format("numpy")
    rows = [{"input_ids": np.asarray(s["input_ids"]), "context_ids": np.asarray(s["context_ids"])} for s in store]
    order = np.random.default_rng(args.seed).permutation(len(rows))
    n_held = max(1, round(len(rows) * args.heldout_fraction))
    heldout = [rows[i] for i in order[:n_held]][: args.heldout_samples]
    train = [rows[i] for i in order[n_held:]]
    line = f"{args.dataset}: {len(train)} training, {len(heldout)} held-out samples"
    return tokenizer, train, heldout, line


class CountingCollator:
    """Wraps a collator; counts the real tokens fed to the backbone and the labelled targets of every batch."""

    def __init__(self, collator: Any, look_ahead: bool) -> None:
        self.collator, self.look_ahead = collator, look_ahead
        self.fed = self.targets = 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        # stateful rows have no attention mask: every real token is its own label there (-100 = padding)
        real = batch["attention_mask"] if "attention_mask" in batch else batch["labels"] != -100  # (B, L)
        self.fed += int(real.sum()) - (int(real.any(1).sum()) if self.look_ahead else 0)  # look-aheads: labels only
        self.targets += int((batch["labels"][:, 1:] != -100).sum())
        return batch


@torch.no_grad()
def heldout_bits(model: PxBySequenceModel, samples: list[dict], token_classes: np.ndarray) -> dict[str, float]:
    """Next-token bits per token over whole samples (each from the start of its stream), overall and per modality."""
    model.eval()
    total = {name: [0.0, 0] for name in ("all", *MODALITIES)}
    for sample in samples:
        ids = torch.from_numpy(np.asarray(sample["input_ids"], dtype=np.int64))[None]  # (1, n)
        ctx = torch.from_numpy(np.asarray(sample["context_ids"], dtype=np.int64).reshape(ids.shape[1], -1))[None]
        logits = model(input_ids=ids, context_ids=ctx).logits[0, :-1].float()  # (n-1, V)
        nats = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")  # (n-1,)
        bits = (nats / np.log(2)).numpy()
        total["all"][0] += float(bits.sum())
        total["all"][1] += len(bits)
        modality = target_modalities(ids[:, 1:].numpy(), token_classes)[0]
        for index, name in enumerate(MODALITIES):
            chosen = modality == index
            total[name][0] += float(bits[chosen].sum())
            total[name][1] += int(chosen.sum())
    return {name: s / n if n else float("nan") for name, (s, n) in total.items()}


@torch.no_grad()
def windowed_bits(model: PxBySequenceModel, samples: list[dict], seq_length: int, batch_size: int) -> float:
    """Bits per token of the same samples cut into plain overlapping windows (stride seq_length / 2), each from a
    zero state, every target scored once: what the ``Trainer``'s ``eval_loss`` of plain windows measures."""
    model.eval()
    lengths = [len(s["input_ids"]) for s in samples]
    dataset = PxByWindowDataset(samples, lengths, seq_length, seq_length // 2, None, model.caption_memory_classes())
    collator = PxByDataCollator()
    nats, count = 0.0, 0
    for first in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(first, min(first + batch_size, len(dataset)))])
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1].float()  # (B, L-1, V)
        target = batch["labels"][:, 1:]  # (B, L-1)
        nats += float(torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="sum"))
        count += int((target != -100).sum())
    return nats / count / np.log(2)


def run_config(name: str, tokenizer: ActionPixelBytesTokenizer, train: list[dict], heldout: list[dict],
               args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Train one configuration and score it."""
    stateful, memory = name.startswith("stateful"), name.endswith("+memory")
    torch.manual_seed(args.seed)
    config = PxByConfig.from_tokenizer(tokenizer, **MODEL, caption_memory_buckets=MEMORY_BUCKETS if memory else 0)
    model = PxBySequenceModel(config)
    lengths = [len(s["input_ids"]) for s in train]
    S = args.seq_length
    if stateful:
        dataset = PxByStatefulWindowDataset(train, lengths, S, None, model.caption_memory_classes())
    else:
        dataset = PxByWindowDataset(train, lengths, S, S // 2, None, model.caption_memory_classes())
    steps = max(1, args.tokens // (args.batch_size * S))
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate, lr_scheduler_type="cosine", warmup_steps=max(1, steps // 20),
            weight_decay=0.0, max_grad_norm=1.0, logging_strategy="no", save_strategy="no",
            eval_strategy="no", report_to="none", use_cpu=True, seed=args.seed, dataloader_num_workers=0,
            disable_tqdm=True,
        )  # fmt: skip
        trainer = build_trainer(model, tokenizer, training_args, dataset)
        counter = CountingCollator(trainer.data_collator, look_ahead=stateful)
        trainer.data_collator = counter
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
    bits = heldout_bits(model, heldout, tokenizer.token_classes)
    bits["windowed"] = windowed_bits(model, heldout, S, 2 * args.batch_size)
    logger.info("%s: %d steps in %.1f s, train loss %.3f, held-out %.3f bits/token", name, steps, seconds,
                result.training_loss, bits["all"])  # fmt: skip
    return {"name": name, "steps": steps, "fed": counter.fed, "targets": counter.targets, "seconds": seconds,
            "train_loss": result.training_loss, **bits}  # fmt: skip


def warm_up(tokenizer: ActionPixelBytesTokenizer, args: argparse.Namespace) -> None:
    """A few untimed steps, so that the first configuration does not pay for the thread pools and allocator."""
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer, **MODEL))
    ids = torch.randint(3, tokenizer.vocabulary.vocab_size, (args.batch_size, args.seq_length))  # (B, L)
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("transformers", "pixelbytes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = ARGS
    if args.quick:
        args.tokens, args.heldout_samples = min(args.tokens, 8 * args.batch_size * args.seq_length), 4
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    known = {"plain", "stateful", "plain+memory", "stateful+memory"}
    if not names or set(names) - known:
        raise SystemExit(f"--configs must name some of {sorted(known)}, got {args.configs!r}")
    start = time.perf_counter()
    tokenizer, train, heldout, line = load_data(args)
    logger.info("%s, tokenised in %.1f s", line, time.perf_counter() - start)
    warm_up(tokenizer, args)
    rows = [run_config(name, tokenizer, train, heldout, args) for name in names]
    n_params = sum(p.numel() for p in PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer, **MODEL)).parameters())
    print(f"\n{line}; LSTM {MODEL} ({n_params:,} parameters), batch {args.batch_size} × {args.seq_length}, "
          f"{rows[0]['steps']} steps, lr {args.learning_rate}, {args.threads} threads; "
          f"total {time.perf_counter() - start:.0f} s\n")  # fmt: skip
    columns = ("windows", "fed tokens", "targets", "train s", "tok/s", "train loss", "held-out bits/token", "text",
               "image", "audio", "windowed")  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        speed = r["fed"] / r["seconds"]
        print(
            f"| {r['name']} | {r['fed']:,} | {r['targets']:,} | {r['seconds']:.1f} | {speed:,.0f} | "
            f"{r['train_loss']:.3f} | **{r['all']:.3f}** | {r['text']:.3f} | {r['image']:.3f} | {r['audio']:.3f} | "
            f"{r['windowed']:.3f} |"
        )


if __name__ == "__main__":
    main()

"""Training throughput (Trainer path vs a plain PyTorch loop) and memory while iterating every window.

    python benchmarks/bench_train.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_train.py --quick    # smoke run

1. Tokens/s of the paper LSTM config (2 × 512, pxby6 126) on CPU, fp32, the same windows, batch size and
   AdamW settings: ``transformers.Trainer`` with our collator vs a bare loop (``DataLoader`` + forward /
   backward / step). Goal: Trainer overhead ≤ 10 %.
2. Peak RSS of a fresh process that tokenises a synthetic on-disk dataset of N samples into the Arrow store
   and iterates EVERY training window through the collator, for N = 100 and N = 1000. Goal: ratio ≤ 1.5
   (windows are sliced from the memory-mapped store, never materialised together).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12, help="timed optimiser steps per path")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-length", type=int, default=512)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel  # noqa: E402
from pixelbytes.data import PxByDataCollator, PxByWindowDataset  # noqa: E402


def synthetic_rows(n: int, seed: int = 0):
    """Caption + 24×24 sprite × 8 frames + 0.1 s stereo sound: ~5.4k tokens per sample."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield {
            "text": f"synthetic sample {i} " + "abc " * int(rng.integers(5, 30)),
            "image": rng.integers(0, 256, (8, 24, 24, 3), dtype=np.uint8),
            "audio": rng.uniform(-1, 1, (2, 1600)).astype(np.float32),
        }


def rss_child(n: int) -> None:
    """In a fresh process: on-disk raw dataset → Arrow token store → iterate every window; print peak RSS."""
    import datasets

    from pixelbytes.data import stream_lengths, tokenize_samples

    tokenizer = ActionPixelBytesTokenizer(audio_stride=4)
    with tempfile.TemporaryDirectory() as tmp:
        features = datasets.Features({
            "text": datasets.Value("string"),
            "image": datasets.Array4D((8, 24, 24, 3), "uint8"),
            "audio": datasets.Array2D((2, 1600), "float32"),
        })  # fmt: skip
        raw = datasets.Dataset.from_generator(
            synthetic_rows,
            gen_kwargs={"n": n},
            features=features,
            cache_dir=os.path.join(tmp, "raw"),
            writer_batch_size=64,
        ).with_format("numpy")
        start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        store = tokenize_samples(raw, tokenizer, cache_file_name=os.path.join(tmp, "tokens.arrow"), desc="tok")
        windows = PxByWindowDataset(store, stream_lengths(store), seq_length=1024, stride=512)
        loader = torch.utils.data.DataLoader(windows, batch_size=8, collate_fn=PxByDataCollator())
        tokens = 0
        for batch in loader:
            tokens += int(batch["attention_mask"].sum())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"samples": n, "windows": len(windows), "tokens": tokens, "rss_start_mb": start_rss / 1024,
                      "rss_peak_mb": peak / 1024}))  # fmt: skip


def make_windows(tokenizer: ActionPixelBytesTokenizer, count: int) -> PxByWindowDataset:
    store = []
    for row in synthetic_rows(max(2, count // 4)):
        enc = tokenizer(text=row["text"], images=row["image"], audio=row["audio"], return_context_ids=True,
                        return_tensors="np")  # fmt: skip
        store.append({"input_ids": enc["input_ids"][0], "context_ids": enc["context_ids"][0]})
    lengths = [len(s["input_ids"]) for s in store]
    return PxByWindowDataset(store, lengths, seq_length=ARGS.seq_length, stride=ARGS.seq_length - 1)


def plain_loop(model: PxBySequenceModel, windows: PxByWindowDataset, steps: int) -> float:
    """Seconds for ``steps`` optimiser steps after one warm-up step."""
    loader = torch.utils.data.DataLoader(windows, batch_size=ARGS.batch_size, shuffle=True,
                                         collate_fn=PxByDataCollator(), drop_last=True)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    start = None
    done = 0
    while done <= steps:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            done += 1
            if done == 1:
                start = time.perf_counter()
            if done > steps:
                break
    return time.perf_counter() - start


def trainer_path(model: PxBySequenceModel, tokenizer, windows: PxByWindowDataset, steps: int) -> float:
    from transformers import TrainerCallback, TrainingArguments

    from pixelbytes.training import build_trainer

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=steps + 1, per_device_train_batch_size=ARGS.batch_size, learning_rate=1e-3,
            weight_decay=0.0, lr_scheduler_type="constant", logging_steps=10_000, save_strategy="no",
            report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        )  # fmt: skip
        trainer = build_trainer(model, tokenizer, args, windows, callbacks=[clock])
        trainer.train()
    return clock.end - clock.start


def main() -> None:
    if ARGS.rss_child is not None:
        rss_child(ARGS.rss_child)
        return
    torch.set_num_threads(ARGS.threads)
    steps = 3 if ARGS.quick else ARGS.steps
    tokenizer = ActionPixelBytesTokenizer(audio_stride=4)
    windows = make_windows(tokenizer, (steps + 2) * ARGS.batch_size)
    tokens_per_step = ARGS.batch_size * ARGS.seq_length
    torch.manual_seed(0)
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer))
    print(f"paper LSTM ({sum(p.numel() for p in model.parameters()):,} parameters), batch {ARGS.batch_size} x "
          f"{ARGS.seq_length} tokens, {steps} timed steps, torch threads {torch.get_num_threads()}\n")  # fmt: skip
    plain = plain_loop(model, windows, steps)
    torch.manual_seed(0)
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer))
    hf = trainer_path(model, tokenizer, windows, steps)
    plain_tps, hf_tps = steps * tokens_per_step / plain, steps * tokens_per_step / hf
    overhead = hf / plain - 1
    print(f"{'path':<22}{'s/step':>10}{'tokens/s':>12}")
    print(f"{'plain PyTorch loop':<22}{plain / steps:>10.3f}{plain_tps:>12,.0f}")
    print(f"{'transformers.Trainer':<22}{hf / steps:>10.3f}{hf_tps:>12,.0f}")
    print(f"{'PASS' if overhead <= 0.10 else 'FAIL'}  Trainer overhead {overhead * 100:+.1f} % (goal <= 10 %)\n")

    sizes = (20, 200) if ARGS.quick else (100, 1000)
    results = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(n), "--threads", str(ARGS.threads)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'samples':>8}{'windows':>10}{'tokens':>14}{'peak RSS MB':>14}")
    for r in results:
        print(f"{r['samples']:>8}{r['windows']:>10}{r['tokens']:>14,}{r['rss_peak_mb']:>14.0f}")
    ratio = results[1]["rss_peak_mb"] / results[0]["rss_peak_mb"]
    print(f"{'PASS' if ratio <= 1.5 else 'FAIL'}  peak RSS ratio {sizes[1]} vs {sizes[0]} samples: {ratio:.2f} "
          f"(goal <= 1.5)")  # fmt: skip


if __name__ == "__main__":
    main()

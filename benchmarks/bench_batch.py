"""Batched caption → continuation throughput: many captions at once (paper-size LSTM, CPU, random weights).

    python benchmarks/bench_batch.py            # B = 1, 8, 64; 256 new tokens; 3 repeats
    python benchmarks/bench_batch.py --quick    # B = 1, 8; 32 new tokens; 1 repeat

The default (published) aPxBy LSTM (2 × 512, pxby6 126) with random weights decodes ``--new-tokens`` tokens
greedily after B different captions (left-padded to one width), threads fixed (``--threads``, default 1). For each
B: generated tokens per second (B × new tokens / wall time, median of ``--repeats``), milliseconds per decoding step
(one step = one token for every row) and the speed-up in tokens/s over B = 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="B = 1, 8; 32 new tokens; 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.batch_sizes, args.new_tokens, args.repeats = [1, 8], 32, 1
    return args


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import torch  # noqa: E402

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel  # noqa: E402

WORDS = ("red", "blue", "small", "big", "heart", "star", "sword", "coin", "ghost", "tree", "blinking", "on black")


def captions(n: int) -> list[str]:
    """``n`` different captions of 2-4 words."""
    return [" ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 2 + i % 3 + 1)) for i in range(n)]


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    tokenizer = ActionPixelBytesTokenizer()
    model = PxBySequenceModel(PxByConfig()).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {model.config.backbone} {model.config.num_hidden_layers} x {model.config.hidden_size}, "
          f"{params / 1e6:.2f} M parameters; {ARGS.new_tokens} new tokens, greedy, {ARGS.threads} thread(s), "
          f"median of {ARGS.repeats}")  # fmt: skip
    rows = []
    for batch_size in ARGS.batch_sizes:
        batch = tokenizer(captions(batch_size), padding=True, padding_side="left", return_tensors="pt")

        def run(batch=batch):
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=ARGS.new_tokens, min_new_tokens=ARGS.new_tokens,
                                     do_sample=False)  # fmt: skip
            assert out.shape[1] == batch["input_ids"].shape[1] + ARGS.new_tokens

        run()  # warm-up
        times = []
        for _ in range(ARGS.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append((batch_size, batch_size * ARGS.new_tokens / seconds, 1000 * seconds / ARGS.new_tokens))
    base = rows[0][1]
    print(f"\n| B | tokens/s | ms per step | speed-up vs B={rows[0][0]} |\n|---:|---:|---:|---:|")
    for batch_size, rate, ms in rows:
        print(f"| {batch_size} | {rate:,.0f} | {ms:.2f} | {rate / base:.1f}× |")


if __name__ == "__main__":
    main()

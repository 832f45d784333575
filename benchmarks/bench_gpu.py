"""GPU generation: the CUDA-graph token step against eager kernels, and cached == uncached greedy on CUDA.

Runs wherever CUDA is present (prints a note and exits 0 otherwise). For the default (paper) LSTM with random
weights, after a caption + sprite prompt:

* correctness: greedy ids of the CUDA-graph cached path == eager cached path == full recompute (no cache);
* speed at B = 1: tokens/s of cached greedy ``generate()`` with eager kernels and with the CUDA graph
  (goal: >= 5,000 tokens/s with the graph), plus batched throughput at B = 8 and 64.

    python benchmarks/bench_gpu.py [--tokens 2048] [--check-tokens 256]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048, help="new tokens per timed run")
    parser.add_argument("--check-tokens", type=int, default=256, help="new tokens compared with full recompute")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def prompt_ids(tokenizer: ActionPixelBytesTokenizer) -> torch.Tensor:
    sprite = np.zeros((16, 16, 3), dtype=np.uint8)
    sprite[4:12, 4:12] = (228, 0, 88)
    return tokenizer(text="a small red heart", images=sprite, return_tensors="pt")["input_ids"][:, :64]


def greedy(model: PxBySequenceModel, prompt: torch.Tensor, new: int, use_cache: bool = True) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, do_sample=False, use_cache=use_cache
        )  # no min_new_tokens: without an end-of-sequence id every run makes exactly max_new_tokens


def tokens_per_second(model: PxBySequenceModel, prompt: torch.Tensor, new: int, repeats: int) -> float:
    greedy(model, prompt, 16)  # warm-up (and the graph capture)
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        greedy(model, prompt, new)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return prompt.shape[0] * new / best


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (this benchmark runs wherever CUDA is present)")
        return
    torch.manual_seed(0)
    tokenizer = ActionPixelBytesTokenizer()
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer)).eval().cuda()
    prompt = prompt_ids(tokenizer).cuda()
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, default PxByConfig, greedy\n")

    n = args.check_tokens
    model.use_cuda_graphs = True
    graph_ids = greedy(model, prompt, n)
    model.use_cuda_graphs = False
    eager_ids = greedy(model, prompt, n)
    recompute_ids = greedy(model, prompt, n, use_cache=False)
    same_eager = torch.equal(graph_ids, eager_ids)
    same_recompute = torch.equal(graph_ids, recompute_ids)
    print(f"{n} greedy tokens: graph == eager cached: {same_eager}; graph == full recompute: {same_recompute}")

    rows = []
    for graphs in (False, True):
        model.use_cuda_graphs = graphs
        for batch in (1, 8, 64):
            rate = tokens_per_second(model, prompt.repeat(batch, 1), args.tokens, args.repeats)
            rows.append((graphs, batch, rate))
    header = f"{'step':>11} | {'batch':>5} | {'tokens/s':>10} | {'ms per step':>11}"
    print("\n" + header + "\n" + "-" * len(header))
    for graphs, batch, rate in rows:
        print(f"{'CUDA graph' if graphs else 'eager':>11} | {batch:>5} | {rate:>10,.0f} | {batch / rate * 1e3:>11.3f}")
    b1 = {graphs: rate for graphs, batch, rate in rows if batch == 1}
    print(f"\nCUDA graph / eager at B=1: {b1[True] / b1[False]:.1f}x")
    goals = [
        (">= 5,000 tokens/s at B=1 with the CUDA graph", b1[True] >= 5000),
        ("cached (graph) == cached (eager) == uncached greedy on CUDA", same_eager and same_recompute),
    ]
    for name, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()

"""Cached ``generate()`` vs full recompute vs the bare LSTM-cell floor (paper-size LSTM, CPU).

    python benchmarks/bench_generate.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_generate.py --quick    # smoke run

Measures, with the default (published) aPxBy LSTM (2 × 512, pxby6 126, 3.49 M parameters), a 64-token
prompt and greedy decoding, threads fixed (``--threads``, default 1), median of ``--repeats`` runs:

* cached ``model.generate()`` at 256 / 1024 / 4096 new tokens;
* full recompute at every step (``use_cache=False``: contexts and the whole LSTM over the prefix, what the
  original code does) at 256 and 1024, extrapolated to 4096 from the measured quadratic growth;
* the floor: a bare loop of ``torch.lstm_cell`` steps with the same weights and nothing else;
* the step floor: a bare loop of the model's own ``backbone.step`` (the fused cell update that cached
  generation runs, on :meth:`~pixelbytes.modeling_pixelbytes.LSTMBackbone.inference_weights`) and nothing else.
  cached/step is what embedding, layout tracking, the head and ``generate()`` add per token.

Ratios are medians over repeats of (cached run / the floor run timed right after it), so that a burst of load
on the shared machine hits both sides of a ratio.

Goals (issue 3): cached ≤ 1.5× the floor per token; per-token cost flat (4096 vs 256 within 1.5×);
≥ 40× faster than full recompute at 1024 new tokens. Also reports tokens/s, peak RSS and batch-8 throughput.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat")
    return parser.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_prompt(tokenizer: ActionPixelBytesTokenizer, length: int = 64) -> torch.Tensor:
    """A real stream prefix: a caption followed by the start of a sprite."""
    sprite = np.zeros((16, 16, 3), dtype=np.uint8)
    sprite[4:12, 4:12] = (228, 0, 88)
    ids = tokenizer(text="a small red heart", images=sprite, return_tensors="pt")["input_ids"]
    return ids[:, :length]


def floor_loop(model: PxBySequenceModel, steps: int, batch: int = 1) -> None:
    """Bare cell-level LSTM steps with the model's weights (no embedding, head, layout or generate())."""
    lstm = model.backbone.lstms[0]
    weights = lstm._flat_weights
    H = lstm.hidden_size
    x0 = torch.randn(batch, lstm.input_size)
    hs = [torch.zeros(batch, H) for _ in range(lstm.num_layers)]
    cs = [torch.zeros(batch, H) for _ in range(lstm.num_layers)]
    with torch.no_grad():
        for _ in range(steps):
            x = x0
            for layer in range(lstm.num_layers):
                w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
                hs[layer], cs[layer] = torch.lstm_cell(x, (hs[layer], cs[layer]), w_ih, w_hh, b_ih, b_hh)
                x = hs[layer]


def step_floor_loop(model: PxBySequenceModel, steps: int, batch: int = 1) -> None:
    """Bare ``backbone.step`` calls (the cell update cached generation uses) and nothing else."""
    lstm = model.backbone.lstms[0]
    x = torch.randn(batch, lstm.input_size)
    state = {key: [torch.zeros(batch, lstm.hidden_size)] * lstm.num_layers for key in ("h", "c")}
    with torch.no_grad():
        for _ in range(steps):
            _, state = model.backbone.step(x, state)


def generate(model: PxBySequenceModel, prompt: torch.Tensor, new: int, use_cache: bool) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new,  # no min_new_tokens: without an end-of-sequence id every run makes exactly this
            do_sample=False,
            use_cache=use_cache,
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    repeats = 1 if ARGS.quick else ARGS.repeats
    lengths = (64, 128, 256) if ARGS.quick else (256, 1024, 4096)
    recompute_lengths = lengths[:2]
    tokenizer = ActionPixelBytesTokenizer()
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer)).eval()
    prompt = make_prompt(tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: default PxByConfig ({n_params:,} parameters), prompt {prompt.shape[1]} tokens, greedy")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {repeats} (median)\n")

    generate(model, prompt, 16, True)  # warm-up
    floor_loop(model, 16)
    step_floor_loop(model, 16)
    rss_before = peak_rss_mb()

    rows = []
    cached, floor, paired, step_floor, step_paired = {}, {}, {}, {}, {}
    for n in lengths:
        # interleaved repeats: each cached run is compared with the floor runs right after it (same machine state)
        runs = [
            (
                median_time(lambda n=n: generate(model, prompt, n, True), 1) / n,
                median_time(lambda n=n: floor_loop(model, n), 1) / n,
                median_time(lambda n=n: step_floor_loop(model, n), 1) / n,
            )
            for _ in range(repeats)
        ]
        cached[n] = statistics.median(c for c, _, _ in runs)
        floor[n] = statistics.median(f for _, f, _ in runs)
        paired[n] = statistics.median(c / f for c, f, _ in runs)
        step_floor[n] = statistics.median(s for _, _, s in runs)
        step_paired[n] = statistics.median(c / s for c, _, s in runs)
    rss_cached = peak_rss_mb()
    recompute = {}
    for n in recompute_lengths:
        recompute[n] = median_time(lambda n=n: generate(model, prompt, n, False), repeats) / n
    # per-token recompute cost grows linearly with the prefix: fit total(n) = a·n + b·n² on the two points
    n1, n2 = recompute_lengths
    t1, t2 = recompute[n1] * n1, recompute[n2] * n2
    b = (t2 / n2 - t1 / n1) / (n2 - n1)
    a = t1 / n1 - b * n1
    n3 = lengths[2]
    recompute_extrapolated = (a * n3 + b * n3 * n3) / n3

    header = f"{'new tokens':>10} | {'cached ms/tok':>13} | {'floor ms/tok':>12} | {'cached/floor':>12} | "
    header += f"{'step ms/tok':>11} | {'cached/step':>11} | {'recompute ms/tok':>16} | {'speed-up':>8} | "
    header += f"{'tokens/s':>8}"
    print(header)
    print("-" * len(header))
    for n in lengths:
        rec = recompute.get(n, recompute_extrapolated)
        mark = "" if n in recompute else " (extrapolated)"
        rows.append((n, cached[n], floor[n], rec))
        print(
            f"{n:>10} | {cached[n] * 1e3:>13.3f} | {floor[n] * 1e3:>12.3f} | {paired[n]:>12.2f} | "
            f"{step_floor[n] * 1e3:>11.3f} | {step_paired[n]:>11.2f} | {rec * 1e3:>16.3f} | "
            f"{rec / cached[n]:>7.1f}x | {1 / cached[n]:>8.0f}{mark}"
        )

    batch = 8
    batch_prompt = prompt.repeat(batch, 1)
    n_batch = lengths[1]
    t_batch = median_time(lambda: generate(model, batch_prompt, n_batch, True), repeats)
    print(
        f"\nbatch {batch} x {n_batch} new tokens: {batch * n_batch / t_batch:,.0f} tokens/s "
        f"({t_batch / n_batch * 1e3:.3f} ms per step for the whole batch)"
    )
    print(f"peak RSS: {rss_before:.0f} MB before generation, {rss_cached:.0f} MB after the cached runs")

    small, mid, big = lengths
    goals = [
        ("cached <= 1.5x floor per token (all lengths)", max(paired.values()) <= 1.5),
        ("flat per-token cost: cached(4096)/cached(256) <= 1.5", cached[big] / cached[small] <= 1.5),
        (f">= 40x faster than full recompute at {mid}", recompute[mid] / cached[mid] >= 40),
        ("our overhead: cached <= 1.3x the bare backbone.step loop (B=1)", max(step_paired.values()) <= 1.3),
    ]
    print()
    for name, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"flatness ratio {cached[big] / cached[small]:.2f}, speed-up at {mid}: {recompute[mid] / cached[mid]:.1f}x")
    print(f"cached/step (our overhead over the cells): {', '.join(f'{v:.2f}' for v in step_paired.values())}")


if __name__ == "__main__":
    main()

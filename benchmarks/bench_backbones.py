"""LSTM vs attention vs Mamba at ≈equal parameter counts (CPU): training speed, cached vs uncached generation.

    python benchmarks/bench_backbones.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_backbones.py --quick    # smoke run (small sizes)

For each backbone (pxby6 embedding of 126, next-token objective) the hidden size is chosen so the model has
≈1 M and ≈4 M parameters (LSTM 2 layers, attention and Mamba 4 layers). Each measurement runs in its own
process (so the peak RSS is that configuration's), with ``--threads`` torch threads (default 1):

* training tokens/s: AdamW steps on a batch of 8 × 256 tokens (forward + backward + step);
* generation tokens/s after a 64-token prompt, greedy, 256 new tokens: cached (``PxByCache``) and
  uncached (``use_cache=False``: contexts and the whole backbone recomputed at every step); for attention
  also at 1024 new tokens (goal: cached ≥ 10× faster);
* peak RSS of the process.

Then the Mamba CPU check of issue 5: forward + backward of 2 Mamba blocks, hidden 64, state 16, B=4,
L=1024 with mambapy (goal < 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small sizes and lengths")
    parser.add_argument("--one", nargs=2, metavar=("BACKBONE", "PARAMS"), help=argparse.SUPPRESS)
    parser.add_argument("--mamba-check", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel  # noqa: E402

LAYERS = {"lstm": 2, "attention": 4, "mamba": 4}
STEP = {"lstm": 8, "attention": 16, "mamba": 8}


def config_for(backbone: str, target: int) -> PxByConfig:
    """The hidden size (multiple of STEP) whose parameter count is closest to ``target``."""
    best = None
    for hidden in range(STEP[backbone], 2048, STEP[backbone]):
        cfg = PxByConfig(backbone=backbone, hidden_size=hidden, num_hidden_layers=LAYERS[backbone])
        with torch.device("meta"):
            n = sum(p.numel() for p in PxBySequenceModel(cfg).parameters())
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (cfg, n)
        if n > target:
            break
    return best[0]


def prompt_ids(tok: ActionPixelBytesTokenizer, length: int = 64) -> torch.Tensor:
    sprite = np.zeros((16, 16, 3), dtype=np.uint8)
    sprite[4:12, 4:12] = (228, 0, 88)
    return tok(text="a small red heart", images=sprite, return_tensors="pt")["input_ids"][:, :length]


def training_tokens_per_s(model: PxBySequenceModel, batch: int, length: int, steps: int) -> float:
    model.train()
    ids = torch.randint(3, 151, (batch, length))
    context = model.derive_context_ids(ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        loss = model(input_ids=ids, context_ids=context, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    model.eval()
    return batch * length / float(np.median(times[1:]))


def generation_tokens_per_s(model: PxBySequenceModel, prompt: torch.Tensor, new: int, use_cache: bool) -> float:
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=use_cache)  # warm-up
        start = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=new, do_sample=False, use_cache=use_cache)
        elapsed = time.perf_counter() - start
    assert out.shape[1] == prompt.shape[1] + new
    return new / elapsed


def run_one(backbone: str, target: int) -> dict:
    torch.manual_seed(0)
    cfg = config_for(backbone, target)
    model = PxBySequenceModel(cfg).eval()
    tok = ActionPixelBytesTokenizer()
    prompt = prompt_ids(tok)
    quick = ARGS.quick
    row = {
        "backbone": backbone,
        "hidden": cfg.hidden_size,
        "layers": cfg.num_hidden_layers,
        "params": sum(p.numel() for p in model.parameters()),
        "train_tok_s": training_tokens_per_s(model, 8 if not quick else 2, 256 if not quick else 64, 3),
    }
    lengths = [256] if not quick else [32]
    if backbone == "attention":
        lengths.append(1024 if not quick else 64)
    for new in lengths:
        row[f"cached_{new}"] = generation_tokens_per_s(model, prompt, new, True)
        row[f"uncached_{new}"] = generation_tokens_per_s(model, prompt, new, False)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def mamba_check() -> dict:
    from pixelbytes.backbones_pixelbytes import MambaBackbone

    torch.manual_seed(0)
    cfg = PxByConfig(
        backbone="mamba", embedding="center", embed_size=64, hidden_size=64, state_size=16, num_hidden_layers=2
    )
    backbone = PxBySequenceModel(cfg).backbone
    assert isinstance(backbone, MambaBackbone)
    L = 1024 if not ARGS.quick else 256
    x = torch.randn(4, L, 64, requires_grad=True)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        out = backbone(x).hidden
        out.square().mean().backward()
        times.append(time.perf_counter() - start)
    return {"L": L, "fwd_bwd_s": float(np.median(times))}


def main() -> None:
    if ARGS.one:
        print(json.dumps(run_one(ARGS.one[0], int(ARGS.one[1]))))
        return
    if ARGS.mamba_check:
        print(json.dumps(mamba_check()))
        return
    base = [sys.executable, __file__, "--threads", str(ARGS.threads)] + (["--quick"] if ARGS.quick else [])
    targets = [1_000_000, 4_000_000] if not ARGS.quick else [200_000]
    rows = []
    for target in targets:
        for backbone in ("lstm", "attention", "mamba"):
            proc = subprocess.run(base + ["--one", backbone, str(target)], capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"done: {backbone} ≈{target / 1e6:g} M", file=sys.stderr, flush=True)
    check = json.loads(
        subprocess.run(base + ["--mamba-check"], capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    )
    new = 256 if not ARGS.quick else 32
    long = 1024 if not ARGS.quick else 64
    print(f"\nthreads={ARGS.threads}; generation after a 64-token prompt, greedy, batch 1; training batch 8 × 256\n")
    header = (
        f"| backbone | hidden × layers | params | train tok/s | gen {new} cached tok/s | gen {new} uncached tok/s "
        f"| speed-up | gen {long} cached / uncached tok/s (speed-up) | peak RSS MB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        longer = "–"
        if f"cached_{long}" in r:
            longer = (
                f"{r[f'cached_{long}']:.0f} / {r[f'uncached_{long}']:.1f} "
                f"({r[f'cached_{long}'] / r[f'uncached_{long}']:.0f}×)"
            )
        print(
            f"| {r['backbone']} | {r['hidden']} × {r['layers']} | {r['params'] / 1e6:.2f} M | {r['train_tok_s']:.0f} "
            f"| {r[f'cached_{new}']:.0f} | {r[f'uncached_{new}']:.1f} "
            f"| {r[f'cached_{new}'] / r[f'uncached_{new}']:.0f}× "
            f"| {longer} | {r['peak_rss_mb']:.0f} |"
        )
    print(
        f"\nMamba fwd+bwd, hidden 64, state 16, 2 layers, B=4, L={check['L']}, mambapy: {check['fwd_bwd_s']:.2f} s "
        "(goal < 2 s)"
    )


if __name__ == "__main__":
    main()

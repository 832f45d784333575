#!/usr/bin/env python
"""Peak memory of the worst inputs the tokenizer's default limits ACCEPT, and of the inputs they refuse.

The limits (``ActionPixelBytesTokenizer`` settings, saved with ``save_pretrained``): ``max_image_pixels``
(frames x height x width, 2,097,152 by default; it also caps the frame a malformed stream decodes to),
``max_audio_samples`` (time steps per channel after resampling, 1,048,576 = 65.5 s at 16 kHz) and
``max_resample_ratio`` (8: clips at 2 kHz ... 128 kHz for a 16 kHz tokenizer).

Every case runs in its own fresh Python process (``--case NAME``), which imports the package, builds the inputs,
records ``ru_maxrss`` (the import baseline plus the input), then runs the case and reads ``ru_maxrss`` again: the
table shows the peak resident memory of the process, the part above that baseline (what the item itself cost)
and the wall time. The cases are the worst of each kind at the default limits:

* ``image at cap``: a 1448 x 1448 RGBA PNG of random colours and random alpha (2,096,704 pixels: every pixel a
  new colour and a partial alpha, the costliest content) through the training path
  (``pixelbytes.data.loading._tokenize_one``: decode, tokenize with contexts, int32 store arrays);
* ``GIF at cap``: 64 frames of 181 x 181 random palette colours, same path;
* ``audio at cap``: 1,048,576 float32 stereo steps at 16 kHz, same path (2.1 M tokens);
* ``audio, max down-ratio``: 8 x 1,048,576 steps at 128 kHz, resampled to the cap;
* ``audio, max up-ratio``: 131,072 steps at 2 kHz, resampled to the cap;
* ``decode ragged at cap``: ``decode_multimodal`` of a malformed stream (1,447 one-pixel rows, then one row of
  1,448) that spans a 1448 x 1448 frame with 2,895 colour tokens;

and, for contrast, inputs that the limits now refuse (the table shows how fast): a 4000 x 4000 PNG (47 KB; it
cost 3.6 GB under the former 16.7 M-pixel default), 10 minutes of stereo audio (19 M tokens, 4.3 GB before),
100 samples at ``sampling_rate=1`` (3.2 M tokens before) and a ragged stream of 40,002 tokens spanning
20000 x 20001 cells (3 GB and 9 s to decode before).

Usage::

    python benchmarks/bench_limits.py            # every case, one process each, prints the table
    python benchmarks/bench_limits.py --case NAME
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
from pathlib import Path

CASES = {
    "image at cap": "accepted",
    "GIF at cap": "accepted",
    "audio at cap": "accepted",
    "audio, max down-ratio": "accepted",
    "audio, max up-ratio": "accepted",
    "decode ragged at cap": "accepted",
    "4000 x 4000 PNG": "refused",
    "10 min stereo audio": "refused",
    "100 samples at sampling_rate=1": "refused",
    "decode ragged 20000 x 20001": "refused",
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _ragged(rows: int, width: int) -> list[int]:
    return [60, 1] * rows + [61] * width + [2]


def _prepare(name: str, tmp: Path):
    """Build the inputs of ``name`` (outside the measured part); returns a zero-argument callable."""
    import numpy as np
    from PIL import Image

    from pixelbytes import ActionPixelBytesTokenizer
    from pixelbytes.data.loading import _tokenize_one

    tok = ActionPixelBytesTokenizer()
    rng = np.random.default_rng(0)

    def noise(steps: int) -> np.ndarray:  # float32 stereo in [-1, 1), built without a float64 temporary
        clip = rng.random((2, steps), dtype=np.float32)
        clip *= 2
        clip -= 1
        return clip

    def store(row: dict) -> int:
        ids, ctx = _tokenize_one(tok, row)
        ids, ctx = ids.astype(np.int32), ctx.astype(np.int32).reshape(-1)  # what tokenize_samples stores
        return len(ids)

    if name == "image at cap":
        path = tmp / "cap.png"
        Image.fromarray(rng.integers(0, 256, (1448, 1448, 4), dtype=np.uint8), "RGBA").save(path, compress_level=1)
        return lambda: store({"image": str(path)})
    if name == "GIF at cap":
        path = tmp / "cap.gif"
        frames = [Image.fromarray(rng.integers(0, 256, (181, 181), dtype=np.uint8), "L").convert("P")
                  for _ in range(64)]  # fmt: skip
        for frame in frames:
            frame.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
        frames[0].save(path, save_all=True, append_images=frames[1:])
        return lambda: store({"image": str(path)})
    if name == "audio at cap":
        clip = {"array": noise(tok.max_audio_samples), "sampling_rate": 16000}
        return lambda: store({"audio": clip})
    if name == "audio, max down-ratio":
        clip = {"array": noise(int(tok.max_audio_samples * tok.max_resample_ratio)), "sampling_rate": 128000}
        return lambda: store({"audio": clip})
    if name == "audio, max up-ratio":
        clip = {"array": noise(int(tok.max_audio_samples / tok.max_resample_ratio)), "sampling_rate": 2000}
        return lambda: store({"audio": clip})
    if name == "decode ragged at cap":  # a 1448 x 1448 frame from 2,895 colour tokens
        ids = np.array(_ragged(1447, 1448))
        return lambda: (tok.decode_multimodal(ids), len(ids))[1]
    if name == "4000 x 4000 PNG":
        path = tmp / "big.png"
        Image.new("1", (4000, 4000)).save(path)
        return lambda: store({"image": str(path)})
    if name == "10 min stereo audio":
        clip = {"array": np.zeros((2, 600 * 16000), dtype=np.float32), "sampling_rate": 16000}
        return lambda: store({"audio": clip})
    if name == "100 samples at sampling_rate=1":
        clip = {"array": noise(100), "sampling_rate": 1}
        return lambda: store({"audio": clip})
    if name == "decode ragged 20000 x 20001":
        ids = np.array(_ragged(19999, 20001))
        return lambda: (tok.decode_multimodal(ids), len(ids))[1]
    raise SystemExit(f"unknown case {name!r}; choose from {list(CASES)}")


def run_case(name: str) -> dict:
    """Run one case in this process; returns its measurements."""
    with tempfile.TemporaryDirectory() as tmp:
        work = _prepare(name, Path(tmp))
        baseline = _rss_mib()
        start = time.perf_counter()
        try:
            tokens, outcome = work(), "accepted"
        except ValueError as err:
            limits = ("max_image_pixels", "max_audio_samples", "max_resample_ratio")
            tokens, outcome = 0, "refused: " + next((n for n in limits if n in str(err)), str(err)[:60])
        seconds = time.perf_counter() - start
    peak = _rss_mib()
    return {"case": name, "outcome": outcome, "tokens": tokens, "baseline_mib": baseline, "peak_mib": peak,
            "item_mib": peak - baseline, "seconds": seconds}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", help="run one case in this process and print its JSON")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    rows, failed = [], False
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for name, expected in CASES.items():
        done = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
            failed = True
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        if not row["outcome"].startswith(expected):
            print(f"{name}: expected {expected}, got {row['outcome']}", file=sys.stderr)
            failed = True
        rows.append(row)
    print("| case | outcome | tokens (in or out) | peak RSS (MiB) | above import + input (MiB) | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['outcome']} | {r['tokens']:,} | {r['peak_mib']:.0f} | {r['item_mib']:.0f} | "
              f"{r['seconds']:.2f} |")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

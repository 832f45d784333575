"""A tiny multimodal folder dataset (metadata.jsonl + GIFs + WAVs, two of them corrupt), built in code."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
from PIL import Image


def write_wav(path: Path, data: np.ndarray, rate: int) -> None:
    pcm = (np.clip(data, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(data.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.T.tobytes())


def make_folder_dataset(root: Path, n: int = 6, corrupt: bool = True) -> Path:
    """``n`` good samples (2-frame 7×6 GIF, 400-sample stereo 8 kHz WAV, caption) + 2 corrupt ones."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        frames = [Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)) for _ in range(2)]
        frames[0].save(root / "images" / f"{i}.gif", save_all=True, append_images=frames[1:])
        write_wav(root / "audio" / f"{i}.wav", rng.uniform(-1, 1, (2, 400)), 8000)
        rows.append(
            {"text": f"creature number {i}", "image": f"images/{i}.gif", "audio": f"audio/{i}.wav", "number": i}
        )
    if corrupt:
        (root / "images" / "bad.gif").write_bytes(b"GIF89a not really")
        (root / "audio" / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
        rows.append({"text": "broken image", "image": "images/bad.gif", "audio": "audio/0.wav"})
        rows.append({"text": "broken sound", "image": "images/0.gif", "audio": "audio/bad.wav"})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root

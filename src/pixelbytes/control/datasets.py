"""PixelBytes-OptimalControl datasets: closed-loop episodes as text + stereo (u, y) audio.

Schema (as ``ffurfaro/PixelBytes-OptimalControl``): ``{"audio": Audio(16000, mono=False), "text": string}``.

* ``text``: CSV (header + one row) describing the system and the controller: order, numerator / denominator of
  G(s) (exact ``ss2tf``), delay (s), measurement noise std, sample period, method, controller parameters, the
  setpoints, and the u / y ranges of the clip.
* ``audio``: stereo, channel 0 = u_k, channel 1 = y_{k+1} (the output one sample after the action; see
  :mod:`.loop`), one frame per control sample, written as 16-bit PCM WAV at a nominal 16000 Hz (the rate is a
  label; nothing is resampled). **Normalisation** is fixed, not per clip: ``u / u_max`` and ``y / y_scale``
  (both 1 by default: plants have DC gains in [0.7, 1.4] and the actuator saturates at ±1), clipped to [−1, 1].
  A fixed scale keeps the same physical value on the same token across clips and inside a control loop (the
  original's per-clip min-max did not). Tokenise with ``audio_normalization="none"``.
* Every clip starts with ``lead_in`` rest frames ``(0, 0)`` (the plant at rest before the episode), which the
  model controller also puts at the start of its history.

:func:`build_control_dataset` writes a folder per split (``train/`` and ``test/``, each a ``metadata.jsonl`` +
``audio/*.wav`` that ``pixelbytes train --dataset DIR/train`` reads) plus ``plants.json`` (every plant's
matrices and split, for held-out evaluation). The split is by PLANT, seeded. :func:`push_control_dataset` uploads
it to a Hub dataset repo as one parquet file per split with the schema above.
"""

from __future__ import annotations

import io
import json
import logging
import wave
from pathlib import Path
from typing import Any

import numpy as np

from .controllers import LQG, BangBang, Controller, tune_pid
from .loop import Trajectory, run_closed_loop, setpoint_schedule
from .plants import LTIPlant, random_plant

__all__ = [
    "CONTROLLERS",
    "TEXT_COLUMNS",
    "build_control_dataset",
    "episode_text",
    "load_plants",
    "make_controller",
    "normalize_frames",
    "push_control_dataset",
    "random_setpoints",
    "read_wav",
    "write_wav",
]

logger = logging.getLogger(__name__)

CONTROLLERS = ("bang-bang", "pid", "lqg")
TEXT_COLUMNS = ("order", "numerator", "denominator", "delay_s", "noise_std", "dt", "method", "controller_params",
                "setpoints", "u_range", "y_range")  # fmt: skip


def make_controller(name: str, plant: LTIPlant, seed: int = 0, u_max: float = 1.0) -> Controller:
    """A baseline controller by name: ``bang-bang``, ``pid`` (tuned for ``plant``) or ``lqg``."""
    if name == "bang-bang":
        return BangBang(seed=seed, u_max=u_max)
    if name == "pid":
        return tune_pid(plant, u_max=u_max)
    if name == "lqg":
        return LQG(plant, u_max=u_max)
    raise ValueError(f"unknown controller {name!r}; expected one of {CONTROLLERS}")


def random_setpoints(
    rng: np.random.Generator, segments: int = 2, magnitude: tuple[float, float] = (0.2, 0.6)
) -> list[float]:
    """``segments`` setpoints with random signs and magnitudes in ``magnitude`` (inside the normalised range)."""
    return [float(rng.choice([-1.0, 1.0]) * rng.uniform(*magnitude)) for _ in range(segments)]


def normalize_frames(traj: Trajectory, u_max: float = 1.0, y_scale: float = 1.0, lead_in: int = 4) -> np.ndarray:
    """The clip of an episode: ``(2, lead_in + N)`` float32, u / u_max and y_{k+1} / y_scale, clipped to [−1, 1]."""
    frames = traj.frames() / np.array([[u_max], [y_scale]], dtype=np.float32)
    rest = np.zeros((2, lead_in), dtype=np.float32)
    return np.clip(np.concatenate([rest, frames], axis=1), -1.0, 1.0)


def episode_text(plant: LTIPlant, controller: Controller, setpoints: list[float], clip: np.ndarray) -> str:
    """The CSV text (header + row) of an episode."""
    desc = plant.description()
    row = {
        **desc,
        "method": controller.name,
        "controller_params": json.dumps(controller.params()),
        "setpoints": json.dumps([round(v, 4) for v in setpoints]),
        "u_range": json.dumps([round(float(clip[0].min()), 4), round(float(clip[0].max()), 4)]),
        "y_range": json.dumps([round(float(clip[1].min()), 4), round(float(clip[1].max()), 4)]),
    }

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if ("," in value or '"' in value) else value

    return ",".join(TEXT_COLUMNS) + "\n" + ",".join(cell(row[c]) for c in TEXT_COLUMNS)


def write_wav(path: str | Path | io.BytesIO, clip: np.ndarray, sampling_rate: int = 16000) -> None:
    """Write a ``(C, N)`` clip in [−1, 1] as 16-bit PCM WAV."""
    clip = np.asarray(clip, dtype=np.float64)
    if clip.ndim != 2 or not np.all(np.isfinite(clip)):
        raise ValueError(f"expected a finite (channels, samples) clip, got shape {clip.shape}")
    pcm = np.round(np.clip(clip, -1.0, 1.0) * 32767).astype("<i2").T.copy()
    with wave.open(path if isinstance(path, io.BytesIO) else str(path), "wb") as handle:
        handle.setnchannels(clip.shape[0])
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV written by :func:`write_wav`: ``((C, N) float in [−1, 1], rate)``."""
    with wave.open(str(path), "rb") as handle:
        channels, rate = handle.getnchannels(), handle.getframerate()
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return (data.reshape(-1, channels).T / 32767.0), rate


def build_control_dataset(
    out_dir: str | Path,
    n_plants: int = 60,
    seed: int = 0,
    test_fraction: float = 0.2,
    orders: tuple[int, ...] = (1, 2, 3, 4, 5),
    controllers: tuple[str, ...] = CONTROLLERS,
    episodes_per_controller: int = 1,
    steps: int = 200,
    max_delay: int = 5,
    max_noise: float = 0.1,
    dt: float = 0.5,
    lead_in: int = 4,
    sampling_rate: int = 16000,
    include_text: bool = True,
) -> dict[str, Any]:
    """Simulate ``n_plants`` random plants with every controller and write the dataset folder (module docstring).

    Plant i has order ``orders[i % len(orders)]`` and is drawn from ``np.random.default_rng([seed, i])``; a seeded
    permutation puts ``round(n_plants * test_fraction)`` plants (at least one when ``test_fraction`` > 0) in
    ``test``. ``include_text=False`` leaves the text out of ``metadata.jsonl`` (the control vocabulary has only the
    bytes ``0`` and ``1``, so a model trained with it cannot read the description anyway). Returns a summary.
    """
    from tqdm.auto import tqdm

    if n_plants < 1:
        raise ValueError(f"n_plants must be >= 1, got {n_plants}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    for name in controllers:
        if name not in CONTROLLERS:
            raise ValueError(f"unknown controller {name!r}; expected one of {CONTROLLERS}")
    out = Path(out_dir)
    n_test = max(1, round(n_plants * test_fraction)) if test_fraction > 0 and n_plants > 1 else 0
    test_ids = set(np.random.default_rng(seed).permutation(n_plants)[:n_test].tolist())
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    plants_meta = []
    for i in tqdm(range(n_plants), desc="plants", disable=n_plants < 10):
        rng = np.random.default_rng([seed, i])
        split = "test" if i in test_ids else "train"
        plant = random_plant(orders[i % len(orders)], rng, max_delay=max_delay, max_noise=max_noise, dt=dt,
                             name=f"plant{i:04d}")  # fmt: skip
        plants_meta.append({**plant.to_dict(), "split": split, "index": i})
        folder = out / split / "audio"
        folder.mkdir(parents=True, exist_ok=True)
        for name in controllers:
            for e in range(episodes_per_controller):
                controller = make_controller(name, plant, seed=int(rng.integers(2**31)))
                levels = random_setpoints(rng)
                traj = run_closed_loop(plant, controller, setpoint_schedule(steps, levels), rng=rng)
                clip = normalize_frames(traj, lead_in=lead_in)
                file_name = f"{plant.name}_{name}_{e}.wav"
                write_wav(folder / file_name, clip, sampling_rate)
                row: dict[str, Any] = {"audio": f"audio/{file_name}"}
                if include_text:
                    row["text"] = episode_text(plant, controller, levels, clip)
                rows[split].append(row)
    for split, split_rows in rows.items():
        if split_rows:
            with open(out / split / "metadata.jsonl", "w", encoding="utf-8") as handle:
                for row in split_rows:
                    handle.write(json.dumps(row) + "\n")
    settings = {"seed": seed, "n_plants": n_plants, "test_fraction": test_fraction, "orders": list(orders),
                "controllers": list(controllers), "episodes_per_controller": episodes_per_controller, "steps": steps,
                "max_delay": max_delay, "max_noise": max_noise, "dt": dt, "lead_in": lead_in,
                "sampling_rate": sampling_rate, "u_max": 1.0, "y_scale": 1.0}  # fmt: skip
    (out / "plants.json").write_text(json.dumps({"settings": settings, "plants": plants_meta}, indent=1))
    summary = {**settings, "train_rows": len(rows["train"]), "test_rows": len(rows["test"]),
               "train_plants": n_plants - n_test, "test_plants": n_test}  # fmt: skip
    logger.info("wrote %s: %s", out, summary)
    return summary


def load_plants(out_dir: str | Path, split: str | None = "test") -> list[LTIPlant]:
    """The plants of a dataset folder's ``plants.json`` (of one ``split``, or all with ``None``)."""
    path = Path(out_dir) / "plants.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the dataset with `pixelbytes control build-dataset`")
    data = json.loads(path.read_text())
    return [LTIPlant.from_dict(p) for p in data["plants"] if split is None or p["split"] == split]


def push_control_dataset(out_dir: str | Path, repo_id: str, api: Any = None, token: str | None = None,
                         private: bool = False) -> Any:  # fmt: skip
    """Upload a folder from :func:`build_control_dataset` to the Hub dataset repo ``repo_id``.

    One parquet file per split (``data/{split}-00000-of-00001.parquet``; columns ``audio`` = ``{"bytes", "path"}``
    WAV cells, feature ``Audio(16000, num_channels=2, decode=False)``; and ``text``), ``plants.json``, a README card.
    ``api`` defaults to ``huggingface_hub.HfApi(token=token)`` (tests pass a fake).
    """
    import datasets
    from huggingface_hub import CommitOperationAdd, HfApi

    out = Path(out_dir)
    meta = json.loads((out / "plants.json").read_text())
    rate = int(meta["settings"]["sampling_rate"])
    operations = []
    counts = {}
    for split in ("train", "test"):
        meta_file = out / split / "metadata.jsonl"
        if not meta_file.is_file():
            continue
        rows = [json.loads(line) for line in meta_file.read_text().splitlines() if line.strip()]
        table = {
            "audio": [{"bytes": (out / split / r["audio"]).read_bytes(), "path": Path(r["audio"]).name} for r in rows],
            "text": [r.get("text", "") for r in rows],
        }
        # the WAV bytes are stored as they are (encoding through the decoder would need torchcodec)
        audio = datasets.Audio(sampling_rate=rate, num_channels=2, decode=False)
        buffer = io.BytesIO()
        datasets.Dataset.from_dict(table).cast_column("audio", audio).to_parquet(buffer)
        operations.append(CommitOperationAdd(f"data/{split}-00000-of-00001.parquet", buffer.getvalue()))
        counts[split] = len(rows)
    if not operations:
        raise ValueError(f"{out} holds no train/ or test/ metadata.jsonl: build it first")
    card = (
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        + "".join(f"  - split: {s}\n    path: data/{s}-*.parquet\n" for s in counts)
        + "tags:\n- pixelbytes\n- control\n---\n# PixelBytes OptimalControl\n\n"
        f"Closed-loop setpoint-following episodes ({counts}); settings: `{json.dumps(meta['settings'])}`.\n"
        "Audio: stereo (u_k, y_{k+1}) per control sample, fixed normalisation (u / u_max, y / y_scale), 16-bit PCM WAV "
        "at a nominal 16 kHz. Built with `pixelbytes control build-dataset`.\n"
    )
    operations.append(CommitOperationAdd("plants.json", (out / "plants.json").read_bytes()))
    operations.append(CommitOperationAdd("README.md", card.encode()))
    api = api if api is not None else HfApi(token=token)
    api.create_repo(repo_id=repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    return api.create_commit(repo_id=repo_id, repo_type="dataset", operations=operations,
                             commit_message="Upload PixelBytes control dataset", token=token)  # fmt: skip

"""Loading multimodal samples (text / image / audio) and tokenising them into an Arrow-backed store (DESIGN §8).

Sources: a Hub dataset id with ``image`` / ``text`` / ``audio`` columns (the ``ffurfaro/PixelBytes-PokemonAll``
schema; other columns such as ``number`` are ignored), a local folder holding ``metadata.jsonl`` (paths
relative to the folder, like ``../shared/data/pokemon-sample``), or parquet / arrow files. Audio is never
decoded by ``datasets`` (its decoder needs torchcodec, unusable on CPU-only torch): it is read with
``soundfile`` when installed, else the standard library ``wave`` module (PCM WAV), kept channels-first and
resampled by the tokenizer to its rate.

Unreadable items (corrupt GIF / WAV, undecodable text) are skipped and counted in a warning; a dataset
without any of the three columns is a clear error.
"""

from __future__ import annotations

import io
import json
import logging
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["MODALITY_COLUMNS", "decode_audio", "decode_image", "load_samples", "stream_lengths", "tokenize_samples"]

MODALITY_COLUMNS = ("text", "image", "audio")


def _read_wav_stdlib(source: Any) -> tuple[np.ndarray, int]:
    with wave.open(source, "rb") as handle:
        channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
        raw = handle.readframes(handle.getnframes())
    dtypes = {1: np.uint8, 2: np.int16, 4: np.int32}
    if width not in dtypes:
        raise ValueError(f"unsupported WAV sample width {width} bytes (install soundfile for other formats)")
    data = np.frombuffer(raw, dtype=dtypes[width]).astype(np.float32)
    data = (data - 128.0) / 128.0 if width == 1 else data / float(np.iinfo(dtypes[width]).max)
    return data.reshape(-1, channels).T.copy(), rate


def decode_audio(value: Any, base_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, int | None]:
    """Decode an audio cell into ``(channels-first array (C, N), sampling_rate)``.

    Accepts a path, ``{"bytes": ..., "path": ...}`` (``datasets.Audio(decode=False)``), an already decoded
    ``{"array": ..., "sampling_rate": ...}`` or a bare array (rate ``None``: the tokenizer's own rate).
    """
    if isinstance(value, dict) and "array" in value:
        array = np.asarray(value["array"], dtype=np.float32)
        return (array if array.ndim == 2 else array[None]), int(value["sampling_rate"])
    if isinstance(value, np.ndarray):  # an already decoded clip, taken to be at the tokenizer's rate
        return (value if value.ndim == 2 else value[None]), None
    data: bytes | None = None
    path: str | None = None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
    else:
        raise TypeError(f"cannot decode an audio value of type {type(value).__name__}")
    if data is None and path is not None and base_dir is not None and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    source: Any = io.BytesIO(data) if data is not None else path
    try:
        import soundfile
    except ImportError:
        return _read_wav_stdlib(source)
    try:
        array, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ValueError(f"cannot decode audio {path or '<bytes>'}: {err}") from err
    return array.T.copy(), int(rate)


def decode_image(value: Any) -> Any:
    """Open an image cell (``{"bytes", "path"}`` from ``datasets.Image(decode=False)``, a path or a PIL image)."""
    if isinstance(value, np.ndarray):  # already decoded frames; Arrow may widen uint8 pixels to int64
        if value.dtype != np.uint8 and np.issubdtype(value.dtype, np.integer) and value.size:
            if value.min() < 0 or value.max() > 255:
                raise ValueError(f"image array values must be in 0..255, got {value.min()}..{value.max()}")
            return value.astype(np.uint8)
        return value
    if isinstance(value, Image.Image) or value is None:
        return value
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        source: Any = io.BytesIO(data) if data is not None else path
    else:
        source = value
    try:
        image = Image.open(source)
        image.load()
    except (OSError, Image.DecompressionBombError) as err:
        raise ValueError(
            f"cannot decode image {value.get('path') if isinstance(value, dict) else value}: {err}"
        ) from err
    return image


def _folder_rows(folder: Path) -> list[dict[str, Any]]:
    meta = folder / "metadata.jsonl"
    rows = []
    with open(meta, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{meta}:{line_no}: invalid JSON ({err})") from err
            for key in ("image", "audio"):
                if isinstance(row.get(key), str):
                    row[key] = str(folder / row[key])
            rows.append(row)
    present = [key for key in MODALITY_COLUMNS if any(key in row for row in rows)]
    if not present:
        found = sorted({key for row in rows for key in row})
        raise ValueError(f"{meta}: no text / image / audio column (columns: {found})")
    return [{key: row.get(key) for key in present} for row in rows]


def load_samples(source: str | os.PathLike, split: str = "train") -> Any:
    """Load a multimodal ``datasets.Dataset`` with (a subset of) the columns text / image / audio.

    ``source``: a folder with ``metadata.jsonl``, a ``.parquet`` / ``.arrow`` file, or a Hub dataset id.
    Images and audio stay undecoded (``{"bytes", "path"}``): :func:`tokenize_samples` decodes each sample
    itself (every frame of animations) so a corrupt file only loses its own sample.
    """
    import datasets

    path = Path(source)
    if path.is_dir() and (path / "metadata.jsonl").exists():
        ds = datasets.Dataset.from_list(_folder_rows(path))
        if "image" in ds.column_names:
            ds = ds.cast_column("image", datasets.Image(decode=False))
    elif path.is_file() and path.suffix == ".parquet":
        ds = datasets.load_dataset("parquet", data_files=str(path), split=split)
    elif path.is_file() and path.suffix == ".arrow":
        ds = datasets.Dataset.from_file(str(path))
    elif path.exists():
        raise ValueError(f"{path} is neither a folder with metadata.jsonl nor a .parquet / .arrow file")
    else:
        ds = datasets.load_dataset(os.fspath(source), split=split)
    present = [c for c in MODALITY_COLUMNS if c in ds.column_names]
    if not present:
        raise ValueError(f"{source}: no text / image / audio column (columns: {ds.column_names})")
    if "audio" in present and isinstance(ds.features.get("audio"), datasets.Audio):
        ds = ds.cast_column("audio", datasets.Audio(decode=False))
    if "image" in present and isinstance(ds.features.get("image"), datasets.Image):
        ds = ds.cast_column("image", datasets.Image(decode=False))  # decoded per sample: corrupt files are skipped
    return ds.select_columns(present)


def _tokenize_one(tokenizer: Any, row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    audio = row.get("audio")
    rate = None
    if audio is not None:
        audio, rate = decode_audio(audio)
        if audio.shape[0] != tokenizer.audio_channels and audio.shape[0] == 1 and tokenizer.audio_channels == 2:
            audio = np.concatenate((audio, audio))
    image = decode_image(row.get("image"))
    enc = tokenizer(
        text=row.get("text"),
        images=image,
        audio=audio,
        sampling_rate=rate,
        return_context_ids=True,
        return_tensors="np",
    )
    return enc["input_ids"][0], enc["context_ids"][0]


def tokenize_samples(dataset: Any, tokenizer: Any, cache_file_name: str | None = None, desc: str = "Tokenizing") -> Any:
    """Tokenise every sample into ``input_ids`` (int32), flattened ``context_ids`` (int32, L·6) and ``length``.

    Unreadable samples are dropped (their count is logged). With ``cache_file_name`` the result is written
    to (and reused from) that Arrow file, so windows are later read from disk, not RAM.
    """
    failures: list[str] = []

    def encode(row: dict[str, Any], idx: int) -> dict[str, Any]:
        try:
            ids, ctx = _tokenize_one(tokenizer, row)
        except (ValueError, OSError, EOFError, TypeError, wave.Error) as err:
            failures.append(f"sample {idx}: {err}")
            ids, ctx = np.zeros(0, dtype=np.int32), np.zeros((0, 6), dtype=np.int32)
        return {"input_ids": ids.astype(np.int32), "context_ids": ctx.astype(np.int32).reshape(-1), "length": len(ids)}

    tokenized = dataset.map(
        encode,
        with_indices=True,
        remove_columns=dataset.column_names,
        cache_file_name=cache_file_name,
        load_from_cache_file=cache_file_name is not None,
        writer_batch_size=64,  # long streams: keep few rows in RAM before they are flushed to the Arrow file
        desc=desc,
    )
    if failures:
        logger.warning("skipped %d unreadable sample(s): %s", len(failures), "; ".join(failures[:5]))
    kept = tokenized.filter(lambda n: n > 0, input_columns="length")
    return kept.with_format("numpy")


def stream_lengths(tokenized: Any) -> list[int]:
    """Stream lengths of a tokenised store (read from its ``length`` column, not from the streams)."""
    return [int(n) for n in tokenized.with_format(None)["length"]]

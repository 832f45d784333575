"""Loading multimodal samples (text / image / audio) and tokenising them into an Arrow-backed store (DESIGN §8).

Sources: a Hub dataset id with ``image`` / ``text`` / ``audio`` columns (the ``ffurfaro/PixelBytes-PokemonAll``
schema; other columns such as ``number`` are ignored), a local folder holding ``metadata.jsonl`` (paths
relative to the folder, like ``../shared/data/pokemon-sample``), or parquet / arrow files. Audio is never
decoded by ``datasets`` (its decoder needs torchcodec, unusable on CPU-only torch): it is read with
``soundfile`` when installed, else the standard library ``wave`` module (PCM WAV), kept channels-first and
resampled by the tokenizer to its rate.

Unreadable items (corrupt GIF / WAV, undecodable text) are skipped and counted in a warning; so are rows of a
folder's ``metadata.jsonl`` that cannot be used (invalid JSON, a value of the wrong type such as ``"text": 123``, a
missing image / audio file), each named by ``metadata.jsonl:LINE`` and its reason. ``strict=True`` (``--strict``)
makes every one of them an error instead. A dataset without any of the three columns is a clear error.

:func:`tokenization_fingerprint` keys the cached tokenised store on everything its tokens depend on.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "MODALITY_COLUMNS",
    "decode_audio",
    "decode_image",
    "load_samples",
    "save_tokenized",
    "stream_lengths",
    "tokenization_fingerprint",
    "tokenize_samples",
]

MODALITY_COLUMNS = ("text", "image", "audio")
#: columns of a pre-tokenised file written by :func:`save_tokenized`
PRETOKENIZED_COLUMNS = ("input_ids", "tokenizer_key", "length")


def tokenizer_key(tokenizer: Any) -> str:
    """A short key of everything ids depend on (encoding settings + vocabulary), stored with pre-tokenised data.
    The size limits (``max_*``) only decide which samples are accepted, not their ids: they are left out."""
    settings = {k: v for k, v in tokenizer.encoding_settings.items() if not k.startswith("max_")}
    state = {"settings": settings, "vocabulary": tokenizer.vocabulary.fingerprint}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def save_tokenized(tokenized: Any, path: str | os.PathLike, tokenizer: Any) -> Path:
    """Write a tokenised store (:func:`tokenize_samples`) as a compact parquet file of ids (uint8 when the
    vocabulary fits in a byte) with the tokenizer's key on every row, for machines without the raw files;
    :func:`load_samples` reads it back and :func:`tokenize_samples` checks the key and derives the contexts."""
    import datasets

    path = Path(path)
    if path.suffix != ".parquet":
        raise ValueError(f"pre-tokenised data is written as .parquet, got {path}")
    dtype = "uint8" if tokenizer.vocabulary.vocab_size <= 256 else "uint16"
    key = tokenizer_key(tokenizer)
    plain = tokenized.with_format(None)
    table = datasets.Dataset.from_dict(
        {"input_ids": plain["input_ids"], "tokenizer_key": [key] * len(plain), "length": plain["length"]},
        features=datasets.Features({
            "input_ids": datasets.Sequence(datasets.Value(dtype)),
            "tokenizer_key": datasets.Value("string"),
            "length": datasets.Value("int64"),
        }),
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(str(path))
    return path


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


_MAX_LISTED = 20


def _row_problem(row: Any, folder: Path) -> tuple[str, str] | None:
    """``(kind, reason)`` when a ``metadata.jsonl`` row cannot be used, else ``None``."""
    if not isinstance(row, dict):
        return "wrong type", f"a row must be a JSON object, got {type(row).__name__}"
    for key in MODALITY_COLUMNS:
        value = row.get(key)
        if value is not None and not isinstance(value, str):
            what = "a string" if key == "text" else "a file path (string)"
            return "wrong type", f"{key!r} must be {what} or null, got {type(value).__name__} {str(value)[:40]!r}"
    for key in ("image", "audio"):
        value = row.get(key)
        if value is not None and not (folder / value).is_file():
            return "missing file", f"{key} file {value!r} not found ({folder / value})"
    if all(row.get(key) is None for key in MODALITY_COLUMNS):
        return "empty row", "no text, image or audio"
    return None


def _folder_rows(folder: Path, strict: bool = False) -> list[dict[str, Any]]:
    """The usable rows of ``folder/metadata.jsonl`` (image / audio paths made absolute).

    Rows with invalid JSON, a value of the wrong type, a missing file or no modality are skipped with a warning
    naming ``metadata.jsonl:LINE`` and the reason, and counted in a summary; with ``strict`` they are a
    ``ValueError`` listing them all.
    """
    meta = folder / "metadata.jsonl"
    parsed: list[tuple[int, Any]] = []
    problems: list[tuple[int, str, str]] = []  # (line, kind, "file:line: reason")
    with open(meta, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                parsed.append((line_no, json.loads(line)))
            except json.JSONDecodeError as err:
                problems.append((line_no, "invalid JSON", f"{meta}:{line_no}: invalid JSON ({err})"))
    objects = [row for _, row in parsed if isinstance(row, dict)]
    present = [key for key in MODALITY_COLUMNS if any(key in row for row in objects)]
    if not present:
        found = sorted({key for row in objects for key in row})
        raise ValueError(f"{meta}: no text / image / audio column (columns: {found})")
    rows = []
    for line_no, row in parsed:
        problem = _row_problem(row, folder)
        if problem is not None:
            problems.append((line_no, problem[0], f"{meta}:{line_no}: {problem[1]}"))
            continue
        for key in ("image", "audio"):
            if isinstance(row.get(key), str):
                row[key] = str(folder / row[key])
        rows.append({key: row.get(key) for key in present})
    if problems:
        problems.sort()
        listed = [message for _, _, message in problems[:_MAX_LISTED]]
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        if strict:
            header = f"{len(problems)} unusable row(s) in {meta} (strict mode):"
            raise ValueError("\n  ".join([header, *listed]) + more)
        for message in listed:
            logger.warning("skipped row %s", message)
        kinds = ", ".join(f"{n} {kind}" for kind, n in Counter(kind for _, kind, _ in problems).items())
        logger.warning(
            "skipped %d of %d row(s) of %s (%s)%s; pass strict=True (--strict) to make this an error",
            len(problems), len(problems) + len(rows), meta, kinds, more,
        )  # fmt: skip
    if not rows:
        raise ValueError(f"{meta}: no usable row ({len(problems)} skipped)")
    return rows


def load_samples(source: str | os.PathLike, split: str = "train", strict: bool = False) -> Any:
    """Load a multimodal ``datasets.Dataset`` with (a subset of) the columns text / image / audio.

    ``source``: a folder with ``metadata.jsonl``, a ``.parquet`` / ``.arrow`` file, or a Hub dataset id.
    Images and audio stay undecoded (``{"bytes", "path"}``): :func:`tokenize_samples` decodes each sample
    itself (every frame of animations) so a corrupt file only loses its own sample. Unusable rows of a
    ``metadata.jsonl`` (invalid JSON, wrong types, missing files) are skipped with a warning naming
    ``file:line`` and the reason, or, with ``strict``, a ``ValueError`` listing them.
    """
    import datasets

    path = Path(source)
    if path.is_dir() and (path / "metadata.jsonl").exists():
        ds = datasets.Dataset.from_list(_folder_rows(path, strict=strict))
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
    if "input_ids" in ds.column_names:  # pre-tokenised (save_tokenized): ids, their tokenizer's key, lengths
        return ds.select_columns([c for c in PRETOKENIZED_COLUMNS if c in ds.column_names])
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


def tokenize_samples(
    dataset: Any,
    tokenizer: Any,
    cache_file_name: str | None = None,
    desc: str = "Tokenizing",
    strict: bool = False,
) -> Any:
    """Tokenise every sample into ``input_ids`` (int32), flattened ``context_ids`` (int32, L·6) and ``length``.

    Unreadable samples (corrupt files, inputs beyond the tokenizer's limits) are dropped and their count is
    logged; with ``strict`` the first one is a ``ValueError``. With ``cache_file_name`` the result is written to
    (and reused from) that Arrow file, so windows are later read from disk, not RAM: name it after
    :func:`tokenization_fingerprint` so that it is never reused for other tokens.
    """
    if "input_ids" in dataset.column_names:
        return _contexts_of_pretokenized(dataset, tokenizer, cache_file_name, desc)
    failures: list[str] = []
    if cache_file_name is not None and os.path.exists(cache_file_name):
        logger.info("reusing the tokenised store %s", cache_file_name)

    def encode(row: dict[str, Any], idx: int) -> dict[str, Any]:
        try:
            ids, ctx = _tokenize_one(tokenizer, row)
        except (ValueError, OSError, EOFError, TypeError, wave.Error) as err:
            if strict:
                raise ValueError(f"sample {idx}: {err} (strict mode)") from err
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


def _contexts_of_pretokenized(dataset: Any, tokenizer: Any, cache_file_name: str | None, desc: str) -> Any:
    """The store of pre-tokenised rows: their tokenizer key is checked, the contexts derived from the ids."""
    from ..layout import stream_contexts

    expected = tokenizer_key(tokenizer)
    keys = set(dataset["tokenizer_key"]) if "tokenizer_key" in dataset.column_names else {None}
    if keys != {expected}:
        raise ValueError(
            f"tokenizer/data mismatch: these pre-tokenised ids were made by another tokenizer (key "
            f"{sorted(map(str, keys))}, this one is {expected}): re-tokenise the raw data with this tokenizer"
        )
    vocab_size = tokenizer.vocabulary.vocab_size

    def encode(row: dict[str, Any], idx: int) -> dict[str, Any]:
        ids = np.asarray(row["input_ids"], dtype=np.int64)
        if ids.size and ids.max() >= vocab_size:
            raise ValueError(f"sample {idx}: id {int(ids.max())} is outside the tokenizer's {vocab_size} ids")
        ctx = stream_contexts(ids, tokenizer.token_classes, tokenizer.audio_channels)[1:]
        return {"input_ids": ids.astype(np.int32), "context_ids": ctx.astype(np.int32).reshape(-1), "length": len(ids)}

    tokenized = dataset.map(
        encode, with_indices=True, remove_columns=dataset.column_names, cache_file_name=cache_file_name,
        load_from_cache_file=cache_file_name is not None, writer_batch_size=64, desc=f"{desc} (contexts)",
    )  # fmt: skip
    return tokenized.filter(lambda n: n > 0, input_columns="length").with_format("numpy")


def stream_lengths(tokenized: Any) -> list[int]:
    """Stream lengths of a tokenised store (read from its ``length`` column, not from the streams)."""
    return [int(n) for n in tokenized.with_format(None)["length"]]


def _referenced_paths(dataset: Any) -> list[str]:
    """The file paths of the ``image`` / ``audio`` columns (strings, or the ``path`` of ``{"bytes", "path"}``
    cells), read from the Arrow table without decoding or copying any file content."""
    import pyarrow as pa
    import pyarrow.compute as pc

    paths: list[str] = []
    arrow = dataset.with_format("arrow")
    for column in ("image", "audio"):
        if column not in dataset.column_names:
            continue
        values = arrow[column]
        if isinstance(values, pa.Table):
            values = values.column(0)
        if pa.types.is_struct(values.type):
            if values.type.get_field_index("path") < 0:
                continue
            values = pc.struct_field(values, "path")
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            paths.extend(p for p in values.to_pylist() if p)
    return paths


def tokenization_fingerprint(dataset: Any, tokenizer: Any) -> str:
    """A key (hex) of everything the tokens of ``dataset`` depend on, for naming a cached tokenised store.

    It covers the dataset's own fingerprint (its rows), the tokenizer's class, encoding settings and vocabulary
    fingerprint, the ``pixelbytes`` version, and the size and modification time (ns) of every file the rows
    reference (so an image edited in place, or a missing file that appears, changes the key).
    """
    from .. import __version__

    settings = getattr(tokenizer, "encoding_settings", None)
    vocabulary = getattr(tokenizer, "vocabulary", None)
    files = []
    for path in _referenced_paths(dataset):
        try:
            stat = os.stat(path)
            files.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            files.append((path, None, None))
    state = {
        "dataset": getattr(dataset, "_fingerprint", None),
        "tokenizer": type(tokenizer).__name__,
        "settings": settings,
        "vocabulary": vocabulary.fingerprint if vocabulary is not None else None,
        "tables": vocabulary.to_dict() if vocabulary is not None else None,  # exact levels, not their 4-digit names
        "pixelbytes": __version__,
        "files": files,
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=repr).encode()).hexdigest()[:32]

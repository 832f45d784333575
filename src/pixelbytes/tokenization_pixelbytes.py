"""``ActionPixelBytesTokenizer``: the Hugging Face tokenizer of PixelBytes (text + images + audio).

On text it behaves like any HF tokenizer (``tok("hello")``, ``encode``, ``decode`` → ``str``, batches,
padding, tensors). Called with ``images=`` and/or ``audio=`` it turns each sample into ONE flat
stream ``[text…, 2][image frames…][audio frames…, terminator]`` and, with
``return_context_ids=True``, the HF-aligned PxBy contexts ``(L, 6)`` (row k = context of position
k + 1, DESIGN §5). The codec logic lives in :mod:`.codecs`, the layout in :mod:`.layout`; this
module is only the HF glue.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from transformers import BatchEncoding, PreTrainedTokenizer

from .codecs import (
    AUDIO_NORMALIZATIONS,
    DEFAULT_MAX_AUDIO_SAMPLES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_RESAMPLE_RATIO,
    decode_stream,
    encode_audio,
    encode_image,
    encode_text,
    id_dtype,
    save_image,
    save_wav,
)
from .layout import AUDIO, IMAGE, TEXT, assemble_blocks, batch_context_ids, batch_windows
from .vocabulary import PAD_ID, ROW_ID, SEP_ID, PxByVocabulary, default_vocabulary

logger = logging.getLogger(__name__)

VOCAB_FILE_NAME = "pxby_vocab.json"

__all__ = ["ActionPixelBytesTokenizer", "MultimodalOutput"]


@dataclass
class MultimodalOutput:
    """What :meth:`ActionPixelBytesTokenizer.decode_multimodal` returns.

    Attributes:
        text: the text blocks joined by newlines.
        images: one list of RGB PIL frames per image block.
        audios: one ``(C, T)`` float32 array in [-1, 1] per audio block.
        sampling_rate: the tokenizer's rate divided by its ``audio_stride`` (the rate of ``audios``).
    """

    text: str = ""
    images: list[list[Image.Image]] = field(default_factory=list)
    audios: list[np.ndarray] = field(default_factory=list)
    sampling_rate: int = 16000

    @property
    def frames(self) -> list[Image.Image]:
        """Frames of the first image (empty when the stream holds no image)."""
        return self.images[0] if self.images else []

    @property
    def audio(self) -> np.ndarray | None:
        """The first audio clip ``(C, T)``, or ``None``."""
        return self.audios[0] if self.audios else None

    def save_image(self, path: str | os.PathLike, duration_ms: int = 100) -> None:
        """Save the first image as GIF (animated) or PNG."""
        if not self.images:
            raise ValueError("the decoded stream holds no image")
        save_image(path, self.frames, duration_ms)

    def save_audio(self, path: str | os.PathLike) -> None:
        """Save the first audio clip as a 16-bit WAV at :attr:`sampling_rate`."""
        if self.audio is None:
            raise ValueError("the decoded stream holds no audio")
        save_wav(path, self.audio, self.sampling_rate)


def _is_batch(value: Any, single_types: tuple[type, ...]) -> bool:
    return isinstance(value, (list, tuple)) and not isinstance(value, single_types)


class ActionPixelBytesTokenizer(PreTrainedTokenizer):
    """Tokenizer for unified text + pixel-art + audio/action streams (PixelBytes, Furfaro 2024).

    Args:
        vocab_file: a ``pxby_vocab.json`` (written by ``save_pretrained``); default = the published tables.
        vocabulary: a :class:`~pixelbytes.vocabulary.PxByVocabulary` to use instead (e.g.
            :func:`~pixelbytes.vocabulary.control_vocabulary`); saved to ``pxby_vocab.json``.
        image_stride: keep every n-th row and column of images.
        frame_stride: keep every n-th frame of animations (default: 1).
        audio_stride: keep every n-th audio time step.
        data_slicing: the original setting, ``{"image": s, "audio": a}`` (or an int for both): sets
            ``image_stride = frame_stride = s`` and ``audio_stride = a``.
        audio_normalization: ``"minmax"`` (default), ``"zscore"`` or ``"none"`` (see :mod:`.codecs`).
        audio_channels: channels of every audio clip (2: channel 0 = action / cry, 1 = state / filtered).
        sampling_rate: the rate clips are tokenised at; clips at another rate are FFT-resampled.
        image_background: RGB colour alpha is composited on (default white); ``None`` = plain
            ``convert("RGB")`` as the original tokenizer.
        max_image_pixels: frames × height × width above which an image is refused (decompression bombs), and above
            which an image block of a (malformed) stream is not decoded; ``None`` = no limit. The default, 2,097,152,
            keeps one image's tokenisation around 0.2 GB of peak memory (``benchmarks/bench_limits.py``).
        max_audio_samples: time steps per channel of one clip after resampling (before ``audio_stride``) above which
            it is refused; ``None`` = no limit. Default 1,048,576 (65.5 s at 16 kHz).
        max_resample_ratio: a clip whose rate is more than this many times above or below ``sampling_rate`` is
            refused (``sampling_rate=1`` would turn 100 samples into 1.6 million); ``None`` = no limit. Default 8.

    Every limit is a clear ``ValueError`` naming the setting; all are saved with ``save_pretrained``.
    """

    vocab_files_names = {"vocab_file": VOCAB_FILE_NAME}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | None = None,
        image_stride: int = 1,
        frame_stride: int | None = None,
        audio_stride: int = 1,
        data_slicing: int | dict[str, int] | None = None,
        audio_normalization: str = "minmax",
        audio_channels: int = 2,
        sampling_rate: int = 16000,
        image_background: Sequence[int] | None = (255, 255, 255),
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        max_audio_samples: int | None = DEFAULT_MAX_AUDIO_SAMPLES,
        max_resample_ratio: float | None = DEFAULT_MAX_RESAMPLE_RATIO,
        pad_token: str = "\x00",
        row_token: str = "\t",
        sep_token: str = "\n",
        vocabulary: PxByVocabulary | None = None,
        **kwargs: Any,
    ) -> None:
        if vocabulary is not None and vocab_file is not None:
            raise ValueError("pass either vocab_file or vocabulary, not both")
        self.vocabulary = vocabulary if vocabulary is not None else self._load_vocabulary(vocab_file)
        if data_slicing is not None:
            image_stride, frame_stride, audio_stride = self._strides_from_slicing(data_slicing)
        frame_stride = 1 if frame_stride is None else frame_stride
        for name, value in (("image_stride", image_stride), ("frame_stride", frame_stride),
                            ("audio_stride", audio_stride), ("audio_channels", audio_channels),
                            ("sampling_rate", sampling_rate)):  # fmt: skip
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if audio_normalization not in AUDIO_NORMALIZATIONS:
            raise ValueError(
                f"unknown audio_normalization {audio_normalization!r}; expected one of {AUDIO_NORMALIZATIONS}"
            )
        if image_background is not None:
            image_background = [int(v) for v in image_background]
            if len(image_background) != 3 or any(not 0 <= v < 256 for v in image_background):
                raise ValueError(f"image_background must be None or 3 values in [0, 255], got {image_background}")
        for name, value in (("max_image_pixels", max_image_pixels), ("max_audio_samples", max_audio_samples)):
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if max_resample_ratio is not None and (
            isinstance(max_resample_ratio, bool)
            or not isinstance(max_resample_ratio, (int, float, np.integer, np.floating))
            or not 1.0 <= max_resample_ratio < float("inf")
        ):
            raise ValueError(f"max_resample_ratio must be a finite number >= 1 or None, got {max_resample_ratio!r}")
        self.image_stride, self.frame_stride = int(image_stride), int(frame_stride)
        self.audio_stride = int(audio_stride)
        self.audio_normalization = audio_normalization
        self.audio_channels = int(audio_channels)
        self.sampling_rate = int(sampling_rate)
        self.image_background = image_background
        self.max_image_pixels = None if max_image_pixels is None else int(max_image_pixels)
        self.max_audio_samples = None if max_audio_samples is None else int(max_audio_samples)
        self.max_resample_ratio = None if max_resample_ratio is None else float(max_resample_ratio)
        #: characters dropped from texts because they have no token (counted since construction)
        self.dropped_characters = 0
        super().__init__(
            pad_token=pad_token,
            row_token=row_token,
            sep_token=sep_token,
            image_stride=self.image_stride,
            frame_stride=self.frame_stride,
            audio_stride=self.audio_stride,
            audio_normalization=audio_normalization,
            audio_channels=self.audio_channels,
            sampling_rate=self.sampling_rate,
            image_background=image_background,
            max_image_pixels=self.max_image_pixels,
            max_audio_samples=self.max_audio_samples,
            max_resample_ratio=self.max_resample_ratio,
            **kwargs,
        )
        if (self.pad_token_id, self.convert_tokens_to_ids(row_token), self.sep_token_id) != (PAD_ID, ROW_ID, SEP_ID):
            raise ValueError("pad/row/sep tokens must be the bytes \\x00, \\t, \\n (ids 0, 1, 2)")

    # ---------------------------------------------------------------------------------------------
    # construction helpers
    # ---------------------------------------------------------------------------------------------
    @staticmethod
    def _load_vocabulary(vocab_file: str | None) -> PxByVocabulary:
        if vocab_file is None:
            return default_vocabulary()
        try:
            with open(vocab_file, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read the PixelBytes vocabulary file {vocab_file!r}: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{vocab_file!r} is not a PixelBytes vocabulary (expected a JSON object)")
        return PxByVocabulary.from_dict(data)

    @staticmethod
    def _strides_from_slicing(data_slicing: int | dict[str, int]) -> tuple[int, int, int]:
        if isinstance(data_slicing, int):
            return data_slicing, data_slicing, data_slicing
        if not isinstance(data_slicing, dict) or set(data_slicing) - {"image", "audio"}:
            raise ValueError(f"data_slicing must be an int or a dict with keys 'image'/'audio', got {data_slicing!r}")
        image, audio = int(data_slicing.get("image", 1)), int(data_slicing.get("audio", 1))
        return image, image, audio

    @property
    def encoding_settings(self) -> dict[str, Any]:
        """Every setting the ids of a sample depend on, besides the vocabulary (``data_slicing`` is folded into the
        strides); used to key cached tokenised datasets (:func:`pixelbytes.data.tokenization_fingerprint`)."""
        return {
            "image_stride": self.image_stride,
            "frame_stride": self.frame_stride,
            "audio_stride": self.audio_stride,
            "audio_normalization": self.audio_normalization,
            "audio_channels": self.audio_channels,
            "sampling_rate": self.sampling_rate,
            "image_background": None if self.image_background is None else list(self.image_background),
            "max_image_pixels": self.max_image_pixels,
            "max_audio_samples": self.max_audio_samples,
            "max_resample_ratio": self.max_resample_ratio,
        }

    # ---------------------------------------------------------------------------------------------
    # vocabulary API required by PreTrainedTokenizer
    # ---------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.vocabulary.vocab_size

    @property
    def token_classes(self) -> np.ndarray:
        """Layout class of every id (see :mod:`.vocabulary`)."""
        return self.vocabulary.token_classes

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocabulary.token_to_id, **self.added_tokens_encoder)

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """Text → byte tokens. Unlike the base class, separators typed in the text are NOT special:
        whitespace becomes a space (DESIGN §4)."""
        return self._tokenize(text)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        ids, dropped = encode_text(text, self.vocabulary, terminate=False)
        self._count_dropped(dropped, text)
        tokens = self.vocabulary.tokens
        return [tokens[i] for i in ids.tolist()]

    def _count_dropped(self, dropped: int, text: str) -> None:
        """Count characters without a token; warn on the first occurrence (the total is ``dropped_characters``)."""
        if not dropped:
            return
        if not self.dropped_characters:
            logger.warning(
                "dropped %d character(s) with no token in the vocabulary from %r; further drops are only counted "
                "in tokenizer.dropped_characters",
                dropped,
                text[:80],
            )
        self.dropped_characters += dropped

    def _convert_token_to_id(self, token: str) -> int:
        try:
            return self.vocabulary.token_to_id[token]
        except KeyError:
            raise ValueError(f"unknown token {token!r}: not in the PixelBytes vocabulary") from None

    def _convert_id_to_token(self, index: int) -> str:
        if not 0 <= index < self.vocabulary.vocab_size:
            raise ValueError(f"token id {index} is outside the vocabulary (size {self.vocabulary.vocab_size})")
        return self.vocabulary.tokens[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Byte tokens are joined and UTF-8 decoded; colour / level tokens keep their names."""
        out: list[str] = []
        pending = bytearray()
        for token in tokens:
            if len(token) == 1:
                pending.append(ord(token))
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            out.append(token)
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        """A text row ends with the separator (id 2); a pair is two terminated rows."""
        ids = [*token_ids_0, SEP_ID]
        return ids if token_ids_1 is None else [*ids, *token_ids_1, SEP_ID]

    def get_special_tokens_mask(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None, already_has_special_tokens: bool = False
    ) -> list[int]:
        if already_has_special_tokens:
            return [int(i in (PAD_ID, ROW_ID, SEP_ID)) for i in token_ids_0]
        mask = [0] * len(token_ids_0) + [1]
        return mask if token_ids_1 is None else mask + [0] * len(token_ids_1) + [1]

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        if not os.path.isdir(save_directory):
            raise ValueError(f"save_directory {save_directory!r} is not a directory")
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + VOCAB_FILE_NAME)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.vocabulary.to_dict(), handle, ensure_ascii=True, indent=1)
        return (path,)

    # ---------------------------------------------------------------------------------------------
    # multimodal encoding
    # ---------------------------------------------------------------------------------------------
    def encode_sample_blocks(
        self,
        text: str | None = None,
        image: Any = None,
        audio: Any = None,
        sampling_rate: int | None = None,
        terminate_text: bool = True,
        dtype: Any = np.int64,
    ) -> list[tuple[int, np.ndarray]]:
        """One sample → its ``(kind, grid)`` blocks in stream order (text, image, audio); image and audio grids
        in ``dtype`` (it must hold every id: :func:`~pixelbytes.codecs.id_dtype`), text ids in int64."""
        blocks: list[tuple[int, np.ndarray]] = []
        if text is not None:
            ids, dropped = encode_text(text, self.vocabulary, terminate=terminate_text or image is not None
                                       or audio is not None)  # fmt: skip
            self._count_dropped(dropped, text)
            blocks.append((TEXT, ids.reshape(1, 1, -1)))
        if image is not None:
            grid = encode_image(
                image,
                self.vocabulary,
                image_stride=self.image_stride,
                frame_stride=self.frame_stride,
                background=self.image_background,
                max_pixels=self.max_image_pixels,
                dtype=dtype,
            )
            blocks.append((IMAGE, grid))
        if audio is not None:
            if not self.vocabulary.has_levels:
                raise ValueError(
                    f"this tokenizer's {self.vocabulary.vocab_size}-id vocabulary has no action / audio levels "
                    "(e.g. the v1 vocabulary: bytes and colours only): it cannot encode audio"
                )
            if isinstance(audio, dict) and sampling_rate is None:
                sampling_rate = audio.get("sampling_rate")
            grid = encode_audio(
                audio,
                self.vocabulary,
                channels=self.audio_channels,
                normalization=self.audio_normalization,
                stride=self.audio_stride,
                sampling_rate=sampling_rate,
                target_rate=self.sampling_rate,
                dtype=dtype,
                max_samples=self.max_audio_samples,
                max_resample_ratio=self.max_resample_ratio,
            )
            blocks.append((AUDIO, grid))
        if not blocks:
            raise ValueError("a sample needs at least one of text, images or audio")
        return blocks

    def __call__(
        self,
        text: str | list[str | None] | None = None,
        text_pair: str | list[str] | None = None,
        images: Any = None,
        audio: Any = None,
        sampling_rate: int | Sequence[int | None] | None = None,
        *,
        return_context_ids: bool = False,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        add_special_tokens: bool = True,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenise text (plain HF behaviour) or multimodal samples.

        ``text`` / ``images`` / ``audio`` (keywords) are each either one sample's value or a list with one
        entry per sample (``None`` entries allowed); ``text_pair`` (second positional, as in HF) is for text-only
        calls. Returns ``input_ids`` and ``attention_mask`` and, with
        ``return_context_ids=True``, ``context_ids`` of shape ``(L, 6)`` per sample. Single samples
        give flat lists unless ``return_tensors`` is set (then a batch of one, as in HF).
        """
        if images is None and audio is None and not return_context_ids:
            return super().__call__(
                text,
                text_pair,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_tensors=return_tensors,
                return_attention_mask=return_attention_mask,
                add_special_tokens=add_special_tokens,
                **kwargs,
            )
        if kwargs:
            raise TypeError(f"unexpected arguments for a multimodal call: {sorted(kwargs)}")
        if text_pair is not None:
            raise ValueError("text_pair is for text-only calls; a multimodal sample has one text")
        texts, imgs, clips, rates, batched = self._split_batch(text, images, audio, sampling_rate)
        streams, contexts = [], []
        narrow = id_dtype(self.vocabulary)  # grids and contexts are built narrow, cast to int64 once in _pad_streams
        for t, im, au, sr in zip(texts, imgs, clips, rates):
            blocks = self.encode_sample_blocks(t, im, au, sr, terminate_text=add_special_tokens, dtype=narrow)
            ids, ctx = assemble_blocks(blocks, hf_aligned=True, dtype=None)
            if truncation and max_length is not None:
                ids, ctx = ids[:max_length], ctx[:max_length]
            streams.append(ids)
            contexts.append(ctx)
        return self._pad_streams(
            streams,
            contexts if return_context_ids else None,
            batched=batched,
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side or self.padding_side,
            return_tensors=return_tensors,
            return_attention_mask=return_attention_mask is not False,
        )

    @staticmethod
    def _split_batch(text: Any, images: Any, audio: Any, sampling_rate: Any) -> tuple[list, list, list, list, bool]:
        if isinstance(audio, (list, tuple)) and audio and isinstance(audio[0], (int, float, np.number)):
            raise TypeError("audio must be a numpy array (C, N) or (N,), or a list of such arrays (a batch)")
        columns = {
            "text": (text, _is_batch(text, (str,))),
            "images": (images, _is_batch(images, (str, Image.Image, np.ndarray))),
            "audio": (audio, _is_batch(audio, (np.ndarray, dict))),
        }
        sizes = {name: len(value) for name, (value, is_batch) in columns.items() if is_batch}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"batched inputs must have the same number of samples, got {sizes}")
        batched = bool(sizes)
        n = next(iter(sizes.values())) if sizes else 1
        if batched and n == 0:
            raise ValueError("empty batch")

        def column(value: Any, is_batch: bool) -> list:
            return list(value) if is_batch else [value] * n

        rates = list(sampling_rate) if isinstance(sampling_rate, (list, tuple)) else [sampling_rate] * n
        if len(rates) != n:
            raise ValueError(f"got {len(rates)} sampling rates for {n} samples")
        return (*(column(v, b) for v, b in columns.values()), rates, batched)  # type: ignore[return-value]

    def _pad_streams(
        self,
        streams: list[np.ndarray],
        contexts: list[np.ndarray] | None,
        *,
        batched: bool,
        padding: bool | str,
        max_length: int | None,
        pad_to_multiple_of: int | None,
        padding_side: str,
        return_tensors: str | None,
        return_attention_mask: bool,
    ) -> BatchEncoding:
        lengths = [len(s) for s in streams]
        if padding is True or padding == "longest":
            target = max(lengths)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length")
            target = max_length
        elif padding in (False, None, "do_not_pad"):
            target = None
        else:
            raise ValueError(f"unknown padding strategy {padding!r}")
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if target is None and return_tensors is not None and len(set(lengths)) > 1:
            raise ValueError("samples have different lengths: pass padding=True to build tensors")
        width = max(max(lengths), target or 0)
        B = len(streams)
        if B == 1 and width == lengths[0]:  # nothing to pad: one int64 copy of the (narrow) stream and contexts
            data = {"input_ids": streams[0].astype(np.int64)[None], "attention_mask": np.ones((1, width), np.int64)}
            if contexts is not None:
                data["context_ids"] = contexts[0].astype(np.int64)[None]
        else:
            data = {"input_ids": np.zeros((B, width), dtype=np.int64), "attention_mask": np.zeros((B, width), np.int64)}
            if contexts is not None:
                data["context_ids"] = np.zeros((B, width, contexts[0].shape[1]), dtype=np.int64)
            for i, n in enumerate(lengths):
                span = slice(0, n) if padding_side == "right" else slice(width - n, width)
                data["input_ids"][i, span] = streams[i]
                data["attention_mask"][i, span] = 1
                if contexts is not None:
                    data["context_ids"][i, span] = contexts[i]
        if not return_attention_mask:
            del data["attention_mask"]
        if return_tensors is not None:
            if return_tensors == "pt":  # share the fresh arrays' memory (BatchEncoding would copy them)
                import torch

                data = {key: torch.from_numpy(value) for key, value in data.items()}
            return BatchEncoding(data, tensor_type=return_tensors)
        ragged = {key: [row[:n] if padding_side == "right" else row[width - n :] for row, n in zip(value, lengths)]
                  for key, value in data.items()} if target is None else data  # fmt: skip
        if batched:
            return BatchEncoding({key: [row.tolist() for row in value] for key, value in ragged.items()})
        return BatchEncoding({key: value[0].tolist() for key, value in ragged.items()})

    # ---------------------------------------------------------------------------------------------
    # contexts and decoding
    # ---------------------------------------------------------------------------------------------
    def context_ids(self, input_ids: Any, attention_mask: Any = None) -> np.ndarray:
        """HF-aligned ``(B, L, 6)`` contexts derived from ids alone (same result as ``return_context_ids``)."""
        mask = _to_numpy(attention_mask)
        return batch_context_ids(_to_numpy(input_ids), self.token_classes, self.audio_channels, mask)

    def window_ids(self, input_ids: Any, attention_mask: Any = None) -> np.ndarray:
        """v1 3×3 windows ``(B, L, 9)`` (row k = window of token k)."""
        mask = _to_numpy(attention_mask)
        return batch_windows(_to_numpy(input_ids), self.token_classes, self.audio_channels, mask)

    def decode_multimodal(self, token_ids: Any, attention_mask: Any = None) -> MultimodalOutput:
        """One stream → text, images (PIL frames) and audio ``(C, T)``.

        Positions with ``attention_mask == 0`` are dropped; without a mask, leading pad ids (left
        padding) are skipped. Works on any stream, including malformed generated ones, except that an image
        block larger than ``max_image_pixels`` once decoded is a ``ValueError`` (a malformed stream can describe a
        frame of height × width cells with height + width tokens). Ids must be integers and the mask as long as
        the stream (``TypeError`` / ``ValueError`` otherwise).
        """
        ids = _to_numpy(token_ids)
        if ids.ndim == 2 and ids.shape[0] == 1:
            ids = ids[0]
        if ids.ndim != 1:
            raise ValueError(f"decode_multimodal takes one stream (L,) or (1, L), got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"decode_multimodal takes integer token ids, got dtype {ids.dtype}")
        if attention_mask is not None:
            mask = _to_numpy(attention_mask)
            if mask.size != ids.size or (mask.ndim == 2 and mask.shape[0] != 1) or mask.ndim > 2:
                raise ValueError(
                    f"attention_mask of shape {tuple(mask.shape)} does not match the stream of {ids.size} token(s)"
                )
            if mask.size and not np.isin(mask, (0, 1)).all():
                raise ValueError("attention_mask must hold only 0 and 1")
            ids = ids[mask.reshape(-1).astype(bool)]
        else:
            first = np.flatnonzero(ids != PAD_ID)
            ids = ids[first[0] :] if len(first) else ids[:0]
        decoded = decode_stream(ids, self.vocabulary, self.audio_channels, max_pixels=self.max_image_pixels)
        return MultimodalOutput(
            text="\n".join(t for t in decoded.texts if t),
            images=[[Image.fromarray(frame, "RGB") for frame in frames] for frames in decoded.images],
            audios=decoded.audios,
            sampling_rate=max(1, self.sampling_rate // self.audio_stride),
        )


def _to_numpy(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)

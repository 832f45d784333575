"""Caption → sprite metrics: compare a generated sprite with its reference (the demo's held-out test).

A sprite is a sequence of RGB frames ``(F, H, W, 3)`` uint8 (a list of PIL images or arrays works too, and
``None`` means "no image was generated"). The *foreground* of a frame is every pixel that differs from
the sprite's background colour. Metrics of one pair:

``pixel_accuracy``
    Fraction of pixels equal in both sprites, over all frames. Frames (or rows / columns) present in
    only one of the two sprites count as wrong, so a wrong frame count or frame size is penalised.
    Dominated by the background: an all-background sprite already scores ``blank_pixel_accuracy``
    (75–100 % here), which is reported next to it as the trivial baseline.
``mask_iou``
    Intersection over union of the foreground masks pooled over all frames (missing frames have an
    empty mask). 1.0 when both sprites are entirely background. Ignores colours, not background.
``color_correct``
    1 when the generated sprite's dominant foreground colour (its most frequent non-background
    colour, pooled over frames) is the reference colour, else 0 (also 0 when nothing is drawn).
    Chance level: 1 / number of colours.
``shape_correct``
    1 when the generated foreground mask is strictly closer (IoU) to the reference shape's mask than
    to the mask of every other shape rendered with the same size and animation, else 0 (ties and
    empty drawings are wrong). Colour-blind: a right shape in the wrong colour still counts.
    Chance level: 1 / number of shapes.
``exact_match``
    1 when every frame is identical and the frame counts and sizes agree.

Why no "foreground accuracy" (the fraction of reference foreground pixels painted right): it never
looks at the background, so a model that floods the whole frame with the caption's colour scores
100 % on it. Pixel accuracy and mask IoU both punish such a blob (it scores a low IoU and a pixel
accuracy far below the blank baseline), so those two are reported together instead.

:func:`score_sprites` averages the metrics of ``(SpriteSpec, generated)`` pairs of the demo dataset
(:mod:`pixelbytes.data.synthetic`) and adds the chance levels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..data.synthetic import COLOURS, SHAPES, SpriteSpec

__all__ = [
    "blank_pixel_accuracy",
    "chance_levels",
    "color_correct",
    "dominant_color",
    "exact_match",
    "foreground_masks",
    "mask_iou",
    "pixel_accuracy",
    "score_sprite",
    "score_sprites",
    "shape_correct",
]

_MISSING_REF, _MISSING_GEN = -1, -2  # padding values: never equal to a colour, nor to each other


def _frame_array(frame: Any) -> np.ndarray:
    if hasattr(frame, "convert") and hasattr(frame, "size"):  # PIL image
        frame = frame.convert("RGB")
    arr = np.asarray(frame)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"a frame must be (H, W, 3) RGB, got shape {arr.shape}")
    return arr[..., :3].astype(np.int16)


def _frames(sprite: Any) -> list[np.ndarray]:
    """A sprite → list of ``(H, W, 3)`` int16 frames (``None`` → no frame)."""
    if sprite is None:
        return []
    if isinstance(sprite, np.ndarray):
        if sprite.ndim == 4:
            return [_frame_array(f) for f in sprite]
        if sprite.ndim in (2, 3) and (sprite.ndim == 2 or sprite.shape[-1] in (3, 4)):
            return [_frame_array(sprite)]
        raise ValueError(f"a sprite array must be (F, H, W, 3) or (H, W, 3), got shape {sprite.shape}")
    if hasattr(sprite, "convert"):
        return [_frame_array(sprite)]
    return [_frame_array(f) for f in sprite]


def _canvas(frames: list[np.ndarray], shape: tuple[int, int, int], fill: int) -> np.ndarray:
    out = np.full(shape + (3,), fill, dtype=np.int16)
    for i, frame in enumerate(frames):
        h, w = min(frame.shape[0], shape[1]), min(frame.shape[1], shape[2])
        out[i, :h, :w] = frame[:h, :w]
    return out


def _aligned(reference: Any, generated: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both sprites on a common ``(F, H, W, 3)`` canvas (the max of their sizes), missing cells padded."""
    ref, gen = _frames(reference), _frames(generated)
    frames = ref + gen
    shape = (
        max(len(ref), len(gen)),
        max((f.shape[0] for f in frames), default=0),
        max((f.shape[1] for f in frames), default=0),
    )
    return _canvas(ref, shape, _MISSING_REF), _canvas(gen, shape, _MISSING_GEN)


def _foreground(canvas: np.ndarray, background: Sequence[int]) -> np.ndarray:
    present = canvas[..., 0] >= 0
    return present & (canvas != np.asarray(background, dtype=np.int16)).any(-1)


def foreground_masks(sprite: Any, background: Sequence[int]) -> np.ndarray:
    """``(F, H, W)`` boolean masks of the pixels that differ from ``background``."""
    frames = _frames(sprite)
    if not frames:
        return np.zeros((0, 0, 0), dtype=bool)
    shape = (len(frames), max(f.shape[0] for f in frames), max(f.shape[1] for f in frames))
    return _foreground(_canvas(frames, shape, _MISSING_GEN), background)


def pixel_accuracy(reference: Any, generated: Any) -> float:
    """Fraction of equal pixels over all frames; cells present in only one sprite count as wrong."""
    ref, gen = _aligned(reference, generated)
    if ref.size == 0:
        return 1.0
    return float((ref == gen).all(-1).mean())


def exact_match(reference: Any, generated: Any) -> float:
    """1.0 when the sprites have the same frames (count, size and every pixel), else 0.0."""
    ref, gen = _frames(reference), _frames(generated)
    same = len(ref) == len(gen) and all(r.shape == g.shape and np.array_equal(r, g) for r, g in zip(ref, gen))
    return float(same)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mask_iou(reference: Any, generated: Any, background: Sequence[int]) -> float:
    """IoU of the foreground masks pooled over frames (missing frames are empty); 1.0 if both are empty."""
    ref, gen = _aligned(reference, generated)
    return _iou(_foreground(ref, background), _foreground(gen, background))


def dominant_color(sprite: Any, background: Sequence[int]) -> tuple[int, int, int] | None:
    """Most frequent non-background colour over all frames (ties: the smallest RGB), ``None`` if none."""
    frames = _frames(sprite)
    if not frames:
        return None
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames])
    pixels = pixels[(pixels != np.asarray(background, dtype=np.int16)).any(-1)]
    if len(pixels) == 0:
        return None
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return tuple(int(v) for v in colours[int(np.argmax(counts))])  # type: ignore[return-value]


def color_correct(
    reference: Any, generated: Any, background: Sequence[int], reference_color: Sequence[int] | None = None
) -> float:
    """1.0 when the generated dominant foreground colour is the reference colour (by default the
    reference's own dominant foreground colour), else 0.0."""
    target = tuple(int(v) for v in reference_color) if reference_color is not None else None
    if target is None:
        target = dominant_color(reference, background)
    return float(target is not None and dominant_color(generated, background) == target)


def shape_correct(generated: Any, background: Sequence[int], candidates: Mapping[str, Any], target: str) -> float:
    """1.0 when the generated foreground mask has a strictly higher IoU with ``candidates[target]`` than
    with every other candidate, else 0.0.

    ``candidates`` maps each shape name to its foreground masks (a bool array ``(F, H, W)``) or its
    rendered frames (uint8 ``(F, H, W, 3)``), all with the reference's size, animation and background.
    """
    if target not in candidates:
        raise ValueError(f"target shape {target!r} is not among the candidates {sorted(candidates)}")
    gen = foreground_masks(generated, background)
    scores = {}
    for name, cand in candidates.items():
        cand = np.asarray(cand)
        mask = cand if cand.dtype == bool else foreground_masks(cand, background)
        if mask.ndim == 2:
            mask = mask[None]
        F, H, W = (max(a, b) for a, b in zip(mask.shape, gen.shape))
        a = np.zeros((F, H, W), dtype=bool)
        b = np.zeros((F, H, W), dtype=bool)
        a[: mask.shape[0], : mask.shape[1], : mask.shape[2]] = mask
        b[: gen.shape[0], : gen.shape[1], : gen.shape[2]] = gen
        scores[name] = _iou(a, b)
    best_other = max((v for k, v in scores.items() if k != target), default=-1.0)
    return float(gen.any() and scores[target] > best_other)


def blank_pixel_accuracy(reference: Any, background: Sequence[int]) -> float:
    """Pixel accuracy of the trivial all-background sprite (the baseline ``pixel_accuracy`` must beat)."""
    ref = _frames(reference)
    if not ref:
        return 1.0
    return float(np.mean([1.0 - foreground_masks([f], background).mean() for f in ref]))


def chance_levels(colors: int | Sequence[Any] = len(COLOURS), shapes: int | Sequence[Any] = len(SHAPES)) -> dict:
    """``{"color": 1 / #colours, "shape": 1 / #shapes}``: the accuracy of a uniform random guess."""
    n_colors = colors if isinstance(colors, int) else len(colors)
    n_shapes = shapes if isinstance(shapes, int) else len(shapes)
    return {"color": 1.0 / n_colors, "shape": 1.0 / n_shapes}


def score_sprite(spec: SpriteSpec, generated: Any, shapes: Sequence[str] = SHAPES) -> dict[str, float]:
    """All metrics of one demo pair; the shape candidates are ``spec`` rendered with each of ``shapes``."""
    reference = spec.render()
    background = spec.background_rgb
    candidates = {name: dataclasses.replace(spec, shape=name).masks() for name in shapes}
    return {
        "pixel_accuracy": pixel_accuracy(reference, generated),
        "mask_iou": mask_iou(reference, generated, background),
        "color_accuracy": color_correct(reference, generated, background, spec.colour_rgb),
        "shape_accuracy": shape_correct(generated, background, candidates, spec.shape),
        "exact_match": exact_match(reference, generated),
        "frame_count_accuracy": float(len(_frames(generated)) == len(reference)),
        "blank_pixel_accuracy": blank_pixel_accuracy(reference, background),
    }


def score_sprites(
    pairs: Iterable[tuple[SpriteSpec, Any]],
    shapes: Sequence[str] = SHAPES,
    colors: int | Sequence[Any] = len(COLOURS),
) -> dict[str, Any]:
    """Average of :func:`score_sprite` over ``(spec, generated_frames)`` pairs, plus ``count``,
    ``color_chance`` and ``shape_chance``.

    Keys: ``pixel_accuracy``, ``mask_iou``, ``color_accuracy``, ``shape_accuracy``, ``exact_match``,
    ``frame_count_accuracy``, ``blank_pixel_accuracy`` (baseline), ``color_chance``, ``shape_chance``,
    ``count``. With no pairs, the metrics are NaN.
    """
    rows = [score_sprite(spec, generated, shapes) for spec, generated in pairs]
    keys = ("pixel_accuracy", "mask_iou", "color_accuracy", "shape_accuracy", "exact_match",
            "frame_count_accuracy", "blank_pixel_accuracy")  # fmt: skip
    out = {key: float(np.mean([r[key] for r in rows])) if rows else float("nan") for key in keys}
    chance = chance_levels(colors, shapes)
    out.update(color_chance=chance["color"], shape_chance=chance["shape"], count=len(rows))
    return out

"""Evaluation figures (evaluation.figures): valid PNGs, nearest-neighbour sprite grids, clear input errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from pixelbytes.evaluation.figures import LABEL_HEIGHT, plot_modality_bars, plot_training_curves, sprite_grid

pytest.importorskip("matplotlib")


def _png(path) -> Image.Image:
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image


def _trainer_state(accuracies: bool = True) -> dict:
    history = []
    for step in range(10, 110, 10):
        history.append({"epoch": step / 100, "step": step, "loss": 5.0 / step**0.5, "learning_rate": 1e-3})
        if step % 50 == 0:
            entry = {"step": step, "eval_loss": 4.0 / step**0.5, "eval_runtime": 1.0}
            if accuracies:
                entry |= {"eval_next_token_accuracy": step / 200, "eval_image_accuracy": step / 150}
            history.append(entry)
    history.append({"step": 100, "train_runtime": 12.0, "train_loss": 0.9})
    return {"global_step": 100, "log_history": history}


# --- training curves --------------------------------------------------------------------------------------


def test_training_curves_from_dict_file_and_folder(tmp_path):
    state = _trainer_state()
    out = plot_training_curves(state, tmp_path / "a" / "curves.png", title="tiny run")
    assert _png(out).size == (1100, 400)  # two panels: losses and eval accuracies
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "trainer_state.json").write_text(json.dumps(_trainer_state(accuracies=False)))
    assert _png(plot_training_curves(tmp_path / "ckpt" / "trainer_state.json", tmp_path / "b.png")).size == (640, 400)
    assert _png(plot_training_curves(str(tmp_path / "ckpt"), tmp_path / "c.png")).size == (640, 400)


def test_training_curves_with_eval_loss_only(tmp_path):
    state = {"log_history": [{"step": 5, "eval_loss": 2.0}, {"step": 10, "eval_loss": 1.5}]}
    assert _png(plot_training_curves(state, tmp_path / "eval.png")).size == (640, 400)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({}, "no log_history"),
        ({"log_history": []}, "no log_history"),
        ({"log_history": [{"step": 1, "learning_rate": 0.1}]}, "no 'loss' or 'eval_loss'"),
        ({"log_history": [{"step": 1, "loss": "high"}]}, "non-numeric 'loss'"),
        ({"log_history": [1, 2]}, "list of objects"),
    ],
)
def test_training_curves_errors(tmp_path, state, message):
    with pytest.raises(ValueError, match=message):
        plot_training_curves(state, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_training_curves_bad_json(tmp_path):
    (tmp_path / "trainer_state.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        plot_training_curves(tmp_path, tmp_path / "x.png")


# --- sprite grid ------------------------------------------------------------------------------------------


def _frame(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_sprite_grid_layout_and_nearest_neighbour_pixels(tmp_path):
    scale, gap = 3, 2
    rows = [(_frame(4, 5, 0), _frame(6, 3, 1)), (_frame(2, 2, 2), _frame(3, 4, 3))]
    image = np.asarray(_png(sprite_grid(rows, tmp_path / "grid.png", scale=scale, gap=gap)).convert("RGB"))
    ref_width, gen_width = scale * 5, scale * 4
    heights = [scale * 6, scale * 3]
    assert image.shape == (gap + sum(h + gap for h in heights), 3 * gap + ref_width + gen_width, 3)
    y = gap
    for (ref, gen), row_height in zip(rows, heights):
        for x0, frame in ((gap, ref), (2 * gap + ref_width, gen)):
            h, w = frame.shape[:2]
            cell = image[y : y + scale * h, x0 : x0 + scale * w]
            # every output pixel is the source pixel it lies over (nearest neighbour, no blending)
            assert np.array_equal(cell, np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1))
        y += row_height + gap
    assert (image[0] == 255).all() and (image[:, 0] == 255).all()  # margins are the background
    # the reference cell of row 0 is 5 wide, the generated one 3 wide: the rest of the cell is background
    assert (image[gap : gap + heights[0], 2 * gap + ref_width + 3 * scale :] == 255).all()


def test_sprite_grid_accepts_pil_images_and_labels(tmp_path):
    ref = Image.fromarray(_frame(8, 8, 4))
    gen = _frame(8, 8, 5)
    out = sprite_grid([(ref, gen)] * 3, tmp_path / "labelled.png", scale=2, labels=["a", "b", "c"], gap=0)
    assert _png(out).size == (32, 3 * (LABEL_HEIGHT + 16))
    pixels = np.asarray(_png(out).convert("RGB"))
    assert np.array_equal(pixels[LABEL_HEIGHT, 16:18], np.repeat(gen[0, :1], 2, axis=0))


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([], {}, "at least one"),
        ([(np.zeros((2, 2, 3), np.uint8),)], {}, "pair"),
        ([(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.uint8))], {}, "row 0 reference: expected"),
        ([(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8))], {}, "row 0 generated: expected"),
        ([(np.zeros((2, 2, 3), np.uint8), np.zeros((0, 2, 3), np.uint8))], {}, "non-empty"),
        ([(np.zeros((2, 2, 3), np.uint8),) * 2], {"scale": 0}, "scale"),
        ([(np.zeros((2, 2, 3), np.uint8),) * 2], {"labels": ["a", "b"]}, "2 labels for 1 rows"),
    ],
)
def test_sprite_grid_errors(tmp_path, rows, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sprite_grid(rows, tmp_path / "x.png", **kwargs)


# --- bits per unit bars -----------------------------------------------------------------------------------

FULL_RESULTS = {
    "metrics": {"image_bits_per_pixel": 0.8, "audio_bits_per_sample": 2.1, "text_bits_per_character": 1.9},
    "baselines": {
        "xz": {"image_bits_per_pixel": 1.3, "audio_bits_per_sample": 3.5, "text_bits_per_character": 3.2},
        "gif": {"image_bits_per_pixel": 1.1},
        "png": {"image_bits_per_pixel": 1.6},
        "flac": {"audio_bits_per_sample": 2.9},
    },
}


def test_modality_bars_full_and_partial(tmp_path):
    assert _png(plot_modality_bars(FULL_RESULTS, tmp_path / "full.png")).size[1] == 400
    partial = {
        "metrics": {"image_bits_per_pixel": 0.8, "eval_loss": 1.0},
        "baselines": {"gif": {"image_bits_per_pixel": 1.1}},
    }
    assert _png(plot_modality_bars(partial, tmp_path / "partial.png")).size[1] == 400
    assert _png(plot_modality_bars({"baselines": {"xz": {"text_bits_per_character": 3.0}}}, tmp_path / "b.png"))


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ([1, 2], "must be a mapping"),
        ({}, "no bits-per-unit value"),
        ({"metrics": {"eval_loss": 1.0}, "baselines": {}}, "no bits-per-unit value"),
        ({"metrics": {"image_bits_per_pixel": "low"}}, "not a number"),
        ({"metrics": {"image_bits_per_pixel": float("nan")}}, "NaN"),
        ({"baselines": {"xz": 3.0}}, r"results\['baselines'\]\['xz'\] must be a mapping"),
        ({"baselines": [1]}, "must map codec names"),
    ],
)
def test_modality_bars_errors(tmp_path, results, message):
    with pytest.raises(ValueError, match=message):
        plot_modality_bars(results, tmp_path / "x.png")


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "pixelbytes\[eval\]"'):
        plot_modality_bars(FULL_RESULTS, tmp_path / "x.png")

"""The ``pixelbytes`` CLI (help, tiny train / generate / demo runs) and the scripts in ``examples/``."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from PIL import Image

from folder_data import make_folder_dataset
from pixelbytes.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN_FLAGS = ["--embed_size", "12", "--hidden_size", "16", "--num_hidden_layers", "1", "--seq_length", "64",
               "--stride", "48", "--audio_stride", "8", "--max_steps", "3", "--per_device_train_batch_size", "2",
               "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true"]  # fmt: skip


def run_script(*args: str, timeout: int = 600) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "generate", "convert", "export-remote-code", "card"):
        assert command in out
    assert main(["nonsense"]) == 2
    for command in ("train", "generate", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    data = make_folder_dataset(root / "data", corrupt=False)
    out = root / "model"
    assert main(["train", "--dataset", str(data), "--output_dir", str(out), "--validation_fraction", "0",
                 *TRAIN_FLAGS]) == 0  # fmt: skip
    return out


def test_train_from_yaml_config(tmp_path, trained):
    data = make_folder_dataset(tmp_path / "data", n=3, corrupt=False)
    config = tmp_path / "run.yaml"
    pairs = dict(zip(TRAIN_FLAGS[::2], TRAIN_FLAGS[1::2]))
    lines = [f"{k.lstrip('-')}: {json.dumps(v) if v in ('no', 'none') else v}" for k, v in pairs.items()]
    lines += [f"dataset: {data}", f"output_dir: {tmp_path / 'out'}", "validation_fraction: 0"]
    config.write_text("\n".join(lines) + "\n")
    assert main(["train", "--config", str(config)]) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_generate_writes_sprite_sound_and_text(tmp_path, trained, capsys):
    out = tmp_path / "gen"
    code = main(["generate", "--model", str(trained), "--prompt", "creature", "--image-size", "3", "4",
                 "--frames", "2", "--audio-steps", "5", "--output-dir", str(out)])  # fmt: skip
    assert code == 0
    gif = Image.open(out / "image.gif")
    assert gif.size == (4, 3) and gif.n_frames == 2
    with wave.open(str(out / "audio.wav")) as sound:
        assert sound.getnchannels() == 2 and sound.getnframes() == 5
    assert (out / "text.txt").read_text().strip() == "creature"


def test_demo_quick(tmp_path):
    main(["demo", "--quick", "--output-dir", str(tmp_path / "demo"), "--hidden-size", "32", "--embed-size", "12"])
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    for key in ("training_seconds", "train_pixel_accuracy", "train_mask_iou", "heldout_color_accuracy",
                "heldout_shape_accuracy", "heldout_mask_iou", "heldout_pixel_accuracy", "heldout_exact_match",
                "heldout_color_accuracy_chance", "heldout_shape_accuracy_chance"):  # fmt: skip
        assert key in metrics, key
    assert (tmp_path / "demo" / "contact_sheet.png").exists()
    assert (tmp_path / "demo" / "model" / "model.safetensors").exists()
    # a step count, not the clock: the steps that ran, the cap, and each goal are reported
    assert metrics["train_steps"] == metrics["max_steps"] == 4 and metrics["time_cap_hit"] is False
    assert metrics["final_learning_rate"] == 0.0  # the cosine ran to its end
    assert set(metrics["goals"]) == {"train_pixel_accuracy", "train_mask_iou", "heldout_color_accuracy"}
    for key, goal in metrics["goals"].items():
        assert goal["value"] == metrics[key] and goal["met"] == (metrics[key] >= goal["minimum"])
    assert metrics["all_goals_met"] == all(goal["met"] for goal in metrics["goals"].values())
    config = json.loads((tmp_path / "demo" / "model" / "config.json").read_text())
    assert config["caption_memory_cell_frames"] == 4 and config["grid_position_size"] == 16


def test_examples_run(tmp_path, trained):
    data = make_folder_dataset(tmp_path / "data", n=4, corrupt=False)
    out = run_script("examples/tokenize_roundtrip.py", "--output", str(tmp_path / "roundtrip"))
    assert (tmp_path / "roundtrip" / "sprite.gif").exists()
    run_script("examples/train_local_folder.py", "--data", str(data), "--output", str(tmp_path / "local"),
               "--max-steps", "2", "--seq-length", "64", "--stride", "48", "--hidden-size", "16", "--embed-size", "12",
               "--batch-size", "2")  # fmt: skip
    assert (tmp_path / "local" / "model.safetensors").exists()
    tuned = str(tmp_path / "tuned")
    run_script("examples/finetune_saved_model.py", "--model", str(tmp_path / "local"), "--data", str(data),
               "--output", tuned, "--max-steps", "2", "--seq-length", "64", "--stride", "48")  # fmt: skip
    assert (tmp_path / "tuned" / "model.safetensors").exists()
    out = run_script("examples/generate_sprite.py", "--model", str(trained), "--caption", "creature", "--height", "3",
                     "--width", "4", "--frames", "2", "--output", str(tmp_path / "sprite"))  # fmt: skip
    assert Image.open(tmp_path / "sprite.gif").size == (4, 3)
    assert "creature" in out


def test_demo_schedule_fits_the_time_budget():
    from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
    from pixelbytes.data.synthetic import DEMO_TOKENIZER_KWARGS, demo_samples, make_demo_split
    from pixelbytes.data.windows import PxByWindowDataset
    from pixelbytes.demo import _steps_within, _tokenize

    tok = ActionPixelBytesTokenizer(**DEMO_TOKENIZER_KWARGS)
    store = _tokenize(demo_samples(make_demo_split()[0][::40]), tok)
    lengths = [len(s["input_ids"]) for s in store]
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tok, embed_size=12, hidden_size=16, num_hidden_layers=1))
    dataset = PxByWindowDataset(store, lengths, seq_length=max(lengths), stride=max(lengths) - 1)
    short, long = (_steps_within(model, dataset, lengths, 2, seconds) for seconds in (5.0, 500.0))
    assert 1 <= short < long
    assert all(p.grad is None for p in model.parameters())  # the probes leave no gradient behind


def _tiny_demo_training(max_steps: int, time_budget: float, tmp_path: Path) -> dict:
    import argparse

    from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
    from pixelbytes.data.synthetic import DEMO_TOKENIZER_KWARGS, demo_samples, make_demo_split
    from pixelbytes.demo import _tokenize, _train

    tok = ActionPixelBytesTokenizer(**DEMO_TOKENIZER_KWARGS)
    store = _tokenize(demo_samples(make_demo_split()[0][::40]), tok)
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tok, embed_size=12, hidden_size=16, num_hidden_layers=1))
    args = argparse.Namespace(max_steps=max_steps, time_budget=time_budget, batch_size=2, learning_rate=1e-2, seed=0)
    return _train(model, tok, store, args, tmp_path)[1]


def test_demo_trains_for_steps_and_the_clock_only_caps_it(tmp_path):
    done = _tiny_demo_training(6, 600.0, tmp_path)
    assert done["train_steps"] == done["max_steps"] == 6 and done["time_cap_hit"] is False
    assert done["final_learning_rate"] == 0.0  # the cosine follows the steps to its end
    capped = _tiny_demo_training(6, 1e-6, tmp_path)  # a machine far too slow for the steps
    assert capped["train_steps"] == 1 and capped["max_steps"] == 6 and capped["time_cap_hit"] is True
    assert capped["final_learning_rate"] > 0.0  # stopped early: the schedule did not decay


def test_demo_never_silently_zeroes_caption_memory_cell_frames(tmp_path, capsys):
    from pixelbytes.demo import resolve_cell_frames, run_demo

    assert resolve_cell_frames(None, 512, 16) == 4 and resolve_cell_frames(2, 512, 16) == 2
    assert resolve_cell_frames(None, 512, 0) == 0 and resolve_cell_frames(None, 0, 16) == 0
    assert resolve_cell_frames(0, 0, 0) == 0
    with pytest.raises(ValueError, match=r"--caption-memory-cell-frames 4 .* needs --caption-memory-buckets > 0 and "
                                         r"--grid-position-size > 0"):  # fmt: skip
        run_demo(output_dir=str(tmp_path / "x"), grid_position_size=0, caption_memory_cell_frames=4, quick=True)
    assert not (tmp_path / "x").exists()  # refused before any work
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--caption-memory-buckets", "0", "--caption-memory-cell-frames", "2"])
    assert exit_info.value.code == 2
    assert "--caption-memory-cell-frames 2 modulates the caption memory" in capsys.readouterr().err

"""The ``pixelbytes`` CLI (help, tiny train / generate / demo runs) and the scripts in ``examples/``."""

from __future__ import annotations

import itertools
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


def test_clock_cosine_schedule(monkeypatch):
    import pixelbytes.demo as demo

    now = [100.0]
    monkeypatch.setattr(demo.time, "perf_counter", lambda: now[0])
    schedule = demo.ClockCosineSchedule(60.0, warmup_steps=3)
    assert [schedule(step) for step in range(3)] == [0.25, 0.5, 0.75]  # warm-up by steps, clock started
    factors = []
    for seconds in (0.0, 15.0, 30.0, 45.0, 60.0, 90.0):
        now[0] = 100.0 + seconds
        factors.append(schedule(10))
    assert factors[0] == 1.0 and abs(factors[2] - 0.5) < 1e-12 and factors[4] == factors[5] == 0.0
    assert all(a > b for a, b in itertools.pairwise(factors[:5]))
    with pytest.raises(ValueError, match="time budget must be positive"):
        demo.ClockCosineSchedule(0.0)

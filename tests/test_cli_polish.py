"""CLI polish: --version, a --help that never imports torch, both flag spellings, one-line user errors (exit 2),
--upscale / --stop-at in `generate`, --max_samples applied before tokenising."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import pixelbytes
from folder_data import make_folder_dataset
from pixelbytes import ActionPixelBytesTokenizer
from pixelbytes.cli import FlagParser, _generate_parser, check_model_path, main
from pixelbytes.training import DataArguments
from pixelbytes.training import trainer as trainer_module
from tiny_models import tiny_model


def test_help_and_version_do_not_import_torch(tmp_path):
    code = (
        "import sys; from pixelbytes.cli import main; rc = main(sys.argv[1:]); "
        "print('torch' in sys.modules); sys.exit(rc)"
    )
    for flag, expected in (("--help", "commands:"), ("--version", f"pixelbytes {pixelbytes.__version__}")):
        # the console script's process: sys.argv[0] is the `pixelbytes` script
        script = tmp_path / "pixelbytes"
        script.write_text(code)
        result = subprocess.run([sys.executable, str(script), flag], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout and result.stdout.strip().endswith("False")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pixelbytes.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "commands:" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "transformers" not in imported


def test_both_flag_spellings():
    for flags in (
        ["--image-size", "2", "3", "--max-new-tokens", "5"],
        ["--image_size", "2", "3", "--max_new_tokens", "5"],
    ):
        args = _generate_parser().parse_args(["--model", "m", *flags])
        assert (args.image_size, args.max_new_tokens) == ([2, 3], 5)
    parser = FlagParser()
    parser.add_argument("--output_dir")
    assert parser.parse_args(["--output-dir", "x"]).output_dir == "x"
    from pixelbytes.demo import demo_parser

    assert demo_parser().parse_args(["--max_steps", "3"]).max_steps == 3


def one_line_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_user_errors_are_one_line_exit_2(capsys, tmp_path, monkeypatch):
    assert "does not exist" in one_line_error(capsys, ["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"])
    assert "without config.json" in one_line_error(capsys, ["generate", "--model", str(tmp_path), "--prompt", "x"])
    assert "expected a positive integer" in one_line_error(capsys, ["generate", "--model", "m", "--upscale", "0"])
    model = tmp_path / "m"
    tiny_model().save_pretrained(model)
    assert "--stop-at applies" in one_line_error(
        capsys, ["generate", "--model", str(model), "--prompt", "x", "--image-size", "2", "2", "--stop-at", "text"]
    )

    def no_training(*args, **kwargs):
        raise AssertionError("must fail before building / tokenising anything")

    monkeypatch.setattr("pixelbytes.training.run_training", no_training)
    base = ["train", "--dataset", "demo", "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    assert "stride must be in [1, seq_length - 1]" in one_line_error(
        capsys, [*base, "--seq_length", "8", "--stride", "8"]
    )
    assert "seq_length must be an integer >= 2" in one_line_error(capsys, [*base, "--seq-length", "1"])
    assert "max_samples must be a positive integer" in one_line_error(capsys, [*base, "--max_samples", "0"])
    assert "does not exist" in one_line_error(capsys, [*base, "--model_name_or_path", str(tmp_path / "nope")])
    assert check_model_path("owner/name") is None and check_model_path("./owner/name") is not None


def test_generate_upscale_and_stop_at(tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_model(seed=2).save_pretrained(model_dir)
    ActionPixelBytesTokenizer().save_pretrained(model_dir)
    out = tmp_path / "out"
    argv = ["generate", "--model", str(model_dir), "--prompt", "a heart", "--image_size", "2", "3", "--upscale", "4"]
    assert main([*argv, "--output-dir", str(out)]) == 0
    image = Image.open(out / "image.png")
    assert image.size == (12, 8)
    pixels = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(pixels, np.repeat(np.repeat(pixels[::4, ::4], 4, axis=0), 4, axis=1))
    free = tmp_path / "free"
    argv = ["generate", "--model", str(model_dir), "--prompt", "a", "--stop-at", "text", "--max-new-tokens", "64"]
    assert main([*argv, "--do-sample", "--output-dir", str(free)]) == 0
    ids = np.load(free / "token_ids.npy").tolist()
    generated = ids[len(ActionPixelBytesTokenizer()("a")["input_ids"]) :]
    assert len(generated) == 64 or generated[-1] == 2  # stopped at the end of a caption, or ran out of tokens


def test_max_samples_is_applied_before_tokenising(tmp_path, monkeypatch):
    folder = make_folder_dataset(tmp_path / "data", n=5, corrupt=False)
    seen = []
    original = trainer_module.__dict__.get("_tokenize_rows")

    import pixelbytes.data.loading as loading

    real = loading.tokenize_samples

    def counting(raw, *args, **kwargs):
        seen.append(len(raw))
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(loading, "tokenize_samples", counting)
    args = DataArguments(
        dataset=str(folder), seq_length=64, stride=48, audio_stride=8, validation_fraction=0, max_samples=2
    )
    train, _ = trainer_module.build_window_datasets(args, ActionPixelBytesTokenizer(audio_stride=8))
    assert seen == [2] and len(train.samples) == 2

    rows = []
    monkeypatch.setattr(trainer_module, "_tokenize_rows", lambda r, tok: rows.append(len(r)) or original(r, tok))
    demo = DataArguments(dataset="demo", seq_length=64, stride=48, validation_fraction=0, max_samples=3)
    train, _ = trainer_module.build_window_datasets(demo, ActionPixelBytesTokenizer())
    assert rows == [3] and len(train.samples) == 3
    with pytest.raises(ValueError, match="stride must be"):
        trainer_module.build_window_datasets(DataArguments(dataset="demo", seq_length=8, stride=9), None)

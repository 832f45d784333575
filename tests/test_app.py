"""The Gradio app (pixelbytes.app): streamed sprites, the cry, rectangle edits, loading, the Space export, serving.

Tiny random models only (the demo model is never trained here: the trainer is injected)."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelbytes import ActionPixelBytesTokenizer, generate_image
from pixelbytes.app.core import ModelLoadError, Rectangle, SpriteStudio, load_model, load_or_train_demo
from tiny_models import tiny_model

TOK = ActionPixelBytesTokenizer()


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> SpriteStudio:
    return SpriteStudio(tiny_model(0), TOK, upscale=4, output_dir=tmp_path_factory.mktemp("gifs"))


@pytest.fixture(scope="module")
def diffusion_studio(tmp_path_factory) -> SpriteStudio:
    model = tiny_model(1, objective="diffusion", bidirectional=True)
    return SpriteStudio(model, TOK, upscale=4, output_dir=tmp_path_factory.mktemp("gifs_diffusion"))


def test_stream_sprite_grows_row_by_row_and_ends_with_the_generated_sprite(studio):
    updates = list(studio.stream_sprite("a red heart", 3, 5, frames=2, temperature=0.0, seed=0))
    # an empty canvas, one update per row (2 frames x 3 rows), then the finished sprite
    assert [u.rows_done for u in updates] == [0, 1, 2, 3, 4, 5, 6, 6]
    assert [u.done for u in updates] == [False] * 7 + [True]
    assert updates[0].preview.size == (5 * 4, 3 * 4)  # nearest-neighbour x4
    first_row = np.asarray(updates[1].preview)[:4]
    assert not (first_row == 72).all()  # the first row is drawn, the rest is still the grey "pending" colour
    assert (np.asarray(updates[1].preview)[4:] == 72).all()
    last = updates[-1]
    _, decoded = generate_image(studio.model, TOK, "a red heart", 3, 5, frames=2, do_sample=False)
    expected = [np.asarray(f) for f in decoded[0].frames]
    assert len(last.frames) == 2
    for got, want in zip(last.frames, expected):
        np.testing.assert_array_equal(got, want)
    assert last.state.ids[: last.state.prompt_length] == TOK("a red heart")["input_ids"]
    gif = Path(last.gif_path)
    assert gif.suffix == ".gif" and gif.stat().st_size > 0
    from PIL import Image

    with Image.open(gif) as image:
        assert image.size == (20, 12) and image.n_frames == 2


def test_sampling_follows_the_seed(studio):
    a = list(studio.stream_sprite("a blue bird", 2, 3, temperature=1.5, seed=7))[-1].state.ids
    b = list(studio.stream_sprite("a blue bird", 2, 3, temperature=1.5, seed=7))[-1].state.ids
    assert a == b


def test_cry_is_playable_int16_at_the_tokenizer_rate(studio):
    state = list(studio.stream_sprite("a red heart", 2, 2))[-1].state
    rate, samples = studio.generate_cry(state, steps=6)
    assert rate == TOK.sampling_rate
    assert samples.dtype == np.int16 and samples.shape == (6 * TOK.audio_stride, TOK.audio_channels)
    assert studio.generate_cry(state, steps=0) is None


def test_causal_edit_keeps_everything_before_the_rectangle_row(studio):
    state = list(studio.stream_sprite("a red heart", 4, 4, frames=2))[-1].state
    edited = studio.edit_rectangle(state, Rectangle(1, 2, 3, 1, 2), temperature=2.0, seed=3)
    cut = state.position(1, 2, 0)
    assert edited.ids[:cut] == state.ids[:cut]
    assert len(edited.ids) == len(state.ids)
    frames = studio.frames_of(edited)
    assert len(frames) == 2 and frames[1].shape == (4, 4, 3)  # the layout survives the edit


def test_diffusion_sprite_and_infill_change_only_the_rectangle(diffusion_studio):
    updates = list(diffusion_studio.stream_sprite("a red heart", 4, 5, frames=2))
    assert updates[-1].done and len(updates[-1].frames) == 2
    state = updates[-1].state
    rect = Rectangle(1, 1, 2, 1, 3)
    edited = diffusion_studio.edit_rectangle(state, rect)
    inside = {state.position(1, r, c) for r in (1, 2) for c in (1, 2, 3)}
    changed = {i for i, (a, b) in enumerate(zip(state.ids, edited.ids)) if a != b}
    assert changed <= inside
    assert diffusion_studio.generate_cry(state, steps=4)[1].shape == (4 * TOK.audio_stride, 2)


@pytest.mark.parametrize(
    ("size", "message"),
    [((0, 4, 1), r"height must be in 1\.\.64"), ((4, 65, 1), r"width must be in 1\.\.64"),
     ((4, 4, 9), r"frames must be in 1\.\.8"), ((2.5, 4, 1), "whole number"), ((None, 4, 1), "whole number")],
)  # fmt: skip
def test_bad_sizes_are_clear_errors(studio, size, message):
    with pytest.raises(ValueError, match=message):
        next(studio.stream_sprite("a red heart", *size))


def test_bad_caption_rectangle_and_temperature(studio):
    with pytest.raises(ValueError, match="caption"):
        next(iter(studio.stream_sprite("   ", 2, 2)))
    with pytest.raises(ValueError, match="temperature"):
        next(iter(studio.stream_sprite("a cat", 2, 2, temperature=-1)))
    state = list(studio.stream_sprite("a red heart", 2, 3))[-1].state
    with pytest.raises(ValueError, match="rows must satisfy"):
        studio.edit_rectangle(state, Rectangle(0, 1, 2, 0, 0))
    with pytest.raises(ValueError, match=r"frame must be in 0\.\.0"):
        studio.edit_rectangle(state, Rectangle(1, 0, 0, 0, 0))


def test_load_model_errors_and_success(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)
    model = tiny_model(0)
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="no tokenizer"):
        load_model(tmp_path / "m")
    TOK.save_pretrained(tmp_path / "m")
    loaded, tokenizer = load_model(tmp_path / "m")
    assert not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert len(tokenizer.token_classes) == len(TOK.token_classes)


def test_offline_default_trains_once_then_loads_from_the_cache(tmp_path):
    calls = []

    def fake_train(output_dir: str) -> None:  # what `pixelbytes demo` leaves behind, without the training
        calls.append(output_dir)
        tiny_model(0).save_pretrained(Path(output_dir) / "model")
        TOK.save_pretrained(Path(output_dir) / "model")

    model, tokenizer = load_or_train_demo(tmp_path / "cache", train=fake_train)
    assert calls == [str(tmp_path / "cache")]
    load_or_train_demo(tmp_path / "cache", train=fake_train)
    assert len(calls) == 1  # cached: not trained again
    assert model.config.vocab_size == len(tokenizer.token_classes)


def test_export_space_folder(tmp_path):
    from pixelbytes.app.cli import export_space

    model_dir = tmp_path / "m"
    tiny_model(0).save_pretrained(model_dir)
    TOK.save_pretrained(model_dir)
    out = export_space(str(tmp_path / "space"), str(model_dir), requirement="pixelbytes[app] @ git+https://x/y")
    readme = (out / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    assert "pixelbytes[app] @ git+https://x/y" in (out / "requirements.txt").read_text()
    ast.parse((out / "app.py").read_text())
    assert (out / "model" / "config.json").is_file() and (out / "model" / "tokenizer_config.json").is_file()
    bare = export_space(str(tmp_path / "bare"))
    assert not (bare / "model").exists() and "trained on the Space's first start" in (bare / "README.md").read_text()


def test_cli_app_user_errors_exit_2(tmp_path, capsys):
    from pixelbytes.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--model", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["app", "--port", "70000"])
    assert "--port must be in 1..65535" in capsys.readouterr().err
    assert main(["app", "--export", str(tmp_path / "space")]) == 0
    assert (tmp_path / "space" / "app.py").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_app_streams_a_sprite_then_the_cry_and_edits(tmp_path):
    pytest.importorskip("gradio")
    from gradio_client import Client

    from pixelbytes.app import build_app, launch_app

    app = build_app(tiny_model(0), TOK, studio=SpriteStudio(tiny_model(0), TOK, upscale=2, output_dir=tmp_path))
    port = _free_port()
    launch_app(app, port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "dl"))
        job = client.submit("a red heart", 3, 4, 2, 0.0, 0, 5, api_name="/generate")
        outputs = list(job)
        assert len(outputs) >= 2 + 3 * 2  # canvas, every row, the GIF, the cry
        sprite_paths = [o[0] for o in outputs if isinstance(o[0], str)]
        assert sprite_paths[-1].endswith(".gif")
        assert outputs[-1][1].endswith(".wav") and outputs[-1][2] == "Done."
        before, after, message = client.predict(0, 1, 2, 0, 3, 0.0, 0, api_name="/edit")
        assert Path(before).is_file() and Path(after).suffix == ".gif" and "continued" in message
    finally:
        app.close()

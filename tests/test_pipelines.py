"""Caption -> sprite / sound pipelines: from the installed package, and from an exported remote-code folder in a
fresh interpreter that cannot import pixelbytes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import pixelbytes  # noqa: F401  (registers the pipelines)
from pixelbytes import ActionPixelBytesTokenizer, generate_audio, generate_image
from pixelbytes.hub import export_remote_code
from pixelbytes.pipelines_pixelbytes import TextToSoundPipeline, TextToSpritePipeline, custom_pipelines_config
from test_hub import run_python
from tiny_models import tiny_model


@pytest.fixture(scope="module")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=5)


def test_sprite_pipeline_from_the_package(model, tok):
    pipe = pipeline("text-to-sprite", model=model, tokenizer=tok)
    assert isinstance(pipe, TextToSpritePipeline)
    out = pipe("a red heart", height=3, width=5, frames=2)
    _, expected = generate_image(model, tok, "a red heart", 3, 5, frames=2)
    assert [f.size for f in out["frames"]] == [(5, 3), (5, 3)]
    for got, want in zip(out["frames"], expected[0].frames):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    gif = Image.open(io.BytesIO(out["gif"]))
    assert gif.format == "GIF" and gif.n_frames == 2 and gif.size == (5, 3)
    assert len(out["token_ids"]) == 2 * 3 * 6
    big = pipe("a red heart", height=3, width=5, upscale=4)["frames"][0]
    np.testing.assert_array_equal(np.asarray(big)[::4, ::4], np.asarray(expected[0].frames[0]))
    a = pipe("x", height=4, width=4, do_sample=True, seed=7)["token_ids"]
    torch.manual_seed(0)
    state = torch.get_rng_state()
    assert a == pipe("x", height=4, width=4, do_sample=True, seed=7)["token_ids"]
    assert torch.equal(state, torch.get_rng_state())  # seeded runs leave the global random state alone
    with pytest.raises(ValueError, match="height must be a positive integer"):
        pipe("x", height=0)


def test_sound_pipeline_from_the_package(model, tok):
    pipe = pipeline("text-to-sound", model=model, tokenizer=tok)
    assert isinstance(pipe, TextToSoundPipeline)
    out = pipe("boom", num_steps=9)
    _, expected = generate_audio(model, tok, "boom", 9)
    assert out["sampling_rate"] == 16000 and out["audio"].shape == (2, 9)
    np.testing.assert_array_equal(out["audio"], expected[0].audio)
    assert pipe("boom", num_steps=9, mono=True)["audio"].shape == (9,)
    # a larger token budget still ends with the clip (the pipeline adds a block-end stopping criterion)
    long = pipe("boom", num_steps=4, generate_kwargs={"max_new_tokens": 40})
    assert long["audio"].shape == (2, 4)


def test_custom_pipelines_config():
    full = custom_pipelines_config()
    assert set(full) == {"text-to-sprite", "text-to-image", "text-to-sound", "text-to-audio"}
    assert full["text-to-audio"] == {
        "impl": "pipelines_pixelbytes.TextToSoundPipeline",
        "pt": ["AutoModelForCausalLM"],
        "type": "text",
    }
    assert set(custom_pipelines_config(with_audio=False)) == {"text-to-sprite", "text-to-image"}
    assert (
        custom_pipelines_config(code_repo="o/c")["text-to-sprite"]["impl"]
        == "o/c--pipelines_pixelbytes.TextToSpritePipeline"
    )
    with pytest.raises(ValueError, match="unknown pipeline task"):
        custom_pipelines_config(tasks=("text-to-video",))


REMOTE_PIPELINE_SCRIPT = """
import io, os, sys
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "pixelbytes"))]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(type(f)).lower()]
sys.modules["pixelbytes"] = None  # and never found by any other route
import numpy as np
import torch
from PIL import Image
from transformers import pipeline

full, single = sys.argv[2], sys.argv[3]
result = {}
sprite = pipeline("text-to-sprite", model=full, trust_remote_code=True)
out = sprite("a red heart", height=3, width=5, frames=2)
result["sprite_class"] = type(sprite).__module__ + "." + type(sprite).__name__
result["frames"] = [np.asarray(f) for f in out["frames"]]
result["gif_frames"] = Image.open(io.BytesIO(out["gif"])).n_frames
result["image_alias"] = type(pipeline("text-to-image", model=full, trust_remote_code=True)).__name__
sound = pipeline("text-to-audio", model=full, trust_remote_code=True)
result["sound_class"] = type(sound).__name__
result["sound"] = sound("boom", num_steps=9)
inferred = pipeline(model=single, trust_remote_code=True)
result["inferred"] = type(inferred).__name__
result["inferred_frames"] = len(inferred("hi", height=2, width=2)["frames"])
try:
    pipeline("text-to-sprite", model=full)
    result["untrusted"] = "loaded"
except ValueError as err:
    result["untrusted"] = str(err)
torch.save(result, sys.argv[1])
"""


def test_pipelines_from_an_exported_folder_without_the_package(model, tok, tmp_path):
    full, single = tmp_path / "full", tmp_path / "single"
    export_remote_code(model, tok, full)
    export_remote_code(model, tok, single, pipeline_tasks=("text-to-sprite",))
    config = json.loads((full / "config.json").read_text())
    assert set(config["custom_pipelines"]) == set(custom_pipelines_config())
    assert (full / "pipelines_pixelbytes.py").is_file()
    script = REMOTE_PIPELINE_SCRIPT.replace("sys.argv[2], sys.argv[3]", f"{str(full)!r}, {str(single)!r}")
    result = run_python(script, tmp_path, isolated=True)
    assert result["sprite_class"].startswith("transformers_modules.")
    assert result["sprite_class"].endswith("pipelines_pixelbytes.TextToSpritePipeline")
    _, expected = generate_image(model, tok, "a red heart", 3, 5, frames=2)
    for got, want in zip(result["frames"], expected[0].frames, strict=True):
        np.testing.assert_array_equal(got, np.asarray(want))
    assert result["gif_frames"] == 2 and result["image_alias"] == "TextToSpritePipeline"
    assert result["sound_class"] == "TextToSoundPipeline"
    _, sound = generate_audio(model, tok, "boom", 9)
    assert result["sound"]["sampling_rate"] == 16000
    np.testing.assert_array_equal(result["sound"]["audio"], sound[0].audio)
    assert (result["inferred"], result["inferred_frames"]) == ("TextToSpritePipeline", 1)
    assert "trust_remote_code=True" in result["untrusted"]

"""`pixelbytes publish`: release folders from a trained-format model and from an ORIGINAL checkpoint, loaded back
from a hand-made offline Hub cache (with the package, and as remote code without it), the card's usage snippet run
as written, uploads through a fake HfApi, the hub_cards/ sources, the card after a tiny `run_training`, and the
bad-input errors. No network is used."""

from __future__ import annotations

import json
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file

from folder_data import make_folder_dataset
from hub_helpers import REMOTE_SCRIPT, FakeApi, populate_hub_cache, run_python
from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel, control_vocabulary
from pixelbytes.conversion import convert_original
from pixelbytes.hub import REMOTE_CODE_MODULES, load_eval_results, read_card_source
from pixelbytes.hub.cli_commands import HUB_COMMANDS
from pixelbytes.hub.publish import check_repo_id, publish_release
from pixelbytes.training import DataArguments, ModelArguments, run_training
from pixelbytes.vocabulary import v1_vocabulary
from test_training import TINY_MODEL, _args
from tiny_models import tiny_model

ROOT = Path(__file__).resolve().parent.parent
ORIGINAL = Path(__file__).parent / "fixtures" / "original"
HUB_CARDS = ROOT / "hub_cards"
PROMPT = "a red heart"
TRAINED_REPO, ORIGINAL_REPO = "owner/tiny-trained", "owner/tiny-original"
CODE_FILES = {f"{name}.py" for name in REMOTE_CODE_MODULES}
OUR_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json", "pxby_vocab.json"}
EVAL_RESULTS = {
    "model": "/somewhere/on/the/training/machine",
    "dataset": {"name": "me/sprites", "split": "validation", "num_items": 54},
    "metrics": {"image_bits_per_pixel": 1.01, "image_accuracy": 0.81, "audio_bits_per_sample": 2.85, "loss": 2.3},
    "baselines": {
        "xz": {"image_bits_per_pixel": 0.49, "audio_bits_per_sample": 3.87, "text_bits_per_character": 6.48},
        "png": {"image_bits_per_pixel": 4.05},
    },
    "protocols": {"v1_table1": {"hamming": [0.149, 0.062]}},
    "runtime_seconds": 12.3,
    "machine": "2 CPU cores",
}


def snippet_of(card_text: str) -> str:
    """The card's usage snippet: its first ```python block."""
    blocks = re.findall(r"```python\n(.*?)```", card_text, re.S)
    assert blocks, "the card has no python block"
    return blocks[0]


def save_model_dir(directory: Path, model, tokenizer) -> Path:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory) -> Path:
    """A trained-format model directory with the records training / evaluation leave next to it."""
    directory = tmp_path_factory.mktemp("trained") / "model"
    save_model_dir(directory, tiny_model(seed=3), ActionPixelBytesTokenizer())
    (directory / "eval_results.json").write_text(json.dumps(EVAL_RESULTS))
    state = {"global_step": 7, "best_model_checkpoint": str(directory / "checkpoint-5"),
             "log_history": [{"loss": 4.0, "learning_rate": 0.0008, "step": 1}]}  # fmt: skip
    (directory / "trainer_state.json").write_text(json.dumps(state))
    (directory / "training_summary.json").write_text(json.dumps({"learning_rate": 0.001, "seed": 3}))
    (directory / "figures").mkdir()
    Image.new("RGB", (8, 4), (248, 56, 0)).save(directory / "figures" / "curves.png")
    Image.new("RGB", (4, 4), (0, 0, 252)).save(directory / "modalities.png")
    return directory


@pytest.fixture(scope="module")
def original_dir(tmp_path_factory) -> Path:
    """An ORIGINAL aPxBy checkpoint (config.json without model_type) in the original repo layout (a subfolder)."""
    root = tmp_path_factory.mktemp("original-repo")
    shutil.copytree(ORIGINAL / "apxby_autoregressive", root / "lstm_autoregressive_last")
    return root


@pytest.fixture(scope="module")
def releases(trained_dir, original_dir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("releases")
    publish_release(trained_dir, out / "trained", repo_id=TRAINED_REPO, prompts=[PROMPT], sprite_size=4, sound_steps=5)
    publish_release(original_dir, out / "original", repo_id=ORIGINAL_REPO, subfolder="lstm_autoregressive_last",
                    gallery=False)  # fmt: skip
    return {"trained": out / "trained", "original": out / "original"}


# -------------------------------------------------------------------------------------------------
# the release folder
# -------------------------------------------------------------------------------------------------
def test_release_folder_has_our_format_at_the_root(releases, trained_dir):
    folder = releases["trained"]
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    records = {"eval_results.json", "trainer_state.json", "training_summary.json", "README.md"}
    figures = {"figures/curves.png", "modalities.png"}
    gallery = {"gallery/01-a-red-heart.png", "gallery/01-a-red-heart.wav"}
    assert names == OUR_FILES | CODE_FILES | records | figures | gallery
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "pixelbytes" and config["auto_map"]["AutoModel"].endswith("PxBySequenceModel")
    assert json.loads((folder / "tokenizer_config.json").read_text())["auto_map"]
    source = load_file(trained_dir / "model.safetensors")
    for key, value in load_file(folder / "model.safetensors").items():
        assert torch.equal(value, source[key])
    results = load_eval_results(folder / "eval_results.json")
    assert results["model"] == TRAINED_REPO  # never the training machine's path
    assert results["metrics"] == EVAL_RESULTS["metrics"] and results["baselines"] == EVAL_RESULTS["baselines"]
    assert json.loads((folder / "trainer_state.json").read_text())["best_model_checkpoint"] == "checkpoint-5"
    sprite = Image.open(folder / "gallery" / "01-a-red-heart.png")
    assert sprite.size == (16, 16)  # 4 x 4 pixels, x4 nearest neighbour
    pixels = np.asarray(sprite)
    assert (pixels == np.repeat(np.repeat(pixels[::4, ::4], 4, axis=0), 4, axis=1)).all()
    with wave.open(str(folder / "gallery" / "01-a-red-heart.wav")) as sound:
        assert sound.getnchannels() == 2 and sound.getnframes() == 5


def test_card_model_index_comes_from_eval_results_only(releases):
    card = ModelCard.load(releases["trained"] / "README.md")
    index = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert index == EVAL_RESULTS["metrics"]  # baselines (text_bits_per_character, codecs) stay out
    assert {(r.dataset_name, r.dataset_split) for r in card.data.eval_results} == {("me/sprites", "validation")}
    text = card.text
    assert "| metric | this model | xz | png |" in text
    assert "| image_bits_per_pixel | 1.01 | 0.49 | 4.05 |" in text
    assert "| text_bits_per_character | – | 6.48 | – |" in text
    assert "| v1_table1 | hamming | 0.149 ± 0.062 |" in text
    assert "`me/sprites` (split `validation`, 54 items)" in text
    assert "![a red heart](gallery/01-a-red-heart.png)" in text  # sprites inline
    assert "[01-a-red-heart.wav](gallery/01-a-red-heart.wav)" in text  # sounds as links
    assert "![figures/curves.png](figures/curves.png)" in text and "![modalities.png](modalities.png)" in text
    assert "| initial learning rate | 0.001 |" in text and "0.0008" not in text
    assert f'AutoModel.from_pretrained("{TRAINED_REPO}")' in snippet_of(text)
    assert "AutoTokenizer.from_pretrained" in snippet_of(text) and "generate(" in snippet_of(text)
    assert card.data.widget[0] == {"text": PROMPT, "output": {"url": "gallery/01-a-red-heart.png"}}


def test_original_checkpoint_release_gives_the_original_logits(releases):
    folder = releases["original"]
    assert OUR_FILES | CODE_FILES | {"README.md"} == {p.name for p in folder.iterdir()}
    model = PxBySequenceModel.from_pretrained(folder).eval()
    io = load_file(ORIGINAL / "apxby_autoregressive" / "golden_io.safetensors")
    with torch.no_grad():
        got = model(input_ids=io["inputs"][..., 5], context_ids=io["inputs"]).context_logits
    torch.testing.assert_close(got, io["logits"], atol=1e-5, rtol=0)
    text = (folder / "README.md").read_text()
    assert "original-repo" not in text.split("---")[1]  # metadata without machine paths
    assert "Converted with `pixelbytes convert`" in text and "## Samples" not in text
    assert ModelCard.load(folder / "README.md").data.eval_results is None  # nothing measured: no model-index


def test_diffusion_release_has_an_infill_snippet_and_no_gallery(tmp_path, monkeypatch):
    folder = tmp_path / "release"
    result = publish_release(ORIGINAL / "apxby_diffusion_bi", folder, repo_id="owner/diffusion")
    assert not result.gallery and not (folder / "gallery").exists()  # diffusion models do not generate() captions
    text = (folder / "README.md").read_text()
    code = snippet_of(text)
    assert "infill(" in code and "generate_image" not in code and 'pipeline("text-to-sprite"' not in text
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"owner/diffusion"', repr(str(folder))), "snippet", "exec"), {"__name__": "__snippet__"})


# -------------------------------------------------------------------------------------------------
# loading back from the Hub (offline cache)
# -------------------------------------------------------------------------------------------------
HUB_SCRIPT = """
import os, sys
import torch
from PIL import Image
import pixelbytes  # noqa: F401
from transformers import AutoModel, AutoTokenizer

result = {}
for repo in REPOS:
    model = AutoModel.from_pretrained(repo).eval()
    tokenizer = AutoTokenizer.from_pretrained(repo)
    with torch.no_grad():
        result[repo] = model(**tokenizer(PROMPT, return_tensors="pt")).logits
    result[repo + ":classes"] = (type(model).__name__, type(tokenizer).__name__)
exec(compile(SNIPPET, "model_card_snippet", "exec"), {"__name__": "__snippet__"})
result["sprite"] = Image.open("sprite.png").size
torch.save(result, sys.argv[1])
"""


def source_logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(PROMPT, return_tensors="pt")).logits


def test_releases_load_from_the_offline_hub_and_the_card_snippet_runs(releases, trained_dir, original_dir, tmp_path):
    hub = tmp_path / "hf" / "hub"
    populate_hub_cache(releases["trained"], TRAINED_REPO, hub)
    populate_hub_cache(releases["original"], ORIGINAL_REPO, hub)
    snippet = snippet_of((releases["trained"] / "README.md").read_text())
    script = HUB_SCRIPT.replace("REPOS", repr([TRAINED_REPO, ORIGINAL_REPO])).replace("PROMPT", repr(PROMPT))
    result = run_python(script.replace("SNIPPET", repr(snippet)), tmp_path, isolated=False)
    expected = {
        TRAINED_REPO: source_logits(PxBySequenceModel.from_pretrained(trained_dir).eval(), ActionPixelBytesTokenizer()),
        ORIGINAL_REPO: source_logits(*convert_original(original_dir, "lstm_autoregressive_last")),
    }
    for repo, logits in expected.items():
        torch.testing.assert_close(result[repo], logits, atol=1e-6, rtol=0)
        assert result[repo + ":classes"] == ("PxBySequenceModel", "ActionPixelBytesTokenizer")
    assert result["sprite"] == (4, 4)


def test_releases_load_as_remote_code_without_the_package(releases, trained_dir, original_dir, tmp_path):
    hub = tmp_path / "hf" / "hub"
    populate_hub_cache(releases["trained"], "pxby-org/tiny-remote", hub)
    populate_hub_cache(releases["original"], ORIGINAL_REPO, hub)
    script = (REMOTE_SCRIPT % PROMPT).replace('("hub", "pxby-org/tiny-remote"))',
                                               f'("hub", "pxby-org/tiny-remote"), ("orig", "{ORIGINAL_REPO}"))')
    script = script.replace("sys.argv[2]", repr(str(releases["trained"])))  # fmt: skip
    result = run_python(script, tmp_path, isolated=True)
    assert result["pixelbytes_importable"] is False
    trained = source_logits(PxBySequenceModel.from_pretrained(trained_dir).eval(), ActionPixelBytesTokenizer())
    original = source_logits(*convert_original(original_dir, "lstm_autoregressive_last"))
    for key, logits in (("dir", trained), ("hub", trained), ("orig", original)):
        assert result[key + "_module"].startswith("transformers_modules.")
        torch.testing.assert_close(result[key + "_logits"], logits, atol=1e-6, rtol=0)


# -------------------------------------------------------------------------------------------------
# upload
# -------------------------------------------------------------------------------------------------
def test_push_creates_the_repo_and_uploads_the_folder(trained_dir, tmp_path):
    api = FakeApi()
    result = publish_release(trained_dir, tmp_path / "rel", repo_id="owner/pushed", gallery=False, push=True,
                             api=api, private=True, commit_message="release 1")  # fmt: skip
    assert api.repos == [{"repo_id": "owner/pushed", "private": True, "exist_ok": True, "repo_type": "model"}]
    (upload,) = api.uploads
    assert upload["repo_id"] == "owner/pushed" and upload["folder_path"] == str(tmp_path / "rel")
    assert upload["repo_type"] == "model" and upload["commit_message"] == "release 1"
    assert set(upload["files"]) == set(result.files) and "README.md" in upload["files"]
    assert 'from_pretrained("owner/pushed")' in upload["files"]["README.md"].decode()
    assert result.commit.commit_url.endswith("c" * 40)

    dry = FakeApi()
    result = publish_release(trained_dir, tmp_path / "dry", repo_id="owner/pushed", gallery=False, push=True,
                             dry_run=True, api=dry)  # fmt: skip
    assert dry.repos == dry.uploads == [] and result.commit is None
    assert [call.split("(")[0] for call in result.calls] == ["create_repo", "upload_folder"]


def test_cli_publish(trained_dir, tmp_path, monkeypatch, capsys):
    api = FakeApi()
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: api)
    run = HUB_COMMANDS["publish"][0]
    argv = [str(trained_dir), str(tmp_path / "cli"), "--repo-id", "owner/cli", "--no-gallery", "--push"]
    assert run([*argv, "--dry-run"]) == 0
    assert "would call: create_repo" in capsys.readouterr().out and not api.uploads
    assert run(argv) == 1 and "not empty" in capsys.readouterr().err  # the dry run left the folder
    assert run([*argv, "--overwrite"]) == 0
    assert "pushed to owner/cli" in capsys.readouterr().out
    assert [u["repo_id"] for u in api.uploads] == ["owner/cli"]
    assert run([str(trained_dir), str(tmp_path / "x"), "--repo-id", "owner/bad name", "--no-gallery"]) == 1
    assert "malformed repo id" in capsys.readouterr().err
    assert run([str(tmp_path / "missing"), str(tmp_path / "y")]) == 1
    assert "does not exist" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------------
# bad input
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "owner/bad name", "-owner/x", "owner/x..y", "owner/"])
def test_malformed_repo_ids(repo_id):
    with pytest.raises(ValueError, match="malformed repo id"):
        check_repo_id(repo_id)


def test_bad_sources_are_clear_errors(trained_dir, original_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"model directory .*missing does not exist"):
        publish_release(tmp_path / "missing", out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a pixelbytes model nor an original PixelBytes checkpoint: no config"):
        publish_release(tmp_path / "empty", out)
    with pytest.raises(ValueError, match=r"subfolders \['lstm_autoregressive_last'\]"):
        publish_release(original_dir, out)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match=r"neither a pixelbytes model nor an original .*unknown checkpoint"):
        publish_release(bert, out)
    control = ActionPixelBytesTokenizer(vocabulary=control_vocabulary())
    mismatch = save_model_dir(tmp_path / "mismatch", tiny_model(), control)
    with pytest.raises(ValueError, match="tokenizer/model mismatch"):
        publish_release(mismatch, out)
    no_tokenizer = tmp_path / "no-tokenizer"
    tiny_model().save_pretrained(no_tokenizer)
    with pytest.raises(ValueError, match="has no tokenizer"):
        publish_release(no_tokenizer, out)
    with pytest.raises(ValueError, match="push needs a repo id"):
        publish_release(trained_dir, out, push=True)
    with pytest.raises(ValueError, match="malformed repo id"):
        publish_release(trained_dir, out, repo_id="owner/a/b")
    with pytest.raises(ValueError, match="must not be"):
        publish_release(trained_dir, trained_dir, overwrite=True)
    assert not out.exists()  # nothing built on any error
    publish_release(trained_dir, out, gallery=False)
    with pytest.raises(FileExistsError, match="not empty"):
        publish_release(trained_dir, out, gallery=False)
    bad_card = tmp_path / "card.md"
    bad_card.write_text("---\nrepo_id: owner/x\nlicence: mit\n---\nhello\n")
    with pytest.raises(ValueError, match=r"unknown front-matter keys \['licence'\]"):
        publish_release(trained_dir, tmp_path / "card-out", card_source=bad_card)
    bad_results = save_model_dir(tmp_path / "bad-results", tiny_model(), ActionPixelBytesTokenizer())
    (bad_results / "eval_results.json").write_text(json.dumps({"dataset": {"name": "x"}}))
    with pytest.raises(ValueError, match="no 'metrics' object"):
        publish_release(bad_results, tmp_path / "bad-results-out", gallery=False)
    (bad_results / "eval_results.json").write_text('{"metrics": {"loss": 1.0')  # a truncated file
    with pytest.raises(ValueError, match=r"cannot read .*eval_results.json"):
        publish_release(bad_results, tmp_path / "bad-results-out", gallery=False)
    (bad_results / "eval_results.json").unlink()
    (bad_results / "trainer_state.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"trainer_state.json must hold a JSON object"):
        publish_release(bad_results, tmp_path / "bad-state-out", gallery=False)
    corrupt = tmp_path / "corrupt-config"
    corrupt.mkdir()
    (corrupt / "config.json").write_bytes(b"\x00\xff not json")
    with pytest.raises(ValueError, match=r"cannot read .*config.json"):
        publish_release(corrupt, out)


# -------------------------------------------------------------------------------------------------
# card sources (hub_cards/)
# -------------------------------------------------------------------------------------------------
CARD_SOURCES = {
    "aPixelBytes-Pokemon.md": ("ffurfaro/aPixelBytes-Pokemon", None, "0.8852"),
    "PixelBytes-Pokemon.md": ("ffurfaro/PixelBytes-Pokemon", v1_vocabulary, "0.149 ± 0.062"),
    "aPixelBytes-OptimalControl.md": ("ffurfaro/aPixelBytes-OptimalControl", control_vocabulary, "0.9581"),
}


def test_hub_cards_readme_lists_every_source():
    text = (HUB_CARDS / "README.md").read_text()
    assert set(CARD_SOURCES) == {p.name for p in HUB_CARDS.glob("*.md")} - {"README.md"}
    for name, (repo_id, _, _) in CARD_SOURCES.items():
        assert f"`{name}`" in text and f"`{repo_id}`" in text


@pytest.mark.parametrize("name", sorted(CARD_SOURCES))
def test_hub_card_sources_render_with_published_and_measured_numbers(name, tmp_path, monkeypatch):
    repo_id, vocabulary, published_number = CARD_SOURCES[name]
    source = read_card_source(HUB_CARDS / name)
    assert source.settings["repo_id"] == repo_id
    for table in source.settings["published"]:
        assert table["rows"] and all(len(row) == len(table["columns"]) for row in table["rows"])
    tokenizer = ActionPixelBytesTokenizer(vocabulary=vocabulary()) if vocabulary else ActionPixelBytesTokenizer()
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer, embed_size=12, hidden_size=16)).eval()
    model_dir = save_model_dir(tmp_path / "model", model, tokenizer)
    (model_dir / "eval_results.json").write_text(json.dumps({"metrics": {"bits_per_token": 3.25}}))
    folder = tmp_path / "release"
    publish_release(model_dir, folder, card_source=HUB_CARDS / name, prompts=["ab"], sprite_size=2, sound_steps=2)
    card = ModelCard.load(folder / "README.md")
    assert card.data.model_name == repo_id.split("/")[1]
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {"bits_per_token": 3.25}
    text = card.text
    published = text.split("## Published results (original project)")[1]
    assert published_number in published and "not measured on this checkpoint" in published
    assert published_number not in text.split("## Published results")[0]  # never mixed with the measured ones
    assert "| bits_per_token | 3.25 |" in text
    # the card's own snippet runs (its prompt fits the model's vocabulary), the repo id pointing at the folder
    code = snippet_of(text).replace(repr(repo_id).replace("'", '"'), repr(str(folder)))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "model_card_snippet", "exec"), {"__name__": "__snippet__"})
    assert Image.open(tmp_path / "sprite.png").size == (4, 4)


def test_directory_card_source_copies_its_assets(trained_dir, tmp_path):
    source = tmp_path / "my-card"
    (source / "figures").mkdir(parents=True)
    Image.new("RGB", (2, 2)).save(source / "figures" / "extra.png")
    (source / "card.md").write_text(
        "---\nmodel_name: My PixelBytes\nprompts: [ab]\n---\n"
        '{% extends "model_card_template.md" %}{% block extra %}\n## Extra\n\n![extra](figures/extra.png)\n'
        "{% endblock %}\n"
    )
    folder = tmp_path / "release"
    publish_release(trained_dir, folder, card_source=source, sprite_size=2, sound_steps=2)
    assert (folder / "figures" / "extra.png").is_file() and (folder / "gallery" / "01-ab.png").is_file()
    text = (folder / "README.md").read_text()
    assert "# My PixelBytes" in text and "## Extra\n\n![extra](figures/extra.png)" in text
    assert not (folder / "card.md").exists()


# -------------------------------------------------------------------------------------------------
# `card` after training
# -------------------------------------------------------------------------------------------------
def test_card_after_a_tiny_training_run(tmp_path, capsys):
    data = make_folder_dataset(tmp_path / "data")
    data_args = DataArguments(dataset=str(data), seq_length=64, stride=48, audio_stride=8, validation_fraction=0.34)
    # with a warm-up, the first LOGGED learning rate is not the configured (initial) one
    metrics = run_training(ModelArguments(**TINY_MODEL), data_args, _args(tmp_path, warmup_steps=2))
    out = tmp_path / "out"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 5 and state["log_history"][0]["learning_rate"] != 1e-2
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["learning_rate"] == 1e-2 and summary["max_steps"] == 5 and summary["seed"] == 0
    assert summary["per_device_train_batch_size"] == 2 and summary["gradient_accumulation_steps"] == 1
    results = load_eval_results(out / "eval_results.json")
    assert results["dataset"] == {"name": str(data), "split": "validation", "num_items": 3}
    assert summary["validation_samples"] == 3
    assert results["metrics"]["loss"] == pytest.approx(metrics["eval_loss"])
    assert not any(k.startswith("eval_") or "runtime" in k or "per_second" in k or k == "epoch"
                   for k in results["metrics"])  # fmt: skip

    assert HUB_COMMANDS["card"][0]([str(out)]) == 0
    capsys.readouterr()
    card = ModelCard.load(out / "README.md")
    index = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert index == results["metrics"] and "train_loss" not in card.content
    assert {(r.dataset_name, r.dataset_split) for r in card.data.eval_results} == {(str(data), "validation")}
    assert "| initial learning rate | 0.01 |" in card.text
    assert "| optimizer steps | 5 |" in card.text and "| max steps | 5 |" in card.text

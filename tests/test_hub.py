"""Hub integration: remote code without the package, offline Hub ids, push_to_hub (fake API and mock HTTP),
model cards, and the `convert` / `export-remote-code` / `card` CLI commands. No network is used (shared helpers:
hub_helpers.py; `publish`: test_publish.py)."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import httpx2
import huggingface_hub
import numpy as np
import pytest
import torch
import transformers
from huggingface_hub import ModelCard
from huggingface_hub.errors import EntryNotFoundError
from PIL import Image
from safetensors.torch import load, load_file

from hub_helpers import REMOTE_SCRIPT, FakeApi, populate_hub_cache, run_python
from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
from pixelbytes.hub import (
    REMOTE_CODE_MODULES,
    add_remote_code,
    export_remote_code,
    push_model,
    remote_code_files,
    render_model_card,
)
from pixelbytes.hub.cli_commands import HUB_COMMANDS, add_hub_commands
from tiny_models import tiny_model

ORIGINAL = Path(__file__).parent / "fixtures" / "original"
PROMPT = "a red heart"
MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors"}
TOKENIZER_FILES = {"tokenizer_config.json", "pxby_vocab.json"}
CODE_FILES = {f"{name}.py" for name in REMOTE_CODE_MODULES}


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0), ActionPixelBytesTokenizer()


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory) -> Path:
    model, tokenizer = tiny
    directory = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def remote(tiny, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("remote")
    export_remote_code(*tiny, directory)
    return directory


def reference_outputs(model, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    return logits, model.generate(**enc, max_new_tokens=6, do_sample=False)


# -------------------------------------------------------------------------------------------------
# remote code
# -------------------------------------------------------------------------------------------------
def test_remote_code_files_are_the_flat_modules():
    files = remote_code_files()
    assert {f.name for f in files} == CODE_FILES
    assert len({f.parent for f in files}) == 1


def test_remote_code_refuses_absolute_package_imports(tmp_path, monkeypatch):
    from pixelbytes.hub import remote_code

    package = tmp_path / "pixelbytes"
    package.mkdir()
    for source in remote_code_files():
        shutil.copyfile(source, package / source.name)
    with open(package / "layout.py", "a") as handle:
        handle.write("\nimport pixelbytes.codecs\n")
    monkeypatch.setattr(remote_code, "_PACKAGE_DIR", package)
    with pytest.raises(RuntimeError, match=r"layout.py imports 'pixelbytes' absolutely"):
        remote_code_files()


def test_export_remote_code_writes_auto_map(remote):
    names = {p.name for p in remote.iterdir()}
    assert names == MODEL_FILES | TOKENIZER_FILES | CODE_FILES
    config = json.loads((remote / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_pixelbytes.PxByConfig",
        "AutoModel": "modeling_pixelbytes.PxBySequenceModel",
        "AutoModelForCausalLM": "modeling_pixelbytes.PxBySequenceModel",
    }
    assert config["model_type"] == "pixelbytes"
    tok_config = json.loads((remote / "tokenizer_config.json").read_text())
    assert tok_config["auto_map"] == {"AutoTokenizer": ["tokenization_pixelbytes.ActionPixelBytesTokenizer", None]}
    for name in CODE_FILES:  # flat siblings: no absolute import of the package
        assert not re.search(r"^\s*(from|import) pixelbytes", (remote / name).read_text(), re.M)


def test_export_with_code_repo_points_at_it(tiny, tmp_path):
    export_remote_code(*tiny, tmp_path, code_repo="pxby-org/pxby-code")
    assert not list(tmp_path.glob("*.py"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "pxby-org/pxby-code--modeling_pixelbytes.PxBySequenceModel"
    with pytest.raises(FileNotFoundError, match=r"no config.json"):
        add_remote_code(tmp_path / "missing")


def test_remote_code_loads_and_generates_without_the_package(tiny, remote, tmp_path):
    """Fresh interpreter, pixelbytes not importable: by directory and by Hub id from an offline cache."""
    populate_hub_cache(remote, "pxby-org/tiny-remote", tmp_path / "hf" / "hub")
    script = REMOTE_SCRIPT % PROMPT
    result = run_python(script.replace("sys.argv[2]", repr(str(remote))), tmp_path, isolated=True)
    assert result["pixelbytes_importable"] is False
    logits, generated = reference_outputs(*tiny)
    for key in ("dir", "hub"):
        assert result[key + "_module"].startswith("transformers_modules.")
        assert result[key + "_module"].endswith("modeling_pixelbytes")
        assert result[key + "_tokenizer"].endswith("tokenization_pixelbytes")
        torch.testing.assert_close(result[key + "_logits"], logits, atol=1e-6, rtol=0)
        assert torch.equal(result[key + "_generated"], generated)
    assert (result["causal_lm"], result["config"]) == ("PxBySequenceModel", "PxByConfig")


OFFLINE_SCRIPT = """
import sys
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

import pixelbytes
from pixelbytes.conversion import convert_original

result = {}
model = AutoModel.from_pretrained("pxby-org/tiny").eval()
tokenizer = AutoTokenizer.from_pretrained("pxby-org/tiny")
enc = tokenizer("%s", return_tensors="pt")
with torch.no_grad():
    result["logits"] = model(**enc).logits
result["generated"] = model.generate(**enc, max_new_tokens=6, do_sample=False)
result["classes"] = (type(model).__name__, type(tokenizer).__name__,
                     type(AutoModelForCausalLM.from_pretrained("pxby-org/tiny")).__name__)

# the ORIGINAL layout: subfolders whose config.json has no model_type -> the converter
inputs = load_file(sys.argv[2])["inputs"]
for subfolder in ("lstm_autoregressive_last", "lstm_predict_last"):
    converted, conv_tok = convert_original("ffurfaro/aPixelBytes-Pokemon", subfolder=subfolder)
    with torch.no_grad():
        out = converted(input_ids=inputs[..., 5], context_ids=inputs)
    result[subfolder] = out.context_logits if out.context_logits is not None else out.logits
try:
    AutoModel.from_pretrained("ffurfaro/aPixelBytes-Pokemon", subfolder="lstm_autoregressive_last")
    result["auto_on_original"] = "loaded"
except (ValueError, OSError, KeyError) as err:
    result["auto_on_original"] = type(err).__name__
try:
    convert_original("ffurfaro/aPixelBytes-Pokemon")  # the repo root holds no checkpoint
    result["root"] = "loaded"
except FileNotFoundError as err:
    result["root"] = str(err)
try:
    AutoModel.from_pretrained("pxby-org/not-cached")
    result["missing"] = "loaded"
except OSError as err:
    result["missing"] = str(err)
torch.save(result, sys.argv[1])
"""


def test_offline_hub_ids_our_format_and_original_layout(tiny, saved, tmp_path):
    hub = tmp_path / "hf" / "hub"
    populate_hub_cache(saved, "pxby-org/tiny", hub)
    original = tmp_path / "original-repo"
    shutil.copytree(ORIGINAL / "apxby_autoregressive", original / "lstm_autoregressive_last")
    shutil.copytree(ORIGINAL / "apxby_predict", original / "lstm_predict_last")
    populate_hub_cache(original, "ffurfaro/aPixelBytes-Pokemon", hub)
    script = OFFLINE_SCRIPT % PROMPT
    script = script.replace("sys.argv[2]", repr(str(ORIGINAL / "apxby_autoregressive" / "golden_io.safetensors")))
    result = run_python(script, tmp_path, isolated=False)
    logits, generated = reference_outputs(*tiny)
    torch.testing.assert_close(result["logits"], logits, atol=1e-6, rtol=0)
    assert torch.equal(result["generated"], generated)
    assert result["classes"] == ("PxBySequenceModel", "ActionPixelBytesTokenizer", "PxBySequenceModel")
    for subfolder, golden in (
        ("lstm_autoregressive_last", "apxby_autoregressive"),
        ("lstm_predict_last", "apxby_predict"),
    ):
        expected = load_file(ORIGINAL / golden / "golden_io.safetensors")["logits"]
        torch.testing.assert_close(result[subfolder], expected, atol=1e-5, rtol=0)
    assert result["auto_on_original"] != "loaded"
    assert "subfolder" in result["root"] and "lstm_autoregressive_last" in result["root"]
    assert "pxby-org/not-cached" in result["missing"] or "offline" in result["missing"].lower()


# -------------------------------------------------------------------------------------------------
# push_to_hub
# -------------------------------------------------------------------------------------------------
def test_push_model_uploads_model_tokenizer_and_card(tiny):
    api = FakeApi()
    info = push_model(*tiny, "me/pxby-tiny", api=api, private=True, card_kwargs={"datasets": ["me/data"]})
    assert info.commit_url.endswith("a" * 40)
    assert api.repos == [
        {"repo_id": "me/pxby-tiny", "private": True, "exist_ok": True, "repo_type": "model", "token": None}
    ]
    (commit,) = api.commits
    assert set(commit["files"]) == {"README.md"} | MODEL_FILES | TOKENIZER_FILES
    card = ModelCard(commit["files"]["README.md"].decode())
    assert card.data.pipeline_tag == "text-to-image" and card.data.datasets == ["me/data"]
    assert 'from_pretrained("me/pxby-tiny")' in card.text
    state = load(commit["files"]["model.safetensors"])
    for key, value in tiny[0].state_dict().items():
        assert torch.equal(state[key], value)


def test_push_model_variants(tiny, tmp_path):
    api = FakeApi()
    extra = tmp_path / "sprite.gif"
    extra.write_bytes(b"GIF89a")
    push_model(*tiny, "me/a", api=api, card=False, remote_code=True, extra_files={"samples/sprite.gif": extra})
    push_model(*tiny, "me/b", api=api, card="---\nlicense: mit\n---\n# hi\n", create_pr=True)
    first, second = api.commits
    assert set(first["files"]) == MODEL_FILES | TOKENIZER_FILES | CODE_FILES | {"samples/sprite.gif"}
    assert set(second["files"]) == MODEL_FILES | TOKENIZER_FILES | {"README.md"} and second["create_pr"] is True
    with pytest.raises(TypeError, match="card must be"):
        push_model(*tiny, "me/c", api=api, card=3)
    with pytest.raises(ValueError, match="mismatch"):
        push_model(tiny[0], ActionPixelBytesTokenizer(audio_channels=1), "me/d", api=api)


def test_native_push_to_hub_with_patched_hf_api(tiny):
    """transformers' own model.push_to_hub / tokenizer.push_to_hub (strategy A of the notes)."""
    model, tokenizer = tiny
    api = FakeApi()
    with (
        mock.patch.object(transformers.utils.hub, "hf_api", return_value=api),
        mock.patch.object(transformers.utils.hub.ModelCard, "load", side_effect=EntryNotFoundError("x")),
    ):
        model.push_to_hub("me/native", tags=["pixelbytes"])
        tokenizer.push_to_hub("me/native")
    assert set(api.commits[0]["files"]) == {"README.md"} | MODEL_FILES
    assert TOKENIZER_FILES <= set(api.commits[1]["files"])


def test_push_model_end_to_end_through_mock_http(tiny, monkeypatch):
    """The real HfApi serialisation + upload path, answered by an httpx2.MockTransport."""
    from huggingface_hub.utils import _http

    requests: list[tuple[str, str]] = []
    commits: list[list[dict]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        requests.append((request.method, path))
        if path == "/api/repos/create":
            return httpx2.Response(200, json={"url": "https://huggingface.co/me/pxby-e2e", "name": "me/pxby-e2e"})
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            return httpx2.Response(
                200,
                json={
                    "files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files],
                    "commitOid": "0" * 40,
                },
            )
        if path.endswith("/commit/main"):
            assert request.headers["authorization"] == "Bearer hf_fake_token"
            commits.append([json.loads(line) for line in request.content.decode().splitlines() if line.strip()])
            return httpx2.Response(
                200,
                json={
                    "commitUrl": f"https://huggingface.co/me/pxby-e2e/commit/{'b' * 40}",
                    "commitOid": "b" * 40,
                    "pullRequestUrl": None,
                },
            )
        return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"}, json={"error": "not found"})

    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    previous = _http._GLOBAL_CLIENT_FACTORY
    huggingface_hub.set_client_factory(
        lambda: httpx2.Client(
            transport=httpx2.MockTransport(handler),
            event_hooks={"request": [_http.hf_request_event_hook]},
            follow_redirects=True,
        )
    )
    try:
        info = push_model(*tiny, "me/pxby-e2e")
    finally:
        huggingface_hub.set_client_factory(previous)
    assert _http._GLOBAL_CLIENT_FACTORY is previous
    assert info.oid == "b" * 40
    assert ("POST", "/api/repos/create") in requests and ("POST", "/api/models/me/pxby-e2e/commit/main") in requests
    (lines,) = commits
    files = {
        line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines if line["key"] == "file"
    }
    assert set(files) == {"README.md"} | MODEL_FILES | TOKENIZER_FILES
    assert json.loads(files["config.json"])["model_type"] == "pixelbytes"
    assert ModelCard(files["README.md"].decode()).data.library_name == "transformers"
    state = load(files["model.safetensors"])
    assert torch.equal(state["lm_head.weight"], tiny[0].lm_head.weight)


# -------------------------------------------------------------------------------------------------
# model cards
# -------------------------------------------------------------------------------------------------
def write_samples(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((248, 56, 0), (0, 0, 252))]
    frames[0].save(directory / "heart.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(directory / "heart.png")
    from pixelbytes import save_wav

    save_wav(directory / "cry.wav", np.zeros((2, 160), dtype=np.float32), 16000)
    return {
        "a red heart": directory / "heart.gif",
        "a red square": directory / "heart.png",
        "pikachu cry": directory / "cry.wav",
    }


def test_card_metadata_gallery_training_and_metrics(tiny, saved, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(saved, directory)
    state = {
        "global_step": 120,
        "epoch": 3.0,
        "num_train_epochs": 3,
        "train_batch_size": 8,
        "log_history": [
            {"loss": 4.1, "learning_rate": 0.001, "step": 10},
            {"loss": 2.2, "step": 120},
            {"eval_loss": 2.4, "step": 120},
        ],
    }
    (directory / "trainer_state.json").write_text(json.dumps(state))
    samples = write_samples(tmp_path / "outside")
    metrics = {"eval_loss": 2.4, "eval_next_token_accuracy": 0.51, "eval_runtime": 1.2, "epoch": 3.0}
    render_model_card(
        *tiny,
        directory,
        metrics=metrics,
        samples=samples,
        repo_id="me/pxby-tiny",
        datasets=["ffurfaro/PixelBytes-PokemonAll"],
        converted_from="ffurfaro/aPixelBytes-Pokemon",
    )
    card = ModelCard.load(directory / "README.md")
    data = card.data
    assert data.pipeline_tag == "text-to-image" and data.library_name == "transformers" and data.license == "mit"
    assert {"pixelbytes", "text-to-image", "text-to-audio", "custom_code"} <= set(data.tags)
    assert data.datasets == ["ffurfaro/PixelBytes-PokemonAll"]
    urls = [entry["output"]["url"] for entry in data.widget]
    assert urls == ["samples/heart.gif", "samples/heart.png", "samples/cry.wav"]
    assert all((directory / url).is_file() for url in urls)
    assert data.inference is False
    results = {r.metric_name: r.metric_value for r in data.eval_results}
    assert results == {"eval_loss": 2.4, "eval_next_token_accuracy": 0.51}  # bookkeeping keys dropped
    text = card.text
    assert '<audio controls src="samples/cry.wav">' in text and "![a red heart](samples/heart.gif)" in text
    assert "| optimizer steps | 120 |" in text and "| final eval loss | 2.4 |" in text
    assert "initial learning rate" not in text  # only the configured rate (training_summary.json) is "initial"
    assert "| parameters | 6,965 |" in text and "ffurfaro/aPixelBytes-Pokemon" in text
    assert "## Limitations" in text and "trust_remote_code=True" not in text.split("## Limitations")[0]


def test_card_without_metrics_has_no_model_index(tiny, tmp_path, remote):
    card = render_model_card(*tiny, tmp_path, save=False)
    assert card.data.eval_results is None and card.data.to_dict().get("metrics") is None
    assert "No trainer state" in card.text and not (tmp_path / "README.md").exists()
    remote_card = render_model_card(*tiny, remote, save=False)
    assert "trust_remote_code=True" in remote_card.text  # the directory ships the modelling code
    with pytest.raises(FileNotFoundError, match="sample file"):
        render_model_card(*tiny, tmp_path, samples={"x": tmp_path / "missing.gif"})


def test_card_usage_snippet_runs(tiny, saved, tmp_path, monkeypatch):
    card = render_model_card(*tiny, tmp_path / "card", repo_id="me/pxby-tiny")
    blocks = re.findall(r"```python\n(.*?)```", card.text, re.S)
    assert blocks and "import pixelbytes" in blocks[0]
    code = blocks[0].replace('"me/pxby-tiny"', repr(str(saved)))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "model_card_snippet", "exec"), {"__name__": "__snippet__"})
    assert Image.open(tmp_path / "sprite.png").size == (4, 4)


# -------------------------------------------------------------------------------------------------
# CLI commands
# -------------------------------------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pixelbytes")
    add_hub_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args([str(a) for a in argv])


def test_cli_convert(tmp_path, monkeypatch, capsys):
    api = FakeApi()
    monkeypatch.setattr("pixelbytes.hub.push.HfApi", lambda token=None: api)
    out = tmp_path / "converted"
    args = parse(
        "convert",
        ORIGINAL,
        out,
        "--subfolder",
        "apxby_autoregressive",
        "--data-slicing",
        "2,4",
        "--push-to-hub",
        "me/apxby",
    )
    assert args.func(args) == 0
    assert "converted" in capsys.readouterr().out
    assert {"README.md"} | MODEL_FILES | TOKENIZER_FILES <= {p.name for p in out.iterdir()}
    model = PxBySequenceModel.from_pretrained(out).eval()
    tokenizer = ActionPixelBytesTokenizer.from_pretrained(out)
    assert (tokenizer.image_stride, tokenizer.audio_stride) == (2, 4)
    io = load_file(ORIGINAL / "apxby_autoregressive" / "golden_io.safetensors")
    with torch.no_grad():
        got = model(input_ids=io["inputs"][..., 5], context_ids=io["inputs"]).context_logits
    torch.testing.assert_close(got, io["logits"], atol=1e-5, rtol=0)
    assert ModelCard.load(out / "README.md").data.pipeline_tag == "text-to-image"
    (commit,) = api.commits
    assert set(commit["files"]) == {"README.md"} | MODEL_FILES | TOKENIZER_FILES

    # a v1 checkpoint: the 113-id v1 vocabulary by default, the original's last-position logits
    args = parse("convert", ORIGINAL / "v1_rnn_bi_pxby_conv", tmp_path / "v1", "--no-card")
    assert args.func(args) == 0
    assert "converted" in capsys.readouterr().out
    v1_model = PxBySequenceModel.from_pretrained(tmp_path / "v1").eval()
    v1_tokenizer = ActionPixelBytesTokenizer.from_pretrained(tmp_path / "v1")
    assert v1_tokenizer.vocab_size == v1_model.config.vocab_size == 113
    v1_model.config.check_tokenizer(v1_tokenizer)
    io = load_file(ORIGINAL / "v1_rnn_bi_pxby_conv" / "golden_io.safetensors")
    windows = io["inputs"]
    with torch.no_grad():
        got = v1_model(input_ids=windows[:, :, 1, 1], context_ids=windows.flatten(2)).logits[:, -1]
    torch.testing.assert_close(got, io["logits"], atol=1e-5, rtol=0)
    args = parse("convert", ORIGINAL / "v1_rnn_bi_center", tmp_path / "v1c", "--no-card", "--vocabulary", "default")
    assert args.func(args) == 1
    assert "vocab_size 113 does not match the 151-id vocabulary" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("convert", ORIGINAL, out, "--data-slicing", "a,b")


def test_cli_export_remote_code(saved, tmp_path, capsys):
    source = tmp_path / "source"
    shutil.copytree(saved, source)
    (source / "README.md").write_text("---\nlicense: mit\n---\n")
    args = parse("export-remote-code", source, tmp_path / "out")
    assert args.func(args) == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert CODE_FILES | MODEL_FILES | TOKENIZER_FILES | {"README.md"} <= names
    args = parse("export-remote-code", source)  # in place
    assert args.func(args) == 0
    assert "auto_map" in json.loads((source / "config.json").read_text())
    assert CODE_FILES <= {p.name for p in source.iterdir()}
    args = parse("export-remote-code", tmp_path / "nowhere")
    assert args.func(args) == 1 and "no config.json" in capsys.readouterr().err


def test_cli_card(saved, tmp_path, capsys):
    directory = tmp_path / "model"
    shutil.copytree(saved, directory)
    results = {"dataset": {"name": "me/data", "split": "validation", "num_items": 3}, "metrics": {"loss": 3.0}}
    (directory / "eval_results.json").write_text(json.dumps(results))
    samples = write_samples(tmp_path / "gen")
    args = parse(
        "card",
        directory,
        "--repo-id",
        "me/pxby",
        "--dataset",
        "me/data",
        "--sample",
        f"a red heart={samples['a red heart']}",
    )
    assert args.func(args) == 0
    card = ModelCard.load(directory / "README.md")
    assert card.data.pipeline_tag == "text-to-image" and card.data.datasets == ["me/data"]
    assert [(r.metric_name, r.dataset_name, r.dataset_split) for r in card.data.eval_results] == [
        ("loss", "me/data", "validation")
    ]
    assert card.data.widget == [{"text": "a red heart", "output": {"url": "samples/heart.gif"}}]
    args = parse("card", directory, "--metrics", tmp_path / "missing.json")
    assert args.func(args) == 1 and "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("card", directory, "--sample", "no-equals-sign")


def test_hub_commands_for_the_console_script(saved, tmp_path, capsys):
    assert set(HUB_COMMANDS) == {"convert", "export-remote-code", "card", "publish"}
    run, help_text = HUB_COMMANDS["export-remote-code"]
    assert help_text and run([str(saved), str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "modeling_pixelbytes.py").is_file()
    with pytest.raises(SystemExit):
        HUB_COMMANDS["convert"][0](["--help"])
    assert "pixelbytes convert" in capsys.readouterr().out
    cli = pytest.importorskip("pixelbytes.cli")
    if "HUB_COMMANDS" in getattr(cli.main, "__code__", SimpleNamespace(co_names=())).co_names:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:  # the console script configures logging: keep the test session's configuration
            assert cli.main(["card", str(tmp_path / "a")]) == 0
        finally:
            root.handlers[:], root.level = handlers, level
        assert ModelCard.load(tmp_path / "a" / "README.md").data.pipeline_tag == "text-to-image"


def test_card_of_a_text_image_model_does_not_claim_audio(tiny, tmp_path):
    from pixelbytes.vocabulary import v1_vocabulary

    tokenizer = ActionPixelBytesTokenizer(vocabulary=v1_vocabulary())
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer, embed_size=12, hidden_size=16)).eval()
    card = render_model_card(model, tokenizer, tmp_path, save=False)
    assert "text-to-audio" not in card.data.tags and "text-to-image" in card.data.tags
    assert "no audio" in card.text and "audio / action sequences" not in card.text
    assert "text-to-audio" in render_model_card(*tiny, tmp_path, save=False).data.tags

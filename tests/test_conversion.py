"""Conversion of the original PixelBytes checkpoints (DESIGN §9) against golden outputs of the original code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from pixelbytes import PxByConfig, PxBySequenceModel
from pixelbytes.conversion import (
    apxby_config_to_kwargs,
    convert_apxby_state_dict,
    convert_original,
    detect_original_format,
    load_original_checkpoint,
)

ORIGINAL = Path(__file__).parent / "fixtures" / "original"
ATOL = 1e-5


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(ORIGINAL / name / "golden_io.safetensors")


def run(model: PxBySequenceModel, contexts: torch.Tensor):
    """Our model fed the original's (B, L, 6) contexts (input_ids only need the right shape and range)."""
    with torch.no_grad():
        return model(input_ids=contexts[..., 5], context_ids=contexts)


def copy_checkpoint(name: str, target: Path) -> Path:
    shutil.copytree(ORIGINAL / name, target)
    return target


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


# -------------------------------------------------------------------------------------------------
# golden checkpoints made by the original code
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "objective", "output"),
    [("apxby_predict", "next_token", "logits"), ("apxby_autoregressive", "context", "context_logits")],
)
def test_golden_apxby_logits(name, objective, output):
    model, tokenizer = convert_original(ORIGINAL / name)
    config = model.config
    assert (config.objective, config.embedding, config.backbone) == (objective, "pxby6", "lstm")
    assert (config.embed_size, config.hidden_size, config.num_hidden_layers, config.bidirectional) == (24, 16, 2, False)
    assert tokenizer.vocab_size == config.vocab_size == 151
    config.check_tokenizer(tokenizer)
    io = golden(name)
    got = getattr(run(model, io["inputs"]), output)
    assert got.shape == io["logits"].shape
    torch.testing.assert_close(got, io["logits"], atol=ATOL, rtol=0)


def test_old_key_set_predict_checkpoint_loads():
    """`AR: false` + unused mamba keys: the original code itself fails on it (fc size mismatch)."""
    model, tokenizer = convert_original(ORIGINAL / "apxby_predict", config_name="config_old_keys.json")
    assert model.config.objective == "next_token"
    assert tokenizer.audio_normalization == "zscore"  # the published Pokémon runs' normalisation
    io = golden("apxby_predict")
    torch.testing.assert_close(run(model, io["inputs"]).logits, io["logits"], atol=ATOL, rtol=0)
    # an explicit tokenizer setting wins
    _, tok = convert_original(
        ORIGINAL / "apxby_predict",
        config_name="config_old_keys.json",
        tokenizer_kwargs={"audio_normalization": "minmax", "data_slicing": 2},
    )
    assert (tok.audio_normalization, tok.image_stride, tok.audio_stride) == ("minmax", 2, 2)


def test_diffusion_is_refused_clearly_and_its_clean_forward_matches():
    with pytest.raises(NotImplementedError, match=r"objective='diffusion'.*embedding_noise"):
        convert_original(ORIGINAL / "apxby_diffusion_bi")
    # Intended path once PxBySequenceModel implements the diffusion objective: convert_original just works.
    # Until then the golden "clean forward" (t = 0, nothing masked) is a bidirectional LSTM + the 6·V head:
    checkpoint = load_original_checkpoint(ORIGINAL / "apxby_diffusion_bi")
    kwargs = apxby_config_to_kwargs(checkpoint.config)
    assert kwargs == {
        "vocab_size": 151,
        "embedding": "pxby6",
        "embed_size": 24,
        "backbone": "lstm",
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "bidirectional": True,
        "objective": "diffusion",
        "diffusion_scheme": "embedding_noise",
        "num_diffusion_steps": 5,
    }
    io = golden("apxby_diffusion_bi")
    kwargs.update(objective="context", window_size=io["inputs"].shape[1])
    kwargs.pop("diffusion_scheme"), kwargs.pop("num_diffusion_steps")
    model = PxBySequenceModel(PxByConfig(**kwargs)).eval()
    model.load_state_dict(convert_apxby_state_dict(checkpoint.config, checkpoint.state_dict), strict=True)
    torch.testing.assert_close(run(model, io["inputs"]).context_logits, io["logits"], atol=ATOL, rtol=0)


# -------------------------------------------------------------------------------------------------
# synthetic checkpoints from a pure-torch re-implementation of the original aPxBySequenceModel
# -------------------------------------------------------------------------------------------------
class OriginalAPxBy(nn.Module):
    """The original forward (reference inventory §3.5) without the diffusion noise: embed the 6 slots,
    concatenate, LSTM, fc; ``view(B, L, 6, V)`` unless predict."""

    def __init__(self, V: int, pxby_emb: int, hidden: int, layers: int, bidirection: bool, predict: bool):
        super().__init__()
        self.V, self.predict = V, predict
        self.embedding = nn.Embedding(V, pxby_emb, padding_idx=0)
        self.sequence_model = nn.LSTM(6 * pxby_emb, hidden, layers, bidirectional=bidirection, batch_first=True)
        self.fc = nn.Linear(hidden * (1 + bidirection), V * (1 if predict else 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        out = self.fc(self.sequence_model(self.embedding(x).view(B, L, -1))[0])
        return out if self.predict else out.view(B, L, 6, self.V)


@pytest.mark.parametrize(
    ("keys", "bidirection", "predict"),
    [
        ({"objective": "autoregressive"}, True, False),  # bilstm autoregressive (current keys)
        ({"objective": 0}, False, True),  # an integer objective (the constructor's argument form)
        ({"auto_regressive": True, "diffusion": True}, True, False),  # the bilstm_ARDM key set
        ({}, False, True),  # no objective key at all: the head size decides
    ],
)
def test_synthetic_checkpoints_match_the_original_forward(tmp_path, keys, bidirection, predict):
    torch.manual_seed(0)
    V, e, H, n = 151, 3, 10, 2
    reference = OriginalAPxBy(V, e, H, n, bidirection, predict).eval()
    config = {
        "architectures": ["aPxBySequenceModel"],
        "vocab_size": V,
        "embed_size": 6 * e,
        "pxby_dim": 6,
        "pxby_emb": e,
        "hidden_size": H,
        "num_layers": n,
        "bidirection": bidirection,
        **keys,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(reference.state_dict(), tmp_path / "model.safetensors")
    model, _ = convert_original(tmp_path)
    assert model.config.hidden_size == H * (2 if bidirection else 1)
    contexts = torch.randint(0, V, (2, 9, 6))
    with torch.no_grad():
        expected = reference(contexts)
    model.config.window_size = 64
    out = run(model, contexts)
    torch.testing.assert_close(out.logits if predict else out.context_logits, expected, atol=ATOL, rtol=0)


# -------------------------------------------------------------------------------------------------
# v1 checkpoints: validated, then refused with the list of what is missing
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "missing"),
    [
        # the centre / window3x3 embeddings and the v1_encoder backbone exist now (issue 5): no longer missing
        ("v1_rnn_bi_center", ["113-id v1 vocabulary", "weight-name mapping"]),
        ("v1_rnn_bi_pxby_conv", ["113-id v1 vocabulary", "weight-name mapping"]),
        ("v1_rnn_uni_pxby_conv", ["weight-name mapping"]),
        ("v1_attention_1_layer", ["weight-name mapping"]),
    ],
)
def test_v1_checkpoints_are_refused_with_what_is_missing(name, missing):
    with pytest.raises(NotImplementedError) as info:
        convert_original(ORIGINAL / name)
    message = str(info.value)
    assert "valid v1" in message
    for item in missing:
        assert item in message


def test_v1_bmamba_checkpoint_is_validated_then_refused(tmp_path):
    D, S, inner, rank, V = 18, 8, 36, 2, 113  # expand 2, dt_rank = ceil(18 / 16)
    mixer = {
        "in_proj.weight": (2 * inner, D),
        "conv1d.weight": (inner, 1, 4),
        "conv1d.bias": (inner,),
        "x_proj.weight": (rank + 2 * S, inner),
        "dt_proj.weight": (inner, rank),
        "dt_proj.bias": (inner,),
        "A_log": (inner, S),
        "D": (inner,),
        "out_proj.weight": (D, inner),
    }
    shapes = {f"_mamba.{k}": v for k, v in mixer.items()} | {f"layers.0.{k}": v for k, v in mixer.items()}
    shapes |= {"embedding.weight": (V, D), "norm.weight": (D,), "norm.bias": (D,), "lm_head.weight": (V, D)}
    save_file({k: torch.zeros(v) for k, v in shapes.items()}, tmp_path / "model.safetensors")
    config = {
        "architectures": ["bMamba"],
        "model_type": "sequence-generator",
        "dim": D,
        "d_state": S,
        "depth": 2,
        "vocab_size": V,
        "pembed": False,
        "pxby_embed": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotImplementedError, match=r"(?s)valid v1 bMamba.*mamba_style.*'v1'"):
        convert_original(tmp_path)
    save_file({k: torch.zeros(v) for k, v in shapes.items() if k != "norm.bias"}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing keys: norm\.bias"):
        convert_original(tmp_path)


# -------------------------------------------------------------------------------------------------
# unknown or inconsistent checkpoints
# -------------------------------------------------------------------------------------------------
def test_inconsistent_weights_are_listed(tmp_path):
    directory = copy_checkpoint("apxby_autoregressive", tmp_path / "ckpt")
    weights = load_file(directory / "model.safetensors")
    weights.pop("fc.bias")
    weights["extra.weight"] = torch.zeros(2)
    weights["sequence_model.weight_hh_l1"] = torch.zeros(64, 8)
    save_file(weights, directory / "model.safetensors")
    with pytest.raises(ValueError) as info:
        convert_original(directory)
    message = str(info.value)
    for part in (
        "missing keys: fc.bias",
        "unexpected keys: extra.weight",
        "sequence_model.weight_hh_l1: (64, 8) instead of (64, 16)",
    ):
        assert part in message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden_size": 8}, "wrong shapes"),  # config and weights disagree
        ({"objective": "predict"}, r"fc.weight: \(906, 16\) instead of \(151, 16\)"),
        ({"bidirection": True}, "missing keys: sequence_model.weight_ih_l0_reverse"),
        ({"pxby_dim": 5}, "pxby_dim=5"),
        ({"embed_size": 25}, "embed_size=25 differs"),
        ({"objective": "denoise"}, "objective='denoise'"),
        ({"custom_model": "MyMamba"}, "custom_model"),
        ({"num_layers": None}, "missing key 'num_layers'"),
        ({"architectures": ["GPT2LMHeadModel"]}, "unknown checkpoint"),
        ({"model_type": "pixelbytes"}, "already in the pixelbytes format"),
    ],
)
def test_bad_configs_are_clear_errors(tmp_path, changes, message):
    directory = copy_checkpoint("apxby_autoregressive", tmp_path / "ckpt")
    edit_config(directory, **changes)
    with pytest.raises(ValueError, match=message):
        convert_original(directory)


def test_v1_shape_mismatch_is_a_value_error(tmp_path):
    directory = copy_checkpoint("v1_rnn_bi_pxby_conv", tmp_path / "ckpt")
    edit_config(directory, d_state=16)
    with pytest.raises(ValueError, match=r"(?s)do not match its v1 SimpleRNNModel.*_lstm.weight_hh_l0"):
        convert_original(directory)


def test_vocabulary_mismatch_and_unknown_vocabulary(tmp_path):
    with pytest.raises(ValueError, match="vocabulary must be one of"):
        convert_original(ORIGINAL / "apxby_predict", vocabulary="v1")
    model, tokenizer = convert_original(ORIGINAL / "apxby_predict", vocabulary="control")
    assert tokenizer.vocabulary.num_bytes == 5
    model.config.check_tokenizer(tokenizer)


def test_missing_files_point_at_subfolders(tmp_path):
    copy_checkpoint("apxby_predict", tmp_path / "repo" / "lstm_predict_last")
    with pytest.raises(FileNotFoundError, match=r"lstm_predict_last.*subfolder="):
        convert_original(tmp_path / "repo")
    model, _ = convert_original(tmp_path / "repo", subfolder="lstm_predict_last")
    assert model.config.objective == "next_token"
    (tmp_path / "repo" / "lstm_predict_last" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        convert_original(tmp_path / "repo", subfolder="lstm_predict_last")


def test_detect_format():
    assert detect_original_format({"architectures": ["aPxBySequenceModel"]}) == "apxby"
    assert detect_original_format({"architectures": ["SimpleRNNModel"], "model_type": "sequence-generator"}) == "v1"
    legacy = {"embed_size": 126, "pxby_dim": 6, "hidden_size": 512, "num_layers": 2, "model_type": "hybrid"}
    assert detect_original_format(legacy) == "apxby"
    with pytest.raises(ValueError, match="unknown checkpoint"):
        detect_original_format({"model_type": "sequence-generator"})


def test_converted_model_round_trips_through_save_pretrained(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = convert_original(ORIGINAL / "apxby_autoregressive")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, PxBySequenceModel)
    AutoTokenizer.from_pretrained(tmp_path)
    io = golden("apxby_autoregressive")
    torch.testing.assert_close(run(loaded, io["inputs"]).context_logits, io["logits"], atol=ATOL, rtol=0)


@pytest.mark.skipif(not hasattr(PxBySequenceModel, "from_original"), reason="PxBySequenceModel.from_original not wired")
def test_from_original_classmethod():
    model = PxBySequenceModel.from_original(ORIGINAL / "apxby_predict")
    io = golden("apxby_predict")
    torch.testing.assert_close(run(model, io["inputs"]).logits, io["logits"], atol=ATOL, rtol=0)

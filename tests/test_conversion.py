"""Conversion of the original PixelBytes checkpoints (DESIGN §9) against golden outputs of the original code."""

from __future__ import annotations

import io
import json
import math
import pickle
import re
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


def test_diffusion_checkpoint_converts_and_its_clean_forward_matches():
    # convert_original builds an embedding_noise diffusion model (tests/test_diffusion.py checks it in depth);
    # its golden "clean forward" (t = 0, nothing masked) is also a bidirectional LSTM + the 6·V head:
    converted, _ = convert_original(ORIGINAL / "apxby_diffusion_bi")
    assert converted.config.diffusion_scheme == "embedding_noise"
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
# v1 checkpoints: golden logits of the original code (RNN, attention) and a mamba_ssm-math reference (bMamba)
# -------------------------------------------------------------------------------------------------
def run_v1(model: PxBySequenceModel, windows: torch.Tensor) -> torch.Tensor:
    """Our model fed the original's (B, L, 3, 3) windows; the last-position logits the v1 models output."""
    B, L = windows.shape[:2]
    ids = windows[:, :, 1, 1]  # the centre of a window is its token
    context = ids.unsqueeze(-1) if model.config.embedding == "center" else windows.reshape(B, L, 9)
    with torch.no_grad():
        return model(input_ids=ids, context_ids=context).logits[:, -1]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("v1_rnn_bi_pxby_conv", ("window3x3", True, "lstm", "first_layer", 18, 8, 2)),
        ("v1_rnn_bi_pxby_noconv", ("window3x3", False, "lstm", "first_layer", 18, 8, 2)),
        ("v1_rnn_bi_center", ("center", False, "lstm", "first_layer", 18, 8, 2)),
        ("v1_rnn_uni_pxby_conv", ("window3x3", True, "lstm", False, 18, 8, 2)),
        ("v1_attention_1_layer", ("window3x3", True, "attention", True, 16, 16, 1)),  # width 18 → 16 (4 heads)
    ],
)
def test_golden_v1_logits(name, expected):
    model, tokenizer = convert_original(ORIGINAL / name)
    config = model.config
    got_config = (config.embedding, config.window_conv, config.backbone, config.bidirectional)
    assert got_config + (config.embed_size, config.hidden_size, config.num_hidden_layers) == expected
    assert config.attention_style == ("v1_encoder" if config.backbone == "attention" else "modern")
    assert tokenizer.vocab_size == config.vocab_size == 113 and config.num_levels == 0
    config.check_tokenizer(tokenizer)
    io = golden(name)
    torch.testing.assert_close(run_v1(model, io["inputs"]), io["logits"], atol=ATOL, rtol=0)


def test_v1_conversion_round_trips_and_tokenizes(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = convert_original(ORIGINAL / "v1_attention_1_layer")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    loaded.config.check_tokenizer(loaded_tok)
    io = golden("v1_attention_1_layer")
    torch.testing.assert_close(run_v1(loaded, io["inputs"]), io["logits"], atol=ATOL, rtol=0)
    # text + image streams of the v1 vocabulary are the published ids (the first 113 of the default table)
    from PIL import Image

    ids = loaded_tok(text="hi", images=Image.new("RGB", (2, 2), (0, 0, 0)))["input_ids"]
    assert ids == [39, 40, 2, 58, 58, 1, 58, 58, 2]
    with pytest.raises(ValueError, match="no action / audio levels"):
        loaded_tok(text="hi", audio=torch.zeros(2, 8).numpy())
    with torch.no_grad():  # the window encoder runs on ids alone (windows from the layout engine)
        assert loaded(input_ids=torch.tensor([ids])).logits.shape == (1, len(ids), 113)


class ReferenceMambaSSM(nn.Module):
    """mamba_ssm ``Mamba`` written from its documented math (names as mamba_ssm): ``in_proj`` → (x, z); causal
    depthwise conv (left padding K-1) + SiLU; ``x_proj`` → (dt, B, C); Δ = softplus(dt_proj(dt));
    h_t = exp(Δ·A) h_{t-1} + Δ·B·x (A = -exp(A_log)); y = C·h + D·x; y · SiLU(z); ``out_proj``."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int):
        super().__init__()
        inner, self.rank, self.N = expand * d_model, math.ceil(d_model / 16), d_state
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, self.rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1).float()).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d_model, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        L = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, L, inner) each
        x = nn.functional.silu(self.conv1d(x.transpose(1, 2))[..., :L]).transpose(1, 2)
        dt, Bm, Cm = self.x_proj(x).split([self.rank, self.N, self.N], dim=-1)
        delta = nn.functional.softplus(self.dt_proj(dt))  # (B, L, inner)
        A = -torch.exp(self.A_log)  # (inner, N)
        h = x.new_zeros(x.shape[0], x.shape[2], self.N)
        ys = []
        for t in range(L):
            h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * Bm[:, t, None, :] * x[:, t, :, None]
            ys.append((h * Cm[:, t, None, :]).sum(-1) + self.D * x[:, t])
        return self.out_proj(torch.stack(ys, dim=1) * nn.functional.silu(z))


class ReferencePxByEmbed(nn.Module):
    """v1 PxByEmbed from its description: per-cell embedding, σ(α)-gated 3×3 conv, channel-major flatten, linear,
    LayerNorm."""

    def __init__(self, V: int, D: int):
        super().__init__()
        e = max(9, D // 9)
        self.alpha = nn.Parameter(torch.rand(1, 1, 3, 3))
        self.linear_embedding = nn.Embedding(V, e)
        self.patch_embedding = nn.Conv2d(e, e, 3, padding=1)
        self.projection = nn.Linear(9 * e, D)
        self.norm = nn.LayerNorm(D)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        B, L = windows.shape[:2]
        x = self.linear_embedding(windows.reshape(B * L, 3, 3)).permute(0, 3, 1, 2)
        gate = torch.sigmoid(self.alpha)
        x = gate * x + (1 - gate) * self.patch_embedding(x)
        return self.norm(self.projection(x.reshape(B, L, -1)))


class ReferenceBMamba(nn.Module):
    """v1 ``bMamba`` (reference inventory §3.2): embedding; ``_mamba`` (bidirectional: ``norm(m(x) + flip(m(flip
    x)))``, shared weights); ``layers`` = plain mixers, no residual, no norm; ``lm_head`` (no bias) on the last
    position."""

    def __init__(self, V: int, D: int, N: int, depth: int, bidirectional: bool, pxby: bool):
        super().__init__()
        self.bidirectional, self.pxby = bidirectional, pxby
        self.embedding = ReferencePxByEmbed(V, D) if pxby else nn.Embedding(V, D)
        self._mamba = ReferenceMambaSSM(D, N, 4, 2)
        self.layers = nn.ModuleList(ReferenceMambaSSM(D, N, 4, 2) for _ in range(depth - 1))
        if bidirectional:
            self.norm = nn.LayerNorm(D)
        self.lm_head = nn.Linear(D, V, bias=False)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = self.embedding(windows) if self.pxby else self.embedding(windows[:, :, 1, 1])
        h = self._mamba(x)
        if self.bidirectional:
            h = self.norm(h + self._mamba(x.flip(1)).flip(1))
        for layer in self.layers:
            h = layer(h)
        return self.lm_head(h[:, -1])


def randomize_mamba_reference(reference: nn.Module) -> None:
    """Weights of a trained-looking scale: A_log = log(1..N) + noise, Δ bias = softplus⁻¹(dt ∈ [1e-3, 0.1])."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("A_log"):
                param.add_(0.1 * noise)
            elif name.endswith("dt_proj.bias"):
                u = torch.rand(param.shape, generator=generator)
                dt = torch.exp(math.log(1e-3) + u * (math.log(0.1) - math.log(1e-3)))
                param.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
            elif name.endswith(".D"):
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(0.4 * noise)


def write_v1_checkpoint(directory: Path, architecture: str, state_dict: dict, **config) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {"architectures": [architecture], "model_type": "sequence-generator", "vocab_size": 113, **config}
    (directory / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state_dict.items()}, directory / "model.safetensors")
    return directory


@pytest.mark.parametrize(("bidirectional", "pxby", "depth"), [(True, False, 2), (False, True, 2), (True, True, 1)])
def test_v1_bmamba_matches_the_mamba_ssm_math(tmp_path, monkeypatch, bidirectional, pxby, depth):
    from transformers.models.mamba import modeling_mamba

    def kernel(*args, **kwargs):
        raise AssertionError("a CUDA kernel was called on CPU tensors")

    for name in ("mamba_inner_fn", "causal_conv1d_fn", "causal_conv1d_update", "mamba_selective_scan",
                 "mamba_selective_state_update"):  # fmt: skip
        monkeypatch.setattr(modeling_mamba, name, kernel, raising=False)
    torch.manual_seed(0)
    D, N, V = 18, 8, 113
    reference = ReferenceBMamba(V, D, N, depth, bidirectional, pxby).eval()
    randomize_mamba_reference(reference)
    flags = {"bidirectional": bidirectional, "pxby_embed": pxby, "pembed": pxby}
    directory = write_v1_checkpoint(tmp_path / "ssm", "bMamba", reference.state_dict(), dim=D, d_state=N, depth=depth,
                                    **flags)  # fmt: skip
    model, tokenizer = convert_original(directory)
    config = model.config
    assert (config.backbone, config.mamba_style, config.bidirectional) == ("mamba", "v1", bidirectional)
    assert (config.hidden_size, config.state_size, config.conv_kernel, config.expand) == (D, N, 4, 2)
    assert tokenizer.vocab_size == 113
    windows = torch.randint(0, V, (2, 9, 3, 3))
    windows[:, :, 1, 2] = 0
    windows[:, :, 2] = 0
    with torch.no_grad():
        expected = reference(windows)
    torch.testing.assert_close(run_v1(model, windows), expected, atol=ATOL, rtol=0)
    model.backbone.use_mambapy = False  # the sequential scan gives the same numbers
    torch.testing.assert_close(run_v1(model, windows), expected, atol=ATOL, rtol=0)


def test_v1_unidirectional_bmamba_generates_with_its_cache(tmp_path):
    torch.manual_seed(0)
    reference = ReferenceBMamba(113, 18, 8, 3, bidirectional=False, pxby=False)
    randomize_mamba_reference(reference)
    directory = write_v1_checkpoint(tmp_path / "ssm", "bMamba", reference.state_dict(), dim=18, d_state=8, depth=3,
                                    bidirectional=False, pxby_embed=False)  # fmt: skip
    model, _ = convert_original(directory)
    assert model.config.is_causal
    ids = torch.randint(3, 113, (2, 8))
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        out = model(input_ids=ids[:, :5], use_cache=True)
        steps = [out.logits[:, -1]]
        for k in range(5, 8):
            out = model(input_ids=ids[:, k : k + 1], cache=out.cache, use_cache=True)
            steps.append(out.logits[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 4:], atol=ATOL, rtol=0)


def test_v1_errors_list_what_did_not_match(tmp_path):
    # a bMamba whose weights miss the first layer's norm
    reference = ReferenceBMamba(113, 18, 8, 2, bidirectional=True, pxby=False)
    weights = {k: v for k, v in reference.state_dict().items() if k != "norm.bias"}
    directory = write_v1_checkpoint(tmp_path / "ssm", "bMamba", weights, dim=18, d_state=8, pxby_embed=False)
    with pytest.raises(ValueError, match=r"(?s)do not match its v1 bMamba.*missing keys: norm\.bias"):
        convert_original(directory)
    # a PxByEmbed checkpoint whose config says "centre"
    directory = copy_checkpoint("v1_rnn_bi_pxby_conv", tmp_path / "rnn")
    edit_config(directory, pxby_embed=False)
    with pytest.raises(ValueError) as info:
        convert_original(directory)
    for part in ("missing keys: embedding.weight", "unexpected keys: embedding.alpha"):
        assert part in str(info.value)
    # settings
    edit_config(directory, pxby_embed=None, dim=None, depth=0, bidirectional="yes", model_type="other")
    with pytest.raises(ValueError) as info:
        convert_original(directory)
    for part in ("missing key 'dim'", "depth=0", "bidirectional='yes'", "model_type='other'"):
        assert part in str(info.value)
    # a 151-id vocabulary for a 113-id model
    with pytest.raises(ValueError, match=r"vocab_size 113 does not match the 151-id vocabulary 'default'"):
        convert_original(ORIGINAL / "v1_rnn_bi_center", vocabulary="default")


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
        convert_original(ORIGINAL / "apxby_predict", vocabulary="v2")
    with pytest.raises(ValueError, match="vocab_size 151 does not match the 113-id vocabulary 'v1'"):
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


# -------------------------------------------------------------------------------------------------
# unusable weight files: one-line errors, non-zero exit codes
# -------------------------------------------------------------------------------------------------
def _convert_cli(source: Path, out: Path, capsys) -> tuple[int, str]:
    from pixelbytes.cli import main

    code = main(["convert", str(source), str(out), "--no-card"])
    return code, capsys.readouterr().err.strip()


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda sd, k: sd[k].view(-1).__setitem__(0, float("nan")), "weights hold NaN or infinite values in {k}"),
        (lambda sd, k: sd[k].view(-1).__setitem__(-1, float("inf")), "weights hold NaN or infinite values in {k}"),
        (lambda sd, k: sd.__setitem__(k, (sd[k] * 100).long()), "weights must be floating point, got {k} (int64)"),
        (lambda sd, k: sd.__setitem__(k, sd[k] > 0), "weights must be floating point, got {k} (bool)"),
    ],
)
def test_non_finite_or_non_float_weights_are_refused(tmp_path, capsys, edit, message):
    directory = copy_checkpoint("apxby_predict", tmp_path / "ckpt")
    state_dict = _weights(directory)
    key = sorted(state_dict)[1]
    edit(state_dict, key)
    save_file(state_dict, directory / "model.safetensors")
    expected = message.format(k=key)
    with pytest.raises(ValueError, match=re.escape(expected)):
        convert_original(directory)
    code, err = _convert_cli(directory, tmp_path / "out", capsys)
    assert code == 1 and err == f"error: model.safetensors: {expected}"
    assert not (tmp_path / "out" / "model.safetensors").exists()


def _pickled(path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path.write_bytes(pickle.dumps({"weight": Payload()}, protocol=2))


class TrainingState:
    """Stands for any Python object saved beside the tensors (an optimiser, a config object, …)."""

    def __init__(self) -> None:
        self.step = 3


def _torch_pickled(path: Path) -> None:
    torch.save({"weight": torch.zeros(2), "state": TrainingState()}, path)


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("model.safetensors", lambda p, data: p.write_bytes(data[: len(data) // 2]), "truncated or not a safetensors"),
        ("model.safetensors", lambda p, data: p.write_bytes(b"\x00" * 7), "truncated or not a safetensors"),
        ("pytorch_model.bin", lambda p, data: p.write_bytes(data[: len(data) // 2]), "truncated or corrupt"),
        ("pytorch_model.bin", lambda p, data: _pickled(p), "holds pickled Python objects"),
        ("pytorch_model.bin", lambda p, data: _torch_pickled(p), "holds pickled Python objects"),
        ("pytorch_model.bin", lambda p, data: torch.save([torch.zeros(2)], p), "does not hold a state dict"),
    ],
)
def test_truncated_or_pickle_weight_files_are_one_line_errors(tmp_path, capsys, name, write, message):
    directory = copy_checkpoint("apxby_predict", tmp_path / "ckpt")
    state_dict = _weights(directory)
    (directory / "model.safetensors").unlink()
    buffer = io.BytesIO()
    if name == "model.safetensors":
        save_file(state_dict, directory / name)
        data = (directory / name).read_bytes()
    else:
        torch.save(state_dict, buffer)
        data = buffer.getvalue()
    write(directory / name, data)
    code, err = _convert_cli(directory, tmp_path / "out", capsys)
    assert code == 1 and message in err and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "unpickled!" not in capsys.readouterr().out
    with pytest.raises(ValueError, match=message):
        convert_original(directory)

"""Conversion of the ORIGINAL PixelBytes checkpoints (fabienfrfr/PixelBytes) into the ``pixelbytes`` format.

Two original formats exist (DESIGN §9; their ``config.json`` carries no ``model_type`` we know):

* **aPxBy** (``architectures: ["aPxBySequenceModel"]``): 6-slot concatenated embedding → ``nn.LSTM`` →
  ``fc``, objective ``predict`` | ``autoregressive`` | ``diffusion`` (older Pokémon checkpoints carry
  ``AR: true|false`` instead, the ARDM runs ``auto_regressive`` / ``diffusion`` flags). ``hidden_size``
  is per direction (already halved when ``bidirection``). Converted exactly:

  ===============================================  =============================================
  original                                         pixelbytes
  ===============================================  =============================================
  ``embedding.weight [V, E/6]``                    ``embeddings.tokens.slot_embedding.weight``
  ``sequence_model.{w,b}_{ih,hh}_lK[_reverse]``    ``backbone.lstms.0.{…}``
  ``fc.weight [V·(6|1), H·dirs]``, ``fc.bias``     ``lm_head.weight``, ``lm_head.bias``
  objective predict / autoregressive / diffusion   ``next_token`` / ``context`` / ``diffusion``
  ``hidden_size`` (per direction) × dirs           ``hidden_size`` (the backbone's output width)
  ===============================================  =============================================

  A diffusion checkpoint becomes ``objective="diffusion"``, ``diffusion_scheme="embedding_noise"`` with the
  original ``num_diffusion_steps``; its clean forward (``t = 0``, nothing noised: no ``labels`` and no
  ``diffusion_mask``) gives the original's ``(B, L, 6, V)`` logits as ``context_logits``.

* **v1** (``model_type: "sequence-generator"``; ``SimpleRNNModel`` / ``bMamba`` / ``SimpleTransformerModel``;
  keys ``dim``, ``d_state``, ``depth``, ``vocab_size`` 113, optional ``pembed`` / ``pxby_embed`` /
  ``bidirectional``, ``d_conv`` / ``expand``): validated against the documented shapes, then converted exactly
  (:func:`v1_config_to_kwargs`, :func:`convert_v1_state_dict`) with the 113-id v1 vocabulary
  (``vocabulary="v1"``: 58 bytes + 55 colours, no audio levels):

  ========================================  ==============================================================
  original v1                               pixelbytes (``PxByConfig``)
  ========================================  ==============================================================
  ``pxby_embed`` (PxByEmbed) / centre       ``embedding="window3x3"`` (``window_conv=pembed``) / ``"center"``
  ``SimpleRNNModel`` bi / uni               ``backbone="lstm"``, ``hidden_size=d_state``,
                                            ``bidirectional="first_layer"`` / ``False``
  ``bMamba``                                ``backbone="mamba"``, ``mamba_style="v1"``, ``hidden_size=dim``,
                                            ``state_size=d_state``, ``conv_kernel=d_conv``, ``expand``
  ``SimpleTransformerModel``                ``backbone="attention"``, ``attention_style="v1_encoder"``,
                                            width ``dim // 4 * 4``, 4 heads, FFN 4×, ``bidirectional=True``
  ``depth``                                 ``num_hidden_layers``
  ========================================  ==============================================================

  The original v1 models output the LAST position of a window of 3×3 windows only; the converted model gives
  the same numbers at ``logits[:, -1]`` for ``context_ids`` = the windows flattened row-major to
  ``(B, L, 9)`` (centre models: the tokens). Bidirectional ones are window encoders (``window_size`` 256,
  the v1 training length; no cache); the unidirectional RNN / bMamba generate with a cache. The v1 bMamba
  ran on CUDA only (mamba_ssm); its conversion follows the documented mamba_ssm math (= ``transformers``'
  ``MambaMixer``, same parameter names; its bias-free ``lm_head`` gets a zero bias).

Unknown or inconsistent checkpoints raise :class:`ValueError` listing every key, shape or setting that did
not match.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..configuration_pixelbytes import PxByConfig
from ..modeling_pixelbytes import PxBySequenceModel
from ..tokenization_pixelbytes import ActionPixelBytesTokenizer
from ..vocabulary import PxByVocabulary, control_vocabulary, default_vocabulary, v1_vocabulary

logger = logging.getLogger(__name__)

__all__ = [
    "APXBY_ARCHITECTURE",
    "V1_ARCHITECTURES",
    "OriginalCheckpoint",
    "apxby_config_to_kwargs",
    "convert_apxby_state_dict",
    "convert_original",
    "convert_v1_state_dict",
    "detect_original_format",
    "load_original_checkpoint",
    "make_tokenizer",
    "read_weights",
    "v1_config_to_kwargs",
]

APXBY_ARCHITECTURE = "aPxBySequenceModel"
V1_ARCHITECTURES = ("SimpleRNNModel", "bMamba", "SimpleTransformerModel")
V1_MODEL_TYPE = "sequence-generator"
#: original objective → ours
APXBY_OBJECTIVES = {"predict": "next_token", "autoregressive": "context", "diffusion": "diffusion"}
_INT_OBJECTIVES = {0: "predict", 1: "autoregressive", 2: "diffusion"}
_NUM_SLOTS = 6
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_MAX_LISTED = 25


@dataclass
class OriginalCheckpoint:
    """An original checkpoint as found on disk or on the Hub.

    Attributes:
        config: the parsed ``config.json``.
        state_dict: the weights (``model.safetensors`` or ``pytorch_model.bin``).
        source: human-readable origin (path or ``repo_id[/subfolder]``), used in error messages.
    """

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    source: str


# -------------------------------------------------------------------------------------------------
# loading
# -------------------------------------------------------------------------------------------------
def _local_candidates(root: Path) -> list[str]:
    return sorted(p.parent.relative_to(root).as_posix() for p in root.glob("*/config.json"))


def _resolve_file(
    path_or_repo_id: str | os.PathLike,
    filename: str,
    subfolder: str | None,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    token: str | bool | None,
    local_files_only: bool,
) -> tuple[str | None, str]:
    """Local file or Hub download (cache-aware, offline-aware): ``(path, "")`` or ``(None, why)``."""
    root = Path(path_or_repo_id)
    if root.is_dir():
        candidate = root / subfolder / filename if subfolder else root / filename
        return (str(candidate), "") if candidate.is_file() else (None, "not in the directory")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    try:
        path = hf_hub_download(
            str(path_or_repo_id),
            filename,
            subfolder=subfolder or None,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
    except EntryNotFoundError as err:  # not in the repo, or (offline) not in the cache
        return None, str(err).splitlines()[0]
    except HFValidationError as err:
        raise FileNotFoundError(f"{path_or_repo_id!s} is neither a directory nor a valid Hub repo id: {err}") from err
    return path, ""


def load_original_checkpoint(
    path_or_repo_id: str | os.PathLike,
    subfolder: str | None = None,
    *,
    config_name: str = "config.json",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> OriginalCheckpoint:
    """Read an original checkpoint's config and weights from a directory or a Hub repo (+ ``subfolder``).

    Hub ids resolve through the Hugging Face cache (``HF_HUB_OFFLINE=1`` works with a populated cache).
    Raises ``FileNotFoundError`` (listing the subfolders that hold a checkpoint when the path is a local
    directory) if ``config_name`` or the weights are missing.
    """
    where = f"{path_or_repo_id}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    options = {
        "revision": revision,
        "cache_dir": cache_dir,
        "token": token,
        "local_files_only": local_files_only,
    }
    config_path, why = _resolve_file(path_or_repo_id, config_name, subfolder, **options)
    if config_path is None:
        root = Path(path_or_repo_id)
        if root.is_dir():
            found = _local_candidates(root / subfolder if subfolder else root)
            hint = f"; checkpoints found in the subfolders {found} (pass subfolder=...)" if found else ""
        else:
            hint = f" ({why})" + (
                "; the original repos keep each checkpoint in a subfolder such as 'lstm_autoregressive_last' "
                "(pass subfolder=...)"
                if not subfolder
                else ""
            )
        raise FileNotFoundError(f"no {config_name} in {where}{hint}")
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {config_name} of {where}: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{config_name} of {where} is not a JSON object")
    reasons = []
    for name in _WEIGHT_FILES:
        weights_path, why = _resolve_file(path_or_repo_id, name, subfolder, **options)
        if weights_path is not None:
            break
        reasons.append(f"{name}: {why}")
    else:
        raise FileNotFoundError(f"no weights in {where} ({'; '.join(reasons)})")
    state_dict = read_weights(weights_path)
    logger.info("read the original checkpoint %s (%d tensors)", where, len(state_dict))
    return OriginalCheckpoint(config=config, state_dict=state_dict, source=where)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``model.safetensors`` or ``pytorch_model.bin`` state dict, refusing what cannot be converted.

    Every problem is a one-line ``ValueError``: a truncated or corrupt file, a ``.bin`` that holds pickled Python
    objects other than tensors (never unpickled: ``torch.load(weights_only=True)``), something that is not a
    mapping of names to tensors, and tensors that are not floating point or hold NaN / infinite values (the keys
    are listed)."""
    path = os.fspath(path)
    name = os.path.basename(path)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict: Any = load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"cannot read {path}: truncated or not a safetensors file ({_first_line(err)})") from err
    else:
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"refusing to load {path}: it holds pickled Python objects, not only tensors (only plain state dicts "
                "load, nothing is unpickled; save the weights as safetensors)"
            ) from err
        except (RuntimeError, EOFError, OSError, ValueError) as err:
            raise ValueError(f"cannot read {path}: truncated or corrupt weights file ({_first_line(err)})") from err
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    not_float = [f"{k} ({str(v.dtype).removeprefix('torch.')})" for k, v in state_dict.items()
                 if not v.is_floating_point()]  # fmt: skip
    if not_float:
        raise ValueError(f"{name}: weights must be floating point, got {_listed(not_float)}")
    not_finite = [k for k, v in state_dict.items() if not bool(torch.isfinite(v).all())]
    if not_finite:
        raise ValueError(f"{name}: weights hold NaN or infinite values in {_listed(not_finite)}")
    return dict(state_dict)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _listed(items: list[str]) -> str:
    return ", ".join(items[:_MAX_LISTED]) + (f", … ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def detect_original_format(config: dict[str, Any]) -> str:
    """``"apxby"`` or ``"v1"`` for an original ``config.json``; ``ValueError`` for anything else."""
    architectures = list(config.get("architectures") or [])
    model_type = config.get("model_type")
    if model_type == PxByConfig.model_type:
        raise ValueError(
            "this checkpoint is already in the pixelbytes format: load it with "
            "AutoModel.from_pretrained / PxBySequenceModel.from_pretrained (after `import pixelbytes`)"
        )
    if APXBY_ARCHITECTURE in architectures:
        return "apxby"
    if any(name in V1_ARCHITECTURES for name in architectures):
        return "v1"
    if not architectures and {"pxby_dim", "embed_size", "hidden_size", "num_layers"} <= config.keys():
        return "apxby"
    raise ValueError(
        f"unknown checkpoint: architectures={architectures}, model_type={model_type!r}; expected "
        f"[{APXBY_ARCHITECTURE!r}] (aPxBy) or one of {list(V1_ARCHITECTURES)} (v1, model_type {V1_MODEL_TYPE!r})"
    )


# -------------------------------------------------------------------------------------------------
# checks
# -------------------------------------------------------------------------------------------------
def _check_state_dict(
    expected: dict[str, tuple[int, ...]], state_dict: dict[str, torch.Tensor], source: str, what: str
) -> None:
    """ValueError listing missing keys, unexpected keys and shape mismatches."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: {tuple(state_dict[k].shape)} instead of {expected[k]}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != expected[k]
    ]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if items:
            listed = ", ".join(items[:_MAX_LISTED]) + (f", … ({len(items)} in all)" if len(items) > _MAX_LISTED else "")
            problems.append(f"{title}: {listed}")
    if problems:
        raise ValueError(f"the weights of {source} do not match {what}:\n  - " + "\n  - ".join(problems))


def _as_bool(config: dict[str, Any], key: str, default: bool, problems: list[str]) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        problems.append(f"{key}={value!r} (expected true or false)")
        return default
    return value


def _as_int(config: dict[str, Any], key: str, default: int | None, problems: list[str]) -> int:
    value = config.get(key, default)
    if value is None:
        problems.append(f"missing key {key!r}")
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        problems.append(f"{key}={value!r} (expected a positive integer)")
        return 1
    return value


def _raise_problems(problems: list[str], what: str) -> None:
    if problems:
        raise ValueError(f"cannot convert {what}:\n  - " + "\n  - ".join(problems))


# -------------------------------------------------------------------------------------------------
# aPxBy
# -------------------------------------------------------------------------------------------------
def _apxby_objective(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None, vocab_size: int, problems: list[str]
) -> str:
    """The original objective name (``predict`` | ``autoregressive`` | ``diffusion``) from any key era."""
    if "objective" in config:
        objective = config["objective"]
        if isinstance(objective, int) and not isinstance(objective, bool):
            objective = _INT_OBJECTIVES.get(objective, objective)
        if objective not in APXBY_OBJECTIVES:
            problems.append(f"objective={objective!r} is not one of {list(APXBY_OBJECTIVES)}")
            return "predict"
        return objective
    if "AR" in config:  # Pokémon checkpoints (transformers 4.44.0 era)
        return "autoregressive" if config["AR"] else "predict"
    if "auto_regressive" in config:  # ARDM runs: noise on the embeddings during training only
        if config.get("diffusion"):
            logger.warning(
                "ARDM checkpoint (auto_regressive + diffusion flags): the embedding noise was a training device; "
                "converted as its clean forward"
            )
        return "autoregressive" if config["auto_regressive"] else "predict"
    head = None if state_dict is None else state_dict.get("fc.weight")
    if head is not None and head.dim() == 2 and head.shape[0] in (vocab_size, _NUM_SLOTS * vocab_size):
        objective = "predict" if head.shape[0] == vocab_size else "autoregressive"
        logger.warning("no objective key in the config; the head size says %r", objective)
        return objective
    problems.append("no objective key (objective / AR / auto_regressive) and the head size does not tell")
    return "predict"


def _apxby_dims(config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    problems: list[str] = []
    vocab_size = _as_int(config, "vocab_size", None, problems)
    embed_size = _as_int(config, "embed_size", None, problems)
    hidden = _as_int(config, "hidden_size", None, problems)
    layers = _as_int(config, "num_layers", None, problems)
    pxby_dim = _as_int(config, "pxby_dim", _NUM_SLOTS, problems)
    if pxby_dim != _NUM_SLOTS:
        problems.append(f"pxby_dim={pxby_dim} (the 6-slot PxBy context needs 6)")
    pxby_emb = _as_int(config, "pxby_emb", max(1, embed_size // _NUM_SLOTS), problems)
    if pxby_emb * pxby_dim != embed_size:
        problems.append(f"embed_size={embed_size} differs from pxby_dim × pxby_emb = {pxby_dim} × {pxby_emb}")
    bidirectional = _as_bool(config, "bidirection", bool(config.get("bidirectional", False)), problems)
    objective = _apxby_objective(config, state_dict, vocab_size, problems)
    if config.get("model_type") not in (None, "lstm", "hybrid"):
        problems.append(f"model_type={config['model_type']!r} (only the LSTM aPxBy model exists)")
    if config.get("custom_model") is not None:
        problems.append(f"custom_model={config['custom_model']!r} (a custom backbone cannot be converted)")
    _raise_problems(problems, "this aPxBy checkpoint")
    return {
        "vocab_size": vocab_size,
        "pxby_emb": pxby_emb,
        "hidden": hidden,
        "layers": layers,
        "bidirectional": bidirectional,
        "objective": objective,
        "num_diffusion_steps": config.get("num_diffusion_steps", 5),
    }


def apxby_config_to_kwargs(config: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """``PxByConfig`` keyword arguments equivalent to an original aPxBy ``config.json`` (any key era).

    ``state_dict`` is only used to infer the objective when the config names none. The vocabulary
    tables are not included (see :meth:`PxByConfig.from_tokenizer`); ``vocab_size`` is.
    """
    dims = _apxby_dims(config, state_dict)
    dirs = 2 if dims["bidirectional"] else 1
    kwargs: dict[str, Any] = {
        "vocab_size": dims["vocab_size"],
        "embedding": "pxby6",
        "embed_size": _NUM_SLOTS * dims["pxby_emb"],
        "backbone": "lstm",
        "hidden_size": dims["hidden"] * dirs,
        "num_hidden_layers": dims["layers"],
        "bidirectional": dims["bidirectional"],
        "objective": APXBY_OBJECTIVES[dims["objective"]],
    }
    if dims["objective"] == "diffusion":
        kwargs["diffusion_scheme"] = "embedding_noise"
        kwargs["num_diffusion_steps"] = int(dims["num_diffusion_steps"])
    return kwargs


def _apxby_expected_shapes(dims: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    V, e, H, n = dims["vocab_size"], dims["pxby_emb"], dims["hidden"], dims["layers"]
    dirs = 2 if dims["bidirectional"] else 1
    out = V * (1 if dims["objective"] == "predict" else _NUM_SLOTS)
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (V, e)}
    for k in range(n):
        for suffix in ("", "_reverse")[:dirs]:
            shapes[f"sequence_model.weight_ih_l{k}{suffix}"] = (4 * H, _NUM_SLOTS * e if k == 0 else H * dirs)
            shapes[f"sequence_model.weight_hh_l{k}{suffix}"] = (4 * H, H)
            shapes[f"sequence_model.bias_ih_l{k}{suffix}"] = (4 * H,)
            shapes[f"sequence_model.bias_hh_l{k}{suffix}"] = (4 * H,)
    shapes["fc.weight"] = (out, H * dirs)
    shapes["fc.bias"] = (out,)
    return shapes


def convert_apxby_state_dict(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str = "the checkpoint"
) -> dict[str, torch.Tensor]:
    """Validate an original aPxBy state dict against its config and rename it to ``PxBySequenceModel`` keys."""
    dims = _apxby_dims(config, state_dict)
    _check_state_dict(_apxby_expected_shapes(dims), state_dict, source, f"its aPxBy config {_describe(dims)}")
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key == "embedding.weight":
            new = "embeddings.tokens.slot_embedding.weight"
        elif key.startswith("sequence_model."):
            new = "backbone.lstms.0." + key.removeprefix("sequence_model.")
        else:  # fc.weight / fc.bias
            new = "lm_head." + key.removeprefix("fc.")
        converted[new] = tensor.detach().clone().float()
    return converted


def _describe(dims: dict[str, Any]) -> str:
    return (
        f"(V={dims['vocab_size']}, pxby_emb={dims['pxby_emb']}, hidden={dims['hidden']} per direction, "
        f"layers={dims['layers']}, bidirection={dims['bidirectional']}, objective={dims['objective']})"
    )


# -------------------------------------------------------------------------------------------------
# v1 (SimpleRNNModel / bMamba / SimpleTransformerModel)
# -------------------------------------------------------------------------------------------------
def _v1_settings(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    problems: list[str] = []
    architecture = next(a for a in config.get("architectures", []) if a in V1_ARCHITECTURES)
    s = {
        "vocab_size": _as_int(config, "vocab_size", 113, problems),
        "dim": _as_int(config, "dim", None, problems),
        "d_state": _as_int(config, "d_state", 64, problems),
        "depth": _as_int(config, "depth", 2, problems),
        "d_conv": _as_int(config, "d_conv", 4, problems),
        "expand": _as_int(config, "expand", 2, problems),
        "pembed": _as_bool(config, "pembed", True, problems),
        "pxby_embed": _as_bool(config, "pxby_embed", True, problems),
        "bidirectional": _as_bool(config, "bidirectional", True, problems),
    }
    if config.get("model_type") not in (None, V1_MODEL_TYPE):
        problems.append(f"model_type={config['model_type']!r} (v1 checkpoints have {V1_MODEL_TYPE!r})")
    if architecture == "SimpleRNNModel" and s["bidirectional"] and s["d_state"] % 2:
        problems.append(f"d_state={s['d_state']} must be even for a bidirectional first layer")
    _raise_problems(problems, f"this v1 {architecture} checkpoint")
    return architecture, s


def _v1_expected_shapes(architecture: str, s: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    V, D, S, depth = s["vocab_size"], s["dim"], s["d_state"], s["depth"]
    width = (D // 4) * 4 if architecture == "SimpleTransformerModel" else D
    shapes: dict[str, tuple[int, ...]] = {}
    if s["pxby_embed"]:
        e = max(9, width // 9)
        shapes |= {
            "embedding.alpha": (1, 1, 3, 3),
            "embedding.linear_embedding.weight": (V, e),
            "embedding.projection.weight": (width, 9 * e),
            "embedding.projection.bias": (width,),
            "embedding.norm.weight": (width,),
            "embedding.norm.bias": (width,),
        }
        if s["pembed"]:
            shapes |= {"embedding.patch_embedding.weight": (e, e, 3, 3), "embedding.patch_embedding.bias": (e,)}
    else:
        shapes["embedding.weight"] = (V, width)
    if architecture == "SimpleRNNModel":
        h = S // 2 if s["bidirectional"] else S
        for suffix in ("", "_reverse") if s["bidirectional"] else ("",):
            shapes |= {
                f"_lstm.weight_ih_l0{suffix}": (4 * h, D),
                f"_lstm.weight_hh_l0{suffix}": (4 * h, h),
                f"_lstm.bias_ih_l0{suffix}": (4 * h,),
                f"_lstm.bias_hh_l0{suffix}": (4 * h,),
            }
        for k in range(depth - 1):
            shapes |= {
                f"lstm.weight_ih_l{k}": (4 * S, S),
                f"lstm.weight_hh_l{k}": (4 * S, S),
                f"lstm.bias_ih_l{k}": (4 * S,),
                f"lstm.bias_hh_l{k}": (4 * S,),
            }
        shapes |= {"fc.weight": (V, S), "fc.bias": (V,)}
    elif architecture == "bMamba":
        inner, rank = s["expand"] * D, math.ceil(D / 16)
        for prefix in ["_mamba"] + [f"layers.{k}" for k in range(depth - 1)]:
            shapes |= {
                f"{prefix}.in_proj.weight": (2 * inner, D),
                f"{prefix}.conv1d.weight": (inner, 1, s["d_conv"]),
                f"{prefix}.conv1d.bias": (inner,),
                f"{prefix}.x_proj.weight": (rank + 2 * S, inner),
                f"{prefix}.dt_proj.weight": (inner, rank),
                f"{prefix}.dt_proj.bias": (inner,),
                f"{prefix}.A_log": (inner, S),
                f"{prefix}.D": (inner,),
                f"{prefix}.out_proj.weight": (D, inner),
            }
        if s["bidirectional"]:
            shapes |= {"norm.weight": (D,), "norm.bias": (D,)}
        shapes["lm_head.weight"] = (V, D)
    else:  # SimpleTransformerModel: post-norm encoder, 4 heads, FFN 4×
        for k in range(depth):
            p = f"transformer_encoder.layers.{k}"
            shapes |= {
                f"{p}.self_attn.in_proj_weight": (3 * width, width),
                f"{p}.self_attn.in_proj_bias": (3 * width,),
                f"{p}.self_attn.out_proj.weight": (width, width),
                f"{p}.self_attn.out_proj.bias": (width,),
                f"{p}.linear1.weight": (4 * width, width),
                f"{p}.linear1.bias": (4 * width,),
                f"{p}.linear2.weight": (width, 4 * width),
                f"{p}.linear2.bias": (width,),
                f"{p}.norm1.weight": (width,),
                f"{p}.norm1.bias": (width,),
                f"{p}.norm2.weight": (width,),
                f"{p}.norm2.bias": (width,),
            }
        shapes |= {"fc.weight": (V, width), "fc.bias": (V,)}
    return shapes


def _v1_target_kwargs(architecture: str, s: dict[str, Any]) -> dict[str, Any]:
    """What the v1 model is in ``PxByConfig`` terms (DESIGN §6)."""
    kwargs: dict[str, Any] = {
        "vocab_size": s["vocab_size"],
        "embedding": "window3x3" if s["pxby_embed"] else "center",
        "window_conv": s["pembed"],
        "num_hidden_layers": s["depth"],
        "objective": "next_token",
    }
    if architecture == "SimpleRNNModel":
        kwargs |= {
            "backbone": "lstm",
            "embed_size": s["dim"],
            "hidden_size": s["d_state"],
            "bidirectional": "first_layer" if s["bidirectional"] else False,
        }
    elif architecture == "bMamba":
        kwargs |= {
            "backbone": "mamba",
            "mamba_style": "v1",
            "embed_size": s["dim"],
            "hidden_size": s["dim"],
            "state_size": s["d_state"],
            "conv_kernel": s["d_conv"],
            "expand": s["expand"],
            "bidirectional": s["bidirectional"],
        }
    else:
        width = (s["dim"] // 4) * 4
        kwargs |= {
            "backbone": "attention",
            "attention_style": "v1_encoder",
            "embed_size": width,
            "hidden_size": width,
            "num_attention_heads": 4,
            "intermediate_size": 4 * width,
            "bidirectional": True,
            "dropout": 0.1,  # the v1 TransformerEncoder's (it matters for fine-tuning only)
        }
    return kwargs


def v1_config_to_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """``PxByConfig`` keyword arguments equivalent to an original v1 ``config.json`` (``SimpleRNNModel``,
    ``bMamba`` or ``SimpleTransformerModel``; DESIGN §6, §9). ``ValueError`` lists every bad setting."""
    architecture, settings = _v1_settings(config)
    return _v1_target_kwargs(architecture, settings)


def _v1_rename(architecture: str, s: dict[str, Any], key: str) -> str:
    """The ``PxBySequenceModel`` name of an original v1 parameter (the key was checked against the expected set)."""
    if key == "embedding.weight":  # centre embedding
        return "embeddings.tokens.token_embedding.weight"
    if key.startswith("embedding."):  # PxByEmbed: WindowEmbedding keeps the original names
        return "embeddings.tokens." + key.removeprefix("embedding.")
    if architecture == "SimpleRNNModel":
        if key.startswith("_lstm."):  # first layer (bidirectional or not)
            return "backbone.lstms.0." + key.removeprefix("_lstm.")
        if key.startswith("lstm."):
            rest = key.removeprefix("lstm.")
            if s["bidirectional"]:  # bidirectional="first_layer": the unidirectional rest is its own nn.LSTM
                return "backbone.lstms.1." + rest
            name, layer = rest.rsplit("_l", 1)  # unidirectional: one nn.LSTM, the original layer k is our k + 1
            return f"backbone.lstms.0.{name}_l{int(layer) + 1}"
        return "lm_head." + key.removeprefix("fc.")
    if architecture == "bMamba":
        if key.startswith("_mamba."):
            return "backbone.mixers.0." + key.removeprefix("_mamba.")
        if key.startswith("layers."):
            index, rest = key.removeprefix("layers.").split(".", 1)
            return f"backbone.mixers.{int(index) + 1}.{rest}"
        if key.startswith("norm."):
            return "backbone." + key
        return key  # lm_head.weight
    if key.startswith("transformer_encoder."):
        return "backbone.encoder." + key.removeprefix("transformer_encoder.")
    return "lm_head." + key.removeprefix("fc.")


def convert_v1_state_dict(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str = "the checkpoint"
) -> dict[str, torch.Tensor]:
    """Check an original v1 state dict against its config (``ValueError`` listing every missing / unexpected key
    and wrong shape) and rename it to ``PxBySequenceModel`` keys.

    ===============================================  =============================================
    original v1                                      pixelbytes
    ===============================================  =============================================
    ``embedding.{alpha, linear_embedding, …}``       ``embeddings.tokens.{…}`` (window3x3, same names)
    ``embedding.weight`` (centre)                    ``embeddings.tokens.token_embedding.weight``
    ``_lstm.*`` / ``lstm.*_lK`` (bidirectional)      ``backbone.lstms.0.*`` / ``backbone.lstms.1.*_lK``
    ``_lstm.*_l0`` / ``lstm.*_lK`` (unidirectional)  ``backbone.lstms.0.*_l0`` / ``…_l{K+1}``
    ``_mamba.*`` / ``layers.K.*`` / ``norm.*``       ``backbone.mixers.0.*`` / ``mixers.{K+1}.*`` / ``backbone.norm.*``
    ``transformer_encoder.layers.K.*``               ``backbone.encoder.layers.K.*``
    ``fc.{weight, bias}``                            ``lm_head.{weight, bias}``
    ``lm_head.weight`` (bMamba, no bias)             ``lm_head.weight`` + a zero ``lm_head.bias``
    ===============================================  =============================================
    """
    architecture, settings = _v1_settings(config)
    _check_state_dict(
        _v1_expected_shapes(architecture, settings), state_dict, source, f"its v1 {architecture} config {settings}"
    )
    converted = {
        _v1_rename(architecture, settings, key): tensor.detach().clone().float() for key, tensor in state_dict.items()
    }
    if architecture == "bMamba":
        converted["lm_head.bias"] = torch.zeros(settings["vocab_size"])
    return converted


def _convert_v1(
    checkpoint: OriginalCheckpoint, vocabulary: str | PxByVocabulary, tokenizer_kwargs: dict[str, Any]
) -> tuple[PxBySequenceModel, ActionPixelBytesTokenizer]:
    config = checkpoint.config
    kwargs = v1_config_to_kwargs(config)
    weights = convert_v1_state_dict(config, checkpoint.state_dict, checkpoint.source)
    tokenizer = make_tokenizer(vocabulary, **tokenizer_kwargs)
    vocab_size = kwargs.pop("vocab_size")
    if tokenizer.vocab_size != vocab_size:
        raise ValueError(
            f"the v1 checkpoint's vocab_size {vocab_size} does not match the {tokenizer.vocab_size}-id vocabulary "
            f"{vocabulary if isinstance(vocabulary, str) else 'given'!r} (v1 models use vocabulary='v1', 113 ids)"
        )
    model = PxBySequenceModel(PxByConfig.from_tokenizer(tokenizer, **kwargs))
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # pragma: no cover - the shapes were checked above
        raise ValueError(f"cannot load the converted weights of {checkpoint.source}: {err}") from err
    model.eval()
    logger.info("converted the v1 checkpoint %s → PxByConfig(%s)", checkpoint.source, kwargs)
    return model, tokenizer


# -------------------------------------------------------------------------------------------------
# entry point
# -------------------------------------------------------------------------------------------------
def make_tokenizer(vocabulary: str | PxByVocabulary = "default", **tokenizer_kwargs: Any) -> ActionPixelBytesTokenizer:
    """The tokenizer of a converted checkpoint: ``vocabulary`` = ``"default"`` (the published 151 ids),
    ``"control"`` (the control experiments' 151 ids), ``"v1"`` (the 113 ids of the v1 models: bytes and colours,
    no audio) or a :class:`PxByVocabulary`."""
    if isinstance(vocabulary, str):
        tables = {"default": default_vocabulary, "control": control_vocabulary, "v1": v1_vocabulary}
        if vocabulary not in tables:
            raise ValueError(f"vocabulary must be one of {sorted(tables)} or a PxByVocabulary, got {vocabulary!r}")
        vocabulary = tables[vocabulary]()
    return ActionPixelBytesTokenizer(vocabulary=vocabulary, **tokenizer_kwargs)


def convert_original(
    path_or_repo_id: str | os.PathLike,
    subfolder: str | None = None,
    *,
    config_name: str = "config.json",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    vocabulary: str | PxByVocabulary | None = None,
    tokenizer_kwargs: dict[str, Any] | None = None,
) -> tuple[PxBySequenceModel, ActionPixelBytesTokenizer]:
    """Convert an original PixelBytes checkpoint (local directory or Hub repo + ``subfolder``).

    Args:
        path_or_repo_id: a directory or a Hub repo id such as ``"ffurfaro/aPixelBytes-Pokemon"``.
        subfolder: where the checkpoint lives inside it (e.g. ``"lstm_autoregressive_last"``).
        config_name: the config file to read (e.g. an alternative key set).
        revision / cache_dir / token / local_files_only: passed to ``hf_hub_download``.
        vocabulary: ``"default"`` (151 ids), ``"control"``, ``"v1"`` (113 ids) or a :class:`PxByVocabulary`;
            ``None`` (default) = ``"v1"`` for v1 checkpoints, ``"default"`` for aPxBy ones. The original
            ``vocab_size`` cannot tell the two 151-id tables apart, so choose the one the model was trained with.
        tokenizer_kwargs: extra :class:`ActionPixelBytesTokenizer` settings (e.g. ``{"data_slicing": 2}``);
            checkpoints with the older key set (``AR``) default to ``audio_normalization="zscore"``, the
            normalisation of the published Pokémon runs.

    Returns:
        ``(model, tokenizer)`` in the pixelbytes format (``save_pretrained`` / ``push_to_hub`` ready); the
        model is in eval mode and gives the original's logits on the same inputs (aPxBy: the 6-slot contexts;
        v1: the 3×3 windows flattened to ``context_ids (B, L, 9)`` or, centre models, the tokens; the original
        v1 models output the last position only, ``logits[:, -1]`` here).

    Raises:
        ValueError: unknown format, inconsistent config or weights (everything that did not match is listed).
        NotImplementedError: a valid checkpoint whose model pixelbytes cannot build yet; the message lists
            what is missing.
        FileNotFoundError: no config or weights at that location.
    """
    checkpoint = load_original_checkpoint(
        path_or_repo_id,
        subfolder,
        config_name=config_name,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
    )
    if detect_original_format(checkpoint.config) == "v1":
        return _convert_v1(checkpoint, "v1" if vocabulary is None else vocabulary, dict(tokenizer_kwargs or {}))
    vocabulary = "default" if vocabulary is None else vocabulary
    config, state_dict = checkpoint.config, checkpoint.state_dict
    kwargs = apxby_config_to_kwargs(config, state_dict)
    weights = convert_apxby_state_dict(config, state_dict, checkpoint.source)
    tok_kwargs = dict(tokenizer_kwargs or {})
    if ("AR" in config or "auto_regressive" in config) and "audio_normalization" not in tok_kwargs:
        tok_kwargs["audio_normalization"] = "zscore"
    tokenizer = make_tokenizer(vocabulary, **tok_kwargs)
    vocab_size = kwargs.pop("vocab_size")
    if tokenizer.vocab_size != vocab_size:
        raise ValueError(
            f"the checkpoint's vocab_size {vocab_size} does not match the {tokenizer.vocab_size}-id vocabulary "
            f"{vocabulary if isinstance(vocabulary, str) else 'given'!r}"
        )
    pxby_config = PxByConfig.from_tokenizer(tokenizer, **kwargs)
    try:
        model = PxBySequenceModel(pxby_config)
    except NotImplementedError as err:
        raise NotImplementedError(f"cannot convert {checkpoint.source}: {err}") from err
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # pragma: no cover - the shapes were checked above
        raise ValueError(f"cannot load the converted weights of {checkpoint.source}: {err}") from err
    model.eval()
    logger.info("converted %s → PxByConfig(%s)", checkpoint.source, kwargs)
    return model, tokenizer

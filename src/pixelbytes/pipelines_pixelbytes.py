"""Caption → sprite and caption → sound ``transformers`` pipelines (DESIGN §2, §7).

Importing this module registers, in ``transformers.pipelines.PIPELINE_REGISTRY``:

* ``"text-to-sprite"`` → :class:`TextToSpritePipeline`: ``{"frames": [PIL RGB frames], "gif": bytes,
  "token_ids": list[int]}``;
* ``"text-to-sound"`` → :class:`TextToSoundPipeline`: ``{"audio": np.ndarray (C, T) float32 in [-1, 1],
  "sampling_rate": int}`` — the output of transformers' ``"text-to-audio"`` task.

(``import pixelbytes`` imports it.) An exported remote-code folder (:func:`pixelbytes.hub.export_remote_code`) ships
this module and lists the pipelines under ``custom_pipelines`` in its ``config.json`` — with the aliases
``"text-to-image"`` (sprite) and ``"text-to-audio"`` (sound) — so that, without the package installed::

    pipe = pipeline("text-to-audio", model=folder, trust_remote_code=True)

works. The global registry gets only the two new names: ``"text-to-audio"`` keeps meaning transformers' own
pipeline for other models.

A flat module importing its siblings relatively (remote code, DESIGN §2).
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, Pipeline, StoppingCriteriaList
from transformers.pipelines import PIPELINE_REGISTRY

from .generation_pixelbytes import BlockEndStoppingCriteria, generate_audio, generate_image

logger = logging.getLogger(__name__)

__all__ = ["PIPELINE_TASKS", "TextToSoundPipeline", "TextToSpritePipeline", "custom_pipelines_config"]


def _generation_params(
    do_sample: bool | None, temperature: float | None, seed: int | None, generate_kwargs: dict[str, Any] | None
) -> dict[str, Any]:
    params: dict[str, Any] = dict(generate_kwargs or {})
    if do_sample is not None:
        params["do_sample"] = bool(do_sample)
    if temperature is not None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        params["temperature"] = float(temperature)
        params.setdefault("do_sample", True)
    if seed is not None:
        params["seed"] = int(seed)
    return params


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class _CaptionPipeline(Pipeline):
    """Shared parts: a caption (str) in, one generation run (batch of 1) per caption; ``seed`` seeds sampling
    without touching the global random state."""

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def preprocess(self, caption: str) -> dict[str, Any]:
        if not isinstance(caption, str):
            raise TypeError(f"{type(self).__name__} takes a caption (str), got {type(caption).__name__}")
        return {"input_ids": self.tokenizer(caption, return_tensors="pt")["input_ids"]}

    def _run(self, generate: Any, model_inputs: dict[str, Any], params: dict[str, Any], **structure: Any) -> Any:
        params = dict(params)
        seed = params.pop("seed", None)
        prompt = model_inputs["input_ids"][0].tolist()
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            sequences, decoded = generate(self.model, self.tokenizer, prompt, **structure, **params)
        return {"sequences": sequences, "decoded": decoded[0], "prompt_length": len(prompt)}


class TextToSpritePipeline(_CaptionPipeline):
    """Caption → pixel-art sprite of ``frames`` × ``height`` × ``width`` (always that size: the layout processor
    forces the grid, DESIGN §7).

    Call parameters: ``height`` / ``width`` (default 16), ``frames`` (1), ``do_sample`` (False: greedy),
    ``temperature`` (implies sampling), ``seed``, ``upscale`` (nearest-neighbour factor of the returned frames
    and GIF, default 1), ``duration_ms`` (GIF frame time, 100), ``generate_kwargs`` (more ``generate()`` options).

    Returns ``{"frames": list[PIL.Image], "gif": bytes, "token_ids": list[int]}`` (the GIF holds every frame).
    """

    def _sanitize_parameters(
        self,
        height: int | None = None,
        width: int | None = None,
        frames: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        upscale: int | None = None,
        duration_ms: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> tuple[dict, dict, dict]:
        forward: dict[str, Any] = {"params": _generation_params(do_sample, temperature, seed, generate_kwargs)}
        for name, value in (("height", height), ("width", width), ("frames", frames)):
            if value is not None:
                forward[name] = _positive(name, value)
        post: dict[str, Any] = {}
        if upscale is not None:
            post["upscale"] = _positive("upscale", upscale)
        if duration_ms is not None:
            post["duration_ms"] = _positive("duration_ms", duration_ms)
        return {}, forward, post

    def _forward(
        self, model_inputs: dict[str, Any], height: int = 16, width: int = 16, frames: int = 1, params: Any = None
    ) -> dict[str, Any]:
        params = dict(params or {})
        stop = BlockEndStoppingCriteria(
            self.tokenizer.token_classes, self.tokenizer.audio_channels, kinds="image", image_frames=frames
        )
        params["stopping_criteria"] = StoppingCriteriaList([stop, *params.get("stopping_criteria", [])])
        return self._run(generate_image, model_inputs, params, height=height, width=width, frames=frames)

    def postprocess(self, model_outputs: dict[str, Any], upscale: int = 1, duration_ms: int = 100) -> dict[str, Any]:
        frames = model_outputs["decoded"].frames
        if upscale > 1:
            frames = [f.resize((f.width * upscale, f.height * upscale), resample=0) for f in frames]  # NEAREST
        buffer = io.BytesIO()
        frames[0].save(
            buffer, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0
        )
        start = model_outputs["prompt_length"]
        return {
            "frames": frames,
            "gif": buffer.getvalue(),
            "token_ids": model_outputs["sequences"][0, start:].tolist(),
        }


class TextToSoundPipeline(_CaptionPipeline):
    """Caption → audio / action clip of ``num_steps`` time steps (then the terminator frame).

    Call parameters: ``num_steps`` (default 256), ``do_sample`` (False), ``temperature``, ``seed``, ``mono``
    (average the channels: ``(T,)``), ``generate_kwargs``.

    Returns ``{"audio": np.ndarray (C, T) float32 in [-1, 1] (or (T,) with mono=True), "sampling_rate": int}``
    like transformers' ``"text-to-audio"`` pipeline (the rate is the tokenizer's divided by its ``audio_stride``).
    """

    def _sanitize_parameters(
        self,
        num_steps: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        seed: int | None = None,
        mono: bool | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ) -> tuple[dict, dict, dict]:
        forward: dict[str, Any] = {"params": _generation_params(do_sample, temperature, seed, generate_kwargs)}
        if num_steps is not None:
            forward["num_steps"] = _positive("num_steps", num_steps)
        return {}, forward, ({} if mono is None else {"mono": bool(mono)})

    def _forward(self, model_inputs: dict[str, Any], num_steps: int = 256, params: Any = None) -> dict[str, Any]:
        if not self.model.config.num_levels:
            raise ValueError("this model's vocabulary has no audio levels: it cannot generate sound")
        params = dict(params or {})
        stop = BlockEndStoppingCriteria(self.tokenizer.token_classes, self.tokenizer.audio_channels, kinds="audio")
        params["stopping_criteria"] = StoppingCriteriaList([stop, *params.get("stopping_criteria", [])])
        return self._run(generate_audio, model_inputs, params, num_steps=num_steps)

    def postprocess(self, model_outputs: dict[str, Any], mono: bool = False) -> dict[str, Any]:
        decoded = model_outputs["decoded"]
        audio = decoded.audio
        if audio is None:
            audio = np.zeros((self.tokenizer.audio_channels, 0), dtype=np.float32)
        if mono:
            audio = audio.mean(axis=0)
        return {"audio": audio, "sampling_rate": int(decoded.sampling_rate)}


#: task name → (pipeline class, aliases written into an exported folder's ``custom_pipelines``)
PIPELINE_TASKS: dict[str, tuple[type[Pipeline], tuple[str, ...]]] = {
    "text-to-sprite": (TextToSpritePipeline, ("text-to-image",)),
    "text-to-sound": (TextToSoundPipeline, ("text-to-audio",)),
}


def custom_pipelines_config(
    with_audio: bool = True, tasks: tuple[str, ...] | None = None, code_repo: str | None = None
) -> dict[str, dict[str, Any]]:
    """The ``custom_pipelines`` entry of an exported ``config.json``: each task (and alias) → its class in this
    module (``code_repo--pipelines_pixelbytes.Class`` when the code lives in another repo).

    Args:
        with_audio: include the sound tasks (False for vocabularies without audio levels).
        tasks: only these task names / aliases (``None``: all); a single task lets ``pipeline(model=folder,
            trust_remote_code=True)`` infer it.
        code_repo: ``"owner/name"`` of a repo hosting the code.
    """
    entries: dict[str, dict[str, Any]] = {}
    for task, (cls, aliases) in PIPELINE_TASKS.items():
        if cls is TextToSoundPipeline and not with_audio:
            continue
        ref = f"{__name__.rsplit('.', 1)[-1]}.{cls.__name__}"
        for name in (task, *aliases):
            entries[name] = {
                "impl": f"{code_repo}--{ref}" if code_repo else ref,
                "pt": ["AutoModelForCausalLM"],
                "type": "text",
            }
    if tasks is not None:
        unknown = sorted(set(tasks) - set(entries))
        if unknown:
            raise ValueError(f"unknown pipeline task(s) {unknown}; choose from {sorted(entries)}")
        entries = {name: entries[name] for name in tasks}
    return entries


for _task, (_cls, _aliases) in PIPELINE_TASKS.items():
    if _task not in PIPELINE_REGISTRY.supported_tasks:
        PIPELINE_REGISTRY.register_pipeline(_task, pipeline_class=_cls, pt_model=AutoModelForCausalLM, type="text")

"""Export a model + tokenizer as Hub *remote code* (``auto_map`` + ``trust_remote_code=True``, DESIGN §9).

The files the model needs at load time are flat sibling modules importing each other only with
``from .sibling import X`` (DESIGN §2), so they can be copied next to the weights. The export writes:

* ``config.json`` with ``auto_map`` for ``AutoConfig``, ``AutoModel`` and ``AutoModelForCausalLM``;
* ``config.json``'s ``custom_pipelines``: the caption → sprite / sound pipelines of
  :mod:`pixelbytes.pipelines_pixelbytes` (``text-to-sprite`` / ``text-to-image``, ``text-to-sound`` /
  ``text-to-audio``), so ``pipeline(task, model=folder, trust_remote_code=True)`` works;
* ``tokenizer_config.json`` with ``auto_map`` for ``AutoTokenizer``;
* the modules of :data:`REMOTE_CODE_MODULES` (plus anything they import relatively).

so that, in a process where ``pixelbytes`` is not installed::

    AutoModel.from_pretrained(repo, trust_remote_code=True)
    AutoTokenizer.from_pretrained(repo, trust_remote_code=True)

work and generate. Nothing global is mutated (no ``register_for_auto_class`` on the shared classes): the
``auto_map`` entries are written into the saved JSON files, the form ``custom_object_save`` produces.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from transformers.dynamic_module_utils import get_imports, get_relative_import_files

logger = logging.getLogger(__name__)

__all__ = [
    "REMOTE_CODE_MODULES",
    "add_remote_code",
    "config_auto_map",
    "export_remote_code",
    "remote_code_files",
    "tokenizer_auto_map",
]

#: The flat modules shipped as remote code (the package's load-time closure).
REMOTE_CODE_MODULES = (
    "configuration_pixelbytes",
    "modeling_pixelbytes",
    "generation_pixelbytes",
    "embeddings_pixelbytes",
    "backbones_pixelbytes",
    "objectives_pixelbytes",
    "graphs_pixelbytes",
    "tokenization_pixelbytes",
    "vocabulary",
    "codecs",
    "layout",
    "pipelines_pixelbytes",
)
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_PACKAGE_NAME = _PACKAGE_DIR.name


def _ref(module: str, name: str, code_repo: str | None) -> str:
    return f"{code_repo}--{module}.{name}" if code_repo else f"{module}.{name}"


def config_auto_map(code_repo: str | None = None) -> dict[str, str]:
    """The ``auto_map`` of ``config.json``; ``code_repo`` (``"owner/name"``) points at code hosted in another repo."""
    model = _ref("modeling_pixelbytes", "PxBySequenceModel", code_repo)
    return {
        "AutoConfig": _ref("configuration_pixelbytes", "PxByConfig", code_repo),
        "AutoModel": model,
        "AutoModelForCausalLM": model,
    }


def tokenizer_auto_map(code_repo: str | None = None) -> dict[str, list[str | None]]:
    """The ``auto_map`` of ``tokenizer_config.json`` (slow tokenizer only)."""
    return {"AutoTokenizer": [_ref("tokenization_pixelbytes", "ActionPixelBytesTokenizer", code_repo), None]}


def remote_code_files() -> list[Path]:
    """The module files to ship: :data:`REMOTE_CODE_MODULES` and their relative imports, checked to be
    flat siblings with no absolute import of the package itself (which would fail without it installed)."""
    files = {(_PACKAGE_DIR / f"{name}.py").resolve() for name in REMOTE_CODE_MODULES}
    for path in list(files):
        files.update(Path(p).resolve() for p in get_relative_import_files(str(path)))
    problems = []
    for path in sorted(files):
        if path.parent != _PACKAGE_DIR:
            problems.append(f"{path} is not a flat sibling of the package modules")
        elif _PACKAGE_NAME in get_imports(str(path)):
            problems.append(f"{path.name} imports {_PACKAGE_NAME!r} absolutely (use `from .sibling import X`)")
    if problems:
        raise RuntimeError("the modules cannot be shipped as remote code:\n  - " + "\n  - ".join(problems))
    return sorted(files)


def _update_json(path: Path, key: str, value: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data[key] = value
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def add_remote_code(
    save_directory: str | os.PathLike, code_repo: str | None = None, pipeline_tasks: tuple[str, ...] | None = None
) -> list[Path]:
    """Turn an existing pixelbytes checkpoint directory (``config.json`` [+ ``tokenizer_config.json``]) into a
    remote-code one, in place. With ``code_repo`` no module is copied: ``auto_map`` and ``custom_pipelines``
    point at that repo's code.

    ``pipeline_tasks`` limits ``custom_pipelines`` to these tasks (default: all, the sound ones only when the
    vocabulary has audio levels); with a single task ``pipeline(model=folder, trust_remote_code=True)`` infers it,
    with several the task must be named.

    Returns the files written or modified.
    """
    from ..pipelines_pixelbytes import custom_pipelines_config

    directory = Path(save_directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {directory}: save the model there first")
    written = [config_path]
    _update_json(config_path, "auto_map", config_auto_map(code_repo))
    with_audio = bool(json.loads(config_path.read_text(encoding="utf-8")).get("num_levels", 1))
    pipelines = custom_pipelines_config(with_audio=with_audio, tasks=pipeline_tasks, code_repo=code_repo)
    _update_json(config_path, "custom_pipelines", pipelines)
    tokenizer_config = directory / "tokenizer_config.json"
    if tokenizer_config.is_file():
        _update_json(tokenizer_config, "auto_map", tokenizer_auto_map(code_repo))
        written.append(tokenizer_config)
    else:
        logger.warning("no tokenizer_config.json in %s: only the model gets remote code", directory)
    if code_repo is None:
        for source in remote_code_files():
            target = directory / source.name
            shutil.copyfile(source, target)
            written.append(target)
    logger.info("remote code written to %s (%d files)", directory, len(written))
    return written


def export_remote_code(
    model: Any,
    tokenizer: Any,
    save_directory: str | os.PathLike,
    *,
    code_repo: str | None = None,
    pipeline_tasks: tuple[str, ...] | None = None,
    **save_kwargs: Any,
) -> list[Path]:
    """Save ``model`` and ``tokenizer`` to ``save_directory`` as a self-contained remote-code checkpoint.

    Args:
        model: a :class:`~pixelbytes.PxBySequenceModel`.
        tokenizer: its :class:`~pixelbytes.ActionPixelBytesTokenizer` (``None`` to export the model only).
        save_directory: created if needed.
        code_repo: optional ``"owner/name"`` of a repo that hosts the modules; the ``auto_map`` then points
            there (``owner/name--module.Class``) and no module is copied.
        pipeline_tasks: the ``custom_pipelines`` tasks to declare (see :func:`add_remote_code`).
        save_kwargs: passed to ``model.save_pretrained``.

    Returns:
        All files in ``save_directory`` after the export.
    """
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        model.config.check_tokenizer(tokenizer)
    model.save_pretrained(directory, **save_kwargs)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    add_remote_code(directory, code_repo=code_repo, pipeline_tasks=pipeline_tasks)
    return sorted(p for p in directory.iterdir() if p.is_file())

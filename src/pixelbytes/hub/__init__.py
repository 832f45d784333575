"""Hugging Face Hub tools: remote-code export, model cards, the eval_results.json schema, release folders
(``publish``), push, CLI commands (DESIGN §9).

Not imported by ``import pixelbytes`` (it needs ``huggingface_hub``'s card / upload machinery and Jinja). Its
names load lazily, so ``pixelbytes.hub.cli_commands`` (the command list of ``pixelbytes --help``) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DEFAULT_TAGS": "cards",
    "default_template_path": "cards",
    "render_model_card": "cards",
    "load_eval_results": "eval_results",
    "make_eval_results": "eval_results",
    "write_eval_results": "eval_results",
    "publish_release": "publish",
    "push_folder": "publish",
    "read_card_source": "publish",
    "push_model": "push",
    "REMOTE_CODE_MODULES": "remote_code",
    "add_remote_code": "remote_code",
    "config_auto_map": "remote_code",
    "export_remote_code": "remote_code",
    "remote_code_files": "remote_code",
    "tokenizer_auto_map": "remote_code",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))

"""Hugging Face Hub tools: remote-code export, model cards, push, CLI commands (DESIGN §9).

Not imported by ``import pixelbytes`` (it needs ``huggingface_hub``'s card / upload machinery and Jinja).
"""

from .cards import DEFAULT_TAGS, default_template_path, render_model_card
from .push import push_model
from .remote_code import (
    REMOTE_CODE_MODULES,
    add_remote_code,
    config_auto_map,
    export_remote_code,
    remote_code_files,
    tokenizer_auto_map,
)

__all__ = [
    "DEFAULT_TAGS",
    "REMOTE_CODE_MODULES",
    "add_remote_code",
    "config_auto_map",
    "default_template_path",
    "export_remote_code",
    "push_model",
    "remote_code_files",
    "render_model_card",
    "tokenizer_auto_map",
]

"""Upload a PixelBytes model + tokenizer (+ model card) to the Hub in ONE commit."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard

from .cards import render_model_card
from .remote_code import export_remote_code

logger = logging.getLogger(__name__)

__all__ = ["push_model"]


def push_model(
    model: Any,
    tokenizer: Any,
    repo_id: str,
    card: ModelCard | str | bool | None = None,
    *,
    api: HfApi | None = None,
    token: str | bool | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload PixelBytes model",
    remote_code: bool = False,
    card_kwargs: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike] | None = None,
    max_shard_size: str | int = "5GB",
) -> CommitInfo:
    """Create ``repo_id`` if needed and upload model, tokenizer and card as a single commit.

    Args:
        model, tokenizer: the :class:`~pixelbytes.PxBySequenceModel` and its tokenizer (checked to match).
        repo_id: ``"owner/name"``.
        card: a :class:`ModelCard` or markdown text for ``README.md``; ``None`` renders the default card
            (:func:`~pixelbytes.hub.cards.render_model_card` with ``card_kwargs``); ``False`` uploads no card.
        api: the :class:`HfApi` to use (default ``HfApi(token=token)``; tests pass a fake).
        token, private, revision, create_pr, commit_message: as in ``HfApi.create_commit`` / ``create_repo``.
        remote_code: also upload the modelling code with ``auto_map`` (``trust_remote_code=True`` loading).
        extra_files: ``{path_in_repo: local_path}`` added to the commit (e.g. sample outputs).
        max_shard_size: passed to ``save_pretrained``.

    Returns:
        The :class:`CommitInfo` of the commit.
    """
    model.config.check_tokenizer(tokenizer)
    api = api if api is not None else HfApi(token=token)
    api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model", token=token)
    with tempfile.TemporaryDirectory(prefix="pixelbytes-push-") as tmp:
        directory = Path(tmp)
        if remote_code:
            export_remote_code(model, tokenizer, directory, max_shard_size=max_shard_size)
        else:
            model.save_pretrained(directory, max_shard_size=max_shard_size)
            tokenizer.save_pretrained(directory)
        if card is None:
            render_model_card(model, tokenizer, directory, repo_id=repo_id, **dict(card_kwargs or {}))
        elif isinstance(card, ModelCard):
            card.save(directory / "README.md")
        elif isinstance(card, str):
            (directory / "README.md").write_text(card, encoding="utf-8")
        elif card is not False:
            raise TypeError(f"card must be a ModelCard, a str, None or False, got {type(card).__name__}")
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(directory).as_posix(), path_or_fileobj=str(path))
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        ]
        for path_in_repo, local in (extra_files or {}).items():
            operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(local)))
        logger.info("pushing %d files to %s", len(operations), repo_id)
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
            token=token,
            repo_type="model",
        )

"""Helpers shared by the Hub tests (test_hub.py, test_publish.py, test_pipelines.py): a hand-made offline Hub cache,
a fresh offline interpreter, and a fake ``HfApi`` that records its calls. No network is used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import torch

REV = "0123456789abcdef0123456789abcdef01234567"

#: Fresh-interpreter script (``%s`` = the prompt, ``sys.argv[2]`` = replaced by a directory literal): loads a
#: remote-code checkpoint by directory and as ``pxby-org/tiny-remote`` with pixelbytes NOT importable.
REMOTE_SCRIPT = """
import importlib, os, sys
# pixelbytes must NOT be importable: drop every path entry holding the package and editable-install finders
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "pixelbytes"))]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(type(f)).lower()]
try:
    import pixelbytes  # noqa: F401
    importable = True
except ImportError:
    importable = False
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

result = {"pixelbytes_importable": importable}
for key, ref in (("dir", sys.argv[2]), ("hub", "pxby-org/tiny-remote")):
    model = AutoModel.from_pretrained(ref, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(ref, trust_remote_code=True)
    enc = tokenizer("%s", return_tensors="pt")
    with torch.no_grad():
        result[key + "_logits"] = model(**enc).logits
    result[key + "_generated"] = model.generate(**enc, max_new_tokens=6, do_sample=False)
    result[key + "_module"] = type(model).__module__
    result[key + "_tokenizer"] = type(tokenizer).__module__
result["causal_lm"] = type(AutoModelForCausalLM.from_pretrained(sys.argv[2], trust_remote_code=True)).__name__
result["config"] = type(AutoConfig.from_pretrained(sys.argv[2], trust_remote_code=True)).__name__
torch.save(result, sys.argv[1])
"""


def populate_hub_cache(src: Path, repo_id: str, hub_cache: Path, rev: str = REV) -> None:
    """A hand-made Hub cache entry: models--owner--name/{refs/main, snapshots/<rev>/<files>}."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    shutil.copytree(src, repo / "snapshots" / rev, dirs_exist_ok=True)


def run_python(script: str, tmp_path: Path, *, isolated: bool) -> dict:
    """Run ``script`` in a fresh interpreter, offline, with HF_HOME / HF_MODULES_CACHE under ``tmp_path`` (so the
    Hub cache is ``tmp_path/hf/hub``); the script saves a dict with ``torch.save`` to ``sys.argv[1]``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON", "TRANSFORMERS_"))}
    env |= {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_MODULES_CACHE": str(tmp_path / "hf" / "modules"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    path = tmp_path / "script.py"
    result_path = tmp_path / "result.pt"
    path.write_text(textwrap.dedent(script))
    command = [sys.executable, *(["-I"] if isolated else []), str(path), str(result_path)]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(result_path, weights_only=False)


class FakeApi:
    """Records create_repo / create_commit / upload_folder like sentence-transformers' HfApi mocks."""

    def __init__(self, token=None):
        self.repos: list[dict] = []
        self.commits: list[dict] = []
        self.uploads: list[dict] = []

    def create_repo(self, repo_id, **kwargs):
        self.repos.append({"repo_id": repo_id, **kwargs})
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for op in operations:
            source = op.path_or_fileobj
            files[op.path_in_repo] = Path(source).read_bytes() if isinstance(source, str) else source
        self.commits.append({"repo_id": repo_id, "files": files, **kwargs})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{'a' * 40}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        root = Path(folder_path)
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        self.uploads.append({"repo_id": repo_id, "folder_path": folder_path, "files": files, **kwargs})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{'c' * 40}")

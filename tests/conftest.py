"""Shared fixtures of the pixelbytes test suite (all data is built in code or read from tests/fixtures)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

from pixelbytes import ActionPixelBytesTokenizer, control_vocabulary, default_vocabulary

GOLDEN_DIR = Path(__file__).parent / "fixtures" / "golden"

# Property tests must stay fast and deterministic: `--hypothesis-profile=thorough` for a longer run.
settings.register_profile(
    "pixelbytes", deadline=None, max_examples=100, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pixelbytes")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def vocab():
    return default_vocabulary()


@pytest.fixture(scope="session")
def control_vocab():
    return control_vocabulary()


@pytest.fixture(scope="session")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


@pytest.fixture(scope="session")
def tok_mono() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer(audio_channels=1)


@pytest.fixture(scope="session")
def make_gif():
    """Factory: an animated GIF (opened from bytes) whose frames are palette-index arrays ``(F, H, W)``."""

    def build(indices: np.ndarray, palette, transparency: int | None = None) -> Image.Image:
        indices = np.asarray(indices, dtype=np.uint8)
        flat_palette = [v for colour in palette for v in colour]
        frames = []
        for frame in indices:
            im = Image.fromarray(frame, "P")
            im.putpalette(flat_palette)
            frames.append(im)
        buffer = io.BytesIO()
        extra = {} if transparency is None else {"transparency": transparency}
        frames[0].save(
            buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0, optimize=False,
            disposal=1, **extra,
        )  # fmt: skip
        buffer.seek(0)
        return Image.open(buffer)

    return build


# --------------------------------------------------------------------------------------------------
# Fresh-interpreter import checks (test_tokenizer.py). Each pays the torch + transformers import, so they
# are started in the background as soon as collection shows they will run, and overlap the rest of the suite.
# --------------------------------------------------------------------------------------------------
HEAVY = ["datasets", "accelerate", "scipy", "soundfile", "gradio"]

IMPORT_CHECKS = {
    # `import pixelbytes`, recording which module asks for each heavy package
    "import": (
        "import importlib.abc, json, sys\n"
        f"HEAVY = {HEAVY!r}\n"
        "importers = []\n"
        "class Spy(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in HEAVY:\n"
        "            f = sys._getframe(1)\n"
        "            while f is not None and f.f_code.co_filename.startswith('<frozen'):\n"
        "                f = f.f_back\n"
        "            importers.append(f.f_globals.get('__name__', '?') if f is not None else '?')\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "import pixelbytes\n"
        "print(json.dumps({'loaded': [m for m in HEAVY if m in sys.modules], 'importers': importers}))"
    ),
    # the optional packages made unimportable: the package and its tokenizer must still work
    "blocked": (
        "import sys\n"
        f"for m in {[*HEAVY, 'skimage']!r}: sys.modules[m] = None\n"
        "import numpy as np, pixelbytes\n"
        "tok = pixelbytes.ActionPixelBytesTokenizer()\n"
        "enc = tok(text='hi', images=np.zeros((2, 2, 3), np.uint8), audio=np.zeros((2, 3), np.float32),\n"
        "          return_context_ids=True)\n"
        "print(enc['input_ids'][:3], len(enc['context_ids']))"
    ),
}
_IMPORT_PROCS: dict[str, subprocess.Popen] = {}


def _start_import_checks() -> None:
    if not _IMPORT_PROCS:
        for name, code in IMPORT_CHECKS.items():
            _IMPORT_PROCS[name] = subprocess.Popen(
                [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )


def pytest_collection_finish(session) -> None:
    if any("import_checks" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_import_checks()


def pytest_sessionfinish(session, exitstatus) -> None:
    for proc in _IMPORT_PROCS.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="session")
def import_checks() -> dict[str, str]:
    """Last stdout line of each fresh-interpreter import check."""
    _start_import_checks()
    results = {}
    for name, proc in _IMPORT_PROCS.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        results[name] = out.strip().splitlines()[-1]
    return results

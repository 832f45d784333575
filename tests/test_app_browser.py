"""The app in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium.

Starts the app on 127.0.0.1 (a free port, in a background thread) with a tiny random model, types a caption,
clicks Generate, waits for the sprite <img> and the cry <audio>, saves a screenshot (in the pytest tmp dir, and
copied into ``$PIXELBYTES_SCREENSHOT_DIR`` when that is set) and checks the DOM.

Never skipped in CI: it FAILS when Chromium / chromedriver / selenium are missing (``.ci/run`` installs them:
``apt-get install -y chromium chromium-driver``). Set ``PIXELBYTES_SKIP_BROWSER=1`` to skip it on purpose.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from pixelbytes import ActionPixelBytesTokenizer
from tiny_models import tiny_model

#: where to keep a copy of the screenshot after the test (unset: only the pytest tmp dir)
SCREENSHOT_DIR = os.environ.get("PIXELBYTES_SCREENSHOT_DIR")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
]

pytestmark = pytest.mark.skipif(
    os.environ.get("PIXELBYTES_SKIP_BROWSER") == "1", reason="PIXELBYTES_SKIP_BROWSER=1 skips the browser test"
)


def _binary(names: tuple[str, ...], paths: tuple[str, ...]) -> str | None:
    for path in paths:
        if os.access(path, os.X_OK):
            return path
    for name in names:
        if found := shutil.which(name):
            return found
    return None


def _browser_tools(
    chromium_names: tuple[str, ...] = ("chromium", "chromium-browser"),
    driver_names: tuple[str, ...] = ("chromedriver",),
    prefix: str = "/usr/bin/",
) -> tuple[str, str]:
    """``(chromium, chromedriver)``; fails (never skips) with the install command when one is missing."""
    chromium = _binary(chromium_names, tuple(prefix + name for name in chromium_names))
    driver = _binary(driver_names, tuple(prefix + name for name in driver_names))
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if path is None]
    if missing:
        pytest.fail(
            f"the browser test needs {' and '.join(missing)}: apt-get install -y chromium chromium-driver "
            "(or set PIXELBYTES_SKIP_BROWSER=1 to skip it)",
            pytrace=False,
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("the browser test needs selenium: pip install -e '.[test]' (or PIXELBYTES_SKIP_BROWSER=1)")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_chromium_fails_instead_of_skipping():
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium chromium-driver"):
        _browser_tools(chromium_names=("no-such-chromium",), prefix="/nonexistent/")


def test_app_in_headless_chromium(tmp_path):
    chromium, chromedriver = _browser_tools()
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium: never look drivers up online
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from pixelbytes.app import SpriteStudio, build_app, launch_app

    tok = ActionPixelBytesTokenizer()
    studio = SpriteStudio(tiny_model(0), tok, upscale=16, output_dir=tmp_path / "gifs")
    app = build_app(studio.model, tok, studio=studio, default_size=(8, 8), audio_steps=400)
    port = _free_port()
    launch_app(app, port=port, block=False)

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = None
    started = time.perf_counter()
    try:
        driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        driver.set_page_load_timeout(30)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 30)
        box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#caption textarea"), "the page never rendered")
        box.clear()
        box.send_keys("a small red heart")
        driver.find_element(By.CSS_SELECTOR, "#generate").click()

        def sprite_src(d):
            images = d.find_elements(By.CSS_SELECTOR, "#sprite img")
            srcs = [img.get_attribute("src") or "" for img in images]
            return next((s for s in srcs if ".gif" in s), None)  # the finished GIF (rows stream as PNGs first)

        def audio_src(d):
            audios = d.find_elements(By.CSS_SELECTOR, "#cry audio")
            return next((a.get_attribute("src") for a in audios if a.get_attribute("src")), None)

        try:
            gif = wait.until(sprite_src, "no finished sprite GIF in #sprite")
            audio = wait.until(audio_src, "no <audio> with a src in #cry")
            wait.until(lambda d: "Done" in d.find_element(By.CSS_SELECTOR, "#status").text, "status never 'Done'")
        except Exception:
            driver.save_screenshot(str(tmp_path / "failure.png"))
            (tmp_path / "failure.html").write_text(driver.page_source)
            raise
        time.sleep(0.3)  # let the player lay out before the screenshot
        shot = tmp_path / "pixelbytes_app_screenshot.png"
        assert driver.save_screenshot(str(shot)), "the screenshot was not written"
        if SCREENSHOT_DIR:
            Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, Path(SCREENSHOT_DIR) / shot.name)

        assert (gif.startswith(("data:", "blob:", "http://127.0.0.1")) and "file" in gif) or gif.startswith("data:")
        assert audio.startswith(("data:", "blob:", "http://127.0.0.1"))
        natural = driver.execute_script(
            "const i = [...document.querySelectorAll('#sprite img')].find(x => x.src.includes('.gif'));"
            "return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null;"
        )
        assert natural == [8 * 16, 8 * 16]  # the 8x8 sprite, 16x nearest-neighbour
        assert shot.stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        app.close()
    assert time.perf_counter() - started < 60

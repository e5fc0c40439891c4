"""A real headless Chromium (Debian's package) driven by selenium, for the report and live-view
tests: nothing downloads a browser or a driver (explicit /usr/bin paths, no Selenium Manager)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("BRUNO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BRUNO_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


def available() -> str | None:
    """None when a browser test can run, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} missing (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A fresh headless Chromium (own profile directory), quit and cleaned up on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # explicit binary and driver paths: Selenium Manager is never asked; offline if it were
    os.environ.setdefault("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="bruno-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_screenshot(driver: Any, path: Path, width: int = 1400, max_height: int = 16000) -> Path:
    """The whole page (to ``max_height`` px) as a PNG: every plot drawn (the report's
    ``brunoDrawAll`` promise awaited), the window resized to the page's height and the layout
    settled before the capture."""
    import time

    driver.set_script_timeout(120)
    driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "(window.brunoDrawAll ? window.brunoDrawAll() : Promise.resolve()).then("
        "function () { done(true); }, function (e) { done(String(e)); });"
    )
    h = int(driver.execute_script("return document.documentElement.scrollHeight"))
    h = min(max(h, 600), max_height)
    driver.set_window_size(width, h + 140)  # the window's frame around the viewport
    time.sleep(1.0)
    driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "requestAnimationFrame(function () { requestAnimationFrame(function () { done(1); }); });"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path

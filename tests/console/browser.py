"""A real Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium, headless,
with a fresh profile and no background traffic; the reason it cannot run, when it cannot."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
DRIVER = shutil.which("chromedriver")


def why_not() -> str | None:
    """None when a browser test can run, else the reason it is skipped."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None or DRIVER is None:
        return "chromium / chromium-driver not installed (scripts/setup.sh installs them)"
    return None


class Browser:
    """One headless Chromium window of ``width`` x ``height``."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="w3-chromium-")
        opts = webdriver.ChromeOptions()
        assert CHROMIUM is not None
        opts.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
        ):
            opts.add_argument(flag)
        self.driver: Any = webdriver.Chrome(options=opts, service=Service(DRIVER))

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def wait(self, check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        """Ask ``check()`` every 50 ms until it returns something true (browser side)."""
        end = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                value = check()
                if value:
                    return value
            except Exception as e:  # an element not there yet, or replaced meanwhile
                last = e
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} ({last!r})")

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def text(self, selector: str) -> str:
        return str(self.css(selector).text)

    def go(self, url: str) -> None:
        self.driver.get(url)

    def hash(self, frag: str) -> None:
        self.driver.execute_script("location.hash = arguments[0]", frag)

    def shot(self, path: Path, full: bool = True) -> None:
        if full:
            w = self.driver.get_window_size()["width"]
            self.driver.set_window_size(w, 700)
            h = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(w, max(600, min(int(h) + 120, 4000)))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))

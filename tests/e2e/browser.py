"""Headless Debian ``chromium`` driven by Selenium through Debian's ``chromedriver``, and what the tests read
back from it: screenshots as arrays, the console, and the HTTP requests that failed (from the DevTools
performance log), so that a failing end-to-end test says which request went wrong."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 900)  # CSS pixels; device scale factor forced to 1 so screenshot pixels are CSS pixels


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message + " (.ci/run installs it)")
    pytest.skip(message)


def start_chromium() -> Any:
    """A headless chromium fit for a container (no sandbox, /tmp instead of /dev/shm) with WebGL on
    SwiftShader (OHIF's cornerstone3D draws through WebGL)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium missing: pip install -e '.[test]'")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            _missing(f"{path} missing: apt-get install {package}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--use-gl=angle",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--password-store=basic",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
    return driver


class Journal:
    """Console messages and failed HTTP exchanges seen so far (each log read drains chromedriver's buffer)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.console: list[str] = []
        self.failed: list[str] = []
        self.requests: dict[str, str] = {}
        self.answered: list[tuple[str, int]] = []  # ("GET url", status) of every response

    def drain(self) -> None:
        for entry in self.driver.get_log("browser"):
            self.console.append(f"{entry['level']}: {entry['message'][:500]}")
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            params = msg.get("params", {})
            if msg["method"] == "Network.requestWillBeSent":
                req = params["request"]
                self.requests[params["requestId"]] = f"{req['method']} {req['url']}"
            elif msg["method"] == "Network.responseReceived":
                resp = params["response"]
                self.answered.append((self.requests.get(params["requestId"], resp["url"]), resp["status"]))
                if resp["status"] >= 400:
                    what = self.requests.get(params["requestId"], resp["url"])
                    self.failed.append(f"{what} -> {resp['status']} {resp.get('statusText', '')}")
            elif msg["method"] == "Network.loadingFailed" and not params.get("canceled"):
                what = self.requests.get(params["requestId"], "?")
                self.failed.append(f"{what} -> {params.get('errorText')} {params.get('corsErrorStatus', '')}")

    def report(self) -> str:
        self.drain()
        errors = [c for c in self.console if c.startswith(("SEVERE", "WARNING"))]
        return ("failed requests:\n  " + "\n  ".join(self.failed[-30:] or ["none"])
                + "\nconsole errors/warnings:\n  " + "\n  ".join(errors[-30:] or ["none"]))


def screenshot(driver: Any, path: Path | None = None) -> np.ndarray:
    """The window's RGB pixels (rows, cols, 3); also saved as a PNG at ``path`` when given."""
    png = driver.get_screenshot_as_png()
    if path is not None:
        path.write_bytes(png)
        print(f"screenshot: {path}")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def element_box(element: Any) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of ``element`` in screenshot pixels."""
    rect = element.rect
    top, left = int(round(rect["y"])), int(round(rect["x"]))
    return top, left, top + int(round(rect["height"])), left + int(round(rect["width"]))


def crop(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, bottom, right = box
    return pixels[max(top, 0):bottom, max(left, 0):right]

"""Helpers the explorer's tests share: a JSON client for the live server, input files, and a browser
page that records its console errors and requests."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import urllib.error
import urllib.request
import wave
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

LM_TEXT = "the cat sat on the mat."  # what the tests give a language model
SOURCE_TEXT = "ein hund rennt."  # and a translation model


CHROMIUM = os.environ.get("ATTENTIVE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ATTENTIVE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "explore"
IDEAS = ("embedding", "positions", "attention_steps", "heads", "residual", "permutation", "masks")
BAD_REQUEST = "the server responded with a status of 400"  # Chromium logs every 4xx fetch


def post(base: str, path: str, body: dict | bytes | None = None, query: str = "") -> tuple[int, dict]:
    """POST JSON (or raw bytes) to ``base/api/path``; returns (status, decoded JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    kind = "application/octet-stream" if isinstance(body, bytes) else "application/json"
    request = urllib.request.Request(f"{base}/api/{path}{query}", data=data, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def digit_png(value: int = 7) -> bytes:
    """A drawn-looking digit-ish stroke as PNG bytes (white ink on black)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (56, 56), 0)
    draw = ImageDraw.Draw(img)
    draw.line([(14, 12), (42, 12), (24, 46)], fill=255, width=6)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tone_wav(seconds: float = 1.5, rate: int = 16000) -> bytes:
    """A chirp as 16-bit PCM WAV bytes."""
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.3 * np.sin(2 * math.pi * (200 + 600 * t) * t)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((samples * 32767).astype("<i2").tobytes())
    return buf.getvalue()


class Page:
    """A fresh page that records console errors and every request it makes."""

    def __init__(self, browser, **context):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", state="attached", timeout=30_000)

    def wait(self, selector: str, timeout: int = 30_000) -> None:
        self.page.wait_for_selector(selector, state="attached", timeout=timeout)

    def run_text(self, text: str) -> None:
        before = self.page.get_attribute("body", "data-analysis")
        self.page.fill("#text", text)
        self.page.click("#run")
        self.page.wait_for_function(
            "before => (document.body.dataset.analysis || before) !== before", arg=before, timeout=30_000
        )

    def tab(self, view: str) -> None:
        self.page.click(f"#tabs button[data-view='{view}']")

    def rendered(self, name: str, at_least: int = 1) -> None:
        key = "rendered" + "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
        self.page.wait_for_function(f"n => Number(document.body.dataset.{key} || 0) >= n", arg=at_least, timeout=30_000)

    def count(self, name: str) -> int:
        key = "rendered" + "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
        return int(self.page.evaluate(f"document.body.dataset.{key} || 0"))

    def shot(self, name: str, selector: str | None = None) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if selector:
            self.page.locator(selector).screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path), full_page=True)
        return path

    def check_clean(self, origin: str | None, allow_bad_requests: bool = False) -> None:
        errors = [e for e in self.errors if not (allow_bad_requests and BAD_REQUEST in e)]
        assert not errors, errors
        for url in self.requests:
            parsed = urlparse(url)
            if origin is None:
                assert parsed.scheme in ("file", "data", "blob"), url  # an export fetches nothing
            else:
                assert parsed.scheme in ("data", "blob") or url.startswith(origin), url
        self.context.close()

"""Helpers the explorer's tests share: a JSON client for the live server, and input files."""

from __future__ import annotations

import io
import json
import math
import urllib.error
import urllib.request
import wave

import numpy as np


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

"""What keeps a server safe to expose: the body-size cap and the API key.

``BodyLimit`` is ASGI middleware: it reads a request's body before the app does, answering 413
as soon as the ``Content-Length`` or the bytes received pass the cap (uploads have their own,
larger cap), then replays the body to the app; after the body, ``receive`` is the server's own,
so the app still learns when its client disconnects. ``require_api_key`` is a FastAPI dependency
on every route but ``/health``: ``Authorization: Bearer KEY``, compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from fastapi import Request

from .errors import APIError, error_body


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit_for(path)`` bytes."""

    def __init__(self, app, limit_for: Callable[[str], int]):
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain(receive, 4 * limit)
            return await _too_large(send, limit)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the app sees the disconnect
            size += len(message.get("body", b""))
            if size > limit:
                if message.get("more_body", False):
                    await _drain(receive, 4 * limit)
                return await _too_large(send, limit)
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _drain(receive, most: int) -> None:
    """Read and drop the rest of a refused body (up to ``most`` bytes), so the client, still
    sending, reads the 413 instead of a reset connection."""
    seen = 0
    while seen <= most:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        seen += len(message.get("body", b""))


async def _too_large(send, limit: int) -> None:
    body = json.dumps(
        error_body(f"request body is larger than the server's limit of {limit:,} bytes", code="body_too_large")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def api_key_dependency(key: str | None):
    """A FastAPI dependency that checks ``Authorization: Bearer <key>`` (nothing when ``key`` is None)."""

    async def require_api_key(request: Request) -> None:
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(
                401,
                "missing API key: send the header 'Authorization: Bearer <key>'",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), key.encode()):
            raise APIError(401, "incorrect API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    return require_api_key

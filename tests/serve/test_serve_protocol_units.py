"""The server's protocol pieces in-process (found by mutation testing, which sees only
in-process tests: a server started as a subprocess runs unmutated code): an error's type by
its status, and the body limit passing bodiless methods straight through."""

from __future__ import annotations

import asyncio

import pytest

from attentive.serve.errors import ERROR_TYPES, APIError
from attentive.serve.limits import BodyLimit


@pytest.mark.parametrize(
    "status, expected",
    [(400, "invalid_request_error"), (418, "invalid_request_error"), (500, "server_error"), (599, "server_error")],
)
def test_an_errors_type_follows_its_status(status, expected):
    assert APIError(status, "m").type == ERROR_TYPES.get(status, expected)
    assert APIError(status, "m", type="custom").type == "custom"


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_the_body_limit_lets_bodiless_methods_through_unread(method):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["method"])

    async def receive():  # reading the body of a bodiless request is a bug: fail loudly
        raise AssertionError("the body limit read a bodiless request")

    limited = BodyLimit(app, lambda path: 0)
    asyncio.run(limited({"type": "http", "method": method, "path": "/v1/x", "headers": []}, receive, None))
    assert seen == [method]

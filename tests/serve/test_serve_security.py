"""What keeps ``attentive serve`` safe to expose, checked in process: the API key (constant-time,
on every route but the open ones), no request path or field reaching the file system, CORS off
unless asked, and every limit that bounds one request's cost refused with a clean 400 / 413
naming it."""

from __future__ import annotations

import builtins
import io
import os
import pathlib

import pytest

from serve_helpers import make_chat_lm, make_encoder

pytest.importorskip("fastapi")

from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402

from attentive.serve import ServeSettings, create_app, load_served_model, schemas  # noqa: E402
from attentive.serve import limits as limits_module  # noqa: E402

pytestmark = pytest.mark.timeout(120)

KEY = "k" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
OPEN = {"/health", "/openapi.json"}  # by design: liveness, and the API's shape (no model, no secret)
LIMITS = dict(max_n=4, max_inputs=4, context=64, compile=False, max_body_bytes=64 * 1024, max_upload_bytes=128 * 1024)
TRAVERSALS = [
    "../../etc/passwd",
    "/etc/passwd",
    "~/.ssh/id_rsa",
    "~root",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "file:///etc/passwd",
    "..\\..\\windows\\win.ini",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    return [
        load_served_model(f"chat={make_chat_lm(root / 'chat', max_len=64)}", optimize=False),
        load_served_model(f"embed={make_encoder(root / 'embed')}", optimize=False),
    ]


@pytest.fixture(scope="module")
def keyed(models):
    app = create_app(models, ServeSettings(api_key=KEY, **LIMITS))
    with TestClient(app) as client:
        yield client
    app.state.attentive.close()


def _routes(routes, prefix=""):
    """(path, method) of every route, included routers and mounts opened."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif isinstance(route, Mount):
            yield prefix + route.path + "/{path}", "GET"
        elif isinstance(route, (APIRoute, Route)):
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    yield prefix + route.path_format, method


# ----------------------------------------------------------------------------- the API key


def test_the_key_is_compared_with_compare_digest_whatever_its_length(keyed, monkeypatch):
    seen = []
    real = limits_module.hmac.compare_digest

    def recording(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(limits_module.hmac, "compare_digest", recording)
    for given in ("x" * len(KEY), "x", KEY + "x", KEY[:-1]):  # equal length, shorter, longer
        reply = keyed.get("/v1/models", headers={"Authorization": f"Bearer {given}"})
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
        assert reply.headers["www-authenticate"] == "Bearer"
        assert seen.pop() == (given.encode(), KEY.encode())
    for header in ({}, {"Authorization": KEY}, {"Authorization": "Basic " + KEY}, {"Authorization": "Bearer "}):
        reply = keyed.get("/v1/models", headers=header)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "missing_api_key"
    assert keyed.get("/v1/models", headers=AUTH).status_code == 200
    assert seen == [(KEY.encode(), KEY.encode())]


def test_every_route_but_the_open_ones_needs_the_key(keyed):
    routes = set(_routes(keyed.app.routes))
    assert {p for p, _ in routes} >= {"/v1/chat/completions", "/v1/models/{name}", "/metrics", "/health"}
    open_routes = set()
    for path, method in sorted(routes):
        url = path.replace("{name}", "chat").replace("{path}", "x")
        reply = keyed.request(method, url, json={"model": "chat", "prompt": "hi"} if method == "POST" else None)
        if reply.status_code != 401:
            open_routes.add(path)
        else:
            assert reply.json()["error"]["type"] == "authentication_error", (path, reply.text)
    assert open_routes == OPEN


def test_the_explorer_is_never_mounted_beside_a_key(monkeypatch):
    """The explorer's routes take no key (its page sends none): the CLI refuses the two together,
    before loading any model."""
    import argparse

    from attentive.cli import serve as serve_cli

    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    monkeypatch.delenv("ATTENTIVE_API_KEY", raising=False)
    args = parser.parse_args(["serve", "--explore", "--api-key", "k", "--model", "does-not-exist"])
    with pytest.raises(ValueError, match="--explore cannot be combined with an API key"):
        serve_cli.run(args)
    monkeypatch.setenv("ATTENTIVE_API_KEY", "from-env")
    args = parser.parse_args(["serve", "--explore", "--model", "does-not-exist"])
    with pytest.raises(ValueError, match="--explore cannot be combined with an API key"):
        serve_cli.run(args)


# ----------------------------------------------------------------------------- the file system


@pytest.fixture
def opened(monkeypatch):
    """Every path opened (builtins, io, os, pathlib) while the test runs."""
    seen = []

    def wrap(owner, name):
        real = getattr(owner, name)

        def recording(*args, **kwargs):
            target = args[0] if args else kwargs.get("file")
            seen.append(str(target))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, recording)

    wrap(builtins, "open")
    wrap(io, "open")
    wrap(os, "open")
    for name in ("open", "read_bytes", "read_text"):
        wrap(pathlib.Path, name)
    return seen


def test_no_model_name_or_path_reaches_the_file_system(keyed, opened):
    for bad in TRAVERSALS:
        for path, body in (
            ("/v1/chat/completions", {"model": bad, "messages": [{"role": "user", "content": "hi"}]}),
            ("/v1/completions", {"model": bad, "prompt": "hi"}),
            ("/v1/embeddings", {"model": bad, "input": "hi"}),
        ):
            reply = keyed.post(path, json=body, headers=AUTH)
            assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found", (bad, reply.text)
        reply = keyed.get(f"/v1/models/{bad}", headers=AUTH)
        assert reply.status_code in (400, 404), (bad, reply.status_code)
    for raw in ("/v1/models/..%2F..%2Fetc%2Fpasswd", "/v1/models/%2Fetc%2Fpasswd", "/v1/models/%7E%2F.ssh"):
        assert keyed.get(raw, headers=AUTH).status_code == 404
    assert keyed.get("/v1/models/chat", headers=AUTH).status_code == 200  # a served name still answers
    assert opened == []


def test_the_explorer_serves_nothing_outside_its_own_files(models, opened):
    from attentive.cli.serve import mount_explorer
    from attentive.explore.api import STATIC
    from attentive.serve import ModelRegistry

    registry = ModelRegistry(models[:1])
    app = create_app(registry, ServeSettings(**LIMITS))
    mount_explorer(app, registry)
    with TestClient(app) as client:
        assert client.get("/explore/").status_code == 200
        for bad in TRAVERSALS:
            assert client.get(f"/explore/static/{bad}").status_code == 404, bad
            reply = client.post("/explore/api/analyze", json={"model": bad, "text": "hello"})
            assert reply.status_code in (400, 404) and "passwd" not in reply.text.replace(bad, ""), bad
            reply = client.post("/explore/api/analyze/file", params={"model": bad}, content=b"\x89PNG")
            assert reply.status_code in (400, 404), bad
        for raw in ("/explore/static/..%2F..%2F..%2Fetc%2Fpasswd", "/explore/static/%2e%2e/%2e%2e/serve/app.py"):
            assert client.get(raw).status_code == 404, raw
    app.state.attentive.close()
    import mimetypes
    import sys

    # besides the page's folder: Python's imports, /proc, the MIME table (what any library reads)
    allowed = (str(STATIC.resolve()), sys.prefix, sys.base_prefix, "/proc/", *mimetypes.knownfiles)
    outside = [p for p in opened if not os.path.realpath(p).startswith(allowed)]
    assert not outside, outside
    assert any(p.startswith(allowed[0]) for p in map(os.path.realpath, opened))  # the page came from there
    assert not [p for p in opened if any(word in p for word in ("passwd", ".ssh", "win.ini", "~", "serve/app"))]


# ----------------------------------------------------------------------------- CORS


def test_cors_is_off_unless_origins_are_given(models):
    origin = {"Origin": "https://evil.example"}
    preflight = {**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    app = create_app(models, ServeSettings(**LIMITS))
    with TestClient(app) as client:
        for reply in (
            client.get("/health", headers=origin),
            client.get("/v1/models", headers=origin),
            client.options("/v1/chat/completions", headers=preflight),
        ):
            assert not any(k.lower().startswith("access-control-") for k in reply.headers), dict(reply.headers)
    app.state.attentive.close()
    app = create_app(models, ServeSettings(cors_origins=("https://ok.example",), **LIMITS))
    with TestClient(app) as client:
        reply = client.get("/v1/models", headers={"Origin": "https://ok.example"})
        assert reply.headers["access-control-allow-origin"] == "https://ok.example"
        reply = client.options("/v1/chat/completions", headers={**preflight, "Origin": "https://ok.example"})
        assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == "https://ok.example"
        assert "access-control-allow-origin" not in client.get("/v1/models", headers=origin).headers
        reply = client.options("/v1/chat/completions", headers=preflight)
        assert reply.headers.get("access-control-allow-origin") != "https://evil.example"
    app.state.attentive.close()


# ----------------------------------------------------------------------------- limits on one request's cost

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "path, body, param, words",
    [
        ("/v1/chat/completions", {**CHAT, "n": 5}, "n", "at most 4 choices"),
        ("/v1/completions", {"model": "chat", "prompt": "hi", "n": 5}, "n", "at most 4 choices"),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 1000}, "max_tokens", "context is 64 tokens"),
        ("/v1/chat/completions", {**CHAT, "max_completion_tokens": 1000}, "max_completion_tokens", "context is 64"),
        ("/v1/completions", {"model": "chat", "prompt": "hi", "max_tokens": 1000}, "max_tokens", "context is 64"),
        ("/v1/completions", {"model": "chat", "prompt": "it was the " * 40}, "prompt", "shorten the prompt"),
        ("/v1/completions", {"model": "chat", "prompt": [7] * 64}, "prompt", "shorten the prompt"),
        (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "it was the best " * 30}]},
            "messages",
            "shorten the prompt",
        ),
        ("/v1/chat/completions", {**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 stop sequences"),
        ("/v1/chat/completions", {**CHAT, "stop": "x" * 257}, "stop", "at most 256"),
        ("/v1/completions", {"model": "chat", "prompt": "hi", "stop": ["ok", "y" * 300]}, "stop", "at most 256"),
        ("/v1/completions", {"model": "chat", "prompt": ["a", "b", "c", "d", "e"]}, "prompt", "at most 4"),
        ("/v1/embeddings", {"model": "embed", "input": ["a", "b", "c", "d", "e"]}, "input", "at most 4"),
    ],
)
def test_a_request_over_a_limit_is_refused_naming_it(keyed, path, body, param, words):
    reply = keyed.post(path, json=body, headers=AUTH)
    error = reply.json()["error"]
    assert reply.status_code == 400 and error["param"] == param and words in error["message"], reply.text
    assert "\n" not in error["message"]


def test_bodies_and_uploads_over_their_caps_are_413(keyed):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (65 * 1024)}]}
    reply = keyed.post("/v1/chat/completions", json=big, headers=AUTH)
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "body_too_large"
    assert "65,536 bytes" in reply.json()["error"]["message"]
    files = {"file": ("big.png", b"\0" * (129 * 1024), "image/png")}
    reply = keyed.post("/v1/classifications/image", data={"model": "vit"}, files=files, headers=AUTH)
    assert reply.status_code == 413 and "131,072 bytes" in reply.json()["error"]["message"]
    # under the caps, the same endpoints answer (the limits are what refused)
    assert keyed.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2}, headers=AUTH).status_code == 200


def test_the_limits_are_in_the_openapi_schema():
    from attentive.serve import openapi_schema

    document = openapi_schema()
    stop = document["components"]["schemas"]["ChatCompletionRequest"]["properties"]["stop"]
    text, many, _ = stop["anyOf"]
    assert text["maxLength"] == schemas.MAX_STOP_CHARS and many["maxItems"] == schemas.MAX_STOP
    alpha = document["components"]["schemas"]["TranslationRequest"]["properties"]["alpha"]
    assert alpha["anyOf"][0]["maximum"] == schemas.MAX_ALPHA
    assert "more inputs than the server allows" in json_text(document["paths"]["/v1/embeddings"]["post"])
    assert "--max-body-mb" in json_text(document["paths"]["/v1/chat/completions"]["post"]["responses"]["413"])


def json_text(node) -> str:
    import json

    return json.dumps(node)

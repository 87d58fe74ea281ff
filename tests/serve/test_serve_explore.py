"""One app, two faces: ``attentive serve --explore`` serves the explorer beside the OpenAI endpoints."""

from __future__ import annotations

import json

import pytest

from serve_helpers import Server, http


@pytest.fixture(scope="module")
def both(tiny_models, tmp_path_factory):
    server = Server(
        [f"chat={tiny_models['chat']}", f"translate={tiny_models['translate']}"],
        "--explore",
        log=tmp_path_factory.mktemp("logs") / "explore.log",
    )
    yield server
    server.stop()


def test_the_explorer_and_the_api_share_one_server(both):
    status, _, page = http(both, "GET", "/explore/")
    assert status == 200 and b"<html" in page.lower()
    status, _, body = http(both, "GET", "/explore/api/models")
    assert status == 200
    names = json.dumps(json.loads(body))
    assert "chat" in names and "translate" in names
    status, _, body = http(both, "POST", "/explore/api/analyze", {"text": "hello there", "model": "chat"})
    assert status == 200 and json.loads(body)["tokens"]
    # the OpenAI face still answers, from its own copy of the model
    status, _, body = http(
        both, "POST", "/v1/completions", {"model": "chat", "prompt": "hello", "max_tokens": 4, "temperature": 0}
    )
    assert status == 200 and json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length")


def test_explore_and_an_api_key_are_refused_together(tiny_models, tmp_path):
    with pytest.raises(RuntimeError, match="exited with 2.*cannot be combined with an API key"):
        Server([f"chat={tiny_models['chat']}"], "--explore", api_key="k", ready_timeout=30, log=tmp_path / "log")

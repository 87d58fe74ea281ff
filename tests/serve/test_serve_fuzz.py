"""Schema-driven fuzzing of the server (schemathesis, ``serve_fuzz.py``): a fixed-seed, bounded
run over every operation, and the regressions of what fuzzing found. The long run is
``benchmarks/reliability/fuzz_server.py`` (``server_fuzz.json``)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402

from serve_fuzz import AUTH, fuzz, fuzz_app  # noqa: E402

pytestmark = pytest.mark.timeout(180)

EXAMPLES = 8  # per operation and mode: ~170 requests, a few seconds
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = fuzz_app(tmp_path_factory.mktemp("fuzz"))
    yield app
    app.state.attentive.close()


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)  # no lifespan: the engines run from create_app until the fixture closes them


def test_generated_requests_get_documented_answers_and_no_5xx(app, client):
    report = fuzz(app, EXAMPLES)
    assert report["failures"] == {}, json.dumps(report["examples"], indent=1)
    assert len(report["operations"]) == 10 and report["requests_total"] > 10 * EXAMPLES
    assert not any(" 5" in status for status in report["statuses"])
    # valid bodies reached the models: every POST answered 200 at least once
    for operation in report["operations"]:
        assert f"{operation} 200" in report["statuses"], (operation, report["statuses"])
    # and the server still answers a normal request
    reply = client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"


# ----------------------------------------------------------------------------- what fuzzing found


def _post(client, path: str, raw: bytes):
    return client.post(path, content=raw, headers={**AUTH, "Content-Type": "application/json"})


@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_is_a_400_naming_the_field(client, stream):
    """Was a 500 (TypeError from the tokenizer): JSON may escape half a UTF-16 pair."""
    body = {**CHAT, "stream": stream, "messages": [{"role": "user", "content": "half \ud800 a pair"}]}
    reply = _post(client, "/v1/chat/completions", json.dumps(body).encode())  # ensure_ascii: "\\ud800"
    error = reply.json()["error"]
    assert reply.status_code == 400 and error["param"] == "messages.0.content" and "surrogate" in error["message"]
    reply = _post(client, "/v1/embeddings", b'{"model": "embed", "input": ["ok", "\\udfff"]}')
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "input.1"
    reply = _post(client, "/v1/embeddings", b'{"model": "embed", "input": "ok", "\\udc00": 1}')  # a key
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "\\udc00"
    pair = {**CHAT, "messages": [{"role": "user", "content": "a whole pair: \U0001f600"}]}
    assert _post(client, "/v1/chat/completions", json.dumps(pair).encode()).status_code == 200


def test_json_nested_too_deeply_is_a_400(client):
    """Was a 500 (RecursionError in json.loads)."""
    reply = _post(client, "/v1/completions", b"[" * 100_000 + b"]" * 100_000)
    assert reply.status_code == 400 and "nested too deeply" in reply.json()["error"]["message"]


def test_a_seed_outside_64_bits_is_a_400(client):
    """Was a 500 (the engine's generator: "Overflow when unpacking long long")."""
    for seed in (2**64, -(2**63) - 1):
        reply = client.post("/v1/chat/completions", json={**CHAT, "seed": seed}, headers=AUTH)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "seed", reply.text
    for seed in (2**63 - 1, -(2**63), 0):  # the edges, each choice seeded seed + i
        reply = client.post("/v1/chat/completions", json={**CHAT, "seed": seed, "n": 4}, headers=AUTH)
        assert reply.status_code == 200 and len(reply.json()["choices"]) == 4, reply.text


def test_a_huge_length_penalty_is_a_400(client):
    """Was a 500 (OverflowError in the beam search's length penalty)."""
    body = {"model": "translate", "input": "Ein Hund", "alpha": 5e307}
    reply = client.post("/v1/translations/text", json=body, headers=AUTH)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "alpha"
    reply = client.post("/v1/translations/text", json={**body, "alpha": 10.0}, headers=AUTH)
    assert reply.status_code == 200


def test_a_stream_is_documented_as_its_events(app):
    """The schema said a stream was one string; with ``itemSchema`` (OpenAPI 3.2) ``schema`` is
    the whole stream read as an array of events, which is what a validator checks."""
    for path in ("/v1/chat/completions", "/v1/completions"):
        content = app.openapi()["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]
        assert content["schema"]["type"] == "array" and content["itemSchema"]["required"] == ["data"]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_many_generated_requests_find_nothing(tmp_path):
    """The long run: ``benchmarks/reliability/fuzz_server.py`` (writes ``server_fuzz.json``)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "reliability" / "fuzz_server.py"
    out = tmp_path / "server_fuzz.json"
    done = subprocess.run([sys.executable, str(script), "--examples", "200", "--out", str(out)], timeout=3300)
    figures = json.loads(out.read_text())["figures"]
    assert done.returncode == 0 and figures["failures"] == 0, figures["failure_examples"]
    assert figures["operations"] == 10 and figures["requests"] > 10 * 200

"""Tests that kill the mutants a sampled mutmut run left alive in ``attentive.serve``
(``benchmarks/reliability/mutation.json``): the streaming code, the usage block, the deadline,
logprobs, and the ``param`` of a few 400s, all in process (FastAPI's ``TestClient``)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from attentive.serve.errors import APIError, timed_out  # noqa: E402
from attentive.serve.generation import _chat_logprobs, prepare  # noqa: E402
from attentive.serve.scheduler import Update  # noqa: E402
from attentive.serve.schemas import CompletionRequest, EmbeddingRequest, TranslationRequest  # noqa: E402
from attentive.serve.settings import ServeSettings  # noqa: E402

CHAT = {
    "model": "chat",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 3,
    "ignore_eos": True,
    "temperature": 0,
}
TEXT = {"model": "chat", "prompt": "It was", "max_tokens": 3, "ignore_eos": True, "temperature": 0}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from attentive.serve import create_app, load_served_model
    from serve_helpers import make_chat_lm

    folder = make_chat_lm(tmp_path_factory.mktemp("mutants") / "chat", max_len=64)
    served = load_served_model(f"chat={folder}", optimize=False)
    app = create_app([served], ServeSettings(timeout=20.0, compile=False, context=64))
    yield app
    app.state.attentive.close()


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def _events(client, body) -> tuple[dict, list]:
    with client.stream("POST", "/v1/" + ("chat/completions" if "messages" in body else "completions"), json=body) as r:
        assert r.status_code == 200
        headers = dict(r.headers)
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return headers, [json.loads(line[len("data: ") :]) for line in lines[:-1]]


# ----------------------------------------------------------------------------- units


def test_a_timeout_is_a_504_naming_the_limit():
    err = timed_out(2.5)
    assert err.status == 504 and err.code == "timeout" and "2.5 s" in err.message


def test_chat_logprobs_give_the_bytes_of_every_alternative():
    update = Update(0, 5, "hé", logprob=-0.5, token_text="hé", top_logprobs=[("hé", -0.5), ("a", -1.0)])
    content = _chat_logprobs([update])["content"][0]
    assert content["bytes"] == list("hé".encode())
    assert content["top_logprobs"] == [
        {"token": "hé", "logprob": -0.5, "bytes": list("hé".encode())},
        {"token": "a", "logprob": -1.0, "bytes": [97]},
    ]


class _Tokenizer:
    def encode(self, text):
        if "§" in text:
            raise ValueError("unknown character '§'")
        return [1, 2]


def _served(vocab=10):
    return SimpleNamespace(tokenizer=_Tokenizer(), vocab_size=vocab, context=32)


def test_a_prompt_the_tokenizer_refuses_is_a_400_naming_prompt():
    body = CompletionRequest(model="m", prompt="a § b", max_tokens=2, ignore_eos=True)
    with pytest.raises(APIError) as err:
        prepare(body, _served(), ServeSettings())
    assert err.value.status == 400 and err.value.param == "prompt" and "§" in err.value.message


def test_token_id_zero_is_inside_the_vocabulary():
    body = CompletionRequest(model="m", prompt=[0, 3], max_tokens=2, ignore_eos=True)
    assert prepare(body, _served(), ServeSettings()).prompts == [[0, 3]]
    with pytest.raises(APIError, match=r"\[10\]"):
        prepare(CompletionRequest(model="m", prompt=[0, 10], max_tokens=2, ignore_eos=True), _served(), ServeSettings())


def test_an_empty_embedding_input_is_named_input():
    with pytest.raises(APIError) as err:
        EmbeddingRequest(model="m", input="  ").texts()
    assert err.value.message.startswith("input is empty") and err.value.param == "input"
    with pytest.raises(APIError) as err:
        EmbeddingRequest(model="m", input=["ok", " "]).texts()
    assert err.value.message.startswith("input.1 is empty")


def test_an_empty_translation_input_is_a_400_naming_input():
    with pytest.raises(APIError) as err:
        TranslationRequest(model="m", input=[]).texts()
    assert err.value.status == 400 and err.value.param == "input"


# ----------------------------------------------------------------------------- through the app


def test_a_whole_response_has_created_usage_and_logprobs(client):
    body = {**CHAT, "logprobs": True, "top_logprobs": 2}
    reply = client.post("/v1/chat/completions", json=body).json()
    assert isinstance(reply["created"], int) and reply["created"] > 0
    usage = reply["usage"]
    assert usage["completion_tokens"] == 3 and usage["total_tokens"] == usage["prompt_tokens"] + 3
    content = reply["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and all(len(c["top_logprobs"]) == 2 for c in content)


def test_a_chat_stream_sends_role_deltas_finish_and_usage_on_every_chunk(client):
    headers, chunks = _events(client, {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert headers["cache-control"] == "no-cache" and headers["content-type"].startswith("text/event-stream")
    assert all("usage" in c for c in chunks)  # OpenAI: null until the last chunk
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert chunks[0]["usage"] is None and isinstance(chunks[0]["created"], int)
    middle = chunks[1:-1]
    assert all(c["choices"][0]["index"] == 0 and "delta" in c["choices"][0] for c in middle)
    assert middle[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in middle)
    assert text
    assert (
        chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == chunks[-1]["usage"]["prompt_tokens"] + 3
    )


def test_a_chat_stream_with_logprobs_sends_them_per_token(client):
    _, chunks = _events(client, {**CHAT, "stream": True, "logprobs": True, "top_logprobs": 1})
    with_logprobs = [c["choices"][0]["logprobs"] for c in chunks[1:] if c["choices"][0]["logprobs"]]
    assert len(with_logprobs) == 3 and all(len(lp["content"]) == 1 for lp in with_logprobs)


def test_a_text_stream_sends_text_and_finish_reason(client):
    _, chunks = _events(client, {**TEXT, "stream": True, "echo": True})
    assert chunks[0]["choices"][0]["text"] == "It was"
    assert all(set(c["choices"][0]) == {"index", "text", "logprobs", "finish_reason"} for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    whole = client.post("/v1/completions", json={**TEXT, "echo": True}).json()["choices"][0]["text"]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole


def test_the_deadline_stops_a_request(app, client):
    settings = app.state.attentive.settings
    before = settings.timeout
    settings.timeout = 1e-4
    try:
        reply = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 40})
    finally:
        settings.timeout = before
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "timeout"

"""Bad input gets a 4xx in OpenAI's error shape with a message that names the problem, and the
server stays healthy; the API key, the body cap, CORS, and model names that are never paths."""

from __future__ import annotations

import io
import json

import pytest

from serve_helpers import http, multipart

pytestmark = pytest.mark.timeout(120)

USER = [{"role": "user", "content": "hello"}]
JSON = {"Content-Type": "application/json"}


def chat(**fields):
    return {"model": "chat", "messages": USER, "max_tokens": 4, **fields}


BAD_JSON = [  # (id, path, body, headers, status, words the message must hold)
    ("malformed JSON", "/v1/chat/completions", '{"model": "chat", "messages": [', JSON, 400, ["not valid JSON"]),
    ("empty body", "/v1/chat/completions", "", JSON, 400, ["empty"]),
    ("not an object", "/v1/chat/completions", "[1, 2]", JSON, 400, ["JSON object", "list"]),
    (
        "wrong content type",
        "/v1/chat/completions",
        json.dumps(chat()),
        {"Content-Type": "text/plain"},
        415,
        ["application/json", "text/plain"],
    ),
    (
        "form content type",
        "/v1/completions",
        "model=chat&prompt=hi",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        ["application/json"],
    ),
    ("messages missing", "/v1/chat/completions", {"model": "chat"}, None, 400, ["messages", "required"]),
    ("messages not a list", "/v1/chat/completions", chat(messages="hello"), None, 400, ["messages", "list"]),
    ("messages empty", "/v1/chat/completions", chat(messages=[]), None, 400, ["messages", "at least 1"]),
    ("messages hold a number", "/v1/chat/completions", chat(messages=[123]), None, 400, ["messages.0"]),
    (
        "messages hold an empty object",
        "/v1/chat/completions",
        chat(messages=[{}]),
        None,
        400,
        ["messages.0.role", "required"],
    ),
    (
        "unknown role",
        "/v1/chat/completions",
        chat(messages=[{"role": "wizard", "content": "x"}]),
        None,
        400,
        ["messages.0.role", "'user'"],
    ),
    (
        "role not a string",
        "/v1/chat/completions",
        chat(messages=[{"role": 5, "content": "x"}]),
        None,
        400,
        ["messages.0.role"],
    ),
    (
        "content a number",
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": 5}]),
        None,
        400,
        ["messages.0.content", "string"],
    ),
    (
        "content an image part",
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        None,
        400,
        ["content parts must be text", "image_url"],
    ),
    ("negative max_tokens", "/v1/chat/completions", chat(max_tokens=-5), None, 400, ["max_tokens", "greater than"]),
    (
        "zero max_tokens",
        "/v1/completions",
        {"model": "chat", "prompt": "x", "max_tokens": 0},
        None,
        400,
        ["max_tokens"],
    ),
    ("max_tokens not a number", "/v1/chat/completions", chat(max_tokens="many"), None, 400, ["max_tokens"]),
    (
        "huge max_tokens",
        "/v1/chat/completions",
        chat(max_tokens=1_000_000),
        None,
        400,
        ["context is 512 tokens", "1000000", "max_tokens"],
    ),
    ("temperature below 0", "/v1/chat/completions", chat(temperature=-0.5), None, 400, ["temperature"]),
    ("top_p 0", "/v1/chat/completions", chat(top_p=0), None, 400, ["top_p", "greater than 0"]),
    ("top_p above 1", "/v1/completions", {"model": "chat", "prompt": "x", "top_p": 1.5}, None, 400, ["top_p"]),
    ("n above the limit", "/v1/chat/completions", chat(n=1000), None, 400, ["n is 1000", "at most 16"]),
    ("five stop strings", "/v1/chat/completions", chat(stop=["a", "b", "c", "d", "e"]), None, 400, ["stop", "4"]),
    (
        "tools",
        "/v1/chat/completions",
        chat(tools=[{"type": "function", "function": {"name": "f"}}]),
        None,
        400,
        ["tools"],
    ),
    (
        "json response format",
        "/v1/chat/completions",
        chat(response_format={"type": "json_object"}),
        None,
        400,
        ["response_format", "json_object"],
    ),
    ("presence penalty", "/v1/chat/completions", chat(presence_penalty=0.5), None, 400, ["presence_penalty"]),
    (
        "echo with logprobs",
        "/v1/completions",
        {"model": "chat", "prompt": "x", "echo": True, "logprobs": 2},
        None,
        400,
        ["echo"],
    ),
    (
        "token id outside the vocabulary",
        "/v1/completions",
        {"model": "chat", "prompt": [5, 99999]},
        None,
        400,
        ["99999", "vocabulary"],
    ),
    ("negative token id", "/v1/completions", {"model": "chat", "prompt": [5, -1]}, None, 400, ["-1"]),
    (
        "too-long prompt",
        "/v1/completions",
        {"model": "char", "prompt": "It was " * 40},
        None,
        400,
        ["context is 128 tokens", "prompt has 280 tokens"],
    ),
    (
        "prompt and max_tokens over the context",
        "/v1/completions",
        {"model": "char", "prompt": "It was " * 10, "max_tokens": 100},
        None,
        400,
        ["70", "100", "128"],
    ),
    ("unknown characters", "/v1/completions", {"model": "char", "prompt": "€€"}, None, 400, ["'€'"]),
    ("empty prompt list", "/v1/completions", {"model": "chat", "prompt": []}, None, 400, ["prompt"]),
    (
        "unknown model",
        "/v1/chat/completions",
        chat(model="gpt-9"),
        None,
        404,
        ["'gpt-9' does not exist", "chat, char, translate, vit, embed"],
    ),
    (
        "a model of another kind",
        "/v1/chat/completions",
        chat(model="embed"),
        None,
        400,
        ["does not serve /v1/chat/completions", "chat"],
    ),
    ("chat without a template", "/v1/chat/completions", chat(model="char"), None, 400, ["chat template"]),
    ("empty embedding input", "/v1/embeddings", {"model": "embed", "input": ""}, None, 400, ["input", "empty"]),
    ("empty embedding list", "/v1/embeddings", {"model": "embed", "input": []}, None, 400, ["input", "empty"]),
    ("embedding input of numbers", "/v1/embeddings", {"model": "embed", "input": [1, 2]}, None, 400, ["input"]),
    (
        "too many embedding inputs",
        "/v1/embeddings",
        {"model": "embed", "input": ["a"] * 300},
        None,
        400,
        ["300 inputs", "256"],
    ),
    (
        "wrong embedding dimensions",
        "/v1/embeddings",
        {"model": "embed", "input": "a", "dimensions": 8},
        None,
        400,
        ["dimensions", "32"],
    ),
    (
        "unknown encoding format",
        "/v1/embeddings",
        {"model": "embed", "input": "a", "encoding_format": "hex"},
        None,
        400,
        ["encoding_format"],
    ),
    ("empty translation input", "/v1/translations/text", {"model": "translate", "input": []}, None, 400, ["input"]),
    (
        "translation input too long",
        "/v1/translations/text",
        {"model": "translate", "input": "Hund " * 60},
        None,
        400,
        ["input.0 has", "at most 48"],
    ),
    (
        "a model path instead of a name",
        "/v1/completions",
        {"model": "/etc/passwd", "prompt": "x"},
        None,
        404,
        ["does not exist"],
    ),
]


def _check_error(status, body, want_status, words):
    assert status == want_status, body
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error


@pytest.mark.parametrize("name, path, body, headers, status, words", BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_bad_input_is_a_4xx_naming_the_problem(tiny_server, name, path, body, headers, status, words):
    got, _, raw = http(tiny_server, "POST", path, body, headers)
    error = _check_error(got, raw, status, words)
    assert error["type"] == "invalid_request_error"


def test_a_model_path_on_disk_is_only_a_name(tiny_server, tiny_models):
    """No request field is used as a file path: a real model folder is not a loaded model's name."""
    status, _, raw = http(tiny_server, "POST", "/v1/completions", {"model": str(tiny_models["chat"]), "prompt": "x"})
    _check_error(status, raw, 404, ["does not exist"])


def test_bad_uploads(tiny_server):
    from PIL import Image

    def post(path, fields, data, filename="x.png", content_type="image/png"):
        body, header = multipart(fields, "file", filename, data, content_type)
        return http(tiny_server, "POST", path, body, {"Content-Type": header})

    status, _, raw = post("/v1/classifications/image", {"model": "vit"}, b"this is not an image", "x.txt")
    _check_error(status, raw, 400, ["not an image"])
    big = io.BytesIO()
    Image.new("L", (5000, 4000), 255).save(big, format="PNG")  # 20 million pixels, a few kB of PNG
    status, _, raw = post("/v1/classifications/image", {"model": "vit"}, big.getvalue())
    _check_error(status, raw, 400, ["5000x4000", "16,000,000"])
    status, _, raw = post("/v1/classifications/image", {}, b"x")
    _check_error(status, raw, 400, ["'model' is required"])
    status, _, raw = http(tiny_server, "POST", "/v1/classifications/image", {"model": "vit"})
    _check_error(status, raw, 415, ["multipart/form-data"])
    status, _, raw = post("/v1/audio/transcriptions", {"model": "chat"}, b"RIFF", "a.wav", "audio/wav")
    _check_error(status, raw, 400, ["does not serve /v1/audio/transcriptions"])


def test_a_body_over_the_limit_is_413(tiny_server):
    body = json.dumps(chat(messages=[{"role": "user", "content": "x" * (3 * 1024 * 1024)}]))
    status, _, raw = http(tiny_server, "POST", "/v1/chat/completions", body, JSON)
    _check_error(status, raw, 413, ["larger than", "2,097,152 bytes"])


def test_the_api_key_is_required_except_for_health(tiny_server):
    for key, code in ((None, "missing_api_key"), ("wrong-key", "invalid_api_key")):
        status, headers, raw = http(tiny_server, "POST", "/v1/chat/completions", chat(), key=key)
        assert _check_error(status, raw, 401, ["API key"])["code"] == code
        assert headers.get("www-authenticate") == "Bearer"
        status, _, raw = http(tiny_server, "GET", "/v1/models", key=key)
        assert status == 401
    status, _, raw = http(tiny_server, "GET", "/health", key=None)
    assert status == 200 and json.loads(raw)["status"] == "ok"
    openai = pytest.importorskip("openai")
    wrong = openai.OpenAI(base_url=f"{tiny_server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="incorrect API key"):
        wrong.models.list()


def test_unknown_routes_and_methods_answer_in_openai_shape(tiny_server):
    status, _, raw = http(tiny_server, "GET", "/v1/nothing")
    _check_error(status, raw, 404, ["no such endpoint", "/v1/nothing"])
    status, _, raw = http(tiny_server, "GET", "/v1/chat/completions")
    _check_error(status, raw, 405, ["GET"])


def test_cors_is_off_unless_asked(tiny_server):
    headers = {"Origin": "http://example.test", "Access-Control-Request-Method": "POST"}
    status, got, _ = http(tiny_server, "OPTIONS", "/v1/chat/completions", headers=headers)
    assert "access-control-allow-origin" not in {k.lower() for k in got}
    _, got, _ = http(tiny_server, "GET", "/v1/models", headers={"Origin": "http://example.test"})
    assert "access-control-allow-origin" not in {k.lower() for k in got}


def test_the_server_is_healthy_after_all_that(tiny_server, client):
    status, _, raw = http(tiny_server, "GET", "/health")
    assert status == 200
    reply = client.chat.completions.create(model="chat", messages=USER, max_tokens=3, temperature=0)
    assert reply.choices[0].finish_reason == "length"

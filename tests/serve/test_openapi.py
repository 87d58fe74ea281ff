"""The OpenAPI schema describes the whole HTTP API: every route the app mounts, each POST's body
(the pydantic models the server validates with), each answer and each error status; real answers
of the tiny server (and of an in-process speech model) validate against the declared models.

No OpenAPI or JSON Schema validator is installed here, so the document's shape is checked by
hand: every ``$ref`` resolves, every component is its pydantic model's own JSON schema, and the
JSON Schema keywords used are well formed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from helpers import tiny_speech

from serve_helpers import _spread, http, multipart

pytest.importorskip("fastapi")

from fastapi.routing import APIRoute  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from pydantic import BaseModel, ValidationError  # noqa: E402

from attentive.serve import ServeSettings, ServedModel, create_app, openapi_schema  # noqa: E402
from attentive.serve import responses, schemas  # noqa: E402
from attentive.serve.endpoints import audio, images  # noqa: E402
from attentive.serve.errors import validation_message  # noqa: E402
from attentive.serve.openapi import REF_PREFIX, SECURITY_SCHEME, refs  # noqa: E402

pytestmark = pytest.mark.timeout(120)

USER = [{"role": "user", "content": "hello"}]
MODELS = {  # component name -> pydantic model, for every model the schema may name
    name: model
    for module in (schemas, responses)
    for name, model in vars(module).items()
    if isinstance(model, type) and issubclass(model, BaseModel) and model.__module__ == module.__name__
}
MODEL_ERRORS = (400, 404, 413, 415)  # every POST: bad body, unknown model, too large, wrong Content-Type
OPERATIONS = {  # (path, method) -> (request body: media type and model, statuses besides 200 without an API key)
    ("/health", "get"): (None, {503}),
    ("/v1/models", "get"): (None, set()),
    ("/v1/models/{name}", "get"): (None, {404}),
    ("/metrics", "get"): (None, set()),
    ("/v1/chat/completions", "post"): (
        ("application/json", schemas.ChatCompletionRequest),
        {*MODEL_ERRORS, 429, 500, 503, 504},
    ),
    ("/v1/completions", "post"): (("application/json", schemas.CompletionRequest), {*MODEL_ERRORS, 429, 500, 503, 504}),
    ("/v1/embeddings", "post"): (("application/json", schemas.EmbeddingRequest), {*MODEL_ERRORS, 429, 500, 504}),
    ("/v1/translations/text", "post"): (
        ("application/json", schemas.TranslationRequest),
        {*MODEL_ERRORS, 429, 500, 503, 504},
    ),
    ("/v1/audio/transcriptions", "post"): (
        ("multipart/form-data", schemas.TranscriptionForm),
        {*MODEL_ERRORS, 429, 500, 503, 504},
    ),
    ("/v1/classifications/image", "post"): (
        ("multipart/form-data", schemas.ImageClassificationForm),
        {*MODEL_ERRORS, 429, 500, 504},
    ),
}


def _model_of(schema: dict) -> type[BaseModel]:
    name = schema["$ref"].removeprefix(REF_PREFIX)
    return MODELS[name]


def _header(headers: dict, name: str) -> str:
    return next(v for k, v in headers.items() if k.lower() == name)


def conforms(document: dict, method: str, path: str, status: int, headers: dict, raw: bytes):
    """``raw`` (an answer of ``method path``) checked against what ``document`` declares for
    ``status``: its media type is one declared, and its body validates (strictly) against the
    declared model. The parsed body (or the stream's chunks, or the text) comes back."""
    declared = document["paths"][path][method]["responses"]
    assert str(status) in declared, (path, status, sorted(declared))
    content = declared[str(status)]["content"]
    media = _header(headers, "content-type").split(";")[0].strip()
    assert media in content, (path, status, media, sorted(content))
    if media == "application/json":
        return _model_of(content[media]["schema"]).model_validate_json(raw, strict=True)
    if media == "text/event-stream":
        data = content[media]["itemSchema"]["properties"]["data"]["anyOf"]
        chunk, error = (_model_of(s) for s in data[0]["contentSchema"]["anyOf"])
        assert error is responses.ErrorResponse and data[1] == {"const": "[DONE]"}
        text = raw.decode()
        assert text.endswith("data: [DONE]\n\n"), text[-80:]
        blocks = text.split("\n\n")[:-2]
        assert all(b.startswith("data: ") for b in blocks), blocks
        return [chunk.model_validate_json(b[len("data: ") :], strict=True) for b in blocks]
    assert content[media]["schema"] == {"type": "string"}
    return raw.decode()


# ----------------------------------------------------------------------------- the document


@pytest.fixture(scope="module")
def document():
    return openapi_schema()  # as a server with an API key


def _mounted(routes, prefix: str = ""):
    """(prefix, route) of every route, included routers opened (newer FastAPI keeps each included
    router as one entry of ``app.routes``; older ones copy its routes there)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _mounted(inner.routes, prefix + getattr(route.include_context, "prefix", ""))
        else:
            yield prefix, route


def _app_operations(app) -> set[tuple[str, str]]:
    found = set()
    for prefix, route in _mounted(app.routes):
        if isinstance(route, APIRoute):
            assert route.include_in_schema, route.path
            found |= {(prefix + route.path_format, method.lower()) for method in route.methods}
        else:
            assert route.path == app.openapi_url, route  # the schema itself is the only other route
    return found


@pytest.mark.parametrize("api_key", [None, "key"])
def test_every_route_is_documented_with_its_body_answer_and_errors(api_key):
    app = create_app([], ServeSettings(api_key=api_key))
    try:
        document = app.openapi()
        mounted = _app_operations(app)
    finally:
        app.state.attentive.close()
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert documented == mounted == set(OPERATIONS)
    for (path, method), (body, statuses) in OPERATIONS.items():
        operation = document["paths"][path][method]
        secured = api_key is not None and path != "/health"
        assert set(operation["responses"]) == {str(s) for s in {200, *statuses, *({401} if secured else ())}}
        assert operation.get("security") == ([{SECURITY_SCHEME: []}] if secured else None)
        ok = operation["responses"]["200"]
        assert ok["description"] and ok["content"]
        for media, declared in ok["content"].items():
            assert declared["schema"], (path, media)
        for status, declared in operation["responses"].items():
            if status != "200":
                want = responses.HealthError if path == "/health" else responses.ErrorResponse
                assert declared["content"]["application/json"]["schema"] == {"$ref": REF_PREFIX + want.__name__}
                assert declared["description"]
        if method == "post":
            media, model = body
            request = operation["requestBody"]
            assert request["required"] is True
            assert request["content"] == {media: request["content"][media]}
            assert request["content"][media]["schema"] == {"$ref": REF_PREFIX + model.__name__}
        else:
            assert "requestBody" not in operation and body is None
    assert document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"].keys() == {
        "application/json",
        "text/event-stream",
    }
    assert document["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}
    if api_key:
        assert set(document["paths"]["/v1/chat/completions"]["post"]["responses"]["429"]["headers"]) == {"Retry-After"}
        assert document["components"]["securitySchemes"][SECURITY_SCHEME] | {"description": ""} == {
            "type": "http",
            "scheme": "bearer",
            "description": "",
        }


JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def _well_formed(node, where: str = "#") -> None:
    """The JSON Schema keywords the models produce, checked by hand (no validator is installed)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _well_formed(item, f"{where}/{i}")
        return
    if not isinstance(node, dict):
        return
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        assert set(types) <= JSON_TYPES, where
    if "properties" in node:
        assert isinstance(node["properties"], dict) and all(isinstance(v, dict) for v in node["properties"].values())
        assert set(node.get("required", ())) <= set(node["properties"]), where
    for keyword in ("anyOf", "oneOf", "allOf", "enum"):
        if keyword in node:
            assert isinstance(node[keyword], list) and node[keyword], where
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if keyword in node:
            assert isinstance(node[keyword], (int, float)), where
    for keyword in ("minLength", "maxLength", "minItems", "maxItems"):
        if keyword in node:
            assert isinstance(node[keyword], int) and node[keyword] >= 0, where
    for key, value in node.items():
        if key not in ("properties", "enum", "const", "default", "examples"):
            _well_formed(value, f"{where}/{key}")
        elif key == "properties":
            for name, sub in value.items():
                _well_formed(sub, f"{where}/properties/{name}")


def test_the_document_is_whole_and_its_components_are_the_models(document):
    assert document["openapi"].startswith("3.1") and document["info"]["title"] == "attentive"
    json.dumps(document)  # plain JSON
    components = document["components"]["schemas"]
    targets = refs(document)
    assert targets and all(t.startswith(REF_PREFIX) and t.removeprefix(REF_PREFIX) in components for t in targets)
    assert {REF_PREFIX + name for name in components} == targets  # nothing unused, nothing missing
    assert "HTTPValidationError" not in components and "422" not in json.dumps(document["paths"])
    for name, component in components.items():
        model = MODELS[name]
        mode = "validation" if model.__module__ == schemas.__name__ else "serialization"
        own = model.model_json_schema(ref_template=REF_PREFIX + "{model}", mode=mode)
        nested = own.pop("$defs", {})
        assert component == own, name
        for inner, definition in nested.items():
            assert components[inner] == definition, (name, inner)
        _well_formed(component, f"#/components/schemas/{name}")
    ids = [op["operationId"] for operations in document["paths"].values() for op in operations.values()]
    assert len(ids) == len(set(ids))


def test_a_router_mounted_later_joins_the_completed_document():
    """What ``attentive serve --explore`` does: a router added after the first ``openapi()``."""
    import fastapi

    app = create_app([], ServeSettings())
    try:
        assert "/extra/{item}" not in app.openapi()["paths"]
        router = fastapi.APIRouter()

        @router.get("/extra/{item}")
        async def extra(item: int):
            return {"item": item}

        app.include_router(router)
        document = app.openapi()
        assert "/extra/{item}" in document["paths"] and "422" not in json.dumps(document["paths"])
        assert "ChatCompletion" in document["components"]["schemas"]
        assert "HTTPValidationError" not in document["components"]["schemas"]
        reply = TestClient(app).get("/extra/nine")  # FastAPI's own validation: a 400 in OpenAI's shape
        assert reply.status_code == 400 and responses.ErrorResponse.model_validate_json(reply.content).error.param
    finally:
        app.state.attentive.close()


def test_the_upload_forms_are_the_fields_the_endpoints_read(document):
    assert audio.FIELDS == tuple(schemas.TranscriptionForm.model_fields)
    assert images.FIELDS == tuple(schemas.ImageClassificationForm.model_fields) == ("file", "model")
    assert audio.FORMATS == ("json", "text")
    form = document["components"]["schemas"]["TranscriptionForm"]
    assert form["required"] == ["file", "model"] and form["properties"]["file"]["format"] == "binary"
    assert form["properties"]["response_format"]["enum"] == list(audio.FORMATS)


def test_openapi_schema_is_what_the_server_serves(tiny_server, document):
    status, _, raw = http(tiny_server, "GET", "/openapi.json", key=None)  # open, like /health
    assert status == 200 and json.loads(raw) == document
    bare = openapi_schema(api_key=False)
    assert "401" not in json.dumps(bare["paths"]) and "security" not in json.dumps(bare["paths"])


# ----------------------------------------------------------------------------- requests: the server validates by the models

BAD_BODIES = [  # (path, body): refused by the model, so by the server, with the model's own message
    ("/v1/chat/completions", {}),
    ("/v1/chat/completions", {"model": "chat", "messages": [{"role": "wizard", "content": "x"}]}),
    ("/v1/chat/completions", {"model": "chat", "messages": USER, "max_tokens": 0}),
    ("/v1/chat/completions", {"model": "chat", "messages": USER, "presence_penalty": 1}),
    ("/v1/completions", {"model": "chat", "prompt": "x", "top_p": 1.5}),
    ("/v1/completions", {"model": "chat", "prompt": {"a": 1}}),
    ("/v1/embeddings", {"model": "embed", "input": "a", "encoding_format": "hex"}),
    ("/v1/translations/text", {"model": "translate", "input": "a", "beam": 99}),
]


@pytest.mark.parametrize("path, body", BAD_BODIES)
def test_a_body_the_model_refuses_is_a_400_with_the_models_message(tiny_server, document, path, body):
    media, model = OPERATIONS[(path, "post")][0]
    assert media == "application/json"
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    message, param = validation_message(refused.value)
    status, headers, raw = http(tiny_server, "POST", path, body)
    error = conforms(document, "post", path, status, headers, raw).error
    assert status == 400 and (error.message, error.param, error.type) == (message, param, "invalid_request_error")


def test_the_bodies_errors_and_checks_of_today_still_hold(tiny_server, document):
    cases = [  # (path, raw body, headers, status, message start)
        ("/v1/chat/completions", "[1, 2]", None, 400, "the request body must be a JSON object, got list"),
        ("/v1/chat/completions", '{"model": ', None, 400, "the request body is not valid JSON"),
        ("/v1/embeddings", "", None, 400, "the request body is empty"),
        ("/v1/embeddings", "{}", {"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"),
        ("/v1/translations/text", '{"model": "nope", "input": "a"}', None, 404, "model 'nope' does not exist"),
    ]
    for path, raw_body, headers, want, start in cases:
        status, got, raw = http(tiny_server, "POST", path, raw_body, headers or {"Content-Type": "application/json"})
        error = conforms(document, "post", path, status, got, raw).error
        assert status == want and error.message.startswith(start), (path, raw)
    status, got, raw = http(tiny_server, "POST", "/v1/chat/completions", '{"model": "chat"', key=None)
    assert status == 401 and conforms(document, "post", "/v1/chat/completions", status, got, raw)  # key first
    # unknown fields are ignored, as OpenAI's server does
    body = {"model": "embed", "input": "hello", "user_tag": 5, "extra": {"a": 1}}
    status, got, raw = http(tiny_server, "POST", "/v1/embeddings", body)
    assert status == 200 and conforms(document, "post", "/v1/embeddings", status, got, raw).data


# ----------------------------------------------------------------------------- answers: real ones validate


def test_real_answers_validate_against_the_declared_models(tiny_server, document):
    def call(method, path, body=None, headers=None, key="default", doc_path=None):
        status, got, raw = http(tiny_server, method.upper(), path, body, headers, key=key)
        return status, conforms(document, method, doc_path or path, status, got, raw)

    status, health = call("get", "/health", key=None)
    assert status == 200 and set(health.models) == {"chat", "char", "translate", "vit", "embed"}
    assert set(health.decoding) == {"chat", "char", "translate"}
    status, listed = call("get", "/v1/models")
    assert status == 200 and [m.id for m in listed.data] == health.models
    for name in health.models:
        status, card = call("get", f"/v1/models/{name}", doc_path="/v1/models/{name}")
        assert status == 200 and card.id == name
        assert (card.context_length is not None) == (card.kind in ("lm", "translation"))
    status, text = call("get", "/metrics")
    assert status == 200 and "attentive_requests_total" in text

    chat = {"model": "chat", "messages": USER, "max_tokens": 4, "temperature": 0}
    status, reply = call("post", "/v1/chat/completions", {**chat, "n": 2, "logprobs": True, "top_logprobs": 2})
    assert status == 200 and len(reply.choices) == 2 and reply.choices[0].logprobs.content
    status, plain = call("post", "/v1/chat/completions", chat)
    assert status == 200 and plain.choices[0].logprobs is None
    stream = {**chat, "stream": True, "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 1}
    status, chunks = call("post", "/v1/chat/completions", stream)
    assert status == 200 and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert len({c.id for c in chunks}) == 1
    status, chunks = call("post", "/v1/chat/completions", {**chat, "stream": True})
    assert status == 200 and chunks[-1].choices[0].finish_reason in ("stop", "length")

    text = {"model": "char", "prompt": ["It was", "the age"], "max_tokens": 4, "temperature": 0}
    status, completion = call("post", "/v1/completions", {**text, "logprobs": 2})
    assert status == 200 and len(completion.choices) == 2 and completion.choices[0].logprobs.tokens
    status, completion = call("post", "/v1/completions", {"model": "chat", "prompt": [5, 6, 7], "echo": True})
    assert status == 200 and completion.usage.prompt_tokens == 3
    stream = {**text, "echo": True, "stream": True, "stream_options": {"include_usage": True}}
    status, chunks = call("post", "/v1/completions", stream)
    assert status == 200 and chunks[0].choices[0].text == "It was" and chunks[-1].usage is not None
    status, chunks = call("post", "/v1/completions", {**text, "stream": True, "logprobs": 1})
    assert status == 200 and chunks[-1].usage is None

    for encoding in ("float", "base64"):
        body = {"model": "embed", "input": ["a dog", "a cat"], "encoding_format": encoding}
        status, vectors = call("post", "/v1/embeddings", body)
        assert status == 200 and len(vectors.data) == 2
    body = {"model": "translate", "input": ["Ein Hund rennt durch den Park.", ""], "beam": 2}
    status, translations = call("post", "/v1/translations/text", body)
    assert status == 200 and [t.index for t in translations.data] == [0, 1]

    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (28, 28), 0).save(png, format="PNG")
    upload, content_type = multipart({"model": "vit"}, "file", "digit.png", png.getvalue(), "image/png")
    status, label = call("post", "/v1/classifications/image", upload, {"Content-Type": content_type})
    assert status == 200 and label.label == str(label.index) and len(label.probabilities) == 10


def test_error_answers_validate_against_the_declared_errors(tiny_server, document):
    chat = {"model": "chat", "messages": USER, "max_tokens": 4}
    cases = [  # (path, body, headers, key, status, code)
        ("/v1/chat/completions", chat, None, None, 401, "missing_api_key"),
        ("/v1/chat/completions", {**chat, "model": "gpt-9"}, None, "default", 404, "model_not_found"),
        ("/v1/chat/completions", {**chat, "model": "embed"}, None, "default", 400, "wrong_model_kind"),
        ("/v1/chat/completions", "x" * (3 * 1024 * 1024), {"Content-Type": "application/json"}, "default", 413, None),
        ("/v1/classifications/image", {"model": "vit"}, None, "default", 415, "unsupported_media_type"),
    ]
    for path, body, headers, key, want, code in cases:
        status, got, raw = http(tiny_server, "POST", path, body, headers, key=key)
        error = conforms(document, "post", path, status, got, raw).error
        assert status == want and (code is None or error.code == code), (path, raw[:200])
    status, got, raw = http(tiny_server, "GET", "/v1/models/nothing-here")
    assert status == 404 and conforms(document, "get", "/v1/models/{name}", status, got, raw)
    for method, path in (("GET", "/v1/nothing"), ("GET", "/v1/chat/completions")):  # no operation, same shape
        status, _, raw = http(tiny_server, method, path)
        assert status in (404, 405) and responses.ErrorResponse.model_validate_json(raw, strict=True)


# ----------------------------------------------------------------------------- transcription and a stopped engine, in process


class WordTokenizer:
    """What the server reads of a Whisper tokenizer: ``decode`` (every id is a word here)."""

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)


def _wav(seconds: float = 2.0, rate: int = 16000) -> bytes:
    import wave

    samples = np.random.default_rng(0).standard_normal(int(rate * seconds)) * 0.2
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def test_transcriptions_and_a_stopped_engine_validate_in_process():
    from attentive.models.speech import SpeechModel

    torch.manual_seed(7)
    model = _spread(SpeechModel(tiny_speech(max_len=16, max_source_positions=1500).config), 7)
    app = create_app([ServedModel("speech", "speech", model, WordTokenizer())], ServeSettings())
    document = app.openapi()
    path = "/v1/audio/transcriptions"
    try:
        client = TestClient(app)
        files = {"file": ("clip.wav", _wav(), "audio/wav")}
        reply = client.post(path, data={"model": "speech"}, files=files)
        answer = conforms(document, "post", path, reply.status_code, dict(reply.headers), reply.content)
        assert reply.status_code == 200 and answer.text and answer.usage.seconds == 2
        reply = client.post(path, data={"model": "speech", "response_format": "text"}, files=files)
        assert reply.status_code == 200
        assert conforms(document, "post", path, 200, dict(reply.headers), reply.content) == answer.text
        reply = client.post(path, data={"model": "speech", "response_format": "srt"}, files=files)
        error = conforms(document, "post", path, reply.status_code, dict(reply.headers), reply.content).error
        assert reply.status_code == 400 and error.param == "response_format"
        app.state.attentive.schedulers["speech"].close()  # the engine thread stops
        reply = client.get("/health")
        stopped = conforms(document, "get", "/health", reply.status_code, dict(reply.headers), reply.content)
        assert reply.status_code == 503 and set(stopped.stopped) == {"speech"}
        reply = client.post(path, data={"model": "speech"}, files=files)
        error = conforms(document, "post", path, reply.status_code, dict(reply.headers), reply.content).error
        assert reply.status_code == 503 and error.code == "engine_stopped"
    finally:
        app.state.attentive.close()

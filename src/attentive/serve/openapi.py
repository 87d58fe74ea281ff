"""The OpenAPI schema of ``attentive serve`` (``GET /openapi.json``; ``app.openapi_schema()`` builds it
without a model, for documentation).

The endpoints read their bodies themselves (``endpoints/common.py``: the Content-Type, then the
JSON's syntax, each with attentive's own message, and only after the API key has been checked)
and validate them with the pydantic models of ``schemas.py`` (``parse``). FastAPI therefore sees
no body parameter, so each operation declares its body here, by reference to those same models
(``json_body``, ``form_body``, given to the route as ``openapi_extra``); its answers come from
the models of ``responses.py`` (``answer``), its errors from ``ErrorResponse`` (``errors``), both
given to the route as ``responses``.

``install(app, settings)`` completes what FastAPI generates: every model named here becomes one
``components.schemas`` entry (nested models too, each under its class name), the API key is
described as an HTTP Bearer scheme on the operations that need it, and FastAPI's 422 is dropped
(a request FastAPI itself refuses is answered 400, in OpenAI's shape, by ``errors.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .responses import ErrorResponse
from .settings import ServeSettings

REF_PREFIX = "#/components/schemas/"
SECURITY_SCHEME = "bearerAuth"
Mode = Literal["validation", "serialization"]

# component name -> (model, mode): every model an operation names (filled as the endpoints import)
_MODELS: dict[str, tuple[type[BaseModel], Mode]] = {}

ERRORS = {  # status -> when attentive answers it
    400: "Bad request: a field missing or out of its limits (the message names it), a body that is not "
    "JSON or not an object, a prompt too long for the model's context, a model that does not serve "
    "this endpoint, more inputs than the server allows",
    401: "Missing or wrong API key (`Authorization: Bearer <key>`); only on a server started with one "
    "(--api-key or ATTENTIVE_API_KEY)",
    404: "No loaded model has this name (code model_not_found)",
    413: "The body is larger than the server's limit (--max-body-mb; uploads --max-upload-mb), code body_too_large",
    415: "The Content-Type is not the one this endpoint reads (code unsupported_media_type)",
    429: "The model's queue is full (--max-queue, code queue_full); retry after `Retry-After` seconds",
    500: "Decoding failed (code engine_error) or an unexpected error",
    503: "The model's engine thread has stopped (code engine_stopped)",
    504: "The request took longer than the server's limit (--timeout, code timeout)",
}
HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}},
}
# the statuses an operation can answer besides 200, by what it does
POST_JSON = (400, 404, 413, 415)
POST_FORM = (400, 404, 413, 415)
DECODES = (429, 500, 503, 504)  # through a GenerationScheduler (language, translation, speech models)
RUNS_ONCE = (429, 500, 504)  # through a Worker (embeddings, images)


def ref(model: type[BaseModel], mode: Mode = "serialization") -> dict[str, str]:
    """``{"$ref": ...}`` to ``model``'s component (``mode``: validation for a request body)."""
    name = model.__name__
    if _MODELS.setdefault(name, (model, mode)) != (model, mode):
        raise ValueError(f"two models (or modes) named {name!r} in the OpenAPI schema")
    return {"$ref": REF_PREFIX + name}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of an operation whose JSON body ``parse(model, ...)`` checks."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref(model, "validation")}}}}


def form_body(model: type[BaseModel], file_types: str) -> dict[str, Any]:
    """``openapi_extra`` of an upload: a multipart form with ``model``'s fields, ``file`` of ``file_types``."""
    media = {"schema": ref(model, "validation"), "encoding": {"file": {"contentType": file_types}}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": media}}}


def answer(model: type[BaseModel], description: str, **others: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The 200 response: ``model`` as JSON, and ``others`` (media type -> media type object) beside it."""
    content = {"application/json": {"schema": ref(model)}, **others}
    return {200: {"description": description, "content": content}}


def event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    """The ``text/event-stream`` media type of a streamed answer: ``data: {chunk}`` events (an error
    after the stream has started is ``data: {ErrorResponse}``), then ``data: [DONE]``. ``itemSchema``
    describes one event as FastAPI's own streaming routes do (OpenAPI 3.2's field)."""
    data = {
        "anyOf": [
            {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": [ref(chunk), ref(ErrorResponse)]},
            },
            {"const": "[DONE]"},
        ]
    }
    return {  # OpenAPI 3.2: with itemSchema, schema is the whole stream, read as an array of events
        "schema": {
            "type": "array",
            "description": f"Server-Sent Events: `data: <{chunk.__name__} JSON>` per chunk (every chunk with the "
            "response's one id), `data: <ErrorResponse JSON>` for an error after the stream has started, "
            "then `data: [DONE]`",
        },
        "itemSchema": {"type": "object", "properties": {"data": data}, "required": ["data"]},
    }


def errors(*statuses: int) -> dict[int, dict[str, Any]]:
    """The error responses of an operation, each an ``ErrorResponse``."""
    found = {}
    for status in statuses:
        found[status] = {"description": ERRORS[status], "content": {"application/json": {"schema": ref(ErrorResponse)}}}
        if status in HEADERS:
            found[status]["headers"] = HEADERS[status]
    return found


# ----------------------------------------------------------------------------- the document


def install(app: FastAPI, settings: ServeSettings) -> None:
    """``app.openapi()`` (and ``/openapi.json``) completed as the module docstring says."""
    generate, completed = app.openapi, [None]

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached until a route is added
        if schema is not completed[0]:
            _complete(schema, settings)
            completed[0] = schema
        return schema

    app.openapi = openapi


def _complete(schema: dict[str, Any], settings: ServeSettings) -> None:
    components = schema.setdefault("components", {})
    found = components.setdefault("schemas", {})
    for name, definition in _components().items():
        if found.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are named {name!r} in the OpenAPI schema")
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "the server's API key (--api-key or ATTENTIVE_API_KEY), needed by every route but /health",
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)  # never sent: errors.py answers a RequestValidationError with 400
            operation["responses"] = dict(sorted(responses.items()))
            if settings.api_key is not None and "401" in responses:
                operation["security"] = [{SECURITY_SCHEME: []}]
    if REF_PREFIX + "HTTPValidationError" not in refs(schema.get("paths", {})):
        found.pop("HTTPValidationError", None)
        found.pop("ValidationError", None)
    if not found:
        del components["schemas"]


def refs(node: Any) -> set[str]:
    """Every ``$ref`` in ``node`` (a piece of the document), nested ones included."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(value) for value in node))
    return set()


def _components() -> dict[str, Any]:
    """Every registered model's JSON schema and its nested models', each under its class name."""
    items = sorted(_MODELS.items())
    refs, top = models_json_schema([(model, mode) for _, (model, mode) in items], ref_template=REF_PREFIX + "{model}")
    for name, (model, mode) in items:
        if refs[(model, mode)] != {"$ref": REF_PREFIX + name}:
            raise ValueError(f"the model {name!r} got the component {refs[(model, mode)]}")
    return top.get("$defs", {})

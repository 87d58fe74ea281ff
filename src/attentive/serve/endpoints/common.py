"""What the endpoints share: the server's state, and reading a body (JSON or an upload) safely."""

from __future__ import annotations

import email.message
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from ..errors import APIError, bad_request
from ..metrics import Metrics
from ..registry import ModelRegistry
from ..scheduler import GenerationScheduler
from ..settings import ServeSettings
from ..workers import Worker


@dataclass
class ServerState:
    """Everything the routers read, on ``app.state.attentive``: a mounted router (the attention
    explorer) finds the loaded models in ``models``."""

    models: ModelRegistry
    settings: ServeSettings
    metrics: Metrics
    schedulers: dict[str, GenerationScheduler] = field(default_factory=dict)  # language models
    workers: dict[str, Worker] = field(default_factory=dict)  # every other model

    def close(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.close()
        for worker in self.workers.values():
            worker.close()


def state_of(request: Request) -> ServerState:
    return request.app.state.attentive


def _media_type(request: Request) -> tuple[str | None, str | None]:
    value = request.headers.get("content-type")
    if not value:
        return None, None
    message = email.message.Message()
    message["content-type"] = value
    return message.get_content_maintype(), message.get_content_subtype()


async def read_json(request: Request) -> Any:
    """The body as JSON: 415 for another content type, 400 for text that is not JSON."""
    main, sub = _media_type(request)
    if main is not None and not (main == "application" and (sub == "json" or sub.endswith("+json"))):
        raise APIError(
            415,
            f"Content-Type must be application/json, got {request.headers['content-type']!r}",
            code="unsupported_media_type",
        )
    raw = await request.body()
    if not raw.strip():
        raise bad_request("the request body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise bad_request("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise bad_request(
            f"the request body is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})",
            code="invalid_json",
        ) from None
    except RecursionError:  # [[[[...: Python's parser recurses once per level
        raise bad_request("the request body's JSON is nested too deeply", code="invalid_json") from None
    where = _lone_surrogate(data)
    if where is not None:  # "\ud800" escaped in JSON: no tokenizer (nor UTF-8 answer) can take it
        raise bad_request(
            f"{where or 'the body'} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape); "
            "text must be valid Unicode",
            param=where or None,
        )
    return data


def _lone_surrogate(value: Any, where: str = "") -> str | None:
    """The path (``messages.0.content``) of the first string in ``value`` (keys too) that is not
    valid Unicode, or None."""
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(item, dict):
            for key, inner in item.items():
                name = key.encode("utf-8", "backslashreplace").decode()  # a bad key is named, escaped
                inner_path = f"{path}.{name}" if path else name
                stack.append((key, inner_path))
                stack.append((inner, inner_path))
        elif isinstance(item, list):
            stack.extend((inner, f"{path}.{i}" if path else str(i)) for i, inner in enumerate(item))
    return None


async def read_form(request: Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """A multipart upload's fields (one file at most); 415 for another content type."""
    main, sub = _media_type(request)
    if (main, sub) != ("multipart", "form-data"):
        got = request.headers.get("content-type") or "none"
        raise APIError(
            415, f"Content-Type must be multipart/form-data (a file upload), got {got!r}", code="unsupported_media_type"
        )
    try:
        form = await request.form(max_files=1, max_fields=len(fields) + 8)
    except Exception as err:  # starlette's MultiPartException / python-multipart's parse errors
        raise bad_request(f"the multipart body could not be read ({err})") from None
    return {name: form.get(name) for name in fields}


async def upload(form: dict[str, Any], name: str = "file") -> bytes:
    """The uploaded file's bytes (held in memory; the body limit has already capped them)."""
    item = form.get(name)
    if not isinstance(item, UploadFile):
        raise bad_request(f"'{name}' must be an uploaded file (multipart field with a filename)", param=name)
    data = await item.read()
    await item.close()
    if not data:
        raise bad_request(f"the uploaded '{name}' is empty", param=name)
    return data


def form_text(form: dict[str, Any], name: str, default: str | None = None, required: bool = False) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise bad_request(f"the field '{name}' is required", param=name)
        return default
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a text field, not a file", param=name)
    return value

"""``POST /v1/chat/completions`` and ``POST /v1/completions``: text generation over the scheduler."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from ..generation import Run, prepare
from ..openapi import DECODES, POST_JSON, answer, errors, event_stream, json_body
from ..responses import ChatCompletion, ChatCompletionChunk, Completion, CompletionChunk
from ..schemas import ChatCompletionRequest, CompletionRequest, parse
from .common import read_json, state_of

router = APIRouter(tags=["text generation"])


@router.post(
    "/v1/chat/completions",
    openapi_extra=json_body(ChatCompletionRequest),
    responses={
        **answer(
            ChatCompletion,
            "The reply (JSON), or with stream: true its chunks as Server-Sent Events",
            **{"text/event-stream": event_stream(ChatCompletionChunk)},
        ),
        **errors(*POST_JSON, *DECODES),
    },
)
async def chat_completions(request: Request):
    """The assistant's reply to ``messages``, through the model's chat template."""
    return await _generate(request, ChatCompletionRequest, "/v1/chat/completions")


@router.post(
    "/v1/completions",
    openapi_extra=json_body(CompletionRequest),
    responses={
        **answer(
            Completion,
            "The continuations (JSON), or with stream: true their chunks as Server-Sent Events",
            **{"text/event-stream": event_stream(CompletionChunk)},
        ),
        **errors(*POST_JSON, *DECODES),
    },
)
async def completions(request: Request):
    """The continuation of ``prompt`` (text, token ids, or a list of either)."""
    return await _generate(request, CompletionRequest, "/v1/completions")


async def _generate(request: Request, schema, endpoint: str):
    started = time.perf_counter()
    state = state_of(request)
    body = parse(schema, await read_json(request))
    served = state.models.get(body.model, endpoint)
    prepared = prepare(body, served, state.settings)
    run = Run(request, served, state.schedulers[served.name], prepared, state.settings, state.metrics, started)
    run.start()
    if body.stream:
        return run.stream(body.include_usage)
    return await run.respond()

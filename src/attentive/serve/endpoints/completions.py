"""``POST /v1/chat/completions`` and ``POST /v1/completions``: text generation over the scheduler."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from ..generation import Run, prepare
from ..schemas import ChatCompletionRequest, CompletionRequest, parse
from .common import read_json, state_of

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    """The assistant's reply to ``messages``, through the model's chat template."""
    return await _generate(request, ChatCompletionRequest, "/v1/chat/completions")


@router.post("/v1/completions")
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

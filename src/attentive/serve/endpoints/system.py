"""``GET /health``, ``GET /v1/models`` (and ``/v1/models/{id}``), ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..openapi import answer, errors, ref
from ..responses import Health, HealthError, ModelCard, ModelList
from .common import state_of

health_router = APIRouter(tags=["system"])  # open even when an API key is set
router = APIRouter()


@health_router.get(
    "/health",
    responses={
        **answer(Health, "Ready: the loaded models and how each decodes"),
        503: {
            "description": "An engine thread has stopped",
            "content": {"application/json": {"schema": ref(HealthError)}},
        },
    },
)
async def health(request: Request):
    """200 once the models are loaded and every engine thread runs; 503 naming the one that stopped."""
    state = state_of(request)
    dead = {name: s.error or "stopped" for name, s in state.schedulers.items() if not s.alive}
    if dead:
        return JSONResponse({"status": "error", "stopped": dead}, status_code=503)
    decoding = {name: s.path for name, s in state.schedulers.items() if hasattr(s, "path")}
    return {"status": "ok", "models": state.models.names, "decoding": decoding}


@router.get("/v1/models", tags=["models"], responses=answer(ModelList, "Every loaded model"))
async def list_models(request: Request):
    """The loaded models, with what each serves."""
    return {"object": "list", "data": [m.card() for m in state_of(request).models]}


@router.get("/v1/models/{name:path}", tags=["models"], responses={**answer(ModelCard, "The model"), **errors(404)})
async def get_model(name: str, request: Request):
    """One loaded model, by its name or another name it answers to."""
    return state_of(request).models.get(name).card()


@router.get(
    "/metrics",
    tags=["system"],
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus metrics, in its text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request):
    """The server's Prometheus metrics (requests, latency, tokens, queues, batch rows)."""
    state = state_of(request)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)

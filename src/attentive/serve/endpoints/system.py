"""``GET /health``, ``GET /v1/models`` (and ``/v1/models/{id}``), ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .common import state_of

health_router = APIRouter()  # open even when an API key is set
router = APIRouter()


@health_router.get("/health")
async def health(request: Request):
    """200 once the models are loaded and every engine thread runs; 503 naming the one that stopped."""
    state = state_of(request)
    dead = {name: s.error or "stopped" for name, s in state.schedulers.items() if not s.alive}
    if dead:
        return JSONResponse({"status": "error", "stopped": dead}, status_code=503)
    decoding = {name: s.path for name, s in state.schedulers.items() if hasattr(s, "path")}
    return {"status": "ok", "models": state.models.names, "decoding": decoding}


@router.get("/v1/models")
async def list_models(request: Request):
    return {"object": "list", "data": [m.card() for m in state_of(request).models]}


@router.get("/v1/models/{name:path}")
async def get_model(name: str, request: Request):
    return state_of(request).models.get(name).card()


@router.get("/metrics")
async def metrics(request: Request):
    state = state_of(request)
    return Response(state.metrics.render(), media_type=state.metrics.content_type)

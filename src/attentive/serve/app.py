"""``create_app(models, settings)``: the FastAPI application of ``attentive serve``; ``openapi_schema()``:
its OpenAPI document, built without a model (for documentation).

The app holds one ``ServerState`` on ``app.state.attentive`` (the ``ModelRegistry``, the
settings, the metrics, one ``GenerationScheduler`` per language model and one ``Worker`` per
other model), so another router mounted on the same app (the attention explorer) reads the
same loaded models: ``app.include_router(router)`` and ``request.app.state.attentive.models``.

Around the routes, from the outside in: CORS (only with ``cors_origins``), request metrics,
the body-size limit; the API key is a dependency of every router but ``/health``. The OpenAPI
schema (``/openapi.json``) declares every body, answer and error: ``openapi.py``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .. import __version__
from ..decode.config import EngineConfig
from .endpoints import audio, completions, embeddings, images, system, translations
from .endpoints.common import ServerState
from .encoder_decoder import KINDS as ENCODER_DECODER_KINDS, encoder_decoder_scheduler
from .errors import install_handlers
from .limits import BodyLimit, api_key_dependency
from .metrics import Metrics, RequestMetrics
from .openapi import errors as error_responses, install as install_openapi
from .registry import ModelRegistry, ServedModel
from .scheduler import GenerationScheduler
from .settings import ServeSettings
from .workers import Worker

UPLOAD_PATHS = (audio.ENDPOINT, images.ENDPOINT)


def create_app(models: ModelRegistry | list[ServedModel], settings: ServeSettings | None = None) -> FastAPI:
    """The server for ``models`` (already loaded); engine threads start here and stop at shutdown."""
    models = models if isinstance(models, ModelRegistry) else ModelRegistry(models)
    settings = settings or ServeSettings()
    state = ServerState(models, settings, Metrics())
    for served in models:
        state.metrics.add_model(served.name)
        if served.kind == "lm":
            if getattr(served.model, "inference", None):  # prepared for CPU decoding: slots of fixed length
                served.served_context = settings.context  # a request's prompt + max_tokens are checked against it
            state.schedulers[served.name] = GenerationScheduler(
                served.name,
                served.model,
                served.tokenizer,
                max_batch=settings.max_batch,
                max_queue=settings.max_queue,
                retry_after=settings.retry_after,
                metrics=state.metrics,
                engine=EngineConfig(
                    cache=settings.cache,
                    compile="auto" if settings.compile else False,
                    context=served.context,
                ),
                prefill_chunk=settings.prefill_chunk,
            )
        elif served.kind in ENCODER_DECODER_KINDS:  # translation, Whisper: their own engine thread
            state.schedulers[served.name] = encoder_decoder_scheduler(served, settings, state.metrics)
        else:
            state.workers[served.name] = Worker(
                served.name,
                max_queue=settings.max_queue,
                retry_after=settings.retry_after,
                timeout=settings.timeout,
                metrics=state.metrics,
            )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.close()

    app = FastAPI(
        title="attentive",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="OpenAI-compatible endpoints over attentive's models",
    )  # /openapi.json stays; the
    # docs pages would load their scripts from a CDN
    app.state.attentive = state
    install_handlers(app)
    install_openapi(app, settings)
    app.include_router(system.health_router)
    secured = [Depends(api_key_dependency(settings.api_key))]
    unauthorized = error_responses(401) if settings.api_key is not None else None
    routers = [module.router for module in (system, completions, embeddings, audio, translations, images)]
    for router in routers:
        app.include_router(router, dependencies=secured, responses=unauthorized)
    paths = {getattr(route, "path", None) for router in (system.health_router, *routers) for route in router.routes}
    app.add_middleware(
        BodyLimit, limit_for=lambda path: settings.max_upload_bytes if path in UPLOAD_PATHS else settings.max_body_bytes
    )
    app.add_middleware(RequestMetrics, metrics=state.metrics, routes=lambda: paths)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def openapi_schema(api_key: bool = True) -> dict[str, Any]:
    """The OpenAPI document of ``attentive serve``'s HTTP API, without loading any model.

    Every route ``create_app`` mounts, with its request body (the pydantic models of
    ``attentive.serve.schemas``), its answers (``attentive.serve.responses``) and the errors it can
    give, in OpenAI's shape; the same document a running server serves at ``/openapi.json``
    (which also lists a mounted explorer's routes). ``api_key``: describe a server started with an
    API key (the Bearer scheme and a 401 on every route but ``/health``), as documentation should;
    False gives the document of a server without one. A documentation generator renders the HTTP
    reference from it, e.g. ``json.dumps(openapi_schema(), indent=2)``.
    """
    app = create_app([], ServeSettings(api_key="documentation" if api_key else None))
    try:
        return app.openapi()
    finally:
        app.state.attentive.close()

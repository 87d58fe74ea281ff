"""``attentive serve``: an OpenAI-compatible HTTP server over attentive's models.

``create_app(models, settings)`` builds the FastAPI application (``app.py``); ``ModelRegistry``
holds the loaded models (``registry.py``); ``GenerationScheduler`` owns a language model's
decoding engine and batches concurrent requests between its steps (``scheduler.py``); the
endpoints live one family per module in ``endpoints/``; ``schemas.py`` checks request bodies,
``responses.py`` models the answers, ``errors.py`` shapes errors as OpenAI does, ``limits.py``
holds the body cap and the API key, ``metrics.py`` the Prometheus metrics; ``openapi.py``
describes all of it in the OpenAPI schema (``openapi_schema()`` builds it without a model, for
documentation).

The names below are imported on first use, so ``attentive.serve.settings`` (which the command
line reads for its defaults) needs none of the server's optional dependencies.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "create_app": "app",
    "ModelRegistry": "registry",
    "ServedModel": "registry",
    "load_served_model": "registry",
    "openapi_schema": "app",
    "ServeSettings": "settings",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

"""The explorer's JSON endpoints: a FastAPI ``APIRouter`` over a ``Registry`` of loaded models.

``make_router(registry)`` is what any app mounts (the standalone ``create_app`` here, and the
``attentive serve`` application: one app, two faces); ``mount(app, registry, prefix)`` adds the
router under ``prefix/api`` and the page under ``prefix/``. Every endpoint takes a JSON object
(files: the raw bytes as the body) and answers JSON; bad input is a 400 with
``{"error": "one line"}``, which the page shows as it is. The model runs in a worker thread, so
the event loop stays free, one run per model at a time (each ``Subject`` holds a lock).

Endpoints (``model`` is optional while one model is loaded):

    GET  /api/models                     the loaded models and what each can show
    POST /api/analyze        {text}      run a text; its tokens, stacks and thumbnails
    POST /api/analyze/file?model=        run an image or audio file (the bytes are the body)
    POST /api/attention      {id, stack, layer, q0, q1, k0, k1}   one layer's weights, every head
    POST /api/lens           {id, position}                       the logit lens (language models)
    POST /api/ideas/{name}   {id, ...}                            an idea panel (see ideas.py)
    POST /api/generate/start {text, temperature, top_k, top_p, seed}
    POST /api/generate/step  {session, temperature, top_k, top_p, seed}
    POST /api/generate/attention {session, layer}
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .ideas import IDEAS, run_idea
from .lm import LanguageModel
from .stepper import Settings, Steppers
from .subject import Analysis, Subject

STATIC = Path(__file__).parent / "static"
MAX_BODY = 17 * 1024 * 1024  # bytes of one request (the largest upload, plus room)


class Registry:
    """The models the explorer shows, by name."""

    def __init__(self, subjects: Iterable[Subject] = ()):
        self.subjects: dict[str, Subject] = {}
        self.steppers: dict[str, Steppers] = {}
        for subject in subjects:
            self.add(subject)

    def add(self, subject: Subject) -> Subject:
        self.subjects[subject.name] = subject
        self.steppers[subject.name] = Steppers()
        return subject

    def get(self, name: str | None = None) -> Subject:
        if not self.subjects:
            raise ValueError("no model is loaded")
        if name is None:
            return next(iter(self.subjects.values()))
        if name not in self.subjects:
            raise ValueError(f"no model {name!r} is loaded; loaded: {', '.join(self.subjects)}")
        return self.subjects[name]

    def info(self, subject: Subject) -> dict:
        return {**subject.info(), "defaults": defaults(subject)}


def defaults(subject: Subject) -> dict:
    """The requests the page makes first (the static export answers exactly these)."""
    return {"window": 64, "layer": 0, "head": 0, "query": -1, "position": 0, "seed": 0, "ideas": list(IDEAS)}


# ----------------------------------------------------------------------------- the work of each endpoint


def _int(payload: dict, name: str, default: int | None = None, *, optional: bool = False) -> int | None:
    value = payload.get(name, default)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _float(payload: dict, name: str, default: float) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _str(payload: dict, name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string" + (", and is missing" if value is None else f", got {value!r}"))
    return value


def _analysis(subject: Subject, payload: dict) -> Analysis:
    """The analysis named by ``id``; a text input evicted from the cache is simply run again."""
    analysis_id = payload.get("id")
    if isinstance(analysis_id, str) and subject.is_cached(analysis_id):
        return subject.cached(analysis_id)
    if subject.input_kind == "text" and isinstance(payload.get("text"), str):
        return subject.analyze(payload["text"])
    if not isinstance(analysis_id, str):
        raise ValueError("id must name an analysed input (run one first)")
    return subject.cached(analysis_id)


def _settings(payload: dict) -> Settings:
    top_k = _int(payload, "top_k", None, optional=True)
    settings = Settings(
        temperature=_float(payload, "temperature", 1.0),
        top_k=top_k or None,
        top_p=_float(payload, "top_p", 1.0),
        seed=_int(payload, "seed", 0),
    )
    settings.config(1)  # rejects nonsense (negative temperature, top_p outside (0, 1], ...) now
    return settings


def _language_model(subject: Subject) -> LanguageModel:
    if not isinstance(subject, LanguageModel):
        raise ValueError(
            f"{subject.name} is a {subject.family} model; generation and the logit lens are for language models"
        )
    return subject


def handlers(registry: Registry) -> dict[str, Callable[[dict], dict]]:
    """Path -> function of the JSON payload; the router and the static export share them."""

    def subject_of(payload: dict) -> Subject:
        name = payload.get("model")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"model must be a model's name, got {name!r}")
        return registry.get(name)

    def models(payload: dict) -> dict:
        return {"models": [registry.info(s) for s in registry.subjects.values()]}

    def analyze(payload: dict) -> dict:
        subject = subject_of(payload)
        if subject.input_kind != "text":
            raise ValueError(f"{subject.name} reads {subject.input_kind}: upload a file instead of text")
        return subject.analyze(_str(payload, "text")).summary()

    def attention(payload: dict) -> dict:
        subject = subject_of(payload)
        store = _analysis(subject, payload).store(payload.get("stack"))
        head = payload.get("head")
        if head is not None and head != "mean":
            head = _int(payload, "head")
        return {
            "stack": store.name,
            **store.block(
                _int(payload, "layer", 0),
                _int(payload, "q0", 0),
                _int(payload, "q1", None, optional=True),
                _int(payload, "k0", 0),
                _int(payload, "k1", None, optional=True),
                head,
            ),
        }

    def lens(payload: dict) -> dict:
        subject = _language_model(subject_of(payload))
        return subject.logit_lens(_analysis(subject, payload), _int(payload, "position", -1))

    def idea(name: str) -> Callable[[dict], dict]:
        def handler(payload: dict) -> dict:
            subject = subject_of(payload)
            analysis = _analysis(subject, payload)
            params = {k: v for k, v in payload.items() if k not in ("model", "id", "text")}
            _check_params(name, params)
            return run_idea(subject, analysis, name, params)

        return handler

    def generate_start(payload: dict) -> dict:
        subject = _language_model(subject_of(payload))
        stepper = registry.steppers[subject.name].start(subject, _str(payload, "text"), _settings(payload))
        return {
            "session": stepper.id,
            "tokens": stepper.tokens,
            "prompt_length": stepper.prompt_length,
            "layers": len(subject.model.stack.layers),
            "heads": subject.config.num_heads,
        }

    def generate_step(payload: dict) -> dict:
        subject = _language_model(subject_of(payload))
        stepper = registry.steppers[subject.name].get(_str(payload, "session"))
        result = stepper.step(_settings(payload))
        if result["layers"]:
            result["attention"] = stepper.layer_attention(_int(payload, "layer", -1))
        return result

    def generate_attention(payload: dict) -> dict:
        subject = _language_model(subject_of(payload))
        return registry.steppers[subject.name].get(_str(payload, "session")).layer_attention(_int(payload, "layer", -1))

    routes = {
        "models": models,
        "analyze": analyze,
        "attention": attention,
        "lens": lens,
        "generate/start": generate_start,
        "generate/step": generate_step,
        "generate/attention": generate_attention,
    }
    routes.update({f"ideas/{name}": idea(name) for name in IDEAS})
    return routes


def _check_params(name: str, params: dict) -> None:
    from . import ideas

    accepted = [p for p in inspect.signature(getattr(ideas, name)).parameters if p not in ("subject", "analysis")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"the {name} panel takes {', '.join(accepted) or 'no settings'}; not {', '.join(unknown)}")


def analyze_file(registry: Registry, name: str | None, data: bytes) -> dict:
    subject = registry.get(name)
    if subject.input_kind == "text":
        raise ValueError(f"{subject.name} reads text, not files")
    return subject.analyze(data).summary()


# ----------------------------------------------------------------------------- FastAPI


def one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def make_router(registry: Registry):
    """The endpoints above as an ``APIRouter`` (mount it under ``.../api``)."""
    router = APIRouter()
    table = handlers(registry)

    async def answer(fn: Callable, *args) -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(fn, *args))
        except ValueError as err:
            return JSONResponse({"error": one_line(err)}, status_code=400)

    async def body_json(request: Request) -> dict:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ValueError(f"the request is {len(raw):,} bytes; the explorer takes at most {MAX_BODY:,}")
        if not raw:
            return {}
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("the request body is not JSON") from None
        if not isinstance(payload, dict):
            raise ValueError("the request body must be a JSON object")
        return payload

    def route(path: str, fn: Callable[[dict], dict]) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                payload = await body_json(request)
            except ValueError as err:
                return JSONResponse({"error": one_line(err)}, status_code=400)
            return await answer(fn, payload)

        router.add_api_route(f"/{path}", endpoint, methods=["POST"], name=f"explore:{path}")

    for path, fn in table.items():
        route(path, fn)

    @router.get("/models", name="explore:models-get")
    async def models_get() -> JSONResponse:
        return await answer(table["models"], {})

    @router.post("/analyze/file", name="explore:analyze-file")
    async def upload(request: Request, model: str | None = None) -> JSONResponse:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return JSONResponse(
                {"error": f"the file is {len(raw):,} bytes; the explorer takes at most {MAX_BODY:,}"}, status_code=400
            )
        return await answer(analyze_file, registry, model, raw)

    return router


def mount(app, registry: Registry, prefix: str = "") -> None:
    """The page at ``prefix/``, its files at ``prefix/static``, the endpoints at ``prefix/api``."""
    app.include_router(make_router(registry), prefix=f"{prefix}/api")
    app.mount(f"{prefix}/static", StaticFiles(directory=STATIC), name=f"explore-static{prefix.replace('/', '-')}")
    headers = {"Cache-Control": "no-cache"}

    @app.get(f"{prefix}/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers=headers)

    if prefix:

        @app.get(prefix, include_in_schema=False)
        async def page_slash():
            return RedirectResponse(f"{prefix}/")


def create_app(registry: Registry | Subject):
    """A standalone FastAPI app: the explorer page and its endpoints, nothing else."""
    if isinstance(registry, Subject):
        registry = Registry([registry])
    app = FastAPI(title="attentive explore", docs_url=None, redoc_url=None, openapi_url=None)
    mount(app, registry)
    app.state.registry = registry
    return app

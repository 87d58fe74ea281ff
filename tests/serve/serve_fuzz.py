"""Schema-driven fuzzing of ``attentive serve`` with schemathesis: the driver that the default test
(a few fixed-seed examples per operation) and ``benchmarks/reliability/fuzz_server.py`` (many)
share.

``fuzz_app()`` builds the server in process over one tiny model of every kind (chat LM, encoder,
translator, ViT, Whisper-shaped speech model), behind an API key, with small limits so a
generated request stays cheap (a 64-token context, ``n`` and inputs at most 4). ``fuzz(app, ...)``
loads its OpenAPI document into schemathesis, and for every operation and both generation modes
(valid bodies, and bodies that break the schema) sends ``max_examples`` requests through
schemathesis' ASGI transport, checking each answer: no 5xx, the status documented for the
operation, the content type and headers documented, the body valid against its schema, and an
invalid body refused with a 4xx. A valid body names a served model of the operation's kind (a
random name would only ever meet 404). Failures are collected by kind, not raised, so one run
reports them all.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import torch

API_KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MODEL_FOR = {  # endpoint -> the served model a valid body names
    "/v1/chat/completions": "chat",
    "/v1/completions": "chat",
    "/v1/embeddings": "embed",
    "/v1/translations/text": "translate",
    "/v1/audio/transcriptions": "speech",
    "/v1/classifications/image": "vit",
}


class _Words:
    """The speech model's tokenizer: ids as words."""

    eos_token_id = 1

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)

    def special_tokens(self):
        return {}


def fuzz_app(root: Path):
    """The app (and a ``close``) over tiny models saved under ``root``."""
    from helpers import tiny_speech

    from attentive.models.speech import SpeechModel
    from attentive.serve import ServeSettings, ServedModel, create_app, load_served_model
    from serve_helpers import _spread, make_chat_lm, make_encoder, make_translator, make_vit

    models = [
        load_served_model(f"chat={make_chat_lm(root / 'chat', max_len=64)}", optimize=False),
        load_served_model(f"embed={make_encoder(root / 'embed')}", optimize=False),
        load_served_model(f"translate={make_translator(root / 'translate')}", optimize=False),
        load_served_model(f"vit={make_vit(root / 'vit')}", optimize=False),
    ]
    torch.manual_seed(7)
    speech = _spread(SpeechModel(tiny_speech(max_len=16, max_source_positions=1500).config), 7)
    models.append(ServedModel("speech", "speech", speech, _Words()))
    settings = ServeSettings(api_key=API_KEY, max_n=4, max_inputs=4, timeout=20.0, compile=False, context=64)
    app = create_app(models, settings)
    return app


def _wav() -> bytes:
    import io
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((torch.randn(8000) * 3000).to(torch.int16).numpy().tobytes())
    return out.getvalue()


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (28, 28), 128).save(out, format="PNG")
    return out.getvalue()


UPLOADS = {"/v1/audio/transcriptions": _wav, "/v1/classifications/image": _png}


def _without_lifespan(app):
    """``app`` with its lifespan answered here: schemathesis' pytest plugin ends every lifespan it
    started when a test ends, and the app's own would stop the engines that later tests use."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


def _name_a_model(case) -> None:
    """A valid body names a served model of the operation's kind, and ``/v1/models/{name}`` a
    served model half the time."""
    model = MODEL_FOR.get(case.operation.path)
    if model is not None and isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = model
    upload = UPLOADS.get(case.operation.path)
    if upload is not None and isinstance(case.body, dict) and len(str(case.body.get("model"))) % 2 == 0:
        case.body["file"] = upload()  # half the uploads a real file (random bytes are refused)
    name = (case.path_parameters or {}).get("name")
    if isinstance(name, str) and len(name) % 2 == 0:
        case.path_parameters["name"] = "chat"


def fuzz(app, max_examples: int, seed: int = 0, deadline_s: float | None = None) -> dict:
    """Fuzz every operation of ``app``; a report: operations, requests, failures by kind, examples."""
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    schema = schemathesis.openapi.from_asgi("/openapi.json", _without_lifespan(app))
    operations, requests, statuses = [], Counter(), Counter()
    failures: Counter = Counter()
    examples: dict[str, str] = {}
    skipped: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        operations.append(label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _runner(operation, mode, label, max_examples, seed, checks, requests, statuses, failures, examples)
            if seed:
                run = hypothesis.seed(seed)(run)
            try:
                run()
            except hypothesis.errors.Unsatisfiable:  # nothing to break (GET /health has no parameters)
                skipped.append(f"{label} {mode.value}")
        if deadline_s is not None and time.monotonic() - started > deadline_s:
            break
    return {
        "operations": operations,
        "requests": dict(requests),
        "requests_total": sum(requests.values()),
        "statuses": dict(sorted(statuses.items())),
        "failures": dict(failures),
        "examples": examples,
        "no_cases": skipped,
        "seconds": round(time.monotonic() - started, 1),
    }


def _runner(operation, mode, label, max_examples, seed, checks, requests, statuses, failures, examples):
    """One operation in one generation mode, as a hypothesis test that records what it finds."""
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples,
        derandomize=not seed,
        database=None,
        deadline=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: collect all
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        if mode is GenerationMode.POSITIVE:
            _name_a_model(case)
        requests[label] += 1
        try:
            response = case.call(headers=AUTH)
        except Exception as err:  # the transport itself broke: the app crashed mid-answer
            failures[f"{label}: crash {type(err).__name__}"] += 1
            examples.setdefault(f"{label}: crash {type(err).__name__}", f"{err!r}"[:500])
            return
        statuses[f"{label} {response.status_code}"] += 1
        try:
            case.validate_response(response, checks=checks)
        except BaseException as err:  # a schemathesis Failure, or a FailureGroup of them
            for failure in getattr(err, "exceptions", None) or (err,):
                kind = f"{label}: {type(failure).__name__}"
                failures[kind] += 1
                examples.setdefault(
                    kind,
                    f"{case.body!r}"[:300] + f" -> {response.status_code} {response.content[:300]!r}: "
                    f"{str(failure)[:400]}",
                )

    return run

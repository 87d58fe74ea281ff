"""The server's parts without HTTP: settings, model specs, the scheduler's failure path, the app
factory (another router mounted beside the endpoints reads the same registry), the command line."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import torch

from serve_helpers import make_char_lm

fastapi = pytest.importorskip("fastapi")

from attentive.serve import ModelRegistry, ServeSettings, ServedModel, create_app, load_served_model  # noqa: E402
from attentive.serve.errors import APIError  # noqa: E402
from attentive.serve.registry import parse_spec  # noqa: E402
from attentive.serve.scheduler import GenerationScheduler, Ticket  # noqa: E402


@pytest.mark.parametrize(
    "field, value",
    [("max_batch", 0), ("max_queue", -1), ("port", 70000), ("timeout", 0), ("max_n", 1.5), ("api_key", " ")],
)
def test_settings_name_the_bad_value(field, value):
    with pytest.raises(ValueError, match=field):
        ServeSettings(**{field: value})


def test_the_api_key_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ATTENTIVE_API_KEY", "from-env")
    assert ServeSettings.from_env().api_key == "from-env"
    assert ServeSettings.from_env(api_key="given").api_key == "given"
    assert ServeSettings().host == "127.0.0.1"  # loopback unless asked


def test_model_specs(tmp_path):
    assert parse_spec("chat=/models/x.gguf") == ("chat", "/models/x.gguf")
    assert parse_spec("/models/x.gguf") == (None, "/models/x.gguf")
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert parse_spec(str(odd)) == (None, str(odd))  # an existing path with '=' is a path
    with pytest.raises(ValueError, match="does not exist"):
        load_served_model(str(tmp_path / "missing"))
    run = make_char_lm(tmp_path / "shakespeare")
    served = load_served_model(f"poet={run}")
    assert (served.name, served.kind, served.endpoints, served.context) == ("poet", "lm", ("/v1/completions",), 128)
    assert load_served_model(str(run)).name == "shakespeare"
    registry = ModelRegistry([served])
    with pytest.raises(ValueError, match="two models are named 'poet'"):
        registry.add(served)
    with pytest.raises(APIError, match="does not exist; loaded models: poet"):
        registry.get("gpt-4")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return load_served_model(str(make_char_lm(tmp_path_factory.mktemp("lm") / "lm")))


def _ticket(lm, index, updates, done, max_new_tokens=5):
    from attentive.decode import GenerationConfig, Request

    def deliver(update):
        updates.append(update)
        if update.finish_reason is not None:
            done.release()

    request = Request(lm.tokenizer.encode("It was"), GenerationConfig(max_new_tokens=max_new_tokens, temperature=0))
    return Ticket(index, request, lm.tokenizer.decode, deliver)


def test_a_failing_step_fails_every_request_and_the_engine_starts_afresh(lm, monkeypatch):
    scheduler = GenerationScheduler("lm", lm.model, lm.tokenizer, max_batch=4, max_queue=4)
    try:
        broken = scheduler.engine
        monkeypatch.setattr(broken, "step", lambda **_: (_ for _ in ()).throw(RuntimeError("out of memory")))
        updates, done = [], threading.Semaphore(0)
        scheduler.submit([_ticket(lm, 0, updates, done), _ticket(lm, 1, updates, done)])
        assert done.acquire(timeout=10) and done.acquire(timeout=10)
        assert sorted(u.index for u in updates) == [0, 1]
        assert all(u.finish_reason == "error" and "out of memory" in u.error for u in updates)
        assert scheduler.engine is not broken and scheduler.alive  # a fresh engine, still serving
        updates.clear()
        scheduler.submit([_ticket(lm, 0, updates, done)])
        assert done.acquire(timeout=10)
        assert updates[-1].finish_reason == "length" and sum(u.token is not None for u in updates) == 5
    finally:
        scheduler.close()
    assert not scheduler.alive
    with pytest.raises(APIError, match="cannot decode"):
        scheduler.submit([_ticket(lm, 0, [], threading.Semaphore(0))])


def _asgi_get(app, path: str) -> tuple[int, bytes]:
    """One GET through the ASGI app, without a network (no test client needed)."""
    sent = []

    async def call():
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [],
            "scheme": "http",
            "server": ("test", 80),
            "client": ("test", 1),
            "root_path": "",
        }
        await app(scope, receive, send)

    asyncio.run(call())
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_another_router_mounts_beside_the_endpoints_and_reads_the_registry(lm):
    app = create_app(ModelRegistry([lm]), ServeSettings())
    try:
        router = fastapi.APIRouter()

        @router.get("/explore/models")
        async def explore(request: fastapi.Request):
            return [m.name for m in request.app.state.attentive.models]

        app.include_router(router)
        assert _asgi_get(app, "/explore/models") == (200, json.dumps([lm.name]).encode())
        status, body = _asgi_get(app, "/v1/models")
        assert status == 200 and json.loads(body)["data"][0]["id"] == lm.name
    finally:
        app.state.attentive.close()


def test_the_command_line_refuses_bad_settings_in_one_line(capsys):
    from attentive.cli.main import main

    assert main(["serve"]) == 2
    assert "give at least one --model" in capsys.readouterr().err
    assert main(["serve", "--model", "x", "--max-batch", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "max_batch must be a positive integer" in err
    assert main(["serve", "--model", "/no/such/model.gguf"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_served_model_cards():
    model = torch.nn.Linear(1, 1)
    model.config = type("C", (), {"max_len": 8})()
    card = ServedModel("enc", "encoder", model).card()
    assert card["id"] == "enc" and card["object"] == "model" and card["endpoints"] == ["/v1/embeddings"]


@pytest.mark.parametrize("cache", ["static", "dynamic"])
def test_every_cache_mode_serves_the_same_tokens(lm, cache):
    """A fixed-shape cache (what CUDA graphs need) serves a batch at a time; the tokens are the same."""
    from attentive.decode import EngineConfig, generate

    scheduler = GenerationScheduler(
        "lm", lm.model, lm.tokenizer, max_batch=4, max_queue=4, engine=EngineConfig(cache=cache)
    )
    try:
        updates, done = [], threading.Semaphore(0)
        scheduler.submit([_ticket(lm, i, updates, done, max_new_tokens=6 + i) for i in range(3)])
        for _ in range(3):
            assert done.acquire(timeout=10)
    finally:
        scheduler.close()
    want = generate(lm.model, lm.tokenizer, "It was", max_new_tokens=8, temperature=0, stop_tokens=()).tokens[0]
    for i in range(3):
        assert [u.token for u in updates if u.index == i and u.token is not None] == want[: 6 + i]

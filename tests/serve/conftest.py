"""Servers shared by the serve tests: tiny models made here, one process each, stopped at the end."""

from __future__ import annotations

import pytest

from serve_helpers import API_KEY, Server, make_char_lm, make_chat_lm, make_encoder, make_translator, make_vit


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-models")
    return {
        "chat": make_chat_lm(root / "chat"),
        "char": make_char_lm(root / "char"),
        "translate": make_translator(root / "translate"),
        "vit": make_vit(root / "vit"),
        "embed": make_encoder(root / "embed"),
        "long": make_chat_lm(root / "long", max_len=4096, seed=5),
    }


@pytest.fixture(scope="session")
def tiny_server(tiny_models, tmp_path_factory):
    """The tiny models behind an API key, default limits but a 60 s time limit."""
    specs = [f"{name}={tiny_models[name]}" for name in ("chat", "char", "translate", "vit", "embed")]
    server = Server(specs, "--timeout", "60", api_key=API_KEY, log=tmp_path_factory.mktemp("logs") / "tiny.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tight_server(tiny_models, tmp_path_factory):
    """One row, one waiting request, 3 s per request: queueing, time-outs and freed slots show at once."""
    server = Server(
        [f"long={tiny_models['long']}"],
        "--max-batch",
        "1",
        "--max-queue",
        "1",
        "--timeout",
        "3",
        "--context",  # its requests ask for 4,000 tokens: beyond the default 2,048 a slot holds
        "4096",
        log=tmp_path_factory.mktemp("logs") / "tight.log",
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(tiny_server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{tiny_server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)

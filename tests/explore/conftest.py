"""Tiny models of every family the explorer shows, made here (random weights, seeded), and one live
server (uvicorn on 127.0.0.1, a free port) that serves each under its own prefix: /lm/, /translation/,
/vision/, /encoder/, /speech/."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the explorer needs fastapi (pip install 'attentive[explore]')")
pytest.importorskip("uvicorn", reason="the explorer needs uvicorn (pip install 'attentive[explore]')")

from attentive.decode.translator import Translator  # noqa: E402
from attentive.explore import Registry, make_subject, mount  # noqa: E402
from attentive.explore.translation import TranslationModel  # noqa: E402
from attentive.models import (  # noqa: E402
    DecoderLM,
    DecoderLMConfig,
    Encoder,
    EncoderConfig,
    EncoderDecoder,
    EncoderDecoderConfig,
    SpeechConfig,
    SpeechModel,
)
from attentive.models.vit import ViTConfig, VisionTransformer  # noqa: E402
from attentive.text.char import CharTokenizer  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,!?'"
FAMILIES = ("lm", "translation", "vision", "encoder", "speech")


def char_tokenizer() -> CharTokenizer:
    return CharTokenizer.train(ALPHABET)


def _seeded(seed: int):
    torch.manual_seed(seed)


@pytest.fixture(scope="session")
def tokenizer() -> CharTokenizer:
    return char_tokenizer()


@pytest.fixture(scope="session")
def lm(tokenizer):
    _seeded(1)
    model = DecoderLM(
        DecoderLMConfig(
            vocab_size=tokenizer.vocab_size,
            num_layers=2,
            d_model=32,
            num_heads=4,
            d_ff=64,
            max_len=64,
            dropout=0.0,
            attention_dropout=0.0,
        )
    )
    return make_subject(model.eval(), tokenizer, "tiny-lm")


@pytest.fixture(scope="session")
def translation(tokenizer):
    _seeded(5)  # a seed whose random model writes 21 varied tokens (most write one token over and over)
    config = EncoderDecoderConfig(
        src_vocab_size=tokenizer.vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        d_model=32,
        num_heads=4,
        d_ff=64,
        num_encoder_layers=2,
        num_decoder_layers=3,
        max_len=64,
        dropout=0.0,
        attention_dropout=0.0,
    )
    model = EncoderDecoder(config).eval()
    info = {"search": {"beam_size": 3, "alpha": 0.6, "max_len_b": 6}, "src_lang": "de", "tgt_lang": "en"}
    return TranslationModel(Translator(model, tokenizer, info=info), "tiny-translation")


@pytest.fixture(scope="session")
def vision():
    _seeded(3)
    model = VisionTransformer(ViTConfig(d_model=32, num_heads=4, d_ff=64, num_layers=3))
    torch.nn.init.normal_(model.head.weight, std=0.5)  # a fresh ViT's head is zero: every class alike
    return make_subject(model.eval(), None, "tiny-vit")


@pytest.fixture(scope="session")
def encoder(tokenizer):
    _seeded(4)
    model = Encoder(
        EncoderConfig(
            vocab_size=tokenizer.vocab_size,
            num_layers=2,
            d_model=32,
            num_heads=4,
            d_ff=64,
            max_len=64,
            dropout=0.0,
            attention_dropout=0.0,
        )
    )
    return make_subject(model.eval(), tokenizer, "tiny-encoder")


@pytest.fixture(scope="session")
def speech(tokenizer):
    _seeded(5)
    config = SpeechConfig(
        vocab_size=tokenizer.vocab_size,
        num_encoder_layers=1,
        num_decoder_layers=2,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=32,
        eot_id=tokenizer.eos_id,
        start_ids=[tokenizer.bos_id],
        timestamp_begin=0,
        begin_suppress_tokens=[],
    )
    return make_subject(SpeechModel(config).eval(), tokenizer, "tiny-speech")


@pytest.fixture(scope="session")
def subjects(lm, translation, vision, encoder, speech):
    return {"lm": lm, "translation": translation, "vision": vision, "encoder": encoder, "speech": speech}


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (which never downloads a browser here)."""
    from explore_support import CHROMIUM, FLAGS

    playwright = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (it drives the system Chromium)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    from explore_support import Page

    return Page(browser)


@pytest.fixture(scope="session")
def server(subjects):
    """Base URL of a live explorer serving every tiny model: ``{base}/lm/`` and so on."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    for name, subject in subjects.items():
        mount(app, Registry([subject]), prefix=f"/{name}")
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the explorer's test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)

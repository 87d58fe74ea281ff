"""Translation and Whisper requests share one engine thread per model: concurrent requests give
the tokens ``translate_ids`` and the text ``transcribe_audio`` give, and they decode in the same
steps; queue limit, time-out and failures still answer cleanly.

The app runs in this process (ASGI calls, no network) so a test can hold the engine thread at
its encoder (``Gate``) until every request has arrived: they then decode together for sure."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import tiny_speech
import torch

from serve_helpers import SENTENCES, _spread, http, make_translator, multipart

pytest.importorskip("fastapi")

from attentive.serve import ModelRegistry, ServeSettings, ServedModel, create_app, load_served_model  # noqa: E402
from attentive.serve.encoder_decoder import EncoderDecoderScheduler  # noqa: E402

pytestmark = pytest.mark.timeout(120)

TRANSLATE = "/v1/translations/text"
TRANSCRIBE = "/v1/audio/transcriptions"


# ----------------------------------------------------------------------------- models and the app


class WordTokenizer:
    """What the server reads of a Whisper tokenizer: ``decode`` (every id is a word here)."""

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)


@pytest.fixture(scope="module")
def translate(tmp_path_factory):
    return load_served_model(f"translate={make_translator(tmp_path_factory.mktemp('translate') / 'run')}")


@pytest.fixture(scope="module")
def speech():
    """A 1+1-layer Whisper-shaped model (8 Mel bins, 30 s windows) with spread-out weights."""
    from attentive.models.speech import SpeechModel

    config = tiny_speech(max_len=16, max_source_positions=1500).config
    torch.manual_seed(7)
    return ServedModel("speech", "speech", _spread(SpeechModel(config), 7), WordTokenizer())


class App:
    """``create_app`` over ``models`` with ``settings``; ``post`` calls it without a network."""

    def __init__(self, models, **settings):
        self.app = create_app(ModelRegistry(models), ServeSettings(**settings))
        self.state = self.app.state.attentive

    def scheduler(self, name) -> EncoderDecoderScheduler:
        return self.state.schedulers[name]

    async def post(self, path: str, body, content_type: str = "application/json"):
        """(status, headers, body) of one POST."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        messages = [{"type": "http.request", "body": raw, "more_body": False}]
        sent = []

        async def receive():
            if messages:
                return messages.pop(0)
            await asyncio.Event().wait()  # the client stays connected

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(raw)).encode())],
            "scheme": "http",
            "server": ("test", 80),
            "client": ("test", 1),
            "root_path": "",
        }
        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], headers, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")

    def close(self):
        self.state.close()


class Gate:
    """Holds the scheduler's thread at its encoder until ``open()``; records how many pieces each
    encoder call took."""

    def __init__(self, scheduler: EncoderDecoderScheduler):
        self.scheduler, self.prepare = scheduler, scheduler.prepare
        self.calls: list[int] = []
        self.event = threading.Event()
        scheduler.prepare = self

    def __call__(self, sources):
        self.calls.append(len(sources))
        assert self.event.wait(30), "the gate was never opened"
        return self.prepare(sources)

    async def open_when_waiting(self, pieces: int) -> None:
        """Open once ``pieces`` pieces have been submitted (the first ones held in the encoder)."""
        deadline = time.monotonic() + 10
        while self.scheduler.waiting < pieces:
            assert time.monotonic() < deadline, f"only {self.scheduler.waiting} of {pieces} pieces arrived"
            await asyncio.sleep(0.005)
        self.event.set()


def rows_histogram(app: App, model: str) -> tuple[float, float]:
    """(steps that decoded more than 2 rows, steps in all) from ``attentive_decode_batch_rows``."""
    registry = app.state.metrics.registry
    count = registry.get_sample_value("attentive_decode_batch_rows_count", {"model": model}) or 0.0
    small = registry.get_sample_value("attentive_decode_batch_rows_bucket", {"model": model, "le": "2.0"}) or 0.0
    return count - small, count


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def transcription_body(model: str, data: bytes) -> tuple[bytes, str]:
    return multipart({"model": model}, "file", "clip.wav", data, "audio/wav")


# ----------------------------------------------------------------------------- translation


REQUESTS = [  # (input, beam, max_len_b): greedy and beam searches, different length limits
    (SENTENCES[0], 1, None),
    ([SENTENCES[1], "", SENTENCES[2]], 4, None),
    (SENTENCES[3], 2, 3),
    ([SENTENCES[4], SENTENCES[5]], 1, 5),
    (SENTENCES[2], 3, None),
    ("Ein Hund", 1, 2),
]


def expected(translator, texts, beam, max_len_b) -> list[list[int]]:
    sources = translator.source_tokenizer.encode_batch([t.strip() for t in texts])
    return translator.translate_ids(sources, translator.search_config(beam, None, max_len_b))


def test_concurrent_translations_equal_translate_ids_and_share_steps(translate):
    """Greedy and beam requests arrive together: one encoder call for all of them, they decode in
    the same steps, and each gets exactly ``translate_ids``'s tokens (as text)."""
    translator = translate.translator
    app = App([translate], max_batch=32)
    gate = Gate(app.scheduler("translate"))
    bodies = [
        {"model": "translate", "input": text, "beam": beam, **({"max_len_b": b} if b is not None else {})}
        for text, beam, b in REQUESTS
    ]
    pieces = sum(len([t for t in ([x] if isinstance(x, str) else x) if t]) for x, _, _ in REQUESTS)

    async def main():
        tasks = [asyncio.ensure_future(app.post(TRANSLATE, body)) for body in bodies]
        await gate.open_when_waiting(pieces)
        return await asyncio.gather(*tasks)

    try:
        replies = asyncio.run(main())
        for (text, beam, max_len_b), (status, _, raw) in zip(REQUESTS, replies):
            assert status == 200, raw
            texts = [text] if isinstance(text, str) else text
            want = [translator.text(ids) for ids in expected(translator, texts, beam, max_len_b)]
            assert [d["text"] for d in json.loads(raw)["data"]] == want, (text, beam)
        # the first request's pieces were held in the encoder; every other piece was encoded in one call
        assert len(gate.calls) == 2 and sum(gate.calls) == pieces and gate.calls[1] >= pieces - 2
        wide, steps = rows_histogram(app, "translate")
        assert wide > 0 and steps > 0  # some steps decoded rows of several requests
    finally:
        app.close()


def test_concurrent_scheduler_runs_give_translate_ids_tokens(translate):
    """The same, one level down: ``scheduler.run`` returns the engine's sequences, whose tokens are
    ``translate_ids``'s, for greedy and beam configs decoding side by side."""
    translator = translate.translator
    app = App([translate], max_batch=32)
    scheduler = app.scheduler("translate")
    sources = translator.source_tokenizer.encode_batch(SENTENCES)
    configs = [translator.search_config(beam, None, None) for beam in (1, 2, 4, 1, 3, 1)]

    async def main():
        return await asyncio.gather(*[scheduler.run([(ids, c)]) for ids, c in zip(sources, configs)])

    try:
        got = asyncio.run(main())
        for ids, config, (sequence,) in zip(sources, configs, got):
            assert sequence.tokens == translator.translate_ids([ids], config)[0]
        assert scheduler.steps > 0 and scheduler.alive
    finally:
        app.close()


def test_concurrent_translations_through_the_http_server(tiny_server, tiny_models):
    """A real server, clients on threads: each gets the text ``translate_ids`` gives."""
    from attentive.decode import Translator

    translator = Translator.from_checkpoint(tiny_models["translate"])
    jobs = [(s, beam) for s in SENTENCES for beam in (1, 4)]

    def one(job):
        text, beam = job
        status, _, raw = http(tiny_server, "POST", TRANSLATE, {"model": "translate", "input": text, "beam": beam})
        assert status == 200, raw
        return json.loads(raw)["data"][0]["text"]

    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(one, jobs))
    for (text, beam), reply in zip(jobs, got):
        assert reply == translator.text(expected(translator, [text], beam, None)[0]), (text, beam)


# ----------------------------------------------------------------------------- transcription


def clips(seconds=(2, 35, 62), rate=16000) -> list[bytes]:
    """Noise clips of 1, 2 and 3 windows, as WAV uploads."""
    rng = np.random.default_rng(0)
    return [wav_bytes(rng.standard_normal(rate * s).astype(np.float32) * 0.2, rate) for s in seconds]


def test_concurrent_transcriptions_equal_transcribe_audio(speech):
    """Three clips (1, 2 and 3 windows) arrive together: the windows of all of them are encoded in
    one call and decode together; each clip's text is ``transcribe_audio``'s."""
    from attentive.audio import read_wav
    from attentive.decode.transcriber import transcribe_audio

    uploads = clips()
    want = []
    for data in uploads:
        audio, rate = read_wav(io.BytesIO(data))
        want.append(transcribe_audio(speech.model, speech.tokenizer, audio, rate))
    assert len(set(want)) == 3 and all(want)
    app = App([speech], max_batch=16)
    gate = Gate(app.scheduler("speech"))

    async def main():
        tasks = [asyncio.ensure_future(app.post(TRANSCRIBE, *transcription_body("speech", d))) for d in uploads]
        await gate.open_when_waiting(6)
        return await asyncio.gather(*tasks)

    try:
        replies = asyncio.run(main())
        assert [r[0] for r in replies] == [200] * 3, replies
        assert [json.loads(raw)["text"] for _, _, raw in replies] == want
        # one clip's windows were held in the encoder; the two others' windows were encoded in one call
        assert len(gate.calls) == 2 and sum(gate.calls) == 6 and gate.calls[1] >= 3
        wide, _ = rows_histogram(app, "speech")
        assert wide > 0
    finally:
        app.close()


def test_whisper_tiny_concurrent_transcripts_equal_transcribe_audio(tmp_path):
    """Whisper tiny.en (when installed): two clips, one of two windows, sent together."""
    import subprocess

    from pretrained_paths import need_espeak, need_whisper_ct2

    from attentive.audio import read_wav
    from attentive.decode.transcriber import transcribe_audio

    served = load_served_model(f"whisper={need_whisper_ct2()}")
    wav = tmp_path / "clip.wav"
    subprocess.run([need_espeak(), "-w", str(wav), "Hello world. This is a test."], check=True)
    audio, rate = read_wav(wav)
    long = np.concatenate([audio, np.zeros(int(rate * 29), dtype=audio.dtype), audio * 0.5])  # two windows
    uploads = [wav_bytes(audio, rate), wav_bytes(long, rate)]
    want = [transcribe_audio(served.model, served.tokenizer, *read_wav(io.BytesIO(d))) for d in uploads]
    app = App([served])

    async def main():
        return await asyncio.gather(*[app.post(TRANSCRIBE, *transcription_body("whisper", d)) for d in uploads])

    try:
        replies = asyncio.run(main())
        assert [json.loads(raw).get("text") for _, _, raw in replies] == want
        assert "world" in want[0].lower()
    finally:
        app.close()


# ----------------------------------------------------------------------------- limits and failures


def test_a_beam_wider_than_the_batch_is_a_400(translate):
    app = App([translate], max_batch=2)
    try:
        status, _, raw = asyncio.run(app.post(TRANSLATE, {"model": "translate", "input": "Ein Hund", "beam": 4}))
        error = json.loads(raw)["error"]
        assert status == 400 and error["param"] == "beam" and "at most 2" in error["message"]
        status, _, _ = asyncio.run(app.post(TRANSLATE, {"model": "translate", "input": "Ein Hund", "beam": 2}))
        assert status == 200
    finally:
        app.close()


def test_a_full_queue_is_a_429_and_the_queued_requests_are_served(translate):
    """One row and one waiting piece: with the thread held, a third sentence is refused."""
    app = App([translate], max_batch=1, max_queue=1)
    gate = Gate(app.scheduler("translate"))
    body = {"model": "translate", "input": "Ein Hund", "beam": 1}

    async def main():
        held = [asyncio.ensure_future(app.post(TRANSLATE, body)) for _ in range(2)]
        deadline = time.monotonic() + 10
        while app.scheduler("translate").waiting < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        refused = await app.post(TRANSLATE, body)
        gate.event.set()
        return refused, await asyncio.gather(*held)

    try:
        (status, headers, raw), served = asyncio.run(main())
        error = json.loads(raw)["error"]
        assert status == 429 and error["code"] == "queue_full" and headers["retry-after"] == "1"
        assert [s for s, _, _ in served] == [200, 200]
    finally:
        app.close()


def test_a_request_past_the_deadline_is_a_504_and_leaves_the_batch(translate):
    app = App([translate], timeout=0.3)
    scheduler = app.scheduler("translate")
    gate = Gate(scheduler)
    body = {"model": "translate", "input": SENTENCES[:3], "beam": 2}
    try:
        status, _, raw = asyncio.run(app.post(TRANSLATE, body))
        assert status == 504 and json.loads(raw)["error"]["code"] == "timeout"
        gate.event.set()
        deadline = time.monotonic() + 10
        while scheduler.waiting or scheduler.active or not scheduler.engine.idle:  # cancelled, not decoded on
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, _, raw = asyncio.run(app.post(TRANSLATE, body))
        assert status == 200, raw
    finally:
        app.close()


def test_a_failing_step_fails_the_requests_in_flight_and_the_thread_serves_on(translate, monkeypatch):
    translator = translate.translator
    app = App([translate])
    scheduler = app.scheduler("translate")
    broken = scheduler.engine
    step = broken.step

    def failing(**options):  # fails once both requests are in the engine (the first decodes a step alone)
        if len(broken.pending) + len(broken.rows) >= 2:
            raise RuntimeError("out of memory")
        return step(**options)

    monkeypatch.setattr(broken, "step", failing)
    gate = Gate(scheduler)
    bodies = [{"model": "translate", "input": s, "beam": b} for s, b in ((SENTENCES[0], 1), (SENTENCES[1], 4))]

    async def main():
        tasks = [asyncio.ensure_future(app.post(TRANSLATE, body)) for body in bodies]
        await gate.open_when_waiting(2)
        return await asyncio.gather(*tasks)

    try:
        for status, _, raw in asyncio.run(main()):
            error = json.loads(raw)["error"]
            assert status == 500 and error["code"] == "engine_error" and "out of memory" in error["message"]
        assert scheduler.engine is not broken and scheduler.alive  # a fresh engine, still serving
        status, _, raw = asyncio.run(app.post(TRANSLATE, bodies[1]))
        assert status == 200
        want = translator.text(expected(translator, [SENTENCES[1]], 4, None)[0])
        assert json.loads(raw)["data"][0]["text"] == want
    finally:
        app.close()


def test_a_failing_encoder_fails_its_requests_and_the_thread_serves_on(speech):
    app = App([speech])
    scheduler = app.scheduler("speech")
    prepare = scheduler.prepare
    scheduler.prepare = lambda sources: (_ for _ in ()).throw(RuntimeError("bad window"))
    data = clips((2,))[0]
    try:
        status, _, raw = asyncio.run(app.post(TRANSCRIBE, *transcription_body("speech", data)))
        error = json.loads(raw)["error"]
        assert status == 500 and "encoding failed" in error["message"] and "bad window" in error["message"]
        scheduler.prepare = prepare
        status, _, raw = asyncio.run(app.post(TRANSCRIBE, *transcription_body("speech", data)))
        assert status == 200 and json.loads(raw)["text"]
    finally:
        app.close()

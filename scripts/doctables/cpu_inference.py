"""Tables of the CPU inference guide (``docs/guides/cpu-inference.md``), rendered from result files.

* ``llamacpp_bench`` / ``llamacpp_targets``: ``benchmarks/llamacpp/vs_llamacpp_bench.json``, as
  ``benchmarks/bench_vs_llamacpp.py`` prints it, and the targets met or missed, computed from it;
* ``llamacpp_serve`` / ``llamacpp_serve_targets``: ``vs_llamacpp_serve.json`` (and ``_run1``, the run
  before it, which the targets read too);
* ``profile_cpu_decode``: the per-token table ``benchmarks/profile_cpu_decode.py`` writes;
* ``ct2_smollm2`` / ``ct2_whisper`` / ``ct2_targets``: ``benchmarks/cpu_inference/vs_ctranslate2*.json``,
  the ratios to CTranslate2 computed here;
* ``cpu_kernels``: ``benchmarks/cpu_inference/kernels_linear.json``, the kernels attentive runs in bold.

Every ratio and every met / missed is computed from the files, so a rerun that writes new figures
rewrites the verdicts too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from attentive import figures

ROOT = Path(__file__).resolve().parents[2]
SERVE_RUN1 = "benchmarks/llamacpp/vs_llamacpp_serve_run1.json"
CT2_RUN_BEFORE = "benchmarks/cpu_inference/vs_ctranslate2_run_before.json"

# The targets the work on CPU decoding set itself (the thresholds, not measurements).
PREFILL_VS_LLAMACPP = 1.5  # pp512, attentive's default path against llama-bench
DECODE_VS_LLAMACPP = 1.0  # tg128
DEFAULT_VS_BEST = 0.9  # the default path within 10% of the compiled one
SERVE_VS_LLAMACPP = 1.0  # tok/s at a concurrency level, against llama-server


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(columns: list[str], rows: list[list], align: str | None = None) -> str:
    rule = align or "|" + "---|" * len(columns)
    return "\n".join([_row(columns), rule, *(_row(r) for r in rows)])


def _x(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _load(relative: str) -> dict:
    return figures.load(ROOT / relative)


# ----------------------------------------------------------------------------- llama-bench


def _bench_rows(data: dict) -> dict[tuple[str, str, str], dict]:
    """(file, test, variant) -> row of ``vs_llamacpp_bench.json``."""
    return {(r["extra"]["file"], r["extra"]["test"], r["extra"]["variant"]): r for r in data["rows"]}


def _rate(row: dict | None) -> float | None:
    return None if row is None or row.get("error") else row.get("rate")


def _rate_cell(row: dict | None) -> str:
    if row is None:
        return ""
    if row.get("error"):
        return "failed"
    return f"{row['rate']:,.1f}"


def _tests(data: dict) -> tuple[str, str]:
    cfg = data["config"]
    return f"pp{cfg['pp']}", f"tg{cfg['tg']}"


def llamacpp_bench(data: dict) -> str:
    """llama-bench's pp / tg against attentive's default and best paths, per GGUF file."""
    by = _bench_rows(data)
    rows = []
    for name, spec in data["config"]["files"].items():
        for test in _tests(data):
            peer = by.get((name, test, "llama.cpp"))
            cells = [f"{name.upper()} ({spec['size']})", test, _rate_cell(peer)]
            for variant in ("default", "best"):
                row = by.get((name, test, variant))
                cells.append(_rate_cell(row))
                ours, theirs = _rate(row), _rate(peer)
                cells.append(_x(ours / theirs) if ours and theirs else "")
            rows.append(cells)
    columns = [
        "file",
        "test",
        "llama.cpp tok/s",
        "attentive default tok/s",
        "default / llama.cpp",
        "attentive best tok/s",
        "best / llama.cpp",
    ]
    notes = "\n".join(f"- {note}" for note in data.get("notes", []))
    return _table(columns, rows) + (f"\n\n{notes}" if notes else "")


def llamacpp_targets(data: dict) -> str:
    """The targets against llama.cpp, met or missed, from the same rows."""
    by = _bench_rows(data)
    pp, tg = _tests(data)
    rows = []

    def ratio(name: str, test: str, ours: str, theirs: str) -> float | None:
        a, b = _rate(by.get((name, test, ours))), _rate(by.get((name, test, theirs)))
        return a / b if a and b else None

    for name in data["config"]["files"]:
        r = ratio(name, pp, "default", "llama.cpp")
        rows.append(
            [
                f"prefill ({pp}): default path >= {PREFILL_VS_LLAMACPP}x llama.cpp",
                name.upper(),
                _x(r),
                _verdict(r is not None and r >= PREFILL_VS_LLAMACPP),
            ]
        )
    for name in data["config"]["files"]:
        default, best = ratio(name, tg, "default", "llama.cpp"), ratio(name, tg, "best", "llama.cpp")
        fastest = max((v for v in (default, best) if v is not None), default=None)
        rows.append(
            [
                f"decoding one row ({tg}) >= {DECODE_VS_LLAMACPP}x llama.cpp",
                name.upper(),
                f"default {_x(default)}, compiled {_x(best)}",
                _verdict(fastest is not None and fastest >= DECODE_VS_LLAMACPP),
            ]
        )
    for name in data["config"]["files"]:
        p, t = ratio(name, pp, "default", "best"), ratio(name, tg, "default", "best")
        rows.append(
            [
                f"the default path within {1 - DEFAULT_VS_BEST:.0%} of the compiled one (>= {DEFAULT_VS_BEST}x)",
                name.upper(),
                f"{pp} {_x(p)}, {tg} {_x(t)}",
                _verdict(all(v is not None and v >= DEFAULT_VS_BEST for v in (p, t))),
            ]
        )
    return _table(["target", "file", "measured (attentive / llama.cpp, or default / compiled)", "result"], rows)


# ----------------------------------------------------------------------------- llama-server


def _serve_peers(data: dict) -> dict[tuple[str, int], dict]:
    return {(r["extra"]["file"], r["extra"]["concurrency"]): r for r in data["rows"] if r["impl"] == "llama.cpp"}


def llamacpp_serve(data: dict) -> str:
    """``attentive serve`` against ``llama-server`` at each concurrency, as the benchmark prints it."""
    peers = _serve_peers(data)
    rows = []
    for r in data["rows"]:
        x = r["extra"]
        head = [x.get("file", "").upper(), x.get("concurrency", ""), x.get("server", r["name"])]
        if r.get("error"):
            rows.append(head + ["failed", "", "", "", "", "", r["error"].replace("|", "/"), ""])
            continue
        peer = peers.get((x.get("file"), x.get("concurrency")))
        ours = r["impl"] != "llama.cpp"
        ratio = _x(r["rate"] / peer["rate"]) if ours and peer is not None and _rate(peer) else ""
        rows.append(
            head
            + [
                x["requests"],
                f"{r['rate']:.1f}",
                f"{x['ttft_p50']:.2f} s",
                f"{x['ttft_p95']:.2f} s",
                f"{x['latency_p50']:.2f} s",
                f"{x['latency_p95']:.2f} s",
                ratio,
                f"{x['ready_s']:.1f} s",
            ]
        )
    columns = [
        "file",
        "concurrency",
        "server",
        "requests",
        "tok/s",
        "TTFT p50",
        "TTFT p95",
        "latency p50",
        "latency p95",
        "tok/s attentive / llama.cpp",
        "launch to ready",
    ]
    notes = "\n".join(f"- {note}" for note in data.get("notes", []))
    return _table(columns, rows) + (f"\n\n{notes}" if notes else "")


def _serve_target_rows(data: dict, run: str, level: int) -> list[list]:
    """Rows for one run at one concurrency: tok/s >= llama-server's, and at the highest level TTFT
    p95 no higher than its."""
    peers = _serve_peers(data)
    ours = {(r["extra"]["file"], r["extra"]["concurrency"]): r for r in data["rows"] if r["impl"] != "llama.cpp"}
    top = level == max(c for _, c in ours)
    label = f"concurrency {level}: tok/s >= {SERVE_VS_LLAMACPP}x llama-server" + (", TTFT p95 no higher" if top else "")
    rows = []
    for (file, concurrency), row in ours.items():
        if concurrency != level:
            continue
        peer = peers.get((file, concurrency))
        if peer is None or not _rate(peer) or _rate(row) is None:
            rows.append([label, run, file.upper(), "no llama-server figure (it failed this level)", "not measured"])
            continue
        ratio = row["rate"] / peer["rate"]
        ok, measured = ratio >= SERVE_VS_LLAMACPP, _x(ratio)
        if top:
            ttft, peer_ttft = row["extra"]["ttft_p95"], peer["extra"]["ttft_p95"]
            ok = ok and ttft <= peer_ttft
            measured += f"; TTFT p95 {ttft:.2f} s against {peer_ttft:.2f} s"
        rows.append([label, run, file.upper(), measured, _verdict(ok)])
    return rows


def llamacpp_serve_targets(data: dict) -> str:
    """The serving targets in both runs (this file's and the run before it, ``_run1``): the highest
    concurrency first, then one client."""
    before = _load(SERVE_RUN1)
    runs = ((before, "1 (weights frozen in)"), (data, "2 (as committed)"))
    levels = sorted({r["extra"]["concurrency"] for r in data["rows"]})
    rows = [row for level in (levels[-1], levels[0]) for d, run in runs for row in _serve_target_rows(d, run, level)]
    table = _table(["target", "run", "file", "measured", "result"], rows)
    return f"{table}\n\n{figures.stamp(before, SERVE_RUN1)} (run 1)"


# ----------------------------------------------------------------------------- per-token profile

PROFILE_CLASSES = ("matmuls", "attention", "norms", "ffn_activation", "rest")


def profile_cpu_decode(data: dict) -> str:
    """ms a token by module class, per variant (``benchmarks/profile_cpu_decode.py``'s table)."""
    rows = []
    for r in data["rows"]:
        if r.get("compiled"):
            cells = ["(one compiled graph)", "", "", "", ""]
        else:
            cells = [f"{r[f'{k}_ms']:.2f}" for k in PROFILE_CLASSES]
        rows.append([r["variant"], f"{r['wall_ms']:.1f}", *cells, f"{r['python_ms']:.2f}"])
    columns = ["variant", "wall", "matmuls", "attention", "norms", "FFN activation", "rest", "Python (cProfile)"]
    return _table(columns, rows, "|---|---:|---:|---:|---:|---:|---:|---:|")


# ----------------------------------------------------------------------------- CTranslate2 and HF


def _columns(spec: dict) -> dict[str, int]:
    return {name: i for i, name in enumerate(spec["columns"])}


def _ct2(data: dict, table: str, row: int, ours: str, peer: str) -> float:
    spec = data["tables"][table]
    col = _columns(spec)
    return spec["rows"][row][col[ours]] / spec["rows"][row][col[peer]]


SMOL_PAIRS = {"attentive fp32": "CTranslate2 fp32", "attentive int8": "CTranslate2 int8"}


def ct2_smollm2(data: dict) -> str:
    """SmolLM2 tok/s per batch; attentive fp32 / int8 with their ratio to CTranslate2 at the same precision."""
    spec = data["tables"]["smollm2"]
    col = _columns(spec)
    rows = []
    for i, row in enumerate(spec["rows"]):
        cells = []
        for name, value in zip(spec["columns"], row):
            if name == "batch":
                cells.append(value)
            elif name in SMOL_PAIRS:
                ratio = value / row[col[SMOL_PAIRS[name]]]
                cells.append(f"{value:.1f} ({ratio:.2f}x{' CT2' if i == 0 else ''})")
            else:
                cells.append(f"{value:.1f}")
        rows.append(cells)
    return _table(spec["columns"], rows, "|" + "---:|" * len(spec["columns"]))


WHISPER_PAIRS = {"attentive fp32 optimised": "CTranslate2 fp32", "attentive int8": "CTranslate2 int8"}


def ct2_whisper(data: dict) -> str:
    """Whisper tiny.en seconds a call; attentive's ratio to CTranslate2 at the same precision (speed-up)."""
    spec = data["tables"]["whisper"]
    col = _columns(spec)
    rows = []
    for i, row in enumerate(spec["rows"]):
        cells = []
        for name, value in zip(spec["columns"], row):
            if name == "clip":
                cells.append(value)
            elif name in WHISPER_PAIRS:
                speedup = row[col[WHISPER_PAIRS[name]]] / value
                cells.append(f"{value:.3f} ({speedup:.2f}x{' CT2' if i == 0 else ''})")
            else:
                cells.append(f"{value:.3f}")
        rows.append(cells)
    return _table(spec["columns"], rows, "|---|" + "---:|" * (len(spec["columns"]) - 1))


def _batch_row(data: dict, batch: int) -> int:
    return [r[0] for r in data["tables"]["smollm2"]["rows"]].index(batch)


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}x"


def ct2_targets(data: dict) -> str:
    """The targets against CTranslate2: SmolLM2 from this file (the final run), Whisper from the run
    before (its code was the same in both: it is not compiled)."""
    before = _load(CT2_RUN_BEFORE)
    rows = []
    b1, b1_before = _batch_row(data, 1), _batch_row(before, 1)
    fp32 = _ct2(data, "smollm2", b1, "attentive fp32", "CTranslate2 fp32")
    fp32_before = _ct2(before, "smollm2", b1_before, "attentive fp32", "CTranslate2 fp32")
    share, share_before = (
        data["figures"]["share_pct"]["attentive_fp32"],
        before["figures"]["share_pct"]["attentive_fp32"],
    )
    bw, bw_before = data["figures"]["bandwidth_gbs"], before["figures"]["bandwidth_gbs"]
    rows.append(
        [
            "SmolLM2 batch 1 fp32 >= 1.5x CTranslate2 fp32, >= 60% of the bandwidth limit",
            f"{fp32:.2f}x; {share}% of {bw} GB/s (the run before: {fp32_before:.2f}x, {share_before}% of {bw_before} GB/s)",
            f"ratio {_verdict(fp32 >= 1.5)}; share {_verdict(share >= 60)} (the run before: "
            f"{'met' if share_before >= 60 else 'missed'}; the share depends on the bandwidth the run reads)",
        ]
    )
    int8 = _ct2(data, "smollm2", b1, "attentive int8", "CTranslate2 int8")
    rows.append(["SmolLM2 batch 1 int8 >= 1.3x CTranslate2 int8", _x(int8), _verdict(int8 >= 1.3)])
    batches = [r[0] for r in data["tables"]["smollm2"]["rows"]]
    final = {b: _ct2(data, "smollm2", _batch_row(data, b), "attentive int4", "attentive int8") for b in batches}
    earlier = {b: _ct2(before, "smollm2", _batch_row(before, b), "attentive int4", "attentive int8") for b in batches}
    alt = data["figures"]["alternated"]
    met = [str(b) for b, r in final.items() if r > 1]
    missed = [str(b) for b, r in final.items() if r <= 1]
    rows.append(
        [
            "int4 faster than int8",
            " / ".join(_x(r) for r in final.values())
            + f" at batch {' / '.join(map(str, batches))}; the run before "
            + " / ".join(_x(r) for r in earlier.values())
            + f"; alternated batch-1 runs {alt['int4_tok_s_low']}-{alt['int4_tok_s_high']} against "
            f"{alt['int8_tok_s_low']}-{alt['int8_tok_s_high']} tok/s",
            f"met at batch {', '.join(met)}" + (f"; not at {', '.join(missed)} (within the noise)" if missed else ""),
        ]
    )
    b16 = _batch_row(data, 16)
    f16 = _ct2(data, "smollm2", b16, "attentive fp32", "CTranslate2 fp32")
    i16 = _ct2(data, "smollm2", b16, "attentive int8", "CTranslate2 int8")
    rows.append(
        [
            "SmolLM2 batch 16 >= 1.0x CTranslate2 at the same precision",
            f"fp32 {_x(f16)}, int8 {_x(i16)}",
            _verdict(min(f16, i16) >= 1.0),
        ]
    )
    whisper = before["tables"]["whisper"]
    col = _columns(whisper)
    for ours, peer, target in (
        ("attentive fp32 optimised", "CTranslate2 fp32", 1.2),
        ("attentive int8", "CTranslate2 int8", 1.0),
    ):
        speedups = [row[col[peer]] / row[col[ours]] for row in whisper["rows"]]
        clips, batch = speedups[:-1], speedups[-1]
        rows.append(
            [
                f"Whisper tiny.en {ours.split()[1]} >= {target}x {peer}",
                f"{_span(clips)} a clip, {_x(batch)} the batch (the run before)",
                _verdict(min(speedups) >= target),
            ]
        )
    table = _table(["target", "measured", "result"], rows)
    return f"{table}\n\n{figures.stamp(before, CT2_RUN_BEFORE)} (the run before)"


# ----------------------------------------------------------------------------- kernels


def _number(value: float | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def cpu_kernels(data: dict) -> str:
    """ms a pass over every linear layer of SmolLM2 at 1 and 16 rows: the kernels attentive runs in
    bold, and the fastest time of each precision and row count."""
    spec = data["tables"]["linear"]
    chosen = set(data.get("chosen", []))
    fastest = {}
    for precision, _, one, _, sixteen in spec["rows"]:
        best = fastest.setdefault(precision, [one, sixteen])
        fastest[precision] = [min(best[0], one), min(best[1], sixteen)]
    rows = []
    for precision, kernel, one, share, sixteen in spec["rows"]:
        cells = [
            f"**{_number(v)}**" if v == fastest[precision][i] else _number(v) for i, v in enumerate((one, sixteen))
        ]
        name = f"**{kernel}**" if kernel in chosen else kernel
        rows.append([precision, name, cells[0], f"{share}%", cells[1]])
    return _table(spec["columns"], rows, "|---|---|---:|---:|---:|")


RENDERERS: dict[str, Callable[[dict], str]] = {
    "llamacpp_bench": llamacpp_bench,
    "llamacpp_targets": llamacpp_targets,
    "llamacpp_serve": llamacpp_serve,
    "llamacpp_serve_targets": llamacpp_serve_targets,
    "profile_cpu_decode": profile_cpu_decode,
    "ct2_smollm2": ct2_smollm2,
    "ct2_whisper": ct2_whisper,
    "ct2_targets": ct2_targets,
    "cpu_kernels": cpu_kernels,
}

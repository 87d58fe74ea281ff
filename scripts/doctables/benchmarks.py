"""Renderers for docs/benchmarks/index.md: the result files of ``benchmarks/`` as Markdown tables.

Every benchmark script that uses ``benchmarks/common.py`` writes one layout (``Report.write``:
``config``, ``notes`` and ``rows`` of ``name``, ``impl``, ``mode``, ``seconds``, ``work``,
``unit``, ``peak_bytes``, ``rate``); the renderers here turn it back into the table the script
printed, ratios included, so a rerun's file drops in where a transcribed one was. The targets
table (``@bench_targets``) computes each measured value from those files and says met or missed.
The other topics' files (llama.cpp, CTranslate2, serving, context memory) have their renderers
beside their guides' (``cpu_inference.py``, ``serving.py``, ``context.py``).

Names start with ``bench_`` so other pages' renderers can keep the plain ones.
"""

from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Any

from attentive import figures

ROOT = Path(__file__).resolve().parents[2]
OURS = "attentive"


# ----------------------------------------------------------------------------- formatting
# The same formats as benchmarks/common.py (fmt_rate, fmt_ms, fmt_bytes), without importing torch.


def _rate(rate: float | None) -> str:
    if rate is None:
        return ""
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e4:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:,.1f}"


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:,.2f}"


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _cell(text: Any) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _table(columns: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + (align or "---|" * len(columns))]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _settings(config: dict) -> str:
    shown = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    return "Settings: " + ", ".join(f"`{k}={v}`" for k, v in shown.items()) + "."


# ----------------------------------------------------------------------------- Report layout


def _rate_of(row: dict) -> float | None:
    if row.get("rate") is not None:
        return row["rate"]
    return row["work"] / row["seconds"] if row.get("work") and row.get("seconds") else None


def ratios(rows: list[dict], row: dict) -> str:
    """This row's speed over each peer's (same mode, or every peer when the row has none), as
    ``Report.ratios`` prints it; '' for peers' rows."""
    rate = _rate_of(row)
    if row["impl"] != OURS or rate is None:
        return ""
    parts = []
    for other in rows:
        other_rate = _rate_of(other)
        if other["impl"] == OURS or other_rate is None:
            continue
        if other.get("mode") == row.get("mode") or not row.get("mode"):
            parts.append(f"{rate / other_rate:.2f}x {other['name']}")
    return ", ".join(parts)


def best_ratios(rows: list[dict]) -> list[str]:
    """Best of ours over the best of each peer, whatever the mode (``Report.best_ratios``)."""
    ours = [r for r in rows if r["impl"] == OURS and _rate_of(r)]
    if not ours:
        return []
    best = max(ours, key=_rate_of)
    lines = []
    for impl in dict.fromkeys(r["impl"] for r in rows if r["impl"] != OURS):
        peers = [r for r in rows if r["impl"] == impl and _rate_of(r)]
        if peers:
            peer = max(peers, key=_rate_of)
            lines.append(
                f"best {OURS} ({best['name']}) / best {impl} ({peer['name']}): {_rate_of(best) / _rate_of(peer):.2f}x"
            )
    return lines


def report(data: dict) -> str:
    """A file in ``benchmarks/common.py``'s layout as the table its script prints."""
    rows = data["rows"]
    unit = next((r.get("unit") for r in rows), "tok") or "tok"
    peak = data.get("peak_flops")
    columns = ["contestant", f"{unit}/s", "ms / call", "peak memory"] + (["MFU"] if peak else [])
    columns.append("ratio (ours / peer, same mode)")
    body = []
    for r in rows:
        if r.get("error"):
            body.append([r["name"], "failed", "", "", *([""] if peak else []), r["error"]])
            continue
        cells = [r["name"], _rate(_rate_of(r)), _ms(r.get("seconds")), _bytes(r.get("peak_bytes"))]
        if peak:
            fpu = r.get("flops_per_unit")
            cells.append(f"{_rate_of(r) * fpu / peak:.1%}" if fpu and _rate_of(r) else "")
        cells.append(ratios(rows, r))
        body.append(cells)
    bullets = best_ratios(rows) + list(data.get("notes") or [])
    text = _settings(data.get("config") or {}) + "\n\n" + _table(columns, body)
    if bullets:
        text += "\n\n" + "\n".join(f"- {_cell(b)}" for b in bullets)
    return text


ATTENTION = ("sdpa", "attention()", "raw module", "MultiHeadAttention", "reference")


def attention(data: dict) -> str:
    """``bench_attention.py``'s file: milliseconds per forward + backward by length, each of ours
    against its floor (``attention()`` against a direct SDPA call, the module against the same
    layers written inline), and peak memory where the file has it."""
    by = {(r["name"].rsplit(" T=", 1)[0], r["mode"]): r for r in data["rows"] if not r.get("error")}
    lengths = sorted({int(r["mode"][2:]) for r in data["rows"]})
    names = [n for n in ATTENTION if any(k[0] == n for k in by)]

    def overhead(a: str, b: str, mode: str) -> str:
        ra, rb = by.get((a, mode)), by.get((b, mode))
        if not (ra and rb and ra.get("seconds") and rb.get("seconds")):
            return "-"
        return f"{ra['seconds'] / rb['seconds'] - 1:+.1%}"

    body = []
    for length in lengths:
        mode = f"T={length}"
        cells = [f"{length:,}"] + [_ms(by[(n, mode)]["seconds"]) if (n, mode) in by else "-" for n in names]
        cells += [overhead("attention()", "sdpa", mode), overhead("MultiHeadAttention", "raw module", mode)]
        body.append(cells)
    columns = ["T"] + [f"{n} ms" for n in names] + ["attention() vs sdpa", "module vs raw"]
    text = _settings(data.get("config") or {}) + "\n\n" + _table(columns, body)
    if any(r.get("peak_bytes") for r in data["rows"]):
        memory = [
            [f"{length:,}"]
            + [_bytes(by[(n, f"T={length}")].get("peak_bytes")) if (n, f"T={length}") in by else "-" for n in names]
            for length in lengths
        ]
        text += "\n\nPeak memory:\n\n" + _table(["T"] + [f"{n}" for n in names], memory)
    notes = [n for n in data.get("notes") or [] if not n.startswith("plot:")]
    if notes:
        text += "\n\n" + "\n".join(f"- {_cell(n)}" for n in notes)
    return text


# ----------------------------------------------------------------------------- targets

_OPS = {"*": operator.mul, "/": operator.truediv}


def _number(data: dict, term: str) -> float:
    term = term.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", term):
        return float(term)
    value = figures.lookup(data, term)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise figures.FigureError(f"{term!r} is {value!r}, not a number")
    return float(value)


def measure(data: dict, value: str | dict) -> float:
    """A measured value from a result file:

    * ``"PATH / PATH"``, ``"PATH * PATH / NUMBER"``: figure paths (``attentive.figures``) and
      numbers, evaluated left to right;
    * ``{"best": [OURS, PEER]}``: the fastest row of impl OURS over the fastest of impl PEER;
    * ``{"max_overhead": [NAME, FLOOR]}``: the largest ``|seconds(NAME T=L) / seconds(FLOOR T=L) - 1|``
      over the lengths L both were measured at (``bench_attention.py``'s rows).
    """
    if isinstance(value, dict) and "best" in value:
        ours, peer = value["best"]
        rates = {
            impl: [_rate_of(r) for r in data["rows"] if r["impl"] == impl and _rate_of(r)] for impl in (ours, peer)
        }
        if not rates[ours] or not rates[peer]:
            raise figures.FigureError(f"no measured rows of {ours!r} and {peer!r}")
        return max(rates[ours]) / max(rates[peer])
    if isinstance(value, dict) and "max_overhead" in value:
        name, floor = value["max_overhead"]
        seconds = {r["name"]: r.get("seconds") for r in data["rows"] if not r.get("error")}
        worst = None
        for row_name, s in seconds.items():
            if row_name.startswith(f"{name} T=") and s:
                base = seconds.get(row_name.replace(f"{name} T=", f"{floor} T=", 1))
                if base:
                    worst = max(worst or 0.0, abs(s / base - 1))
        if worst is None:
            raise figures.FigureError(f"no length with both {name!r} and {floor!r}")
        return worst
    parts = re.split(r" ([*/]) ", str(value))
    result = _number(data, parts[0])
    for op, term in zip(parts[1::2], parts[2::2]):
        result = _OPS[op](result, _number(data, term))
    return result


def _bound(spec: dict) -> tuple[str, float, Any] | None:
    for key, sign, compare in (("at_least", ">=", operator.ge), ("at_most", "<=", operator.le)):
        if key in spec:
            return sign, spec[key], compare
    return None


def _target_cell(spec: dict | None, measured_files: dict[str, dict]) -> str:
    if not spec:
        return "-"
    fmt = spec.get("format") or "{:.2f}"
    bound = _bound(spec)
    short = "{:.0%}" if fmt.endswith("%}") else re.sub(r"\{:[^}]*\}", "{:g}", fmt)  # 1.5x, 55%: the target as set
    goal = f"target {bound[0]} {short.format(bound[1])}" if bound else "no target"
    path = ROOT / spec["file"]
    if not path.is_file():
        return f"{goal}: not measured yet" if bound else "not measured yet"
    data = figures.load(path)
    try:
        value = measure(data, spec["value"])
    except (figures.FigureError, ZeroDivisionError) as err:
        return f"{goal}: not in this run ({_cell(str(err)[:80])})"
    measured_files[spec["file"]] = data
    shown = fmt.format(value)
    if not bound:
        return f"{shown} ({goal})"
    met = bound[2](value, bound[1])
    return f"{shown} ({goal}: **{'met' if met else 'missed'}**)"


def targets(data: dict) -> str:
    """``benchmarks/speed/targets.json``: each target's measured value computed from the result
    files it names (``measure``), and whether it is met, per device; a file not there yet reads
    "not measured yet"."""
    devices = data.get("devices") or {"cpu": "CPU", "gpu": "GPU"}
    measured: dict[str, dict] = {}
    body = [[t["what"]] + [_target_cell(t.get(d), measured) for d in devices] for t in data["targets"]]
    text = _table(["measure"] + list(devices.values()), body)
    if data.get("note"):
        text += f"\n\n{data['note']}"
    if measured:
        sources = []
        for file, result in sorted(measured.items()):
            p = figures.provenance(result)
            sources.append(f"`{file}` ({', '.join(str(x) for x in (p['date'], p['machine']) if x)})")
        text += "\n\nMeasured values from " + "; ".join(sources) + "."
    return text


RENDERERS = {
    "bench_report": report,
    "bench_attention": attention,
    "bench_targets": targets,
}

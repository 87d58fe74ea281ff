"""Tables of the context-memory benchmarks (``benchmarks/context_*.py``), read from the JSON each
script writes into ``benchmarks/context/``: every cell there keeps its raw figures (losses in
nats, seconds, MiB, passkey trials), and these renderers format them as the guide shows them.

    <!--table benchmarks/context/context_sweep.json|@context_sweep-->      bits per character
    <!--table benchmarks/context/context_streaming.json|@context_streaming-->
    <!--table benchmarks/context/context_passkey.json|@context_passkey-->
    <!--table benchmarks/context/context_cost.json|@context_cost-->
"""

from __future__ import annotations

import math

from attentive import figures

SCHEMES = {  # context_sweep.py's scheme names, in the order the guide shows them
    "rope": "RoPE",
    "sinusoidal": "sinusoidal",
    "learned": "learned",
    "alibi": "ALiBi",
    "t5-bias": "T5 bias",
    "xl-rope-m256": "Transformer-XL (RoPE, M = 256)",
}
CACHES = {  # context_streaming.py's cells
    "full": "full (dense)",
    "window": "window {window:,}, no sinks",
    "sinks": "window {window:,} + {sinks} sinks",
}
METHODS = {  # context_passkey.py's methods (Hugging Face's rope_type)
    "none": "no scaling",
    "linear": "position interpolation (linear)",
    "dynamic": "NTK-aware (dynamic)",
    "yarn": "YaRN",
}
MODES = {  # context_cost.py's modes
    "full": "full attention",
    "window-mask": "window {window:,}, banded mask",
    "window-cache": "window {window:,}, window cache",
}


def _markdown(columns: list[str], rows: list[list], align_right: bool = True) -> str:
    """A Markdown table of already formatted cells (numbers right-aligned after the first column)."""
    body = figures.table({"t": {"columns": columns, "rows": rows}}, "t").splitlines()
    if align_right:
        body[1] = "|---|" + "---:|" * (len(columns) - 1)
    return "\n".join(body)


def context_sweep(data: dict) -> str:
    """Bits per character (validation loss / ln 2) of each positional scheme at each evaluation length."""
    lengths = data["settings"]["lengths"]
    rows = []
    for scheme, label in SCHEMES.items():
        cell = data["cells"].get(scheme)
        if cell is None:
            continue
        rows.append([label, *(f"{cell['eval'][str(n)]['loss'] / math.log(2):.3f}" for n in lengths)])
    return _markdown(["bits per character", *(f"{n:,}" for n in lengths)], rows)


def _bin(cell: dict, end: int) -> float:
    return next(ppl for upto, ppl in cell["ppl_per_bin"] if upto == end)


def context_streaming(data: dict) -> str:
    """Perplexity over the whole stream and in three 1,000-token bins, the cache's size at the end
    and the CPU time of each cache."""
    s = data["settings"]
    tokens, size = s["tokens"], s["bin"]
    bins = [8000, 12000, 16000]  # inside the training context, past it, at the end
    columns = [
        "cache",
        f"perplexity, all {tokens:,}",
        *(f"tokens {(b - size) // 1000}k-{b // 1000}k" for b in bins),
        f"cache at {tokens:,}",
        "CPU time",
    ]
    rows = []
    for name, label in CACHES.items():
        cell = data["cells"][name]
        rows.append(
            [
                label.format(**s),
                f"{cell['ppl']:.1f}",
                *(f"{_bin(cell, b):.1f}" for b in bins),
                f"{cell['cache_mib'][-1][1]:.0f} MiB",
                f"{cell['cpu_s']:.0f} s",
            ]
        )
    return _markdown(columns, rows)


def _digits_right(trial: dict) -> bool:
    """The key's five digits came out, though maybe not first (" the13576")."""
    return trial["key"] in trial["answer"].replace(" ", "")


def context_passkey(data: dict) -> str:
    """Passkey retrieval (strict, in bold; digits right, in brackets), the perplexity of the last
    1,024 tokens and the CPU time of each cell, per rotary scaling and length."""
    cells = data["cells"]
    lengths = sorted({c["length"] for c in cells.values()})
    rows = []
    for method, label in METHODS.items():
        row = [label]
        for length in lengths:
            cell = cells.get(f"{method}/{length}")
            if cell is None:
                row.append("= no scaling (by construction)" if method == "dynamic" else "")
                continue
            trials = cell["passkey"]["trials"]
            strict = sum(t["retrieved"] for t in trials)
            digits = sum(_digits_right(t) for t in trials)
            minutes = (cell["passkey"]["cpu_s"] + cell["perplexity"]["cpu_s"]) / 60
            row.append(
                f"**{strict}/{len(trials)}** ({digits}/{len(trials)}), ppl {cell['perplexity']['ppl_last_1k']:.1f}, "
                f"{minutes:.1f} CPU min"
            )
        rows.append(row)
    factor = data["settings"]["factor"]
    return _markdown([f"rope_scaling, factor {factor:g}", *(f"{n:,} tokens" for n in lengths)], rows)


def context_cost(data: dict) -> str:
    """Seconds and peak MiB of one forward pass per mode and length."""
    s = data["settings"]
    rows = []
    for mode, label in MODES.items():
        row = [f"{label.format(**s)}: seconds / MiB"]
        for length in s["lengths"]:
            cell = data["cells"][f"{mode}/{length}"]
            row.append(f"{cell['seconds']:.2f} / {cell['peak_mib']:.0f}")
        rows.append(row)
    return _markdown(["tokens", *(f"{n:,}" for n in s["lengths"])], rows)


RENDERERS = {
    "context_sweep": context_sweep,
    "context_streaming": context_streaming,
    "context_passkey": context_passkey,
    "context_cost": context_cost,
}

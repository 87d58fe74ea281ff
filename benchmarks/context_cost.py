"""Cost against length: time and peak memory of one forward pass, full attention against
sliding-window attention, from 256 to 16,384 tokens.

The model is SmolLM2-135M's shape (30 layers, 576 wide, 9 query / 3 key-value heads; random
weights: cost does not depend on them), fp32, batch 1, the decoder stack without the output head
(whose 49,152-way logits would dominate memory and are the same in every mode). Three ways:

* full: one pass, causal (the fused SDPA kernel, no mask materialised): time O(L^2), memory O(L);
* window, mask: one pass with ``attention_window=W`` (the banded mask, L x L booleans): what a mask
  alone buys (the kernel still visits every query-key pair it is given);
* window, cache: the sequence in chunks of W through a ``SlidingWindowCache(W)`` (each chunk
  attends to at most 2W keys): time O(L W), memory O(W) for attention.

Peak memory is the growth of live C-heap bytes during the call (``benchmarks/common.py``:
``PeakMemory``), weights excluded. Short lengths: median of 3 timed runs after a warm-up; from
4,096 tokens one run, timed and measured for memory together.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/context_cost.py             # ~40 min on 2 shared cores
    OMP_WAIT_POLICY=PASSIVE python benchmarks/context_cost.py --layers 4  # the README's run, ~6 min
    python benchmarks/context_cost.py --lengths 256 512 --window 128 --out /tmp/cost   # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402
from context_common import Results, log  # noqa: E402

import attentive  # noqa: E402
from attentive.nn import SlidingWindowCache  # noqa: E402

MODES = ("full", "window-mask", "window-cache")
LABELS = {
    "full": "full attention (causal kernel)",
    "window-mask": "sliding window, banded mask, one pass",
    "window-cache": "sliding window, window cache, chunks of W",
}


def forward(model, ids: torch.Tensor, mode: str, window: int) -> None:
    with torch.no_grad():
        if mode == "window-cache":
            cache = SlidingWindowCache(window)
            for start in range(0, ids.shape[1], window):
                model.decode(ids[:, start : start + window], cache=cache)
        else:
            model.decode(ids)


def measure(model, ids, mode: str, window: int) -> dict:
    length = ids.shape[1]
    fn = lambda: forward(model, ids, mode, window)  # noqa: E731
    gc.collect()
    if length < 4096:
        times = common.time_runs(fn, "cpu", warmup=1, runs=3)
        peak = common.measure_peak(fn, "cpu")
    else:
        with common.PeakMemory("cpu") as mem:
            t0 = time.perf_counter()
            fn()
            times = [time.perf_counter() - t0]
        peak = mem.bytes
    return {
        "seconds": round(statistics.median(times), 4),
        "times": [round(t, 4) for t in times],
        "peak_mib": round(peak / 2**20, 1) if peak is not None else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192, 16384])
    p.add_argument("--window", type=int, default=1024)
    p.add_argument(
        "--layers",
        type=int,
        default=30,
        help="fewer than SmolLM2's 30 layers: every cost scales with the layer count, the curves' shape does not",
    )
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--out", default=None)
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    settings = {
        "model": f"smollm2-135m shape with {args.layers} layers, random weights, fp32, batch 1, no output head",
        "lengths": args.lengths,
        "window": args.window,
        "layers": args.layers,
    }
    results = Results("context_cost", args.out, settings)
    if args.plot_only:
        results.data = json.loads(results.path.read_text())
        return plot(results)
    cells = results.data["cells"] = results.load_cells()
    torch.manual_seed(0)
    models = {"full": attentive.build("smollm2-135m", max_len=max(args.lengths), num_layers=args.layers).eval()}
    models["window-cache"] = models["full"]
    models["window-mask"] = attentive.build(models["full"].config.replace(attention_window=args.window)).eval()
    models["window-mask"].load_state_dict(models["full"].state_dict())
    # after the models exist: peaks are counted above what the weights hold
    common.setup(argparse.Namespace(device="cpu", small=True, full=False, threads=None, out=str(results.dir)))
    for length in args.lengths:
        ids = torch.randint(0, 49152, (1, length), generator=torch.Generator().manual_seed(length))
        for mode in args.modes:
            key = f"{mode}/{length}"
            if key in cells:
                continue
            cell = {"mode": mode, "length": length, **measure(models[mode], ids, mode, args.window)}
            cells[key] = cell
            log(key, cell)
            results.save()
    plot(results)


def plot(results: Results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, cells = results.data["settings"], results.data["cells"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for mode in MODES:
        rows = sorted((c["length"], c) for c in cells.values() if c["mode"] == mode)
        if not rows:
            continue
        label = LABELS[mode].replace("W", f"W={s['window']:,}")
        left.plot([L for L, _ in rows], [c["seconds"] for _, c in rows], marker="o", label=label)
        right.plot([L for L, _ in rows], [c["peak_mib"] for _, c in rows], marker="o", label=label)
    lengths = s["lengths"]
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [f"{L // 1024}k" if L >= 1024 else str(L) for L in lengths])
        ax.set_xlabel("sequence length (tokens)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_ylabel("seconds per forward pass (log)")
    right.set_ylabel("peak memory above the weights, MiB (log)")
    left.legend(fontsize=8)
    m = results.data["machine"]
    layers = s.get("layers", 30)
    fig.suptitle(
        f"Cost of one forward pass, SmolLM2-135M shape ({layers} of its 30 layers), fp32, batch 1 ({m['cpu']}, {m['cores']} cores)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(results.png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

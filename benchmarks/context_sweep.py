"""Perplexity against evaluation length, the ALiBi paper's figure, on Tiny Shakespeare characters.

Six character models are trained with the ``shakespeare-char`` recipe at context 256 and the same
budget in steps (so a busy machine changes the time, not the result), differing only in how
positions enter: sinusoidal, learned, RoPE, ALiBi, T5 relative bias, and Transformer-XL
recurrence (RoPE with a segment memory of M = 256); the sinusoidal model scales its embeddings by
sqrt(d_model), as the paper does. Each is then scored on the validation split
in non-overlapping blocks of 256, 512, 1,024, 2,048 and 4,096 characters (every character
predicted once, from the characters before it in its block; fp32). The models are built with a
4,096-row position table (``max_len=4096``) so the absolute kinds can be run past 256 at all:
rows 257 .. 4,096 are never trained (they keep their initialisation, shrunk by weight decay).
Transformer-XL reads each block in 256-character segments with its memory, so each of its
layers attends at most 512 characters back at any block length (the memory's own states saw
further: the receptive field grows with depth, as in the paper).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/context_sweep.py                 # ~6 x 4 min + evaluation
    python benchmarks/context_sweep.py --tiny --out /tmp/sweep                 # seconds: a smoke run

Writes ``context_sweep.json`` and ``context_sweep.png``; a scheme whose run folder already holds
a finished run is evaluated without training again.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from context_common import Results, log, timed  # noqa: E402

from attentive.checkpoint import load_model  # noqa: E402
from attentive.evaluate.perplexity import perplexity  # noqa: E402
from attentive.recipes import get_recipe  # noqa: E402
from attentive.train.trainer import Trainer  # noqa: E402

SCHEMES = {  # name -> model overrides of the recipe
    # the paper's sinusoids are added to embeddings scaled by sqrt(d_model) (section 3.4); unscaled
    # (the recipe's GPT-2 style init, std 0.02) the table drowns the tokens and training crawls
    "sinusoidal": {"positional": "sinusoidal", "scale_embedding": True},
    "learned": {"positional": "learned"},
    "rope": {"positional": "rope"},
    "alibi": {"positional": "alibi"},
    "t5-bias": {"positional": "relative"},
    "xl-rope-m256": {"positional": "rope", "memory_len": 256},
}
LABELS = {
    "sinusoidal": "Sinusoidal",
    "learned": "Learned",
    "rope": "RoPE",
    "alibi": "ALiBi",
    "t5-bias": "T5 bias",
    "xl-rope-m256": "Transformer-XL (RoPE, M=256)",
}


def settings(args) -> dict:
    if args.tiny:
        return {
            "recipe": "shakespeare-char",
            "steps": 20,
            "block": 64,
            "lengths": [64, 128, 256],
            "max_len": 256,
            "model": {"num_layers": 1, "d_model": 32, "num_heads": 2, "d_ff": 64},
            "eval_tokens": 4000,
            "seed": args.seed,
        }
    return {
        "recipe": "shakespeare-char",
        "steps": args.steps,
        "block": 256,
        "lengths": args.lengths,
        "max_len": max(args.lengths),
        "model": {},
        "eval_tokens": None,
        "seed": args.seed,
    }


def overrides(s: dict, scheme: str, out_dir: Path) -> dict:
    model = dict(SCHEMES[scheme])
    if "memory_len" in model:
        model["memory_len"] = s["block"]
    return {
        **s["model"],
        **model,
        "max_len": s["max_len"],
        "block_size": s["block"],
        "max_steps": s["steps"],
        "max_minutes": None,
        "eval_every": s["steps"],
        "checkpoint_every": s["steps"],
        "log_every": 100,
        "progress": False,
        "out_dir": str(out_dir),
        "seed": s["seed"],
    }


def train_or_load(s: dict, scheme: str, runs: Path, cell: dict):
    """The trained model (trained now, or read back from a finished run folder) and its task."""
    out_dir = runs / scheme
    recipe = get_recipe(s["recipe"]).build(overrides(s, scheme, out_dir))
    if (out_dir / "results.json").is_file() and "train" in cell:
        log(scheme, "already trained: loading", out_dir)
        return load_model(out_dir / "checkpoints" / f"step-{s['steps']:07d}"), recipe.task
    log(scheme, f"training {s['steps']} steps ->", out_dir)
    record = {"params": sum(p.numel() for p in recipe.model.parameters())}
    with timed(record):
        result = Trainer(recipe.task, recipe.model, recipe.train_config).fit(overwrite=True)
    record.update(val_loss_at_block=result.get("val_loss"), precision=recipe.train_config.precision)
    cell["train"] = record
    log(scheme, "trained:", record)
    return recipe.model, recipe.task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps per model (same for all)")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/context-sweep", help="run folders of the trained models")
    p.add_argument("--out", default=None, help="folder for the JSON and PNG (default benchmarks/context)")
    p.add_argument("--tiny", action="store_true", help="a 1-layer model, 20 steps, short lengths: a smoke run")
    p.add_argument("--tokens-per-batch", type=int, default=8192, help="evaluation batch = this / block length")
    p.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    args = p.parse_args()
    s = settings(args)
    results = Results("context_sweep" + ("_tiny" if args.tiny else ""), args.out, s)
    if args.plot_only:
        results.data = json.loads(results.path.read_text())
        return plot(results)
    cells = results.data["cells"] = results.load_cells()
    runs = Path(args.runs + ("-tiny" if args.tiny else ""))
    for scheme in args.schemes:
        cell = cells.setdefault(scheme, {})
        model, task = train_or_load(s, scheme, runs, cell)
        results.save()
        model = model.float().eval()
        tokens = task.val_tokens if s["eval_tokens"] is None else task.val_tokens[: s["eval_tokens"]]
        cell.setdefault("eval", {})
        for length in s["lengths"]:
            if str(length) in cell["eval"]:
                continue
            record = {}
            with timed(record):
                result = perplexity(
                    model, tokens, block_size=length, batch_size=max(1, args.tokens_per_batch // length)
                )
            record.update(loss=round(result.loss, 5), ppl=round(result.perplexity, 4), tokens=result.tokens)
            cell["eval"][str(length)] = record
            log(scheme, length, record)
            results.save()
    plot(results)
    log("wrote", results.path, results.png)


def plot(results: Results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, cells = results.data["settings"], results.data["cells"]
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    values = []
    for scheme, cell in cells.items():
        points = sorted((int(L), e["loss"] / math.log(2)) for L, e in cell.get("eval", {}).items())
        if points:
            label = LABELS.get(scheme, scheme).replace("M=256", f"M={s['block']}")
            ax.plot(*zip(*points), marker="o", label=label)
            values += [v for _, v in points]
    ax.axvline(s["block"], color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

    low, high = min(values), max(values)
    nice = [x / 10 for x in range(10, 30, 2)] + [x / 2 for x in range(6, 40)]  # 1.0, 1.2, .. 2.8, 3.0, 3.5, ..
    ax.yaxis.set_major_locator(FixedLocator([t for t in nice if low * 0.97 <= t <= high * 1.03]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
    ax.set_xticks(s["lengths"], [str(L) for L in s["lengths"]])
    ax.set_xlabel(f"evaluation length (characters per block; dotted: the training length, {s['block']})")
    ax.set_ylabel("validation bits per character (log scale)")
    m = results.data["machine"]
    ax.set_title(
        f"Tiny Shakespeare, char models trained at {s['block']} for {s['steps']} steps\n{m['cpu']}, {m['cores']} cores",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(results.png, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

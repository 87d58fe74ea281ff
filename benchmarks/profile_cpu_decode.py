"""Where a decoded token's time goes on CPU: SmolLM2-135M at batch 1, per token.

Three views of the same decoding (a prompt, then ``--tokens`` greedy steps):

* **by module class**, timed with ``time.perf_counter_ns`` in forward hooks (about a
  microsecond a call, so the figures are the wall time the classes take): **matmuls** (linear
  layers and the head), **attention** (the attention module without its projections: RoPE,
  the KV cache, the product itself), **norms** (RMSNorm), **FFN activation** (SiLU x up, the
  feed-forward module without its projections), and **rest** (embedding, residual additions,
  masks, the decoding loop's own tensors: the step's wall time minus the classes);
* **Python**: the time ``cProfile`` finds in Python functions' own code (the interpreter's
  share; the C++ dispatcher's share of each op is inside the classes above), and the top
  functions;
* ``torch.profiler``: the top ops by their own time (profiling adds several microseconds to
  each op, so small ops look larger there than they are).

Variants: the plain model (``from_pretrained(..., optimize=False)``, dynamic cache); the default
path whole (``from_pretrained`` at the file's precision, the ``Engine`` in slots with its sampler,
eager and compiled); and optimised fp32 / int8 /
int4 (``from_pretrained(..., quantize=)``, static cache, eager; ``--compiled int8`` adds the
compiled static step, which has no modules left to time: its torch.profiler table shows the
compiled graph, the custom ops, SDPA and the guards).

    python benchmarks/profile_cpu_decode.py   # import attentive sets OMP_WAIT_POLICY=PASSIVE

Results: ``profile_cpu_decode.md`` (the table, then each variant's cProfile and torch.profiler
tops) and ``profile_cpu_decode.json`` (the table's figures with the command, commit, date,
machine and torch version; the documentation renders its table from it) in ``--out``.
"""

from __future__ import annotations

import attentive  # noqa: F401  (before torch: OpenMP's threads wait passively, as in attentive's command line)
import argparse
import cProfile
import io
import json
import os
import pstats
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

import context_common  # benchmarks/: the machine's description, as the other benchmarks record it
import torch
from torch.profiler import ProfilerActivity, profile

from attentive.decode import DecodeBatch
from attentive.nn import GatedFeedForward, MultiHeadAttention, RMSNorm
from attentive.nn.quant import PanelLinear

CLASSES = {
    PanelLinear: "matmuls",
    torch.nn.Linear: "matmuls",
    MultiHeadAttention: "attention",
    RMSNorm: "norms",
    GatedFeedForward: "FFN activation",
}


class ClassTimer:
    """Wall time per module class, by forward hooks; a class's time excludes the time of timed
    modules inside it (the projections inside attention and the FFN)."""

    def __init__(self, model):
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []  # [label, start ns, time of timed children]
        self.handles = []
        for module in model.modules():
            label = CLASSES.get(type(module))
            if label is None and module is getattr(model, "head", None):
                label = "matmuls"
            if label is not None:
                self.handles.append(module.register_forward_pre_hook(self._pre(label)))
                self.handles.append(module.register_forward_hook(self._post))

    def _pre(self, label):
        def hook(module, args):
            self.stack.append([label, time.perf_counter_ns(), 0])

        return hook

    def _post(self, module, args, out):
        label, start, children = self.stack.pop()
        spent = time.perf_counter_ns() - start
        self.totals[label] += (spent - children) / 1e6
        if self.stack:
            self.stack[-1][2] += spent

    def remove(self):
        for h in self.handles:
            h.remove()


def python_own_time(stats: pstats.Stats) -> float:
    """Seconds cProfile spent in Python functions' own code (built-in calls excluded)."""
    return sum(tt for (file, _, _), (_, _, tt, _, _) in stats.stats.items() if file != "~")


def decode_loop(model, prompt, steps, cache, compiled=False):
    batch = DecodeBatch(model, cache=cache, compile=compiled)

    def run():
        logits = batch.start([prompt], max_new_tokens=steps + 1)
        for _ in range(steps):
            logits = batch.step(logits.argmax(-1))

    return run


def engine_loop(model, prompt, steps, compiled):
    """The default path, whole: the engine (slots, sampler, stop checks) around the model."""
    from attentive.decode import Engine, GenerationConfig, Request

    engine = Engine(model, compile=compiled)
    config = GenerationConfig(max_new_tokens=steps, temperature=0, stop_tokens=())

    def run():
        engine.add(Request(prompt, config))
        while not engine.idle:
            engine.step()

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument(
        "--compiled",
        default="int8",
        help="modes whose compiled static step is profiled too (comma-separated; '' for none; default int8)",
    )
    p.add_argument("--out", default=os.environ.get("OUT") or str(Path(__file__).parent / "results"))
    args = p.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)

    from attentive import from_pretrained
    from attentive.interop.locate import smollm2_gguf

    path = smollm2_gguf(required=True)
    base = from_pretrained(path, optimize=False)
    prompt = base.tokenizer.encode(
        "The history of the Roman Empire spans many centuries. It began when Augustus "
        "became the first emperor, and it grew"
    )[:32]
    variants = [("plain (optimize=False, dynamic cache)", base.model, "dynamic", False)]
    default = from_pretrained(path).model  # the file's own precision (Q4_1: int4)
    variants += [
        (f"default: {default.inference}, engine + slots, eager", default, "engine", False),
        (f"default: {default.inference}, engine + slots, compiled", default, "engine", True),
    ]
    for q in ("fp32", "int8", "int4"):
        model = from_pretrained(path, quantize=q).model
        variants.append((f"{q} optimised (static cache, eager)", model, "static", False))
        if q in args.compiled.split(","):
            variants.append((f"{q} optimised (static cache, compiled)", model, "static", True))
    lines = [
        f"### Per-token time, SmolLM2-135M, batch 1 ({args.tokens} tokens after a {len(prompt)}-token prompt)",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per token (prompt included)",
        "",
    ]
    keys = ("matmuls", "attention", "norms", "FFN activation")
    table = [
        "| variant | wall | matmuls | attention | norms | FFN activation | rest | Python (cProfile) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    details = []
    rows = []  # the table's figures, for profile_cpu_decode.json
    for name, model, cache, compiled in variants:
        if cache == "engine":
            run = engine_loop(model, prompt, args.tokens, compiled)
        else:
            run = decode_loop(model, prompt, args.tokens, cache, compiled)
        run()
        run()
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            run()
            walls.append((time.perf_counter() - t0) / args.tokens * 1e3)
        wall = sorted(walls)[1]
        pr = cProfile.Profile()
        pr.enable()
        run()
        pr.disable()
        stats = pstats.Stats(pr)
        python = python_own_time(stats) / args.tokens * 1e3
        stream = io.StringIO()
        pstats.Stats(pr, stream=stream).sort_stats("tottime").print_stats(12)
        details.append(
            f"#### {name}: cProfile, top functions by own time ({args.tokens} tokens)\n\n```\n"
            + "\n".join(
                line
                for line in stream.getvalue().splitlines()
                if line.strip()
                and "function calls" not in line
                and "Ordered by" not in line
                and "List reduced" not in line
            )
            + "\n```"
        )
        row = {"variant": name, "compiled": compiled, "wall_ms": wall, "python_ms": python}
        if compiled:
            table.append(f"| {name} | {wall:.1f} | (one compiled graph) | | | | | {python:.2f} |")
            row.update({f"{k}_ms": None for k in ("matmuls", "attention", "norms", "ffn_activation", "rest")})
        else:
            timer = ClassTimer(model)
            t0 = time.perf_counter()
            run()
            hooked = (time.perf_counter() - t0) / args.tokens * 1e3
            timer.remove()
            per = {k: timer.totals[k] / args.tokens for k in keys}
            rest = hooked - sum(per.values())
            table.append(
                f"| {name} | {wall:.1f} | "
                + " | ".join(f"{per[k]:.2f}" for k in keys)
                + f" | {rest:.2f} | {python:.2f} |"
            )
            row.update({f"{k.replace(' ', '_').lower()}_ms": per[k] for k in keys})
            row["rest_ms"] = rest
        rows.append(row)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        details.append(
            f"#### {name}: torch.profiler, top ops by own time ({args.tokens} tokens)\n\n```\n"
            f"{prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=10)}\n```"
        )
        print(table[-1], flush=True)
    text = "\n".join(lines + table + [""] + details) + "\n"
    (out_dir / "profile_cpu_decode.md").write_text(text)
    result = {
        "benchmark": "profile_cpu_decode",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "commit": context_common.git_commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": context_common.machine(),
        "torch": torch.__version__,
        "tokens": args.tokens,
        "prompt_tokens": len(prompt),
        "threads": torch.get_num_threads(),
        "unit": "ms per token (prompt included)",
        "rows": rows,
    }
    (out_dir / "profile_cpu_decode.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()

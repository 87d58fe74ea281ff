"""Where a decoded token's time goes on CPU: SmolLM2-135M at batch 1, per token.

Two views of the same decoding (a 32-token prompt, then ``--tokens`` steps, greedy):

* ``torch.profiler`` with a range around every module call (forward hooks), so each op's time
  lands in one class: **matmuls** (the linear layers and the head), **attention** (the
  attention module without its projections: RoPE, the KV cache, SDPA), **norms** (RMSNorm),
  **FFN activation** (SiLU x up), **other ops** (embedding, residual adds, masks, the engine's
  own tensors), and **Python / dispatch**: the time no op was running (the interpreter, module
  calls, the dispatcher), i.e. wall time minus the ops' own time. The hooks cost time
  themselves, so the shares are read against the instrumented wall time; the uninstrumented
  time per token is printed beside it;
* ``cProfile``: the Python functions that take the most time of their own.

Variants: the model as loaded (``from_pretrained``, dynamic cache), and optimised fp32 / int8 /
int4 (``from_pretrained(..., quantize=)``, static cache, eager; ``--compiled`` adds the
compiled step, whose profile has no modules left: the compiled graph, the custom ops, SDPA and
guard evaluation are listed as they are).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/profile_cpu_decode.py
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from attentive.decode import DecodeBatch
from attentive.nn import GatedFeedForward, MultiHeadAttention, RMSNorm
from attentive.nn.quant import PanelLinear

CLASSES = {PanelLinear: "matmul", torch.nn.Linear: "matmul", MultiHeadAttention: "attention",
           RMSNorm: "norm", GatedFeedForward: "ffn"}


def instrument(model) -> list:
    """A record_function range around every module of the classes above (and the head)."""
    handles = []

    def add(module, label):
        def pre(mod, args):
            mod._range = record_function(f"#{label}")
            mod._range.__enter__()

        def post(mod, args, out):
            mod._range.__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    for module in model.modules():
        for cls, label in CLASSES.items():
            if type(module) is cls:
                add(module, label)
    if not isinstance(model.head, PanelLinear):
        add(model.head, "matmul")
    return handles


def breakdown(prof, steps: int, wall: float) -> dict[str, float]:
    """ms per token by class (see the module docstring): each top-level op's time goes to the
    innermost module range around it."""
    names = {"ffn": "FFN activation", "norm": "norms", "matmul": "matmuls", "attention": "attention"}
    out: dict[str, float] = defaultdict(float)
    for e in prof.events():
        if e.device_type.name != "CPU" or e.name.startswith("#"):
            continue
        label, parent, nested = None, e.cpu_parent, False
        while parent is not None:
            if not parent.name.startswith("#"):
                nested = True  # inside another op: counted in that op's time
                break
            label = label or parent.name[1:]
            parent = parent.cpu_parent
        if not nested:
            out[names.get(label, "other ops")] += e.time_range.elapsed_us() / 1e3
    out["Python / dispatch"] = wall * 1e3 - sum(out.values())
    return {k: v / steps for k, v in out.items()}


def decode_loop(model, prompt, steps, cache, compiled=False):
    batch = DecodeBatch(model, cache=cache, compile=compiled)

    def run():
        logits = batch.start([prompt], max_new_tokens=steps + 1)
        for _ in range(steps):
            logits = batch.step(logits.argmax(-1))

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--compiled", action="store_true", help="also profile the compiled static step")
    p.add_argument("--out", default=os.environ.get("OUT") or str(Path(__file__).parent / "results"))
    args = p.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)

    from attentive import from_pretrained
    from attentive.interop.locate import smollm2_gguf

    path = smollm2_gguf(required=True)
    base = from_pretrained(path)
    prompt = base.tokenizer.encode("The history of the Roman Empire spans many centuries. It began when Augustus "
                                   "became the first emperor, and it grew")[:32]
    variants = [("as loaded (dynamic cache)", base.model, "dynamic", False)]
    for q in ("fp32", "int8", "int4"):
        model = from_pretrained(path, quantize=q).model
        variants.append((f"{q} optimised (static cache, eager)", model, "static", False))
        if args.compiled:
            variants.append((f"{q} optimised (static cache, compiled)", model, "static", True))
    lines = [f"### Per-token time, SmolLM2-135M, batch 1 ({args.tokens} tokens after a {len(prompt)}-token prompt)",
             "", f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per token (prompt included)", ""]
    table = ["| variant | wall (no hooks) | wall (hooks) | matmuls | attention | norms | FFN activation | other ops "
             "| Python / dispatch |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    details = []
    for name, model, cache, compiled in variants:
        run = decode_loop(model, prompt, args.tokens, cache, compiled)
        run()
        run()
        t0 = time.perf_counter()
        run()
        plain = (time.perf_counter() - t0) / args.tokens * 1e3
        handles = [] if compiled else instrument(model)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            run()
            wall = time.perf_counter() - t0
        for h in handles:
            h.remove()
        if compiled:
            table.append(f"| {name} | {plain:.1f} | {wall / args.tokens * 1e3:.1f} | see below | | | | | |")
            details.append(f"#### {name}: torch.profiler, top ops by own time\n\n```\n"
                           f"{prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=10)}\n```")
        else:
            b = breakdown(prof, args.tokens, wall)
            cells = [b.get(k, 0.0) for k in ("matmuls", "attention", "norms", "FFN activation", "other ops",
                                             "Python / dispatch")]
            table.append(f"| {name} | {plain:.1f} | {wall / args.tokens * 1e3:.1f} | "
                         + " | ".join(f"{c:.2f}" for c in cells) + " |")
        pr = cProfile.Profile()
        pr.enable()
        run()
        pr.disable()
        stream = io.StringIO()
        pstats.Stats(pr, stream=stream).sort_stats("tottime").print_stats(12)
        details.append(f"#### {name}: cProfile, top functions by own time ({args.tokens} tokens)\n\n```\n"
                       + "\n".join(stream.getvalue().splitlines()[4:]) + "\n```")
        print(table[-1], flush=True)
    text = "\n".join(lines + table + [""] + details) + "\n"
    (out_dir / "profile_cpu_decode.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

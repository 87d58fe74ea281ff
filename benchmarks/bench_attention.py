"""Attention alone, forward + backward, over sequence lengths: attentive vs raw SDPA vs the reference.

Causal self-attention at GPT-2's head shape (12 heads of 64), bf16 on CUDA, fp32 on CPU, with
the batch shrinking as the length grows so every point holds the same number of tokens.

* ``sdpa``: ``F.scaled_dot_product_attention(q, k, v, is_causal=True)`` called directly;
* ``attention()``: attentive's function on the same q, k, v (its checks and dispatch on top);
* ``MultiHeadAttention``: attentive's module (projections, head split, attention, merge);
* ``raw module``: the same four Linear layers and a direct SDPA call, written inline: the floor
  the module is held to (target: within 5% on GPU);
* ``reference``: the paper's formula written out (``impl="reference"``), skipped where its
  ``(B, H, T, T)`` scores would not fit.

Writes ``attention.png`` (time and peak memory against length) beside the tables.

    python benchmarks/bench_attention.py --device cpu
    python benchmarks/bench_attention.py --device cuda
"""

from __future__ import annotations

import common
import torch
import torch.nn.functional as F
from torch import nn

from attentive.nn import MultiHeadAttention, attention

FULL = dict(heads=12, head_dim=64, tokens=16384, lengths=(256, 512, 1024, 2048, 4096, 8192, 16384))
SMALL = dict(heads=12, head_dim=64, tokens=2048, lengths=(128, 256, 512, 1024, 2048))
CONTESTANTS = (
    ("sdpa", "sdpa"),
    ("attention()", common.OURS),
    ("raw module", "raw module"),
    ("MultiHeadAttention", common.OURS),
    ("reference", "reference"),
)


class RawModule(nn.Module):
    """Projections + one direct SDPA call: what a hand-written attention layer costs."""

    def __init__(self, mha: MultiHeadAttention):
        super().__init__()
        self.mha, self.heads, self.head_dim = mha, mha.num_heads, mha.head_dim

    def forward(self, x):
        b, t, _ = x.shape
        m = self.mha
        q, k, v = (p(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for p in (m.q_proj, m.k_proj, m.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return m.out_proj(out.transpose(1, 2).reshape(b, t, -1))


def fits_reference(batch, heads, length, device) -> bool:
    """The reference keeps scores, weights and their grads: ~12 bytes per score element, twice."""
    need = batch * heads * length * length * 24
    if device == "cuda":
        return need < 0.6 * torch.cuda.mem_get_info()[0]
    return need < 2 * 2**30


def measure(kind: str, batch: int, length: int, cfg, args) -> common.Row:
    device, dtype = args.device, (torch.bfloat16 if args.device == "cuda" else torch.float32)
    heads, head_dim = cfg["heads"], cfg["head_dim"]
    if kind == "reference" and not fits_reference(batch, heads, length, device):
        raise MemoryError(f"skipped: (B, H, T, T) scores need ~{batch * heads * length * length * 24 / 2**30:.0f} GiB")
    if kind in ("MultiHeadAttention", "raw module"):
        mha = MultiHeadAttention(heads * head_dim, heads).to(device, dtype)
        module = mha if kind == "MultiHeadAttention" else RawModule(mha)
        x = torch.randn(batch, length, heads * head_dim, device=device, dtype=dtype, requires_grad=True)
        grad = torch.randn_like(x)

        def step():
            out = module(x, is_causal=True)[0] if kind == "MultiHeadAttention" else module(x)
            out.backward(grad)
    else:
        shape = (batch, heads, length, head_dim)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        grad = torch.randn(shape, device=device, dtype=dtype)

        def step():
            if kind == "sdpa":
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                out = attention(q, k, v, is_causal=True, impl="reference" if kind == "reference" else "auto")[0]
            out.backward(grad)

    common.time_runs(step, device, args.warmup, 0)
    times = common.time_runs(step, device, 0, args.runs)
    peak = common.measure_peak(step, device)
    return common.Row("", "", seconds=common.median(times), work=batch * length, peak_bytes=peak, times=times)


def summary(report: common.Report, lengths) -> list[str]:
    """One line per length: each contestant's ms, and attentive's overhead over its floor."""
    by = {(r.name.rsplit(" T=", 1)[0], r.mode): r for r in report.rows}
    names = [n for n, _ in CONTESTANTS]
    lines = [
        "| T | " + " | ".join(f"{n} ms" for n in names) + " | attention() vs sdpa | module vs raw |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for length in lengths:
        mode = f"T={length}"
        cells = []
        for n in names:
            r = by.get((n, mode))
            cells.append(common.fmt_ms(r.seconds) if r and r.seconds else "-")

        def overhead(a, b):
            ra, rb = by.get((a, mode)), by.get((b, mode))
            return f"{ra.seconds / rb.seconds - 1:+.1%}" if ra and rb and ra.seconds and rb.seconds else "-"

        cells += [overhead("attention()", "sdpa"), overhead("MultiHeadAttention", "raw module")]
        lines.append(f"| {length} | " + " | ".join(cells) + " |")
    return lines


def plot(report: common.Report, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, _ in CONTESTANTS:
        rows = [r for r in report.rows if r.name.rsplit(" T=", 1)[0] == name and r.seconds]
        if not rows:
            continue
        lengths = [int(r.mode[2:]) for r in rows]
        ax_t.plot(lengths, [r.seconds * 1e3 for r in rows], marker="o", label=name)
        ax_m.plot(lengths, [(r.peak_bytes or 0) / 2**20 for r in rows], marker="o", label=name)
    for ax, label in ((ax_t, "ms per forward + backward"), (ax_m, "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (batch x T fixed)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(
        f"causal attention, {report.config['heads']} heads x {report.config['head_dim']}: "
        f"{common.device_name(report.args.device)}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    args = common.setup(p.parse_args())
    cfg = dict(SMALL if args.small else FULL)
    args.warmup = args.warmup if args.warmup is not None else 3
    args.runs = args.runs or (5 if args.small else 10)
    report = common.Report(
        "attention",
        "Causal attention forward + backward vs sequence length",
        args,
        dict(
            heads=cfg["heads"],
            head_dim=cfg["head_dim"],
            tokens_per_call=cfg["tokens"],
            dtype="bf16" if args.device == "cuda" else "fp32",
        ),
    )
    report.best_ratios = lambda: []  # ratios only make sense at equal length: see the column
    functional = ("sdpa", "attention()", "reference")
    report.peer_filter = lambda row, other: (row.name.startswith(functional)) == (other.name.startswith(functional))
    for length in cfg["lengths"]:
        batch = max(1, cfg["tokens"] // length)
        for name, impl in CONTESTANTS:
            report.run(f"{name} T={length}", impl, f"T={length}", lambda: measure(name, batch, length, cfg, args))
    report.notes.append("ratios pair rows of the same length: functions with functions, modules with modules")
    report.extra_md = ["", "Milliseconds per forward + backward (median):", ""] + summary(report, cfg["lengths"])
    plot(report, args.out / "attention.png")
    report.notes.append(f"plot: {args.out / 'attention.png'}")
    report.finish()


if __name__ == "__main__":
    main()

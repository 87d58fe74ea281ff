"""Which kernel computes a linear layer fastest at decoding sizes on CPU: the measurement behind
attentive's choice (``attentive.nn.quant``, README "CPU inference").

Every linear layer of SmolLM2-135M (30 layers of fused q/k/v 576->960, o 576->576, fused
gate/up 576->3072, down 1536->576, and the 49,152 x 576 head: 513 MiB in fp32, far more than
the caches hold) is applied once to ``M`` rows, as one decoding step does, and the time of the
whole pass is compared with the time the machine needs to read the weights once (its measured
read bandwidth). Contestants, each where it is installed:

* fp32: ``F.linear`` (MKL), attentive's ``PackedProjection`` (batched product over column
  blocks), attentive's panel kernel;
* int8: PyTorch's ``_weight_int8pack_mm`` (per-channel weight-only), ``torch._int_mm``
  (int8 x int8 with the activations rounded per row), fbgemm's dynamic
  quantised linear (``torch.ao`` ``quantize_dynamic``: int8 activations and weights),
  torchao's ``Int8WeightOnlyConfig`` and ``Int8DynamicActivationInt8WeightConfig``, attentive's
  panel kernel (per-channel; float activations, and int8 activations in blocks of 32 where
  the CPU has AVX512-VNNI);
* int4: PyTorch's ``_weight_int4pack_mm_for_cpu`` (group 32), torchao's
  ``IntxWeightOnlyConfig(int4, group 32)``, attentive's panel kernel (group 32, Q4_1 layout;
  float and int8 activations).

Two more parts (``--parts``): ``attention``, one query per row against a key cache (SmolLM2's
9 query / 3 key-value heads of 64 at several lengths, Whisper tiny's 6 heads over its 1,500
encoder positions), attentive's ``attend_one`` against the same product written out in PyTorch
ops (matmul + softmax + matmul, on PyTorch's threads) and SDPA; ``gemm``, the many-row
products of an encoder (Whisper tiny's at 1,500 positions, fused q/k/v, o, FFN up and down),
``F.linear`` (MKL) against oneDNN (``kernels.gemm``).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_kernels.py            # M = 1 and 16
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_kernels.py --parts attention,gemm
"""

from __future__ import annotations

import time
import warnings

import common
import torch
import torch.nn.functional as F

from attentive.nn import kernels
from attentive.nn.attention import _one_query_written_out
from attentive.nn.packed import PackedProjection
from attentive.nn.quant import PanelLinear

LAYERS = 30
SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)]  # (N, K) per layer, q/k/v and gate/up fused
HEAD = (49152, 576)


def weights() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = [torch.randn(n, k, generator=g) * 0.02 for _ in range(LAYERS) for n, k in SHAPES]
    return out + [torch.randn(*HEAD, generator=g) * 0.02]


def best_of(fn, runs: int) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def contestants(ws: list[torch.Tensor]):
    """(name, impl, precision, make) where make() returns (apply(x_by_K), bytes read per pass)."""

    def fp32_linear():
        return (lambda xs: [F.linear(xs[w.shape[1]], w) for w in ws]), sum(w.numel() * 4 for w in ws)

    def packed():
        ps = [PackedProjection(w, None) for w in ws]
        return (lambda xs: [p(xs[p.in_features]) for p in ps]), sum(p.packed.numel() * 4 for p in ps)

    def panel(mode, act="float"):
        def make():
            ls = [PanelLinear.from_weight(w, None, mode, act=act) for w in ws]
            return (lambda xs: [m(xs[m.in_features]) for m in ls]), sum(m.weight_bytes() for m in ls)

        return make

    def int8pack():
        qs = []
        for w in ws:
            scale = w.abs().amax(dim=1) / 127
            qs.append(((w / scale[:, None]).round().to(torch.int8), scale))
        op = torch.ops.aten._weight_int8pack_mm
        return (lambda xs: [op(xs[q.shape[1]], q, s) for q, s in qs]), sum(q.numel() + s.numel() * 4 for q, s in qs)

    def int_mm():
        """torch._int_mm (int8 x int8 -> int32): x rounded per row, weights per channel, K-major."""
        qs = []
        for w in ws:
            scale = w.abs().amax(dim=1) / 127
            qs.append(((w / scale[:, None]).round().to(torch.int8).t().contiguous(), scale))

        def apply(xs):
            out = []
            for q, s in qs:
                x = xs[q.shape[0]]
                xs_scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
                xq = (x / xs_scale).round().to(torch.int8)
                out.append(torch._int_mm(xq, q).float() * xs_scale * s)
            return out

        return apply, sum(q.numel() + s.numel() * 4 for q, s in qs)

    def int4pack():
        packs = []
        for w in ws:
            n, k = w.shape
            q = torch.randint(0, 16, (n, k), dtype=torch.int32)
            packs.append((torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), torch.rand(k // 32, n, 2), k))
        op = torch.ops.aten._weight_int4pack_mm_for_cpu
        return (lambda xs: [op(xs[k], p, 32, sz) for p, sz, k in packs]), sum(
            p.numel() + sz.numel() * 4 for p, sz, k in packs
        )

    def fbgemm_dynamic():
        mods = []
        for w in ws:
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight.data = w
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mods.append(
                    torch.ao.quantization.quantize_dynamic(
                        torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
                    )
                )
        return (lambda xs: [m(xs[m[0].in_features]) for m in mods]), sum(w.numel() for w in ws)

    def torchao(config_name, **kwargs):
        def make():
            import torchao.quantization as Q

            mods = []
            for w in ws:
                lin = torch.nn.Sequential(torch.nn.Linear(w.shape[1], w.shape[0], bias=False))
                lin[0].weight.data = w.clone()
                Q.quantize_(lin, getattr(Q, config_name)(**kwargs))
                mods.append((lin, w.shape[1]))
            return (lambda xs: [m(xs[k]) for m, k in mods]), sum(w.numel() for w in ws)

        return make

    def torchao_int4():
        from torchao.quantization.granularity import PerGroup

        return torchao("IntxWeightOnlyConfig", weight_dtype=torch.int4, granularity=PerGroup(32))()

    return [
        ("F.linear (MKL)", "torch", "fp32", fp32_linear),
        ("PackedProjection (bmm)", "attentive", "fp32", packed),
        ("attentive panel kernel", "attentive", "fp32", panel("fp32")),
        ("aten._weight_int8pack_mm", "torch", "int8", int8pack),
        ("fbgemm dynamic int8 (torch.ao)", "torch", "int8", fbgemm_dynamic),
        ("torchao Int8WeightOnly", "torchao", "int8", torchao("Int8WeightOnlyConfig")),
        (
            "torchao Int8DynamicActivationInt8Weight",
            "torchao",
            "int8",
            torchao("Int8DynamicActivationInt8WeightConfig"),
        ),
        ("torch._int_mm (int8 activations per row)", "torch", "int8", int_mm),
        ("attentive panel kernel", "attentive", "int8", panel("int8")),
        ("attentive panel kernel, int8 activations (VNNI)", "attentive", "int8", panel("int8", "int8")),
        ("aten._weight_int4pack_mm_for_cpu", "torch", "int4", int4pack),
        ("torchao IntxWeightOnly int4 g32", "torchao", "int4", torchao_int4),
        ("attentive panel kernel", "attentive", "int4", panel("int4")),
        ("attentive panel kernel, int8 activations (VNNI)", "attentive", "int4", panel("int4", "int8")),
    ]


ATTENTION = [("SmolLM2, 9/3 heads", 9, 3, 64, keys) for keys in (64, 512, 4096)] + [
    ("Whisper tiny cross-attention, 6 heads", 6, 6, 64, 1500)
]
ENCODER_GEMMS = [(1152, 384), (384, 384), (1536, 384), (384, 1536)]  # Whisper tiny: q/k/v fused, o, up, down


def bench_attention(args, runs: int) -> None:
    ops = kernels.panel_ops()
    for label, heads, kv_heads, dim, keys in ATTENTION:
        g = torch.Generator().manual_seed(keys)
        q = torch.randn(1, heads, 1, dim, generator=g)
        k, v = torch.randn(1, kv_heads, keys, dim, generator=g), torch.randn(1, kv_heads, keys, dim, generator=g)
        scale = dim**-0.5
        report = common.Report(
            f"cpu_attention_{heads}h_{keys}",
            f"One query, {label}, {keys} keys",
            args,
            dict(heads=heads, kv_heads=kv_heads, head_dim=dim, keys=keys, runs=runs),
        )
        fns = [
            (
                "written out (matmul + softmax + matmul)",
                "torch",
                lambda: _one_query_written_out(q, k, v, None, None, scale),
            ),
            (
                "SDPA",
                "torch",
                lambda: F.scaled_dot_product_attention(q, k, v, scale=scale, enable_gqa=heads != kv_heads),
            ),
        ]
        if ops is not None:
            fns.insert(0, ("attend_one kernel", "attentive", lambda: ops.attend_one(q, k, v, None, None, scale)))
        for name, impl, fn in fns:

            def measure(fn=fn):
                return common.Row(
                    "", "", seconds=best_of(lambda: [fn() for _ in range(100)], runs) / 100, work=1, unit="call"
                )

            report.run(name, common.OURS if impl == "attentive" else impl, "", measure)
        report.finish()


def bench_gemm(args, runs: int) -> None:
    g = torch.Generator().manual_seed(0)
    ws = [(torch.randn(n, k, generator=g) * 0.02, torch.randn(n, generator=g)) for n, k in ENCODER_GEMMS]
    xs = {k: torch.randn(1500, k, generator=g) for k in {k for _, k in ENCODER_GEMMS}}
    flops = sum(2 * 1500 * w.shape[0] * w.shape[1] for w, _ in ws)
    report = common.Report(
        "cpu_gemm_encoder",
        "Whisper tiny's encoder products at 1,500 rows (one layer)",
        args,
        dict(rows=1500, shapes=ENCODER_GEMMS, runs=runs),
    )
    for name, impl, fn in (("oneDNN (kernels.gemm)", "attentive", kernels.gemm), ("F.linear (MKL)", "torch", F.linear)):

        def measure(fn=fn):
            seconds = best_of(lambda: [fn(xs[w.shape[1]], w, b) for w, b in ws], runs)
            row = common.Row("", "", seconds=seconds, work=1, unit="layer")
            row.extra.update(gflops=round(flops / seconds / 1e9, 1))
            return row

        report.run(name, common.OURS if impl == "attentive" else impl, "", measure)
    report.notes.extend(f"{r.name}: {r.extra['gflops']} GFLOP/s" for r in report.rows if r.seconds)
    report.finish()


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", default="1,16", help="comma-separated M (rows per product)")
    p.add_argument("--parts", default="linear", help="comma-separated: linear, attention, gemm")
    args = common.setup(p.parse_args())
    runs = args.runs or 5
    torch.set_grad_enabled(False)
    parts = set(args.parts.split(","))
    if "attention" in parts:
        bench_attention(args, runs)
    if "gemm" in parts:
        bench_gemm(args, runs)
    if "linear" not in parts:
        return
    ws = weights()
    bandwidth = common.read_bandwidth("cpu")
    for rows in (int(r) for r in args.rows.split(",")):
        xs = {k: torch.randn(rows, k) for k in {w.shape[1] for w in ws}}
        report = common.Report(
            f"cpu_kernels_m{rows}",
            f"One SmolLM2-135M step of linear layers, {rows} row(s)",
            args,
            dict(rows=rows, layers=LAYERS, shapes=SHAPES, head=HEAD, runs=runs),
        )
        report.peer_filter = lambda ours, other: ours.extra.get("precision") == other.extra.get("precision")
        for name, impl, precision, make in contestants(ws):

            def measure(make=make, precision=precision):
                apply, nbytes = make()
                seconds = best_of(lambda: apply(xs), runs)
                row = common.Row("", "", seconds=seconds, work=rows, unit="row")
                row.extra.update(
                    precision=precision, bytes=nbytes, bandwidth_share=round(nbytes / bandwidth / seconds, 3)
                )
                return row

            label = f"{precision}: {name}"
            report.run(label, common.OURS if impl == "attentive" else impl, "", measure)
        report.notes.append(
            f"read bandwidth {bandwidth / 1e9:.1f} GB/s; bandwidth_share in the JSON = time to read "
            "the weights once / time taken; ratios compare kernels of one precision; best of "
            f"{runs} passes"
        )
        for r in report.rows:
            if r.seconds:
                report.notes.append(
                    f"{r.name}: {r.seconds * 1e3:.2f} ms a pass, {r.extra['bytes'] / 2**20:.0f} MiB, "
                    f"{r.extra['bandwidth_share']:.0%} of the read bandwidth"
                )
        report.finish()


if __name__ == "__main__":
    main()

"""Decoder-only training step, GPT-2 small shape: attentive vs HF GPT2LMHeadModel vs x-transformers.

One step = forward, loss, backward, AdamW update (fused on CUDA), for every contestant at the same
shape (layers, width, heads, vocabulary, context), batch, precision (bf16 autocast on CUDA, fp32
on CPU) and optimizer; dropout off everywhere. Each runs eager and under torch.compile.

A second table times the loss head alone (hidden states -> logits -> cross-entropy, forward and
backward): the plain float32 cross-entropy against attentive's fused chunked one. The faster of
the two under compile is what the attentive rows use (``--loss auto``), so "keep what wins" is
decided by measurement on the card at hand.

    python benchmarks/bench_train_decoder.py --device cpu            # small config
    python benchmarks/bench_train_decoder.py --device cuda           # GPT-2 small, T=1024
"""

from __future__ import annotations

import common
import torch
import torch.nn.functional as F

from attentive.models import DecoderLM, DecoderLMConfig
from attentive.nn.loss import cross_entropy, linear_cross_entropy

FULL = dict(vocab=50257, layers=12, d_model=768, heads=12, context=1024, batch=16)
SMALL = dict(vocab=50257, layers=4, d_model=256, heads=4, context=256, batch=4)


def autocast(device: str):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")


def make_optimizer(model: torch.nn.Module, device: str) -> torch.optim.Optimizer:
    params = list({id(p): p for p in model.parameters()}.values())
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1, fused=device == "cuda")


def train_step(loss_fn, model, optimizer, device):
    def step():
        with autocast(device):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(
    model: torch.nn.Module, loss_fn, args, cfg, tokens: int, compile_fullgraph: bool | None, count_flops: bool = True
) -> common.Row:
    """Time the training step of ``model`` whose loss is ``loss_fn()``; compile it if asked.

    ``count_flops`` adds FLOPs per token (decoder-only shapes: 6N + 12 L d T) for MFU.
    """
    device = args.device
    model.to(device).train()
    if compile_fullgraph is not None:
        loss_fn = torch.compile(loss_fn, fullgraph=compile_fullgraph)
    step = train_step(loss_fn, model, make_optimizer(model, device), device)
    common.time_runs(step, device, args.warmup, 0)
    times = common.time_runs(step, device, 0, args.runs)
    peak = common.measure_peak(step, device)
    flops = (
        common.transformer_flops_per_token(model, cfg["layers"], cfg["d_model"], cfg["context"])
        if count_flops
        else None
    )
    return common.Row(
        "",
        "",
        seconds=common.median(times),
        work=tokens,
        peak_bytes=peak,
        flops_per_unit=flops,
        times=times,
        extra={"params": common.count_params(model)},
    )


# ----------------------------------------------------------------------------- contestants


def ours(args, cfg, ids, loss_kind: str, compiled: bool) -> common.Row:
    config = DecoderLMConfig(
        vocab_size=cfg["vocab"],
        num_layers=cfg["layers"],
        d_model=cfg["d_model"],
        num_heads=cfg["heads"],
        d_ff=4 * cfg["d_model"],
        max_len=cfg["context"],
        dropout=0.0,
        attention_dropout=0.0,
    )
    model = DecoderLM(config)

    def loss_fn():
        hidden = model.decode(ids).hidden[:, :-1]  # (B, T-1, D)
        if loss_kind == "chunked":
            return linear_cross_entropy(hidden, model.head.weight, ids[:, 1:], reduction="mean")
        return cross_entropy(model.head(hidden), ids[:, 1:], reduction="mean")

    return measure(model, loss_fn, args, cfg, ids.numel(), True if compiled else None)


def hf(args, cfg, ids, compiled: bool) -> common.Row:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=cfg["vocab"],
        n_positions=cfg["context"],
        n_embd=cfg["d_model"],
        n_layer=cfg["layers"],
        n_head=cfg["heads"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
    )
    model = GPT2LMHeadModel(config)
    model.config._attn_implementation = "sdpa"  # its fastest built-in kernel choice

    def loss_fn():
        return model(input_ids=ids, labels=ids).loss

    return measure(model, loss_fn, args, cfg, ids.numel(), False if compiled else None)


def xtransformers(args, cfg, ids, compiled: bool) -> common.Row:
    from x_transformers import AutoregressiveWrapper, Decoder, TransformerWrapper

    net = TransformerWrapper(
        num_tokens=cfg["vocab"],
        max_seq_len=cfg["context"],
        tie_embedding=True,
        attn_layers=Decoder(dim=cfg["d_model"], depth=cfg["layers"], heads=cfg["heads"], attn_flash=True),
    )
    model = AutoregressiveWrapper(net)

    def loss_fn():
        return model(ids)  # its own shifted next-token loss

    return measure(model, loss_fn, args, cfg, ids.numel(), False if compiled else None)


# ----------------------------------------------------------------------------- the loss head alone


def loss_head(args, cfg, kind: str, compiled: bool) -> common.Row:
    device = args.device
    rows, d, vocab = cfg["batch"] * cfg["context"], cfg["d_model"], cfg["vocab"]
    hidden = torch.randn(rows, d, device=device, requires_grad=True)
    weight = torch.nn.Parameter(torch.randn(vocab, d, device=device) * 0.02)
    targets = torch.randint(0, vocab, (rows,), device=device)

    def fn():
        if kind == "chunked":
            return linear_cross_entropy(hidden, weight, targets, reduction="mean")
        return F.cross_entropy(F.linear(hidden, weight).float(), targets)

    fn = torch.compile(fn, fullgraph=True) if compiled else fn

    def step():
        with autocast(device):
            loss = fn()
        loss.backward()
        hidden.grad = weight.grad = None

    common.time_runs(step, device, args.warmup, 0)
    times = common.time_runs(step, device, 0, args.runs)
    peak = common.measure_peak(step, device)
    return common.Row("", "", seconds=common.median(times), work=rows, peak_bytes=peak, times=times)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--loss", choices=("auto", "chunked", "full"), default="auto")
    p.add_argument("--batch", type=int, default=None)
    args = common.setup(p.parse_args())
    cfg = dict(SMALL if args.small else FULL)
    cfg["batch"] = args.batch or cfg["batch"]
    args.warmup = args.warmup if args.warmup is not None else 3
    args.runs = args.runs or (5 if args.small else 10)
    device = args.device
    ids = torch.randint(0, cfg["vocab"], (cfg["batch"], cfg["context"]), device=device)

    head = common.Report(
        "loss_head",
        "Loss head alone: hidden -> logits -> cross-entropy, fwd + bwd",
        args,
        dict(rows=cfg["batch"] * cfg["context"], d_model=cfg["d_model"], vocab=cfg["vocab"]),
    )
    loss_kind = {False: args.loss, True: args.loss}  # by mode: eager, compiled
    if args.loss == "auto":
        timed: dict[bool, dict[str, float]] = {False: {}, True: {}}
        for kind in ("full", "chunked"):
            for compiled in (False, True):
                label = "fused chunked" if kind == "chunked" else "float32 logits"
                name = f"{label} ({'compiled' if compiled else 'eager'})"
                impl = "attentive" if kind == "chunked" else "plain"
                row = head.run(name, impl, "", lambda: loss_head(args, cfg, kind, compiled))
                if row is not None and row.seconds:
                    timed[compiled][kind] = row.seconds
        for compiled in (False, True):
            loss_kind[compiled] = min(timed[compiled], key=timed[compiled].get) if timed[compiled] else "chunked"
        head.notes.append(
            f"attentive's training rows use the faster loss of each mode: {loss_kind[False]} "
            f"(eager), {loss_kind[True]} (compiled)"
        )
        head.finish()

    report = common.Report(
        "train_decoder",
        "Decoder-only training step (GPT-2 small shape)",
        args,
        dict(
            **cfg,
            dtype="bf16 autocast" if device == "cuda" else "fp32",
            optimizer="AdamW fused" if device == "cuda" else "AdamW",
            loss=f"{loss_kind[False]} (eager) / {loss_kind[True]} (compiled)",
        ),
    )
    for compiled in (False, True):  # eager first: quick, so a time-out cuts the slow compiles
        mode = "compiled" if compiled else "eager"
        report.run(
            f"attentive ({mode})", common.OURS, mode, lambda: ours(args, cfg, ids, loss_kind[compiled], compiled)
        )
        report.run(f"HF GPT2LMHeadModel ({mode})", "hf", mode, lambda: hf(args, cfg, ids, compiled))
        report.run(f"x-transformers ({mode})", "x-transformers", mode, lambda: xtransformers(args, cfg, ids, compiled))
    report.notes.append(
        "tokens/s = batch x context per step; MFU counts 6N + 12 L d T FLOPs per token; "
        "attentive compiles with fullgraph=True, peers with torch.compile defaults"
    )
    report.finish()


if __name__ == "__main__":
    main()

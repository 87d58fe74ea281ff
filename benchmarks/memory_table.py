"""What FSDP buys in memory: the largest model that trains on 80 GB GPUs with DDP vs FSDP2.

    python benchmarks/memory_table.py                      # markdown table, 8 x 80 GB, 16k tokens / GPU
    python benchmarks/memory_table.py --gpus 8 --gib 80 --tokens 16384
    python benchmarks/memory_table.py measure --model llama-1b --strategy fsdp   # on a GPU, also under torchrun

Per GPU, in bytes, for P parameters trained with AdamW, fp32 master weights and bf16 compute:

    DDP         18 P      fp32 weights 4 + fp32 grads 4 (in DDP's buckets) + Adam moments 8
                          + autocast's bf16 weight copies 2 (alive until the forward ends)
    FSDP x N    16 P / N  the same fp32 state, sharded N ways, plus the unsharded units in
                          flight: the root (embeddings, head) 4 P_root (bf16 weights + grads)
                          and ~2 layers 10 P_layer (bf16 weights of the running and the
                          prefetched layer, one layer's bf16 + fp32 gradient)
    + activations         what backward keeps, per token and layer (below) x layers x tokens,
                          plus the logits (bf16 logits, fp32 log-softmax and its gradient:
                          10 bytes x vocabulary per token)

Activations per token and layer are counted tensor by tensor for a layer that uses the fused
(flash) attention kernel, so nothing grows with T^2: each sublayer keeps its norm input (the
residual stream: fp32 under autocast, bf16 under FSDP's bf16 policy), the bf16 input of its
projections, q / k / v (and their RoPE-rotated copies), the attention output; the FFN keeps
its hidden activations (2 of width d_ff, 4 when gated); dropout keeps a 1-byte mask. With
activation checkpointing a layer keeps only its input, and one layer's activations exist
again during its recomputation. "Fits" means the estimate is at most 90% of the card (the
CUDA context, cuBLAS workspaces and allocator fragmentation take the rest).

``measure`` trains a decoder LM on random tokens for a few steps with the real Trainer and
prints peak ``torch.cuda.max_memory_allocated`` and tokens/s beside the estimate for the same
world size, so the formulas can be checked on a GPU (``benchmarks/gpu/torchrun_gpu.sh``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import attentive
from attentive.config import build_model, preset_config
from attentive.models import DecoderLMConfig
from attentive.train.task import Task
from attentive.train.throughput import transformer_flops_per_token

GIB = 2**30
LLAMA = {
    "ffn": "swiglu",
    "norm": "rmsnorm",
    "positional": "rope",
    "bias": False,
    "tie_embeddings": False,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "max_len": 4096,
    "vocab_size": 32000,
}
# published shapes (TinyLlama-1.1B, OpenLLaMA-3B, LLaMA-2 7B / 13B, Code Llama 34B, LLaMA-2 70B)
LADDER = {
    "llama-1b": DecoderLMConfig(
        **{**LLAMA, "num_layers": 22, "d_model": 2048, "num_heads": 32, "num_kv_heads": 4, "d_ff": 5632}
    ),
    "llama-3b": DecoderLMConfig(**{**LLAMA, "num_layers": 26, "d_model": 3200, "num_heads": 32, "d_ff": 8640}),
    "llama-7b": DecoderLMConfig(**{**LLAMA, "num_layers": 32, "d_model": 4096, "num_heads": 32, "d_ff": 11008}),
    "llama-13b": DecoderLMConfig(**{**LLAMA, "num_layers": 40, "d_model": 5120, "num_heads": 40, "d_ff": 13824}),
    "llama-34b": DecoderLMConfig(
        **{**LLAMA, "num_layers": 48, "d_model": 8192, "num_heads": 64, "num_kv_heads": 8, "d_ff": 22016}
    ),
    "llama-70b": DecoderLMConfig(
        **{**LLAMA, "num_layers": 80, "d_model": 8192, "num_heads": 64, "num_kv_heads": 8, "d_ff": 28672}
    ),
}


def model_config(name: str):
    return LADDER[name] if name in LADDER else preset_config(name)


# ----------------------------------------------------------------------------- sizes
@dataclasses.dataclass
class Shape:
    params: int  # unique parameters
    root: int  # parameters outside the TransformerLayers (embeddings, head, final norms)
    layer: int  # parameters of the largest TransformerLayer
    layers: int  # self-attention layers
    cross_layers: int  # of which with cross-attention
    vocab: int
    config: object


def shape_of(config) -> Shape:
    """Exact parameter counts from a model built on the meta device (no memory, no init cost)."""
    from attentive.nn.layers import TransformerLayer

    with torch.device("meta"):
        model = build_model(config)
    unique = {id(p): p for p in model.parameters()}
    layers = [m for m in model.modules() if isinstance(m, TransformerLayer)]
    in_layers = {id(p) for layer in layers for p in layer.parameters()}
    per_layer = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    vocab = max(getattr(config, k, 0) or 0 for k in ("vocab_size", "tgt_vocab_size", "num_classes"))
    return Shape(
        params=sum(p.numel() for p in unique.values()),
        root=sum(p.numel() for i, p in unique.items() if i not in in_layers),
        layer=max(per_layer, default=0),
        layers=len(layers),
        cross_layers=sum(layer.cross_attn is not None for layer in layers),
        vocab=vocab,
        config=config,
    )


def layer_activation_bytes(config, residual_bytes: int, cross: bool) -> float:
    """Bytes one layer keeps for backward, per token (fused attention; see the module docstring)."""
    d, f = config.d_model, config.d_ff
    head_dim = config.head_dim or d // config.num_heads
    dq = config.num_heads * head_dim
    dkv = (config.num_kv_heads or config.num_heads) * head_dim
    gated = config.ffn in ("swiglu", "geglu")
    rope = config.positional == "rope"
    mask = 1 if config.dropout > 0 else 0
    attn = residual_bytes * d + 2 * d + 2 * (dq + 2 * dkv) + (2 * (dq + dkv) if rope else 0) + 2 * dq + mask * d
    ffn = residual_bytes * d + 2 * d + (8 if gated else 4) * f + mask * d
    total = attn + ffn
    if cross:
        total += residual_bytes * d + 2 * d + 2 * dq + 2 * (2 * dkv) + 2 * dq + mask * d
    return total


def activation_bytes(shape: Shape, tokens: int, residual_bytes: int, checkpointing: bool) -> float:
    cfg = shape.config
    plain = shape.layers - shape.cross_layers
    per_token = [layer_activation_bytes(cfg, residual_bytes, False)] * plain
    per_token += [layer_activation_bytes(cfg, residual_bytes, True)] * shape.cross_layers
    if checkpointing:
        kept = residual_bytes * cfg.d_model * shape.layers + max(per_token, default=0)
    else:
        kept = sum(per_token)
    embed = residual_bytes * cfg.d_model
    logits = 10 * shape.vocab
    return tokens * (kept + embed + logits)


def estimate(shape: Shape, tokens: int, gpus: int, strategy: str, checkpointing: bool = False) -> dict[str, float]:
    """Per-GPU bytes: persistent state, transient unsharded units, activations, total."""
    if strategy == "ddp":
        state, transient, residual = 18 * shape.params, 0.0, 4
    else:
        state, transient, residual = 16 * shape.params / gpus, 4 * shape.root + 10 * shape.layer, 2
    acts = activation_bytes(shape, tokens, residual, checkpointing)
    return {"state": state, "transient": transient, "activations": acts, "total": state + transient + acts}


# ----------------------------------------------------------------------------- table
def table(names: list[str], tokens: int, gpus: int, gib: float) -> str:
    budget = 0.9 * gib * GIB
    columns = [
        ("DDP", "ddp", False),
        ("DDP + AC", "ddp", True),
        (f"FSDP x{gpus}", "fsdp", False),
        (f"FSDP x{gpus} + AC", "fsdp", True),
    ]
    lines = [
        f"Per-GPU memory (GiB), AdamW, bf16 compute, {tokens:,} tokens per GPU per micro-batch; "
        + f"**bold** = does not fit in 90% of {gib:g} GiB",
        "",
        "| model | parameters | " + " | ".join(c[0] for c in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    largest = {c[0]: None for c in columns}
    for name in names:
        shape = shape_of(model_config(name))
        cells = []
        for label, strategy, ac in columns:
            total = estimate(shape, tokens, gpus, strategy, ac)["total"]
            fits = total <= budget
            if fits and (largest[label] is None or shape.params > largest[label][1]):
                largest[label] = (name, shape.params)
            cells.append(f"{total / GIB:,.1f}" if fits else f"**{total / GIB:,.1f}**")
        lines.append(f"| {name} | {shape.params / 1e6:,.1f}M | " + " | ".join(cells) + " |")
    lines.append("")
    for label, best in largest.items():
        lines.append(
            f"- largest that trains with {label}: {best[0] if best else 'none'}"
            + (f" ({best[1] / 1e9:.2f}B parameters)" if best else "")
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- measurement on a GPU
class RandomTokens(Task):
    """A language-modelling task on seeded random tokens: batches are made on demand, by index."""

    name, unit = "random-lm", "tok"

    def __init__(self, vocab: int, batch: int, length: int, steps: int):
        self.vocab, self.batch, self.length, self.steps = vocab, batch, length, steps

    def train_batches(self, epoch, rank=0, world_size=1):
        return _Batches(self, epoch, rank, world_size)

    def count(self, batch):
        return batch.shape[0] * (batch.shape[1] - 1)

    def loss(self, model, batch):
        logits = model(batch[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum")
        return loss, {}

    def flops_per_unit(self, model):
        return transformer_flops_per_token(model, model.config.num_layers, model.config.d_model, self.length)


@dataclasses.dataclass
class _Batches:
    task: RandomTokens
    epoch: int
    rank: int
    world_size: int

    def __len__(self):
        return self.task.steps

    def __getitem__(self, i):
        g = torch.Generator().manual_seed((self.epoch * 100_003 + i) * self.world_size + self.rank)
        return torch.randint(0, self.task.vocab, (self.task.batch, self.task.length + 1), generator=g)


def measure(args) -> dict:
    from attentive.train.optim import OptimConfig
    from attentive.train.trainer import TrainConfig, Trainer

    config = model_config(args.model)
    if not isinstance(config, DecoderLMConfig):
        raise SystemExit(f"measure trains decoder LMs on random tokens; {args.model} is a {type(config).__name__}")
    config = dataclasses.replace(config, max_len=max(config.max_len, args.length))
    batch = max(1, args.tokens // args.length)
    torch.manual_seed(0)
    model = build_model(config)
    out = (
        Path(args.out or os.environ.get("OUT", "/tmp"))
        / f"measure-{args.model}-{args.strategy}{'-ac' if args.ac else ''}"
    )
    cfg = TrainConfig(
        out_dir=str(out),
        max_steps=args.steps,
        log_every=max(1, args.steps // 4),
        eval_every=0,
        checkpoint_every=0,
        progress=False,
        strategy=args.strategy,
        activation_checkpointing=args.ac,
        optim=OptimConfig(optimizer="adamw", lr=1e-4, schedule="constant", warmup_steps=1, weight_decay=0.1),
    )
    trainer = Trainer(RandomTokens(config.vocab_size, batch, args.length, args.steps), model, cfg)
    trainer.save_checkpoint = lambda: None  # a measurement needs none (a 7B consolidated save dominates)
    trainer.fit()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") == "train"]
    world = trainer.dist.world_size
    est = estimate(shape_of(config), batch * args.length, world, args.strategy, args.ac)
    result = {
        "model": args.model,
        "strategy": args.strategy,
        "activation_checkpointing": args.ac,
        "world_size": world,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "tokens_per_gpu": batch * args.length,
        "tok_per_s": train[-1].get("tok_per_s"),
        "mfu": train[-1].get("mfu"),
        "measured_gib": train[-1].get("max_mem_gib"),
        "estimated_gib": round(est["total"] / GIB, 2),
        "estimate_parts_gib": {k: round(v / GIB, 2) for k, v in est.items()},
    }
    if trainer.dist.is_main:
        print(json.dumps(result))
        (out / "measure.json").write_text(json.dumps(result, indent=2) + "\n")
    trainer.dist.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs FSDP shards over (one node: 8)")
    parser.add_argument("--gib", type=float, default=80, help="memory of one GPU")
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per GPU per micro-batch")
    parser.add_argument("--models", nargs="*", help="presets / ladder names (default: LM presets + ladder)")
    m = sub.add_parser("measure", help="train a few steps on this GPU and compare with the estimate")
    m.add_argument("--model", default="llama-1b")
    m.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp")
    m.add_argument("--ac", action="store_true", help="activation checkpointing")
    m.add_argument("--tokens", type=int, default=16384)
    m.add_argument("--length", type=int, default=2048)
    m.add_argument("--steps", type=int, default=20)
    m.add_argument("--out")
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args)
        return 0
    names = args.models or [
        n
        for n in attentive.presets()
        if hasattr(preset_config(n), "vocab_size") or hasattr(preset_config(n), "tgt_vocab_size")
    ] + list(LADDER)
    names = sorted(names, key=lambda n: shape_of(model_config(n)).params)
    print(table(names, args.tokens, args.gpus, args.gib))
    return 0


if __name__ == "__main__":
    sys.exit(main())

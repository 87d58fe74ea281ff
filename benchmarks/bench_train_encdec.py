"""Encoder-decoder training step, transformer-base: attentive vs torch.nn.Transformer vs HF Marian.

Same shape for all (6+6 layers, d_model 512, 8 heads, d_ff 2048, a shared 37k vocabulary tied to
the output, sinusoidal positions, post-LN), same batch (~25k source and ~25k target tokens, rows
of random length padded at the end, so the padding masks are exercised), dropout 0.1, label-
smoothed (0.1) cross-entropy over the non-pad targets, AdamW (fused on CUDA), bf16 autocast on
CUDA and fp32 on CPU. torch.nn.Transformer is wrapped with the embedding, positions and tied
output it lacks; Marian gets ``activation_function="relu"`` to match the paper. Peers' logits go
through the usual float32 cross-entropy; attentive uses its fused chunked loss.

    python benchmarks/bench_train_encdec.py --device cpu     # small config
    python benchmarks/bench_train_encdec.py --device cuda    # transformer-base, ~25k tokens
"""

from __future__ import annotations

import math

import common
import torch
import torch.nn.functional as F
from bench_train_decoder import measure as measure_step
from torch import nn

from attentive.models import EncoderDecoder, EncoderDecoderConfig
from attentive.nn.loss import linear_cross_entropy

FULL = dict(vocab=37000, layers=6, d_model=512, heads=8, d_ff=2048, batch=448, src_len=64, tgt_len=64)
SMALL = dict(vocab=8000, layers=3, d_model=256, heads=4, d_ff=1024, batch=24, src_len=32, tgt_len=32)
PAD, BOS, SMOOTHING, DROPOUT = 0, 1, 0.1, 0.1


def make_batch(cfg, device):
    """Rows of random length in [3/4, 1] x the maximum, padded at the end with PAD."""

    def padded(length):
        ids = torch.randint(3, cfg["vocab"], (cfg["batch"], length))
        lengths = torch.randint(3 * length // 4, length + 1, (cfg["batch"],))
        ids[torch.arange(length)[None, :] >= lengths[:, None]] = PAD
        return ids.to(device)

    src, tgt = padded(cfg["src_len"]), padded(cfg["tgt_len"])
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], dim=1)  # teacher forcing
    tokens = int((src != PAD).sum() + (tgt != PAD).sum())
    return src, tgt_in, tgt, tokens


def smoothed_loss(logits, targets):
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD, label_smoothing=SMOOTHING
    )


def measure(model, loss_fn, args, cfg, tokens, compile_fullgraph):
    """The decoder benchmark's timing, without its decoder-only FLOP count."""
    return measure_step(model, loss_fn, args, cfg, tokens, compile_fullgraph, count_flops=False)


# ----------------------------------------------------------------------------- contestants


def ours(args, cfg, batch, compiled):
    src, tgt_in, tgt_out, tokens = batch
    model = EncoderDecoder(
        EncoderDecoderConfig(
            src_vocab_size=cfg["vocab"],
            tgt_vocab_size=cfg["vocab"],
            d_model=cfg["d_model"],
            num_heads=cfg["heads"],
            d_ff=cfg["d_ff"],
            num_encoder_layers=cfg["layers"],
            num_decoder_layers=cfg["layers"],
            dropout=DROPOUT,
            attention_dropout=DROPOUT,
            max_len=max(cfg["src_len"], cfg["tgt_len"]),
            pad_id=PAD,
        )
    )

    def loss_fn():
        src_valid = src != PAD
        memory = model.encode(src, src_valid).hidden  # (B, S, D)
        hidden = model.decode(tgt_in, memory, src_valid).hidden  # (B, T, D)
        return linear_cross_entropy(
            hidden,
            model.head.weight,
            tgt_out,
            model.head.bias,
            label_smoothing=SMOOTHING,
            ignore_index=PAD,
            reduction="mean",
        )

    return measure(model, loss_fn, args, cfg, tokens, True if compiled else None)


class TorchTransformer(nn.Module):
    """torch.nn.Transformer with what the paper's model adds around it: a shared scaled embedding,
    sinusoidal positions and an output projection tied to the embedding."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.scale = math.sqrt(d)
        self.embed = nn.Embedding(cfg["vocab"], d, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=d**-0.5)
        length = max(cfg["src_len"], cfg["tgt_len"])
        pos = torch.arange(length)[:, None] * torch.exp(-math.log(10000.0) * torch.arange(0, d, 2) / d)
        pe = torch.zeros(length, d)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos), torch.cos(pos)
        self.register_buffer("pe", pe, persistent=False)
        self.dropout = nn.Dropout(DROPOUT)
        self.transformer = nn.Transformer(
            d,
            cfg["heads"],
            cfg["layers"],
            cfg["layers"],
            cfg["d_ff"],
            DROPOUT,
            batch_first=True,
        )

    def embed_tokens(self, ids):
        return self.dropout(self.embed(ids) * self.scale + self.pe[: ids.shape[1]])

    def forward(self, src, tgt_in):
        pad = src == PAD  # True = ignore
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], device=src.device)
        hidden = self.transformer(
            self.embed_tokens(src),
            self.embed_tokens(tgt_in),
            tgt_mask=causal,
            src_key_padding_mask=pad,
            memory_key_padding_mask=pad,
            tgt_is_causal=True,
        )
        return F.linear(hidden, self.embed.weight)


def torch_nn(args, cfg, batch, compiled):
    src, tgt_in, tgt_out, tokens = batch
    model = TorchTransformer(cfg)

    def loss_fn():
        return smoothed_loss(model(src, tgt_in), tgt_out)

    return measure(model, loss_fn, args, cfg, tokens, False if compiled else None)


def marian(args, cfg, batch, compiled):
    from transformers import MarianConfig, MarianMTModel

    src, tgt_in, tgt_out, tokens = batch
    config = MarianConfig(
        vocab_size=cfg["vocab"],
        decoder_vocab_size=cfg["vocab"],
        d_model=cfg["d_model"],
        encoder_layers=cfg["layers"],
        decoder_layers=cfg["layers"],
        encoder_attention_heads=cfg["heads"],
        decoder_attention_heads=cfg["heads"],
        encoder_ffn_dim=cfg["d_ff"],
        decoder_ffn_dim=cfg["d_ff"],
        activation_function="relu",
        dropout=DROPOUT,
        attention_dropout=DROPOUT,
        activation_dropout=0.0,
        max_position_embeddings=max(cfg["src_len"], cfg["tgt_len"]),
        scale_embedding=True,
        pad_token_id=PAD,
        decoder_start_token_id=BOS,
        eos_token_id=2,
        share_encoder_decoder_embeddings=True,
        use_cache=False,
    )
    model = MarianMTModel(config)
    model.config._attn_implementation = "sdpa"
    src_valid = (src != PAD).long()

    def loss_fn():
        logits = model(input_ids=src, attention_mask=src_valid, decoder_input_ids=tgt_in).logits
        return smoothed_loss(logits, tgt_out)

    return measure(model, loss_fn, args, cfg, tokens, False if compiled else None)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=None)
    args = common.setup(p.parse_args())
    cfg = dict(SMALL if args.small else FULL)
    cfg["batch"] = args.batch or cfg["batch"]
    args.warmup = args.warmup if args.warmup is not None else 3
    args.runs = args.runs or (5 if args.small else 8)
    batch = make_batch(cfg, args.device)
    report = common.Report(
        "train_encdec",
        "Encoder-decoder training step (transformer-base shape)",
        args,
        dict(
            **cfg,
            tokens_per_batch=batch[3],
            dtype="bf16 autocast" if args.device == "cuda" else "fp32",
            label_smoothing=SMOOTHING,
            dropout=DROPOUT,
        ),
    )
    for compiled in (False, True):  # eager first: quick, so a time-out cuts the slow compiles
        mode = "compiled" if compiled else "eager"
        report.run(f"attentive ({mode})", common.OURS, mode, lambda: ours(args, cfg, batch, compiled))
        report.run(f"torch.nn.Transformer ({mode})", "torch.nn", mode, lambda: torch_nn(args, cfg, batch, compiled))
        if not compiled:
            report.run("HF MarianMTModel (eager)", "hf", "eager", lambda: marian(args, cfg, batch, False))
    report.run("HF MarianMTModel (compiled)", "hf", "compiled", lambda: marian(args, cfg, batch, True))
    report.notes.append("tokens/s counts source + target tokens, padding excluded")
    report.finish()


if __name__ == "__main__":
    main()

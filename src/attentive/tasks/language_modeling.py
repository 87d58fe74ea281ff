"""Language modelling: predict the next token of a text; the Tiny Shakespeare recipes.

The task draws random ``(x, y)`` blocks from the first 90% of the text (``y`` is ``x`` shifted
by one token) and measures the validation loss on the last 10%, walking it in consecutive
blocks so every validation token after the first is predicted exactly once. The tokenizer
(characters or byte-level BPE) is saved beside the weights, so ``attentive generate`` and
``attentive perplexity`` need only the run folder.

Recipes (``attentive train --preset NAME [key=value ...]``):

* ``shakespeare-char``: sized for 10 minutes on 2 CPU cores (see README "Language models").
* ``shakespeare-char-gpu``: sized for 5 minutes on one H100/H200 in bf16.

Dimension names: B batch, T block (context) length, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.lm import RandomBlockSampler, load_tinyshakespeare, sequential_blocks, split_train_val
from ..models.decoder_lm import DecoderLM, DecoderLMConfig
from ..nn.loss import cross_entropy, linear_cross_entropy
from ..text import BPETokenizer, CharTokenizer, Tokenizer
from ..train.optim import OptimConfig
from ..train.recipes import Recipe, register_recipe, split_overrides
from ..train.trainer import TrainConfig
from .base import Task, transformer_flops_per_token
from .head_loss import check_loss_choice, fused_head

TOKENIZERS = ("char", "bpe")


@dataclass
class LMDataConfig:
    """Where the text comes from, how it is cut into blocks, and how validation is measured."""

    text_file: str | None = None  # None: the bundled Tiny Shakespeare
    tokenizer: str = "char"  # char | bpe (byte-level, trained on the training split)
    bpe_vocab_size: int = 2048
    train_fraction: float = 0.9  # first part trains, the rest validates (no shuffling)
    block_size: int = 256  # context length; the model's max_len
    batch_size: int = 64
    steps_per_epoch: int = 1000  # batches are random blocks; an 'epoch' is just a resume unit
    eval_batch_size: int = 32
    eval_tokens: int | None = None  # periodic evaluation on this many validation tokens (None: all)
    # training loss: "fused" applies the head inside linear_cross_entropy, chunk by chunk (no full
    # logits); "plain" materialises them; "auto": fused from head_loss.FUSED_LOSS_MIN_VOCAB tokens up
    loss: str = "auto"

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        for name in ("block_size", "batch_size", "steps_per_epoch", "eval_batch_size", "bpe_vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        check_loss_choice(self.loss)
        if self.eval_tokens is not None and self.eval_tokens < 2:
            raise ValueError(f"eval_tokens must be at least 2 (or None for the whole split), got {self.eval_tokens}")


class _EpochBatches(Sequence):
    """An indexable view of one epoch's random batches: batch ``i`` is the sampler's step
    ``epoch * length + i``, so the trainer's (epoch, index) is all a resume needs."""

    def __init__(self, sampler: RandomBlockSampler, epoch: int, length: int):
        self.sampler, self.epoch, self.length = sampler, epoch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.sampler.batch(self.epoch * self.length + index)  # x, y: (B, T)


class LanguageModelingTask(Task):
    """Next-token prediction on one token stream split into training and validation parts."""

    unit = "tok"

    def __init__(self, tokenizer: Tokenizer, train_tokens: Tensor, val_tokens: Tensor, data: LMDataConfig,
                 seed: int = 0, name: str = "lm"):
        self.tokenizer, self.data, self.seed, self.name = tokenizer, data, seed, name
        self.train_tokens, self.val_tokens = train_tokens, val_tokens  # (N_train,), (N_val,) long
        if data.eval_tokens is not None:
            self.eval_stream = val_tokens[: data.eval_tokens]
        else:
            self.eval_stream = val_tokens

    @classmethod
    def from_text(cls, text: str, data: LMDataConfig, seed: int = 0, name: str = "lm") -> LanguageModelingTask:
        """Tokenise ``text`` (building the tokenizer) and split it, first part for training."""
        train_text, _ = split_train_val(text, data.train_fraction)
        if data.tokenizer == "char":
            tokenizer: Tokenizer = CharTokenizer.train(text)  # every character of the file, as nanoGPT
        else:
            tokenizer = BPETokenizer.train(train_text.splitlines(keepends=True), vocab_size=data.bpe_vocab_size)
        tokens = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        train_tokens, val_tokens = split_train_val(tokens, data.train_fraction)
        return cls(tokenizer, train_tokens, val_tokens, data, seed, name)

    # ------------------------------------------------------------------ training
    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Sequence[Any]:
        sampler = RandomBlockSampler(self.train_tokens, self.data.block_size, self.data.batch_size, self.seed, rank)
        return _EpochBatches(sampler, epoch, self.data.steps_per_epoch)

    def count(self, batch) -> int:
        return batch[1].numel()

    def to_device(self, batch, device: torch.device):
        x, y = batch
        non_blocking = device.type == "cuda"
        return x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, dict[str, float]]:
        x, y = batch  # (B, T)
        head = self._fused_head(model)
        if head is not None:
            hidden = model(x, return_hidden=True)  # (B, T, D), through forward: DDP's hooks run
            return linear_cross_entropy(hidden, head.weight, y, head.bias, reduction="sum"), {}
        logits = model(x)  # (B, T, V)
        return cross_entropy(logits, y, reduction="sum"), {}

    def _fused_head(self, model: nn.Module) -> nn.Module | None:
        return fused_head(model, "lm_head", self.data.loss)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean validation loss (nats per token) over consecutive blocks, and its perplexity."""
        return self._stream_loss(model, self.eval_stream)

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        """The whole validation split, whatever ``eval_tokens`` says."""
        metrics = self._stream_loss(model, self.val_tokens)
        return {"val_loss": round(metrics["loss"], 4), "val_ppl": round(metrics["ppl"], 3),
                "val_tokens": len(self.val_tokens) - 1}

    def _stream_loss(self, model: nn.Module, tokens: Tensor) -> dict[str, float]:
        device = next(model.parameters()).device
        total, count = torch.zeros((), device=device, dtype=torch.float64), 0
        for x, y in sequential_blocks(tokens, self.data.block_size, self.data.eval_batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x)  # (B, T, V)
            total += cross_entropy(logits, y, reduction="sum").double()
            count += y.numel()
        loss = total.item() / count
        return {"loss": loss, "ppl": math.exp(loss)}

    # ------------------------------------------------------------------ artefacts
    def save_artifacts(self, directory: Path) -> None:
        self.tokenizer.save(directory)

    def flops_per_unit(self, model: nn.Module) -> float | None:
        c = getattr(model, "config", None)
        if c is None:
            return None
        return transformer_flops_per_token(model, c.num_layers, c.d_model, self.data.block_size)


# ----------------------------------------------------------------------------- recipes


def build_lm_recipe(name: str, model: DecoderLMConfig, data: LMDataConfig, optim: OptimConfig,
                    train: TrainConfig, overrides: dict[str, Any], text: str | None = None) -> Recipe:
    """Apply ``key=value`` overrides (each routed to the model, data, optimiser or trainer
    settings that has that field), then build the task and a freshly initialised model."""
    model_o, data_o, optim_o, train_o = split_overrides(overrides, model, data, optim, train)
    data = replace(data, **data_o)
    optim = replace(optim, **optim_o)
    train = replace(train, **train_o, optim=optim)
    if train.precision == "auto" and _runs_on_cpu(train.device) and cpu_has_native_bf16():
        train = replace(train, precision="bf16")  # 1.5x the tokens/s of fp32 on such CPUs (README)
    if text is None:
        text = Path(data.text_file).read_text(encoding="utf-8") if data.text_file else load_tinyshakespeare()
    task = LanguageModelingTask.from_text(text, data, seed=train.seed, name=name)
    model_o = {"max_len": data.block_size, **model_o}  # the model's context is the block length
    config = model.replace(vocab_size=task.tokenizer.vocab_size, **model_o)
    torch.manual_seed(train.seed)  # the same initial weights for the same seed
    return Recipe(task=task, model=DecoderLM(config), train_config=train)


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where bf16 autocast
    trains faster than fp32; elsewhere bf16 is emulated and slower, so fp32 stays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _runs_on_cpu(device: str) -> bool:
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


# 10 minutes on 2 CPU cores: a small LLaMA-style model (RoPE, RMSNorm, SwiGLU, 1.8M parameters)
# over 256-character blocks at a high learning rate, annealed by time to a low floor. It sees the
# 1M training characters about 9 times and over-fits: weight decay 0.5 (not 0.1) holds that back
# at no cost in speed (0.1: 1.48, 0.3: 1.455, 0.5: 1.451, 0.8: 1.450), where dropout costs 10-15%
# of the steps and did worse. Smaller models were no
# faster per token, wider ones slower; see README "Language models" for the runs behind it.
CPU_MODEL = DecoderLMConfig(
    num_layers=4, d_model=192, num_heads=6, d_ff=512, ffn="swiglu", norm="rmsnorm", positional="rope",
    bias=False, dropout=0.0, attention_dropout=0.0, tie_embeddings=True,
)
CPU_DATA = LMDataConfig(block_size=256, batch_size=8, eval_batch_size=32, eval_tokens=None)
CPU_OPTIM = OptimConfig(
    optimizer="adamw", lr=3e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5, schedule="cosine",
    warmup_steps=100, min_lr_ratio=0.02,
)
CPU_TRAIN = TrainConfig(
    out_dir="runs/shakespeare-char", max_steps=1_000_000, max_minutes=10.0, log_every=50, eval_every=1000,
    checkpoint_every=1000, precision="auto", device="auto",
)

# One H100/H200 (bf16, compiled). Compute is not the limit here (a 21M-parameter model runs
# 1,000 steps of 64 x 256 characters in well under a minute); the 1M training characters are: every
# model we tried overfits after about 12 epochs (750-1,000 steps), so the recipe is a deep, heavily
# dropped-out model on a short schedule, fixed in steps (the time limit is only a cap). Measured
# on an H200: final validation loss 1.479 (best along the way 1.469, at step 750); see README.
GPU_MODEL = DecoderLMConfig(
    num_layers=12, d_model=384, num_heads=6, d_ff=1024, ffn="swiglu", norm="rmsnorm", positional="rope",
    bias=False, dropout=0.25, attention_dropout=0.1, tie_embeddings=True,
)
GPU_DATA = LMDataConfig(block_size=256, batch_size=64, eval_batch_size=128, eval_tokens=None)
GPU_OPTIM = OptimConfig(
    optimizer="adamw", lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, schedule="cosine",
    warmup_steps=100, min_lr_ratio=0.1,
)
GPU_TRAIN = TrainConfig(
    out_dir="runs/shakespeare-char-gpu", max_steps=1200, max_minutes=4.5, log_every=50, eval_every=250,
    checkpoint_every=600, precision="auto", device="auto", compile=True,
)


@register_recipe("shakespeare-char", "Tiny Shakespeare, characters: 10 min on 2 CPU cores; val loss 1.451")
def shakespeare_char(overrides: dict[str, Any]) -> Recipe:
    return build_lm_recipe("shakespeare-char", CPU_MODEL, CPU_DATA, CPU_OPTIM, CPU_TRAIN, overrides)


@register_recipe("shakespeare-char-gpu",
                 "Tiny Shakespeare, characters: one H100/H200, 1,200 steps (< 1 min); val loss 1.48 on an H200")
def shakespeare_char_gpu(overrides: dict[str, Any]) -> Recipe:
    return build_lm_recipe("shakespeare-char-gpu", GPU_MODEL, GPU_DATA, GPU_OPTIM, GPU_TRAIN, overrides)

"""Language modelling: predict the next token of a text; the Tiny Shakespeare recipes.

The task draws random ``(x, y)`` blocks from the first 90% of the text (``y`` is ``x`` shifted
by one token) and measures the validation loss on the last 10%, walking it in consecutive
blocks so every validation token after the first is predicted exactly once. The tokenizer
(characters or byte-level BPE) is saved beside the weights, so ``attentive generate`` and
``attentive perplexity`` need only the run folder.

A model with segment-level recurrence (``memory_len`` > 0, Transformer-XL) trains on
consecutive segments instead: each batch row walks its own contiguous lane of the training text
(``SegmentSampler``), and the task carries a ``SegmentMemory`` from step to step (detached, so
gradients stay within a segment), clearing it whenever the lanes start over. Its validation walks
``eval_batch_size`` lanes of the validation text with a fresh memory. The memory is not saved in
checkpoints: a resumed run starts its first step with an empty memory (as every lane's first
segment does), and the data order is exact.

The recipes that use this task are in ``attentive.recipes.language_modeling``.

Dimension names: B batch, T block (context) length, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.lm import RandomBlockSampler, SegmentSampler, lane_segments, sequential_blocks, split_train_val
from ..nn.cache import SegmentMemory
from ..nn.loss import cross_entropy, linear_cross_entropy
from ..text import BPETokenizer, CharTokenizer, Tokenizer
from ..train.task import Task
from ..train.throughput import transformer_flops_per_token
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

    def __init__(self, sampler: RandomBlockSampler | SegmentSampler, epoch: int, length: int):
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

    def __init__(
        self,
        tokenizer: Tokenizer,
        train_tokens: Tensor,
        val_tokens: Tensor,
        data: LMDataConfig,
        seed: int = 0,
        name: str = "lm",
        memory_len: int = 0,
    ):
        self.tokenizer, self.data, self.seed, self.name = tokenizer, data, seed, name
        self.memory_len = memory_len  # > 0: Transformer-XL recurrence over consecutive segments
        self.memory: SegmentMemory | None = None  # carried from training step to training step
        self.train_tokens, self.val_tokens = train_tokens, val_tokens  # (N_train,), (N_val,) long
        if data.eval_tokens is not None:
            self.eval_stream = val_tokens[: data.eval_tokens]
        else:
            self.eval_stream = val_tokens

    @classmethod
    def from_text(
        cls,
        text: str,
        data: LMDataConfig,
        seed: int = 0,
        name: str = "lm",
        tokenizer: Tokenizer | None = None,
        memory_len: int = 0,
    ) -> LanguageModelingTask:
        """Tokenise ``text`` (building the tokenizer, unless a pretrained model brings its own) and
        split it, first part for training."""
        train_text, _ = split_train_val(text, data.train_fraction)
        if tokenizer is None and data.tokenizer == "char":
            tokenizer = CharTokenizer.train(text)  # every character of the file, as nanoGPT
        elif tokenizer is None:
            tokenizer = BPETokenizer.train(train_text.splitlines(keepends=True), vocab_size=data.bpe_vocab_size)
        tokens = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        train_tokens, val_tokens = split_train_val(tokens, data.train_fraction)
        return cls(tokenizer, train_tokens, val_tokens, data, seed, name, memory_len)

    # ------------------------------------------------------------------ training
    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Sequence[Any]:
        if self.memory_len:
            sampler = SegmentSampler(self.train_tokens, self.data.block_size, self.data.batch_size, rank, world_size)
        else:
            sampler = RandomBlockSampler(self.train_tokens, self.data.block_size, self.data.batch_size, self.seed, rank)
        return _EpochBatches(sampler, epoch, self.data.steps_per_epoch)

    def count(self, batch) -> int:
        return batch[1].numel()

    def to_device(self, batch, device: torch.device):
        x, y, *fresh = batch  # segments carry a third item: the lanes start over
        non_blocking = device.type == "cuda"
        return (x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking), *fresh)

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, dict[str, float]]:
        x, y, *fresh = batch  # (B, T)
        cache = None
        if self.memory_len:
            if self.memory is None or (fresh and fresh[0]):
                self.memory = SegmentMemory(self.memory_len)
            cache = self.memory
        head = self._fused_head(model)
        if head is not None:
            hidden = model(x, cache=cache, return_hidden=True)  # (B, T, D), through forward: DDP's hooks run
            return linear_cross_entropy(hidden, head.weight, y, head.bias, reduction="sum"), {}
        logits = model(x, cache=cache)  # (B, T, V)
        return cross_entropy(logits, y, reduction="sum"), {}

    def _fused_head(self, model: nn.Module) -> nn.Module | None:
        return fused_head(model, self.data.loss)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Mean validation loss (nats per token) over consecutive blocks, and its perplexity."""
        return self._stream_loss(model, self.eval_stream)

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        """The whole validation split, whatever ``eval_tokens`` says."""
        metrics = self._stream_loss(model, self.val_tokens)
        return {
            "val_loss": round(metrics["loss"], 4),
            "val_ppl": round(metrics["ppl"], 3),
            "val_tokens": metrics["tokens"],
        }

    def _stream_loss(self, model: nn.Module, tokens: Tensor) -> dict[str, float]:
        """Consecutive blocks; with recurrence, lanes of consecutive segments under one memory."""
        device = next(model.parameters()).device
        total, count = torch.zeros((), device=device, dtype=torch.float64), 0
        if self.memory_len:
            batches = lane_segments(tokens, self.data.eval_batch_size, self.data.block_size)
            memory = SegmentMemory(self.memory_len)
        else:
            batches, memory = sequential_blocks(tokens, self.data.block_size, self.data.eval_batch_size), None
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = model(x, cache=memory)  # (B, T, V)
            total += cross_entropy(logits, y, reduction="sum").double()
            count += y.numel()
        loss = total.item() / count
        return {"loss": loss, "ppl": math.exp(loss), "tokens": count}

    # ------------------------------------------------------------------ artefacts
    def save_artifacts(self, directory: Path) -> None:
        self.tokenizer.save(directory)

    def flops_per_unit(self, model: nn.Module) -> float | None:
        c = getattr(model, "config", None)
        if c is None:
            return None
        context = self.data.block_size + self.memory_len  # keys per query at most, memory included
        return transformer_flops_per_token(model, c.num_layers, c.d_model, context)

"""Perplexity of a language model on a text: ``exp(mean negative log-likelihood per token)``.

The text is tokenised and walked in consecutive blocks of the model's context length, so every
token after the first is predicted exactly once, from the tokens before it in its block (the
same measurement as the training task's validation loss). Lower is better; a model that knew
nothing about a vocabulary of V tokens would score V.

Dimension names: B blocks per batch, T block length, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.lm import sequential_blocks
from ..nn.loss import cross_entropy


@dataclass
class PerplexityResult:
    loss: float  # mean negative log-likelihood, nats per token
    perplexity: float  # exp(loss)
    tokens: int  # tokens scored (all but the first)
    block_size: int  # context each block had at most

    @property
    def bits_per_token(self) -> float:
        return self.loss / math.log(2)


def perplexity(model: nn.Module, tokens: Tensor | list[int], *, block_size: int | None = None,
               batch_size: int = 16) -> PerplexityResult:
    """Score a 1-D token stream; ``block_size`` defaults to the model's context (``max_len``)."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if tokens.dim() != 1 or len(tokens) < 2:
        raise ValueError(f"perplexity needs a 1-D stream of at least 2 tokens, got shape {tuple(tokens.shape)}")
    context = getattr(getattr(model, "config", None), "max_len", None)
    block_size = block_size or context
    if block_size is None:
        raise ValueError(f"{type(model).__name__} has no config.max_len; pass block_size")
    if context is not None and block_size > context:
        raise ValueError(f"block_size {block_size} is longer than the model's context ({context})")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab is not None and int(tokens.max()) >= vocab:
        raise ValueError(f"token id {int(tokens.max())} is outside the model's vocabulary of {vocab}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for x, y in sequential_blocks(tokens, block_size, batch_size):  # (B, T) each
                logits = model(x.to(device))  # (B, T, V)
                total += cross_entropy(logits, y.to(device), reduction="sum").item()
                count += y.numel()
    finally:
        model.train(was_training)
    loss = total / count
    return PerplexityResult(loss=loss, perplexity=math.exp(loss), tokens=count, block_size=block_size)


def text_perplexity(model: nn.Module, tokenizer, text: str, **options) -> PerplexityResult:
    """Tokenise ``text`` (a char tokenizer names any unknown characters) and score it."""
    return perplexity(model, tokenizer.encode(text), **options)


def file_perplexity(model: nn.Module, tokenizer, path: str | Path, **options) -> PerplexityResult:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return text_perplexity(model, tokenizer, text, **options)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None

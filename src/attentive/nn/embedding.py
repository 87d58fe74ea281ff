"""Token embedding: a lookup table, scaled by sqrt(d_model) as in the paper (section 3.4).

A lookup of row ``i`` equals the one-hot vector ``e_i`` times the matrix; ``one_hot_lookup``
computes it that way so tests (and students) can see the two agree. The output projection
may share this matrix (weight tying, Press & Wolf 2017).

Dimension names: B batch, T sequence, V vocabulary, D model width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TokenEmbedding(nn.Module):
    """``E[ids] * sqrt(d_model)`` (scaling optional: GPT/LLaMA/BERT do not scale)."""

    def __init__(self, vocab_size: int, d_model: int, scale: bool = True):
        super().__init__()
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        nn.init.normal_(self.weight, std=d_model**-0.5 if scale else 0.02)

    def forward(self, ids: Tensor) -> Tensor:  # (B, T) int -> (B, T, D)
        if ids.dtype not in (torch.long, torch.int32, torch.int64):
            raise TypeError(f"token ids must be an integer tensor, got dtype {ids.dtype}")
        out = F.embedding(ids, self.weight)
        return out * self.scale if self.scale != 1.0 else out

    def one_hot_lookup(self, ids: Tensor) -> Tensor:
        """The same result as ``forward``, computed as one-hot vectors times the matrix."""
        one_hot = F.one_hot(ids, self.vocab_size).to(self.weight.dtype)  # (B, T, V)
        return one_hot @ self.weight * self.scale  # (B, T, D)

    def extra_repr(self) -> str:
        return f"{self.vocab_size}, {self.d_model}, scale={self.scale:.3g}"


class OutputProjection(nn.Module):
    """Pre-softmax linear map to vocabulary logits, optionally tied to an embedding matrix."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False, tie_to: TokenEmbedding | None = None):
        super().__init__()
        if tie_to is not None:
            if tie_to.weight.shape != (vocab_size, d_model):
                raise ValueError(
                    f"cannot tie output projection ({vocab_size}, {d_model}) to embedding of shape "
                    f"{tuple(tie_to.weight.shape)}"
                )
            self.weight = tie_to.weight
        else:
            self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
            nn.init.normal_(self.weight, std=d_model**-0.5)
        self.bias = nn.Parameter(torch.zeros(vocab_size)) if bias else None

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, V)
        return F.linear(x, self.weight, self.bias)

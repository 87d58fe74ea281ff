"""Normalisation layers: the paper's LayerNorm and the RMSNorm that LLaMA-style models use.

Dimension names: B batch, T sequence, D model width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NORMS = ("layernorm", "rmsnorm")


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich, 2019): scale only, no centring, no bias.

    Computed in float32 and cast back, as reference implementations do, so bf16 runs match.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))  # float32 for half types, float64 kept
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """Build a norm by name: ``layernorm`` or ``rmsnorm``."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")

"""Position-wise feed-forward networks.

The paper's FFN is ``max(0, x W1 + b1) W2 + b2`` (ReLU; GELU in BERT/GPT). Gated variants
(Shazeer, 2020) multiply an activated projection by a linear one: SwiGLU (LLaMA), GeGLU (T5.1.1).

Dimension names: B batch, T sequence, D model width, F hidden (d_ff) width.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import gelu

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": gelu,  # F.gelu; a decoding step's few values in a CPU kernel once loaded (kernels.py)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}
FEEDFORWARDS = ("relu", "gelu", "gelu_tanh", "swiglu", "geglu")


class FeedForward(nn.Module):
    """Two linear maps with an activation between them."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {tuple(ACTIVATIONS)}")
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)  # on the hidden activations; the paper uses none (0.0)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        hidden = ACTIVATIONS[self.activation](self.up(x))  # (B, T, F)
        return self.down(self.dropout(hidden))


class GatedFeedForward(nn.Module):
    """``down(act(gate(x)) * up(x))``: SwiGLU with ``silu``, GeGLU with ``gelu``."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {tuple(ACTIVATIONS)}")
        self.activation = activation
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.gate_up: nn.Module | None = None  # gate and up as one product (inference: fuse_gate_up)

    def fuse_gate_up(self, cat) -> None:
        """Compute gate and up with one projection, ``cat([gate, up])``: one product per step
        instead of two, the same numbers. ``cat`` joins modules along their outputs."""
        if self.gate_up is None:
            self.gate_up = cat([self.gate, self.up])
            self.gate = self.up = None

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, F) each
        else:
            gate, up = self.gate(x), self.up(x)
        hidden = ACTIVATIONS[self.activation](gate) * up  # (B, T, F)
        return self.down(self.dropout(hidden))


def make_feedforward(kind: str, d_model: int, d_ff: int, bias: bool = True, dropout: float = 0.0) -> nn.Module:
    """Build an FFN by name: relu, gelu, gelu_tanh (the paper's two-layer form) or swiglu, geglu (gated)."""
    if kind in ("relu", "gelu", "gelu_tanh"):
        return FeedForward(d_model, d_ff, kind, bias=bias, dropout=dropout)
    if kind == "swiglu":
        return GatedFeedForward(d_model, d_ff, "silu", bias=bias, dropout=dropout)
    if kind == "geglu":
        return GatedFeedForward(d_model, d_ff, "gelu", bias=bias, dropout=dropout)
    raise ValueError(f"unknown feed-forward kind {kind!r}; expected one of {FEEDFORWARDS}")

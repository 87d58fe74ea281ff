"""Encoder and decoder layers: attention and feed-forward sublayers, each in residual + norm.

The paper applies the norm after the residual addition (post-LN): ``norm(x + dropout(f(x)))``.
Pre-LN (``norm_first=True``, GPT-2 onward) normalises the sublayer input instead:
``x + dropout(f(norm(x)))``, which trains deep stacks without warm-up tricks.

Dimension names: B batch, T target/query length, S source/memory length, D model width.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .attention import MultiHeadAttention
from .feedforward import make_feedforward
from .norm import make_norm


@dataclass
class LayerSpec:
    """What one layer is made of; model configs produce it with ``layer_spec()``."""

    d_model: int
    num_heads: int
    d_ff: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    ffn: str = "relu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    bias: bool = True
    attn_impl: str = "auto"
    attention_window: int | None = None  # sliding-window self-attention: W positions (None: all)


class Residual(nn.Module):
    """Wraps a sublayer's output in dropout, residual addition and a norm (pre or post)."""

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.norm = make_norm(spec.norm, spec.d_model, spec.norm_eps, spec.bias)
        self.dropout = nn.Dropout(spec.dropout)
        self.norm_first = spec.norm_first

    def pre(self, x: Tensor) -> Tensor:
        """The sublayer's input: normalised under pre-LN, untouched under post-LN."""
        return self.norm(x) if self.norm_first else x

    def post(self, x: Tensor, sublayer_out: Tensor) -> Tensor:
        """Add the sublayer's output back to the stream."""
        x = x + self.dropout(sublayer_out)
        return x if self.norm_first else self.norm(x)


class TransformerLayer(nn.Module):
    """Self-attention, optional cross-attention, feed-forward; each a residual sublayer.

    The paper's encoder layer (section 3.1) is this without cross-attention; its decoder layer
    adds cross-attention over the encoder output (``cross_attention=True``), and its stack
    masks the self-attention causally.
    """

    def __init__(self, spec: LayerSpec, cross_attention: bool = False, memory_dim: int | None = None):
        super().__init__()
        attn_kwargs = dict(
            num_kv_heads=spec.num_kv_heads,
            head_dim=spec.head_dim,
            bias=spec.bias,
            dropout=spec.attention_dropout,
            impl=spec.attn_impl,
        )
        self.self_attn = MultiHeadAttention(spec.d_model, spec.num_heads, **attn_kwargs)
        self.self_attn_residual = Residual(spec)
        self.cross_attn = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(spec.d_model, spec.num_heads, kv_dim=memory_dim, **attn_kwargs)
            self.cross_attn_residual = Residual(spec)
        self.ffn = make_feedforward(spec.ffn, spec.d_model, spec.d_ff, spec.bias, spec.activation_dropout)
        self.ffn_residual = Residual(spec)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        memory_mask: Tensor | None = None,
        bias: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
        key_rope: tuple[Tensor, Tensor] | None = None,
        cache=None,
        layer_idx: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """x ``(B, T, D)``; memory ``(B, S, D)`` for cross-attention. Returns ``(x, weights)``,
        where weights maps 'self' / 'cross' to ``(B, H, T, T|S)`` when ``need_weights``."""
        weights: dict[str, Tensor] = {}
        h, w = self.self_attn(
            self.self_attn_residual.pre(x),
            mask=mask,
            is_causal=is_causal,
            bias=bias,
            rope=rope,
            key_rope=key_rope,
            cache=cache,
            layer_idx=layer_idx,
            need_weights=need_weights,
        )
        x = self.self_attn_residual.post(x, h)
        if w is not None:
            weights["self"] = w
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this decoder layer has cross-attention: pass the encoder output as memory")
            h, w = self.cross_attn(
                self.cross_attn_residual.pre(x),
                memory,
                mask=memory_mask,
                cache=cache,
                layer_idx=layer_idx,
                need_weights=need_weights,
            )
            x = self.cross_attn_residual.post(x, h)
            if w is not None:
                weights["cross"] = w
        x = self.ffn_residual.post(x, self.ffn(self.ffn_residual.pre(x)))
        return x, weights

"""Scaled dot-product attention and multi-head attention.

``attention()`` is the one function everything that attends calls. It has two paths:

* ``reference``: ``softmax(Q K^T / sqrt(d_k) + bias) V`` written out (section 3.2.1), which can
  return the attention weights and is the ground truth in tests;
* ``fused``: ``torch.nn.functional.scaled_dot_product_attention``, which dispatches to flash,
  memory-efficient or cuDNN kernels on GPU;

and, where ``fused`` would run for one query per row on CPU without gradients (each decoded
token), ``_one_query``: the CPU kernel ``attend_one`` once the kernels are loaded (``kernels.py``),
else the same product in two small matmuls (SDPA would wake every thread for microseconds).

``impl="auto"`` takes the fused path unless the weights are asked for. ``need_weights=True``
always takes the reference path (the only one that materialises the weights), whatever ``impl``
says, so a model built with ``attn_impl="fused"`` can still show its attention maps.

Masks are boolean, True = may attend (see ``masks.py``). A query whose keys are all masked
gets a zero output on both paths, never NaN.

Dimension names: B batch, H query heads, Hkv key/value heads, Tq query length, Tk key length,
Dh head width, D model width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import loaded_ops
from .masks import check_mask
from .positional import apply_rotary

IMPLS = ("auto", "reference", "fused")
_SDPA_HAS_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")  # torch >= 2.5


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; expected one of {IMPLS}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (batch, heads, seq, head_dim), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    batch, heads, q_len, head_dim = q.shape
    if k.shape != v.shape[:3] + (k.shape[-1],) or k.shape[:3] != v.shape[:3]:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must agree in batch, heads and length")
    if k.shape[0] != batch or k.shape[-1] != head_dim:
        raise ValueError(f"k {tuple(k.shape)} does not match q {tuple(q.shape)} in batch size or head_dim")
    if heads % k.shape[1]:
        raise ValueError(f"query heads ({heads}) must be a multiple of key/value heads ({k.shape[1]})")
    if mask is not None:
        check_mask(mask, batch, heads, q_len, k.shape[2])
    if bias is not None and bias.dim() != 4:
        raise ValueError(f"attention bias must broadcast to (batch, heads, q_len, k_len), got {tuple(bias.shape)}")


def _expand_kv(x: Tensor, heads: int) -> Tensor:
    """Repeat key/value heads for grouped-query attention: (B, Hkv, Tk, Dh) -> (B, H, Tk, Dh)."""
    groups = heads // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
    impl: str = "auto",
    scale: float | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention.

    q ``(B, H, Tq, Dh)``, k/v ``(B, Hkv, Tk, Dh)`` with H a multiple of Hkv (grouped-query).
    ``mask``: bool, broadcastable to ``(B, H, Tq, Tk)``, True = may attend. ``bias``: float,
    added to the scores (ALiBi, relative positions). ``is_causal``: the queries are the last Tq
    of the Tk keys (aligned bottom-right, as with a KV cache), so query i sees keys
    <= i + (Tk - Tq); for Tq == Tk that is the usual lower triangle.
    Returns ``(output (B, H, Tq, Dh), weights (B, H, Tq, Tk) or None)``.
    """
    _check_inputs(q, k, v, mask, bias, impl)
    q_len, k_len = q.shape[2], k.shape[2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if is_causal:
        if mask is not None or bias is not None or q_len != k_len:
            causal = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).tril(k_len - q_len)
            mask = causal[None, None] if mask is None else mask & causal
            is_causal = False

    # Rows with no visible key would give softmax(-inf...) = NaN. Let them attend to every key
    # (finite, harmless) and zero their output afterwards.
    empty_rows = None
    if mask is not None:
        empty_rows = ~mask.any(dim=-1, keepdim=True)  # (B?, H?, Tq, 1)
        mask = mask | empty_rows

    use_reference = impl == "reference" or need_weights
    if use_reference:
        out, weights = _reference(q, k, v, mask, bias, is_causal, dropout_p, scale)
    elif _one_query_on_cpu(q, dropout_p):
        out, weights = _one_query(q, k, v, mask, bias, scale), None
    else:
        out, weights = _fused(q, k, v, mask, bias, is_causal, dropout_p, scale), None

    if empty_rows is not None:
        out = out.masked_fill(empty_rows, 0.0)
        if weights is not None:
            weights = weights.masked_fill(empty_rows, 0.0)
    return out, weights


def _reference(q, k, v, mask, bias, is_causal, dropout_p, scale):
    heads = q.shape[1]
    k, v = _expand_kv(k, heads), _expand_kv(v, heads)  # (B, H, Tk, Dh)
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias
    if is_causal:
        q_len, k_len = scores.shape[-2:]
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # softmax in at least float32 (bf16/fp16 inputs), but never below the input's precision (float64)
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)
    weights = torch.softmax(scores.to(softmax_dtype), dim=-1).to(q.dtype)  # (B, H, Tq, Tk)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return dropped @ v, weights  # (B, H, Tq, Dh)


def _one_query_on_cpu(q: Tensor, dropout_p: float) -> bool:
    """Decoding on CPU: one new query per row, no gradients, no dropout."""
    return q.device.type == "cpu" and q.shape[2] == 1 and dropout_p == 0.0 and not torch.is_grad_enabled()


def _one_query(q, k, v, mask, bias, scale):
    """One query per row on CPU. SDPA's CPU kernel (and MKL's batched matmul) split even a
    single query over PyTorch's threads, and waking them (``OMP_WAIT_POLICY=PASSIVE``) costs
    far more than the product itself (on 2 busy cores, ~1 ms against tens of microseconds for
    SmolLM2's 9 heads). So it runs in the CPU kernel ``attend_one`` (``csrc/one_query_attention.cpp``:
    each key read once for the query heads that share it, on the caller's thread unless the keys
    are long) once the kernels are loaded (``optimize()`` and ``quantize=`` load them), or,
    without them or for other dtypes, written out below, where the query
    heads of a key/value group are multiplied together so grouped-query attention copies no keys.
    The same numbers as the fused path, to float rounding."""
    ops = loaded_ops()
    if ops is not None and q.dtype == torch.float32 and q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1:
        return ops.attend_one(q, k, v, mask, None if bias is None else bias.float(), scale)
    return _one_query_written_out(q, k, v, mask, bias, scale)


def _one_query_written_out(q, k, v, mask, bias, scale):
    """``_one_query`` in PyTorch ops: two small products, a group's query heads as rows."""
    batch, heads, _, head_dim = q.shape
    kv_heads, k_len = k.shape[1], k.shape[2]
    groups = heads // kv_heads
    qg = q.reshape(batch, kv_heads, groups, head_dim)  # (B, Hkv, G, Dh): a group's queries as rows
    scores = torch.matmul(qg, k.transpose(-2, -1)) * scale  # (B, Hkv, G, Tk)
    if bias is not None:  # (B?, H?, 1, Tk)
        if bias.shape[1] == heads:
            bias = bias.reshape(bias.shape[0], kv_heads, groups, k_len)
        scores = scores + bias.to(scores.dtype)
    if mask is not None:  # (B?, H?, 1, Tk)
        if mask.shape[1] == heads and heads > 1:
            mask = mask.reshape(mask.shape[0], kv_heads, groups, mask.shape[-1])
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=-1).to(q.dtype)
    return torch.matmul(weights, v).reshape(batch, heads, 1, head_dim)  # (B, H, 1, Dh)


def _fused(q, k, v, mask, bias, is_causal, dropout_p, scale):
    heads = q.shape[1]
    attn_mask = mask
    if bias is not None:  # SDPA takes one additive float mask: fold the bool mask into the bias
        attn_mask = bias.to(q.dtype)
        if mask is not None:
            attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
    if heads != k.shape[1]:
        if _SDPA_HAS_GQA:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=True
            )
        k, v = _expand_kv(k, heads), _expand_kv(v, heads)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
    )


class MultiHeadAttention(nn.Module):
    """Multi-head attention (section 3.2.2) for self- and cross-attention.

    ``num_kv_heads`` < ``num_heads`` gives grouped-query attention (``1`` = multi-query).
    Positions enter through ``rope`` (cos, sin applied to q and k) or ``bias`` (added to the
    scores); the caller computes them once per stack. A ``cache`` keeps keys/values of past
    tokens (self-attention) or of the encoder output (cross-attention), so decoding does not
    recompute them.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        *,
        head_dim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        kv_dim: int | None = None,
        impl: str = "auto",
    ):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if head_dim is None and d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})")
        if impl not in IMPLS:
            raise ValueError(f"unknown attention impl {impl!r}; expected one of {IMPLS}")
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = head_dim or d_model // num_heads
        self.dropout, self.impl = dropout, impl
        kv_dim = kv_dim or d_model  # width of the memory in cross-attention
        self.q_proj = nn.Linear(d_model, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.head_dim, d_model, bias=bias)
        self.qkv_proj: nn.Module | None = None  # q, k, v as one product (inference: fuse_qkv)

    def fuse_qkv(self, cat) -> None:
        """Self-attention only: compute q, k and v with one projection, ``cat([q_proj, k_proj,
        v_proj])`` (one product per step instead of three, the same numbers). ``cat`` joins
        modules along their outputs (``nn.inference.cat_linears``)."""
        if self.qkv_proj is None:
            self.qkv_proj = cat([self.q_proj, self.k_proj, self.v_proj])
            self.q_proj = self.k_proj = self.v_proj = None

    def _self_projections(self, x: Tensor, source: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention's flat q from x ``(B, Tq, H*Dh)`` and k, v from source ``(B, Tk, Hkv*Dh)``:
        source is x itself, or a segment memory followed by x."""
        if self.qkv_proj is None:
            return self.q_proj(x), self.k_proj(source), self.v_proj(source)
        kv_width = self.num_kv_heads * self.head_dim
        widths = (self.num_heads * self.head_dim, kv_width, kv_width)
        q, k, v = self.qkv_proj(x).split(widths, dim=-1)
        if source is not x:  # a memory in front: its keys and values too (its q part is not used)
            _, k, v = self.qkv_proj(source).split(widths, dim=-1)
        return q, k, v

    def _split(self, x: Tensor, heads: int) -> Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, heads, self.head_dim).transpose(1, 2)  # (B, heads, T, Dh)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        bias: Tensor | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
        key_rope: tuple[Tensor, Tensor] | None = None,
        cache=None,
        layer_idx: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x ``(B, Tq, D)``; context ``(B, Tk, D_kv)`` for cross-attention (None: self-attention).

        ``key_rope``: cos/sin for the keys when they are not the queries' positions (a segment
        memory, whose keys come from memory + segment). Returns ``(output (B, Tq, D), weights
        (B, H, Tq, Tk) or None)``.
        """
        if x.dim() != 3:
            raise ValueError(f"attention input must have shape (batch, seq, d_model), got {tuple(x.shape)}")
        if context is None:  # self-attention: new keys/values, appended to the cache if any
            memory = cache is not None and cache.projects_inputs
            # a segment memory: keys and values from memory + segment (the memory comes first)
            source = cache.inputs(layer_idx, x) if memory else x  # (B, Tk, D)
            q, k, v = self._self_projections(x, source)
            q = self._split(q, self.num_heads)  # (B, H, Tq, Dh)
            k = self._split(k, self.num_kv_heads)  # (B, Hkv, Tk, Dh)
            v = self._split(v, self.num_kv_heads)
            if rope is not None:
                q, k = apply_rotary(q, *rope), apply_rotary(k, *(key_rope or rope))
            if cache is not None and not memory:
                k, v = cache.update(layer_idx, k, v)  # (B, Hkv, Tk, Dh) with the past included
        else:
            if self.qkv_proj is not None:
                raise ValueError("this attention's q/k/v projections are fused for self-attention; it takes no context")
            q = self._split(self.q_proj(x), self.num_heads)  # (B, H, Tq, Dh)
            if cache is not None and cache.has_cross(layer_idx):  # cross-attention, memory already projected
                k, v = cache.get_cross(layer_idx)
            else:
                k = self._split(self.k_proj(context), self.num_kv_heads)  # (B, Hkv, Tk, Dh)
                v = self._split(self.v_proj(context), self.num_kv_heads)
                if cache is not None:
                    cache.set_cross(layer_idx, k, v)
        out, weights = attention(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            need_weights=need_weights,
            impl=self.impl,
        )
        batch, _, q_len, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, q_len, self.num_heads * self.head_dim)  # (B, Tq, H*Dh)
        return self.out_proj(out), weights

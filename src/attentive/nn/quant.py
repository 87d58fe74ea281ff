"""Linear layers for inference on CPU: fp32 in column panels, int8 and 4-bit weight-only.

At batch 1 a decoded token reads every weight once, so the speed of a linear layer is the speed
of reading its weight: 4 bytes a weight in fp32, 1 in int8, half a byte in 4 bits. A
``PanelLinear`` holds its weight in the layout of the CPU kernel (``kernels.py``,
``csrc/panel_linear.cpp``): output columns in panels of 32, k-major, quantised values with one
scale (and optionally one minimum) per group of input features and output column::

    w[n, k] = scale[n, k // group] * q[n, k] + min[n, k // group]

* ``fp32``: the weight itself, repacked (the fast path of an unquantised model);
* ``int8``: symmetric, one scale per output channel (``group = K``) when made from float
  weights; GGUF's Q8_0 blocks (group 32) and Q4_0 / Q4_1 blocks (their 4-bit values with scale
  and minimum) are held as they are;
* ``int4``: values 0..15 with a scale and a minimum per group of 32 (GGUF's Q4_1), made from
  float weights by each group's minimum and maximum (a width that 32 does not divide gets the
  largest group below 32 that does), or taken as they are from a GGUF file.

Activations: ``act="float"`` keeps them float32 (weight-only quantisation: the kernel turns
each weight into a float and multiplies); ``act="int8"`` quantises each row of x in blocks of
32 features (one scale a block, llama.cpp's Q8_0 for activations) and multiplies integers, 64
multiply-adds an instruction with AVX512-VNNI: much less work per weight, which pays at many
rows (a batch, a prompt, an encoder), at the price of rounding the activations.

Every layer has a reference path, ``dequantize()`` + ``F.linear`` (with x rounded the same way
for ``act="int8"``), that the tests hold the kernels to; it runs when the kernels are
unavailable (``kernels.kernel_status()``). For float activations and many rows at once (a long
prompt), where a GEMM library beats the panel kernel, the dequantised weight goes to
``kernels.gemm`` (oneDNN). ``GemmLinear`` is an ``nn.Linear`` that always does that: an
encoder's layers in fp32, which see hundreds of rows a call.

Dimension names: M rows, K input features, N output features, G groups (K / group), P panels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import NP, gemm, panel_ops

MODES = ("fp32", "int8", "int4")
ACTIVATIONS = ("float", "int8")
ACT_BLOCK = 32  # features per activation scale (act="int8")
# Up to this many rows the panel kernel is faster than dequantising and calling F.linear
# (measured on 2 EPYC cores for SmolLM2's shapes); above it the reference path runs.
KERNEL_MAX_ROWS = 64


def _panels(t: Tensor) -> Tensor:
    """``(N, C)`` -> ``(P, C, 32)``: columns of the output in panels of 32 (zero-padded), C-major."""
    n, c = t.shape
    p = math.ceil(n / NP)
    padded = t.new_zeros((p * NP, c))
    padded[:n] = t
    return padded.reshape(p, NP, c).transpose(1, 2).contiguous()  # (P, C, 32)


def _unpanel(t: Tensor, n: int) -> Tensor:
    """``(P, C, 32)`` -> ``(N, C)``."""
    p, c, _ = t.shape
    return t.transpose(1, 2).reshape(p * NP, c)[:n]


def _pack_nibbles(q: Tensor) -> Tensor:
    """``(P, K, 32)`` values 0..15 -> ``(P, K, 16)`` bytes: column j low nibble, column j + 16 high."""
    q = q.to(torch.uint8)
    return q[..., :16] | (q[..., 16:] << 4)


def _unpack_nibbles(packed: Tensor) -> Tensor:
    return torch.cat((packed & 15, packed >> 4), dim=-1)  # (P, K, 32)


def _pack(q: Tensor, mode: str, act: str) -> Tensor:
    """Quantised values ``(N, K)`` in the kernel's layout: ``(P, K, 32)`` (4-bit ``(P, K, 16)``)
    for float activations; four features together, ``(P, K/4, 32, 4)`` (4-bit ``(P, K/4, 16, 4)``),
    for int8 activations."""
    panels = _panels(q)  # (P, K, 32)
    if act == "int8":
        p, k, _ = panels.shape
        panels = panels.reshape(p, k // 4, 4, NP).transpose(2, 3).contiguous()  # (P, K/4, 32, 4)
        return panels if mode == "int8" else panels[:, :, :16] | (panels[:, :, 16:] << 4)
    return panels if mode == "int8" else _pack_nibbles(panels)


def _unpack(panels: Tensor, mode: str, act: str) -> Tensor:
    """``_pack``'s inverse, to ``(P, K, 32)``."""
    if act == "int8":
        if mode == "int4":
            panels = torch.cat((panels & 15, panels >> 4), dim=2)  # (P, K/4, 32, 4)
        p, quads = panels.shape[:2]
        return panels.transpose(2, 3).reshape(p, quads * 4, NP)
    return _unpack_nibbles(panels) if mode == "int4" else panels


def quantize_activations(x: Tensor) -> Tensor:
    """``x (..., K)`` rounded as the int8-activation kernels round it: blocks of 32 features,
    ``q = round(x * (127 / max|x|))``, returned dequantised (``q * max|x| / 127``)."""
    blocks = x.float().reshape(*x.shape[:-1], -1, ACT_BLOCK)  # (..., K/32, 32)
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    # 127 / amax as one IEEE division, as the kernel computes it (``127.0 / t`` would be
    # reciprocal(t) * 127 in PyTorch: rounded twice, which moves rare ties by one step)
    inv = torch.where(amax > 0, torch.full_like(amax, 127.0) / amax, torch.zeros_like(amax))
    return ((blocks * inv).round() * (amax / 127.0)).reshape(x.shape)


@dataclass
class QuantizedWeight:
    """A weight that is already quantised (GGUF's Q8_0, Q4_0, Q4_1 blocks), as plain tensors:
    ``w[n, k] = scale[n, k // group] * values[n, k] + mins[n, k // group]``.

    ``values (N, K)``: int8 for 8-bit blocks, uint8 0..15 for 4-bit ones; ``scale`` and ``mins``
    ``(N, K / group)`` float32 (``mins`` None for symmetric blocks); ``kind`` names the source.
    """

    values: Tensor
    scale: Tensor
    mins: Tensor | None
    group: int
    bits: int
    kind: str = ""

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    def dequantize(self) -> Tensor:
        n, k = self.values.shape
        w = self.values.float().reshape(n, k // self.group, self.group) * self.scale[..., None]
        if self.mins is not None:
            w = w + self.mins[..., None]
        return w.reshape(n, k)

    def map_rows(self, fn) -> QuantizedWeight:
        """The same weight with ``fn`` applied to every row-indexed tensor (a row permutation)."""
        return QuantizedWeight(
            fn(self.values),
            fn(self.scale),
            None if self.mins is None else fn(self.mins),
            self.group,
            self.bits,
            self.kind,
        )


class PanelLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` held in panels: fp32, int8 or 4-bit (see the module docstring).

    Made by ``from_linear`` (quantising a float weight) or ``from_quantized`` (values, scales
    and minimums that are already quantised: GGUF blocks). Inference only: no gradients.
    """

    def __init__(
        self,
        mode: str,
        in_features: int,
        out_features: int,
        panels: Tensor,
        scale: Tensor | None = None,
        mins: Tensor | None = None,
        group: int | None = None,
        bias: Tensor | None = None,
        act: str = "float",
        c128: Tensor | None = None,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
        self.mode, self.in_features, self.out_features, self.act = mode, in_features, out_features, act
        self.group = group or in_features
        self.register_buffer("panels", panels)
        self.register_buffer("scale", scale)
        self.register_buffer("mins", mins)
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self.register_buffer("c128", c128)  # int8 weights, int8 activations: 128 x column sums per 32 features

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_linear(cls, linear: nn.Module, mode: str, group: int = 32, act: str = "float") -> PanelLinear:
        """From a module with ``weight (N, K)`` and an optional ``bias`` (``nn.Linear``, an output head)."""
        return cls.from_weight(linear.weight, getattr(linear, "bias", None), mode, group, act)

    @classmethod
    def from_weight(
        cls, weight: Tensor, bias: Tensor | None, mode: str, group: int = 32, act: str = "float"
    ) -> PanelLinear:
        """Quantise a float weight: int8 per output channel (symmetric), int4 per ``group`` (min/max)."""
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
        w = weight.detach().float()
        n, k = w.shape
        if mode == "fp32":
            return cls("fp32", k, n, _panels(w), bias=bias)
        if mode == "int8":
            scale = w.abs().amax(dim=1, keepdim=True) / 127.0  # (N, 1)
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
            return cls.from_quantized(q, scale, None, "int8", k, bias, act)
        if mode == "int4":
            if group < 1:
                raise ValueError(f"int4 group size must be positive, got {group}")
            group = max(d for d in range(1, min(group, k) + 1) if k % d == 0)  # groups tile the row
            groups = w.reshape(n, k // group, group)
            low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (N, G)
            scale = (high - low) / 15.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15).reshape(n, k)
            return cls.from_quantized(q.to(torch.uint8), scale, low, "int4", group, bias, act)
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    @classmethod
    def from_quantized(
        cls,
        q: Tensor,
        scale: Tensor,
        mins: Tensor | None,
        mode: str,
        group: int,
        bias: Tensor | None = None,
        act: str = "float",
    ) -> PanelLinear:
        """From quantised values ``q (N, K)`` (int8: -128..127; int4: 0..15), ``scale (N, G)`` and
        ``mins (N, G)`` or None, with ``G = K / group``: ``w = scale * q + min`` groupwise.
        ``act="int8"`` needs K and the group to be multiples of 32 (else float activations)."""
        n, k = q.shape
        if group < 1 or k % group:
            raise ValueError(f"group ({group}) must divide in_features ({k})")
        if act == "int8" and (k % ACT_BLOCK or group % ACT_BLOCK):
            act = "float"  # the int8-activation kernel works in blocks of 32 features
        scale = scale.reshape(n, k // group).float()
        mins = None if mins is None else mins.reshape(n, k // group).float()
        c128 = None
        if mode == "int8":
            if q.dtype != torch.int8:
                q = q.to(torch.int16).clamp(-128, 127).to(torch.int8)
            if act == "int8":
                sums = q.to(torch.int32).reshape(n, k // ACT_BLOCK, ACT_BLOCK).sum(dim=-1)  # (N, K/32)
                c128 = _panels((128 * sums).to(torch.int32))  # (P, K/32, 32)
        elif mode == "int4":
            if int(q.min()) < 0 or int(q.max()) > 15:
                raise ValueError(f"4-bit values must lie in 0..15, got {int(q.min())}..{int(q.max())}")
            q = q.to(torch.uint8)
        else:
            raise ValueError(f"quantised mode must be int8 or int4, got {mode!r}")
        return cls(
            mode,
            k,
            n,
            _pack(q, mode, act),
            _panels(scale),
            None if mins is None else _panels(mins),
            group,
            bias,
            act,
            c128,
        )

    @classmethod
    def from_blocks(
        cls, weight: QuantizedWeight, mode: str, bias: Tensor | None = None, act: str = "float"
    ) -> PanelLinear:
        """Keep a quantised weight's own values, scales and minimums (no requantisation):
        ``int8`` holds 8- and 4-bit blocks (4-bit values widen exactly), ``int4`` holds 4-bit
        blocks and keeps 8-bit ones in int8 (the source's precision); ``fp32`` dequantises."""
        if mode == "fp32":
            return cls.from_weight(weight.dequantize(), bias, "fp32")
        if mode not in ("int8", "int4"):
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        kernel = "int4" if mode == "int4" and weight.bits == 4 else "int8"
        values = weight.values.to(torch.int8) if kernel == "int8" else weight.values
        return cls.from_quantized(values, weight.scale, weight.mins, kernel, weight.group, bias, act)

    def join_key(self) -> tuple:
        """What layers joined by ``cat`` must share: mode, activations, input width, group, minimums."""
        return (self.mode, self.act, self.in_features, self.group, self.scale is None, self.mins is None)

    @classmethod
    def cat(cls, layers: list[PanelLinear]) -> PanelLinear:
        """One layer computing ``layers`` side by side (their outputs concatenated): exact, the
        same values, scales and minimums; a missing bias counts as zeros."""
        first = layers[0]
        for layer in layers[1:]:
            if layer.join_key() != first.join_key():
                raise ValueError(
                    f"cannot join {first.extra_repr()} and {layer.extra_repr()}: "
                    "mode, input width, group and minimums must match"
                )
        values = torch.cat([layer.values() for layer in layers])
        bias = None
        if any(layer.bias is not None for layer in layers):
            bias = torch.cat(
                [layer.bias if layer.bias is not None else torch.zeros(layer.out_features) for layer in layers]
            )
        if first.mode == "fp32":
            return cls("fp32", first.in_features, values.shape[0], _panels(values), bias=bias)
        scale = torch.cat([_unpanel(layer.scale, layer.out_features) for layer in layers])
        mins = None if first.mins is None else torch.cat([_unpanel(layer.mins, layer.out_features) for layer in layers])
        return cls.from_quantized(values, scale, mins, first.mode, first.group, bias, first.act)

    # ------------------------------------------------------------------ the product
    def values(self) -> Tensor:
        """The stored values ``(N, K)``: fp32 weights, int8, or 4-bit values 0..15 as uint8."""
        return _unpanel(_unpack(self.panels, self.mode, self.act), self.out_features)

    def dequantize(self) -> Tensor:
        """The float32 weight ``(N, K)`` the layer computes with."""
        w = self.values().float()
        if self.scale is None:
            return w
        n, k = w.shape
        scale = _unpanel(self.scale, n)  # (N, G)
        w = w.reshape(n, k // self.group, self.group) * scale[..., None]
        if self.mins is not None:
            w = w + _unpanel(self.mins, n)[..., None]
        return w.reshape(n, k)

    def reference(self, x: Tensor) -> Tensor:
        """``F.linear`` with the dequantised weight (and x rounded for int8 activations): what
        the kernel must compute."""
        xf = quantize_activations(x) if self.act == "int8" else x.float()
        return F.linear(xf, self.dequantize(), self.bias).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:  # (..., K) -> (..., N)
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)  # (M, K)
        ops = panel_ops() if x.device.type == "cpu" else None
        if ops is None or x.dtype != torch.float32 or torch.is_grad_enabled():
            return self.reference(x)
        if self.act == "float" and rows.shape[0] > KERNEL_MAX_ROWS:  # a long prompt: a GEMM library's turn
            return gemm(x, self.dequantize(), self.bias)
        if self.act == "int8":
            if self.mode == "int8":
                y = ops.linear_i8_act8(
                    rows, self.panels, self.scale, self.mins, self.c128, self.bias, self.group, self.out_features
                )
            else:
                y = ops.linear_u4_act8(
                    rows, self.panels, self.scale, self.mins, self.bias, self.group, self.out_features
                )
        elif self.mode == "fp32":
            y = ops.linear_f32(rows, self.panels, self.bias, self.out_features)
        elif self.mode == "int8":
            y = ops.linear_i8(rows, self.panels, self.scale, self.mins, self.bias, self.group, self.out_features)
        else:
            y = ops.linear_u4(rows, self.panels, self.scale, self.mins, self.bias, self.group, self.out_features)
        return y.reshape(*lead, self.out_features)

    def weight_bytes(self) -> int:
        """Bytes one product reads: values, scales and minimums."""
        return sum(t.numel() * t.element_size() for t in (self.panels, self.scale, self.mins) if t is not None)

    def extra_repr(self) -> str:
        group = f", group={self.group}" if self.scale is not None else ""
        act = ", act=int8" if self.act == "int8" else ""
        return f"{self.mode}, in_features={self.in_features}, out_features={self.out_features}{group}{act}"


class GemmLinear(nn.Linear):
    """An ``nn.Linear`` for layers that see many rows at once (an encoder's positions): its
    inference product runs in ``kernels.gemm`` (oneDNN's fp32 GEMM); training, gradients and
    other dtypes are ``nn.Linear``'s own. The same parameters and state dict as ``nn.Linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return gemm(x, self.weight, self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> GemmLinear:
        new = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        new.load_state_dict(linear.state_dict())
        return new.requires_grad_(linear.weight.requires_grad)

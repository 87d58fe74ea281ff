"""A model made ready for decoding on CPU: fused projections, weights in panels, fp32 / int8 / int4.

``optimize(model, quantize=None)`` changes a model in place, for inference only:

1. every ``nn.Linear`` of its decoder stacks and its output head becomes a ``PanelLinear``
   (``quant.py``): fp32 in the CPU kernel's layout, or int8 / int4 weights, with int8
   activations where the CPU multiplies int8 fast (AVX512-VNNI) and float ones elsewhere. ``blocks``
   (names -> ``QuantizedWeight``, e.g. a GGUF file's Q8_0 / Q4_1 blocks) are kept as they are,
   not dequantised and quantised again. Encoder stacks, which see many rows at once, become
   ``GemmLinear`` in fp32 (``nn.Linear`` computed by oneDNN's GEMM: the panel kernel is for a
   few rows) and are quantised otherwise;
2. the q/k/v projections of every self-attention and the gate/up projections of every gated
   feed-forward are joined into one product each (``fuse_projections``): fewer, larger
   products per token, the same numbers;
3. the CPU kernels are loaded, so ``attention()`` computes one query per row (each decoded
   token) in ``attend_one`` (``csrc/one_query_attention.cpp``) rather than in PyTorch ops that
   wake every thread for a product of microseconds.

The token embedding stays float (one row is read per token). The optimised model computes what
the original computes, to float rounding (fp32) or to the quantisation (int8, int4): the tests
compare tokens and logits with the reference path (``PanelLinear.reference``).

Dimension names: N output features, K input features.
"""

from __future__ import annotations

import torch
from torch import nn

from .._runtime import warn_if_spinning
from .feedforward import GatedFeedForward
from .layers import TransformerLayer
from .kernels import has_int8_activations, panel_ops
from .quant import ACTIVATIONS, MODES, GemmLinear, PanelLinear, QuantizedWeight
from .stack import TransformerStack


def cat_linears(modules: list[nn.Module]) -> nn.Module:
    """One module computing ``modules`` side by side, outputs concatenated (``nn.Linear`` or
    ``PanelLinear`` alike; a missing bias counts as zeros)."""
    if all(isinstance(m, PanelLinear) for m in modules):
        return PanelLinear.cat(modules)
    if not all(isinstance(m, nn.Linear) for m in modules):
        raise TypeError(f"cannot join {[type(m).__name__ for m in modules]}: all nn.Linear or all PanelLinear")
    weight = torch.cat([m.weight.detach() for m in modules])  # (sum N, K)
    has_bias = any(m.bias is not None for m in modules)
    kind = GemmLinear if all(isinstance(m, GemmLinear) for m in modules) else nn.Linear
    joined = kind(weight.shape[1], weight.shape[0], bias=has_bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        joined.weight.copy_(weight)
        if has_bias:
            joined.bias.copy_(
                torch.cat(
                    [m.bias.detach() if m.bias is not None else weight.new_zeros(m.out_features) for m in modules]
                )
            )
    return joined.requires_grad_(False)


def joinable(modules: list[nn.Module]) -> bool:
    """Whether ``cat_linears`` can join ``modules``: PanelLinears of one mode (a GGUF file may keep
    q in 4-bit blocks and v in 8-bit ones: those stay apart), or plain linears."""
    if all(isinstance(m, PanelLinear) for m in modules):
        return len({m.join_key() for m in modules}) == 1
    return True


def fuse_projections(model: nn.Module) -> int:
    """Join q/k/v of every self-attention and gate/up of every gated FFN whose projections can be
    joined (``joinable``); returns how many joins."""
    joins = 0
    for module in model.modules():
        if isinstance(module, TransformerLayer) and module.self_attn.qkv_proj is None:
            attn = module.self_attn
            if joinable([attn.q_proj, attn.k_proj, attn.v_proj]):
                attn.fuse_qkv(cat_linears)
                joins += 1
        elif isinstance(module, GatedFeedForward) and module.gate_up is None:
            if joinable([module.gate, module.up]):
                module.fuse_gate_up(cat_linears)
                joins += 1
    return joins


def _encoder_modules(model: nn.Module) -> set[int]:
    """ids of the modules inside non-causal stacks (encoders)."""
    inside: set[int] = set()
    for module in model.modules():
        if isinstance(module, TransformerStack) and not module.causal:
            inside.update(id(m) for m in module.modules())
    return inside


def default_activations(mode: str) -> str:
    """int8 activations for quantised weights where the CPU multiplies int8 fast (AVX512-VNNI)."""
    return "int8" if mode != "fp32" and has_int8_activations() else "float"


def quantize_linears(
    model: nn.Module,
    mode: str,
    *,
    blocks: dict[str, QuantizedWeight] | None = None,
    group: int = 32,
    encoders: bool | None = None,
    activations: str | None = None,
) -> int:
    """Every ``nn.Linear`` (and the output ``head``) -> ``PanelLinear`` in ``mode``; ``blocks``
    maps a weight's name (``stack.layers.0.ffn.up.weight``) to quantised values kept as they are.
    ``encoders``: include non-causal stacks (default: unless ``mode`` is fp32). ``activations``:
    ``float`` or ``int8`` (default ``default_activations(mode)``). Returns the count."""
    if mode not in MODES:
        raise ValueError(f"quantize must be one of {MODES}, got {mode!r}")
    act = activations or default_activations(mode)
    if act not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS}, got {act!r}")
    if mode == "fp32":
        act = "float"
    blocks = blocks or {}
    encoders = mode != "fp32" if encoders is None else encoders
    skip = set() if encoders else _encoder_modules(model)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and id(module) not in skip
    ]
    head = getattr(model, "head", None)
    if head is not None and isinstance(getattr(head, "weight", None), torch.Tensor) and not isinstance(head, nn.Linear):
        targets.append(("head", head))
    if mode == "fp32":  # the encoders' many rows: oneDNN's GEMM
        encoder_linears = [
            (name, module) for name, module in model.named_modules() if id(module) in skip and type(module) is nn.Linear
        ]
        for name, module in encoder_linears:
            _set_module(model, name, GemmLinear.from_linear(module))
    for name, module in targets:
        source = blocks.get(f"{name}.weight")
        if source is None and name == "head" and getattr(getattr(model, "config", None), "tie_embeddings", False):
            source = blocks.get("embed.weight")
        bias = getattr(module, "bias", None)
        if source is not None:
            if tuple(source.shape) != tuple(module.weight.shape):
                raise ValueError(
                    f"{name}: quantised weight {tuple(source.shape)} does not match {tuple(module.weight.shape)}"
                )
            new = PanelLinear.from_blocks(source, mode, bias, act)
        else:
            new = PanelLinear.from_linear(module, mode, group, act)
        _set_module(model, name, new)
    return len(targets)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def optimize(
    model: nn.Module,
    quantize: str | None = None,
    *,
    blocks: dict[str, QuantizedWeight] | None = None,
    group: int = 32,
    fuse: bool = True,
    activations: str | None = None,
) -> nn.Module:
    """``model`` (on CPU, float32) made ready for decoding, in place; see the module docstring.
    ``quantize``: None (fp32 panels), ``"int8"`` or ``"int4"``; ``group``: int4 group size;
    ``activations``: ``"float"`` or ``"int8"`` for quantised weights (default: int8 where the CPU
    has AVX512-VNNI)."""
    param = next(model.parameters(), None)
    if param is not None and (param.device.type != "cpu" or param.dtype != torch.float32):
        raise ValueError(f"optimize() prepares float32 models on CPU; this one is {param.dtype} on {param.device}")
    model.eval().requires_grad_(False)
    warn_if_spinning()
    panel_ops()  # built or loaded now (about 30 s the first time), not at the first token
    quantize_linears(model, quantize or "fp32", blocks=blocks, group=group, activations=activations)
    if fuse:
        fuse_projections(model)
    model.inference = quantize or "fp32"  # what was done, for messages and benchmarks
    return model

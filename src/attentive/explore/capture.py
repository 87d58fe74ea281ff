"""Taps on a running model: the exact attention weights of every layer, and the residual stream.

The explorer never recomputes attention on its own. While an ``AttentionTap`` is active, every
``MultiHeadAttention`` of the model is called with ``need_weights=True``, so ``attention()``
takes its reference path and returns the exact weights; the tap hands them to a sink
``(site, weights)`` and, unless the caller asked for the weights itself, drops them there. Memory
then holds one layer's weights at a time (SmolLM2 at 1,024 tokens: 38 MB instead of 1.1 GB for
all 30 layers), and the same tap works inside the decoding engine, whose KV-cache steps never
ask for weights.

A ``StreamTap`` records the residual stream of each layer: its input, the stream after each
residual sub-layer, and the output, plus each sub-layer's own output (what it adds).

Both are PyTorch module hooks, removed on exit; a model must not run in two threads while a tap
is on it (the explorer holds a lock per model).

Dimension names: B batch, H heads, Tq queries, Tk keys, T tokens, D model width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..nn.layers import TransformerLayer
from ..nn.stack import TransformerStack

KINDS = ("self", "cross")


@dataclass(frozen=True)
class Site:
    """Where a weight tensor came from: ``stack`` is the stack's attribute name in the model
    (``stack``, ``encoder``, ``decoder``), ``kind`` self- or cross-attention."""

    stack: str
    layer: int
    kind: str


def stacks_of(model: nn.Module) -> dict[str, TransformerStack]:
    """The model's Transformer stacks by attribute name, in the order they were registered."""
    found = {name: module for name, module in model.named_modules() if isinstance(module, TransformerStack)}
    if not found:
        raise ValueError(f"{type(model).__name__} has no TransformerStack: nothing to explore")
    return found


def attention_sites(model: nn.Module) -> dict[Site, nn.Module]:
    """Every attention module of the model, keyed by its site."""
    sites = {}
    for name, stack in stacks_of(model).items():
        for i, layer in enumerate(stack.layers):
            sites[Site(name, i, "self")] = layer.self_attn
            if layer.cross_attn is not None:
                sites[Site(name, i, "cross")] = layer.cross_attn
    return sites


class AttentionTap:
    """Context manager: every attention layer computes exact weights and passes them to ``sink``.

    ``sink(site, weights)`` gets ``weights (B, H, Tq, Tk)`` from ``attention(..., need_weights=True)``
    each time a layer runs (once per model call; once per step in the decoding engine).
    """

    def __init__(self, model: nn.Module, sink: Callable[[Site, Tensor], None]):
        self.sites = attention_sites(model)
        self.sink = sink
        self._handles: list = []
        self._asked: dict[int, bool] = {}  # id(module) -> did the caller ask for the weights?

    def __enter__(self) -> AttentionTap:
        for site, module in self.sites.items():
            self._handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post_for(site)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre(self, module, args, kwargs):
        self._asked[id(module)] = bool(kwargs.get("need_weights", False))
        return args, {**kwargs, "need_weights": True}

    def _post_for(self, site: Site):
        def post(module, args, output):
            out, weights = output
            self.sink(site, weights.detach())
            return out, (weights if self._asked.pop(id(module), False) else None)

        return post


@dataclass
class LayerStream:
    """One layer's residual stream as sizes: ``points`` (input, then the stream after each residual
    sub-layer) and ``added`` (each sub-layer's own output), each an L2 norm per token ``(B, T)``."""

    points: list[tuple[str, Tensor]] = field(default_factory=list)
    added: list[tuple[str, Tensor]] = field(default_factory=list)


class StreamTap:
    """Context manager: the size of ``stack``'s residual stream before and after each sub-layer,
    and (``keep_outputs``) every layer's output ``(B, T, D)`` for the logit lens.

    The streams between sub-layers are the layer's own ``Residual.post`` of its input and the
    sub-layer's output, so pre-LN and post-LN layers are both recorded as they compute. Only
    norms are kept (a long input's full streams would be hundreds of MB).
    """

    def __init__(self, stack: TransformerStack, keep_outputs: bool = False):
        self.stack, self.keep_outputs = stack, keep_outputs
        self.layers: list[LayerStream] = [LayerStream() for _ in stack.layers]
        self.outputs: list[Tensor | None] = [None] * len(stack.layers)  # each (B, T, D)
        self._handles: list = []
        self._inputs: list[Tensor | None] = [None] * len(stack.layers)
        self._sub: list[dict[str, Tensor]] = [{} for _ in stack.layers]

    def __enter__(self) -> StreamTap:
        for i, layer in enumerate(self.stack.layers):
            self._handles.append(layer.register_forward_pre_hook(self._layer_in(i)))
            self._handles.append(layer.register_forward_hook(self._layer_out(i, layer)))
            subs = [("self-attention", layer.self_attn), ("feed-forward", layer.ffn)]
            if layer.cross_attn is not None:
                subs.insert(1, ("cross-attention", layer.cross_attn))
            for name, module in subs:
                self._handles.append(module.register_forward_hook(self._sub_out(i, name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inputs = [None] * len(self.stack.layers)
        self._sub = [{} for _ in self.stack.layers]

    def _layer_in(self, i: int):
        def hook(module, args):
            self._inputs[i] = args[0].detach()

        return hook

    def _sub_out(self, i: int, name: str):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            self._sub[i][name] = out.detach()

        return hook

    def _layer_out(self, i: int, layer: TransformerLayer):
        def hook(module, args, output):
            x, sub = self._inputs[i], self._sub[i]
            residuals = [("self-attention", layer.self_attn_residual)]
            if layer.cross_attn is not None:
                residuals.append(("cross-attention", layer.cross_attn_residual))
            record = LayerStream(points=[("input", _norm(x))])
            with torch.no_grad():
                for name, residual in residuals:
                    x = residual.post(x, sub[name])
                    record.points.append((f"after {name}", _norm(x)))
            out = output[0].detach()
            record.points.append(("after feed-forward", _norm(out)))
            record.added = [(name, _norm(t)) for name, t in sub.items()]
            self.layers[i] = record
            if self.keep_outputs:
                self.outputs[i] = out
            self._inputs[i], self._sub[i] = None, {}

        return hook


def _norm(x: Tensor) -> Tensor:
    return x.float().norm(dim=-1)  # (B, T, D) -> (B, T)

"""What the explorer keeps of one stack's attention weights, and what it sends of them.

A run hands every layer's exact weights to a ``WeightStore`` as they are computed (see
``capture.AttentionTap``); the store keeps:

* ``thumbs``: every layer x head as a small picture (max-pooled to at most ``THUMB`` x ``THUMB``
  cells, scaled by the map's own maximum, 0..255) for the model view;
* ``top``: each query's ``TOP_K`` strongest keys and their exact weights (the links a long input
  draws, and the hover list);
* ``dense``: all weights, exact, when ``layers x heads x Tq x Tk`` stays under ``DENSE_LIMIT``
  floats; longer inputs keep only ``top`` (send what is on screen or the strongest links).

``block`` cuts what a view asks for: the rows and columns on screen, for every head of a layer.
Weights travel as JSON numbers from float32 values (``tolist``), so the page reads exactly the
numbers ``attention()`` computed.

Dimension names: L layers, H heads, Tq queries, Tk keys, K kept links per query, G thumbnail side.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

THUMB = 48  # thumbnail side in cells
TOP_K = 16  # strongest links kept per query
DENSE_LIMIT = 40_000_000  # floats kept exactly per stack (160 MB)
WINDOW = 64  # rows a view asks for at once
MAX_CELLS = 100_000  # weights per head in one answer (64 rows x 1,500 audio positions)


@dataclass
class WeightStore:
    """One stack's weights (e.g. the decoder's self-attention), built layer by layer."""

    name: str  # stack key: "self", "encoder", "decoder", "cross"
    label: str  # for people: "decoder self-attention"
    q_tokens: list[str]
    k_tokens: list[str]
    layers: int
    heads: int
    keep_dense: bool = True
    dense: list[Tensor] = field(default_factory=list)  # per layer (H, Tq, Tk) float32
    top_values: list[Tensor] = field(default_factory=list)  # per layer (H, Tq, K)
    top_index: list[Tensor] = field(default_factory=list)  # per layer (H, Tq, K)
    thumbs: list[Tensor] = field(default_factory=list)  # per layer (H, G, G') uint8

    @classmethod
    def sized(
        cls, name: str, label: str, q_tokens: list[str], k_tokens: list[str], layers: int, heads: int
    ) -> WeightStore:
        floats = layers * heads * len(q_tokens) * len(k_tokens)
        return cls(name, label, q_tokens, k_tokens, layers, heads, keep_dense=floats <= DENSE_LIMIT)

    def add(self, weights: Tensor) -> None:
        """The next layer's weights ``(H, Tq, Tk)`` (one batch row)."""
        w = weights.float()
        if w.shape != (self.heads, len(self.q_tokens), len(self.k_tokens)):
            raise ValueError(
                f"{self.label} layer {len(self.thumbs)}: weights of shape {tuple(w.shape)}, "
                f"expected {(self.heads, len(self.q_tokens), len(self.k_tokens))}"
            )
        k = min(TOP_K, w.shape[-1])
        values, index = w.topk(k, dim=-1)  # (H, Tq, K)
        self.top_values.append(values.clone())
        self.top_index.append(index.to(torch.int32))
        self.thumbs.append(thumbnail(w))
        if self.keep_dense:
            self.dense.append(w.clone())

    @property
    def complete(self) -> bool:
        return len(self.thumbs) == self.layers

    def summary(self) -> dict:
        """What the model view needs: shapes, labels and every thumbnail (base64 uint8)."""
        thumbs = torch.stack(self.thumbs)  # (L, H, G, G')
        return {
            "name": self.name,
            "label": self.label,
            "layers": self.layers,
            "heads": self.heads,
            "q_tokens": self.q_tokens,
            "k_tokens": self.k_tokens,
            "dense": self.keep_dense,
            "top_k": int(self.top_values[0].shape[-1]) if self.top_values else 0,
            "thumb_shape": list(thumbs.shape[-2:]),
            "thumbs": base64.b64encode(thumbs.numpy().tobytes()).decode("ascii"),
        }

    def layer(self, layer: int) -> int:
        if not -self.layers <= layer < self.layers:
            raise ValueError(f"layer {layer} is out of range: the {self.label} has {self.layers} layers")
        return layer % self.layers

    def block(
        self,
        layer: int,
        q0: int = 0,
        q1: int | None = None,
        k0: int = 0,
        k1: int | None = None,
        head: int | str | None = None,
    ) -> dict:
        """Rows ``q0:q1`` over keys ``k0:k1`` of ``layer`` (exact, when kept dense), for every head
        (``head`` None), one head, or their ``"mean"``; each row's strongest links anywhere, and the
        weight each row puts on keys before ``k0`` and after ``k1``."""
        layer = self.layer(layer)
        tq, tk = len(self.q_tokens), len(self.k_tokens)
        q1 = min(tq, q0 + WINDOW) if q1 is None else q1
        k1 = tk if k1 is None else k1
        if not (0 <= q0 < q1 <= tq and 0 <= k0 < k1 <= tk):
            raise ValueError(f"rows {q0}:{q1} and columns {k0}:{k1} do not fit the {self.label}'s {tq} x {tk} weights")
        if (q1 - q0) * (k1 - k0) > MAX_CELLS:
            raise ValueError(
                f"{q1 - q0} x {k1 - k0} weights is more than one view shows (at most {MAX_CELLS:,} "
                f"per head); ask for a smaller window"
            )
        heads = self._heads(head)
        out = {
            "layer": layer,
            "q0": q0,
            "q1": q1,
            "k0": k0,
            "k1": k1,
            "dense": self.keep_dense,
            "heads": head if isinstance(head, (int, str)) else "all",
            "top_index": self.top_index[layer][heads, q0:q1].tolist(),
            "top_values": self.top_values[layer][heads, q0:q1].tolist(),
        }
        if self.keep_dense:
            w = self.dense[layer][heads, q0:q1]  # (h, q, Tk)
            if head == "mean":
                w = w.mean(dim=0, keepdim=True)
            out["weights"] = w[:, :, k0:k1].tolist()
            out["before"] = w[:, :, :k0].sum(-1).tolist()  # (h, q)
            out["after"] = w[:, :, k1:].sum(-1).tolist()
        return out

    def _heads(self, head: int | str | None) -> slice | list[int]:
        if head is None or head == "mean":
            return slice(None)
        if isinstance(head, bool) or not isinstance(head, int) or not -self.heads <= head < self.heads:
            raise ValueError(
                f"head {head!r} is not one of the {self.heads} heads (0..{self.heads - 1}), 'mean' or all (none given)"
            )
        return [head % self.heads]


def thumbnail(weights: Tensor, side: int = THUMB) -> Tensor:
    """``(H, Tq, Tk)`` -> ``(H, G, G')`` uint8: each cell the largest weight it covers, scaled by
    the map's maximum (a long input's maps are otherwise too faint to see)."""
    h, tq, tk = weights.shape
    pooled = F.adaptive_max_pool2d(weights[:, None], (min(tq, side), min(tk, side)))[:, 0]  # (H, G, G')
    peak = pooled.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return (pooled / peak * 255).round().to(torch.uint8)


def as_b64(t: Tensor) -> str:
    """A uint8 tensor's bytes as base64 (row-major), for pictures the page draws."""
    return base64.b64encode(t.contiguous().to(torch.uint8).numpy().tobytes()).decode("ascii")

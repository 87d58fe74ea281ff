"""Where a Vision Transformer looks: attention rollout and the class token's attention, over the image.

Attention rollout (Abnar & Zuidema, 2020) follows information from the input patches to the
class token through every layer: average the heads, add the identity for the residual
stream, renormalise rows, and multiply the layers' matrices. The class token's row of the
product says how much each patch contributed. The simpler alternative, ``last``, is the
class token's attention in the final layer alone.

Dimension legend: B batch, H heads, T tokens (class token first), N = T - 1 patches,
G x G patch grid.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .figure import save_figure

METHODS = ("rollout", "last")


def attention_rollout(attentions: list[Tensor], residual: float = 0.5) -> Tensor:
    """Per-layer weights, each ``(B, H, T, T)`` -> rolled-out ``(B, T, T)`` (rows sum to 1).

    ``residual`` is the share of the identity mixed into each layer: 0.5 is the paper's
    ``0.5 * A + 0.5 * I``.
    """
    if not attentions:
        raise ValueError("attention rollout needs the weights of at least one layer")
    result = None
    for weights in attentions:
        a = weights.float().mean(dim=1)  # (B, T, T), heads averaged
        eye = torch.eye(a.shape[-1], device=a.device)
        a = (1 - residual) * a + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    return result


def class_token_map(attentions: list[Tensor], method: str = "rollout") -> Tensor:
    """Per-layer weights -> the class token's attention over the patch grid ``(B, G, G)``, max 1."""
    if method not in METHODS:
        raise ValueError(f"unknown attention map method {method!r}; expected one of {METHODS}")
    if method == "rollout":
        row = attention_rollout(attentions)[:, 0, 1:]  # (B, N)
    else:
        row = attentions[-1].float().mean(dim=1)[:, 0, 1:]  # (B, N)
    grid = math.isqrt(row.shape[-1])
    if grid * grid != row.shape[-1]:
        raise ValueError(f"{row.shape[-1]} patches do not form a square grid")
    row = row / row.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return row.reshape(-1, grid, grid)


def save_attention_overlay(
    image: np.ndarray | Tensor,
    heat: np.ndarray | Tensor,
    png_path: str | Path,
    title: str = "",
) -> Path:
    """Draw ``image (H, W)`` beside itself with ``heat (G, G)`` upsampled over it; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.asarray(image.detach().cpu() if isinstance(image, Tensor) else image, dtype=np.float32)
    heat = np.asarray(heat.detach().cpu() if isinstance(heat, Tensor) else heat, dtype=np.float32)
    if image.ndim != 2 or heat.ndim != 2:
        raise ValueError(f"expected a 2-d image and a 2-d map, got shapes {image.shape} and {heat.shape}")
    h, w = image.shape
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2), dpi=120)
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("input")
    axes[1].imshow(image, cmap="gray")
    axes[1].imshow(heat, cmap="inferno", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
    axes[1].set_title("attention")
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, png_path)

"""Attention heatmaps: which source tokens each output token attended to.

``plot_attention(weights, source_tokens, output_tokens, png)`` draws ``weights (H, T, S)`` as
one panel per head (source tokens along x, output tokens along y), or one panel of the
head-average with ``average=True``. Rows are probability distributions (each sums to 1).

Dimension names: H heads, T output tokens, S source tokens.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor

from .figure import save_figure


def plot_attention(
    weights: Tensor,
    source_tokens: list[str],
    output_tokens: list[str],
    png_path: str | Path,
    average: bool = False,
    title: str = "",
) -> Path:
    """Write a PNG heatmap of ``weights (H, T, S)``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if weights.dim() != 3:
        raise ValueError(f"attention weights must be (heads, output, source), got shape {tuple(weights.shape)}")
    heads, t_len, s_len = weights.shape
    if (t_len, s_len) != (len(output_tokens), len(source_tokens)):
        raise ValueError(
            f"weights cover {t_len} output x {s_len} source tokens, labels give "
            f"{len(output_tokens)} x {len(source_tokens)}"
        )
    panels = weights.float().mean(0, keepdim=True) if average else weights.float()  # (P, T, S)
    names = ["mean of heads"] if average else [f"head {h}" for h in range(heads)]
    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    cell = 0.32
    width = max(3.0, cell * s_len + 1.2)
    height = max(2.5, cell * t_len + 1.2)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(max(width * cols + 1.0, 6.0), height * rows + 0.6),
        dpi=100,
        squeeze=False,
        layout="constrained",
    )
    for i, (ax, panel, name) in enumerate(zip(axes.flat, panels, names)):
        image = ax.imshow(panel.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(s_len), source_tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(t_len), output_tokens, fontsize=8)
        if i // cols == rows - 1:
            ax.set_xlabel("source")
        if i % cols == 0:
            ax.set_ylabel("output")
        ax.set_title(name, fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title, fontsize=10, wrap=True)
    return save_figure(fig, png_path)

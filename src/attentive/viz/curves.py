"""Loss curves from a run's ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

from ..fileio import read_jsonl
from .figure import save_figure


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """Train loss (per logged step) and validation loss (per evaluation) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(metrics_path)
    points = [r for r in records if _number(r.get("step")) and _number(r.get("loss"))]  # a mangled record is no point
    train = [(r["step"], r["loss"]) for r in points if r.get("split") == "train"]
    val = [(r["step"], r["loss"]) for r in points if r.get("split") == "val"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1.0, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or Path(metrics_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, png_path)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

"""Saving figures: one place that writes a PNG atomically and frees the figure."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, png_path: str | Path) -> Path:
    """Write ``fig`` to ``png_path`` (folders created) via a temporary file, then close it.

    A reader of the run folder never sees a half-written picture.
    """
    import matplotlib.pyplot as plt

    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    try:
        fig.savefig(tmp)
        tmp.replace(png_path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return png_path

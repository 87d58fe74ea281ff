"""Options and helpers that several commands share."""

from __future__ import annotations

from pathlib import Path

import torch

from ..device import DEVICE_CHOICES


def add_device(parser) -> None:
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")


def load_checkpoint(path: str, device: torch.device):
    """Model from a checkpoint folder; errors become one line (CheckpointError is a ValueError)."""
    from ..checkpoint import load_model

    return load_model(Path(path), device=device).eval()


def read_inputs(texts: list[str], file: str | None) -> list[str]:
    """Sentences from arguments, a file, or standard input (one per line)."""
    import sys

    if texts:
        return texts
    if file:
        return Path(file).read_text(encoding="utf-8").splitlines()
    if sys.stdin.isatty():
        raise ValueError("give the text as arguments, with --file, or on standard input")
    return sys.stdin.read().splitlines()

"""Options and helpers that several commands share."""

from __future__ import annotations

from pathlib import Path

import torch


def add_device(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for, but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"--device {name!r} is not one of auto, cpu, cuda")
    return torch.device(name)


def load_checkpoint(path: str, device: torch.device):
    """Model from a checkpoint folder; errors become one line (CheckpointError is a ValueError)."""
    from ..train.checkpoint import load_model

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

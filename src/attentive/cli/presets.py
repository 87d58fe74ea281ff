"""``attentive presets``: the model presets, with parameter counts (recipes: ``attentive recipes``)."""

from __future__ import annotations

import torch

from ..config import build_model, get_preset, presets


def count_parameters(name: str) -> int:
    """Parameters of a preset, counted on the meta device (no memory, no init time)."""
    with torch.device("meta"):
        model = build_model(get_preset(name).config)
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def run(args) -> int:
    print(f"{'model preset':<22} {'params':>10}  description   (attentive.build(NAME); recipes: attentive recipes)")
    for name in presets():
        print(f"{name:<22} {count_parameters(name) / 1e6:>9.1f}M  {get_preset(name).description}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("presets", help="list the model presets with their parameter counts")
    p.set_defaults(func=run)

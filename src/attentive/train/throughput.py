"""Training speed as a fraction of the hardware: model FLOPs utilisation (MFU).

A task says how many training FLOPs one of its units costs (``Task.flops_per_unit``); the
trainer multiplies by its measured units per second and divides by the device's peak, so
speed reads as a fraction of the card (nanoGPT, PaLM) rather than an absolute number.
"""

from __future__ import annotations

import torch
from torch import nn

# bf16 dense peak we hold MFU against (measured large-matmul rates on the cards we use)
PEAK_BF16_FLOPS = {"H100": 760e12, "H200": 790e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak of a known GPU, or None (CPUs and unknown cards report no MFU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def transformer_flops_per_token(model: nn.Module, num_layers: int, d_model: int, context: int) -> float:
    """6 N (weights, forward + backward) + 12 L d T (attention scores and values), as in PaLM's MFU."""
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return 6 * n_params + 12 * num_layers * d_model * context


def mfu(units_per_s: float, flops_per_unit: float | None, peak: float | None, world_size: int = 1) -> float | None:
    """Achieved training FLOP/s over the peak of ``world_size`` devices (None when either is unknown)."""
    if not flops_per_unit or not peak:
        return None
    return units_per_s * flops_per_unit / (peak * world_size)

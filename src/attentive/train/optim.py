"""Optimisers and learning-rate schedules, named so recipes can choose them.

The paper: Adam(0.9, 0.98, eps 1e-9) with ``lr = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``
(section 5.3). Language models: AdamW with weight decay on matrices only, warm-up then cosine.
Schedules are pure functions of the step (and, optionally, of elapsed time), so a resumed run
needs no scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

SCHEDULES = ("noam", "inverse_sqrt", "cosine", "linear", "constant")
OPTIMIZERS = ("adam", "adamw")


@dataclass
class OptimConfig:
    optimizer: str = "adam"
    lr: float = 1.0  # peak learning rate; for "noam" the paper's scale factor (1.0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    schedule: str = "noam"
    warmup_steps: int = 4000
    min_lr_ratio: float = 0.0  # cosine/linear decay floor, as a fraction of the peak
    model_dim: int | None = None  # d_model for the noam scale (None: the trained model's width)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        self.betas = tuple(self.betas)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (dim >= 2) only; biases, norm gains and 1-d parameters are left alone."""
    seen: set[int] = set()
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, config: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    kwargs = dict(lr=config.lr, betas=config.betas, eps=config.eps)
    if device.type == "cuda":
        kwargs["fused"] = True  # one kernel for the whole update
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, **kwargs)


def lr_at(step: int, config: OptimConfig, progress: float | None = None, model_dim: int | None = None) -> float:
    """Learning rate for optimizer step ``step`` (1-based).

    ``progress`` in [0, 1] is how far through training we are, for decaying schedules
    (by steps, or by time when a run is budgeted in minutes). ``model_dim`` is the trained
    model's width, which the "noam" schedule scales by unless ``config.model_dim`` says otherwise.
    """
    step = max(step, 1)
    warmup = max(config.warmup_steps, 1)
    if config.schedule == "noam":
        dim = config.model_dim or model_dim
        if not dim:
            raise ValueError(
                "schedule 'noam' scales by the model width: the model has no config.d_model, so set model_dim"
            )
        return config.lr * dim**-0.5 * min(step**-0.5, step * warmup**-1.5)
    if config.schedule == "inverse_sqrt":
        return config.lr * min(step / warmup, math.sqrt(warmup / step))
    if step < warmup:
        return config.lr * step / warmup
    if config.schedule == "constant":
        return config.lr
    progress = 1.0 if progress is None else min(max(progress, 0.0), 1.0)
    floor = config.lr * config.min_lr_ratio
    if config.schedule == "cosine":
        return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (config.lr - floor) * (1 - progress)  # linear

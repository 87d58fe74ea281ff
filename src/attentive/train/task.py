"""What the one trainer needs from a job (translation, language modelling, images, RL).

The contract lives beside the trainer that calls it; ``attentive.tasks`` implements it.

A task knows its data, its loss and its evaluation; the trainer knows optimisation,
precision, checkpoints, logging and distribution. Keeping the line there lets every job
share one training loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class Task:
    """Base class; subclasses override what they need."""

    name = "task"
    unit = "tok"  # what ``count`` counts, for the progress bar (tok, img, step)

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Sequence[Any]:
        """This rank's micro-batches for ``epoch``: deterministic, indexable (for exact resume)."""
        raise NotImplementedError

    def count(self, batch: Any) -> int:
        """Loss units in a micro-batch (target tokens, images, ...): the loss is averaged over them."""
        raise NotImplementedError

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch.to(device) if hasattr(batch, "to") else batch

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Summed (not averaged) loss over the batch's units, and extra metrics."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Periodic evaluation (validation loss, ...). Called with the model in eval mode."""
        return {}

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        """Evaluation at the end of training (test BLEU, accuracy, returns ...)."""
        return self.evaluate(model)

    def save_artifacts(self, directory: Path) -> None:
        """Write what inference needs beside the weights (tokenizer.json, normalisation stats)."""

    def flops_per_unit(self, model: nn.Module) -> float | None:
        """Training FLOPs per unit (forward + backward), for model FLOPs utilisation."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-able task state for exact resume (beyond the data position the trainer keeps)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

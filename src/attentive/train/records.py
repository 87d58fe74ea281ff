"""What a run reports as it trains: its ``metrics.jsonl`` records and the progress bar.

A train record covers the steps since the previous one (``log_every``): the loss summed over
those steps and every rank, divided by their loss units (tokens, images), the learning rate,
units per second and, where known, model FLOPs utilisation and peak GPU memory. Evaluations add
``val`` records. Rank 0 alone writes and shows the bar; the other ranks only join the sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .distributed import DistContext
from .run_folder import RunFolder
from .task import Task
from .throughput import mfu, peak_flops


@dataclass
class LogWindow:
    """The steps since the last train record: their summed loss, loss units and seconds."""

    loss_sum: torch.Tensor  # () on the training device: read once per record, not every step
    units: int = 0
    seconds: float = 0.0

    @classmethod
    def on(cls, device: torch.device) -> LogWindow:
        return cls(torch.zeros((), device=device))  # ()

    def add_loss(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss.detach().float()

    def add_step(self, units: int, seconds: float) -> None:
        self.units += units
        self.seconds += seconds

    def clear(self) -> None:
        self.loss_sum.zero_()
        self.units, self.seconds = 0, 0.0


class RunRecords:
    """One run's metrics records (``metrics.jsonl``, plotted to ``loss.png``) and progress bar."""

    def __init__(self, run: RunFolder, dist: DistContext, task: Task):
        self.run, self.dist, self.task = run, dist, task
        self.flops_per_unit: float | None = None
        self.peak: float | None = None
        self.bar = None

    def log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            self.run.log(record)

    def plot(self) -> None:
        if self.dist.is_main:
            self.run.plot(self.task.name)

    def start(self, flops_per_unit: float | None, progress: bool, fraction: float) -> None:
        """Before the first step: what MFU is measured against, and (``progress``, rank 0) the bar,
        starting at ``fraction`` of the run (a resumed run is part done)."""
        self.flops_per_unit, self.peak = flops_per_unit, peak_flops(self.dist.device)
        if progress and self.dist.is_main:
            from tqdm.auto import tqdm

            # the bar runs over the fraction of the run done, by steps or by the time budget,
            # whichever ends it first, so a run budgeted in minutes does not sit at 0%
            self.bar = tqdm(
                total=100.0,
                initial=100 * fraction,
                desc=self.task.name,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
            )

    def train(self, step: int, lr: float, window: LogWindow, elapsed: float, fraction: float) -> None:
        """Record ``window`` (then cleared) as of ``step``; the loss is summed over ranks, so every
        rank calls this. ``fraction``: how much of the run is done, for the bar."""
        loss_value = self.dist.all_reduce_sum(window.loss_sum).item() / max(window.units, 1)
        rate = window.units / max(window.seconds, 1e-9)
        record = {
            "step": step,
            "split": "train",
            "loss": loss_value,
            "lr": lr,
            f"{self.task.unit}_per_s": rate,
            "elapsed_s": round(elapsed, 2),
        }
        utilisation = mfu(rate, self.flops_per_unit, self.peak, self.dist.world_size)
        if utilisation is not None:
            record["mfu"] = utilisation
        if self.dist.device.type == "cuda":
            record["max_mem_gib"] = round(torch.cuda.max_memory_allocated(self.dist.device) / 2**30, 3)
        self.log(record)
        if self.bar is not None:
            postfix = {
                "step": step,
                "loss": f"{loss_value:.4f}",
                "lr": f"{lr:.2e}",
                f"{self.task.unit}/s": f"{rate:,.0f}",
            }
            if utilisation is not None:
                postfix["mfu"] = f"{utilisation:.1%}"
            self.bar.set_postfix(postfix)
            self.bar.update(100 * fraction - self.bar.n)
        window.clear()

    def evaluation(self, step: int, metrics: dict[str, float]) -> None:
        self.log({"step": step, "split": "val", **metrics})

    def close(self, fraction: float) -> None:
        """The bar's last update (to ``fraction`` of the run), and close it."""
        if self.bar is not None:
            self.bar.update(100 * fraction - self.bar.n)
            self.bar.close()
            self.bar = None

"""One training loop for every task.

The loop: draw ``grad_accum`` micro-batches, sum their losses, divide by the number of loss
units (tokens, images) in the whole step across all ranks, step the optimiser with the
scheduled learning rate, log, evaluate, checkpoint. Everything that makes a run resumable
(weights, optimiser, RNG states, data position, elapsed time) goes into each checkpoint, and
``resume=True`` continues exactly where the last complete checkpoint left off.

Run folder::

    out/config.json, model.safetensors, tokenizer.json   final (or latest) model, ready for inference
    out/checkpoints/step-0001000/                        full checkpoints (model + trainer state)
    out/metrics.jsonl                                    one JSON record per log / evaluation
    out/loss.png                                         train and validation loss
    out/train_config.json, results.json
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..tasks.base import Task
from ..viz.curves import plot_loss_curve
from .checkpoint import CheckpointError, atomic_write_text, load_state_into, read_tensors, save_json, save_model
from .distributed import DistContext, no_sync, unwrap, wrap_model
from .optim import OptimConfig, lr_at, make_optimizer
from .state import load_trainer_state, save_trainer_state

PRECISIONS = ("auto", "fp32", "bf16")
# bf16 dense peak we hold MFU against (measured large-matmul rates on the cards we use)
PEAK_BF16_FLOPS = {"H100": 760e12, "H200": 790e12, "A100": 312e12}


@dataclass
class TrainConfig:
    out_dir: str = "runs/run"
    max_steps: int = 1000
    max_minutes: float | None = None  # training-time budget (evaluation excluded)
    anneal_by_time: bool = True  # with max_minutes, decaying schedules follow the time fraction
    grad_accum: int = 1
    clip_norm: float | None = 1.0
    log_every: int = 20
    eval_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    precision: str = "auto"  # auto: bf16 autocast on CUDA when supported, fp32 on CPU
    device: str = "auto"
    seed: int = 0
    compile: bool = False
    strategy: str = "ddp"
    activation_checkpointing: bool = False
    progress: bool = True
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**self.optim)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device {self.device!r} is not one of auto, cpu, cuda")
        if self.max_steps <= 0 or self.grad_accum <= 0:
            raise ValueError(f"max_steps and grad_accum must be positive, got {self.max_steps}, {self.grad_accum}")
        if self.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"strategy {self.strategy!r} is not one of ddp, fsdp")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints (temporary folders excluded), oldest first."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and not p.name.endswith(".tmp"))


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


class Trainer:
    def __init__(self, task: Task, model: nn.Module, config: TrainConfig, dist: DistContext | None = None):
        self.task, self.config = task, config
        self.dist = dist or DistContext.from_env(config.device)
        self.device = self.dist.device
        self.out_dir = Path(config.out_dir)
        self.model = model.to(self.device)
        self.precision = self._resolve_precision()
        self.step, self.epoch, self.batch_index, self.elapsed = 0, 0, 0, 0.0
        self.units_seen = 0
        self.last_eval: dict[str, float] = {}

    # ------------------------------------------------------------------ setup
    def _resolve_precision(self) -> str:
        if self.config.precision != "auto":
            if self.config.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
                raise ValueError("bf16 precision was asked for, but this GPU does not support bf16")
            return self.config.precision
        return "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step-N`` atomically (temp folder, then rename) and refresh the
        inference files at the top of the run folder."""
        state_model = self._full_state_model()
        if not self.dist.is_main:
            self.dist.barrier()
            return None
        root = self.out_dir / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{self.step:07d}"
        tmp = root / f"step-{self.step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_model(state_model, tmp)
        self.task.save_artifacts(tmp)
        save_trainer_state(tmp, self.optimizer, self._progress_state())
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in checkpoint_dirs(self.out_dir)[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        save_model(state_model, self.out_dir)  # the run folder itself is a loadable checkpoint
        self.task.save_artifacts(self.out_dir)
        self.dist.barrier()
        return final

    def _full_state_model(self) -> nn.Module:
        return unwrap(self.model)

    def _progress_state(self) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": self.epoch, "batch_index": self.batch_index, "elapsed": self.elapsed,
            "units_seen": self.units_seen, "world_size": self.dist.world_size, "task": self.task.state_dict(),
        }

    def resume(self) -> bool:
        """Load the newest complete checkpoint in the run folder, if any."""
        found = checkpoint_dirs(self.out_dir)
        if not found:
            return False
        latest = found[-1]
        try:
            load_state_into(unwrap(self.model), read_tensors(latest / "model.safetensors"), source=str(latest))
            progress = load_trainer_state(latest, self.optimizer)
        except (OSError, KeyError, json.JSONDecodeError) as err:
            raise CheckpointError(f"cannot resume from {latest}: {err}") from None
        self.step, self.epoch, self.batch_index = progress["step"], progress["epoch"], progress["batch_index"]
        self.elapsed, self.units_seen = progress["elapsed"], progress.get("units_seen", 0)
        self.task.load_state_dict(progress.get("task", {}))
        if progress.get("world_size", 1) != self.dist.world_size:
            self._rescale_data_position(progress.get("world_size", 1))
        self._truncate_metrics()
        return True

    def _rescale_data_position(self, old_world: int) -> None:
        """Across a change of world size, continue from the same fraction of the epoch."""
        new_len = len(self.task.train_batches(self.epoch, self.dist.rank, self.dist.world_size))
        old_len = len(self.task.train_batches(self.epoch, 0, old_world))
        self.batch_index = min(new_len, round(self.batch_index * new_len / max(old_len, 1)))

    def _truncate_metrics(self) -> None:
        path = self.out_dir / "metrics.jsonl"
        if not self.dist.is_main or not path.exists():
            return
        kept = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l).get("step", 0) <= self.step]
        atomic_write_text(path, "".join(l + "\n" for l in kept))

    # ------------------------------------------------------------------ data
    def _next_batch(self):
        while True:
            batches = self._epoch_batches()
            if self.batch_index < len(batches):
                batch = batches[self.batch_index]
                self.batch_index += 1
                return batch
            self.epoch, self.batch_index = self.epoch + 1, 0
            self._cached_epoch = None

    def _epoch_batches(self):
        if getattr(self, "_cached_epoch", None) != self.epoch:
            self._batches = self.task.train_batches(self.epoch, self.dist.rank, self.dist.world_size)
            if len(self._batches) == 0:
                raise ValueError(f"task {self.task.name!r} produced no training batches for epoch {self.epoch}")
            self._cached_epoch = self.epoch
        return self._batches

    # ------------------------------------------------------------------ loop
    def _progress_fraction(self) -> float:
        fraction = self.step / self.config.max_steps
        if self.config.max_minutes and self.config.anneal_by_time:
            fraction = max(fraction, self.elapsed / (60 * self.config.max_minutes))
        return fraction

    def _time_up(self) -> bool:
        if not self.config.max_minutes:
            return False
        # every rank stops at the same step
        return self.dist.sum_number(float(self.elapsed >= 60 * self.config.max_minutes)) > 0

    def evaluate(self) -> dict[str, float]:
        model = unwrap(self.model)
        was_training = model.training
        model.eval()
        with torch.no_grad(), self.autocast():
            metrics = self.task.evaluate(model) if self.dist.is_main else {}
        model.train(was_training)
        self.dist.barrier()
        if metrics:
            self.last_eval = metrics
            self._log({"step": self.step, "split": "val", **metrics})
        return metrics

    def fit(self) -> dict[str, Any]:
        cfg = self.config
        torch.manual_seed(cfg.seed + self.dist.rank)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        if cfg.activation_checkpointing:
            from .fsdp import apply_activation_checkpointing

            apply_activation_checkpointing(self.model)
        self.model = wrap_model(self.model, self.dist, cfg.strategy)
        self.optimizer = make_optimizer(self.model, cfg.optim, self.device)
        resumed = self.resume() if getattr(self, "resume_requested", False) else False
        if self.dist.is_main:
            save_json(self.out_dir / "train_config.json", cfg.to_dict())
        step_model = torch.compile(self.model, fullgraph=False) if cfg.compile else self.model
        flops_per_unit = self.task.flops_per_unit(unwrap(self.model))
        peak = peak_flops(self.device)

        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.task.name, unit="step", dynamic_ncols=True)
        self.model.train()
        loss_sum_window = torch.zeros((), device=self.device)
        units_window, window_time, window_start = 0, 0.0, self.step
        while self.step < cfg.max_steps and not self._time_up():
            t0 = time.perf_counter()
            micro = [self._next_batch() for _ in range(cfg.grad_accum)]
            local_units = sum(self.task.count(b) for b in micro)
            total_units = int(self.dist.sum_number(local_units))
            scale = self.dist.world_size / max(total_units, 1)
            for i, batch in enumerate(micro):
                batch = self.task.to_device(batch, self.device)
                with no_sync(self.model, skip=i < len(micro) - 1), self.autocast():
                    loss, _ = self.task.loss(step_model, batch)
                (loss * scale).backward()
                loss_sum_window += loss.detach().float()
            lr = lr_at(self.step + 1, cfg.optim, self._progress_fraction())
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if cfg.clip_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            units_window += total_units
            self.units_seen += total_units
            if self.device.type == "cuda" and (self.step % cfg.log_every == 0):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            self.elapsed += dt
            window_time += dt

            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                loss_value = self.dist.all_reduce_sum(loss_sum_window).item() / max(units_window, 1)
                rate = units_window / max(window_time, 1e-9)
                record = {"step": self.step, "split": "train", "loss": loss_value, "lr": lr,
                          f"{self.task.unit}_per_s": rate, "elapsed_s": round(self.elapsed, 2)}
                if flops_per_unit and peak:
                    record["mfu"] = rate * flops_per_unit / (peak * self.dist.world_size)
                self._log(record)
                if bar is not None:
                    postfix = {"loss": f"{loss_value:.4f}", "lr": f"{lr:.2e}", f"{self.task.unit}/s": f"{rate:,.0f}"}
                    if "mfu" in record:
                        postfix["mfu"] = f"{record['mfu']:.1%}"
                    bar.set_postfix(postfix)
                    bar.update(self.step - window_start)
                loss_sum_window.zero_()
                units_window, window_time, window_start = 0, 0.0, self.step
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self.evaluate()
                self._plot()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        if bar is not None:
            bar.update(self.step - bar.n)
            bar.close()
        if not cfg.eval_every or self.step % cfg.eval_every:
            self.evaluate()
        if not cfg.checkpoint_every or self.step % cfg.checkpoint_every:
            self.save_checkpoint()
        self._plot()
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Final evaluation on the main rank; results saved to ``results.json``."""
        model = unwrap(self.model)
        model.eval()
        results: dict[str, Any] = {}
        if self.dist.is_main:
            with torch.no_grad():
                results = self.task.final_evaluate(model)
            results = {"step": self.step, "train_minutes": round(self.elapsed / 60, 2), **results}
            save_json(self.out_dir / "results.json", results)
        self.dist.barrier()
        return results

    def _plot(self) -> None:
        if self.dist.is_main and (self.out_dir / "metrics.jsonl").exists():
            plot_loss_curve(self.out_dir / "metrics.jsonl", self.out_dir / "loss.png", title=self.task.name)


def train(task: Task, model: nn.Module, config: TrainConfig, resume: bool = False,
          dist: DistContext | None = None) -> dict[str, Any]:
    """Train ``model`` on ``task``; with ``resume`` continue from the newest checkpoint in ``out_dir``."""
    trainer = Trainer(task, model, config, dist)
    trainer.resume_requested = resume
    return trainer.fit()

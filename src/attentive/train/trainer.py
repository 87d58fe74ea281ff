"""One training loop for every task.

The loop: draw ``grad_accum`` micro-batches, sum their losses, divide by the number of loss
units (tokens, images) in the whole step across all ranks, step the optimiser with the
scheduled learning rate, log, evaluate, checkpoint. Everything that makes a run resumable
(weights, optimiser, RNG states, data position, elapsed time) goes into each checkpoint, and
``resume=True`` continues exactly where the last complete checkpoint left off. What a
checkpoint holds and how a run resumes is ``checkpointing.py``'s business, what goes where on
disk ``run_folder.py``'s, the metrics records and progress bar ``records.py``'s; the trainer
only decides when.

Under ``torchrun`` every rank runs this loop on its own shard of the data (the task's
``train_batches(epoch, rank, world_size)``); gradients are averaged by DDP or FSDP2, losses and
unit counts are summed across ranks, and only rank 0 logs, plots and writes. Checkpoints are
consolidated (full tensors, the single-process layout), so a run resumes at any world size.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..device import check_device_name
from .checkpointing import Checkpointer, Position
from .distributed import DistContext, no_sync, unwrap, wrap_model
from .optim import OptimConfig, lr_at, make_optimizer
from .records import LogWindow, RunRecords
from .run_folder import RunFolder, RunFolderError  # noqa: F401  (RunFolderError: callers catch it from here)
from .task import Task

PRECISIONS = ("auto", "fp32", "bf16")


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
    device: str = "auto"  # auto | cpu | cuda | cuda:N
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
        self.device = check_device_name(self.device)
        if self.max_steps <= 0 or self.grad_accum <= 0:
            raise ValueError(f"max_steps and grad_accum must be positive, got {self.max_steps}, {self.grad_accum}")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            raise ValueError(
                f"keep_checkpoints must be an integer >= 1 (the newest N checkpoints are kept), "
                f"got {self.keep_checkpoints!r}"
            )
        if self.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"strategy {self.strategy!r} is not one of ddp, fsdp")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Trainer:
    def __init__(self, task: Task, model: nn.Module, config: TrainConfig, dist: DistContext | None = None):
        self.task, self.config = task, config
        self.dist = dist or DistContext.from_env(config.device)
        self.device = self.dist.device
        self.run = RunFolder(config.out_dir, keep=config.keep_checkpoints)
        self.out_dir = self.run.root
        self.records = RunRecords(self.run, self.dist, task)
        self.model = model.to(self.device)
        self.precision = self._resolve_precision()
        self.step, self.epoch, self.batch_index, self.elapsed = 0, 0, 0, 0.0
        self.units_seen = 0
        self.last_eval: dict[str, float] = {}
        self.sharded = False  # FSDP: parameters are DTensor shards; set when fit() wraps the model
        self.checkpoints: Checkpointer | None = None  # made by fit() for the wrapped model and its optimiser
        self._batches, self._batches_epoch = None, None

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

    def _model_dim(self) -> int | None:
        """The model width the paper's ("noam") schedule scales by."""
        return getattr(getattr(unwrap(self.model), "config", None), "d_model", None)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step-N`` and refresh the run folder's inference files (rank 0;
        every rank calls this). ``None`` on the other ranks."""
        position = Position(self.step, self.epoch, self.batch_index, self.elapsed, self.units_seen)
        return self.checkpoints.save(position)

    def resume(self) -> bool:
        """Load the newest complete checkpoint in the run folder, if any."""
        position = self.checkpoints.resume(self.config.seed)
        if position is None:
            return False
        self.step, self.epoch, self.batch_index = position.step, position.epoch, position.batch_index
        self.elapsed, self.units_seen = position.elapsed, position.units_seen
        return True

    # ------------------------------------------------------------------ data
    def _next_batch(self):
        while True:
            if self._batches_epoch != self.epoch:
                self._batches = self.task.train_batches(self.epoch, self.dist.rank, self.dist.world_size)
                if len(self._batches) == 0:
                    raise ValueError(f"task {self.task.name!r} produced no training batches for epoch {self.epoch}")
                self._batches_epoch = self.epoch
            if self.batch_index < len(self._batches):
                self.batch_index += 1
                return self._batches[self.batch_index - 1]
            self.epoch, self.batch_index = self.epoch + 1, 0

    # ------------------------------------------------------------------ progress
    def _fraction_done(self, by_time: bool) -> float:
        """Steps done over ``max_steps``, or (``by_time``, with a budget) time spent over the budget
        when that is further along."""
        fraction = self.step / self.config.max_steps
        if by_time and self.config.max_minutes:
            fraction = max(fraction, self.elapsed / (60 * self.config.max_minutes))
        return fraction

    def _progress_fraction(self) -> float:
        """Where decaying learning-rate schedules are (by time only with ``anneal_by_time``)."""
        return self._fraction_done(self.config.anneal_by_time)

    def _run_fraction(self) -> float:
        """How much of the run is done: steps or time, whichever ends it first (for the bar)."""
        return round(min(self._fraction_done(True), 1.0), 4)

    def _time_up(self) -> bool:
        if not self.config.max_minutes:
            return False
        # every rank stops at the same step
        return self.dist.sum_number(float(self.elapsed >= 60 * self.config.max_minutes)) > 0

    # ------------------------------------------------------------------ evaluation
    def _eval_model(self) -> nn.Module | None:
        """The model rank 0 evaluates; ``None`` on the other ranks.

        Under DDP that is the replica itself. Under FSDP the full weights are gathered (a
        collective) into a plain copy, so evaluation runs on rank 0 without collectives.
        """
        if self.sharded:
            return self.checkpoints.eval_copy(self.step)
        return unwrap(self.model) if self.dist.is_main else None

    def _run_eval(self, evaluate) -> dict[str, Any]:
        """``evaluate(model)`` on rank 0, in eval mode, without gradients and in the training
        precision (periodic and final figures are computed alike); ``{}`` on other ranks."""
        model = self._eval_model()
        results: dict[str, Any] = {}
        if model is not None:
            was_training = model.training
            model.eval()
            with torch.no_grad(), self.autocast():
                results = evaluate(model)
            model.train(was_training)
        return results

    def evaluate(self) -> dict[str, float]:
        metrics = self._run_eval(self.task.evaluate)
        self.dist.barrier()
        if metrics:
            self.last_eval = metrics
            self.records.evaluation(self.step, metrics)
        return metrics

    def finish(self) -> dict[str, Any]:
        """Final evaluation on the main rank; results saved to ``results.json``."""
        results = self._run_eval(self.task.final_evaluate)
        if self.dist.is_main:
            results = {"step": self.step, "train_minutes": round(self.elapsed / 60, 2), **results}
            self.run.write_json("results.json", results)
        self.dist.barrier()
        return results

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Train to ``max_steps`` or the time budget. ``resume`` continues the newest checkpoint in
        the run folder; ``overwrite`` deletes an earlier run there instead of refusing to start."""
        cfg = self.config
        torch.manual_seed(cfg.seed + self.dist.rank)
        if self.dist.is_main:
            self.run.prepare(resume, overwrite)
            self.run.create()
        self.dist.barrier()
        if cfg.activation_checkpointing:
            from .fsdp import apply_activation_checkpointing

            apply_activation_checkpointing(self.model)
        mixed_precision = self.precision == "bf16" and self.device.type == "cuda"
        self.model = wrap_model(self.model, self.dist, cfg.strategy, mixed_precision=mixed_precision)
        self.sharded = cfg.strategy == "fsdp" and self.dist.enabled
        self.optimizer = make_optimizer(self.model, cfg.optim, self.device)
        self.checkpoints = Checkpointer(self.run, self.dist, self.task, self.model, self.optimizer, self.sharded)
        if resume:
            self.resume()
        if self.dist.is_main:
            self.run.write_json("train_config.json", cfg.to_dict())
        step_model = torch.compile(self.model, fullgraph=False) if cfg.compile else self.model
        model_dim = self._model_dim()
        self.records.start(self.task.flops_per_unit(unwrap(self.model)), cfg.progress, self._run_fraction())
        self.model.train()
        window = LogWindow.on(self.device)
        while self.step < cfg.max_steps and not self._time_up():
            t0 = time.perf_counter()
            self.checkpoints.weights_changed()  # the gathered copy is about to go stale
            micro = [self._next_batch() for _ in range(cfg.grad_accum)]
            local_units = sum(self.task.count(b) for b in micro)
            total_units = int(self.dist.sum_number(local_units))
            scale = self.dist.world_size / max(total_units, 1)
            for i, batch in enumerate(micro):
                batch = self.task.to_device(batch, self.device)
                # backward inside no_sync: FSDP2 reads the flag in backward, DDP in forward
                with no_sync(self.model, skip=i < len(micro) - 1):
                    with self.autocast():
                        loss, _ = self.task.loss(step_model, batch)
                    (loss * scale).backward()
                window.add_loss(loss)
            lr = lr_at(self.step + 1, cfg.optim, self._progress_fraction(), model_dim=model_dim)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if cfg.clip_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.units_seen += total_units
            if self.device.type == "cuda" and (self.step % cfg.log_every == 0):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            self.elapsed += dt
            window.add_step(total_units, dt)

            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self.records.train(self.step, lr, window, self.elapsed, self._run_fraction())
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self.evaluate()
                self.records.plot()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        self.records.close(self._run_fraction())
        if not cfg.eval_every or self.step % cfg.eval_every:
            self.evaluate()
        if not cfg.checkpoint_every or self.step % cfg.checkpoint_every:
            self.save_checkpoint()
        self.records.plot()
        return self.finish()


def train(
    task: Task,
    model: nn.Module,
    config: TrainConfig,
    resume: bool = False,
    dist: DistContext | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on ``task``; with ``resume`` continue from the newest checkpoint in ``out_dir``
    (``overwrite``: start again there, deleting an earlier run's checkpoints)."""
    return Trainer(task, model, config, dist).fit(resume=resume, overwrite=overwrite)

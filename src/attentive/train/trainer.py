"""One training loop for every task.

The loop: draw ``grad_accum`` micro-batches, sum their losses, divide by the number of loss
units (tokens, images) in the whole step across all ranks, step the optimiser with the
scheduled learning rate, log, evaluate, checkpoint. Everything that makes a run resumable
(weights, optimiser, RNG states, data position, elapsed time) goes into each checkpoint, and
``resume=True`` continues exactly where the last complete checkpoint left off. What goes where
on disk is the run folder's business (``run_folder.py``); the trainer only decides when.

Under ``torchrun`` every rank runs this loop on its own shard of the data (the task's
``train_batches(epoch, rank, world_size)``); gradients are averaged by DDP or FSDP2, losses and
unit counts are summed across ranks, and only rank 0 logs, plots and writes. Checkpoints are
consolidated (full tensors, the single-process layout), so a run resumes at any world size.
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import WEIGHTS_NAME, CheckpointError, load_state_into, read_tensors, unique_state_dict
from ..device import check_device_name
from ..lora import ADAPTER_WEIGHTS, adapter_state, build_like, load_adapter_state, lora_config_of, save_adapter
from .distributed import DistContext, no_sync, unwrap, wrap_model
from .optim import OptimConfig, lr_at, make_optimizer
from .run_folder import RunFolder, RunFolderError, checkpoint_dirs, checkpoint_step  # noqa: F401  (RunFolderError: callers catch it from here)
from .state import gather_rank_rng, load_trainer_state, restore_rank_rng, save_rank_rng, save_trainer_state
from .task import Task
from .throughput import mfu, peak_flops

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
            raise ValueError(f"keep_checkpoints must be an integer >= 1 (the newest N checkpoints are kept), "
                             f"got {self.keep_checkpoints!r}")
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
        self.model = model.to(self.device)
        self.precision = self._resolve_precision()
        self.step, self.epoch, self.batch_index, self.elapsed = 0, 0, 0, 0.0
        self.units_seen = 0
        self.last_eval: dict[str, float] = {}
        self.sharded = False  # FSDP: parameters are DTensor shards; set when fit() wraps the model
        self._gathered: tuple[int, dict[str, torch.Tensor]] | None = None
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

    def _log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            self.run.log(record)

    def _model_dim(self) -> int | None:
        """The model width the paper's ("noam") schedule scales by."""
        return getattr(getattr(unwrap(self.model), "config", None), "d_model", None)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step-N`` (whole or not at all) and refresh the inference files at
        the top of the run folder. Every rank takes part in gathering (FSDP shards, per-rank RNG
        states); rank 0 alone writes."""
        weights = self._full_state_dict()
        optimizer = self.optimizer
        if self.sharded:
            from .fsdp import FullOptimizerState

            optimizer = _StateSnapshot(FullOptimizerState(self.optimizer).state_dict())
        rank_rng = gather_rank_rng(self.dist, self.device)
        if not self.dist.is_main:
            self.dist.barrier()
            return None

        def fill(folder: Path) -> None:
            self._write_weights(folder, weights)
            self.task.save_artifacts(folder)
            save_trainer_state(folder, optimizer, self._progress_state())
            save_rank_rng(folder, rank_rng, self.dist.world_size)

        final = self.run.write_checkpoint(self.step, fill)
        self._write_weights(self.out_dir, weights)  # the run folder itself is a loadable checkpoint
        self.task.save_artifacts(self.out_dir)
        self.dist.barrier()
        return final

    def _write_weights(self, folder: Path, weights: dict[str, torch.Tensor]) -> None:
        """``config.json`` + ``model.safetensors``; for a LoRA run the adapter alone
        (``adapter.json`` + ``adapter.safetensors``): its base is frozen and comes from ``init``."""
        model = unwrap(self.model)
        if lora_config_of(model) is not None:
            save_adapter(folder, model, tensors=adapter_state(model, weights))
        else:
            self.run.write_model(folder, weights, model.config.to_dict())

    def _full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full weights as CPU tensors on rank 0 (``{}`` elsewhere); gathered once per step.

        Under FSDP this is a collective that every rank must call.
        """
        if self._gathered is not None and self._gathered[0] == self.step:
            return self._gathered[1]
        if self.sharded:
            from .fsdp import full_state_dict

            tensors = full_state_dict(self.model)
        else:
            tensors = unique_state_dict(unwrap(self.model)) if self.dist.is_main else {}
        self._gathered = (self.step, tensors)
        return tensors

    def _progress_state(self) -> dict[str, Any]:
        return {
            "step": self.step, "epoch": self.epoch, "batch_index": self.batch_index, "elapsed": self.elapsed,
            "units_seen": self.units_seen, "world_size": self.dist.world_size, "task": self.task.state_dict(),
        }

    def resume(self) -> bool:
        """Load the newest complete checkpoint in the run folder, if any."""
        found = self.run.checkpoints()
        self._check_ranks_agree(found)
        if not found:
            return False
        latest = found[-1]
        try:
            optimizer = self.optimizer
            if self.sharded:
                from .fsdp import FullOptimizerState

                optimizer = FullOptimizerState(self.optimizer)
            if lora_config_of(unwrap(self.model)) is not None:  # the base is already in place
                load_adapter_state(unwrap(self.model), read_tensors(latest / ADAPTER_WEIGHTS), source=str(latest))
            else:
                self._load_weights(latest)
            progress = load_trainer_state(latest, optimizer)
        except (OSError, KeyError, json.JSONDecodeError) as err:
            raise CheckpointError(f"cannot resume from {latest}: {err}") from None
        self.step, self.epoch, self.batch_index = progress["step"], progress["epoch"], progress["batch_index"]
        self.elapsed, self.units_seen = progress["elapsed"], progress.get("units_seen", 0)
        self.task.load_state_dict(progress.get("task", {}))
        old_world = progress.get("world_size", 1)
        restore_rank_rng(latest, self.dist, self.device, old_world, reseed=self.config.seed + 1_000_003 * self.step)
        if old_world != self.dist.world_size:
            self._rescale_data_position(old_world)
        if self.dist.is_main:
            self.run.truncate_metrics(self.step)
        return True

    def _load_weights(self, folder: Path) -> None:
        tensors = read_tensors(folder / WEIGHTS_NAME)
        if self.sharded:
            from .fsdp import load_full_state_dict

            load_full_state_dict(self.model, tensors, source=str(folder))
        else:
            load_state_into(unwrap(self.model), tensors, source=str(folder))

    def _check_ranks_agree(self, found: list[Path]) -> None:
        """Every rank must resume from the same checkpoint, or the collectives deadlock."""
        if not self.dist.enabled:
            return
        steps = self.dist.all_gather_numbers(checkpoint_step(found[-1]) if found else -1)
        if len(set(steps)) > 1:
            raise CheckpointError(
                f"ranks see different newest checkpoints in {self.out_dir / 'checkpoints'} "
                f"(step by rank, -1 = none: {[int(s) for s in steps]}); the run folder must be on a "
                "filesystem that every node shares"
            )

    def _rescale_data_position(self, old_world: int) -> None:
        """Across a change of world size, continue from the same fraction of the epoch."""
        new_len = len(self.task.train_batches(self.epoch, self.dist.rank, self.dist.world_size))
        old_len = len(self.task.train_batches(self.epoch, 0, old_world))
        self.batch_index = min(new_len, round(self.batch_index * new_len / max(old_len, 1)))

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
        collective) into a plain copy, so a task's evaluation (greedy / beam decoding, method
        calls besides ``forward``) runs on rank 0 alone without collectives inside it.
        """
        if not self.sharded:
            return unwrap(self.model) if self.dist.is_main else None
        weights = self._full_state_dict()
        if not self.dist.is_main:
            return None
        plain = build_like(unwrap(self.model))  # LoRA-wrapped too when the model is
        load_state_into(plain, weights, source="gathered FSDP weights")
        return plain.to(self.device)

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
            self._log({"step": self.step, "split": "val", **metrics})
        return metrics

    def finish(self) -> dict[str, Any]:
        """Final evaluation on the main rank; results saved to ``results.json``."""
        results = self._run_eval(self.task.final_evaluate)
        if self.dist.is_main:
            results = {"step": self.step, "train_minutes": round(self.elapsed / 60, 2), **results}
            self.run.write_json("results.json", results)
        self.dist.barrier()
        return results

    def _plot(self) -> None:
        if self.dist.is_main:
            self.run.plot(self.task.name)

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
        if resume:
            self.resume()
        if self.dist.is_main:
            self.run.write_json("train_config.json", cfg.to_dict())
        step_model = torch.compile(self.model, fullgraph=False) if cfg.compile else self.model
        flops_per_unit = self.task.flops_per_unit(unwrap(self.model))
        peak = peak_flops(self.device)
        model_dim = self._model_dim()

        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            # the bar runs over the fraction of the run done, by steps or by the time budget,
            # whichever ends it first, so a run budgeted in minutes does not sit at 0%
            bar = tqdm(total=100.0, initial=100 * self._run_fraction(), desc=self.task.name, dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}")
        self.model.train()
        loss_sum_window = torch.zeros((), device=self.device)
        units_window, window_time = 0, 0.0
        while self.step < cfg.max_steps and not self._time_up():
            t0 = time.perf_counter()
            self._gathered = None  # weights are about to change
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
                loss_sum_window += loss.detach().float()
            lr = lr_at(self.step + 1, cfg.optim, self._progress_fraction(), model_dim=model_dim)
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
                utilisation = mfu(rate, flops_per_unit, peak, self.dist.world_size)
                if utilisation is not None:
                    record["mfu"] = utilisation
                if self.device.type == "cuda":
                    record["max_mem_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
                self._log(record)
                if bar is not None:
                    postfix = {"step": self.step, "loss": f"{loss_value:.4f}", "lr": f"{lr:.2e}",
                               f"{self.task.unit}/s": f"{rate:,.0f}"}
                    if utilisation is not None:
                        postfix["mfu"] = f"{utilisation:.1%}"
                    bar.set_postfix(postfix)
                    bar.update(100 * self._run_fraction() - bar.n)
                loss_sum_window.zero_()
                units_window, window_time = 0, 0.0
            if cfg.eval_every and self.step % cfg.eval_every == 0:
                self.evaluate()
                self._plot()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        if bar is not None:
            bar.update(100 * self._run_fraction() - bar.n)
            bar.close()
        if not cfg.eval_every or self.step % cfg.eval_every:
            self.evaluate()
        if not cfg.checkpoint_every or self.step % cfg.checkpoint_every:
            self.save_checkpoint()
        self._plot()
        return self.finish()


class _StateSnapshot:
    """A gathered optimiser state dict behind the ``state_dict()`` call ``save_trainer_state`` makes."""

    def __init__(self, state: dict[str, Any]):
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state


def train(task: Task, model: nn.Module, config: TrainConfig, resume: bool = False,
          dist: DistContext | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train ``model`` on ``task``; with ``resume`` continue from the newest checkpoint in ``out_dir``
    (``overwrite``: start again there, deleting an earlier run's checkpoints)."""
    return Trainer(task, model, config, dist).fit(resume=resume, overwrite=overwrite)

"""A run's checkpoints: what one holds, how it is written, and how a run resumes from it.

A checkpoint holds the weights (for a LoRA run the adapter alone: its base is frozen and comes
from ``init``), the optimiser, every rank's RNG states and the run's position (step, epoch,
batch, elapsed time), so ``resume`` continues exactly where it was written. Checkpoints are
consolidated (full tensors, the single-process layout), so a run resumes at any world size:
across a change of world size the data position is rescaled to the same fraction of the epoch.
Where files go is the run folder's business (``run_folder.py``); when to save is the trainer's.

Under FSDP the full weights and optimiser state are gathered (collectives every rank calls in
step) and rank 0 writes them; the same gathered weights give rank 0 a plain copy to evaluate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import WEIGHTS_NAME, CheckpointError, load_state_into, read_tensors, unique_state_dict
from ..lora import ADAPTER_WEIGHTS, adapter_state, build_like, load_adapter_state, lora_config_of, save_adapter
from .distributed import DistContext, unwrap
from .run_folder import RunFolder, checkpoint_step
from .state import STATE_JSON, gather_rank_rng, load_trainer_state, restore_rank_rng, save_rank_rng, save_trainer_state
from .task import Task


@dataclass
class Position:
    """Where a run stands, besides its weights, optimiser and RNG states."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0  # batches of ``epoch`` already drawn on this rank
    elapsed: float = 0.0  # training seconds, evaluation excluded
    units_seen: int = 0  # loss units (tokens, images) over all ranks


@dataclass
class Checkpointer:
    """Saves and resumes one run's model and optimiser as ``fit`` wrapped and built them.

    Every rank calls each method in step (gathering is collective); rank 0 alone writes.
    """

    run: RunFolder
    dist: DistContext
    task: Task
    model: nn.Module  # as trained: plain, DDP-wrapped or FSDP-sharded
    optimizer: torch.optim.Optimizer
    sharded: bool  # FSDP: parameters are DTensor shards
    _gathered: tuple[int, dict[str, torch.Tensor]] | None = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------------ full weights
    def full_state_dict(self, step: int) -> dict[str, torch.Tensor]:
        """Full weights as CPU tensors on rank 0 (``{}`` elsewhere); gathered once per step.

        Under FSDP this is a collective that every rank must call.
        """
        if self._gathered is not None and self._gathered[0] == step:
            return self._gathered[1]
        if self.sharded:
            from .fsdp import full_state_dict

            tensors = full_state_dict(self.model)
        else:
            tensors = unique_state_dict(unwrap(self.model)) if self.dist.is_main else {}
        self._gathered = (step, tensors)
        return tensors

    def weights_changed(self) -> None:
        """Forget the gathered weights: an optimiser step is about to change them."""
        self._gathered = None

    def eval_copy(self, step: int) -> nn.Module | None:
        """A plain (unsharded) copy of the FSDP model on rank 0, ``None`` elsewhere; a collective.

        A task's evaluation (greedy / beam decoding, method calls besides ``forward``) then runs
        on rank 0 alone without collectives inside it.
        """
        weights = self.full_state_dict(step)
        if not self.dist.is_main:
            return None
        plain = build_like(unwrap(self.model))  # LoRA-wrapped too when the model is
        load_state_into(plain, weights, source="gathered FSDP weights")
        return plain.to(self.dist.device)

    # ------------------------------------------------------------------ saving
    def save(self, position: Position) -> Path | None:
        """Refresh the inference files at the top of the run folder, then write
        ``checkpoints/step-N`` (whole or not at all). Every rank takes part in gathering (FSDP shards, per-rank RNG
        states); rank 0 alone writes."""
        weights = self.full_state_dict(position.step)
        optimizer = self.optimizer
        if self.sharded:
            from .fsdp import FullOptimizerState

            optimizer = _StateSnapshot(FullOptimizerState(self.optimizer).state_dict())
        rank_rng = gather_rank_rng(self.dist, self.dist.device)
        if not self.dist.is_main:
            self.dist.barrier()
            return None

        def fill(folder: Path) -> None:
            self.write_weights(folder, weights)
            self.task.save_artifacts(folder)
            save_trainer_state(folder, optimizer, self._progress_state(position))
            save_rank_rng(folder, rank_rng, self.dist.world_size)

        # the run folder itself is a loadable checkpoint. Its files go first: written after the
        # checkpoint, a kill between the two left them a checkpoint behind, for good when the
        # run was at its last step (resuming it saves nothing more)
        with self.run.writing("the model files"):
            self.write_weights(self.run.root, weights)
            self.task.save_artifacts(self.run.root)
        final = self.run.write_checkpoint(position.step, fill)
        self.dist.barrier()
        return final

    def write_weights(self, folder: Path, weights: dict[str, torch.Tensor]) -> None:
        """``config.json`` + ``model.safetensors``; for a LoRA run the adapter alone
        (``adapter.json`` + ``adapter.safetensors``): its base is frozen and comes from ``init``."""
        model = unwrap(self.model)
        if lora_config_of(model) is not None:
            save_adapter(folder, model, tensors=adapter_state(model, weights))
        else:
            self.run.write_model(folder, weights, model.config.to_dict())

    def _progress_state(self, position: Position) -> dict[str, Any]:
        """The JSON ``progress`` of ``trainer_state.json``: the position, the world size it was
        saved at (for rescaling on resume) and the task's own state."""
        return {**dataclasses.asdict(position), "world_size": self.dist.world_size, "task": self.task.state_dict()}

    # ------------------------------------------------------------------ resuming
    def resume(self, seed: int) -> Position | None:
        """Load the newest complete checkpoint in the run folder into the model, the optimiser,
        the task and the RNGs; its position (rescaled to this world size), or ``None`` if there
        is none. ``seed`` is the run's seed: ranks without a saved RNG state fork from it."""
        found = self.run.checkpoints()
        self._check_ranks_agree(found)
        if not found:
            return None
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
            position = _position(progress)
            self.task.load_state_dict(progress.get("task", {}))
        # a checkpoint is a file like any other: whatever in it does not fit (a missing key, a
        # value of the wrong type, an optimiser state for other parameters) stops the resume here
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError) as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else ""
            why = message if isinstance(err, (OSError, ValueError)) else f"{type(err).__name__}: {message}"
            raise CheckpointError(f"cannot resume from {latest}: {why}") from None
        old_world = progress.get("world_size", 1)
        restore_rank_rng(latest, self.dist, self.dist.device, old_world, reseed=seed + 1_000_003 * position.step)
        if old_world != self.dist.world_size:
            position.batch_index = self._rescaled_batch_index(position, old_world)
        if self.dist.is_main:
            self.run.truncate_metrics(position.step)
        return position

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
                f"ranks see different newest checkpoints in {self.run.root / 'checkpoints'} "
                f"(step by rank, -1 = none: {[int(s) for s in steps]}); the run folder must be on a "
                "filesystem that every node shares"
            )

    def _rescaled_batch_index(self, position: Position, old_world: int) -> int:
        """Across a change of world size, continue from the same fraction of the epoch."""
        new_len = len(self.task.train_batches(position.epoch, self.dist.rank, self.dist.world_size))
        old_len = len(self.task.train_batches(position.epoch, 0, old_world))
        return min(new_len, round(position.batch_index * new_len / max(old_len, 1)))


def _position(progress: dict[str, Any]) -> Position:
    """The saved position, its numbers checked: a wrong one would derail the run much later."""
    numbers = {"step": int, "epoch": int, "batch_index": int, "elapsed": (int, float), "units_seen": int}
    values = {key: progress[key] for key in ("step", "epoch", "batch_index", "elapsed")}
    values["units_seen"] = progress.get("units_seen", 0)
    for key, kind in numbers.items():
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, kind) or value < 0 or value != value:
            raise ValueError(f"{STATE_JSON}: progress {key!r} must be a number >= 0, found {value!r:.60}")
    return Position(**values)


class _StateSnapshot:
    """A gathered optimiser state dict behind the ``state_dict()`` call ``save_trainer_state`` makes."""

    def __init__(self, state: dict[str, Any]):
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state

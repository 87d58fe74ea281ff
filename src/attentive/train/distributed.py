"""torch.distributed plumbing: one process per device, launched by ``torchrun``.

``torchrun --nproc-per-node N -m attentive train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK;
``DistContext.from_env`` joins the process group (NCCL on GPU, gloo on CPU). Without those
variables everything runs as a single process, unchanged. Several nodes run the same
command with ``--nnodes`` and a rendezvous endpoint; RANK is then global and LOCAL_RANK picks
the GPU on each node.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..device import resolve_device

# Collectives wait this long for a peer: rank 0 evaluates and writes checkpoints alone while the
# others wait at a barrier, which can outlast NCCL's 10-minute default. A dead peer does not
# wait this out: torchrun stops the remaining workers as soon as one exits.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> DistContext:
        """Join the process group if launched by torchrun; pick the device and backend.

        ``device`` goes through ``attentive.device.resolve_device`` (so ``cuda:1`` on a machine
        without it is an error, never a silent CPU run). Under torchrun each rank takes the GPU
        of its LOCAL_RANK, so an explicit index is refused there.
        """
        resolved = resolve_device(device)
        want_cuda = resolved.type == "cuda"
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls(device=resolved)
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if want_cuda:
            if resolved.index is not None:
                raise ValueError(
                    f"device {device!r}: under torchrun each rank uses cuda:LOCAL_RANK; "
                    "pass --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
                )
            if local_rank >= torch.cuda.device_count():
                raise ValueError(
                    f"LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                    "start at most that many processes per node (--nproc-per-node)"
                )
            torch.cuda.set_device(local_rank)
            dev = torch.device("cuda", local_rank)
        else:
            dev = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if want_cuda else "gloo",
                timeout=COLLECTIVE_TIMEOUT,
                device_id=dev if want_cuda else None,
            )
        return cls(rank=rank, world_size=world, local_rank=local_rank, device=dev)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def sum_number(self, value: float) -> float:
        """Sum a Python number over ranks (no device work when running alone)."""
        if not self.enabled:
            return value
        t = torch.tensor(
            float(value), dtype=torch.float64 if self.device.type == "cpu" else torch.float32, device=self.device
        )
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.item()

    def all_gather_numbers(self, value: float) -> list[float]:
        """Every rank's value of a Python number, in rank order."""
        if not self.enabled:
            return [value]
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [o.item() for o in out]

    def all_gather_bytes(self, value: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of an equally-sized uint8 tensor (e.g. an RNG state), on CPU."""
        if not self.enabled:
            return [value]
        t = value.to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [o.cpu() for o in out]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, strategy: str = "ddp", mixed_precision: bool = False) -> nn.Module:
    """DistributedDataParallel (replicas) or FSDP2 ``fully_shard`` (sharded) when distributed.

    ``mixed_precision`` (FSDP only): bf16 parameters for compute and all-gathers, fp32 gradient
    reduction. DDP keeps fp32 replicas; the trainer's autocast gives it bf16 compute.
    """
    if not ctx.enabled:
        return model
    if strategy == "ddp":
        device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        # gradients live in DDP's all-reduce buckets instead of beside them: one gradient copy, not two
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True)
    if strategy == "fsdp":
        from .fsdp import shard_model

        return shard_model(model, ctx, mixed_precision=mixed_precision)
    raise ValueError(f"unknown strategy {strategy!r}; expected 'ddp' or 'fsdp'")


def no_sync(model: nn.Module, skip: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    if skip and hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        return _ResyncFSDP(model)
    return nullcontext()


class _ResyncFSDP:
    def __init__(self, model):
        self.model = model

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.model.set_requires_gradient_sync(True)
        return False


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model

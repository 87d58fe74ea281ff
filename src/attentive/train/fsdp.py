"""FSDP2 sharding, activation checkpointing, and checkpoints that do not depend on the world size.

``shard_model`` applies PyTorch's ``fully_shard`` to every ``TransformerLayer`` and then to the
root: each rank keeps 1/N of the parameters, gradients and optimiser state, and a layer's full
weights exist only while that layer runs (all-gathered before, freed after). On CUDA with bf16
the ``MixedPrecisionPolicy`` computes and all-gathers in bf16 and reduces gradients in fp32,
while the sharded master weights and Adam moments stay fp32.

Checkpoints stay consolidated (one ``model.safetensors``, one optimiser file, in the same
layout a single process writes), so a run saved by 2 FSDP ranks resumes on 1 process, on DDP,
or on 4 ranks, and ``attentive.load`` reads it for translate / generate. Gathering is a
collective: every rank calls ``full_state_dict`` / ``FullOptimizerState.state_dict`` in step,
rank 0 receives CPU tensors and writes them.

Activation checkpointing (``apply_activation_checkpointing``) is independent of sharding: it
works on a plain, DDP or FSDP model alike.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.utils.checkpoint import checkpoint

from ..nn.layers import TransformerLayer
from ..checkpoint import CheckpointError, check_state

_CHECKPOINTED = "_attentive_activation_checkpointing"


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The units we shard and checkpoint: every ``TransformerLayer`` (encoder, decoder, ViT ...)."""
    return [m for m in model.modules() if isinstance(m, TransformerLayer)]


# ----------------------------------------------------------------------------- sharding
def shard_model(model: nn.Module, ctx, mixed_precision: bool = False) -> nn.Module:
    """``fully_shard`` each TransformerLayer, then the root (embeddings, head, final norms).

    Per-layer units let the all-gather of layer i+1 overlap the compute of layer i and bound
    the unsharded memory to about one layer. Tied weights (embedding = softmax head) live in
    the root unit, so they stay one parameter. Weights are first broadcast from rank 0, as DDP
    does, so ranks that initialised differently still train one model.
    """
    _broadcast_from_rank0(model)
    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    policy = MixedPrecisionPolicy()
    if mixed_precision:
        # bf16 compute and all-gathers; fp32 gradient reduction, fp32 sharded master weights
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in transformer_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def _broadcast_from_rank0(model: nn.Module) -> None:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


# ----------------------------------------------------------------------------- activation checkpointing
def apply_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each TransformerLayer's activations in backward instead of storing them.

    Memory for activations drops from every intermediate of every layer to each layer's input;
    the price is one more forward per layer (about a third more compute). The layer's
    ``forward`` is wrapped in place (parameter names and checkpoints are unchanged); it
    checkpoints only when gradients are on and no KV cache is passed, so evaluation and
    decoding run as before. Dropout masks are replayed exactly (RNG state is preserved).
    Apply it before ``fully_shard`` / DDP. Returns how many layers were wrapped.
    """
    layers = transformer_layers(model)
    if not layers:
        raise ValueError(
            f"activation checkpointing wraps TransformerLayer modules, and {type(model).__name__} has none"
        )
    for layer in layers:
        if getattr(layer, _CHECKPOINTED, False):
            continue
        layer.forward = _checkpointed(layer.forward)
        setattr(layer, _CHECKPOINTED, True)
    return len(layers)


def _checkpointed(forward):
    def run(*args, **kwargs):
        if torch.is_grad_enabled() and kwargs.get("cache") is None:
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


# ----------------------------------------------------------------------------- consolidated weights
def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's full weights as CPU tensors on rank 0 (``{}`` on other ranks). Collective.

    Tied parameters (one object under several names) are kept once, under their first name,
    as ``checkpoint.unique_state_dict`` does for an unsharded model.
    """
    main = not dist.is_initialized() or dist.get_rank() == 0
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, value in model.state_dict(keep_vars=True).items():
        if id(value) in seen:
            continue
        seen.add(id(value))
        full = value.full_tensor() if isinstance(value, DTensor) else value  # every rank, same order
        if main:
            out[name] = full.detach().cpu().contiguous()
    return out


def load_full_state_dict(model: nn.Module, tensors: dict[str, Tensor], source: str = "checkpoint") -> None:
    """Copy full (unsharded) tensors into a sharded model: each rank keeps its own slice.

    Every rank passes the same full tensors (each reads the file); nothing is communicated.
    Names and shapes are checked as ``checkpoint.load_state_into`` checks them.
    """
    expected = model.state_dict(keep_vars=True)
    check_state(expected, tensors, source, type(model).__name__)
    with torch.no_grad():
        for name, full in tensors.items():
            target = expected[name]
            if isinstance(target, DTensor):
                target.to_local().copy_(shard_like(full, target).to_local())
            else:
                target.copy_(full)


def shard_like(full: Tensor, like: DTensor) -> DTensor:
    """This rank's slice of ``full``, laid out as ``like`` (same mesh and placements)."""
    full = full.to(device=like.device, dtype=like.dtype)
    # src_data_rank=None: every rank already holds the full tensor, so slice locally
    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


# ----------------------------------------------------------------------------- consolidated optimiser state
class FullOptimizerState:
    """An optimiser seen through full tensors, so its state saves and loads at any world size.

    ``state.save_trainer_state`` / ``load_trainer_state`` call ``state_dict()`` /
    ``load_state_dict()`` on this view exactly as on a plain optimiser: the saved layout
    (state keyed by parameter index, tensors full-sized) is the one a single process writes.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        """Collective under FSDP: full tensors on rank 0, the same structure (tensors dropped) elsewhere."""
        main = not dist.is_initialized() or dist.get_rank() == 0
        sd = self.optimizer.state_dict()
        state: dict[int, dict[str, Any]] = {}
        for idx in sorted(sd["state"]):
            entry = {}
            for key in sorted(sd["state"][idx]):
                value = sd["state"][idx][key]
                if isinstance(value, DTensor):
                    value = value.full_tensor()  # every rank, same order
                if isinstance(value, Tensor):
                    value = value.detach().cpu() if main else None
                entry[key] = value
            state[idx] = entry
        return {"state": state, "param_groups": sd["param_groups"]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Slice each full state tensor to the local shard of its (sharded) parameter, then load."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        state = {}
        for idx, entry in state_dict["state"].items():
            idx = int(idx)
            if idx >= len(params):
                raise CheckpointError(
                    f"optimiser state names parameter {idx}, but the optimiser has {len(params)} parameters"
                )
            param = params[idx]
            if isinstance(param, DTensor):
                entry = {
                    k: shard_like(v, param) if isinstance(v, Tensor) and v.shape == param.shape and v.dim() else v
                    for k, v in entry.items()
                }
            state[idx] = entry
        self.optimizer.load_state_dict({"state": state, "param_groups": state_dict["param_groups"]})

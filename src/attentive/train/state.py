"""Trainer state for exact resume: optimiser tensors and RNG states in safetensors, the rest in JSON.

Nothing is pickled: ``optimizer.state_dict()`` is split into its tensors (saved as
``state.<param index>.<name>``) and its plain structure (param groups, step counters).
Under torchrun every rank's torch RNG state (dropout masks differ per rank) is gathered into
``rank_rng.safetensors`` too, and each rank takes its own back on resume.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import read_tensors, save_json, save_tensors

STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
RANK_RNG = "rank_rng.safetensors"  # each rank's torch RNG states, for exact distributed resume


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_to_flat() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    py_state = random.getstate()
    meta = {"python": [py_state[0], list(py_state[1]), py_state[2]], "numpy_pos": int(np_state[2])}
    return tensors, meta


def rng_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    if "rng.numpy" in tensors:
        np.random.set_state(("MT19937", tensors["rng.numpy"].numpy().astype(np.uint32), meta["numpy_pos"], 0, 0.0))
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_trainer_state(directory: Path, optimizer, progress: dict[str, Any]) -> None:
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    rng_tensors, rng_meta = rng_to_flat()
    save_tensors(directory / STATE_TENSORS, {**opt_tensors, **rng_tensors})
    save_json(directory / STATE_JSON, {"progress": progress, "optimizer": opt_meta, "rng": rng_meta})


def load_trainer_state(directory: Path, optimizer, restore_rng: bool = True) -> dict[str, Any]:
    meta = json.loads((directory / STATE_JSON).read_text())
    tensors = read_tensors(directory / STATE_TENSORS)
    if optimizer is not None:
        optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    if restore_rng:
        rng_from_flat(tensors, meta["rng"])
    return meta["progress"]


def gather_rank_rng(dist, device: torch.device) -> dict[str, torch.Tensor]:
    """Every rank's torch (and CUDA) RNG state, on rank 0 (``{}`` elsewhere). A collective."""
    if not dist.enabled:
        return {}
    out: dict[str, torch.Tensor] = {}
    for r, state in enumerate(dist.all_gather_bytes(torch.get_rng_state())):
        out[f"rank{r}.torch"] = state
    if device.type == "cuda":
        for r, state in enumerate(dist.all_gather_bytes(torch.cuda.get_rng_state(device))):
            out[f"rank{r}.cuda"] = state
    return out if dist.is_main else {}


def save_rank_rng(directory: Path, states: dict[str, torch.Tensor], world_size: int) -> None:
    if states:
        save_tensors(directory / RANK_RNG, states, metadata={"world_size": str(world_size)})


def restore_rank_rng(checkpoint: Path, dist, device: torch.device, old_world: int, reseed: int) -> None:
    """Same world size: each rank takes back its own RNG states. Otherwise rank 0 keeps the
    state ``load_trainer_state`` restored and the other ranks fork their own streams from
    ``reseed + rank``."""
    if not dist.enabled:
        return
    path = checkpoint / RANK_RNG
    if old_world == dist.world_size and path.exists():
        states = read_tensors(path)
        torch.set_rng_state(states[f"rank{dist.rank}.torch"])
        if device.type == "cuda" and f"rank{dist.rank}.cuda" in states:
            torch.cuda.set_rng_state(states[f"rank{dist.rank}.cuda"], device)
    elif dist.rank:
        torch.manual_seed(reseed + dist.rank)

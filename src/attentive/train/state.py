"""Trainer state for exact resume: optimiser tensors and RNG states in safetensors, the rest in JSON.

Nothing is pickled: ``optimizer.state_dict()`` is split into its tensors (saved as
``state.<param index>.<name>``) and its plain structure (param groups, step counters).
Under torchrun every rank's torch RNG state (dropout masks differ per rank) is gathered into
``rank_rng.safetensors`` too, and each rank takes its own back on resume.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import read_tensors, save_json, save_tensors
from ..text.files import read_json_object

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
    inner = getattr(optimizer, "optimizer", optimizer)  # under FSDP: the optimiser FullOptimizerState wraps
    _check_groups(groups, inner.state_dict()["param_groups"])  # the plain one's: no collective
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    params = [p for group in inner.param_groups for p in group["params"]]  # DTensors: full shapes
    for idx, values in state.items():
        if not 0 <= idx < len(params):
            raise ValueError(f"optimizer state for parameter {idx}; the model has {len(params)}")
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[idx].shape:
                raise ValueError(
                    f"optimizer state {key!r} of parameter {idx} has shape {tuple(value.shape)}, "
                    f"the parameter {tuple(params[idx].shape)}"
                )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _check_groups(saved: Any, current: list[dict[str, Any]]) -> None:
    """The saved param groups must have the current optimiser's settings, each of the same kind
    (a number for a number, a pair of numbers for ``betas``): torch would take anything and fail
    at the first step, far from the file."""
    if not isinstance(saved, list) or len(saved) != len(current):
        raise ValueError(f"optimizer param_groups must be a list of {len(current)} groups, found {saved!r:.60}")
    for i, (group, want) in enumerate(zip(saved, current)):
        if not isinstance(group, dict) or set(group) != set(want):
            raise ValueError(f"optimizer param group {i} must have the fields {sorted(want)}")
        for key, value in want.items():
            if not _same_kind(group[key], value):
                raise ValueError(f"optimizer param group {i}: {key!r} is {group[key]!r:.60}, expected {value!r:.60}")


def _same_kind(value: Any, like: Any) -> bool:
    if isinstance(like, bool) or like is None:
        return type(value) is type(like)
    if isinstance(like, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if isinstance(like, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(like)
            and all(_same_kind(v, w) for v, w in zip(value, like))
        )
    return isinstance(value, type(like))


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
    meta = read_json_object(directory / STATE_JSON)
    for key in ("progress", "optimizer", "rng"):
        if not isinstance(meta.get(key), dict):
            raise ValueError(f"{directory / STATE_JSON}: {key!r} must be a JSON object, found {meta.get(key)!r:.60}")
    tensors = read_tensors(directory / STATE_TENSORS)
    try:
        if optimizer is not None:
            optimizer_from_flat(optimizer, tensors, meta["optimizer"])
        if restore_rng:
            rng_from_flat(tensors, meta["rng"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else ""
        why = why if isinstance(err, ValueError) else f"{type(err).__name__}: {why}"
        raise ValueError(f"{directory / STATE_JSON} (and {STATE_TENSORS}) do not fit this run: {why}") from None
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

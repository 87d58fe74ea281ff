"""Checkpoint averaging: the mean of the weights of several checkpoints of one run.

The paper (section 6.1) evaluates the base models on "a single model obtained by averaging the
last 5 checkpoints, which were written at 10-minute intervals". The average of weights taken
along the end of a noisy trajectory sits nearer the middle of the basin than any one of them.

Every checkpoint must have an identical ``config.json`` and the same tensor names and shapes.
Sums are taken in float64 and cast back to each tensor's dtype.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, read_tensors, save_tensors
from ..fileio import atomic_directory
from ..text.files import read_json_object
from .run_folder import checkpoint_dirs

CARRIED_FILES = ("config.json", "tokenizer.json", "tokenizer.src.json", "translation.json")


def recent_checkpoints(run_dir: str | Path, n: int) -> list[Path]:
    """The newest ``n`` complete checkpoints of a run folder (``checkpoints/step-*``), oldest first."""
    if not (Path(run_dir) / "checkpoints").is_dir():
        raise CheckpointError(f"{run_dir} has no checkpoints/ folder: is it a training run folder?")
    found = [p for p in checkpoint_dirs(run_dir) if (p / WEIGHTS_NAME).exists()]
    if not found:
        raise CheckpointError(f"no complete checkpoints in {Path(run_dir) / 'checkpoints'}")
    return found[-n:]


def _config(path: Path) -> dict:
    file = path / CONFIG_NAME
    if not file.exists():
        raise CheckpointError(f"no {CONFIG_NAME} in {path}")
    try:
        return read_json_object(file)
    except ValueError as err:
        raise CheckpointError(str(err)) from None


def average_checkpoints(paths: list[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the weights in ``paths`` (checkpoint folders)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no checkpoints to average")
    for p in paths:
        if not p.is_dir():
            raise CheckpointError(f"checkpoint folder {p} does not exist")
    config = _config(paths[0])
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for p in paths:
        if _config(p) != config:
            raise CheckpointError(f"{p} has a different config.json from {paths[0]}: not the same model")
        tensors = read_tensors(p / WEIGHTS_NAME)
        if total and set(tensors) != set(total):
            extra = sorted(set(tensors) ^ set(total))[:3]
            raise CheckpointError(f"{p} has different tensors from {paths[0]} (e.g. {extra})")
        for name, t in tensors.items():
            if name not in total:
                total[name], dtypes[name] = t.to(torch.float64).clone(), t.dtype
            elif t.shape != total[name].shape:
                raise CheckpointError(
                    f"{p}: tensor {name!r} has shape {tuple(t.shape)}, {paths[0]} has {tuple(total[name].shape)}"
                )
            else:
                total[name] += t.to(torch.float64)
    return {name: (t / len(paths)).to(dtypes[name]) for name, t in total.items()}


def write_average(paths: list[str | Path], out_dir: str | Path) -> Path:
    """Average ``paths`` into ``out_dir``: ``model.safetensors`` plus the newest checkpoint's config,
    tokenizer and task files, so ``out_dir`` is a checkpoint like any other. It is written into a
    temporary folder and renamed into place (replacing an earlier ``out_dir``): whole or absent."""
    paths = [Path(p) for p in paths]
    out = Path(out_dir)
    if any(out.resolve() == p.resolve() for p in paths):
        raise ValueError(f"--out {out} is one of the checkpoints being averaged; choose another folder")
    averaged = average_checkpoints(paths)
    with atomic_directory(out) as tmp:  # a kill mid-write leaves no half checkpoint at ``out``
        for name in CARRIED_FILES:
            if (paths[-1] / name).exists():
                shutil.copyfile(paths[-1] / name, tmp / name)
        metadata = {"format": "pt", "averaged_from": ",".join(map(str, paths))}
        save_tensors(tmp / WEIGHTS_NAME, averaged, metadata=metadata)
    return out

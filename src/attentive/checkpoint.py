"""Checkpoints: safetensors weights + JSON config, written atomically, loaded without unpickling.

A checkpoint is a folder::

    config.json          the model config (rebuilds the exact model)
    model.safetensors    the weights (tied tensors stored once)
    ...                  whatever else the caller adds (tokenizer.json, trainer state, plots)

Every file is written to a temporary name in the same folder and renamed into place, so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import ModelConfig, build_model, load_config
from .fileio import atomic_write, atomic_write_text

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


def save_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def unique_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with each shared (tied) tensor kept once, contiguous, on CPU."""
    seen: dict[tuple[int, torch.Size], str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tensor.shape)
        if tensor.numel() and key in seen:
            continue
        seen[key] = name
        out[name] = tensor.detach().cpu().contiguous()
    return out


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_model(model: nn.Module, directory: str | Path, config: ModelConfig | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = config if config is not None else model.config
    save_tensors(directory / WEIGHTS_NAME, unique_state_dict(model), metadata={"format": "pt"})
    save_json(directory / CONFIG_NAME, config.to_dict())
    return directory


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning any failure into a one-line CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no weights file at {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None


def check_state(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], source: str, owner: str) -> None:
    """Raise a CheckpointError for the first tensor of ``tensors`` that does not fit ``expected``.

    ``expected`` is ``model.state_dict(keep_vars=True)``, so tied parameters are one object and a
    file that stores them once is complete. 'First' means in the model's own (module) order,
    not the file's (alphabetical) order.
    """
    for name, want in expected.items():
        if name in tensors and tuple(tensors[name].shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, the model expects "
                f"{tuple(want.shape)}"
            )
    for name in tensors:
        if name not in expected:
            raise CheckpointError(f"{source}: tensor {name!r} is not a parameter of {owner}")
    present = {id(expected[n]) for n in tensors}
    for name, value in expected.items():
        if name not in tensors and id(value) not in present and value.numel():
            raise CheckpointError(f"{source}: tensor {name!r} is missing")


# Output projections were called ``generator`` (encoder-decoder), ``lm_head`` (language models,
# Whisper) and ``action_head`` (Decision Transformer) before every family named theirs ``head``;
# checkpoints written then still load.
LEGACY_PREFIXES = {"generator.": "head.", "lm_head.": "head.", "action_head.": "head."}


def _current_names(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for name, tensor in tensors.items():
        if name not in expected:
            for old, new in LEGACY_PREFIXES.items():
                if name.startswith(old) and new + name[len(old) :] in expected:
                    name = new + name[len(old) :]
                    break
        renamed[name] = tensor
    return renamed


def load_state_into(model: nn.Module, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``tensors`` into ``model``; the first name or shape that does not fit is an error."""
    expected = model.state_dict(keep_vars=True)
    tensors = _current_names(tensors, expected)
    check_state(expected, tensors, source, type(model).__name__)
    with torch.no_grad():
        for name, tensor in tensors.items():
            expected[name].copy_(tensor)


# Buffers a config may ask for beyond the file's own tensors (rotary tables, sinusoidal tables, masks):
# this much, or the file's size again if that is more. A config that wants more is not this file's.
BUFFER_ALLOWANCE = 256 << 20


def build_checked(config: ModelConfig, tensors: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The model of ``config`` with ``tensors`` copied in, checked before anything is allocated.

    The config and the tensors come from files, so the model is first built on the meta device
    (no memory) and the tensors' names and shapes compared with it; only a model they fit is
    built for real. A config whose numbers cannot build a model (``d_model`` 10**30, 10**9 layers
    for 12 tensors, tables of terabytes) is a one-line CheckpointError naming ``source``.
    """
    for name in config.field_names():
        value = getattr(config, name)
        if name.endswith("layers") and isinstance(value, int) and value > len(tensors):
            raise CheckpointError(
                f"{source}: the config's {name} = {value} cannot fit {len(tensors)} tensors (each layer has its own)"
            )
    try:
        with torch.device("meta"):
            shape = build_model(config)
    except (ValueError, TypeError, RuntimeError, OverflowError, ZeroDivisionError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"{source}: the config does not build a model ({type(err).__name__}: {first})") from None
    expected = shape.state_dict(keep_vars=True)
    tensors = _current_names(tensors, expected)
    check_state(expected, tensors, source, type(shape).__name__)
    stored = sum(t.numel() * t.element_size() for t in tensors.values())
    extra = sum(b.numel() * b.element_size() for b in shape.buffers()) + sum(
        p.numel() * p.element_size() for n, p in expected.items() if n not in tensors
    )
    if extra > max(BUFFER_ALLOWANCE, stored):
        raise CheckpointError(
            f"{source}: the config asks for {extra / 2**20:.0f} MiB beyond the file's {stored / 2**20:.1f} MiB of "
            f"tensors (tables sized by max_len or the like); limit: {max(BUFFER_ALLOWANCE, stored) / 2**20:.0f} MiB"
        )
    model = build_model(config)
    load_state_into(model, tensors, source=source)
    return model


def load_model(
    directory: str | Path, device: str | torch.device = "cpu", overrides: dict[str, Any] | None = None
) -> nn.Module:
    """Rebuild the model from ``config.json`` (with config ``overrides`` that change no weight,
    e.g. ``rope_scaling``) and load ``model.safetensors``; never unpickles."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {directory} does not exist")
    try:
        config = load_config(directory)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise CheckpointError(f"{directory}: bad config ({err})") from None
    if overrides:
        config = config.replace(**overrides)
    model = build_checked(config, read_tensors(directory / WEIGHTS_NAME), str(directory / WEIGHTS_NAME))
    return model.to(device)

"""What every loader shares: a Hugging Face folder's files, and a model built from renamed weights.

``from_pretrained`` (``interop.pretrained``) reads a folder's weights and configs once
(``HFFolder.read``) and hands them to the family's loader (``interop.families``), which maps the
names and calls ``build``. Both sides import this module, and it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import build_checked, read_tensors
from ..config import ModelConfig
from ..text.files import read_json


@dataclass
class HFFolder:
    """A Hugging Face model folder as a family's loader gets it (weights under ``transformers``' names)."""

    path: Path
    config: dict[str, Any]  # config.json
    state: dict[str, torch.Tensor]  # model.safetensors, every shard
    generation: dict[str, Any]  # generation_config.json, {} when there is none

    @classmethod
    def read(cls, path: Path, config: dict[str, Any]) -> HFFolder:
        state = read_safetensors(path)
        generation = path / "generation_config.json"
        return cls(path, config, state, read_json(generation) if generation.is_file() else {})


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors``, or every shard named in ``model.safetensors.index.json``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_tensors(folder / shard))
        return state
    if (folder / "model.safetensors").is_file():
        return read_tensors(folder / "model.safetensors")
    pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    hint = f" (found {', '.join(pickled)}: pickle files are never loaded)" if pickled else ""
    raise ValueError(f"{folder} has no model.safetensors{hint}; supported: safetensors weights")


def build(
    config: ModelConfig, state: dict[str, torch.Tensor], source: str, overrides: dict[str, Any] | None = None
) -> nn.Module:
    """The family's model with ``state`` copied in; a missing or extra tensor is an error."""
    return build_checked(config.replace(**overrides) if overrides else config, state, source)

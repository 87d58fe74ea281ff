"""LoRA adapters (Hu et al., 2021) on any attentive model, through ``peft``.

LoRA keeps a pretrained weight ``W (out, in)`` frozen and learns a low-rank change beside it:
``y = W x + (alpha / r) * B A x`` with ``A (r, in)``, ``B (out, r)`` and ``B`` starting at zero,
so the adapted model starts exactly where the base model is. Only ``A`` and ``B`` train.

``peft`` does the wrapping (``inject_adapter_in_model`` replaces each targeted ``nn.Linear`` in
place by its LoRA layer), so the model keeps its class, its ``config``, ``decode`` and ``head``:
the trainer, DDP / FSDP and the decoding engine see the same model as before. Targets are module
names or name suffixes (``q_proj`` matches every ``...self_attn.q_proj``); a target that matches
no linear layer is an error listing the model's linear layers.

An adapter folder (what a LoRA run folder holds, what ``attentive merge`` reads)::

    adapter.json          {"method": "lora", "rank", "alpha", "dropout", "targets",
                           "base": where the base weights come from, "base_config": their config}
    adapter.safetensors   A and B under the model's own names, e.g.
                          stack.layers.0.self_attn.q_proj.lora_A.weight  (r, in)
                          stack.layers.0.self_attn.q_proj.lora_B.weight  (out, r)

``merge_lora`` folds ``(alpha / r) B A`` into ``W`` and puts the plain ``nn.Linear`` back, so a
merged model is an ordinary checkpoint again.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import CheckpointError, check_state, read_tensors, save_json, save_tensors
from .config import ModelConfig, build_model, config_from_dict

ADAPTER_CONFIG = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
_PEFT_NAME = "default"  # peft's adapter name; dropped from the names we save
_ATTR = "lora_config"  # where an adapted model keeps its LoRAConfig
_BASE_ATTR = "lora_base"  # ... and where its base weights came from (a path or hub name)


@dataclass
class LoRAConfig:
    """Rank, alpha (the adapter's update is scaled by ``alpha / rank``, peft's ``lora_alpha / r``),
    dropout on the adapter's input, and which linear layers."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip())
        self.targets = tuple(self.targets)
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank <= 0:
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if not self.targets:
            raise ValueError("LoRA needs at least one target module (e.g. targets=q_proj,v_proj)")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets)}


@dataclass
class Adapter:
    """An adapter folder read back: its settings, its base and its tensors."""

    config: LoRAConfig
    base: str | None
    base_config: dict[str, Any] | None
    tensors: dict[str, torch.Tensor] = field(repr=False)


# ----------------------------------------------------------------------------- adding and merging


def linear_layers(model: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` in ``model`` (the layers LoRA can adapt)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _short_names(names: list[str]) -> str:
    """``stack.layers.3.self_attn.q_proj`` -> ``self_attn.q_proj``: the layer-independent part."""
    short = dict.fromkeys(re.sub(r"^.*?\.\d+\.", "", n) for n in names)
    return ", ".join(short) or "none"


def resolve_targets(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Full names of the linear layers the targets name (a full name or a ``.``-separated suffix)."""
    linears = linear_layers(model)
    chosen: list[str] = []
    for target in targets:
        found = [n for n in linears if n == target or n.endswith("." + target)]
        if not found:
            raise ValueError(
                f"LoRA target module {target!r} matches no linear layer of {type(model).__name__}; "
                f"its linear layers are: {_short_names(linears)}"
            )
        chosen += [n for n in found if n not in chosen]
    return chosen


def lora_config_of(model: nn.Module) -> LoRAConfig | None:
    """The LoRAConfig of an adapted model, None for a plain one."""
    return getattr(model, _ATTR, None)


def add_lora(model: nn.Module, config: LoRAConfig, base: str | None = None) -> nn.Module:
    """Freeze every parameter of ``model`` and wrap the target linear layers with LoRA (in place).

    Only the adapters' ``A`` and ``B`` require gradients afterwards, so an optimiser built from the
    trainable parameters holds nothing else. ``base``: where the base weights come from, recorded
    in the adapter folder so that ``attentive merge`` finds them.
    """
    if lora_config_of(model) is not None:
        raise ValueError("this model already carries a LoRA adapter; merge it first (attentive merge)")
    names = resolve_targets(model, config.targets)
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ValueError("LoRA needs the peft package (pip install 'attentive[finetune]')") from None
    for p in model.parameters():
        p.requires_grad_(False)
    peft_config = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=names, bias="none"
    )
    inject_adapter_in_model(peft_config, model, adapter_name=_PEFT_NAME)
    setattr(model, _ATTR, config)
    setattr(model, _BASE_ATTR, base)
    return model


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (``W += alpha / r * B A``) and restore the plain
    ``nn.Linear`` modules: the result has the base model's parameter names (in place)."""
    if lora_config_of(model) is None:
        raise ValueError("this model carries no LoRA adapter to merge")
    for name, layer in _lora_layers(model):
        layer.merge(safe_merge=True)  # safe: refuses to write NaN/inf into the base weight
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.get_base_layer())
    delattr(model, _ATTR)
    delattr(model, _BASE_ATTR)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


# ----------------------------------------------------------------------------- adapter tensors


def _saved_name(name: str) -> str:
    return name.replace(f".{_PEFT_NAME}.", ".")


def is_adapter_tensor(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def adapter_state(model: nn.Module, full_state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The adapter's A and B tensors (CPU, contiguous) under their saved names.

    ``full_state``: an already gathered state dict (the trainer's, under FSDP) to pick them from.
    """
    state = model.state_dict() if full_state is None else full_state
    return {_saved_name(n): t.detach().cpu().contiguous() for n, t in state.items() if is_adapter_tensor(n)}


def load_adapter_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str = "adapter") -> None:
    """Copy saved A and B tensors into an adapted model. A name the model lacks, a missing
    tensor, or a shape that differs (an adapter trained on another base) is a CheckpointError
    naming the first one."""
    expected = {_saved_name(n): t for n, t in model.state_dict(keep_vars=True).items() if is_adapter_tensor(n)}
    if not expected:
        raise CheckpointError(f"{source}: the model carries no LoRA adapter to load it into")
    check_state(expected, tensors, source, f"{type(model).__name__} with LoRA")
    with torch.no_grad():
        for name, tensor in tensors.items():
            target = expected[name]
            if hasattr(target, "to_local"):  # an FSDP shard: keep this rank's slice
                from torch.distributed.tensor import distribute_tensor

                full = tensor.to(device=target.device, dtype=target.dtype)
                target.to_local().copy_(
                    distribute_tensor(full, target.device_mesh, target.placements, src_data_rank=None).to_local()
                )
            else:
                target.copy_(tensor)


# ----------------------------------------------------------------------------- adapter folders


def save_adapter(directory: str | Path, model: nn.Module, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``adapter.json`` + ``adapter.safetensors`` (``tensors``: already gathered ones)."""
    config = lora_config_of(model)
    if config is None:
        raise ValueError("this model carries no LoRA adapter to save")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = adapter_state(model) if tensors is None else tensors
    save_tensors(directory / ADAPTER_WEIGHTS, tensors, metadata={"format": "pt"})
    save_json(
        directory / ADAPTER_CONFIG,
        {
            "method": "lora",
            **config.to_dict(),
            "base": getattr(model, _BASE_ATTR, None),
            "base_config": model.config.to_dict(),
        },
    )
    return directory


def is_adapter_folder(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def read_adapter(directory: str | Path) -> Adapter:
    """An adapter folder's settings and tensors; a missing or malformed file is a one-line error."""
    directory = Path(directory)
    path = directory / ADAPTER_CONFIG
    if not path.is_file():
        raise CheckpointError(f"{directory} is not an adapter folder (no {ADAPTER_CONFIG})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from None
    if meta.get("method") != "lora":
        raise CheckpointError(f"{path}: adapter method {meta.get('method')!r} is not supported; supported: lora")
    try:
        config = LoRAConfig(
            rank=meta["rank"], alpha=meta["alpha"], dropout=meta.get("dropout", 0.0), targets=tuple(meta["targets"])
        )
    except KeyError as err:
        raise CheckpointError(f"{path} lacks {err}") from None
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return Adapter(config, meta.get("base"), meta.get("base_config"), read_tensors(directory / ADAPTER_WEIGHTS))


def apply_adapter(model: nn.Module, adapter: Adapter, source: str = "adapter") -> nn.Module:
    """``model`` (the base) with ``adapter`` added and loaded: the first target or shape that does
    not fit the base is an error."""
    add_lora(model, adapter.config, base=adapter.base)
    load_adapter_state(model, adapter.tensors, source)
    return model


def build_like(model: nn.Module) -> nn.Module:
    """A fresh model of the same family and shape, with the same (untrained) LoRA wrapping."""
    fresh = build_model(model.config)
    config = lora_config_of(model)
    return add_lora(fresh, config, getattr(model, _BASE_ATTR, None)) if config is not None else fresh


def base_config(adapter: Adapter) -> ModelConfig | None:
    return config_from_dict(adapter.base_config) if adapter.base_config else None

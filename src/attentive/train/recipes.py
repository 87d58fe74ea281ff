"""Named training recipes: a model preset + data + optimiser + schedule, runnable by name.

Each task module registers its recipes with ``register_recipe``; ``attentive train --preset
NAME`` looks them up here. A recipe builder receives the command-line overrides
(``key=value`` strings, already split) and returns what the trainer needs.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..tasks.base import Task
from .trainer import TrainConfig


@dataclass
class Recipe:
    task: Task
    model: nn.Module
    train_config: TrainConfig


@dataclass
class RecipeEntry:
    name: str
    build: Callable[..., Recipe]
    description: str
    task_module: str


_RECIPES: dict[str, RecipeEntry] = {}
# modules that register recipes when imported (a missing module is skipped: tasks arrive one by one)
RECIPE_MODULES = (
    "attentive.tasks.translation",
    "attentive.tasks.language_modeling",
    "attentive.tasks.classification",
    "attentive.tasks.offline_rl",
)
DEFAULT_RECIPE = "multi30k-de-en"


def register_recipe(name: str, description: str):
    """Decorator for ``build(overrides: dict[str, Any], **options) -> Recipe``."""

    def decorator(fn: Callable[..., Recipe]):
        _RECIPES[name] = RecipeEntry(name, fn, description, fn.__module__)
        return fn

    return decorator


def _load() -> None:
    for module in RECIPE_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def recipes() -> dict[str, RecipeEntry]:
    _load()
    return dict(sorted(_RECIPES.items()))


def get_recipe(name: str) -> RecipeEntry:
    _load()
    if name not in _RECIPES:
        raise ValueError(f"unknown training preset {name!r}; available: {', '.join(sorted(_RECIPES)) or 'none'}")
    return _RECIPES[name]


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, 'none' -> None, other text stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["d_model=256", "lr=1e-3"]`` -> ``{"d_model": 256, "lr": 0.001}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out


def split_overrides(overrides: dict[str, Any], *targets: Any) -> list[dict[str, Any]]:
    """Route each override to the first target (a dataclass instance or class) that has the field.

    An override no target knows is an error naming it and the valid fields.
    """
    routed: list[dict[str, Any]] = [{} for _ in targets]
    valid: list[str] = []
    for target in targets:
        valid.extend(f.name for f in dataclasses.fields(target))
    for key, value in overrides.items():
        for i, target in enumerate(targets):
            if key in {f.name for f in dataclasses.fields(target)}:
                routed[i][key] = value
                break
        else:
            raise ValueError(f"override {key!r} is not a known setting; valid: {', '.join(sorted(set(valid)))}")
    return routed

"""Named training recipes: a model config, the task's data config, an optimiser and a trainer
config, plus the code that turns them into a task and a model.

``attentive train --recipe NAME [key=value ...]`` looks a recipe up here, in the table of
``catalogue.py`` (which module defines it; imported on first use). Every recipe takes
its overrides the same way (``overrides.route_overrides``: model, data, optimiser, trainer,
fine-tuning, in that order, each value parsed by its field's type), picks the training
precision the same way (``resolve_precision``) and makes its model the same way
(``Settings.new_model``: fresh, or ``init=`` pretrained weights, optionally with LoRA); only
``make`` is its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..device import cpu_has_native_bf16
from ..figures import load as load_result
from ..lazy import entry
from ..train.optim import OptimConfig
from ..train.task import Task
from ..train.trainer import TrainConfig
from .catalogue import RECIPES
from .overrides import route_overrides
from .pretrained import FinetuneConfig, Settings

DEFAULT_RECIPE = "multi30k-de-en"
RESULTS = Path(__file__).parent / "results"  # <recipe>.json: what a run of the recipe measured


@dataclass
class Recipe:
    """What the trainer needs: a task, a freshly initialised model and the trainer settings."""

    task: Task
    model: nn.Module
    train_config: TrainConfig


@dataclass
class RecipeSpec:
    """A named recipe. ``make(settings) -> Recipe`` reads the data and makes the task and model;
    ``build(overrides)`` is the whole path from ``key=value`` settings to a ``Recipe``."""

    name: str
    description: str
    model: ModelConfig
    data: Any
    optim: OptimConfig
    train: TrainConfig
    make: Callable[[Settings], Recipe]
    cpu_bf16: bool = False  # precision "auto" takes bf16 on CPUs with native bf16 (measured faster)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # init= and LoRA defaults

    def settings(self, overrides: dict[str, Any] | None = None) -> Settings:
        """The configs with ``overrides`` applied (text values parsed by their field's type)."""
        overrides = dict(overrides or {})
        model_o, data_o, optim_o, train_o, finetune_o = route_overrides(
            overrides, [self.model, self.data, self.optim, self.train, self.finetune]
        )
        optim = dataclasses.replace(self.optim, **optim_o)
        train = dataclasses.replace(self.train, **train_o, optim=optim)
        train = dataclasses.replace(train, precision=resolve_precision(train, self.cpu_bf16))
        data = dataclasses.replace(self.data, **data_o) if data_o else self.data
        model = self.model.replace(**model_o) if model_o else self.model
        finetune = dataclasses.replace(self.finetune, **finetune_o) if finetune_o else self.finetune
        return Settings(model=model, data=data, train=train, explicit=set(overrides), finetune=finetune)

    def build(self, overrides: dict[str, Any] | None = None) -> Recipe:
        return self.make(self.settings(overrides))

    def result(self) -> dict | None:
        """What a run of this recipe measured (``recipes/results/NAME.json``), if one was recorded."""
        path = RESULTS / f"{self.name}.json"
        return load_result(path) if path.is_file() else None

    def measured(self) -> str | None:
        """The result file's ``summary`` filled from its ``figures``, with the date: one line."""
        result = self.result()
        if result is None:
            return None
        line = result["summary"].format(**result["figures"])
        return f"{line} ({result['date'][:10]}, {result['machine']})"


def resolve_precision(train: TrainConfig, cpu_bf16: bool) -> str:
    """The recipe's precision: as set, or for "auto" bf16 on a CPU that multiplies bf16 in
    hardware (about twice the fp32 speed there) when the recipe opts in; the trainer decides
    "auto" on GPUs."""
    if train.precision != "auto" or not cpu_bf16:
        return train.precision
    runs_on_cpu = train.device == "cpu" or (train.device == "auto" and not torch.cuda.is_available())
    return "bf16" if runs_on_cpu and cpu_has_native_bf16() else "auto"


_REGISTERED: dict[str, RecipeSpec] = {}  # filled by register_recipe as the catalogue's modules are imported


def register_recipe(spec: RecipeSpec) -> RecipeSpec:
    """Define a recipe (``NAME = register_recipe(RecipeSpec(...))``); the catalogue must list it."""
    if spec.name not in RECIPES:
        raise ValueError(
            f"recipe {spec.name!r} is not in RECIPES in attentive/recipes/catalogue.py; add it there "
            "with the module and attribute that hold it"
        )
    if spec.name in _REGISTERED:
        raise ValueError(f"recipe {spec.name!r} is registered twice")
    _REGISTERED[spec.name] = spec
    return spec


def recipes() -> dict[str, RecipeSpec]:
    return {name: get_recipe(name) for name in sorted(RECIPES)}


def get_recipe(name: str) -> RecipeSpec:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))} (attentive recipes)")
    spec = entry(RECIPES[name], default=None)
    if not isinstance(spec, RecipeSpec) or spec.name != name:
        raise ValueError(
            f"RECIPES in attentive/recipes/catalogue.py says {RECIPES[name]} holds recipe {name!r}, "
            f"but it holds {getattr(spec, 'name', spec)!r}"
        )
    return spec

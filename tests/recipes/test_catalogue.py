"""The recipe catalogue: a table read without importing the recipes, which must agree with the
``register_recipe`` calls of the modules it names."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import attentive.recipes
from attentive.recipes import get_recipe, recipes, registry
from attentive.recipes.catalogue import RECIPES


def test_every_registered_recipe_is_in_the_catalogue_where_it_is_defined():
    for info in pkgutil.iter_modules(attentive.recipes.__path__):
        importlib.import_module(f"attentive.recipes.{info.name}")  # register_recipe refuses unlisted names
    assert sorted(registry._REGISTERED) == sorted(RECIPES)
    for name, where in RECIPES.items():
        module, _, attribute = where.partition(":")
        assert getattr(importlib.import_module(module), attribute) is registry._REGISTERED[name] is get_recipe(name)
    assert list(recipes()) == sorted(RECIPES)


def test_a_recipe_outside_the_catalogue_is_refused():
    spec = get_recipe("shakespeare-char")
    with pytest.raises(ValueError, match="'not-listed' is not in RECIPES in attentive/recipes/catalogue.py"):
        registry.register_recipe(
            registry.RecipeSpec(
                "not-listed", *[getattr(spec, f) for f in ("description", "model", "data", "optim", "train", "make")]
            )
        )
    with pytest.raises(ValueError, match="'shakespeare-char' is registered twice"):
        registry.register_recipe(spec)
    with pytest.raises(
        ValueError, match=r"unknown recipe 'not-listed'; available: dt-acrobot, .* \(attentive recipes\)"
    ):
        get_recipe("not-listed")


def test_a_catalogue_line_that_points_elsewhere_is_named(monkeypatch):
    monkeypatch.setitem(RECIPES, "vit-mnist", "attentive.recipes.classification:VIT_MNIST_GPU")
    with pytest.raises(ValueError, match="holds recipe 'vit-mnist', but it holds 'vit-mnist-gpu'"):
        get_recipe("vit-mnist")

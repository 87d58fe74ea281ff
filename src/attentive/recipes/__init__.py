"""Named training recipes (model + data + optimiser + schedule), runnable by name:
``attentive train --recipe NAME``; ``attentive recipes`` lists them."""

from .registry import DEFAULT_RECIPE, Recipe, RecipeSpec, get_recipe, recipes

__all__ = ["DEFAULT_RECIPE", "Recipe", "RecipeSpec", "get_recipe", "recipes"]

"""Every recipe attentive ships, and where each is defined.

A plain table: ``registry.get_recipe`` imports a recipe's module on first use, so this module
imports none of them (they import the registry, which reads this table). A new recipe is its
``register_recipe(RecipeSpec(...))`` in a module here plus its line below.
"""

RECIPES: dict[str, str] = {  # recipe name -> "module:attribute" holding its RecipeSpec
    "dt-acrobot": "attentive.recipes.offline_rl:DT_ACROBOT",
    "dt-cartpole": "attentive.recipes.offline_rl:DT_CARTPOLE",
    "instruct": "attentive.recipes.instruct:INSTRUCT",
    "multi30k-de-en": "attentive.recipes.translation:MULTI30K_DE_EN",
    "multi30k-de-en-gpu": "attentive.recipes.translation:MULTI30K_DE_EN_GPU",
    "shakespeare-char": "attentive.recipes.language_modeling:SHAKESPEARE_CHAR",
    "shakespeare-char-gpu": "attentive.recipes.language_modeling:SHAKESPEARE_CHAR_GPU",
    "smollm2-multi30k-lora": "attentive.recipes.instruct:SMOLLM2_MULTI30K_LORA",
    "vit-mnist": "attentive.recipes.classification:VIT_MNIST",
    "vit-mnist-gpu": "attentive.recipes.classification:VIT_MNIST_GPU",
}

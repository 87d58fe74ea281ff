"""``attentive recipes``: the training recipes, and with NAME the settings one of them uses."""

from __future__ import annotations

import dataclasses

from ..recipes import DEFAULT_RECIPE, get_recipe, recipes


def run(args) -> int:
    if args.name:
        spec = get_recipe(args.name)
        print(f"{spec.name}: {spec.description}")
        print(f"measured: {spec.measured() or 'not yet'}\n")
        for title, config in (
            ("model", spec.model),
            ("data", spec.data),
            ("optimiser", spec.optim),
            ("trainer", spec.train),
            ("fine-tuning", spec.finetune),
        ):
            print(f"[{title}: {type(config).__name__}]")
            for f in dataclasses.fields(config):
                if f.name != "optim":
                    print(f"  {f.name} = {getattr(config, f.name)!r}")
        print(f"\noverride any of these with key=value: attentive train --recipe {spec.name} lr=1e-3 max_minutes=5")
        return 0
    print(f"{'recipe':<22} description   (attentive train --recipe NAME; default {DEFAULT_RECIPE})")
    for name, spec in recipes().items():
        print(f"{name:<22} {spec.description}")
        measured = spec.measured()
        if measured:
            print(f"{'':<22} measured: {measured}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("recipes", help="list the training recipes (attentive recipes NAME: its settings)")
    p.add_argument("name", nargs="?", help="show the settings of this recipe")
    p.set_defaults(func=run)

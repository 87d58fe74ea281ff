"""``attentive train``: run a named training recipe (default: Multi30k German -> English)."""

from __future__ import annotations

import json
import sys

from ..recipes import DEFAULT_RECIPE, get_recipe
from ..recipes.overrides import parse_overrides
from ..train.trainer import Trainer

# command-line flags that are trainer settings: routed like key=value overrides
TRAIN_FLAGS = ("max_steps", "max_minutes", "device", "seed", "compile", "strategy", "activation_checkpointing")


def run(args) -> int:
    if args.preset is not None:
        print(
            "attentive train: warning: --preset is deprecated for training recipes (a preset is a model "
            "config now); use --recipe",
            file=sys.stderr,
        )
    name = args.recipe or args.preset or DEFAULT_RECIPE
    spec = get_recipe(name)
    overrides: dict = parse_overrides(args.overrides)
    for flag in TRAIN_FLAGS:
        value = getattr(args, flag)
        if value is not None and value is not False:
            overrides[flag] = value
    overrides["out_dir"] = args.out or f"runs/{name}"
    recipe = spec.build(overrides)
    trainer = Trainer(recipe.task, recipe.model, recipe.train_config)
    if trainer.dist.is_main:
        params = {id(p): p for p in recipe.model.parameters()}.values()
        n_params, n_trained = sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
        trained = "" if n_trained == n_params else f", {n_trained / 1e6:.2f}M of them trained"
        print(
            f"training {name}: {n_params / 1e6:.2f}M parameters{trained} on {trainer.device} "
            f"({trainer.precision}) -> {recipe.train_config.out_dir}"
        )
    results = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    if trainer.dist.is_main:
        print(json.dumps(results, indent=2))
    trainer.dist.close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a named recipe (default: Multi30k de->en translation)")
    p.add_argument("--recipe", help=f"training recipe (default: {DEFAULT_RECIPE}; list them: attentive recipes)")
    p.add_argument("--preset", help="deprecated spelling of --recipe")
    p.add_argument("--out", help="run folder (default: runs/RECIPE)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in a run folder that holds an earlier run (deletes its checkpoints)",
    )
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--strategy", choices=("ddp", "fsdp"), help="data parallelism under torchrun (default ddp)")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="model / data / optimiser / trainer settings (an unknown key lists the valid ones)",
    )
    p.set_defaults(func=run)

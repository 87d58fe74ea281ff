"""``attentive train``: run a named training recipe (default: Multi30k German -> English)."""

from __future__ import annotations

import json

from ..train.recipes import DEFAULT_RECIPE, get_recipe, parse_overrides
from ..train.trainer import Trainer


def run(args) -> int:
    entry = get_recipe(args.preset)
    overrides = parse_overrides(args.overrides)
    for flag in ("max_steps", "max_minutes", "device", "seed", "compile", "strategy", "activation_checkpointing"):
        value = getattr(args, flag)
        if value is not None and value is not False:
            overrides[flag] = value
    overrides["out_dir"] = args.out or f"runs/{args.preset}"
    recipe = entry.build(overrides)
    trainer = Trainer(recipe.task, recipe.model, recipe.train_config)
    if trainer.dist.is_main:
        n_params = sum(p.numel() for p in {id(p): p for p in recipe.model.parameters()}.values())
        print(f"training {args.preset}: {n_params / 1e6:.2f}M parameters on {trainer.device} "
              f"({trainer.precision}) -> {recipe.train_config.out_dir}")
    results = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    if trainer.dist.is_main:
        print(json.dumps(results, indent=2))
    trainer.dist.close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train a named recipe (default: Multi30k de->en translation)")
    p.add_argument("--preset", default=DEFAULT_RECIPE, help=f"training preset (default: {DEFAULT_RECIPE})")
    p.add_argument("--out", help="run folder (default: runs/PRESET)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a run folder that holds an earlier run (deletes its checkpoints)")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--strategy", choices=("ddp", "fsdp"), help="data parallelism under torchrun (default ddp)")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="model / training config overrides")
    p.set_defaults(func=run)

"""``attentive models``: the names every command's ``--model`` takes, and what is here.

    attentive models                 # the bundled models (installed or not) and the run folders in ./runs
    attentive models --runs ~/runs   # run folders somewhere else
    attentive models --json

A bundled model is named by its short name in every command (``--model smollm2``); one that is
not installed is listed with the line that installs it. Run folders are named by their path.
"""

from __future__ import annotations

import json
from pathlib import Path


def run_folders(root: Path) -> list[tuple[Path, str]]:
    """(folder, family) of every run folder or checkpoint directly under ``root`` (a LoRA run: ``lora``)."""
    from ..interop.resolve import attentive_family

    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        family = "lora" if (folder / "adapter.json").is_file() else attentive_family(folder)
        if family is not None:
            found.append((folder, family))
    return found


def run(args) -> int:
    from ..interop.resolve import installed

    bundled = installed()
    runs = run_folders(Path(args.runs))
    if args.json:
        print(
            json.dumps(
                {
                    "bundled": [
                        {
                            "name": m.name,
                            "aliases": list(m.aliases),
                            "title": m.title,
                            "family": m.family,
                            "about": m.about,
                            "package": m.package,
                            "installed": path is not None,
                            "path": None if path is None else str(path),
                            "install": m.install,
                        }
                        for m, path in bundled
                    ],
                    "runs": [{"path": str(folder), "family": family} for folder, family in runs],
                }
            )
        )
        return 0
    width = max(len(m.name) for m, _ in bundled)
    print("Bundled models (--model NAME in every command):")
    for model, path in bundled:
        also = f"; also {', '.join(model.aliases)}" if model.aliases else ""
        print(f"  {model.name:<{width}}  {model.family:<10}  {model.title}: {model.about}{also}")
        print(
            f"  {'':<{width}}  {'':<10}  "
            + (f"installed: {path}" if path is not None else f"not installed: {model.install}")
        )
    print(f"Run folders in {args.runs} (--model PATH):" if runs else f"No run folders in {args.runs}.")
    for folder, family in runs:
        print(f"  {folder}  ({family})")
    print("Also: a GGUF file, a Hugging Face or CTranslate2 folder, or a Hugging Face hub id (org/model).")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="the model names --model takes: bundled models and local run folders")
    p.add_argument("--runs", default="runs", metavar="DIR", help="where to look for run folders (default ./runs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)

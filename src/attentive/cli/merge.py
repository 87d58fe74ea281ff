"""``attentive merge``: fold a LoRA adapter into its base model, giving a plain checkpoint.

    attentive merge --adapter runs/smollm2-multi30k-lora --out smollm2-de-en/
    attentive merge --adapter runs/my-lora --base path/to/base --out merged/

The base is the one the adapter records (``init=`` of its run) unless ``--base`` names another.
The output (``config.json``, ``model.safetensors``, the tokenizer files) gives the same logits
as base + adapter, and every command that reads an attentive checkpoint reads it. It is written
into a temporary folder and renamed into place: it appears whole or not at all.
"""

from __future__ import annotations

from ..fileio import atomic_directory
from ..interop.pretrained import load_adapter


def run(args) -> int:
    merged = load_adapter(args.adapter, base=args.base)  # every check happens before anything is written
    with atomic_directory(args.out) as tmp:
        merged.save(tmp)
    n = sum(p.numel() for p in {id(p): p for p in merged.model.parameters()}.values())
    print(f"merged {args.adapter} into its base: {n / 1e6:.2f}M parameters -> {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("merge", help="fold a LoRA adapter into its base model (a plain checkpoint)")
    p.add_argument("--adapter", required=True, metavar="DIR", help="adapter folder (a LoRA run folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the merged checkpoint goes")
    p.add_argument("--base", metavar="SPEC", help="base model, any model spec (default: the one the adapter records)")
    p.set_defaults(func=run)

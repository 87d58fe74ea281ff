"""``attentive perplexity``: how well a language model predicts a text file.

    attentive perplexity --checkpoint runs/shakespeare-char data.txt
"""

from __future__ import annotations

import json

from ..evaluate.perplexity import file_perplexity
from .common import add_device, add_quantize, device_for
from .generate import add_model_options, resolve_model


def run(args) -> int:
    if args.block_size is not None and args.block_size < 1:
        raise ValueError(f"--block-size must be positive, got {args.block_size}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    model, tokenizer = resolve_model(args, device_for(args))
    result = file_perplexity(model, tokenizer, args.file, block_size=args.block_size, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"file": args.file, "tokens": result.tokens, "loss": result.loss,
                          "perplexity": result.perplexity, "block_size": result.block_size}))
    else:
        print(f"{args.file}: {result.tokens:,} tokens scored (context {result.block_size}): "
              f"loss {result.loss:.4f} nats/token, perplexity {result.perplexity:.3f}, "
              f"{result.bits_per_token:.3f} bits/token")
    return 0


def register(sub) -> None:
    p = sub.add_parser("perplexity", help="perplexity of a language model on a text file")
    add_model_options(p)
    p.add_argument("file", help="UTF-8 text file")
    p.add_argument("--block-size", type=int, metavar="N", help="context per block (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_quantize(p)
    add_device(p)
    p.set_defaults(func=run)

"""``attentive perplexity``: how well a language model predicts a text file.

attentive perplexity --model runs/shakespeare-char data.txt
attentive perplexity --model smollm2 long.txt --window 1024 --sinks 4     # one stream, bounded memory
attentive perplexity --model smollm2 long.txt --block-size 16384 --rope-scaling rope_type=yarn,factor=2
"""

from __future__ import annotations

import json

from ..evaluate.perplexity import file_perplexity
from .common import add_device, add_quantize
from .generate import add_model_options, resolve_model


def run(args) -> int:
    if args.block_size is not None and args.block_size < 1:
        raise ValueError(f"--block-size must be positive, got {args.block_size}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    stream = args.stream or args.window is not None
    if stream and args.block_size is not None:
        raise ValueError(
            "--block-size is for block-by-block scoring; a stream (--stream, --window) reads the whole file"
        )
    if not stream and (args.sinks or args.chunk is not None):
        raise ValueError("--sinks and --chunk are for a stream: add --window W (or --stream)")
    model, tokenizer = resolve_model(args)
    if stream:
        options = dict(stream=True, window=args.window, sinks=args.sinks, chunk=args.chunk)
    else:
        options = dict(block_size=args.block_size, batch_size=args.batch_size)
    result = file_perplexity(model, tokenizer, args.file, **options)
    how = (
        f"one stream{'' if args.window is None else f', window {args.window}'}"
        f"{f' + {args.sinks} sinks' if args.sinks else ''}"
        if stream
        else f"context {result.block_size}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "file": args.file,
                    "tokens": result.tokens,
                    "loss": result.loss,
                    "perplexity": result.perplexity,
                    "block_size": result.block_size,
                    "window": args.window,
                    "sinks": args.sinks,
                    "stream": stream,
                }
            )
        )
    else:
        print(
            f"{args.file}: {result.tokens:,} tokens scored ({how}): "
            f"loss {result.loss:.4f} nats/token, perplexity {result.perplexity:.3f}, "
            f"{result.bits_per_token:.3f} bits/token"
        )
    return 0


def register(sub) -> None:
    p = sub.add_parser("perplexity", help="perplexity of a language model on a text file")
    add_model_options(p)
    p.add_argument("file", help="UTF-8 text file")
    p.add_argument("--block-size", type=int, metavar="N", help="context per block (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N")
    p.add_argument("--stream", action="store_true", help="read the file as one stream through a full KV cache")
    p.add_argument(
        "--window", type=int, metavar="W", help="one stream, keeping only the last W tokens (bounded memory)"
    )
    p.add_argument("--sinks", type=int, default=0, metavar="S", help="with --window: keep the first S tokens too")
    p.add_argument(
        "--chunk",
        type=int,
        metavar="N",
        help="tokens per model call in a stream (default: 1 with sinks, else the window)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_quantize(p)
    add_device(p)
    p.set_defaults(func=run)

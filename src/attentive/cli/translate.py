"""``attentive translate``: translate sentences with a trained checkpoint (beam or greedy).

Sentences come from the arguments, ``--file`` or standard input, one per line; translations
go to standard output (or ``--output``), one per line, in the same order. An empty line gets
an empty translation; a sentence longer than the model's ``max_len`` tokens is truncated with
a warning on standard error.
"""

from __future__ import annotations

import sys
import warnings

from ..device import resolve_device
from .common import add_device, read_inputs


def add_search_options(parser) -> None:
    parser.add_argument("--beam", type=int, help="beam size; 1 = greedy (default: the run's, else 4)")
    parser.add_argument("--alpha", type=float, help="GNMT length penalty exponent (default 0.6)")
    parser.add_argument("--max-len-b", type=int, help="output may be this many tokens longer than the source (50)")
    parser.add_argument("--batch-tokens", type=int, default=6000, help="source tokens per decoding batch")


def search_config(args, translator):
    from ..decode.search import SearchConfig

    saved = translator.info.get("search", {})
    return SearchConfig(
        beam_size=args.beam or saved.get("beam_size", 4),
        alpha=args.alpha if args.alpha is not None else saved.get("alpha", 0.6),
        max_len_b=args.max_len_b if args.max_len_b is not None else saved.get("max_len_b", 50),
    )


def load_translator(args):
    from ..decode.translator import Translator

    return Translator.from_checkpoint(args.checkpoint, device=resolve_device(args.device))


def run(args) -> int:
    translator = load_translator(args)
    texts = read_inputs(args.text, args.file)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *a, **k: print(f"warning: {message}", file=sys.stderr)
        outputs = translator.translate(texts, search_config(args, translator), batch_tokens=args.batch_tokens)
    text = "".join(o + "\n" for o in outputs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("translate", help="translate sentences with a trained translation checkpoint")
    p.add_argument("--checkpoint", required=True, help="checkpoint or run folder (config.json, model.safetensors, "
                                                      "tokenizer.json)")
    p.add_argument("text", nargs="*", help="sentences to translate (default: --file or standard input)")
    p.add_argument("--file", help="read sentences from this file, one per line")
    p.add_argument("--output", help="write translations here instead of standard output")
    add_search_options(p)
    add_device(p)
    p.set_defaults(func=run)

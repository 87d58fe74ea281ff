"""``attentive evaluate``: BLEU and chrF (sacreBLEU, signature printed) of a translation checkpoint
on a bundled Multi30k split or on user files (``--src`` and ``--ref``, aligned, plain or gzip)."""

from __future__ import annotations

import json

from .translate import add_search_options, load_translator, search_config
from .common import add_device


def run(args) -> int:
    from ..data.parallel import load_multi30k, read_parallel
    from ..evaluate.translation import evaluate_translator

    if bool(args.src) != bool(args.ref):
        raise ValueError("--src and --ref go together (source sentences and their reference translations)")
    translator = load_translator(args)
    if args.src:
        pairs = read_parallel(args.src, args.ref).pairs
        label = f"{args.src} -> {args.ref}"
    else:
        src_lang, tgt_lang = translator.info.get("src_lang", "de"), translator.info.get("tgt_lang", "en")
        pairs = load_multi30k(args.split, src_lang, tgt_lang)
        label = f"multi30k {args.split} ({src_lang}->{tgt_lang})"
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be positive, got {args.limit}")
        pairs = pairs[: args.limit]
    search = search_config(args, translator)
    scores = evaluate_translator(translator, [s for s, _ in pairs], [t for _, t in pairs], search,
                                 batch_tokens=args.batch_tokens)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in scores["hypotheses"]))
    mode = "greedy" if search.beam_size == 1 else f"beam {search.beam_size}, alpha {search.alpha}"
    if args.json:
        print(json.dumps({k: v for k, v in scores.items() if k != "hypotheses"} | {"sentences": len(pairs)}))
    else:
        print(f"{label}: {len(pairs)} sentences, {mode}")
        print(f"BLEU  {scores['bleu']:.2f}   {scores['bleu_signature']}")
        print(f"chrF  {scores['chrf']:.2f}   {scores['chrf_signature']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="BLEU and chrF of a translation checkpoint on a test set")
    p.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    p.add_argument("--split", default="test_2016_flickr",
                   help="bundled Multi30k split: test_2016_flickr (default), test_2017_flickr, val, train")
    p.add_argument("--src", help="source sentences file (with --ref instead of --split)")
    p.add_argument("--ref", help="reference translations file, aligned with --src")
    p.add_argument("--limit", type=int, help="score only the first N sentences")
    p.add_argument("--output", help="write the translations to this file")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    add_search_options(p)
    add_device(p)
    p.set_defaults(func=run)

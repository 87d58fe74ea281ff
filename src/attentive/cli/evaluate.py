"""``attentive evaluate``: BLEU and chrF (sacreBLEU, signature printed) of a translation model
on a bundled Multi30k split or on user files (``--src`` and ``--ref``, aligned, plain or gzip).

``--model`` takes any model spec. A translation model decodes with beam search (the run's
settings, or ``--beam``/``--alpha``); a chat language model (the SmolLM2 GGUF, a LoRA run
folder, ...) is sent each sentence as a user message, ``--prompt "Translate to English:
{source}"`` (a run folder's own prompt when it saved one), and its greedy reply is the
translation."""

from __future__ import annotations

import json
from contextlib import nullcontext

from .common import add_device, add_model
from .translate import (
    add_chat_options,
    add_search_options,
    chat_settings,
    check_chat_options,
    check_search_options,
    load_translation_model,
    search_config,
)


def _pairs(args, src_lang: str, tgt_lang: str) -> tuple[list[tuple[str, str]], str]:
    from ..data.parallel import load_multi30k, read_parallel

    if args.src:
        pairs, label = read_parallel(args.src, args.ref).pairs, f"{args.src} -> {args.ref}"
    else:
        pairs, label = load_multi30k(args.split, src_lang, tgt_lang), f"multi30k {args.split} ({src_lang}->{tgt_lang})"
    if args.limit is not None:
        pairs = pairs[: args.limit]
    return pairs, label


def _chat_model_scores(args, loaded) -> tuple[dict, list, str, str]:
    """(scores, pairs, label, mode) of a chat LM translating by instruction."""
    import torch

    from ..evaluate.chat_translation import evaluate_chat_translation

    chat = chat_settings(args, loaded)
    pairs, label = _pairs(args, chat["src_lang"], chat["tgt_lang"])
    device_type = next(loaded.model.parameters()).device.type
    bf16 = args.precision == "bf16"
    with torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext():
        scores = evaluate_chat_translation(
            loaded.model,
            loaded.tokenizer,
            [s for s, _ in pairs],
            [t for _, t in pairs],
            chat["prompt"],
            chat["system"],
            args.max_batch,
        )
    return scores, pairs, label, f"greedy chat replies to {chat['prompt']!r}, {args.precision}"


def _check(args) -> None:
    """Bad flags fail before any model loads."""
    check_search_options(args)
    check_chat_options(args)
    if bool(args.src) != bool(args.ref):
        raise ValueError("--src and --ref go together (source sentences and their reference translations)")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be positive, got {args.limit}")


def run(args) -> int:
    _check(args)
    loaded = load_translation_model(args)
    if loaded.translator is None:
        scores, pairs, label, mode = _chat_model_scores(args, loaded)
    else:
        from ..evaluate.translation import evaluate_translator

        translator = loaded.translator
        pairs, label = _pairs(args, translator.info.get("src_lang", "de"), translator.info.get("tgt_lang", "en"))
        search = search_config(args, translator)
        scores = evaluate_translator(
            translator, [s for s, _ in pairs], [t for _, t in pairs], search, batch_tokens=args.batch_tokens
        )
        mode = "greedy" if search.beam_size == 1 else f"beam {search.beam_size}, alpha {search.alpha}"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in scores["hypotheses"]))
    if args.json:
        print(json.dumps({k: v for k, v in scores.items() if k != "hypotheses"} | {"sentences": len(pairs)}))
    else:
        print(f"{label}: {len(pairs)} sentences, {mode}")
        print(f"BLEU  {scores['bleu']:.2f}   {scores['bleu_signature']}")
        print(f"chrF  {scores['chrf']:.2f}   {scores['chrf_signature']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="BLEU and chrF of a translation model (or a chat LM) on a test set")
    add_model(p, "translation run folder or checkpoint, or a chat language model")
    p.add_argument(
        "--split",
        default="test_2016_flickr",
        help="bundled Multi30k split: test_2016_flickr (default), test_2017_flickr, val, train",
    )
    p.add_argument("--src", help="source sentences file (with --ref instead of --split)")
    p.add_argument("--ref", help="reference translations file, aligned with --src")
    p.add_argument("--limit", type=int, help="score only the first N sentences")
    p.add_argument("--output", help="write the translations to this file")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    add_search_options(p)
    add_chat_options(p)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="chat model: fp32, or bf16 autocast (as the recipe's own final evaluation on a bf16 CPU)",
    )
    add_device(p)
    p.set_defaults(func=run)

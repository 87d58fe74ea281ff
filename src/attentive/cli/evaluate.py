"""``attentive evaluate``: BLEU and chrF (sacreBLEU, signature printed) of a translation checkpoint
on a bundled Multi30k split or on user files (``--src`` and ``--ref``, aligned, plain or gzip).

``--model PATH`` scores a chat language model instead (anything ``from_pretrained`` reads: the
SmolLM2 GGUF, a LoRA run folder, ...): each sentence is sent as a user message,
``--prompt "Translate to English: {source}"`` (a run folder's own prompt when it saved one), and
the greedy reply is the translation."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

from .translate import add_search_options, load_translator, search_config
from .common import add_device


def _pairs(args, src_lang: str, tgt_lang: str) -> tuple[list[tuple[str, str]], str]:
    from ..data.parallel import load_multi30k, read_parallel

    if bool(args.src) != bool(args.ref):
        raise ValueError("--src and --ref go together (source sentences and their reference translations)")
    if args.src:
        pairs, label = read_parallel(args.src, args.ref).pairs, f"{args.src} -> {args.ref}"
    else:
        pairs, label = load_multi30k(args.split, src_lang, tgt_lang), f"multi30k {args.split} ({src_lang}->{tgt_lang})"
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be positive, got {args.limit}")
        pairs = pairs[: args.limit]
    return pairs, label


def _chat_model_scores(args) -> tuple[dict, list, str, str]:
    """(scores, pairs, label, mode) of a chat LM translating by instruction."""
    import torch

    from ..device import resolve_device
    from ..evaluate.chat_translation import DEFAULT_PROMPT, evaluate_chat_translation
    from ..interop.pretrained import load_for
    from ..tasks.chat_translation import CHAT_TRANSLATION_FILE

    saved_file = Path(args.model) / CHAT_TRANSLATION_FILE
    saved = json.loads(saved_file.read_text(encoding="utf-8")) if saved_file.is_file() else {}
    device = resolve_device(args.device)
    pre = load_for("decoder-lm", args.model, device=device)
    pairs, label = _pairs(args, saved.get("src_lang", "de"), saved.get("tgt_lang", "en"))
    prompt = args.prompt or saved.get("prompt") or DEFAULT_PROMPT
    system = args.system if args.system is not None else saved.get("system")
    bf16 = args.precision == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
        scores = evaluate_chat_translation(pre.model, pre.tokenizer, [s for s, _ in pairs], [t for _, t in pairs],
                                           prompt, system, args.max_batch)
    return scores, pairs, label, f"greedy chat replies to {prompt!r}, {args.precision}"


def run(args) -> int:
    if bool(args.checkpoint) == bool(args.model):
        raise ValueError("give --checkpoint DIR (a translation model) or --model PATH (a chat language model)")
    if args.model:
        scores, pairs, label, mode = _chat_model_scores(args)
    else:
        from ..evaluate.translation import evaluate_translator

        translator = load_translator(args)
        pairs, label = _pairs(args, translator.info.get("src_lang", "de"), translator.info.get("tgt_lang", "en"))
        search = search_config(args, translator)
        scores = evaluate_translator(translator, [s for s, _ in pairs], [t for _, t in pairs], search,
                                     batch_tokens=args.batch_tokens)
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
    p = sub.add_parser("evaluate", help="BLEU and chrF of a translation checkpoint (or a chat LM) on a test set")
    p.add_argument("--checkpoint", help="translation checkpoint or run folder")
    p.add_argument("--model", metavar="PATH", help="a chat language model instead (GGUF, LoRA run folder, ...)")
    p.add_argument("--split", default="test_2016_flickr",
                   help="bundled Multi30k split: test_2016_flickr (default), test_2017_flickr, val, train")
    p.add_argument("--src", help="source sentences file (with --ref instead of --split)")
    p.add_argument("--ref", help="reference translations file, aligned with --src")
    p.add_argument("--limit", type=int, help="score only the first N sentences")
    p.add_argument("--output", help="write the translations to this file")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    add_search_options(p)
    p.add_argument("--prompt", help="--model: the user message, {source} is the sentence "
                   "(default: the run's, else 'Translate to English: {source}')")
    p.add_argument("--system", help="--model: a system message (default: the run's, else the chat template's)")
    p.add_argument("--max-batch", type=int, default=32, help="--model: sentences decoded at once (default 32)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="--model: fp32, or bf16 autocast (as the recipe's own final evaluation on a bf16 CPU)")
    add_device(p)
    p.set_defaults(func=run)

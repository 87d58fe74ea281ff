"""``attentive translate``: translate sentences with a translation model (beam or greedy), or
with a chat language model by instruction.

    attentive translate --model runs/multi30k-de-en "Ein Hund rennt durch den Park."
    attentive translate --model smollm2 "Ein Hund rennt durch den Park."   # a chat LM: its greedy reply

Sentences come from the arguments, ``--file`` or standard input, one per line; translations
go to standard output (or ``--output``), one per line, in the same order. An empty line gets
an empty translation; a sentence longer than the model's ``max_len`` tokens is truncated with
a warning on standard error. A chat model is sent each sentence as a user message
(``--prompt``, the run's own when a chat-translation run saved one).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from .common import add_device, add_model, load_model, read_inputs

FAMILIES = ("encoder-decoder", "decoder-lm")  # a translation model, or a chat LM translating by instruction


def add_search_options(parser) -> None:
    parser.add_argument("--beam", type=int, help="beam size; 1 = greedy (default: the run's, else 4)")
    parser.add_argument("--alpha", type=float, help="GNMT length penalty exponent (default 0.6)")
    parser.add_argument("--max-len-b", type=int, help="output may be this many tokens longer than the source (50)")
    parser.add_argument("--batch-tokens", type=int, default=6000, help="source tokens per decoding batch")


def check_search_options(args) -> None:
    """Refuse bad search flags before any model loads (one line naming the flag)."""
    if args.beam is not None and args.beam < 1:
        raise ValueError(f"--beam must be at least 1 (1 = greedy), got {args.beam}")
    if args.alpha is not None and args.alpha < 0:
        raise ValueError(f"--alpha (length penalty) must be >= 0, got {args.alpha}")
    if args.max_len_b is not None and args.max_len_b < 0:
        raise ValueError(f"--max-len-b must be >= 0, got {args.max_len_b}")
    if args.batch_tokens < 1:
        raise ValueError(f"--batch-tokens must be a positive number of source tokens, got {args.batch_tokens}")


def search_config(args, translator):
    """The run's saved search settings with the flags that were given."""
    return translator.search_config(args.beam, args.alpha, args.max_len_b)


def add_chat_options(parser) -> None:
    """How a chat language model is asked to translate."""
    parser.add_argument(
        "--prompt",
        help="chat model: the user message, {source} is the sentence "
        "(default: the run's, else 'Translate to English: {source}')",
    )
    parser.add_argument("--system", help="chat model: a system message (default: the run's, else the template's)")
    parser.add_argument("--max-batch", type=int, default=32, help="chat model: sentences decoded at once (default 32)")


def load_translation_model(args, families: tuple[str, ...] = FAMILIES, **options):
    """The ``Pretrained`` ``--model`` names: a translation model (``.translator``) or a chat LM."""
    if not args.model:
        raise ValueError(
            "give --model SPEC: a translation run folder (e.g. runs/multi30k-de-en) or a chat "
            "language model (e.g. smollm2)"
        )
    loaded = load_model(args, families, **options)
    if loaded.kind == "encoder-decoder" and loaded.translator is None:
        raise ValueError(f"{args.model} has no tokenizer.json; a translation model needs its tokenizer to read text")
    if loaded.kind == "decoder-lm" and not getattr(loaded.tokenizer, "chat_template", None):
        raise ValueError(
            f"{args.model} is a language model without a chat template; translating needs a "
            f"translation model or a chat model"
        )
    return loaded


def load_translator(args):
    """The ``Translator`` of a translation model (commands that show its beams or attention: the
    plain model, whose attention weights are read layer by layer)."""
    return load_translation_model(args, ("encoder-decoder",), optimize=False).translator


def chat_settings(args, loaded) -> dict:
    """A chat model's prompt, system message and language pair: the flags, else what its run saved."""
    from ..evaluate.chat_translation import DEFAULT_PROMPT
    from ..tasks.chat_translation import CHAT_TRANSLATION_FILE

    saved_file = Path(loaded.source) / CHAT_TRANSLATION_FILE
    saved = json.loads(saved_file.read_text(encoding="utf-8")) if saved_file.is_file() else {}
    return {
        "prompt": args.prompt or saved.get("prompt") or DEFAULT_PROMPT,
        "system": args.system if args.system is not None else saved.get("system"),
        "src_lang": saved.get("src_lang", "de"),
        "tgt_lang": saved.get("tgt_lang", "en"),
    }


def check_chat_options(args) -> None:
    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be a positive number of sentences, got {args.max_batch}")
    if args.prompt is not None and "{source}" not in args.prompt:
        raise ValueError(f"--prompt {args.prompt!r} has no {{source}} placeholder for the sentence")


def run(args) -> int:
    check_search_options(args)
    check_chat_options(args)
    loaded = load_translation_model(args)
    texts = read_inputs(args.text, args.file)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *a, **k: print(f"warning: {message}", file=sys.stderr)
        if loaded.translator is not None:
            translator = loaded.translator
            outputs = translator.translate(texts, search_config(args, translator), batch_tokens=args.batch_tokens)
        else:
            from ..evaluate.chat_translation import chat_translate

            chat = chat_settings(args, loaded)
            outputs = chat_translate(
                loaded.model, loaded.tokenizer, texts, chat["prompt"], chat["system"], args.max_batch
            )
    text = "".join(o + "\n" for o in outputs)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("translate", help="translate sentences with a translation model (or a chat LM)")
    add_model(p, "translation run folder or checkpoint, or a chat language model")
    p.add_argument("text", nargs="*", help="sentences to translate (default: --file or standard input)")
    p.add_argument("--file", help="read sentences from this file, one per line")
    p.add_argument("--output", help="write translations here instead of standard output")
    add_search_options(p)
    add_chat_options(p)
    add_device(p)
    p.set_defaults(func=run)

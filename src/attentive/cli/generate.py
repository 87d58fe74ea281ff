"""``attentive generate``: continue a prompt with a language model, streaming text to stdout.

    attentive generate --model runs/shakespeare-char "ROMEO:" --max-new-tokens 300 --seed 1
    attentive generate --model smollm2 --chat "What is the capital of France?"
    attentive generate --model smollm2 "Once upon a time" --max-new-tokens 20000 --window 1024 --sinks 4
    attentive generate --model path/to/model.gguf "Once upon a time"    # fast by default on CPU
    attentive generate --model path/to/model.gguf --plain "Once upon a time"  # the reference path

An empty prompt starts from BOS. A prompt longer than the model's context is left-truncated
(a warning says so). Sampling settings that make no sense are rejected before the model loads.
"""

from __future__ import annotations

import argparse

import sys
import warnings

from ..decode import CACHES, EngineConfig, GenerationConfig, generate
from .common import MODEL_HELP, add_device, add_model, add_quantize, load_model, rope_scaling_arg


def add_model_options(p) -> None:
    """Where the language model comes from (``--model SPEC``), and how to read it."""
    add_model(p, "language model (decoder-lm)")
    p.add_argument("--chat", action="store_true", help="the prompt is a user message: apply the model's chat template")
    p.add_argument("--system", metavar="TEXT", help="system message for --chat (default: the template's own)")
    p.add_argument(
        "--rope-scaling",
        metavar="SPEC",
        help="RoPE scaling as Hugging Face's rope_scaling: JSON or rope_type=yarn,factor=2 "
        "(linear, dynamic, yarn, llama3); replaces the model's own",
    )


def resolve_model(args):
    """(model, tokenizer) of the language model ``--model`` names."""
    if not args.model:
        raise ValueError(f"give --model SPEC: {MODEL_HELP}")
    scaling = getattr(args, "rope_scaling", None)
    options = {"rope_scaling": rope_scaling_arg(scaling)} if scaling is not None else {}
    loaded = load_model(args, "decoder-lm", **options)
    if loaded.tokenizer is None:
        raise ValueError(f"{args.model} has no tokenizer (tokenizer.json); a language model needs one to read text")
    return loaded.model, loaded.tokenizer


def _temperature(args) -> float:
    """--temperature if given; else 0.8, or greedy for --chat (a small model's answers drift when sampled)."""
    if args.temperature is not None:
        return args.temperature
    return 0.0 if getattr(args, "chat", False) else 0.8


def generation_config(args) -> tuple[GenerationConfig, EngineConfig]:
    """The request settings (sampling, stops) and the engine's (cache, context, window) from the
    flags; nonsensical values raise ValueError with the reason."""
    request = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=0.0 if args.greedy else _temperature(args),
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        stop_strings=tuple(args.stop or ()),
        seed=args.seed,
    )
    compile = "auto" if args.compile is None else args.compile
    cache, compile = ("dynamic", False) if getattr(args, "plain", False) else (args.cache, compile)
    engine = EngineConfig(cache=cache, compile=compile, context=args.context, window=args.window, sinks=args.sinks)
    return request, engine


def _warn_to_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, DeprecationWarning):  # libraries' notes to their developers (torch.compile's own)
        return
    print(f"attentive generate: warning: {message}", file=sys.stderr)


def run(args) -> int:
    config, engine = generation_config(args)  # reject bad values before loading anything
    model, tokenizer = resolve_model(args)
    prompt = args.prompt
    if getattr(args, "chat", False):  # the reply to one user message, via the model's chat template
        from ..text.chat import chat_prompt

        if not hasattr(tokenizer, "apply_chat_template"):
            raise ValueError(f"--chat needs a model with a chat template; {args.model} has none")
        prompt, args.echo = chat_prompt(tokenizer, args.prompt, args.system), False
    out = sys.stdout
    if args.echo:
        out.write(args.prompt)
        out.flush()

    def show(row: int, piece: str) -> None:
        out.write(piece)
        out.flush()

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _warn_to_stderr
        result = generate(model, tokenizer, prompt, config, engine=engine, on_text=show)
    out.write("\n")
    if args.verbose:
        print(f"[{len(result.tokens[0])} tokens, stopped by {result.finish_reasons[0]}]", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a language model, streaming the text")
    add_model_options(p)
    p.add_argument("prompt", nargs="?", default="", help="text to continue (default: empty, start from BOS)")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="N")
    p.add_argument("--temperature", type=float, metavar="T", help="0 = greedy (default 0.8; 0 with --chat)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--top-k", type=int, metavar="K", help="sample among the K most likely tokens")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass in (0, 1]")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="> 1 discourages repeats")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop when this text appears (repeatable)")
    p.add_argument("--seed", type=int, metavar="S", help="seed for reproducible sampling")
    p.add_argument(
        "--cache",
        choices=CACHES,
        default="auto",
        help="KV cache kind (default auto: slots for a model prepared for CPU decoding, else dynamic)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the decode step (slots or static cache; default: when the batch decodes enough "
        "tokens to earn the compile back, cached on disk)",
    )
    p.add_argument("--context", type=int, metavar="N", help="tokens the model sees at most (default: its max_len)")
    p.add_argument(
        "--window",
        type=int,
        metavar="W",
        help="stream: keep only the last W tokens' keys and values "
        "(bounded memory, positions within the cache; runs past the context)",
    )
    p.add_argument(
        "--sinks",
        type=int,
        default=0,
        metavar="S",
        help="with --window: also keep the first S tokens (attention sinks, StreamingLLM; 4 is the paper's choice)",
    )
    add_quantize(p)
    p.add_argument("--no-echo", dest="echo", action="store_false", help="print only the continuation")
    p.add_argument("--verbose", action="store_true", help="report token count and why generation stopped")
    add_device(p)
    p.set_defaults(func=run)

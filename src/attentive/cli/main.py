"""``attentive`` entry point: collects the subcommands and turns library errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys

from . import (
    attention,
    average,
    bench,
    classify,
    embed,
    evaluate,
    explore,
    export,
    generate,
    merge,
    models,
    perplexity,
    presets,
    recipes,
    rl,
    serve,
    train,
    transcribe,
    translate,
)

# Each module defines ``register(subparsers)`` adding its command with ``set_defaults(func=...)``.
COMMANDS = (
    models,
    presets,
    recipes,
    train,
    translate,
    evaluate,
    average,
    attention,
    generate,
    perplexity,
    embed,
    transcribe,
    classify,
    rl,
    merge,
    export,
    serve,
    explore,
    bench,
)
# What a command may raise for bad input (a missing file, a wrong value): one line, exit code 2.
# Anything else (TypeError, AttributeError, ...) is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attentive",
        description="The Transformer from its parts: train, translate, generate, classify, and look inside.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    for command in sub.choices.values():  # every command takes --debug
        command.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    return parser


def _show_progress_messages() -> None:
    """The library reports progress through ``logging`` (BLEU lines, averaging); show it on stderr."""
    logger = logging.getLogger("attentive")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _show_progress_messages()
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"attentive {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

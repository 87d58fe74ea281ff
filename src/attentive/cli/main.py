"""``attentive`` entry point: collects the subcommands and turns library errors into one line."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# Each module defines ``register(subparsers)`` adding its command with ``set_defaults(func=...)``.
COMMAND_MODULES = (
    "presets", "train", "translate", "evaluate", "average", "attention",
    "generate", "perplexity", "embed", "transcribe", "classify", "rl", "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attentive",
        description="The Transformer from its parts: train, translate, generate, classify, and look inside.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"attentive.cli.{name}"
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, OSError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"attentive {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

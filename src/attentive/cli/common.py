"""Options and helpers that several commands share."""

from __future__ import annotations

from pathlib import Path

import torch

from ..device import DEVICE_CHOICES
from ..interop.bundled import short_names


def add_device(parser) -> None:
    parser.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default: auto)")


def add_quantize(parser) -> None:
    parser.add_argument(
        "--quantize",
        choices=("fp32", "int8", "int4"),
        help="CPU inference: int8 / int4 weight-only or fp32, each with fused projections and the "
        "panel kernels (default on CPU: the file's own precision, a GGUF's Q4_1 / Q8_0 blocks kept)",
    )


MODEL_HELP = (
    "a run folder or checkpoint, a GGUF file, a Hugging Face or CTranslate2 folder, a bundled model "
    f"({short_names()}: see `attentive models`) or a hub id"
)


def add_model(parser, what: str, *, required: bool = False, default: str | None = None) -> None:
    """``--model SPEC`` (also spelled ``--checkpoint``): the same specs in every command."""
    tail = f" (default: the bundled {default})" if default else ""
    parser.add_argument(
        "--model", "--checkpoint", dest="model", metavar="SPEC", required=required, help=f"{what}: {MODEL_HELP}{tail}"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="the plain model (optimize=False): not prepared for CPU decoding, dynamic cache, nothing "
        "compiled; the reference path the fast default is tested against",
    )


def load_model(args, family: str | tuple[str, ...], **options):
    """The ``Pretrained`` that ``--model`` names (``attentive.from_pretrained``), on ``--device``,
    checked to be of ``family``; ``options`` go to ``from_pretrained`` (quantize, rope_scaling, ...)."""
    from ..interop.resolve import from_pretrained

    if getattr(args, "quantize", None) is not None:
        options.setdefault("quantize", args.quantize)
    if getattr(args, "plain", False):
        if options.get("quantize") is not None:
            raise ValueError(
                f"--plain loads the model as it is; --quantize {options['quantize']} prepares it: give one"
            )
        options["optimize"] = False
    return from_pretrained(args.model, family=family, device=device_for(args), **options)


def device_for(args) -> torch.device:
    """``--device``, where ``auto`` means the CPU when ``--quantize`` asks for the CPU kernels."""
    from ..device import resolve_device

    if getattr(args, "quantize", None):
        if args.device not in ("auto", "cpu"):
            raise ValueError(f"--quantize runs on the CPU; got --device {args.device}")
        return torch.device("cpu")
    return resolve_device(args.device)


def rope_scaling_arg(text: str) -> dict:
    """``--rope-scaling``: Hugging Face's rope_scaling as JSON (``'{"rope_type": "yarn", "factor": 2}'``)
    or as ``rope_type=yarn,factor=2`` (numbers parsed); checked when the model is built."""
    import json

    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--rope-scaling {text!r} is not valid JSON ({err.msg})") from None
        if not isinstance(value, dict):
            raise ValueError(f"--rope-scaling must be a JSON object, got {text!r}")
        return value
    value: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--rope-scaling {text!r}: expected key=value pairs like rope_type=yarn,factor=2")
        value[key.strip()] = _number(raw.strip())
    return value


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def read_inputs(texts: list[str], file: str | None) -> list[str]:
    """Sentences from arguments, a file, or standard input (one per line)."""
    import sys

    if texts:
        return texts
    if file:
        return Path(file).read_text(encoding="utf-8").splitlines()
    if sys.stdin.isatty():
        raise ValueError("give the text as arguments, with --file, or on standard input")
    return sys.stdin.read().splitlines()

"""``key=value`` settings from the command line, routed to the config that has the field and
parsed by that field's type.

One routing order for every recipe: model, data, optimiser, trainer (the first config with a
field of that name takes it). A key no config has is an error listing the valid keys; a value
that does not parse as its field's type is an error naming the key and the type expected
(``lr=abc`` -> "lr=abc: expected a float (OptimConfig.lr)").
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from typing import Any, Union

NONE_WORDS = ("none", "null")
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["d_model=256", "lr=1e-3"]`` -> ``{"d_model": "256", "lr": "1e-3"}`` (values stay text)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"setting {item!r} is not of the form key=value")
        key = key.strip()
        if key in out:
            raise ValueError(f"setting {key!r} is given twice ({key}={out[key]} and {item})")
        out[key] = value.strip()
    return out


def route_overrides(overrides: dict[str, Any], targets: list[Any]) -> list[dict[str, Any]]:
    """Split ``overrides`` over ``targets`` (dataclass instances, in routing order), each value
    parsed by its field's type. Returns one dict of typed values per target."""
    routed: list[dict[str, Any]] = [{} for _ in targets]
    owners = [(target, _settable(target), _hints(target)) for target in targets]
    for key, value in overrides.items():
        for i, (target, fields, hints) in enumerate(owners):
            if key in fields:
                routed[i][key] = parse_field(value, hints.get(key, Any), f"{type(target).__name__}.{key}", key)
                break
        else:
            valid = sorted({name for _, fields, _ in owners for name in fields if not name.startswith("_")})
            raise ValueError(f"unknown setting {key!r}; valid settings: {', '.join(valid)}")
    return routed


def _settable(target: Any) -> dict[str, dataclasses.Field]:
    """A config's fields that take a value; a nested config (``TrainConfig.optim``) is a target of
    its own, not a setting."""
    return {f.name: f for f in dataclasses.fields(target) if not dataclasses.is_dataclass(getattr(target, f.name))}


def parse_field(value: Any, hint: Any, owner: str, key: str) -> Any:
    """``value`` (text from the command line, or an already typed value) as type ``hint``."""
    try:
        return _parse(value, hint)
    except (ValueError, SyntaxError, TypeError):
        shown = value if isinstance(value, str) else repr(value)
        raise ValueError(f"{key}={shown}: expected {describe(hint)} ({owner})") from None


def describe(hint: Any) -> str:
    """A type as words: ``float | None`` -> 'a float or none'."""
    args = typing.get_args(hint)
    if _is_union(hint):
        words = [describe(a) for a in args if a is not type(None)]
        if type(None) in args:
            words.append("none")
        return " or ".join(words)
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        inner = describe(args[0]) if args else "a value"
        return f"a comma-separated list of {inner.removeprefix('a ').removeprefix('an ')}s"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    return {int: "an integer", float: "a float", bool: "true or false", str: "text"}.get(hint, "a value")


# ----------------------------------------------------------------------------- parsing


def _hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(type(target))
    except (NameError, TypeError):  # an annotation that cannot be resolved: accept literals for it
        return {}


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _parse(value: Any, hint: Any) -> Any:
    if hint is Any:
        return _literal(value) if isinstance(value, str) else value
    if _is_union(hint):
        args = typing.get_args(hint)
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in NONE_WORDS)):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse(value, arg)
            except (ValueError, SyntaxError, TypeError):
                continue
        raise ValueError(value)
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        items = _sequence(value)
        args = [a for a in typing.get_args(hint) if a is not Ellipsis] or [Any]
        if origin is tuple and Ellipsis not in typing.get_args(hint) and len(args) != len(items) and len(args) > 1:
            raise ValueError(value)
        parsed = [_parse(item, args[min(i, len(args) - 1)]) for i, item in enumerate(items)]
        return tuple(parsed) if origin is tuple else parsed
    if origin is typing.Literal:
        for choice in typing.get_args(hint):
            if str(choice) == str(value):
                return choice
        raise ValueError(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE_WORDS + FALSE_WORDS:
            return value.lower() in TRUE_WORDS
        raise ValueError(value)
    if hint is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int):
            return value
        number = float(str(value).replace("_", ""))  # '1e6' and '1_000' are integers too
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    return _literal(value) if isinstance(value, str) else value


def _sequence(value: Any) -> list[Any]:
    """'0.9,0.98', '(0.9, 0.98)', '[1, 2]' or a sequence -> a list of items."""
    if isinstance(value, (list, tuple)):
        return list(value)
    text = str(value).strip()
    if text[:1] in "([" and text[-1:] in ")]":
        text = text[1:-1]
    return [part.strip() for part in text.split(",") if part.strip()]


def _literal(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in NONE_WORDS:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text

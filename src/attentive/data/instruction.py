"""Instruction data: JSON Lines of conversations or prompt/completion pairs, checked line by line.

One example per line, either form::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}, ...]}
    {"prompt": "...", "completion": "..."}

A line that is not JSON, lacks both forms, has a malformed message, or holds a conversation with
no assistant turn (nothing to learn from) stops reading with the file and line named. Blank
lines are skipped. ``pack`` groups examples into rows of at most ``max_len`` tokens for
sequence packing.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass
from pathlib import Path

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Example:
    """One training example: a conversation (``messages``) or a ``prompt`` with its ``completion``."""

    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    completion: str | None = None
    origin: str = ""  # "file:line", for error messages

    @classmethod
    def chat(cls, *turns: tuple[str, str], origin: str = "") -> Example:
        """``Example.chat(("user", "Hi"), ("assistant", "Hello"))``."""
        return cls(messages=tuple({"role": r, "content": c} for r, c in turns), origin=origin)

    def as_messages(self) -> list[dict[str, str]]:
        """The conversation; a prompt/completion pair is one user turn and one assistant turn."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.completion}]


def example_from_json(record, origin: str) -> Example:
    """Validate one parsed line; every problem is a ValueError starting with ``origin``."""
    if not isinstance(record, dict):
        raise ValueError(f"{origin}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f'{origin}: \'messages\' must be a non-empty list of {{"role", "content"}} objects')
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(
                    f"{origin}: message {i} must be an object with a role in {ROLES} and a text "
                    f"content, got {_short(m)}"
                )
        for i, m in enumerate(messages):
            _check_unicode(m["content"], f"{origin}: message {i}")
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError(f"{origin}: the conversation has no assistant turn (nothing to learn from)")
        return Example(messages=tuple({"role": m["role"], "content": m["content"]} for m in messages), origin=origin)
    if "prompt" in record and "completion" in record:
        if not isinstance(record["prompt"], str) or not isinstance(record["completion"], str):
            raise ValueError(f"{origin}: 'prompt' and 'completion' must be text")
        _check_unicode(record["prompt"], f"{origin}: 'prompt'")
        _check_unicode(record["completion"], f"{origin}: 'completion'")
        if not record["completion"]:
            raise ValueError(f"{origin}: the completion is empty (nothing to learn from)")
        return Example(prompt=record["prompt"], completion=record["completion"], origin=origin)
    raise ValueError(
        f"{origin}: expected 'messages' (a conversation) or 'prompt' and 'completion'; "
        f"the object has {sorted(record) or 'no keys'}"
    )


def _short(value) -> str:
    """A bad value for an error message: cut short, whatever its size or depth."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 60, 60
    return short.repr(value)[:80]


def _check_unicode(text: str, where: str) -> None:
    """JSON can spell a lone surrogate (``"\\ud800"``), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where} is not valid Unicode text ({text[err.start]!r} at character {err.start})") from None


def read_examples(path: str | Path) -> list[Example]:
    """Every example of a JSONL file (UTF-8); the first bad line is an error naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"instruction data file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start})") from None
    examples = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        origin = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{origin}: not valid JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise ValueError(f"{origin}: not valid JSON (nested too deeply)") from None
        examples.append(example_from_json(record, origin))
    if not examples:
        raise ValueError(f"{path}: no examples (an empty file)")
    return examples


def pack(lengths: list[int], order: list[int], max_len: int) -> list[list[int]]:
    """Example indices grouped into rows of at most ``max_len`` tokens, in ``order`` (next fit:
    a row is closed when the next example does not fit). Every length must be <= ``max_len``."""
    rows: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        if lengths[i] > max_len:
            raise ValueError(f"example {i} has {lengths[i]} tokens, more than a row's {max_len}")
        if current and used + lengths[i] > max_len:
            rows.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        rows.append(current)
    return rows

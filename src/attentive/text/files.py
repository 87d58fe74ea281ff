"""The small JSON files of a pretrained folder, read with one-line errors.

A Hugging Face folder describes itself in JSON (``tokenizer_config.json``, ``config.json``,
``generation_config.json``, ...), and libraries raise multi-line messages; ``read_json`` names the
file that is not JSON and ``first_line`` keeps an error to one line. The tokenizer wrapper, the chat
templates and ``interop``'s readers share them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({first_line(err)})") from None
    except RecursionError:  # [[[[...]]]] 100,000 deep: more than Python's parser can nest
        raise ValueError(f"{path} is not valid JSON (nested too deeply)") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """``read_json`` for a file that must hold one JSON object (every config file does)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def parse_json(text: str, source: Any) -> Any:
    """``json.loads`` with a one-line ValueError ``"{source}: not valid JSON (...)"``, for bad JSON
    and for JSON nested too deeply for Python's parser."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({first_line(err)})") from None
    except RecursionError:
        raise ValueError(f"{source}: not valid JSON (nested too deeply)") from None


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

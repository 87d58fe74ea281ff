"""Figures read from result files: the one place a measured number is written down.

A benchmark or a recipe run writes a result file (JSON). The README, the documentation site,
a recipe's listing in ``attentive recipes`` and the "targets" tables read their numbers from
those files through this module, so a figure is typed once, by the program that measured it.

A result file is any JSON object; a figure is named by a *path* into it:

    rows[name=Q4_1 pp512 llama.cpp].rate     a list of objects, the one whose ``name`` matches
    tables.speed.rows[2][3]                   keys and list indices
    a / b                                     the ratio of two paths (speed-ups)

and formatted by a ``str.format`` pattern (``{:.2f}x``). The provenance of a file (command,
commit, date, machine, torch) is found where the project's writers put it (``stamp``).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

_STEP = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


class FigureError(LookupError):
    """A figure that cannot be read: the file, the path and what was found instead."""


@lru_cache(maxsize=None)
def _load(path: str, mtime: float) -> dict:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise FigureError(f"{path}: a result file holds a JSON object, got {type(data).__name__}")
    return data


def load(path: str | Path) -> dict:
    """The result file at ``path`` (cached until it changes)."""
    path = Path(path)
    if not path.is_file():
        raise FigureError(f"{path}: no such result file")
    return _load(str(path.resolve()), path.stat().st_mtime)


def _steps(path: str) -> list[str | int | tuple[str, str]]:
    steps: list[str | int | tuple[str, str]] = []
    pos = 0
    path = path.strip()
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        match = _STEP.match(path, pos)
        if not match:
            raise FigureError(f"cannot parse figure path {path!r} at {path[pos:]!r}")
        bracket, key = match.groups()
        if key is not None:
            steps.append(key)
        elif re.fullmatch(r"-?\d+", bracket.strip()):
            steps.append(int(bracket))
        elif "=" in bracket:
            field, _, wanted = bracket.partition("=")
            steps.append((field.strip(), wanted.strip()))
        else:
            steps.append(bracket.strip().strip("'\""))
        pos = match.end()
    return steps


def lookup(data: Any, path: str) -> Any:
    """The value at ``path`` in ``data`` (see the module's docstring); ``a / b`` divides two paths."""
    if " / " in path:
        top, bottom = (lookup(data, part) for part in path.split(" / ", 1))
        if not isinstance(top, (int, float)) or not isinstance(bottom, (int, float)) or not bottom:
            raise FigureError(f"{path!r}: cannot divide {top!r} by {bottom!r}")
        return top / bottom
    value = data
    walked = ""
    for step in _steps(path):
        if isinstance(step, tuple):
            field, wanted = step
            if not isinstance(value, list):
                raise FigureError(f"{walked or 'the file'} is not a list, cannot select [{field}={wanted}]")
            found = [item for item in value if isinstance(item, dict) and str(item.get(field)) == wanted]
            if len(found) != 1:
                names = [item.get(field) for item in value if isinstance(item, dict)]
                raise FigureError(f"{walked}[{field}={wanted}]: {len(found)} matches among {names}")
            value = found[0]
        elif isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                raise FigureError(f"{walked}[{step}]: out of range or not a list")
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                keys = sorted(value) if isinstance(value, dict) else type(value).__name__
                raise FigureError(f"{walked}.{step}: not found; there is {keys}")
            value = value[step]
        walked += f".{step}" if isinstance(step, str) else f"[{step}]"
    return value


def format_value(value: Any, pattern: str | None = None) -> str:
    """``value`` through ``pattern`` (``{:.2f}x``); numbers get thousands separators by default."""
    if pattern:
        return pattern.format(value)
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def figure(path: str | Path, figure_path: str, pattern: str | None = None) -> str:
    """One formatted figure from one result file."""
    return format_value(lookup(load(path), figure_path), pattern)


def table(data: dict, path: str) -> str:
    """A Markdown table from ``{"columns": [...], "rows": [[...], ...], "formats": [...]}`` at ``path``.

    ``formats`` (optional, one per column, ``None`` to keep a cell as written) formats numbers,
    so a file keeps full precision and the page shows what it needs.
    """
    spec = lookup(data, path)
    if not isinstance(spec, dict) or "columns" not in spec or "rows" not in spec:
        raise FigureError(f"{path}: a table is an object with 'columns' and 'rows'")
    columns = spec["columns"]
    formats = spec.get("formats") or [None] * len(columns)
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    for row in spec["rows"]:
        if len(row) != len(columns):
            raise FigureError(f"{path}: row {row!r} has {len(row)} cells for {len(columns)} columns")
        cells = [
            "" if cell is None else format_value(cell, fmt) if isinstance(cell, (int, float)) else str(cell)
            for cell, fmt in zip(row, formats)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _first(data: dict, *paths: str) -> Any:
    for path in paths:
        try:
            value = lookup(data, path)
        except FigureError:
            continue
        if value not in (None, ""):
            return value
    return None


def provenance(data: dict) -> dict[str, Any]:
    """Command, commit, date, machine and torch of a result file, wherever its writer put them."""
    machine = _first(data, "machine", "config.environment.machine", "environment.machine", "device")
    if isinstance(machine, dict):
        cpu = machine.get("cpu") or machine.get("name") or ""
        cores = machine.get("cores")
        gpu = machine.get("gpu")
        machine = gpu or (f"{cpu}, {cores} cores" if cores else cpu)
    date = _first(data, "date", "machine.date", "config.environment.machine.date")
    return {
        "command": _first(data, "command", "config.environment.command", "environment.command"),
        "commit": _first(data, "commit", "config.environment.attentive_commit", "environment.attentive_commit"),
        "date": str(date)[:10] if date else None,
        "machine": machine,
        "torch": _first(data, "torch", "machine.torch", "config.environment.machine.torch"),
    }


def stamp(data: dict, source: str | None = None) -> str:
    """One line saying where a table's numbers come from (Markdown)."""
    p = provenance(data)
    parts = []
    if p["date"]:
        parts.append(f"measured {p['date']}")
    if p["machine"]:
        parts.append(str(p["machine"]))
    if p["torch"]:
        parts.append(f"torch {p['torch']}")
    if p["commit"]:
        commit = str(p["commit"])
        parts.append(f"commit `{commit[:12]}{'-dirty' if commit.endswith('-dirty') and len(commit) > 18 else ''}`")
    if p["command"]:
        parts.append(f"`{p['command']}`")
    if source:
        parts.append(f"from `{source}`")
    return "<sub>" + " · ".join(parts) + "</sub>"

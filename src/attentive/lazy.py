"""Lazy tables: a registry names where each entry lives as ``"module.path:attribute"`` and imports
it on first use, so the table's module never imports the modules it lists (they may import it).

Used by the model families and presets (``config``), the tokenizer kinds (``text.tokenizer``) and
the recipes (``recipes.catalogue``).
"""

from __future__ import annotations

import importlib
from typing import Any

_MISSING = object()


def entry(where: str, default: Any = _MISSING) -> Any:
    """The object ``"module.path:attribute"`` names, importing the module; a missing attribute
    is ``default`` when one is given, else AttributeError."""
    module, _, attribute = where.partition(":")
    found = importlib.import_module(module)
    return getattr(found, attribute) if default is _MISSING else getattr(found, attribute, default)

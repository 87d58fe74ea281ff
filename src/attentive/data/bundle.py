"""The data files shipped inside the package, under ``attentive/data/bundled/``.

Found with ``importlib.resources`` so they work from a source tree or an installed wheel. A
module of its own (not the package's ``__init__``) so that the readers which use it import it
without importing the package that re-exports them.
"""

from __future__ import annotations

from importlib.resources import files

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

__all__ = ["Traversable", "bundled_file"]


def bundled_file(*parts: str) -> Traversable:
    """A bundled data file, e.g. ``bundled_file("multi30k", "train.de.gz")``.

    Returns a ``Traversable`` (a ``Path`` in a normal install); read it with
    ``read_bytes()``/``open()``.
    """
    resource = files(__package__).joinpath("bundled", *parts)
    if not resource.is_file():
        raise FileNotFoundError(f"bundled data file not found: {'/'.join(parts)} (looked in {resource})")
    return resource

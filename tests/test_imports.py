"""The package imports only downward: each module imports from its own floor or below.

Floors, from the bottom (DESIGN.md): the layer library; configs, models, text and checkpoints;
data and plots; decoding, interop and evaluation; training; tasks; recipes; serving and the
explorer; the command line. Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attentive

FLOORS = [
    {"fileio", "device", "nn"},
    {"config", "models", "text", "checkpoint", "lora"},
    {"audio", "data", "viz"},
    {"decode", "interop", "evaluate"},
    {"train"},
    {"tasks"},
    {"recipes"},
    {"serve", "explore"},
    {"cli"},
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
ROOT = Path(attentive.__file__).parent
PUBLIC_API = {"__init__", "__main__"}  # the package's front door may import from anywhere


def _imported_packages(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, top-level attentive package) for every import in ``path``."""
    package = list(path.relative_to(root).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    found.append((node.lineno, parts[0]))
                else:  # ``from . import x`` at the top of the package
                    found.extend((node.lineno, alias.name) for alias in node.names)
            elif node.module and node.module.split(".")[0] == "attentive":
                parts = node.module.split(".")
                if len(parts) > 1:
                    found.append((node.lineno, parts[1]))
                else:
                    found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "attentive" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


def _top(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def test_every_package_has_a_floor():
    names = {_top(p) for p in ROOT.rglob("*.py")} - PUBLIC_API
    assert names <= set(FLOOR), f"give these a floor in FLOORS: {sorted(names - set(FLOOR))}"


def test_no_module_imports_upward():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        me = _top(path)
        if me in PUBLIC_API:
            continue
        for line, target in _imported_packages(path):
            if target in FLOOR and FLOOR[target] > FLOOR[me]:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({me}) imports {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_the_check_sees_every_spelling_of_an_import(tmp_path):
    """The checker itself: relative, absolute and function-level imports are all found."""
    fake = tmp_path / "attentive"
    (fake / "train").mkdir(parents=True)
    (fake / "train" / "loop.py").write_text(
        "from ..tasks.translation import TranslationTask\n"
        "import attentive.recipes.registry\n"
        "def f():\n    from attentive.serve import app\n"
        "from . import optim\n"
    )
    found = _imported_packages(fake / "train" / "loop.py", root=fake)
    assert sorted(found) == [(1, "tasks"), (2, "recipes"), (4, "serve"), (5, "train")]

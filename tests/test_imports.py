"""The package imports only downward: each module imports from its own floor or below, and the
modules of one floor never import each other in a circle.

Floors, from the bottom (docs/architecture.md): the layer library; configs, models, text and
checkpoints; data and plots; decoding, interop and evaluation; training; tasks; recipes; serving
and the explorer; the command line. Every import counts, including those inside functions. A
registry that must reach the modules it lists (model families and presets, recipes, tokenizer
kinds) keeps a table of ``"module:attribute"`` strings and imports them with importlib on first
use: a string is not an import, so the listed modules may import the registry freely.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attentive

FLOORS = [
    {"_runtime", "environment", "fileio", "figures", "device", "lazy", "nn"},
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


# ----------------------------------------------------------------------------- import cycles


def _module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file; a package is named by its ``__init__.py``."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _import_edges(name: str, path: Path, files: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import of a module in ``files`` that ``path`` makes.

    ``from package import name`` goes to the submodule ``package.name`` when there is one and to
    the package's ``__init__`` otherwise; ``import a.b.c`` goes to ``a.b.c`` alone. Running
    ``a/b/__init__.py`` on the way to ``a.b.c`` is not counted: a package re-exporting its
    submodules, one of which imports a sibling, is no circle.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            edges.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                edges.append((submodule if submodule in files else module, node.lineno))
    return [(target, line) for target, line in edges if target in files and target != name]


def _import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of its first import}, for every module under ``root``."""
    files = _module_files(root)
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        graph[name] = {}
        for target, line in sorted(_import_edges(name, path, files), key=lambda edge: edge[1]):
            graph[name].setdefault(target, line)
    return graph


def _floor(module: str) -> int:
    """The floor of a dotted module name; the front door (``attentive``, ``__main__``) is above them all."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return FLOOR.get(top, len(FLOORS))


def _cycles_within_floors(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Cycles [a, b, ..., a] of modules on one floor that import each other, each named from its
    alphabetically first module: the shortest cycle through every module of every knot.

    A cycle that crosses floors has an upward import, which ``test_no_module_imports_upward``
    reports; so only edges between modules of one floor are followed here.
    """
    same = {a: sorted(b for b in targets if _floor(b) == _floor(a)) for a, targets in graph.items()}
    cycles = set()
    for component in _strongly_connected(same):
        for start in component:  # the shortest cycle through each member: one knot may hold several
            cycle = _shortest_cycle(start, same)[:-1]
            first = cycle.index(min(cycle))
            cycles.add((*cycle[first:], *cycle[:first], min(cycle)))
    return sorted(list(cycle) for cycle in cycles)


def _strongly_connected(graph: dict[str, list[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _shortest_cycle(start: str, graph: dict[str, list[str]]) -> list[str]:
    """The shortest path start -> ... -> start (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in graph.get(node, []):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} lies on no cycle")


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = ", ".join(f"{a} line {graph[a][b]}" for a, b in zip(cycle, cycle[1:]))
    return f"{' -> '.join(cycle)}   (imports at: {steps})"


def test_no_import_cycle_within_a_floor():
    """Modules of one floor may import each other, but never in a circle: a circle's modules half
    exist while the first of them runs, and which half depends on who was imported first."""
    graph = _import_graph()
    cycles = _cycles_within_floors(graph)
    assert not cycles, "import cycles (module -> module it imports):\n" + "\n".join(
        _describe(cycle, graph) for cycle in cycles
    )


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    """The checker itself: a cycle closed by a function-level import is found, named in order;
    a package that re-exports its submodules, one importing a sibling, is no cycle."""
    fake = tmp_path / "attentive"
    (fake / "decode").mkdir(parents=True)
    (fake / "__init__.py").write_text("from .decode.engine import Engine\n")
    (fake / "config.py").write_text("X = 1\n")
    (fake / "decode" / "__init__.py").write_text("from .engine import Engine\nfrom .search import beam\n")
    (fake / "decode" / "config.py").write_text("from ..config import X\n")
    (fake / "decode" / "engine.py").write_text(
        "from .config import X\nimport attentive.decode.search\nclass Engine:\n    pass\n"
    )
    (fake / "decode" / "search.py").write_text("def beam():\n    from . import engine\n")
    graph = _import_graph(fake)
    assert graph["attentive.decode"] == {"attentive.decode.engine": 1, "attentive.decode.search": 2}
    assert graph["attentive.decode.config"] == {"attentive.config": 1}
    assert _cycles_within_floors(graph) == [
        ["attentive.decode.engine", "attentive.decode.search", "attentive.decode.engine"]
    ]
    assert "line 2" in _describe(_cycles_within_floors(graph)[0], graph)

    # naming the package itself (not a submodule of it) runs its __init__, which imports the importer back
    (fake / "decode" / "engine.py").write_text("from . import helper\nclass Engine:\n    pass\n")
    (fake / "decode" / "search.py").write_text("from .. import decode\n")
    assert _cycles_within_floors(_import_graph(fake)) == [
        ["attentive.decode", "attentive.decode.engine", "attentive.decode"],
        ["attentive.decode", "attentive.decode.search", "attentive.decode"],
    ]
    # a cycle through floors is the upward-import test's to report, not this one's
    (fake / "decode" / "engine.py").write_text("class Engine:\n    pass\n")
    (fake / "decode" / "search.py").write_text("def beam():\n    pass\n")
    (fake / "config.py").write_text("def f():\n    import attentive.decode.config\n")
    assert _cycles_within_floors(_import_graph(fake)) == []

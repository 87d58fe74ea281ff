"""The README and docs/ cannot drift: generated parts are fresh, no figure is typed by hand,
every Python block runs, every ``attentive ...`` line parses, every name it uses exists, every
link lands."""

from __future__ import annotations

import os
import re

import pytest
from markdown_blocks import ROOT, attentive_commands, markdown_files, python_steps, rel

import docgen  # scripts/, put on the path by markdown_blocks

from attentive.cli.main import build_parser

FILES = markdown_files()
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_.-]*$|^<.*>$|\.\.\.")  # NAME, FILE, <path>: stand for the reader's own


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_generated_parts_are_fresh(path):
    text = path.read_text(encoding="utf-8")
    assert docgen.render(text) == text, f"{rel(path)} is stale: run python scripts/docgen.py"


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_no_figure_is_typed_by_hand(path):
    typed = [f"{rel(path)}:{line}: {item}" for line, item in docgen.typed_figures(path.read_text(encoding="utf-8"))]
    assert not typed, "figures typed by hand (take them from a result file: <!--fig FILE|PATH-->):\n" + "\n".join(typed)


def test_the_figure_check_catches_typed_figures():
    text = "BLEU 39.7 on test, 2.2x faster, 546 MiB.\n`lr=3e-4` Python 3.11, torch 2.13.0, section 3.2\n"
    found = [item for _, item in docgen.typed_figures(text)]
    assert found == ["BLEU 3", "39.7", "2.2x", "546 MiB"]
    fenced = "<!--fig benchmarks/context/context_cost.json|layers-->4<!--/fig-->\n```\n1.5x\n```\n"
    assert not list(docgen.typed_figures(fenced))


def test_recipe_descriptions_hold_no_figures():
    from attentive.recipes import recipes

    for name, spec in recipes().items():
        assert not list(docgen.typed_figures(spec.description)), f"{name}: measure it into recipes/results/{name}.json"


@pytest.mark.parametrize("path", [p for p in FILES if python_steps(p.read_text(encoding="utf-8"))], ids=rel)
@pytest.mark.timeout(600)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    """Each page's Python runs top to bottom in one namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__", "ROOT": ROOT}
    for block in python_steps(path.read_text(encoding="utf-8")):
        code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
        exec(code, namespace)


def _check_names(argv: list[str]) -> list[str]:
    from attentive.config import presets
    from attentive.interop.bundled import short_names
    from attentive.recipes import recipes

    problems = []
    for flag, known in (("--recipe", set(recipes())), ("--preset", set(presets()) | set(recipes()))):
        for i, word in enumerate(argv[:-1]):
            if word == flag and not PLACEHOLDER.search(argv[i + 1]) and argv[i + 1] not in known:
                problems.append(f"{flag} {argv[i + 1]}: no such name")
    for i, word in enumerate(argv[:-1]):
        value = argv[i + 1]
        if word == "--model" and not PLACEHOLDER.search(value) and "/" not in value and not value.endswith(".gguf"):
            if value not in short_names():
                problems.append(f"--model {value}: not a bundled model name")
    if argv[:1] == ["recipes"] and len(argv) > 1 and not argv[1].startswith("-") and argv[1] not in recipes():
        problems.append(f"recipes {argv[1]}: no such recipe")
    return problems


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_command_lines_parse(path, capsys):
    parser = build_parser()
    bad = []
    for line, argv in attentive_commands(path.read_text(encoding="utf-8")):
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit:
            if exit.code != 0:  # --help exits 0
                bad.append(f"{rel(path)}:{line}: attentive {' '.join(argv)}: {capsys.readouterr().err.strip()[-200:]}")
            continue
        if getattr(args, "command", None) is None:
            bad.append(f"{rel(path)}:{line}: attentive {' '.join(argv)}: no command")
        bad += [f"{rel(path)}:{line}: {problem}" for problem in _check_names(argv)]
    assert not bad, "\n".join(bad)


ENV_NAME = re.compile(r"\b(ATTENTIVE_[A-Z0-9_]+)\b")


def test_environment_variables_named_exist():
    from attentive.environment import VARIABLES, names

    named = set()
    for path in FILES:
        named |= set(ENV_NAME.findall(path.read_text(encoding="utf-8")))
    assert named <= names(), f"documented but not in attentive/environment.py: {sorted(named - names())}"
    files = [p for p in (ROOT / "src" / "attentive").rglob("*") if p.suffix in (".py", ".h", ".cpp")]
    source = "\n".join(p.read_text(encoding="utf-8") for p in [*files, *(ROOT / "tests").rglob("*.py")])
    for variable in VARIABLES:
        for name in variable.name.split(","):
            assert f'"{name.strip()}"' in source, f"{name.strip()} is in the table but nothing reads it"
    read = set(re.findall(r'(?:environ(?:\.get)?\(?\[?|env_int\(|getenv\()"(ATTENTIVE_[A-Z_]+)"', source))
    read |= set(re.findall(r'_ENV = "(ATTENTIVE_[A-Z_]+)"', source))
    assert read <= names(), f"read by the package but not in the table: {sorted(read - names())}"


GENERATED = (
    "concepts/img/",
    "concepts/explorer/",
    "reference/",
    "changelog.md",
    "index.md",
    "results/",
)  # made by the site build (scripts/mkdocs_hooks.py)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_relative_links_land(path):
    text = re.sub(r"^(```|~~~).*?^\1", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    missing = []
    for match in LINK.finditer(text):
        target = match["target"].split("#")[0]
        if not target or re.match(r"[a-z]+:", target):
            continue
        resolved = (path.parent / target).resolve()
        docs_path = os.path.relpath(resolved, ROOT / "docs")
        if docs_path.startswith(GENERATED):
            continue  # built by the site; mkdocs build --strict checks these links
        if not os.path.exists(resolved):
            missing.append(f"{rel(path)}: {match['target']}")
    assert not missing, "links to nothing:\n" + "\n".join(missing)


def test_readme_is_a_front_page():
    """The README is the front page (the site's home page too); the rest lives in docs/."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move sections into docs/"

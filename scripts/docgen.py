"""Fill the generated parts of the README and docs/ from result files and registries.

Markdown keeps each generated part between two HTML comments, so GitHub shows the README as it
is and the site shows the same text; this script rewrites what is between them, and the test
suite fails when a file differs from what this script would write (nothing drifts):

    <!--fig FILE|PATH|FORMAT-->2.20x<!--/fig-->        one figure (attentive.figures.lookup)
    <!--table FILE|PATH-->                              a table: {"columns", "rows"} at PATH,
    ...                                                 or @NAME for a renderer below
    <!--/table-->
    <!--gen NAME-->                                     a table made from a registry (presets,
    ...                                                 recipes, environment variables)
    <!--/gen-->

FILE is relative to the repository's root. ``typed_figures`` finds numbers that look measured
but are written by hand (outside these markers, code blocks and code spans).

    python scripts/docgen.py            # rewrite README.md and docs/**/*.md in place
    python scripts/docgen.py --check    # exit 1 and list the files that would change
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from attentive import figures  # noqa: E402

FIG = re.compile(r"<!--fig (?P<spec>[^>]*?)-->(?P<body>.*?)<!--/fig-->", re.S)
BLOCK = re.compile(r"<!--(?P<kind>table|gen) (?P<spec>[^>]*?)-->\n(?P<body>.*?)<!--/(?P=kind)-->", re.S)


def markdown_files() -> list[Path]:
    """The Markdown files whose generated parts this script owns."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


# ----------------------------------------------------------------------------- renderers


def _presets() -> str:
    from attentive.cli.presets import count_parameters
    from attentive.config import get_preset, presets

    lines = ["| preset | parameters | what |", "|---|---|---|"]
    for name in presets():
        lines.append(f"| `{name}` | {count_parameters(name) / 1e6:.1f}M | {get_preset(name).description} |")
    return "\n".join(lines)


def _recipes() -> str:
    from attentive.recipes import recipes

    lines = ["| recipe | what | measured |", "|---|---|---|"]
    for name, spec in recipes().items():
        lines.append(f"| `{name}` | {spec.description} | {spec.measured() or 'not measured yet'} |")
    return "\n".join(lines)


def _environment() -> str:
    from attentive.environment import VARIABLES

    lines = ["| variable | default | effect | read by |", "|---|---|---|---|"]
    lines += [f"| `{v.name}` | {v.default} | {v.effect} | `{v.where}` |" for v in VARIABLES]
    return "\n".join(lines)


def _extras() -> str:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = ["| extra | installs | `pip install` |", "|---|---|---|"]
    lines.append(f"| (none) | {', '.join(f'`{d}`' for d in project['dependencies'])} | `pip install -e .` |")
    for name, deps in project["optional-dependencies"].items():
        lines.append(f'| `{name}` | {", ".join(f"`{d}`" for d in deps)} | `pip install -e ".[{name}]"` |')
    return "\n".join(lines)


HEADLINE_RECIPES = (  # the README's results table: recipe -> (job, guide)
    ("multi30k-de-en", "Translation: Multi30k German->English, trained from scratch", "translation"),
    ("shakespeare-char", "Language model: Tiny Shakespeare characters, trained from scratch", "language-models"),
    ("vit-mnist", "Vision: ViT on MNIST, trained from scratch", "vision"),
    ("dt-cartpole", "Reinforcement learning: Decision Transformer, offline CartPole-v1", "decision-transformer"),
    ("smollm2-multi30k-lora", "Fine-tuning: SmolLM2-135M-Instruct + LoRA, German->English", "fine-tuning"),
)
LLAMACPP = "benchmarks/llamacpp/vs_llamacpp_bench.json"


def _headline() -> str:
    """One row per job: the recipe's measured line, and the CPU figures against llama.cpp."""
    from attentive.recipes import get_recipe

    lines = ["| job | measured | run |", "|---|---|---|"]
    for name, job, guide in HEADLINE_RECIPES:
        result = get_recipe(name).result()
        line = result["summary"].format(**result["figures"])
        lines.append(f"| [{job}](docs/guides/{guide}.md) | {line} | {result['date'][:10]}, {result['machine']} |")
    data = figures.load(ROOT / LLAMACPP)
    run = figures.provenance(data)
    rate = {row["name"]: row["rate"] for row in data["rows"] if row.get("rate")}
    for test, what in (("pp512", "reading a 512-token prompt"), ("tg128", "generating 128 tokens")):
        ours, peer = rate[f"Q4_1 {test} attentive default"], rate[f"Q4_1 {test} llama.cpp"]
        best = rate[f"Q4_1 {test} attentive best (int4, slots, compiled)"]
        lines.append(
            f"| [CPU inference: SmolLM2-135M Q4_1 GGUF, {what}](docs/guides/cpu-inference.md) | "
            f"{ours:,.0f} tok/s by default, {best:,.0f} compiled: {ours / peer:.2f}x and {best / peer:.2f}x "
            f"llama.cpp's {peer:,.0f} tok/s on the same file | "
            f"{run['date']}, {run['machine']} |"
        )
    return "\n".join(lines)


GENERATORS: dict[str, Callable[[], str]] = {
    "headline": _headline,
    "extras": _extras,
    "presets": _presets,
    "recipes": _recipes,
    "environment": _environment,
}


def _table_renderers() -> dict[str, Callable[[dict], str]]:
    """``@name`` -> a renderer of a whole result file, from ``scripts/doctables/*.py`` (each module
    a ``RENDERERS`` dict), for files whose writer keeps its own layout (llama.cpp, context)."""
    import importlib

    renderers: dict[str, Callable[[dict], str]] = {}
    for module in sorted((ROOT / "scripts" / "doctables").glob("*.py")):
        if module.stem != "__init__":
            for name, fn in importlib.import_module(f"doctables.{module.stem}").RENDERERS.items():
                if name in renderers:
                    raise figures.FigureError(f"table renderer @{name} is defined twice (scripts/doctables)")
                renderers[name] = fn
    return renderers


sys.path.insert(0, str(ROOT / "scripts"))
TABLE_RENDERERS = _table_renderers()


def _split(spec: str, parts: int) -> list[str]:
    pieces = [p.strip() for p in spec.split("|")]
    if len(pieces) < 2:
        raise figures.FigureError(f"marker {spec!r}: expected FILE|PATH[|FORMAT]")
    return pieces + [""] * (parts - len(pieces))


def render_table(spec: str) -> str:
    file, path = _split(spec, 2)[:2]
    data = figures.load(ROOT / file)
    if path.startswith("@"):
        if path[1:] not in TABLE_RENDERERS:
            raise figures.FigureError(f"{spec!r}: no table renderer {path!r}; there are {sorted(TABLE_RENDERERS)}")
        body = TABLE_RENDERERS[path[1:]](data)
    else:
        body = figures.table(data, path)
        note = figures.lookup(data, path).get("note")
        if note:
            body += f"\n\n{note}"
    return f"\n{body}\n\n{figures.stamp(data, file)}\n\n"


def render_figure(spec: str) -> str:
    file, path, pattern = _split(spec, 3)[:3]
    return figures.figure(ROOT / file, path, pattern or None)


def render(text: str) -> str:
    """``text`` with every generated part rewritten."""

    def block(match: re.Match) -> str:
        kind, spec = match["kind"], match["spec"]
        if kind == "gen":
            if spec.strip() not in GENERATORS:
                raise figures.FigureError(f"<!--gen {spec}-->: no generator; there are {sorted(GENERATORS)}")
            body = f"\n{GENERATORS[spec.strip()]()}\n\n"
        else:
            body = render_table(spec)
        return f"<!--{kind} {spec}-->\n{body}<!--/{kind}-->"

    def prose(part: str) -> str:
        part = BLOCK.sub(block, part)
        return FIG.sub(lambda m: f"<!--fig {m['spec']}-->{render_figure(m['spec'])}<!--/fig-->", part)

    return outside_code(text, prose)


def outside_code(text: str, change: Callable[[str], str]) -> str:
    """``text`` with ``change`` applied to everything outside fenced code blocks (markers shown
    inside code blocks stay as written)."""
    out, end = [], 0
    for fence in FENCE.finditer(text):
        out += [change(text[end : fence.start()]), fence.group(0)]
        end = fence.end()
    return "".join(out + [change(text[end:])])


# ----------------------------------------------------------------------------- typed figures

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK_TARGET = re.compile(r"\]\([^)]*\)")
HTML_ATTR = re.compile(r"<[a-zA-Z][^>]*>")
VERSION = re.compile(
    r"(?:python|torch|pytorch|cuda|version|v|mkdocs|numpy|transformers|llama\.cpp|gguf)\s*[\d.]+$", re.I
)
SECTION = re.compile(r"(?:section|§|table|figure|eq\.?|equation|chapter|sec\.)\s*$", re.I)
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?:\.\d+)*(?![\w.]*\d)")
UNIT = re.compile(
    r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:x|×|%|ms|µs|us|tok/s|tokens/s|MiB|GiB|KiB|MB|GB|kB|it/s|steps/s)(?![\w/])"
)
NAMED = re.compile(r"\b(?:BLEU|perplexity|bpc|accuracy|loss)\s+(?:of\s+)?\d", re.I)


def _strip(text: str) -> str:
    """Prose only: generated parts, code, comments, link targets and tags blanked (lines kept)."""

    def blank(match: re.Match) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    for pattern in (BLOCK, FIG, FENCE, COMMENT, CODE_SPAN, LINK_TARGET, HTML_ATTR):
        text = pattern.sub(blank, text)
    return text


def typed_figures(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each number in prose that looks measured: a decimal, a number with
    a unit of speed, size or ratio, or one named as a score. Versions and section numbers pass."""
    previous = ""
    for number, line in enumerate(_strip(text).splitlines(), 1):
        spans = []
        for match in DECIMAL.finditer(line):
            before = previous[-20:] + " " + line[: match.start()]  # "Python" may end the line above
            if match.group(0).count(".") >= 2 or VERSION.search(before + match.group(0)) or SECTION.search(before):
                continue
            spans.append(match.span())
        spans += [m.span() for m in UNIT.finditer(line)] + [m.span() for m in NAMED.finditer(line)]
        kept = [s for s in spans if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
        for start, end in sorted(set(kept)):
            yield number, line[start:end]
        previous = line.rstrip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="list the files that would change; exit 1 if any")
    p.add_argument("files", nargs="*", type=Path, help="default: README.md and docs/**/*.md")
    args = p.parse_args()
    stale = []
    for path in [p.resolve() for p in args.files] or markdown_files():
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {path.relative_to(ROOT)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())

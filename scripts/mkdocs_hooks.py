"""MkDocs hooks: the pages and pictures the site generates at build time, and fresh figures.

* ``on_files`` adds what is generated, never typed: the reference pages (``docref.pages``: the
  command line from the real argument parser, the registries, the HTTP API from the server's
  OpenAPI schema, environment variables, metrics), the concept pages' figures drawn by the real
  code (``docfigures.figures``), the benchmarks' plots under ``results/`` (as their scripts wrote
  them in ``benchmarks/``) and the changelog (``CHANGELOG.md`` at the root).
* ``on_page_markdown`` refills every ``<!--fig-->`` / ``<!--table-->`` / ``<!--gen-->`` part from
  its result file or registry (``docgen.render``), so the site shows what the files hold even
  before ``python scripts/docgen.py`` has rewritten the Markdown (the tests require that too).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import docgen  # noqa: E402


LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")


def site_links(text: str) -> str:
    """A root Markdown file (README, CHANGELOG) as a page of the site: links into ``docs/`` made
    relative to the site, the changelog pointed at its page, links to other files of the
    checkout kept as their text."""

    def link(match: re.Match) -> str:
        target = match["target"]
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        if target.startswith("docs/"):
            return f"[{match['text']}]({target[len('docs/') :]})"
        if target == "CHANGELOG.md":
            return f"[{match['text']}](changelog.md)"
        return match["text"]

    return LINK.sub(link, text)


def _generated() -> dict[str, str | bytes]:
    pages: dict[str, str | bytes] = {
        "index.md": site_links((ROOT / "README.md").read_text(encoding="utf-8")),
        "changelog.md": site_links((ROOT / "CHANGELOG.md").read_text(encoding="utf-8")),
    }
    for picture in (ROOT / "benchmarks").rglob("*.png"):  # the benchmarks' own plots, not copies
        if picture.relative_to(ROOT / "benchmarks").parts[0] == "results":
            continue  # the scripts' untracked default output folder
        pages[f"results/{picture.relative_to(ROOT / 'benchmarks').as_posix()}"] = picture.read_bytes()
    if str(SCRIPTS) not in sys.path:  # MkDocs restores sys.path after loading this file
        sys.path.insert(0, str(SCRIPTS))
    try:
        import docref
    except ModuleNotFoundError:
        docref = None
    if docref is not None:
        pages.update(docref.pages())
    try:
        import docfigures
    except ModuleNotFoundError:
        docfigures = None
    if docfigures is not None:
        pages.update(docfigures.figures())
    return pages


def on_files(files, config):
    for path, content in _generated().items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=content))
    return files


MARKER = re.compile(r"<!--/?(?:fig|table|gen)\b[^>]*?-->|<!--setup\n.*?-->\n?", re.S)


def on_page_markdown(markdown, page, config, files):
    """Markers refilled from their files, then dropped with the hidden set-up code: the reader
    sees the figures, and cross-reference plugins see no ``[i][j]`` of a marker's path."""
    markdown = docgen.render(markdown)
    if page.file.src_uri in ("index.md", "changelog.md"):
        markdown = site_links(markdown)
    return docgen.outside_code(markdown, lambda prose: MARKER.sub("", prose))

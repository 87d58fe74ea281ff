"""The Markdown the project ships, taken apart for the docs tests: files, code blocks, links."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

FENCE = re.compile(r"^(?P<fence>```|~~~)(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=fence)[ \t]*$", re.S | re.M)
SETUP = re.compile(r"<!--setup\n(?P<code>.*?)-->", re.S)


def markdown_files() -> list[Path]:
    """README.md and every page under docs/ (generated reference pages are checked by the site build)."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass
class Block:
    language: str
    code: str
    line: int  # first line of the code, 1-based


def python_steps(text: str) -> list[Block]:
    """The page's Python, in reading order: ```python blocks and hidden ``<!--setup ... -->`` code
    (set-up a reader does not need to see, such as a tiny model standing in for a large one)."""
    steps = []
    for match in FENCE.finditer(text):
        if match["info"].strip().split(" ")[0] in ("python", "py"):
            steps.append(
                (match.start("code"), Block("python", match["code"], text.count("\n", 0, match.start("code")) + 1))
            )
    for match in SETUP.finditer(text):
        steps.append((match.start("code"), Block("setup", match["code"], text.count("\n", 0, match.start("code")) + 1)))
    return [block for _, block in sorted(steps, key=lambda s: s[0])]


def shell_blocks(text: str) -> list[Block]:
    return [
        Block(m["info"].strip(), m["code"], text.count("\n", 0, m.start("code")) + 1)
        for m in FENCE.finditer(text)
        if m["info"].strip().split(" ")[0] in ("bash", "sh", "shell", "console")
    ]


def attentive_commands(text: str) -> list[tuple[int, list[str]]]:
    """(line, argv after ``attentive``) for every ``attentive ...`` command in the page's shell
    blocks: continuation lines joined, comments, environment assignments, ``$ `` prompts and
    pipes dropped."""
    commands = []
    for block in shell_blocks(text):
        joined = block.code.replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            for cut in ("|", "&&", ";", ">", "&", "2>&1"):
                if cut in words:
                    words = words[: words.index(cut)]
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]
            if words and words[0] in ("python", "python3") and words[1:3] == ["-m", "attentive"]:
                words = ["attentive", *words[3:]]
            if words and Path(words[0]).name == "attentive":
                commands.append((block.line + offset, words[1:]))
    return commands

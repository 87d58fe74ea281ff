"""Static export: one self-contained HTML file of the explorer for one input.

The file is the page itself (``static/index.html`` with its stylesheet and scripts inlined) plus
the answers it asks for first, computed now by the same endpoint functions the server uses
(``api.handlers``) and embedded as ``window.EXPLORER_STATIC``: the page's API client reads them
instead of the network. Its Content-Security-Policy allows no connection at all, so it opens
from disk, offline, in any browser, and in Jupyter (``notebook()`` wraps it in an iframe).

What the page can ask beyond the first view (another window of a long input, a new input, the
generation stepper) needs the model: the exported page says so in its message line.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from ..fileio import atomic_write_text
from .api import STATIC, Registry, handlers
from .ideas import IDEA_TOKENS
from .subject import Subject

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "connect-src 'none'; font-src 'none'"
)
MAX_IDEA_COMBINATIONS = 64  # layer x head choices exported for the attention-steps panel
EXPORTED_POSITIONS = 16  # token choices exported for the embedding and positions panels


def request_key(path: str, body: dict) -> str:
    """The key the page looks an answer up by (``AX.requestKey`` in core.js: sorted keys, no spaces)."""
    return path + " " + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def collect(subject: Subject, value) -> dict:
    """Everything the exported page needs for ``value`` (text, or image / audio bytes)."""
    registry = Registry([subject])
    table = handlers(registry)
    answers: dict[str, dict] = {}

    def ask(path: str, body: dict) -> dict:
        full = {"model": subject.name, **body}
        answer = table[path](full)
        answers[request_key(path, full)] = answer
        return answer

    answers[request_key("models", {})] = table["models"]({})
    analysis = subject.analyze(value)
    summary = analysis.summary()
    ref = {"id": analysis.id}
    window = registry.info(subject)["defaults"]["window"]
    for stack in summary["stacks"]:
        tq, tk = len(stack["q_tokens"]), len(stack["k_tokens"])
        q1, k0, k1 = min(tq, window), 0, min(tk, window)  # the first window (headview.js: fetchBlock)
        for layer in range(stack["layers"]):
            ask("attention", {**ref, "stack": stack["name"], "layer": layer, "q0": 0, "q1": q1, "k0": k0, "k1": k1})
            if stack["name"] == "cross":
                keys = min(summary.get("audio_positions", tk), tk)
                for head in ["mean", *range(stack["heads"])]:
                    ask(
                        "attention",
                        {
                            **ref,
                            "stack": "cross",
                            "layer": layer,
                            "head": head,
                            "q0": 0,
                            "q1": min(tq, 64),
                            "k0": 0,
                            "k1": keys,
                        },
                    )
    views = subject.info()["views"]
    steps = len(summary["tokens"])
    if "lens" in views:
        for position in range(min(steps, 64)):
            ask("lens", {**ref, "position": position})
    if "ideas" in views:
        for position in range(min(steps, EXPORTED_POSITIONS, IDEA_TOKENS)):
            ask("ideas/embedding", {**ref, "position": position})
            ask("ideas/positions", {**ref, "position": position})
        primary = next(s for s in summary["stacks"] if s["name"] == summary["primary_stack"])
        combos = [(layer, head) for layer in range(primary["layers"]) for head in range(primary["heads"])]
        for layer, head in combos[:MAX_IDEA_COMBINATIONS]:
            ask("ideas/attention_steps", {**ref, "layer": layer, "head": head, "query": -1})
        for layer in range(primary["layers"]):
            ask("ideas/heads", {**ref, "layer": layer, "query": -1})
        for name, body in (("residual", {}), ("permutation", {"seed": 0}), ("masks", {})):
            ask(f"ideas/{name}", {**ref, **body})
    data = {"answers": answers, "analysis": summary}
    if isinstance(value, str):
        data["text"] = value
    return data


def render_page(data: dict) -> str:
    """The page with its stylesheet, scripts and ``data`` inlined."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = re.sub(
        r'<meta http-equiv="Content-Security-Policy" content="[^"]*">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        page,
    )
    css = (STATIC / "explorer.css").read_text(encoding="utf-8")
    page = page.replace('<link rel="stylesheet" href="static/explorer.css">', f"<style>\n{css}</style>")
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    first = True

    def inline(match: re.Match) -> str:
        nonlocal first
        source = (STATIC / match.group(1)).read_text(encoding="utf-8")
        if "</script" in source.lower():
            raise ValueError(f"{match.group(1)} contains '</script', which cannot be inlined")
        data_script = f"<script>window.EXPLORER_STATIC = {payload};</script>\n" if first else ""
        first = False
        return f"{data_script}<script>\n{source}</script>"

    return re.sub(r'<script src="static/([\w/.-]+)"></script>', inline, page)


def export_html(subject: Subject, value, path: str | Path) -> Path:
    """Write the explorer for ``value`` to ``path`` as one HTML file; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--export {path}: the file name should end in .html")
    atomic_write_text(path, render_page(collect(subject, value)))
    return path


class Notebook:
    """The exported page shown in Jupyter (an iframe whose document is the page)."""

    def __init__(self, page: str, height: int = 900):
        self.page, self.height = page, height

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.page, quote=True)}" style="width:100%;height:{self.height}px;'
            f'border:1px solid #ddd" sandbox="allow-scripts"></iframe>'
        )


def notebook(subject: Subject, value, height: int = 900) -> Notebook:
    """``display(notebook(subject, "text"))`` in Jupyter shows the explorer for that input."""
    return Notebook(render_page(collect(subject, value)), height)

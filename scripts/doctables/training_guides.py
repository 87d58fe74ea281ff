"""Tables of the training guides (translation, vision, Decision Transformer, language models),
rendered from a recipe's result file (``src/attentive/recipes/results/<recipe>.json``) or a
guide's benchmark file. Both keep each measured number once, in ``figures``; a table names them:

    "report":  {"columns": [...], "rows": [[...], ...]}        a string cell is a str.format
                                                                template over ``figures``
    "targets": [{"what": ..., "figure": NAME, "op": ">=", "value": 30 | NAME, "format": "{:.2f}"}]

``@recipe_report`` draws the report and, under it, the targets with met / missed, computed
from the same figures (``@recipe_targets``: the targets alone).
"""

from __future__ import annotations

import operator

from attentive import figures

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _cell(value, figs: dict) -> str:
    if isinstance(value, str):
        return value.format(**figs)
    return figures.format_value(value)


def recipe_report(data: dict) -> str:
    """The file's ``report`` table, its string cells filled from ``figures``."""
    spec = figures.lookup(data, "report")
    figs = data.get("figures", {})
    columns = spec["columns"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in spec["rows"]:
        if len(row) != len(columns):
            raise figures.FigureError(f"report row {row!r} has {len(row)} cells for {len(columns)} columns")
        lines.append("| " + " | ".join(_cell(cell, figs) for cell in row) + " |")
    report = "\n".join(lines)
    return f"{report}\n\n{recipe_targets(data)}" if data.get("targets") else report


def recipe_targets(data: dict) -> str:
    """Target against measured, met or missed: computed, never typed."""
    figs = data.get("figures", {})
    lines = ["| target | measured | |", "|---|---:|---|"]
    for target in figures.lookup(data, "targets"):
        pattern = target.get("format")
        measured = figures.lookup(figs, target["figure"])
        wanted = target["value"]
        if isinstance(wanted, str):  # another figure, e.g. the best behaviour policy in the data
            shown = f"{target['op']} {figures.format_value(figures.lookup(figs, wanted), pattern)}"
            wanted = figures.lookup(figs, wanted)
        else:
            shown = f"{target['op']} {figures.format_value(wanted, pattern)}"
        met = OPS[target["op"]](measured, wanted)
        lines.append(
            f"| {target['what']} {shown} | {figures.format_value(measured, pattern)} | {'met' if met else 'missed'} |"
        )
    return "\n".join(lines)


RENDERERS = {"recipe_report": recipe_report, "recipe_targets": recipe_targets}

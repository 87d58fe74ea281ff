"""The serving guide's computed tables: targets against what a result file measured.

A result file lists its targets as ``{"what", "path", "op", "target", "format"}``: ``path`` points
at the measured figure in the same file, ``op`` is how it must compare with ``target`` (``>=``,
``>``, ``<=``, ``<``), and ``format`` shows both (``target_format``, if given, the target). Met or missed is computed here, never typed.

    <!--table benchmarks/serve/serve_batching.json|@serve_targets-->
"""

from __future__ import annotations

import operator

from attentive import figures

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
SIGNS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


def serve_targets(data: dict) -> str:
    rows = []
    for target in data["targets"]:
        if target["op"] not in OPS:
            raise figures.FigureError(f"target {target['what']!r}: unknown op {target['op']!r}")
        measured = figures.lookup(data, target["path"])
        met = OPS[target["op"]](measured, target["target"])
        rows.append(
            [
                target["what"],
                f"{SIGNS[target['op']]} {figures.format_value(target['target'], target.get('target_format', target['format']))}",
                figures.format_value(measured, target["format"]),
                "met" if met else "missed",
            ]
        )
    return figures.table({"t": {"columns": ["what", "target", "measured", ""], "rows": rows}}, "t")


RENDERERS = {"serve_targets": serve_targets}

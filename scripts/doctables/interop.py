"""Tables of the pretrained, export and scaling-out guides.

``@max_abs_diff``: ``tables.parity`` of a parity file (``benchmarks/export/*.json``): numbers are
max abs differences (0 as ``0``, others as ``1.2e-05``); string cells are ``str.format``
templates over the file's ``figures``, so each measured number is kept once.

``@fsdp_memory``: ``tables.memory`` of ``benchmarks/distributed/memory_table.json``, GiB per GPU,
in bold where the estimate is over ``fits_fraction`` of a ``gib`` card.
"""

from __future__ import annotations

import string

from attentive import figures


def _diff(value) -> str:
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.1e}"
    return figures.format_value(value)


class _Formatter(string.Formatter):
    """A bare float field (``{name}``) prints as a difference; a field with a spec as asked."""

    def format_field(self, value, format_spec):
        return _diff(value) if not format_spec else super().format_field(value, format_spec)


def _cell(value, figs: dict) -> str:
    return _Formatter().format(value, **figs) if isinstance(value, str) else _diff(value)


def max_abs_diff(data: dict) -> str:
    spec = figures.lookup(data, "tables.parity")
    figs = data.get("figures", {})
    align = "|" + "".join("---:|" if c == "max abs diff" else "---|" for c in spec["columns"])
    lines = ["| " + " | ".join(spec["columns"]) + " |", align]
    for row in spec["rows"]:
        if len(row) != len(spec["columns"]):
            raise figures.FigureError(f"parity row {row!r} has {len(row)} cells for {len(spec['columns'])} columns")
        lines.append("| " + " | ".join(_cell(cell, figs) for cell in row) + " |")
    return "\n".join(lines)


def fsdp_memory(data: dict) -> str:
    spec = figures.lookup(data, "tables.memory")
    budget = figures.lookup(data, "figures.fits_fraction") * figures.lookup(data, "figures.gib")
    columns = spec["columns"]
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for name, params, *gib in spec["rows"]:
        cells = [f"{g:,.1f}" if g <= budget else f"**{g:,.1f}**" for g in gib]
        lines.append(f"| {name} | {params / 1e6:,.1f}M | " + " | ".join(cells) + " |")
    figs = data["figures"]
    note = (
        f"GiB per GPU, AdamW with fp32 master weights and bf16 compute, {figs['tokens']:,} tokens per GPU per "
        f"micro-batch; AC: activation checkpointing; **bold**: over {figs['fits_fraction']:.0%} of a "
        f"{figs['gib']:g} GiB card, so it does not fit."
    )
    return "\n".join(lines) + f"\n\n{note}"


def largest_that_fits(data: dict) -> str:
    """For each column of the memory table, the largest model whose estimate fits: computed."""
    spec = figures.lookup(data, "tables.memory")
    budget = figures.lookup(data, "figures.fits_fraction") * figures.lookup(data, "figures.gib")
    lines = ["| strategy | largest model that trains | parameters |", "|---|---|---:|"]
    for i, column in enumerate(spec["columns"][2:]):
        fits = [row for row in spec["rows"] if row[2 + i] <= budget]
        best = max(fits, key=lambda row: row[1]) if fits else None
        lines.append(
            f"| {column} | {best[0] if best else 'none'} | {best[1] / 1e9:.2f}B |" if best else f"| {column} | none | |"
        )
    return "\n".join(lines)


RENDERERS = {"max_abs_diff": max_abs_diff, "fsdp_memory": fsdp_memory, "fsdp_largest": largest_that_fits}

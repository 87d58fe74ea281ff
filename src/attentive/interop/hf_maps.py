"""The name rules every model family uses, both ways: Hugging Face names <-> attentive's.

Each family module (``interop.families``) holds one table of rules, a list of ``(HF name,
attentive name)`` templates; ``rename`` reads it top to bottom, forwards when loading a folder
and backwards (``reverse=True``) when exporting one, so the two directions cannot drift apart.
``{slot}`` in a template stands for the same part on both sides::

    ("model.layers.{i}.mlp.{f}_proj.weight", "stack.layers.{i}.ffn.{f}.weight")
    model.layers.3.mlp.gate_proj.weight  <->  stack.layers.3.ffn.gate.weight

Beside it: the small pieces the families share (a tied head dropped after checking it, a value
table read backwards, the one-line refusals of an export). Nothing here touches files.
"""

from __future__ import annotations

import re
from typing import Any

import torch

# what each ``{slot}`` matches: a layer index, "weight" or "bias", ...
SLOTS = {
    "i": r"\d+",
    "p": r"weight|bias",
    "x": r"q|k|v",
    "f": r"gate|up|down",
    "side": r"encoder|decoder",
    "n": r"1|2",
    "proj": r"q_proj|k_proj|v_proj|out_proj",
}


def _pattern(template: str) -> re.Pattern:
    r"""``a.{i}.b`` -> ``a\.(?P<i>\d+)\.b``."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile(
        "".join(re.escape(part) if k % 2 == 0 else f"(?P<{part}>{SLOTS[part]})" for k, part in enumerate(parts))
    )


def rename(
    state: dict[str, torch.Tensor],
    rules: list[tuple[str, str]],
    ignored: tuple[str, ...] = (),
    family: str = "model",
    reverse: bool = False,
) -> dict[str, torch.Tensor]:
    """Apply the first matching rule to every name (``reverse``: attentive -> HF names); a name no
    rule knows is an error."""
    pairs = [(attentive, hf) if reverse else (hf, attentive) for hf, attentive in rules]
    compiled = [(_pattern(source), target) for source, target in pairs]
    skip = [re.compile(pattern) for pattern in ignored]
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if any(s.fullmatch(name) for s in skip):
            continue
        for pattern, target in compiled:
            match = pattern.fullmatch(name)
            if match:
                out[target.format(**match.groupdict())] = tensor
                break
        else:
            source, where = ("attentive", f"{family} names") if reverse else (family, "attentive's names")
            raise ValueError(f"{source} weight {name!r} has no mapping to {where}")
    return out


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def drop_tied_head(
    out: dict[str, torch.Tensor], tied: bool, head: str = "head.weight", embed: str = "embed.weight"
) -> None:
    """A tied head is the embedding: drop its copy, after checking that it really is one."""
    if tied and head in out:
        if out[head] is not out[embed] and not torch.equal(out[head], out[embed]):
            raise ValueError("config says the output head is tied to the embedding, but the weights differ")
        del out[head]


def invert(table: dict[str, str]) -> dict[str, str]:
    """A read table (HF value -> ours) backwards, for export: ours -> the first HF value naming it."""
    out: dict[str, str] = {}
    for theirs, ours in table.items():
        out.setdefault(ours, theirs)
    return out


# ----------------------------------------------------------------------------- export refusals


def need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def check(config, what: str, **expected: Any) -> None:
    """Every ``field=value`` must hold, else a one-line refusal naming the first that does not."""
    for field, want in expected.items():
        have = getattr(config, field)
        allowed = want if isinstance(want, tuple) else (want,)
        need(
            have in allowed, f"{what} needs {field}={' or '.join(map(repr, allowed))}; this model has {field}={have!r}"
        )

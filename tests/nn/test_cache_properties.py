"""KV caches: properties over random stacks, shapes, dtypes, GQA ratios and padding (hypothesis).

A causal stack run token by token over a cache must compute what one pass over the whole
sequence computes, whatever the cache (dynamic, or static with more slots than needed), the
positional scheme, the grouped-query ratio, and the left padding (an all-padding row included,
whose queries see no key at all). Rows leaving (``reorder``) and joining (``pad_left`` +
``concat``) a dynamic cache change nothing for the rows that stay. A sliding-window cache (with or
without sinks), fed chunks of any size, computes what one pass under the banded mask computes
and never holds more than S + W entries; a sink cache whose S + W covers the input is the full
cache.

Each example is built from a drawn ``Case``; tensors come from its seed, so a failure printed by
hypothesis rebuilds exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attentive.nn import (
    DynamicCache,
    LayerSpec,
    SinkCache,
    SlidingWindowCache,
    StaticCache,
    TransformerStack,
    causal_mask,
    make_positional,
)
from helpers import masked_full_pass

PROPERTY = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
POSITIONS = ("rope", "learned", "sinusoidal", "alibi", "relative")


@dataclass(frozen=True)
class Case:
    batch: int
    kv_heads: int
    groups: int  # query heads per key/value head
    head_dim: int
    layers: int
    positional: str
    dtype: torch.dtype
    prompt: int  # tokens fed in the first call
    steps: int  # tokens fed one at a time afterwards
    pads: tuple[int, ...]  # left padding per row (a row may be all padding)
    seed: int

    @property
    def heads(self) -> int:
        return self.kv_heads * self.groups

    @property
    def total(self) -> int:
        return self.prompt + self.steps

    def stack(self) -> TransformerStack:
        torch.manual_seed(self.seed)
        d_model = self.heads * self.head_dim
        spec = LayerSpec(
            d_model=d_model,
            num_heads=self.heads,
            num_kv_heads=self.kv_heads,
            d_ff=2 * d_model,
            dropout=0.0,
            norm_first=True,
        )
        positional = make_positional(self.positional, d_model, self.heads, max_len=64, bidirectional=False)
        return TransformerStack(spec, self.layers, positional, causal=True).to(self.dtype).eval()

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings ``(B, T, D)``, the real-token mask ``(B, T)`` and positions ``(B, T)``."""
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.batch, self.total, self.heads * self.head_dim, generator=g, dtype=torch.float64)
        valid = torch.ones(self.batch, self.total, dtype=torch.bool)
        for row, pad in enumerate(self.pads):
            valid[row, :pad] = False
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        return x.to(self.dtype), valid, positions

    def cache(self, kind: str, slots: int):
        if kind == "dynamic":
            return DynamicCache()
        return StaticCache(self.layers, self.batch, self.kv_heads, self.head_dim, slots, dtype=self.dtype)


@st.composite
def cases(draw) -> Case:
    batch = draw(st.integers(1, 3))
    prompt = draw(st.integers(1, 6))
    steps = draw(st.integers(1, 6))
    total = prompt + steps
    pads = tuple(draw(st.integers(0, total if row else prompt - 1)) for row in range(batch))  # row 0 has a token
    return Case(
        batch=batch,
        kv_heads=draw(st.integers(1, 2)),
        groups=draw(st.sampled_from([1, 2, 3])),
        head_dim=draw(st.sampled_from([2, 4, 8])),
        layers=draw(st.integers(1, 2)),
        positional=draw(st.sampled_from(POSITIONS)),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        prompt=prompt,
        steps=steps,
        pads=pads,
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _full(case: Case) -> torch.Tensor:
    x, valid, positions = case.inputs()
    with torch.no_grad():
        return case.stack()(x, key_mask=valid, positions=positions).hidden  # (B, T, D)


def _incremental(case: Case, kind: str, extra_slots: int = 0) -> torch.Tensor:
    """The prompt in one call, then one token per call, over ``kind`` of cache."""
    x, valid, positions = case.inputs()
    stack, cache = case.stack(), case.cache(kind, case.total + extra_slots)
    outs = []
    with torch.no_grad():
        for start, end in [(0, case.prompt)] + [(t, t + 1) for t in range(case.prompt, case.total)]:
            if kind == "dynamic":
                key_mask = valid[:, :end]  # (B, cached + new)
            else:
                key_mask = torch.zeros(case.batch, case.total + extra_slots, dtype=torch.bool)
                key_mask[:, :end] = valid[:, :end]  # (B, slots): future slots hidden twice over
            outs.append(
                stack(x[:, start:end], key_mask=key_mask, positions=positions[:, start:end], cache=cache).hidden
            )
    assert cache.get_seq_length() == case.total
    return torch.cat(outs, dim=1)


def _close(a: torch.Tensor, b: torch.Tensor, case: Case, valid: torch.Tensor) -> None:
    real = valid[..., None].expand_as(a)  # padding queries compute what they like; real ones must agree
    diff = (a - b).abs()[real].max().item() if real.any() else 0.0
    assert diff <= TOL[case.dtype] * max(1.0, b.abs().max().item()), (case, diff)


@PROPERTY
@given(cases())
def test_cached_decoding_equals_one_full_pass(case):
    want = _full(case)
    _, valid, _ = case.inputs()
    for kind, extra in (("dynamic", 0), ("static", 0), ("static", 3)):
        got = _incremental(case, kind, extra)
        assert torch.isfinite(got).all(), (case, kind)
        _close(got, want, case, valid)


@PROPERTY
@given(cases(), st.data())
def test_rows_leaving_a_dynamic_cache_change_nothing_for_the_others(case, data):
    """Decode the prompt, keep (and reorder, repeat) some rows, decode on: the kept rows equal the
    same rows decoded in the full batch."""
    index = data.draw(st.lists(st.integers(0, case.batch - 1), min_size=1, max_size=4))
    x, valid, positions = case.inputs()
    stack = case.stack()
    with torch.no_grad():
        full = stack(x, key_mask=valid, positions=positions).hidden
        cache = DynamicCache()
        stack(x[:, : case.prompt], key_mask=valid[:, : case.prompt], positions=positions[:, : case.prompt], cache=cache)
        rows = torch.tensor(index)
        cache.reorder(rows)
        x, valid, positions = x[rows], valid[rows], positions[rows]
        outs = [
            stack(x[:, t : t + 1], key_mask=valid[:, : t + 1], positions=positions[:, t : t + 1], cache=cache).hidden
            for t in range(case.prompt, case.total)
        ]
    _close(torch.cat(outs, dim=1), full[rows][:, case.prompt :], case, valid[:, case.prompt :])


@PROPERTY
@given(cases(), st.integers(1, 5))
def test_rows_joining_a_dynamic_cache_after_left_padding_change_nothing(case, shift):
    """Two caches of different lengths: the shorter is left-padded, the rows stacked, and decoding
    goes on for both groups as if each were alone."""
    x, valid, positions = case.inputs()
    stack = case.stack()
    with torch.no_grad():
        full = stack(x, key_mask=valid, positions=positions).hidden
        long_cache, short_cache = DynamicCache(), DynamicCache()
        # the first group has seen the prompt; the second joins having seen only its last `keep` tokens
        keep = max(1, case.prompt - shift)
        stack(
            x[:, : case.prompt],
            key_mask=valid[:, : case.prompt],
            positions=positions[:, : case.prompt],
            cache=long_cache,
        )
        tail = slice(case.prompt - keep, case.prompt)
        tail_valid = valid[:, tail]
        tail_positions = (tail_valid.long().cumsum(-1) - 1).clamp(min=0)
        stack(x[:, tail], key_mask=tail_valid, positions=tail_positions, cache=short_cache)
        short_cache.pad_left(case.prompt - keep)
        long_cache.concat(short_cache)
        joined_valid = torch.cat(
            (
                valid[:, : case.prompt],
                torch.cat((torch.zeros(case.batch, case.prompt - keep, dtype=torch.bool), tail_valid), dim=1),
            )
        )
        next_pos = torch.cat((positions[:, case.prompt - 1] + valid[:, case.prompt - 1].long(), tail_valid.sum(-1)))
        outs, seen = [], joined_valid
        for t in range(case.prompt, case.total):
            step_valid = torch.cat((valid[:, t : t + 1], valid[:, t : t + 1]))
            seen = torch.cat((seen, step_valid), dim=1)
            outs.append(
                stack(
                    torch.cat((x[:, t : t + 1], x[:, t : t + 1])),
                    key_mask=seen,
                    positions=next_pos[:, None],
                    cache=long_cache,
                ).hidden
            )
            next_pos = next_pos + step_valid[:, 0].long()
        got = torch.cat(outs, dim=1)
        # the second group alone: its tail then the same steps, no padding columns
        alone_cache = DynamicCache()
        stack(x[:, tail], key_mask=tail_valid, positions=tail_positions, cache=alone_cache)
        alone_seen, alone_pos, alone = tail_valid, tail_valid.sum(-1), []
        for t in range(case.prompt, case.total):
            alone_seen = torch.cat((alone_seen, valid[:, t : t + 1]), dim=1)
            alone.append(
                stack(x[:, t : t + 1], key_mask=alone_seen, positions=alone_pos[:, None], cache=alone_cache).hidden
            )
            alone_pos = alone_pos + valid[:, t].long()
    step_valid = valid[:, case.prompt :]
    _close(got[: case.batch], full[:, case.prompt :], case, step_valid)
    _close(got[case.batch :], torch.cat(alone, dim=1), case, step_valid)


@PROPERTY
@given(cases(), st.data())
def test_window_cache_in_any_chunks_equals_the_banded_full_pass(case, data):
    """Padded rows too: the key mask is the real-token mask at the keys the cache reports."""
    window = data.draw(st.integers(1, case.total))
    sinks = data.draw(st.integers(0, window))
    chunks = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=case.total))
    x, valid, positions = case.inputs()
    stack = case.stack()
    with torch.no_grad():
        want = masked_full_pass(stack, x, causal_mask(case.total, window=window, sinks=sinks), positions, valid)
        cache, outs, start, step = SlidingWindowCache(window, sinks), [], 0, 0
        while start < case.total:
            end = min(case.total, start + chunks[step % len(chunks)])
            key_mask = valid[:, cache.key_slots(end - start)]  # (B, Tk)
            outs.append(
                stack(x[:, start:end], key_mask=key_mask, positions=positions[:, start:end], cache=cache).hidden
            )
            assert all(k.shape[2] == min(end, window + sinks) for k in cache.keys)
            start, step = end, step + 1
    got = torch.cat(outs, dim=1)
    assert torch.isfinite(got).all()
    _close(got, want, case, valid)


@PROPERTY
@given(cases(), st.data())
def test_sink_cache_that_covers_the_input_is_the_full_cache(case, data):
    window = data.draw(st.integers((case.total + 1) // 2, case.total + 2))
    sinks = data.draw(st.integers(max(0, case.total - window), window))  # S + W >= the input, S <= W
    x, valid, positions = case.inputs()
    valid[:] = True  # a sink cache assigns positions itself: rows of equal length
    stack = case.stack()
    with torch.no_grad():
        want = stack(x).hidden
        cache = SinkCache(window, sinks)
        got = torch.cat(
            [stack(x[:, : case.prompt], cache=cache).hidden]
            + [stack(x[:, t : t + 1], cache=cache).hidden for t in range(case.prompt, case.total)],
            dim=1,
        )
    _close(got, want, case, valid)

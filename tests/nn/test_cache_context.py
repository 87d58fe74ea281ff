"""Context memory through the one cache interface: sliding windows, attention sinks, segment memory.

* sliding-window attention: a window at least as long as the input is full causal attention; a
  shorter one equals the banded mask; ``SlidingWindowCache`` holds exactly W entries and, token by
  token or in chunks, computes what one masked pass computes;
* attention sinks: ``SinkCache`` holds exactly S + W entries after any number of steps, equals the
  full cache while S + W covers the input, and token by token equals StreamingLLM's definition
  (each token attends to the first S and last W tokens, at positions within the cache);
* Transformer-XL: segments with ``SegmentMemory`` equal one pass over their concatenation under
  the equivalent mask, and no gradient reaches the memory;
* bad configurations are one-line errors naming the value.
"""

from __future__ import annotations

import pytest
import torch

from attentive.models import DecoderLM
from attentive.nn import (
    DynamicCache,
    LayerSpec,
    SegmentMemory,
    SinkCache,
    SlidingWindowCache,
    TransformerStack,
    causal_mask,
    make_positional,
)
from helpers import masked_full_pass, tiny_gpt2

KINDS = ("rope", "alibi", "relative", "sinusoidal", "learned")
RELATIVE = ("rope", "alibi", "relative")
TOL = 2e-6


def make_stack(kind: str, layers: int = 2, window: int | None = None, rope_scaling=None) -> TransformerStack:
    torch.manual_seed(1)
    spec = LayerSpec(d_model=16, num_heads=2, d_ff=32, dropout=0.0, norm_first=True, attention_window=window)
    positional = make_positional(kind, 16, 2, max_len=128, bidirectional=False, rope_scaling=rope_scaling)
    return TransformerStack(spec, layers, positional, causal=True).eval()


def inputs(length: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, length, 16, generator=torch.Generator().manual_seed(0))


def in_chunks(stack, x, cache, chunk: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([stack(x[:, i : i + chunk], cache=cache).hidden for i in range(0, x.shape[1], chunk)], dim=1)


# ----------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("kind", KINDS)
def test_window_at_least_the_length_is_full_causal_attention(kind):
    x = inputs(12)
    with torch.no_grad():
        full = make_stack(kind)(x).hidden
        for window in (12, 13, 100):
            assert torch.equal(make_stack(kind, window=window)(x).hidden, full)
        # the masked path (a bounded cache forces it) agrees too
        assert (in_chunks(make_stack(kind), x, SlidingWindowCache(12), 5) - full).abs().max() <= TOL


@pytest.mark.parametrize("kind", KINDS)
def test_shorter_window_equals_the_banded_mask(kind):
    x = inputs(20)
    with torch.no_grad():
        got = make_stack(kind, window=5)(x).hidden
        want = masked_full_pass(make_stack(kind), x, causal_mask(20, window=5))
        assert (got - want).abs().max() <= TOL
        assert (got - make_stack(kind)(x).hidden).abs().max() > 1e-3  # the window does change things


def test_banded_mask_sees_the_last_w_keys_and_the_sinks():
    mask = causal_mask(6, window=3, sinks=1)[0, 0]
    assert mask.int().tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 0, 1, 1, 1, 0],
        [1, 0, 0, 1, 1, 1],
    ]
    slots = causal_mask(2, q_slots=torch.tensor([7, 8]), k_slots=torch.tensor([0, 6, 7, 8]), window=2, sinks=1)
    assert slots[0, 0].int().tolist() == [[1, 1, 1, 0], [1, 0, 1, 1]]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sinks", [0, 2])
def test_window_cache_holds_w_entries_and_equals_the_masked_full_pass(kind, sinks):
    window, length = 6, 30
    x = inputs(length)
    stack = make_stack(kind)
    with torch.no_grad():
        want = masked_full_pass(stack, x, causal_mask(length, window=window, sinks=sinks))
    for chunk in (1, 4, 7):
        cache = SlidingWindowCache(window, sinks)
        outs = []
        with torch.no_grad():
            for start in range(0, length, chunk):
                outs.append(stack(x[:, start : start + chunk], cache=cache).hidden)
                seen = min(start + chunk, length)
                assert all(k.shape[2] == min(window + sinks, seen) for k in cache.keys + cache.values)
        assert cache.key_slots(1).tolist() == list(range(sinks)) + list(range(length - window + 1, length + 1))
        assert (torch.cat(outs, dim=1) - want).abs().max() <= TOL, chunk
    assert cache.nbytes() == 2 * 2 * (window + sinks) * 2 * 2 * 8 * 4  # layers x (k, v) x slots x B x Hkv x Dh x 4


# ----------------------------------------------------------------------------- attention sinks


@pytest.mark.parametrize("kind", RELATIVE)
def test_sink_cache_holds_exactly_s_plus_w_after_any_number_of_steps(kind):
    window, sinks = 5, 3
    stack, cache = make_stack(kind), SinkCache(window, sinks)
    x = inputs(40)
    with torch.no_grad():
        for t in range(40):
            stack(x[:, t : t + 1], cache=cache)
            assert [k.shape[2] for k in cache.keys + cache.values] == [min(t + 1, window + sinks)] * 4
            assert cache.slots(1).item() == min(t + 1, window + sinks - 1)  # positions stay in the cache
    assert cache.seen == 40


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 3])
def test_sink_cache_equals_the_full_cache_while_s_plus_w_covers_the_input(kind, chunk):
    x = inputs(12)
    stack = make_stack(kind)
    full = in_chunks(stack, x, DynamicCache(), chunk)
    for window, sinks in ((8, 4), (12, 0), (9, 9)):
        assert (in_chunks(stack, x, SinkCache(window, sinks), chunk) - full).abs().max() <= TOL


@pytest.mark.parametrize("kind", RELATIVE)
def test_sink_cache_token_by_token_is_streaming_llm(kind):
    """Each token attends to the first S and the last W tokens (itself included) at positions
    within the cache: a one-layer stack over exactly those tokens, positions 0 .. n - 1, gives the
    same output. RoPE keys that move left are rotated by the move (YaRN scaling included)."""
    window, sinks, length = 6, 2, 40
    stack = make_stack(kind, layers=1, rope_scaling={"rope_type": "yarn", "factor": 2.0} if kind == "rope" else None)
    x = inputs(length)
    got = in_chunks(stack, x, SinkCache(window, sinks), 1)
    with torch.no_grad():
        for t in range(length):
            kept = list(range(min(sinks, t + 1))) + list(range(max(sinks, t - window + 1), t + 1))
            want = stack(x[:, kept]).hidden[:, -1]
            assert (got[:, t] - want).abs().max() <= TOL, t


@pytest.mark.parametrize("kind", RELATIVE)
def test_sink_cache_without_sinks_is_exact_in_chunks(kind):
    """Without sinks every distance is a true distance, so chunks change nothing; with sinks a
    chunk sees the same keys, only the sinks a few positions further away (documented)."""
    stack, x = make_stack(kind), inputs(30)
    one = in_chunks(stack, x, SinkCache(6, 0), 1)
    assert (in_chunks(stack, x, SinkCache(6, 0), 4) - one).abs().max() <= TOL
    if kind != "sinusoidal":
        absolute = in_chunks(stack, x, SlidingWindowCache(6), 4)  # relative kinds: positions are only distances
        assert (absolute - one).abs().max() <= TOL


# ----------------------------------------------------------------------------- Transformer-XL


def xl_mask(length: int, segment: int, memory: int) -> torch.Tensor:
    """Query i sees keys <= i back to ``memory`` before its segment's start."""
    q, k = torch.arange(length)[:, None], torch.arange(length)[None, :]
    start = (q // segment) * segment
    return ((k <= q) & (k >= start - memory))[None, None]  # (1, 1, T, T)


@pytest.mark.parametrize("kind", RELATIVE)
@pytest.mark.parametrize("memory", [3, 8, 12])
def test_segments_with_memory_equal_one_pass_under_the_equivalent_mask(kind, memory):
    segment, stack, x = 8, make_stack(kind), inputs(24)
    cache = SegmentMemory(memory)
    got = in_chunks(stack, x, cache, segment)
    with torch.no_grad():
        want = masked_full_pass(stack, x, xl_mask(24, segment, memory))
    assert (got - want).abs().max() <= 1e-5
    assert all(m.shape == (2, memory, 16) for m in cache.memory)
    if memory == segment:  # memory = segment length: two segments are exactly one causal pass
        with torch.no_grad():
            assert (
                in_chunks(stack, x[:, :16], SegmentMemory(segment), segment) - stack(x[:, :16]).hidden
            ).abs().max() <= 1e-5


def test_no_gradient_reaches_the_memory():
    stack = make_stack("rope").train()
    x = inputs(16).requires_grad_()
    memory = SegmentMemory(8)
    stack(x[:, :8], cache=memory)
    assert not any(m.requires_grad for m in memory.memory)
    out = stack(x[:, 8:], cache=memory).hidden
    first, second = torch.autograd.grad(out.sum(), x, retain_graph=True)[0].split(8, dim=1)
    assert torch.equal(first, torch.zeros_like(first)) and second.abs().sum() > 0
    out.sum().backward()  # the parameters do get gradients, through the segment's own path
    assert all(p.grad is not None for p in stack.parameters() if p.requires_grad)


def test_decoder_lm_takes_a_segment_memory():
    model = DecoderLM(tiny_gpt2(positional="alibi", memory_len=8)).eval()
    ids = torch.randint(1, 50, (2, 16))
    memory = SegmentMemory(model.config.memory_len)
    with torch.no_grad():
        two = torch.cat([model(ids[:, :8], cache=memory), model(ids[:, 8:], cache=memory)], dim=1)
        assert (two - model(ids)).abs().max() <= 1e-5  # M = segment: one causal pass
    with pytest.raises(ValueError, match="memory holds 2 rows, the segment has 1"):
        model(ids[:1, :4], cache=memory)


# ----------------------------------------------------------------------------- bad configurations


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SlidingWindowCache(0), "window must be a positive integer .*got 0"),
        (lambda: SinkCache(-4, 0), "window must be a positive integer .*got -4"),
        (lambda: SinkCache(4, 5), r"sinks \(5\) must not exceed the window \(4\)"),
        (lambda: SegmentMemory(0), "memory_len must be a positive integer, got 0"),
        (lambda: tiny_gpt2(attention_window=0), "attention_window must be a positive number of positions .*got 0"),
        (
            lambda: tiny_gpt2(positional="learned", memory_len=16),
            "memory_len=16 .*needs relative positions .*not positional='learned'",
        ),
        (lambda: tiny_gpt2(positional="sinusoidal", memory_len=16), "not positional='sinusoidal'"),
        (lambda: tiny_gpt2(positional="rope", memory_len=-1), "memory_len must be an integer >= 0 .*got -1"),
        (lambda: causal_mask(4, window=0), "attention window must be >= 1, got 0"),
    ],
)
def test_bad_configurations_are_one_line_errors_naming_the_value(make, message):
    with pytest.raises(ValueError, match=message) as err:
        make()
    assert "\n" not in str(err.value)

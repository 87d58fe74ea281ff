"""Edges the property tests passed by (found by mutation testing): the sliding window's exact
band (W keys counting the query itself, not W + 1), relative-position options passed through
``make_positional``, and position biases for batched positions keeping their batch dimension."""

from __future__ import annotations

import re

import pytest
import torch

from attentive.nn.masks import band_mask, causal_mask
from attentive.nn.positional import ALiBi, RelativePositionBias, make_positional


@pytest.mark.parametrize("window, sinks", [(1, 0), (3, 0), (3, 2), (8, 0)])
def test_the_sliding_window_sees_exactly_w_keys_counting_itself(window, sinks):
    n = 8
    got = causal_mask(n, window=window, sinks=sinks)[0, 0]
    expected = torch.tensor([[j <= i and (j > i - window or j < sinks) for j in range(n)] for i in range(n)])
    assert torch.equal(got, expected)
    assert int(got[-1].sum()) == min(window, n) + min(sinks, max(n - window, 0))


def test_the_encoders_band_is_symmetric_and_w_wide():
    slots = torch.arange(6)
    got = band_mask(slots, slots, 2)[0, 0]
    expected = torch.tensor([[abs(i - j) < 2 for j in range(6)] for i in range(6)])
    assert torch.equal(got, expected)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_make_positional_passes_the_relative_options_through(bidirectional):
    module = make_positional(
        "relative", 16, 2, relative_buckets=8, relative_max_distance=20, bidirectional=bidirectional
    )
    assert isinstance(module, RelativePositionBias)
    assert (module.num_buckets, module.max_distance, module.bidirectional) == (8, 20, bidirectional)
    assert module.embedding.weight.shape == (8, 2)


@pytest.mark.parametrize("module", [ALiBi(2), RelativePositionBias(2, 8, 20)], ids=["alibi", "relative"])
def test_position_biases_are_b_h_tq_tk_for_batched_and_shared_positions(module):
    shared = module.attention_bias(torch.arange(3), torch.arange(5))
    assert shared.shape == (1, 2, 3, 5)
    batched = module.attention_bias(torch.arange(3).expand(4, 3), torch.arange(5).expand(4, 5))
    assert batched.shape == (4, 2, 3, 5)
    assert torch.equal(batched[2], shared[0])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_segment_memory_length_must_be_a_positive_integer(bad):
    from attentive.nn.cache import SegmentMemory

    assert SegmentMemory(1).memory_len == 1
    with pytest.raises(ValueError, match=f"^memory_len must be a positive integer, got {re.escape(repr(bad))}$"):
        SegmentMemory(bad)

"""KV caches: one interface (update, slots, key_length, reset, reorder) for dynamic and static
caches, the static cache's position kept on the device and checked on the host, and rows that
join and leave a dynamic cache."""

from __future__ import annotations

import pytest
import torch

from attentive.nn import DynamicCache, StaticCache


def _kv(batch=2, heads=1, new=1, dim=2, value=None):
    t = torch.randn(batch, heads, new, dim) if value is None else torch.full((batch, heads, new, dim), float(value))
    return t, t.clone()


def test_static_cache_position_advances_on_the_device_and_is_bounds_checked():
    """The tensor-slot mode used to never advance its length and had no bounds check (a device
    assert on CUDA); now every update moves the device position and the host copy together."""
    cache = StaticCache(2, 2, 1, 2, 4)
    for step in range(4):
        assert cache.slots(1).tolist() == [step] and cache.get_seq_length() == step
        for layer in range(2):
            cache.update(layer, *_kv(value=step + 1))
    assert int(cache.position) == cache.get_seq_length() == 4
    assert cache.keys[0, 0, 0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0]  # each step wrote its own slot
    with pytest.raises(ValueError, match=r"static cache is full: 4 \+ 1 tokens > max_len 4"):
        cache.update(0, *_kv())
    with pytest.raises(ValueError, match="max_len 4"):
        cache.advance(1)


def test_reset_is_part_of_the_interface_for_every_cache():
    """``reset`` existed on the static cache only and was reached through getattr."""
    for cache in (DynamicCache(), StaticCache(1, 2, 1, 2, 4)):
        cache.update(0, *_kv(new=3))
        cache.set_cross(0, *_kv(new=5))
        cache.reset()
        assert cache.get_seq_length() == 0 and not cache.has_cross(0)
        assert cache.slots(2).tolist() == [0, 1]


def test_static_reorder_keeps_the_buffers_a_cuda_graph_captured():
    """``reorder`` used to reallocate the static buffers, so a captured graph kept writing the old ones."""
    cache = StaticCache(1, 3, 1, 2, 4)
    k, v = _kv(batch=3, new=2)
    cache.update(0, k, v)
    cache.set_cross(0, *_kv(batch=3, new=5))
    addresses = [cache.keys.data_ptr(), cache.values.data_ptr(), cache.get_cross(0)[0].data_ptr()]
    cache.reorder(torch.tensor([2, 0, 0]))
    assert [cache.keys.data_ptr(), cache.values.data_ptr(), cache.get_cross(0)[0].data_ptr()] == addresses
    assert torch.equal(cache.keys[0, :, :, :2], k[[2, 0, 0]])
    with pytest.raises(ValueError, match="keeps its batch of 3 rows"):
        cache.reorder(torch.tensor([0, 1]))


def test_dynamic_cache_rows_join_after_left_padding_and_leading_slots_trim():
    a, b = DynamicCache(), DynamicCache()
    ka, va = _kv(batch=2, new=3)
    kb, vb = _kv(batch=1, new=1)
    a.update(0, ka, va)
    b.update(0, kb, vb)
    a.set_cross(0, *_kv(batch=2, new=4))
    b.set_cross(0, *_kv(batch=1, new=6))
    with pytest.raises(ValueError, match="3 and 1 slots"):
        a.concat(b)
    b.pad_left(2)
    a.concat(b)
    assert a.get_seq_length() == 3 and a.keys[0].shape[0] == 3
    assert torch.equal(a.keys[0][2, :, 2:], kb[0]) and not a.keys[0][2, :, :2].any()
    assert a.get_cross(0)[0].shape[2] == 6  # memories padded to the longer one
    a.trim_left(2)
    assert a.get_seq_length() == 1 and torch.equal(a.keys[0][:2], ka[:, :, 2:])


def test_caches_report_where_new_tokens_go():
    dynamic, static = DynamicCache(), StaticCache(1, 1, 1, 2, 8)
    for cache in (dynamic, static):
        cache.update(0, *_kv(batch=1, new=3))
    assert dynamic.slots(2).tolist() == static.slots(2).tolist() == [3, 4]
    assert dynamic.key_length(2) == 5 and static.key_length(2) == 8  # a static cache shows all its slots

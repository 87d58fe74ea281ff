"""A compiled decoding step writes the static cache in place: inductor's code allocates no copy
of the all-layer buffer (before this was fixed, every layer's write copied the whole
``(layers, B, Hkv, L, Dh)`` buffer twice a step: 3.4 GB a step for SmolLM2 at batch 16)."""

from __future__ import annotations

import torch
from torch._inductor.utils import run_and_get_code

from attentive.nn.cache import StaticCache

LAYERS, ROWS, HEADS, SLOTS, DIM = 4, 2, 3, 7, 8


def _step(cache: StaticCache, k: torch.Tensor) -> torch.Tensor:
    total = k.new_zeros(())
    for layer in range(LAYERS):
        keys, values = cache.update(layer, k + layer, k - layer)  # (B, Hkv, L, Dh)
        total = total + keys.sum() + values.sum()
    return total


def test_compiled_static_cache_update_copies_no_buffer():
    torch._dynamo.reset()
    cache = StaticCache(LAYERS, ROWS, HEADS, DIM, SLOTS)
    k = torch.randn(ROWS, HEADS, 1, DIM)
    step = torch.compile(_step, fullgraph=True)
    with torch.no_grad():
        total, code = run_and_get_code(step, cache, k)
    cache.advance(1)
    full = f"({LAYERS}, {ROWS}, {HEADS}, {SLOTS}, {DIM})"
    allocations = [
        line.strip() for source in code for line in source.splitlines() if "empty_strided" in line and full in line
    ]
    assert allocations == [], allocations
    # written in place, once per layer, at slot 0
    for layer in range(LAYERS):
        assert torch.equal(cache.keys[layer, :, :, :1], k + layer)
        assert torch.equal(cache.values[layer, :, :, :1], k - layer)
    assert not cache.keys[:, :, :, 1:].any()
    assert torch.allclose(total, sum((k + i).sum() + (k - i).sum() for i in range(LAYERS)), atol=1e-4)
    torch._dynamo.reset()

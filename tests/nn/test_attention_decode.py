"""attention()'s path for one query per row on CPU (decoding without gradients) gives the fused
SDPA path's output: grouped-query heads, key masks, per-head masks, biases, fully masked rows."""

from __future__ import annotations

import pytest
import torch

from attentive.nn.attention import _one_query_on_cpu
from attentive.nn.attention import attention


def _fused(q, k, v, **kwargs):
    with torch.enable_grad():  # the one-query path is taken without gradients only
        out, _ = attention(q, k, v, **kwargs)
    return out.detach()


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (9, 3), (8, 1)])
@pytest.mark.parametrize("kind", ["none", "key_mask", "head_mask", "bias", "mask_and_bias"])
def test_one_query_equals_fused(heads, kv_heads, kind):
    g = torch.Generator().manual_seed(heads * 10 + kv_heads)
    batch, k_len, dim = 3, 11, 16
    q = torch.randn(batch, heads, 1, dim, generator=g)
    k, v = torch.randn(batch, kv_heads, k_len, dim, generator=g), torch.randn(batch, kv_heads, k_len, dim, generator=g)
    kwargs = {}
    if kind in ("key_mask", "mask_and_bias"):
        mask = torch.rand(batch, 1, 1, k_len, generator=g) > 0.3
        mask[1] = False  # a row that sees nothing: zeros on both paths
        kwargs["mask"] = mask
    if kind == "head_mask":
        kwargs["mask"] = torch.rand(batch, heads, 1, k_len, generator=g) > 0.5
    if kind in ("bias", "mask_and_bias"):
        kwargs["bias"] = torch.randn(1, heads, 1, k_len, generator=g)
    want = _fused(q, k, v, **kwargs)
    with torch.no_grad():
        assert _one_query_on_cpu(q, 0.0)
        got, _ = attention(q, k, v, **kwargs)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if kind in ("key_mask", "mask_and_bias"):
        assert torch.equal(got[1], torch.zeros_like(got[1]))


def test_one_query_path_is_only_for_inference_on_cpu():
    q = torch.randn(1, 2, 1, 8)
    assert not _one_query_on_cpu(q, 0.1)  # dropout
    assert not _one_query_on_cpu(torch.randn(1, 2, 3, 8), 0.0)  # several queries
    with torch.enable_grad():
        assert not _one_query_on_cpu(q, 0.0)

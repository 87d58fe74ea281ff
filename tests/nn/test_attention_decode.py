"""attention()'s path for one query per row on CPU (decoding without gradients) gives the fused
SDPA path's output: grouped-query heads, key masks, per-head masks, biases, fully masked rows,
in the CPU kernel (``attend_one``) and written out in PyTorch ops."""

from __future__ import annotations

import importlib

import pytest
import torch

from attentive.nn import kernels
from attentive.nn.attention import _one_query_on_cpu
from attentive.nn.attention import attention

attention_module = importlib.import_module("attentive.nn.attention")  # the module (the package exports the function)
needs_kernels = pytest.mark.skipif(kernels.panel_ops() is None, reason=kernels.kernel_status())


@pytest.fixture(params=[pytest.param("kernel", marks=needs_kernels), "written out"])
def one_query_path(request, monkeypatch):
    """Which one-query implementation runs; the kernel's calls are counted to show it ran."""
    calls = []
    if request.param == "kernel":
        ops = kernels.panel_ops()

        class Counting:
            def attend_one(self, *args):
                calls.append(args[0].shape)
                return ops.attend_one(*args)

        monkeypatch.setattr(attention_module, "loaded_ops", lambda: Counting())
    else:
        monkeypatch.setattr(attention_module, "loaded_ops", lambda: None)
    return request.param, calls


def _fused(q, k, v, **kwargs):
    with torch.enable_grad():  # the one-query path is taken without gradients only
        out, _ = attention(q, k, v, **kwargs)
    return out.detach()


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (9, 3), (8, 1)])
@pytest.mark.parametrize("kind", ["none", "key_mask", "head_mask", "bias", "mask_and_bias"])
@pytest.mark.parametrize("k_len, dim", [(11, 16), (37, 64), (1500, 64), (20, 24), (9, 32), (5, 128)])
def test_one_query_equals_fused(heads, kv_heads, kind, k_len, dim, one_query_path):
    g = torch.Generator().manual_seed(heads * 10 + kv_heads + k_len)
    batch = 3
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
    path, calls = one_query_path
    assert len(calls) == (1 if path == "kernel" else 0)


@needs_kernels
def test_kernel_reads_views_of_a_larger_cache_and_zeroes_masked_rows():
    """Keys and values as a static cache hands them over (a prefix view of a longer buffer),
    a query as a slice of a fused projection, and a row with every key masked."""
    g = torch.Generator().manual_seed(7)
    buffer_k, buffer_v = torch.randn(2, 3, 40, 64, generator=g), torch.randn(2, 3, 40, 64, generator=g)
    k, v = buffer_k[:, :, :23], buffer_v[:, :, :23]  # (B, Hkv, 23, Dh), not contiguous
    q = torch.randn(2, 1, 9 * 64 * 2, generator=g)[..., : 9 * 64].reshape(2, 1, 9, 64).transpose(1, 2)
    mask = torch.ones(2, 1, 1, 23, dtype=torch.bool)
    mask[1] = False
    got = kernels.panel_ops().attend_one(q, k, v, mask, None, 0.125)
    want = torch.softmax((q @ k.repeat_interleave(3, 1).transpose(-1, -2)) * 0.125, -1) @ v.repeat_interleave(3, 1)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(got[1], torch.zeros_like(got[1]))


@needs_kernels
def test_kernel_softmax_is_exact_where_one_key_dominates():
    """The kernel's vectorised exp: scores far apart give weights of exactly 1 and 0 (no NaN from
    exp underflow), and equal scores give equal weights."""
    q = torch.zeros(1, 1, 1, 16)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, 33, 16)
    k[0, 0, 5, 0] = 1e4  # one key far above the rest
    v = torch.arange(33, dtype=torch.float32).reshape(1, 1, 33, 1).expand(1, 1, 33, 16).contiguous()
    out = kernels.panel_ops().attend_one(q, k, v, None, None, 1.0)
    assert torch.equal(out, torch.full((1, 1, 1, 16), 5.0))
    flat = kernels.panel_ops().attend_one(q, torch.zeros(1, 1, 33, 16), v, None, None, 1.0)
    torch.testing.assert_close(flat, torch.full((1, 1, 1, 16), 16.0))


def test_plain_decoding_does_not_build_the_kernels(monkeypatch):
    """attention() uses the kernels only once something has loaded them (optimize(), quantize=):
    a plain model's first token never waits for a compiler."""
    monkeypatch.setattr(kernels, "_state", {})
    q, k, v = torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    with torch.no_grad():
        attention(q, k, v)
    assert kernels._state == {}


def test_one_query_path_is_only_for_inference_on_cpu():
    q = torch.randn(1, 2, 1, 8)
    assert not _one_query_on_cpu(q, 0.1)  # dropout
    assert not _one_query_on_cpu(torch.randn(1, 2, 3, 8), 0.0)  # several queries
    with torch.enable_grad():
        assert not _one_query_on_cpu(q, 0.0)

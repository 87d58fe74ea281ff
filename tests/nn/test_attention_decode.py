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


def _reference_float64(q, k, v, mask, bias, scale):
    """softmax(q K^T * scale + bias, masked) V in float64, grouped-query heads repeated; rows with
    every key masked give zeros."""
    groups = q.shape[1] // k.shape[1]
    k64, v64 = k.double().repeat_interleave(groups, 1), v.double().repeat_interleave(groups, 1)
    scores = (q.double() @ k64.transpose(-1, -2)) * scale  # (B, H, 1, Tk)
    if bias is not None:
        scores = scores + bias.double()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, -1).nan_to_num(0.0)  # a fully masked row: NaN -> 0
    return (weights @ v64).float()


def _slot_mask(batch, heads, slots, layout, g):
    """A key mask over a static cache of `slots` slots per row, each row using a different span."""
    lengths = [1, 13, 64, 200][:batch]  # spans shorter than, equal to and not a multiple of 16
    mask = torch.zeros(batch, 1, 1, slots, dtype=torch.bool)
    if layout == "prefix":  # slot cache: a row's first n slots
        for row, n in enumerate(lengths):
            mask[row, ..., :n] = True
    elif layout == "right_aligned":  # left padding: a row's last n slots
        for row, n in enumerate(lengths):
            mask[row, ..., slots - n :] = True
    elif layout == "holes":  # a span at an odd offset with masked keys inside it
        for row, n in enumerate(lengths):
            start = 7 + 3 * row
            mask[row, ..., start : start + n] = torch.rand(n, generator=g) > 0.4
            mask[row, ..., start] = True
    elif layout == "per_head":  # every query head its own span (a group's spans differ)
        mask = torch.zeros(batch, heads, 1, slots, dtype=torch.bool)
        for row in range(batch):
            for h in range(heads):
                start = int(torch.randint(0, slots // 2, (1,), generator=g))
                mask[row, h, 0, start : start + int(torch.randint(1, slots // 2, (1,), generator=g))] = True
        mask[0, 0] = False  # one head that sees nothing, its group's others do
        if heads > 1:
            mask[0, 1:] = False
            mask[0, 1, 0, slots - 1] = True  # and one that sees only the last slot
    if batch > 1:
        mask[batch - 1] = False  # a row that sees nothing
    return mask


@needs_kernels
@pytest.mark.parametrize("heads, kv_heads", [(9, 3), (4, 4), (8, 1)])
@pytest.mark.parametrize("layout", ["prefix", "right_aligned", "holes", "per_head"])
@pytest.mark.parametrize("dim", [64, 24, 32, 128])
@pytest.mark.parametrize("with_bias", [False, True])
def test_kernel_reads_only_the_allowed_span_of_a_slot_cache(heads, kv_heads, layout, dim, with_bias):
    """A static cache of 512 slots, rows using a few of them (first n, last n, a span with holes,
    a span per head, none): the kernel, which computes over each group's allowed span only,
    gives the float64 reference's output."""
    g = torch.Generator().manual_seed(heads + kv_heads + dim)
    batch, slots = 4, 512
    q = torch.randn(batch, heads, 1, dim, generator=g)
    k = torch.randn(batch, kv_heads, slots, dim, generator=g)
    v = torch.randn(batch, kv_heads, slots, dim, generator=g)
    mask = _slot_mask(batch, heads, slots, layout, g)
    bias = torch.randn(batch, heads, 1, slots, generator=g) if with_bias else None
    got = kernels.panel_ops().attend_one(q, k, v, mask, bias, dim**-0.5)
    want = _reference_float64(q, k, v, mask.expand(batch, heads, 1, slots), bias, dim**-0.5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(got[batch - 1], torch.zeros_like(got[batch - 1]))
    if layout == "per_head":
        assert torch.equal(got[0, 0], torch.zeros_like(got[0, 0]))


@needs_kernels
@pytest.mark.parametrize("dim", [64, 24])
def test_kernel_over_a_span_gives_the_bits_of_the_whole_cache(dim):
    """Rows allowed a few of 2,048 slots (the first n, the last n, a span at an odd offset): the
    kernel, which reads only the span, gives bit for bit what it gives over every slot with the
    others at -inf (a bias of -inf and no mask: no span), and, to rounding, what a cache of just
    those keys gives; as a view of a longer cache and with masks broadcast over heads, over the
    batch, and one flag for every key."""
    g = torch.Generator().manual_seed(dim)
    slots = 2048
    q = torch.randn(2, 9, 1, dim, generator=g)
    cache_k = torch.randn(2, 3, slots + 16, dim, generator=g)  # the kernel reads a view
    cache_v = torch.randn(2, 3, slots + 16, dim, generator=g)
    k, v = cache_k[:, :, :slots], cache_v[:, :, :slots]
    ops = kernels.panel_ops()
    slot = torch.arange(slots).reshape(1, 1, 1, slots)
    for start, n in ((0, 1), (0, 15), (0, 64), (0, 257), (0, 2048), (2048 - 64, 64), (2048 - 15, 15), (37, 200)):
        mask = (slot >= start) & (slot < start + n)  # (1, 1, 1, L): broadcast over the batch and heads
        got = ops.attend_one(q, k, v, mask, None, 0.125)
        everything = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
        assert torch.equal(got, ops.attend_one(q, k, v, None, everything, 0.125))
        assert torch.equal(got, ops.attend_one(q, k, v, mask.expand(2, 9, 1, slots).contiguous(), None, 0.125))
        span = slice(start, start + n)
        alone = ops.attend_one(q, k[:, :, span], v[:, :, span], None, None, 0.125)
        torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-6)
    all_keys = ops.attend_one(q, k, v, torch.ones(1, 1, 1, 1, dtype=torch.bool), None, 0.125)
    assert torch.equal(all_keys, ops.attend_one(q, k, v, None, None, 0.125))
    no_key = ops.attend_one(q, k, v, torch.zeros(1, 1, 1, 1, dtype=torch.bool), None, 0.125)
    assert torch.equal(no_key, torch.zeros_like(no_key))


@needs_kernels
@pytest.mark.parametrize("layout", ["prefix", "right_aligned", "holes", "per_head"])
@pytest.mark.parametrize("dim", [64, 24])
def test_kernel_with_a_mask_gives_the_bits_of_the_whole_cache(layout, dim):
    """Every slot-cache layout above, with a bias: the same bits as the mask written into the bias
    as -inf (the whole cache computed, as before spans)."""
    g = torch.Generator().manual_seed(dim + 1)
    batch, heads, slots = 4, 9, 300
    q = torch.randn(batch, heads, 1, dim, generator=g)
    k, v = torch.randn(batch, 3, slots, dim, generator=g), torch.randn(batch, 3, slots, dim, generator=g)
    mask = _slot_mask(batch, heads, slots, layout, g)
    bias = torch.randn(batch, heads, 1, slots, generator=g)
    got = kernels.panel_ops().attend_one(q, k, v, mask, bias, dim**-0.5)
    want = kernels.panel_ops().attend_one(q, k, v, None, bias.masked_fill(~mask, float("-inf")), dim**-0.5)
    assert torch.equal(got, want)

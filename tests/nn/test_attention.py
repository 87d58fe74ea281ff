"""attention(): reference and fused paths agree; masks, bias, GQA, dropout, empty rows, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from attentive.nn import MultiHeadAttention, attention, causal_mask

FP32_TOL = 1e-5
BF16_TOL = 2e-2  # bf16 has an 8-bit mantissa: outputs of magnitude ~1 agree to about 1e-2


def _inputs(batch, heads, kv_heads, q_len, k_len, head_dim, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, q_len, head_dim, generator=g)
    k = torch.randn(batch, kv_heads, k_len, head_dim, generator=g)
    v = torch.randn(batch, kv_heads, k_len, head_dim, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _padding(batch, k_len, seed=1):
    """Right padding with at least one real key per row: (B, 1, 1, Tk)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, k_len + 1, (batch,), generator=g)
    lengths[0] = max(1, k_len - 2)  # make sure something is actually padded
    return (torch.arange(k_len)[None] < lengths[:, None])[:, None, None, :]


def _naive(q, k, v, mask=None, bias=None, scale=None):
    """Direct, loop-free restatement of softmax(QK^T / sqrt(d) + bias) V in float64."""
    q, k, v = q.double(), k.double(), v.double()
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
    if bias is not None:
        scores = scores + bias.double()
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    return torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, -1), v)


MODES = ["none", "causal", "padding", "causal+padding", "bias", "bias+padding", "bias+causal"]


def _case(mode, batch, heads, q_len, k_len, dtype=torch.float32):
    """(mask, bias, is_causal) for a named masking mode."""
    mask = bias = None
    is_causal = "causal" in mode
    if "padding" in mode:
        mask = _padding(batch, k_len)
    if "bias" in mode:
        bias = torch.randn(1, heads, q_len, k_len, generator=torch.Generator().manual_seed(2)).to(dtype)
    return mask, bias, is_causal


@pytest.mark.parametrize("head_dim", [16, 32, 64, 80])
@pytest.mark.parametrize("mode", MODES)
def test_reference_matches_fused_fp32(head_dim, mode):
    g = torch.Generator().manual_seed(head_dim + len(mode))
    batch, heads = int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g))
    q_len = int(torch.randint(1, 12, (1,), generator=g))
    k_len = q_len if "causal" in mode else int(torch.randint(1, 12, (1,), generator=g))
    q, k, v = _inputs(batch, heads, heads, q_len, k_len, head_dim)
    mask, bias, is_causal = _case(mode, batch, heads, q_len, k_len)
    ref, _ = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, impl="reference")
    fused, _ = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, impl="fused")
    assert ref.shape == (batch, heads, q_len, head_dim)
    assert (ref - fused).abs().max() <= FP32_TOL
    full_mask = mask
    if is_causal:
        full_mask = causal_mask(q_len) if mask is None else mask & causal_mask(q_len)
    assert (ref.double() - _naive(q, k, v, full_mask, bias)).abs().max() <= FP32_TOL


@pytest.mark.parametrize("mode", ["none", "causal+padding", "bias+padding"])
@pytest.mark.parametrize("head_dim", [32, 80])
def test_reference_matches_fused_bf16(head_dim, mode):
    q, k, v = _inputs(2, 4, 4, 9, 9, head_dim, dtype=torch.bfloat16)
    mask, bias, is_causal = _case(mode, 2, 4, 9, 9, dtype=torch.bfloat16)
    ref, _ = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, impl="reference")
    fused, _ = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, impl="fused")
    assert ref.dtype == fused.dtype == torch.bfloat16
    assert (ref.float() - fused.float()).abs().max() <= BF16_TOL


@pytest.mark.parametrize("q_len,k_len", [(1, 7), (5, 13), (9, 3)])
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_cross_attention_different_lengths(q_len, k_len, impl):
    q, k, v = _inputs(2, 4, 4, q_len, k_len, 16)
    mask = _padding(2, k_len)
    out, _ = attention(q, k, v, mask=mask, impl=impl)
    assert out.shape == (2, 4, q_len, 16)
    assert (out.double() - _naive(q, k, v, mask)).abs().max() <= FP32_TOL


@pytest.mark.parametrize("kv_heads", [1, 2])
@pytest.mark.parametrize("mode", ["none", "causal", "causal+padding", "bias+padding"])
def test_grouped_query_attention(kv_heads, mode):
    heads, q_len = 4, 6
    q, k, v = _inputs(2, heads, kv_heads, q_len, q_len, 32)
    mask, bias, is_causal = _case(mode, 2, heads, q_len, q_len)
    k_rep, v_rep = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
    explicit, _ = attention(q, k_rep, v_rep, mask=mask, bias=bias, is_causal=is_causal, impl="reference")
    for impl in ("reference", "fused"):
        gqa, _ = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, impl=impl)
        assert (gqa - explicit).abs().max() <= FP32_TOL, impl
    # query head h uses kv head h // groups: head 0 and the last head must differ when kv_heads > 1
    if kv_heads > 1:
        assert not torch.allclose(explicit[:, 0], explicit[:, -1])


def test_gqa_rejects_non_multiple_heads():
    q, k, v = _inputs(1, 4, 3, 2, 2, 8)
    with pytest.raises(ValueError, match=r"\(4\).*\(3\)"):
        attention(q, k, v)


def test_is_causal_equals_explicit_causal_mask():
    q, k, v = _inputs(2, 2, 2, 5, 5, 16)
    for impl in ("reference", "fused"):
        a, _ = attention(q, k, v, is_causal=True, impl=impl)
        b, _ = attention(q, k, v, mask=causal_mask(5), impl=impl)
        assert (a - b).abs().max() <= FP32_TOL
    # first query sees only the first key: its output is exactly v[..., 0, :]
    assert torch.allclose(a[:, :, 0], v[:, :, 0], atol=1e-6)


def test_is_causal_with_fewer_queries_aligns_bottom_right():
    q, k, v = _inputs(1, 2, 2, 2, 5, 16)  # 3 cached keys + 2 new queries
    for impl in ("reference", "fused"):
        out, _ = attention(q, k, v, is_causal=True, impl=impl)
        want = _naive(q, k, v, causal_mask(2, past=3))
        assert (out.double() - want).abs().max() <= FP32_TOL


def test_scale_argument():
    q, k, v = _inputs(1, 2, 2, 4, 4, 16)
    for impl in ("reference", "fused"):
        out, _ = attention(q, k, v, scale=0.5, impl=impl)
        assert (out.double() - _naive(q, k, v, scale=0.5)).abs().max() <= FP32_TOL


def test_need_weights_sum_to_one_and_auto_uses_reference():
    q, k, v = _inputs(2, 3, 3, 5, 6, 16)
    mask = _padding(2, 6) & torch.ones(1, 1, 5, 6, dtype=torch.bool)
    mask = mask.clone()
    mask[1, 0, 2, :] = False  # one query with no visible key
    mask = mask.expand(2, 3, 5, 6).clone()
    out, weights = attention(q, k, v, mask=mask, need_weights=True)  # impl auto
    assert weights is not None and weights.shape == (2, 3, 5, 6)
    visible = mask.any(-1)
    sums = weights.sum(-1)
    assert torch.allclose(sums[visible], torch.ones_like(sums[visible]), atol=1e-6)
    assert torch.equal(sums[~visible], torch.zeros_like(sums[~visible]))
    assert torch.equal(weights[~mask], torch.zeros_like(weights[~mask]))  # masked keys get no weight
    assert torch.allclose(out, weights @ v, atol=1e-6)
    _, none = attention(q, k, v, mask=mask)
    assert none is None
    _, forced = attention(q, k, v, mask=mask, need_weights=True, impl="fused")  # weights need the reference path
    assert forced is not None and torch.allclose(forced, weights)


@pytest.mark.parametrize("impl", ["auto", "reference", "fused"])
def test_stack_need_weights_with_any_impl(impl):
    import attentive

    model = attentive.build("transformer-tiny", attn_impl=impl, dropout=0.0, attention_dropout=0.0).eval()
    src, tgt = torch.randint(1, 1000, (2, 5)), torch.randint(1, 1000, (2, 4))
    enc = model.encode(src, need_weights=True)
    dec = model.decode(tgt, enc.hidden, src != 0, need_weights=True)
    assert [w.shape for w in enc.self_attentions] == [(2, 4, 5, 5)] * 2
    assert [w.shape for w in dec.self_attentions] == [(2, 4, 4, 4)] * 2
    assert [w.shape for w in dec.cross_attentions] == [(2, 4, 4, 5)] * 2
    assert torch.equal(dec.self_attentions[0].triu(1), torch.zeros(2, 4, 4, 4))  # causal


def test_dropout_on_reference_path_zeroes_weights_in_training():
    # With V = identity, the output *is* the (dropped-out) attention matrix.
    torch.manual_seed(0)
    tk = 32
    q = torch.randn(2, 2, 16, tk)
    k = torch.randn(2, 2, tk, tk)
    v = torch.eye(tk).expand(2, 2, tk, tk)
    p = 0.5
    dropped, weights = attention(q, k, v, dropout_p=p, impl="reference")
    zero_frac = (dropped == 0).float().mean().item()
    assert 0.4 < zero_frac < 0.6
    kept = dropped != 0
    assert torch.allclose(dropped[kept], weights[kept] / (1 - p), atol=1e-6)
    clean, _ = attention(q, k, v, dropout_p=0.0, impl="reference")
    assert torch.allclose(clean, weights, atol=1e-6)


def test_mha_dropout_only_in_training():
    mha = MultiHeadAttention(32, 4, dropout=0.5, impl="reference")
    x = torch.randn(2, 6, 32)
    mha.eval()
    a, _ = mha(x)
    b, _ = mha(x)
    assert torch.equal(a, b)
    mha.train()
    c, _ = mha(x)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_fully_masked_rows_are_zero_with_finite_grads(impl, with_bias):
    q, k, v = _inputs(2, 2, 2, 4, 5, 16)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = torch.ones(2, 1, 4, 5, dtype=torch.bool)
    mask[0, :, 1] = False  # query 1 of batch 0 sees nothing
    mask[1, :, 3] = False
    bias = torch.randn(1, 2, 4, 5, requires_grad=True) if with_bias else None
    out, _ = attention(q, k, v, mask=mask, bias=bias, impl=impl)
    assert not out.isnan().any()
    assert torch.equal(out[0, :, 1], torch.zeros_like(out[0, :, 1]))
    assert torch.equal(out[1, :, 3], torch.zeros_like(out[1, :, 3]))
    assert out[0, :, 0].abs().sum() > 0
    (out.square().sum()).backward()
    for t in (q, k, v) + ((bias,) if with_bias else ()):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[0, :, 1], torch.zeros_like(q.grad[0, :, 1]))


def test_causal_with_more_queries_than_keys_gives_zero_rows():
    # bottom-right alignment: the first queries of 4 see none of 2 keys
    q, k, v = _inputs(1, 1, 1, 4, 2, 8)
    for impl in ("reference", "fused"):
        out, _ = attention(q, k, v, is_causal=True, impl=impl)
        assert not out.isnan().any()
        assert torch.equal(out[0, 0, :2], torch.zeros(2, 8))


def test_gradcheck_reference_float64_with_mask_and_bias():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(1, 1, 4, 4, dtype=torch.float64, generator=g, requires_grad=True)  # GQA too
    v = torch.randn(1, 1, 4, 4, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(1, 2, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.tensor([[True, True, False, True], [True, False, False, False], [False] * 4])[None, None]

    def fn(q, k, v, bias):
        return attention(q, k, v, mask=mask, bias=bias, impl="reference")[0]

    assert torch.autograd.gradcheck(fn, (q, k, v, bias), eps=1e-6, atol=1e-5)


def test_input_validation_messages():
    q, k, v = _inputs(1, 2, 2, 3, 3, 8)
    with pytest.raises(ValueError, match=r"\(2, 3, 8\)"):
        attention(q[0], k, v)
    with pytest.raises(TypeError, match="int64"):
        attention(q.long(), k.long(), v.long())
    with pytest.raises(ValueError, match="'flash'"):
        attention(q, k, v, impl="flash")
    mha = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match=r"\(4, 16\)"):
        mha(torch.randn(4, 16))
    with pytest.raises(ValueError, match=r"d_model \(30\).*num_heads \(4\)"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match=r"num_heads \(4\).*num_kv_heads \(3\)"):
        MultiHeadAttention(32, 4, 3)


# ----------------------------------------------------------------------------- CUDA (run with -m gpu)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU_TOL = {torch.float32: 1e-5, torch.bfloat16: BF16_TOL, torch.float16: 5e-3}


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [16, 32, 64, 80])
@pytest.mark.parametrize("mode", ["none", "causal", "causal+padding", "bias+padding"])
@pytest.mark.parametrize("kv_heads", [4, 1])
def test_cuda_reference_matches_fused(dtype, head_dim, mode, kv_heads):
    q, k, v = (t.cuda() for t in _inputs(2, 4, kv_heads, 37, 37, head_dim, dtype=dtype))
    mask, bias, is_causal = _case(mode, 2, 4, 37, 37, dtype=dtype)
    mask = mask.cuda() if mask is not None else None
    bias = bias.cuda() if bias is not None else None
    ref, _ = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, impl="reference")
    fused, _ = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, impl="fused")
    assert ref.dtype == fused.dtype == dtype
    assert (ref.float() - fused.float()).abs().max().item() <= GPU_TOL[dtype]


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fully_masked_rows(dtype):
    q, k, v = (t.cuda().requires_grad_() for t in _inputs(2, 4, 2, 8, 8, 64, dtype=dtype))
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool, device="cuda")
    mask[0, :, 3] = False
    for impl in ("reference", "fused"):
        out, _ = attention(q, k, v, mask=mask, impl=impl)
        assert not out.isnan().any() and out[0, :, 3].abs().max() == 0
        q.grad = k.grad = v.grad = None
        out.float().square().sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_cuda_incremental_decoding(cache_kind):
    import attentive
    from attentive.nn import DynamicCache, StaticCache

    model = attentive.build("llama-tiny").cuda().eval()
    ids = torch.randint(1, 512, (2, 9), device="cuda")
    cache = DynamicCache() if cache_kind == "dynamic" else StaticCache(2, 2, 2, 16, 12, device="cuda")
    with torch.no_grad():
        full = model(ids)
        steps = [model(ids[:, :3], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(3, 9)]
    assert (torch.cat(steps, 1) - full).abs().max().item() <= 1e-4

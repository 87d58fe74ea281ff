"""attention(): properties over random shapes, dtypes, masks and biases (hypothesis).

Every example is a small ``Case`` (shapes, dtype, mask pattern, bias, is_causal, scale, seed);
its tensors are made from ``seed`` with a ``torch.Generator``, so a falsifying example printed
by hypothesis rebuilds exactly with ``case.build()``.

Tolerances on outputs are absolute and scaled by ``max(1, max|v|)``: an attention output is a
convex combination of value rows, so its size is bounded by the values'. float64 and float32
differ from each other and from the float64 restatement only by rounding. bfloat16 keeps 8
mantissa bits and the two paths round at different places: the reference path computes the
scores ``Q K^T`` in bf16 (an error of about 2^-9 |score| in each, which moves the weights by as
much) and casts the float32 softmax to bf16 before ``weights @ v``. So bf16 gets ``BF16_TOL``
(2e-2, about 5 bf16 ulps at 1.0), widened by ``max(1, max|score| / 4)`` for large scores (a big
``scale`` or bias); over about 25,000 drawn bf16 cases the largest error was 0.7 of that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attentive.nn import attention, causal_mask

BF16_TOL = 2e-2
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: BF16_TOL}
# |sum of weights - 1|: float32 softmax, then each weight rounded to the dtype (relative 2^-9 in bf16)
SUM_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 4e-3}
DTYPES = (torch.float32, torch.float64, torch.bfloat16)

# database=None: no .hypothesis/ folder in the checkout; failures print the Case, which rebuilds them
PROPERTY = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

MASK_KINDS = ("none", "random", "padding", "empty-rows")


@dataclass(frozen=True)
class Case:
    """One attention call. Mask/bias shapes are (B or 1, H or 1, Tq or 1, Tk or 1)."""

    batch: int
    heads: int
    kv_heads: int
    q_len: int
    k_len: int
    head_dim: int
    dtype: torch.dtype
    mask_kind: str  # one of MASK_KINDS
    mask_shape: tuple[int, int, int, int] | None
    density: float  # P(True) for random masks
    empty_rows: tuple[int, ...]  # query rows forced fully masked ("empty-rows")
    bias_shape: tuple[int, int, int, int] | None
    is_causal: bool
    scale: float | None
    seed: int

    def build(self):
        """(q, k, v, mask, bias) from the seed."""
        g = torch.Generator().manual_seed(self.seed)
        B, H, Hkv, Tq, Tk, Dh = self.batch, self.heads, self.kv_heads, self.q_len, self.k_len, self.head_dim
        q = torch.randn(B, H, Tq, Dh, generator=g, dtype=torch.float64).to(self.dtype)
        k = torch.randn(B, Hkv, Tk, Dh, generator=g, dtype=torch.float64).to(self.dtype)
        v = torch.randn(B, Hkv, Tk, Dh, generator=g, dtype=torch.float64).to(self.dtype)
        mask = None
        if self.mask_kind == "padding":  # right padding, lengths 0..Tk (0: a fully padded sequence)
            lengths = torch.randint(0, Tk + 1, (B,), generator=g)
            mask = (torch.arange(Tk)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Tk)
        elif self.mask_kind in ("random", "empty-rows"):
            mask = torch.rand(self.mask_shape, generator=g) < self.density
            if self.empty_rows:
                mask[:, :, list(self.empty_rows), :] = False
        bias = None
        if self.bias_shape is not None:
            bias = torch.randn(self.bias_shape, generator=g, dtype=torch.float64).to(self.dtype)
        return q, k, v, mask, bias

    def causal(self) -> torch.Tensor:
        """Bottom-right-aligned causal mask, written out: query i sees keys j <= i + (Tk - Tq)."""
        i = torch.arange(self.q_len)[:, None]
        j = torch.arange(self.k_len)[None, :]
        return (j <= i + (self.k_len - self.q_len))[None, None]  # (1, 1, Tq, Tk)

    def visible(self, mask) -> torch.Tensor:
        """(B, H, Tq, Tk) bool: which keys each query may attend to, is_causal included."""
        out = torch.ones(self.batch, self.heads, self.q_len, self.k_len, dtype=torch.bool)
        if mask is not None:
            out = out & mask
        if self.is_causal:
            out = out & self.causal()
        return out


def _broadcast_shape(draw, full):
    """Each dim of ``full`` either kept or broadcast (1)."""
    return tuple(size if draw(st.booleans()) else 1 for size in full)


@st.composite
def cases(
    draw,
    mask_kinds=MASK_KINDS,
    dtypes=DTYPES,
    causal=st.booleans(),
    bias=st.booleans(),
    min_groups=1,
):
    heads = draw(st.integers(max(1, min_groups), 8))
    groups = draw(st.sampled_from([g for g in range(min_groups, heads + 1) if heads % g == 0] or [heads]))
    batch, q_len, k_len = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    full = (batch, heads, q_len, k_len)
    mask_kind = draw(st.sampled_from(mask_kinds))
    mask_shape, density, empty = None, 1.0, ()
    if mask_kind in ("random", "empty-rows"):
        mask_shape = _broadcast_shape(draw, full)
        density = draw(st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]))
    if mask_kind == "empty-rows":  # the query axis must be present to mask some rows only
        mask_shape = mask_shape[:2] + (q_len, mask_shape[3])
        empty = tuple(sorted(draw(st.sets(st.integers(0, q_len - 1), min_size=1, max_size=q_len))))
    return Case(
        batch=batch,
        heads=heads,
        kv_heads=heads // groups,
        q_len=q_len,
        k_len=k_len,
        head_dim=draw(st.integers(1, 16)),
        dtype=draw(st.sampled_from(dtypes)),
        mask_kind=mask_kind,
        mask_shape=mask_shape,
        density=density,
        empty_rows=empty,
        bias_shape=_broadcast_shape(draw, full) if draw(bias) else None,
        is_causal=draw(causal),
        scale=draw(st.one_of(st.none(), st.floats(0.05, 2.0))),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _scores(case, q, k, bias):
    """Q K^T * scale + bias in float64, (B, H, Tq, Tk)."""
    groups = case.heads // case.kv_heads
    scale = 1 / math.sqrt(case.head_dim) if case.scale is None else case.scale
    scores = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double().repeat_interleave(groups, 1)) * scale
    return scores if bias is None else scores + bias.double()


def _tol(case, q, k, v, bias) -> float:
    """Absolute tolerance on an output (see the module docstring)."""
    tol = TOL[case.dtype] * max(1.0, v.double().abs().max().item())
    if case.dtype == torch.bfloat16:
        tol *= max(1.0, _scores(case, q, k, bias).abs().max().item() / 4)
    return tol


def _call(case, q, k, v, mask, bias, impl, need_weights=False, is_causal=None):
    return attention(
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        is_causal=case.is_causal if is_causal is None else is_causal,
        need_weights=need_weights,
        impl=impl,
        scale=case.scale,
    )


def _agree(case, tol, one, other, weights_of_one=lambda w: w):
    """``one`` and ``other`` are ``(q, k, v, mask, bias, is_causal)``: both attention paths give
    the same output for the two, and the reference path the same weights (the first's mapped by
    ``weights_of_one``). Returns the first call's weights."""
    for impl in ("reference", "fused"):
        a, _ = _call(case, *one[:5], impl, is_causal=one[5])
        b, _ = _call(case, *other[:5], impl, is_causal=other[5])
        assert _max_diff(a, b) <= tol, impl
    _, wa = _call(case, *one[:5], "reference", need_weights=True, is_causal=one[5])
    _, wb = _call(case, *other[:5], "reference", need_weights=True, is_causal=other[5])
    assert _max_diff(weights_of_one(wa), wb) <= TOL[case.dtype]
    return wa


def _naive(case, q, k, v, mask, bias):
    """softmax(Q K^T * scale + bias) V in float64, with fully masked rows set to 0 afterwards."""
    v = v.double().repeat_interleave(case.heads // case.kv_heads, 1)
    scores = _scores(case, q, k, bias)
    visible = case.visible(mask)
    weights = torch.softmax(scores.masked_fill(~visible, -math.inf), -1)
    weights = torch.where(visible.any(-1, keepdim=True), weights, 0.0)  # 0/0 rows: NaN -> 0
    return torch.einsum("bhqk,bhkd->bhqd", weights, v)


def _max_diff(a, b) -> float:
    return (a.double() - b.double()).abs().max().item()


# ----------------------------------------------------------------------------- (a) fused == reference


@PROPERTY
@given(case=cases())
def test_fused_equals_reference_over_shapes_dtypes_and_masks(case):
    q, k, v, mask, bias = case.build()
    ref, _ = _call(case, q, k, v, mask, bias, "reference")
    fused, _ = _call(case, q, k, v, mask, bias, "fused")
    shape = (case.batch, case.heads, case.q_len, case.head_dim)
    assert ref.shape == fused.shape == shape and ref.dtype == fused.dtype == case.dtype
    tol = _tol(case, q, k, v, bias)
    assert _max_diff(ref, fused) <= tol
    # and both equal softmax(QK^T + bias) V restated in float64 (catches a mistake the paths share)
    want = _naive(case, q, k, v, mask, bias)
    assert _max_diff(ref, want) <= tol
    assert _max_diff(fused, want) <= tol


# ----------------------------------------------------------------------------- (b) empty rows


@PROPERTY
@given(case=cases(mask_kinds=("empty-rows", "padding", "random"), causal=st.booleans()))
def test_fully_masked_query_rows_give_exact_zeros_and_never_nan(case):
    q, k, v, mask, bias = case.build()
    empty = ~case.visible(mask).any(-1)  # (B, H, Tq)
    # "empty-rows" always has some; padding with length 0, density 0 or causal with Tq > Tk often do
    if case.mask_kind == "empty-rows":
        assert empty.any()
    for impl in ("reference", "fused"):
        out, _ = _call(case, q, k, v, mask, bias, impl)
        assert not out.isnan().any(), impl
        assert torch.equal(out[empty], torch.zeros_like(out[empty])), impl
    out, weights = _call(case, q, k, v, mask, bias, "auto", need_weights=True)
    assert not out.isnan().any() and not weights.isnan().any()
    assert torch.equal(out[empty], torch.zeros_like(out[empty]))
    assert torch.equal(weights[empty], torch.zeros_like(weights[empty]))


# ----------------------------------------------------------------------------- (c) weights


@PROPERTY
@given(case=cases())
def test_weights_are_a_distribution_over_visible_keys_and_zero_on_masked_ones(case):
    q, k, v, mask, bias = case.build()
    for impl in ("auto", "reference", "fused"):  # need_weights takes the reference path whatever impl says
        _, weights = _call(case, q, k, v, mask, bias, impl, need_weights=True)
        assert weights is not None
        assert weights.shape == (case.batch, case.heads, case.q_len, case.k_len) and weights.dtype == case.dtype
        visible = case.visible(mask)
        assert (weights >= 0).all()
        assert torch.equal(weights[~visible], torch.zeros_like(weights[~visible]))  # exactly 0 when masked
        sums = weights.double().sum(-1)
        rows = visible.any(-1)
        if rows.any():
            assert (sums[rows] - 1).abs().max().item() <= SUM_TOL[case.dtype]
        assert torch.equal(sums[~rows], torch.zeros_like(sums[~rows]))


# ----------------------------------------------------------------------------- (d) is_causal


@PROPERTY
@given(case=cases(causal=st.just(True)))
def test_is_causal_equals_explicit_bottom_right_causal_mask(case):
    q, k, v, mask, bias = case.build()
    explicit = causal_mask(case.q_len, case.k_len, past=case.k_len - case.q_len)  # (1, 1, Tq, Tk)
    assert torch.equal(explicit, case.causal())  # query i sees keys <= i + (Tk - Tq)
    combined = explicit if mask is None else mask & explicit
    wa = _agree(case, _tol(case, q, k, v, bias), (q, k, v, mask, bias, True), (q, k, v, combined, bias, False))
    assert torch.equal(wa[..., ~explicit[0, 0]], torch.zeros_like(wa[..., ~explicit[0, 0]]))


# ----------------------------------------------------------------------------- (e) grouped-query


@PROPERTY
@given(case=cases(min_groups=2))
def test_grouped_query_attention_equals_repeat_interleaved_key_value_heads(case):
    q, k, v, mask, bias = case.build()
    groups = case.heads // case.kv_heads
    assert groups >= 2  # real GQA (kv_heads == 1: multi-query)
    k_rep, v_rep = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)  # head h uses kv head h // groups
    _agree(case, _tol(case, q, k, v, bias), (q, k, v, mask, bias, None), (q, k_rep, v_rep, mask, bias, None))


# ----------------------------------------------------------------------------- (f) keys are a set


def _permute_keys(t, perm):
    """Permute the key axis (last for masks/biases) unless it is broadcast."""
    return t if t is None or t.shape[-1] == 1 else t[..., perm]


@PROPERTY
@given(case=cases())
def test_permuting_keys_and_values_together_leaves_output_unchanged(case):
    q, k, v, mask, bias = case.build()
    if case.is_causal:  # causality is positional: carry it as an explicit mask, which gets permuted too
        mask = case.causal() if mask is None else mask & case.causal()
    perm = torch.randperm(case.k_len, generator=torch.Generator().manual_seed(case.seed + 1))
    k_p, v_p = k[:, :, perm], v[:, :, perm]
    mask_p, bias_p = _permute_keys(mask, perm), _permute_keys(bias, perm)
    _agree(
        case,
        _tol(case, q, k, v, bias),
        (q, k, v, mask, bias, False),
        (q, k_p, v_p, mask_p, bias_p, False),
        weights_of_one=lambda w: w[..., perm],
    )  # the weights follow their keys


# ----------------------------------------------------------------------------- (g) out == weights @ v


@PROPERTY
@given(case=cases())
def test_reference_output_equals_weights_times_values(case):
    q, k, v, mask, bias = case.build()
    out, weights = _call(case, q, k, v, mask, bias, "reference", need_weights=True)
    v_rep = v.repeat_interleave(case.heads // case.kv_heads, 1)
    assert _max_diff(out, weights @ v_rep) <= _tol(case, q, k, v, bias)
    # the weights are the softmax of the scores, not just any matrix whose product matches
    assert _max_diff(out, _naive(case, q, k, v, mask, bias)) <= _tol(case, q, k, v, bias)


# ----------------------------------------------------------------------------- the strategy itself


def test_strategy_reaches_the_patterns_the_properties_are_about():
    """The properties above are only as good as what ``cases()`` draws: check it reaches GQA,
    multi-query, Tq != Tk under is_causal, every mask kind and every broadcast of the key axis."""
    seen = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(case=cases())
    def collect(case):
        seen.add(("kind", case.mask_kind))
        seen.add(("dtype", case.dtype))
        if case.heads > case.kv_heads > 1:
            seen.add("gqa")
        if case.kv_heads == 1 < case.heads:
            seen.add("mqa")
        if case.is_causal and case.q_len < case.k_len:
            seen.add("causal Tq<Tk")
        if case.is_causal and case.q_len > case.k_len:
            seen.add("causal Tq>Tk")
        if case.mask_shape is not None:
            seen.add(("mask batch/heads broadcast", case.mask_shape[:2] == (1, 1)))
        if case.bias_shape is not None:
            seen.add("bias")

    collect()
    want = {("kind", kind) for kind in MASK_KINDS} | {("dtype", dtype) for dtype in DTYPES}
    want |= {"gqa", "mqa", "causal Tq<Tk", "causal Tq>Tk", "bias"}
    want |= {("mask batch/heads broadcast", True), ("mask batch/heads broadcast", False)}
    assert want <= seen, want - seen

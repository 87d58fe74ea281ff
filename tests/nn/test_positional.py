"""Positional encodings: exact sinusoid values, RoPE relativity, ALiBi slopes, T5 buckets, one interface."""

from __future__ import annotations

import math

import pytest
import torch

from attentive.models import DecoderLM, EncoderDecoder
from attentive.nn import (
    ALiBi,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    make_positional,
    sinusoidal_table,
)
from attentive.nn.positional import POSITIONALS, alibi_slopes, apply_rotary
from helpers import tiny_encdec, tiny_gpt2


def test_sinusoidal_table_matches_paper_formula_elementwise():
    max_len, d = 40, 10
    table = sinusoidal_table(max_len, d)
    assert table.shape == (max_len, d)
    for pos in range(max_len):
        for j in range(d):
            i = j // 2
            angle = pos / 10000 ** (2 * i / d)
            want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(table[pos, j].item() - want) < 1e-6, (pos, j)


def test_sinusoidal_encoding_adds_table_rows():
    pe = SinusoidalPositionalEncoding(8, max_len=16)
    x = torch.randn(2, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]])
    out = pe.add_to(x, positions)
    table = sinusoidal_table(16, 8)
    assert torch.allclose(out[1, 0], x[1, 0] + table[3])
    assert torch.allclose(out[0], x[0] + table[:5])
    with pytest.raises(ValueError, match="16"):
        pe.add_to(x, positions + 10)


def test_learned_positions_add_rows_and_check_range():
    pe = LearnedPositionalEmbedding(8, max_len=6)
    x = torch.zeros(1, 3, 8)
    out = pe.add_to(x, torch.tensor([[2, 0, 5]]))
    assert torch.equal(out[0], pe.weight[[2, 0, 5]])
    with pytest.raises(ValueError, match="6"):
        pe.add_to(x, torch.tensor([[0, 1, 6]]))


def _rotate(rope, x, pos):
    cos, sin = rope.rotary(torch.tensor([pos]))
    return apply_rotary(x, cos, sin)


def test_rope_dot_product_depends_only_on_position_difference():
    rope = RotaryEmbedding(16)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(m, n):
        return (_rotate(rope, q, m) * _rotate(rope, k, n)).sum().item()

    for m, n in [(3, 1), (10, 2), (0, 5)]:
        for shift in (1, 7, 50):
            assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-4
    assert abs(score(3, 1) - score(3, 2)) > 1e-3  # but it does depend on the difference
    assert torch.allclose(_rotate(rope, q, 0), q)  # position 0 is no rotation
    assert torch.allclose(_rotate(rope, q, 9).norm(), q.norm(), atol=1e-5)  # rotations keep length


def test_rope_rotates_half_split_pairs_by_pos_times_frequency():
    d, base, pos = 8, 500.0, 3
    rope = RotaryEmbedding(d, base=base)
    x = torch.randn(1, 1, 1, d)
    out = _rotate(rope, x, pos)[0, 0, 0]
    x = x[0, 0, 0]
    for i in range(d // 2):
        theta = pos * base ** (-2 * i / d)
        a, b = x[i].item(), x[i + d // 2].item()
        assert abs(out[i].item() - (a * math.cos(theta) - b * math.sin(theta))) < 1e-5
        assert abs(out[i + d // 2].item() - (b * math.cos(theta) + a * math.sin(theta))) < 1e-5


def test_rope_base_is_configurable_end_to_end():
    assert torch.allclose(RotaryEmbedding(8, base=100.0).inv_freq, 100.0 ** (-torch.arange(0, 8, 2) / 8))
    assert not torch.allclose(RotaryEmbedding(8, base=100.0).inv_freq, RotaryEmbedding(8).inv_freq)
    model = DecoderLM(tiny_gpt2(positional="rope", rope_base=321.0))
    assert model.stack.positional.base == 321.0
    assert make_positional("rope", 32, 4, rope_base=77.0).base == 77.0


def test_partial_rotary_leaves_tail_untouched():
    rope = RotaryEmbedding(16, rotary_dim=8)
    x = torch.randn(1, 2, 3, 16)
    cos, sin = rope.rotary(torch.arange(3))
    out = apply_rotary(x, cos, sin)
    assert torch.equal(out[..., 8:], x[..., 8:])
    assert not torch.allclose(out[..., 1:, :8], x[..., 1:, :8])


def test_alibi_slopes_for_8_heads_are_powers_of_one_half():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # non-power of two (paper's rule): the 8-head slopes then every other 16-head slope
    twelve = alibi_slopes(12)
    want = [2.0 ** -(i + 1) for i in range(8)] + [2.0 ** -(0.5 * (2 * i + 1)) for i in range(4)]
    assert torch.allclose(twelve, torch.tensor(want))


def test_alibi_bias_is_minus_slope_times_distance():
    alibi = ALiBi(4)
    bias = alibi.attention_bias(torch.arange(2, 5), torch.arange(5))
    assert bias.shape == (1, 4, 3, 5)
    slopes = alibi_slopes(4)
    for h in range(4):
        for i, qpos in enumerate(range(2, 5)):
            for kpos in range(5):
                assert abs(bias[0, h, i, kpos].item() + slopes[h].item() * abs(qpos - kpos)) < 1e-6


def _t5_bucket(relative: int, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128) -> int:
    """T5's _relative_position_bucket for one integer, written out with Python math."""
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        if relative > 0:
            bucket += num_buckets
        n = abs(relative)
    else:
        n = max(-relative, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return bucket + n
    large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    return bucket + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_buckets_match_t5_formula(bidirectional):
    rel = RelativePositionBias(4, num_buckets=32, max_distance=128, bidirectional=bidirectional)
    distances = [-500, -128, -100, -40, -17, -9, -8, -7, -3, -1, 0, 1, 2, 7, 8, 9, 12, 33, 90, 127, 128, 1000]
    got = rel.bucket(torch.tensor(distances)).tolist()
    assert got == [_t5_bucket(d, bidirectional) for d in distances]
    # spot values that do not depend on the reference above
    at = dict(zip(distances, got))
    if bidirectional:  # 16 buckets per direction, 8 exact; keys after the query use the upper half
        assert (at[-3], at[0], at[1], at[-7], at[-8], at[-500], at[1000]) == (3, 0, 17, 7, 8, 15, 31)
    else:  # 32 buckets, 16 exact; future keys (positive) all map to bucket 0
        assert (at[-3], at[-15 - 2], at[2], at[1000], at[-500]) == (3, 16, 0, 0, 31)


def test_relative_bias_is_embedding_of_bucket():
    rel = RelativePositionBias(3, num_buckets=8, max_distance=20)
    q_pos, k_pos = torch.arange(4), torch.arange(6)
    bias = rel.attention_bias(q_pos, k_pos)
    assert bias.shape == (1, 3, 4, 6)
    for i in range(4):
        for j in range(6):
            b = int(rel.bucket(torch.tensor(j - i)))
            assert torch.allclose(bias[0, :, i, j], rel.embedding.weight[b])


def test_make_positional_rejects_unknown_kind():
    with pytest.raises(ValueError, match="'cosine'.*sinusoidal"):
        make_positional("cosine", 32, 4)


@pytest.mark.parametrize("kind", POSITIONALS)
def test_every_positional_kind_plugs_into_both_models(kind):
    lm = DecoderLM(tiny_gpt2(positional=kind))
    ids = torch.randint(1, 50, (2, 7))
    logits = lm(ids)
    assert logits.shape == (2, 7, 50)
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lm.parameters() if p.requires_grad)

    ed = EncoderDecoder(tiny_encdec(positional=kind))
    src, tgt = torch.randint(1, 50, (2, 6)), torch.randint(1, 50, (2, 5))
    out = ed(src, tgt)
    assert out.shape == (2, 5, 50)
    out.logsumexp(-1).mean().backward()
    for name, p in ed.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # learned kinds actually receive gradient
    if kind in ("learned", "relative"):
        pos_params = list(ed.encoder.positional.parameters()) + list(lm.stack.positional.parameters())
        assert pos_params and all(p.grad.abs().sum() > 0 for p in pos_params)

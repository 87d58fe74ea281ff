"""Embeddings and tying, feed-forward and norms, MHA with caches, pre-LN vs post-LN layers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attentive.models import DecoderLM, EncoderDecoder
from attentive.nn import (
    DynamicCache,
    FeedForward,
    GatedFeedForward,
    LayerSpec,
    MultiHeadAttention,
    OutputProjection,
    RMSNorm,
    RotaryEmbedding,
    StaticCache,
    TokenEmbedding,
    TransformerLayer,
    causal_mask,
    make_feedforward,
)
from helpers import tiny_encdec, tiny_gpt2

# ----------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("scale", [True, False])
def test_embedding_lookup_is_one_hot_times_matrix(scale):
    emb = TokenEmbedding(11, 8, scale=scale)
    ids = torch.tensor([[0, 3, 10], [7, 7, 1]])
    want = F.one_hot(ids, 11).double() @ emb.weight.double() * (math.sqrt(8) if scale else 1.0)
    assert torch.allclose(emb(ids).double(), want, atol=1e-6)
    assert torch.allclose(emb.one_hot_lookup(ids).double(), want, atol=1e-6)


def test_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="float32"):
        TokenEmbedding(5, 4)(torch.zeros(1, 2))


def test_output_projection_tying_shares_one_parameter():
    emb = TokenEmbedding(9, 4)
    head = OutputProjection(4, 9, tie_to=emb)
    assert head.weight is emb.weight
    with pytest.raises(ValueError, match=r"\(9, 6\)"):
        OutputProjection(6, 9, tie_to=emb)


def test_tied_models_hold_one_embedding_tensor():
    lm = DecoderLM(tiny_gpt2())
    assert lm.head.weight is lm.embed.weight
    assert sum(p is lm.embed.weight for p in lm.parameters()) == 1
    ed = EncoderDecoder(tiny_encdec())
    assert ed.src_embed.weight is ed.tgt_embed.weight is ed.head.weight
    out_only = EncoderDecoder(tiny_encdec(tie_embeddings="output", tgt_vocab_size=40))
    assert out_only.head.weight is out_only.tgt_embed.weight
    assert out_only.src_embed.weight is not out_only.tgt_embed.weight
    untied = DecoderLM(tiny_gpt2(tie_embeddings=False))
    assert untied.head.weight is not untied.embed.weight


def test_tied_gradient_is_sum_of_embedding_and_head_gradients():
    torch.manual_seed(0)
    tied = DecoderLM(tiny_gpt2())
    untied = DecoderLM(tiny_gpt2(tie_embeddings=False))
    state = tied.state_dict()
    state["head.weight"] = state["embed.weight"].clone()
    untied.load_state_dict(state)
    ids = torch.randint(0, 50, (2, 6))
    for model in (tied, untied):
        F.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    assert torch.allclose(tied.embed.weight.grad, untied.embed.weight.grad + untied.head.weight.grad, atol=1e-6)
    assert untied.embed.weight.grad.abs().sum() > 0 and untied.head.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- FFN and norms


def test_feedforward_is_two_linear_maps_around_activation():
    ffn = FeedForward(8, 16, "relu")
    x = torch.randn(2, 3, 8)
    want = F.relu(x @ ffn.up.weight.T + ffn.up.bias) @ ffn.down.weight.T + ffn.down.bias
    assert torch.allclose(ffn(x), want, atol=1e-6)
    swiglu = make_feedforward("swiglu", 8, 16, bias=False)
    assert isinstance(swiglu, GatedFeedForward)
    want = (F.silu(x @ swiglu.gate.weight.T) * (x @ swiglu.up.weight.T)) @ swiglu.down.weight.T
    assert torch.allclose(swiglu(x), want, atol=1e-6)
    with pytest.raises(ValueError, match="'tanh'"):
        make_feedforward("tanh", 8, 16)


def test_rmsnorm_matches_formula_and_keeps_dtype():
    norm = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight.double()
    assert torch.allclose(norm(x), want, atol=1e-12)  # float64 stays float64-accurate
    assert norm.bfloat16()(x.bfloat16()).dtype == torch.bfloat16


# ----------------------------------------------------------------------------- MHA + caches


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_mha_incremental_decoding_matches_full_causal_pass(cache_kind, kv_heads):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, kv_heads).eval()
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 7, 32)
    full, _ = mha(x, is_causal=True, rope=rope.rotary(torch.arange(7)))
    max_len = 10
    cache = DynamicCache() if cache_kind == "dynamic" else StaticCache(1, 2, kv_heads, 8, max_len)
    steps = []
    for t in range(7):
        mask = None if cache_kind == "dynamic" else causal_mask(1, max_len, past=t)
        out, _ = mha(x[:, t : t + 1], mask=mask, rope=rope.rotary(torch.tensor([t])), cache=cache)
        steps.append(out)
    assert cache.get_seq_length() == 7
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-5


def test_cross_attention_cache_projects_memory_once():
    mha = MultiHeadAttention(16, 2, kv_dim=12).eval()
    memory = torch.randn(2, 5, 12)
    x = torch.randn(2, 1, 16)
    cache = DynamicCache()
    first, _ = mha(x, memory, cache=cache)
    assert cache.has_cross(0)
    # a second call ignores the (changed) memory: it reuses the cached projection
    second, _ = mha(x, torch.zeros_like(memory), cache=cache)
    assert torch.equal(first, second)
    uncached, _ = mha(x, memory)
    assert torch.allclose(first, uncached, atol=1e-6)


@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_cache_reorder_selects_rows(cache_kind):
    cache = DynamicCache() if cache_kind == "dynamic" else StaticCache(2, 3, 1, 2, 4)
    k = [torch.randn(3, 1, 2, 2) for _ in range(2)]
    v = [torch.randn(3, 1, 2, 2) for _ in range(2)]
    for i in range(2):
        cache.update(i, k[i], v[i])
    cross_k, cross_v = torch.randn(3, 1, 5, 2), torch.randn(3, 1, 5, 2)
    cache.set_cross(0, cross_k, cross_v)
    index = torch.tensor([2, 2, 0])
    cross_k, cross_v = cross_k.clone(), cross_v.clone()  # a static cache gathers its tensors in place
    cache.reorder(index)
    for i in range(2):
        keys, values = (cache.keys[i], cache.values[i])
        assert torch.equal(keys[:, :, :2], k[i][index]) and torch.equal(values[:, :, :2], v[i][index])
    assert torch.equal(cache.get_cross(0)[0], cross_k[index]) and torch.equal(cache.get_cross(0)[1], cross_v[index])
    # the next update appends to the reordered rows
    new_k = torch.randn(3, 1, 1, 2)
    keys, _ = cache.update(0, new_k, new_k)
    assert torch.equal(keys[:, :, :2], k[0][index]) and torch.equal(keys[:, :, 2:3], new_k)


def test_static_cache_overflow_is_an_error():
    cache = StaticCache(1, 1, 1, 2, 3)
    cache.update(0, torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    with pytest.raises(ValueError, match="max_len 3"):
        cache.update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))


def test_dynamic_cache_layers_fill_in_order():
    with pytest.raises(ValueError, match="layer 1"):
        DynamicCache().update(1, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))


# ----------------------------------------------------------------------------- pre-LN vs post-LN


def _spec(norm_first: bool) -> LayerSpec:
    return LayerSpec(d_model=16, num_heads=2, d_ff=32, norm_first=norm_first, dropout=0.0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_norm_placement(norm_first):
    layer = TransformerLayer(_spec(norm_first)).eval()
    seen = {}
    layer.self_attn_residual.norm.register_forward_hook(lambda m, inp, out: seen.setdefault("in", inp[0]))
    x = torch.randn(2, 5, 16) * 3 + 1
    out, _ = layer(x)
    if norm_first:  # the norm sees the raw layer input; the residual stream is never normalised
        assert torch.equal(seen["in"], x)
        assert out.mean(-1).abs().max() > 0.1
    else:  # the norm sees x + attention(x); every layer output is normalised
        assert not torch.allclose(seen["in"], x)
        assert torch.allclose(out.mean(-1), torch.zeros(2, 5), atol=1e-5)
        assert torch.allclose(out.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3)


def test_final_norm_only_for_pre_ln():
    assert EncoderDecoder(tiny_encdec(norm_first=False)).encoder.final_norm is None
    assert EncoderDecoder(tiny_encdec(norm_first=False)).decoder.final_norm is None
    pre = EncoderDecoder(tiny_encdec(norm_first=True))
    assert pre.encoder.final_norm is not None and pre.decoder.final_norm is not None
    assert DecoderLM(tiny_gpt2()).stack.final_norm is not None  # GPT-2: pre-LN + final norm


@pytest.mark.parametrize("norm_first", [False, True])
def test_pre_and_post_ln_both_learn_copy_task(norm_first):
    torch.manual_seed(0)
    config = tiny_encdec(
        src_vocab_size=12,
        tgt_vocab_size=12,
        num_encoder_layers=1,
        num_decoder_layers=1,
        norm_first=norm_first,
    )
    model = EncoderDecoder(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(150):
        src = torch.randint(2, 12, (32, 6), generator=g)  # 0 = pad, 1 = BOS
        tgt_in = torch.cat((torch.ones(32, 1, dtype=torch.long), src[:, :-1]), 1)
        loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), src.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)

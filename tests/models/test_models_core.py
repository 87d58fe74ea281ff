"""Whole models: incremental decoding == full pass, causality, padding and permutation properties."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.models import DecoderLM, EncoderDecoder
from attentive.nn import DynamicCache, StaticCache
from helpers import tiny_encdec, tiny_gpt2

TOL = 1e-5


def _lm(kind: str, **overrides) -> DecoderLM:
    if kind == "llama-tiny":
        return attentive.build("llama-tiny", **overrides).eval()
    return DecoderLM(tiny_gpt2(**overrides)).eval()


def _cache(kind: str, config, batch: int, num_layers: int, max_len: int = 12):
    if kind == "dynamic":
        return DynamicCache()
    head_dim = config.head_dim or config.d_model // config.num_heads
    return StaticCache(num_layers, batch, config.num_kv_heads or config.num_heads, head_dim, max_len)


# ----------------------------------------------------------------------------- incremental decoding


@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
@pytest.mark.parametrize(
    "model_kind,positional",
    [
        ("llama-tiny", "rope"),
        ("gpt2-tiny", "learned"),
        ("gpt2-tiny", "sinusoidal"),
        ("gpt2-tiny", "alibi"),
        ("gpt2-tiny", "relative"),
    ],
)
def test_decoder_lm_incremental_decoding_matches_full_pass(model_kind, positional, cache_kind):
    model = _lm(model_kind) if model_kind == "llama-tiny" else _lm(model_kind, positional=positional)
    config = model.config
    ids = torch.randint(1, config.vocab_size, (2, 9))
    with torch.no_grad():
        full = model(ids)
        cache = _cache(cache_kind, config, 2, config.num_layers)
        # a 3-token prompt in one call, then one token at a time
        steps = [model(ids[:, :3], cache=cache)]
        for t in range(3, 9):
            steps.append(model(ids[:, t : t + 1], cache=cache))
    assert cache.get_seq_length() == 9
    assert (torch.cat(steps, 1) - full).abs().max() <= TOL


@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_encoder_decoder_incremental_decoding_matches_full_pass(cache_kind):
    model = EncoderDecoder(tiny_encdec()).eval()
    config = model.config
    src = torch.randint(1, 50, (2, 7))
    src[1, 5:] = config.pad_id  # padded source: the cross-attention mask must travel with the cache
    tgt = torch.randint(1, 50, (2, 6))
    src_valid = src != config.pad_id
    with torch.no_grad():
        memory = model.encode(src).hidden
        full = model.decode(tgt, memory, src_valid).hidden
        cache = _cache(cache_kind, config, 2, config.num_decoder_layers)
        steps = [model.decode(tgt[:, t : t + 1], memory, src_valid, cache=cache).hidden for t in range(6)]
        assert all(cache.has_cross(i) for i in range(config.num_decoder_layers))
    assert (torch.cat(steps, 1) - full).abs().max() <= TOL
    assert (model.head(full) - model(src, tgt)).abs().max() <= TOL


@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
def test_cache_reorder_in_a_model_matches_reordered_full_pass(cache_kind):
    model = _lm("llama-tiny")
    ids = torch.randint(1, 512, (3, 6))
    index = torch.tensor([2, 0, 0])
    with torch.no_grad():
        cache = _cache(cache_kind, model.config, 3, model.config.num_layers)
        model(ids[:, :4], cache=cache)
        cache.reorder(index)
        nxt = model(ids[index, 4:6], cache=cache)
        full = model(ids[index])
    assert (nxt - full[:, 4:6]).abs().max() <= TOL


def test_decoder_lm_cache_with_key_mask():
    """A masked pad in the prompt stays masked while decoding continues from the cache."""
    model = _lm("gpt2-tiny", positional="rope")
    ids = torch.randint(1, 50, (2, 6))
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 1] = False
    with torch.no_grad():
        full = model(ids, key_mask=valid)
        cache = DynamicCache()
        steps = [model(ids[:, :3], key_mask=valid[:, :3], cache=cache)]
        for t in range(3, 6):
            steps.append(model(ids[:, t : t + 1], key_mask=valid[:, : t + 1], cache=cache))
        assert (torch.cat(steps, 1) - full).abs().max() <= TOL
        assert (full[1, 2:] - model(ids)[1, 2:]).abs().max() > 1e-4  # the mask mattered
        with pytest.raises(ValueError, match="6 cached"):
            model(ids[:, :1], key_mask=valid[:, :3], cache=cache)


# ----------------------------------------------------------------------------- properties


def test_encoder_without_positions_is_permutation_equivariant():
    src = torch.randint(1, 50, (2, 8))
    perm = torch.randperm(8)
    none = EncoderDecoder(tiny_encdec(positional="none")).eval()
    with torch.no_grad():
        out, out_perm = none.encode(src).hidden, none.encode(src[:, perm]).hidden
    assert (out_perm - out[:, perm]).abs().max() <= TOL
    sin = EncoderDecoder(tiny_encdec(positional="sinusoidal")).eval()
    with torch.no_grad():
        out, out_perm = sin.encode(src).hidden, sin.encode(src[:, perm]).hidden
    assert (out_perm - out[:, perm]).abs().max() > 1e-2


@pytest.mark.parametrize("positional", ["sinusoidal", "rope", "alibi", "relative"])
def test_decoders_are_causal(positional):
    lm = DecoderLM(tiny_gpt2(positional=positional)).eval()
    ed = EncoderDecoder(tiny_encdec(positional=positional)).eval()
    src = torch.randint(1, 50, (2, 6))
    a = torch.randint(1, 50, (2, 8))
    for t in range(8):
        b = a.clone()
        b[:, t + 1 :] = torch.randint(1, 50, (2, 7 - t))
        if t < 7:
            assert not torch.equal(a, b)
        with torch.no_grad():
            assert (lm(a)[:, : t + 1] - lm(b)[:, : t + 1]).abs().max() <= TOL
            assert (ed(src, a)[:, : t + 1] - ed(src, b)[:, : t + 1]).abs().max() <= TOL
    with torch.no_grad():  # and a change at t does change position t
        b = a.clone()
        b[:, 3] = (a[:, 3] % 49) + 1
        assert (lm(a)[:, 3] - lm(b)[:, 3]).abs().max() > 1e-4


@pytest.mark.parametrize("positional", ["sinusoidal", "relative"])
def test_encoder_source_padding_invariance(positional):
    model = EncoderDecoder(tiny_encdec(positional=positional)).eval()
    src = torch.randint(1, 50, (2, 5))
    tgt = torch.randint(1, 50, (2, 4))
    padded = torch.cat((src, torch.zeros(2, 3, dtype=torch.long)), 1)  # pad_id 0
    with torch.no_grad():
        mem, mem_padded = model.encode(src).hidden, model.encode(padded).hidden
        assert (mem_padded[:, :5] - mem).abs().max() <= TOL
        assert (model(padded, tgt) - model(src, tgt)).abs().max() <= TOL
        # and without the mask the pads would matter: the test can fail
        unmasked = model.encode(padded, key_mask=torch.ones(2, 8, dtype=torch.bool)).hidden
        assert (unmasked[:, :5] - mem).abs().max() > 1e-3


def test_decoder_target_padding_invariance():
    model = EncoderDecoder(tiny_encdec()).eval()
    src = torch.randint(1, 50, (2, 5))
    tgt = torch.randint(1, 50, (2, 4))
    padded = torch.cat((tgt, torch.zeros(2, 3, dtype=torch.long)), 1)  # right-padded targets
    with torch.no_grad():
        assert (model(src, padded)[:, :4] - model(src, tgt)).abs().max() <= TOL
    lm = DecoderLM(tiny_gpt2()).eval()
    valid = torch.cat((torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)), 1)
    with torch.no_grad():
        assert (lm(padded, key_mask=valid)[:, :4] - lm(tgt)).abs().max() <= TOL


def test_decoder_lm_padding_mask_hides_pad_keys():
    """A pad in the middle, masked, is invisible to later tokens (a packed/ragged batch)."""
    lm = DecoderLM(tiny_gpt2(positional="rope")).eval()
    ids = torch.randint(1, 50, (1, 6))
    valid = torch.ones(1, 6, dtype=torch.bool)
    valid[0, 2] = False
    other = ids.clone()
    other[0, 2] = (ids[0, 2] % 49) + 1
    with torch.no_grad():
        assert (lm(ids, key_mask=valid)[:, 3:] - lm(other, key_mask=valid)[:, 3:]).abs().max() <= TOL
        assert (lm(ids)[:, 3:] - lm(other)[:, 3:]).abs().max() > 1e-4


# ----------------------------------------------------------------------------- presets and sizes


def _count(name: str) -> int:
    with torch.device("meta"):
        model = attentive.build(name)
    return sum(p.numel() for p in model.parameters())  # parameters() yields tied tensors once


def test_preset_parameter_counts():
    assert 63_000_000 <= _count("transformer-base") <= 66_000_000
    assert 210_000_000 <= _count("transformer-big") <= 216_000_000
    assert _count("gpt2-small") == 124_439_808
    assert _count("smollm2-135m") == 134_515_008


def test_model_input_errors_name_the_bad_value():
    lm = _lm("gpt2-tiny")
    with pytest.raises(ValueError, match=r"\(5,\)"):
        lm(torch.randint(0, 50, (5,)))
    with pytest.raises(TypeError, match="float32"):
        lm(torch.zeros(1, 5))
    ed = EncoderDecoder(tiny_encdec())
    with pytest.raises(ValueError, match=r"src.*\(5,\)"):
        ed(torch.randint(1, 50, (5,)), torch.randint(1, 50, (1, 3)))
    with pytest.raises(TypeError, match="tgt.*float32"):
        ed(torch.randint(1, 50, (1, 5)), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(1, 5, 32, 1\)"):
        lm.stack(torch.zeros(1, 5, 32, 1))
    with pytest.raises(ValueError, match="memory"):
        ed.decoder(torch.zeros(1, 3, 32))
    with pytest.raises(ValueError, match="beyond.*64"):
        lm(torch.randint(0, 50, (1, 65)))

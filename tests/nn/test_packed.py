"""PackedProjection: the column-blocked copy of a head gives F.linear's product, and decoding with
it gives the same tokens as with the model's own head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attentive.decode import DecodeBatch, Engine, GenerationConfig, Request
from attentive.models import DecoderLM, DecoderLMConfig
from attentive.nn import OutputProjection, PackedProjection
from attentive.nn.packed import PACKED_HEAD_MIN_BYTES, inference_head


@pytest.mark.parametrize("out_features", [1, 3, 7, 1000, 5003])
@pytest.mark.parametrize("blocks", [1, 2, 4, 5])
@pytest.mark.parametrize("lead", [(1,), (3,), (2, 5)])
def test_packed_product_equals_linear(out_features, blocks, lead):
    g = torch.Generator().manual_seed(out_features * 31 + blocks)
    weight = torch.randn(out_features, 24, generator=g, dtype=torch.float64)
    bias = torch.randn(out_features, generator=g, dtype=torch.float64)
    x = torch.randn(*lead, 24, generator=g, dtype=torch.float64)
    for b in (None, bias):
        got = PackedProjection(weight, b, blocks=blocks)(x)
        assert got.shape == (*lead, out_features)
        torch.testing.assert_close(got, F.linear(x, weight, b), rtol=0, atol=1e-12)


def test_packed_head_fp32_and_is_a_frozen_copy():
    head = OutputProjection(64, 997)
    x = torch.randn(2, 64)
    packed = PackedProjection.of(head)
    torch.testing.assert_close(packed(x), head(x), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        head.weight.add_(1.0)  # later changes to the weight do not reach the copy
    assert not torch.allclose(packed(x), head(x))
    with pytest.raises(ValueError, match="2-D"):
        PackedProjection(torch.zeros(3))


def _lm(vocab=1001):
    torch.manual_seed(0)
    config = DecoderLMConfig(
        vocab_size=vocab,
        num_layers=2,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=64,
        dropout=0.0,
        attention_dropout=0.0,
        init_std=0.25,
    )
    return DecoderLM(config).eval()


def test_decoding_picks_the_packed_copy_for_large_heads_on_cpu():
    model = _lm()
    assert DecodeBatch(model).head is model.head  # 1001 x 32: small, stays in cache
    assert isinstance(DecodeBatch(model, packed_head=True).head, PackedProjection)
    assert isinstance(DecodeBatch(_lm(vocab=70_000)).head, PackedProjection)  # 8.5 MiB
    wrapper = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert inference_head(wrapper, "cpu") is wrapper  # not a plain projection: used as it is
    ids = torch.randint(1, 1001, (2, 9))
    with torch.no_grad():
        want = model(ids)[:, -1]
        for packed in (False, True):
            got = DecodeBatch(model, packed_head=packed).start(ids.tolist())
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_static_decoding_tokens_same_with_packed_and_plain_head():
    model = _lm()
    ids = torch.randint(1, 1001, (3, 6)).tolist()
    runs = []
    for packed in (True, False):
        engine = Engine(model, cache="static", packed_head=packed)
        sequences = [engine.add(Request(row, GenerationConfig(max_new_tokens=30, temperature=0.0))) for row in ids]
        list(engine.run())
        runs.append([s.tokens for s in sequences])
    assert runs[0] == runs[1]


def test_inference_head_packs_only_large_cpu_heads():
    from attentive.nn.packed import PACKED_HEAD_MIN_BYTES, inference_head

    small, large = OutputProjection(32, 1000), OutputProjection(64, PACKED_HEAD_MIN_BYTES // (64 * 4))
    assert inference_head(small, "cpu") is small
    assert isinstance(inference_head(large, "cpu"), PackedProjection)
    assert inference_head(large, "cpu", packed=False) is large
    assert inference_head(large, "meta") is large  # not a CPU: cuBLAS needs no help


def test_the_packed_copy_is_made_once_and_follows_the_weights():
    head = OutputProjection(64, PACKED_HEAD_MIN_BYTES // (64 * 4))
    first = inference_head(head, "cpu")
    assert inference_head(head, "cpu") is first  # reused: packing copies the whole head
    with torch.no_grad():
        head.weight.mul_(2.0)  # an in-place change (a training step, loading weights)
    again = inference_head(head, "cpu")
    assert again is not first
    x = torch.randn(3, 64)
    torch.testing.assert_close(again(x), head(x), rtol=1e-5, atol=1e-5)

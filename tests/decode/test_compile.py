"""torch.compile(fullgraph=True) traces the models whole: no graph breaks from masks, caches or
positions. The ``aot_eager`` backend traces forward and backward exactly as inductor would see
them, without generating code, so these checks stay fast on CPU."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_encdec, tiny_gpt2

import attentive
from attentive.decode import generate
from attentive.models import DecoderLM, EncoderDecoder
import attentive.nn.loss as loss_module
from attentive.nn.loss import linear_cross_entropy


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _compiled(fn):
    return torch.compile(fn, fullgraph=True, backend="aot_eager")


def _lm_loss(model, ids, key_mask=None):
    hidden = model.decode(ids, key_mask=key_mask).hidden[:, :-1]  # (B, T-1, D)
    return linear_cross_entropy(hidden, model.head.weight, ids[:, 1:], label_smoothing=0.1, chunk_size=7)


@pytest.mark.parametrize("kind", ["gpt2-tiny", "llama-tiny", "alibi"])
def test_decoder_lm_training_step_compiles_without_graph_breaks(kind):
    if kind == "llama-tiny":
        model = attentive.build("llama-tiny")
    else:
        model = DecoderLM(tiny_gpt2(positional="alibi" if kind == "alibi" else "learned"))
    ids = torch.randint(1, 50, (2, 12))
    key_mask = torch.ones(2, 12, dtype=torch.bool)
    key_mask[1, :4] = False  # a left-padded row: the mask path must trace too
    want = _lm_loss(model, ids, key_mask)
    want.backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got = _compiled(_lm_loss)(model, ids, key_mask)
    got.backward()
    torch.testing.assert_close(got, want)
    for p, g in zip(model.parameters(), want_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(_compiled(_lm_loss)(model, ids)).all()  # is_causal path (no mask)


def test_fused_loss_traces_whole_where_it_is_not_an_opaque_op(monkeypatch):
    """On GPUs torch.compile traces the fused loss (its chunks and passes) instead of calling it
    as a custom op; forced onto CPU here, it must trace without graph breaks and agree."""
    monkeypatch.setattr(loss_module, "OPAQUE_DEVICES", ())
    model = DecoderLM(tiny_gpt2())
    ids = torch.randint(1, 50, (2, 12))
    want = _lm_loss(model, ids)
    want.backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got = _compiled(_lm_loss)(model, ids)
    got.backward()
    torch.testing.assert_close(got, want)
    for p, g in zip(model.parameters(), want_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)


def test_encoder_decoder_compiles_without_graph_breaks():
    model = EncoderDecoder(tiny_encdec())
    src = torch.randint(1, 50, (2, 9))
    src[1, 6:] = 0  # padded source
    tgt = torch.randint(1, 50, (2, 7))
    want = model(src, tgt)
    got = _compiled(model)(src, tgt)
    torch.testing.assert_close(got, want)
    got.float().pow(2).mean().backward()


def test_static_cache_decode_step_compiles_once_and_matches_eager():
    model = DecoderLM(tiny_gpt2()).eval()
    ids = torch.randint(1, 50, (2, 4)).tolist()
    eager = generate(model, None, ids, max_new_tokens=10, temperature=0.0, stop_tokens=(), cache="static").tokens
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    got = generate(
        model, None, ids, max_new_tokens=10, temperature=0.0, stop_tokens=(), cache="static", compile=counting_backend
    ).tokens
    assert got == eager
    assert len(graphs) == 1  # one graph for every step: slots and positions are tensors, not ints

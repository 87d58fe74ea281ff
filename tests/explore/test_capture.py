"""The taps the explorer puts on a model: they see the exact weights, change nothing the model
computes (in a plain call or inside the decoding engine), keep one layer at a time, and leave no hook
behind; the stream tap's sizes are the layer's own residual arithmetic."""

from __future__ import annotations

import torch

from attentive.decode import Engine, GenerationConfig, Request
from attentive.explore import AttentionTap, Site, StreamTap
from attentive.models import DecoderLM, EncoderDecoder

from helpers import tiny_encdec, tiny_gpt2


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@torch.no_grad()
def test_the_tap_sees_what_need_weights_returns_and_changes_nothing():
    torch.manual_seed(0)
    model = EncoderDecoder(tiny_encdec()).eval()
    src, tgt = torch.randint(4, 50, (2, 7)), torch.randint(4, 50, (2, 5))
    src[1, 5:] = 0  # padding in the second row
    valid = src != 0
    enc = model.encode(src, valid, need_weights=True)
    dec = model.decode(tgt, enc.hidden, valid, need_weights=True)
    seen: dict[Site, torch.Tensor] = {}
    live = []

    def sink(site, weights):
        seen[site] = weights.clone()
        live.append(site)

    with AttentionTap(model, sink):
        memory = model.encode(src, valid).hidden
        hidden = model.decode(tgt, memory, valid).hidden
    assert _hooks(model) == 0
    assert torch.equal(memory, enc.hidden) and torch.equal(hidden, dec.hidden)
    assert live == [
        Site("encoder", 0, "self"),
        Site("encoder", 1, "self"),
        Site("decoder", 0, "self"),
        Site("decoder", 0, "cross"),
        Site("decoder", 1, "self"),
        Site("decoder", 1, "cross"),
    ]
    for i in range(2):
        assert torch.equal(seen[Site("encoder", i, "self")], enc.self_attentions[i])
        assert torch.equal(seen[Site("decoder", i, "self")], dec.self_attentions[i])
        assert torch.equal(seen[Site("decoder", i, "cross")], dec.cross_attentions[i])


@torch.no_grad()
def test_weights_asked_for_still_reach_the_caller_under_the_tap():
    torch.manual_seed(0)
    model = DecoderLM(tiny_gpt2()).eval()
    ids = torch.randint(4, 50, (1, 9))
    want = model.decode(ids, need_weights=True).self_attentions
    with AttentionTap(model, lambda site, w: None):
        got = model.decode(ids, need_weights=True).self_attentions
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@torch.no_grad()
def test_generation_under_the_tap_is_unchanged_and_sees_each_new_token():
    torch.manual_seed(0)
    model = DecoderLM(tiny_gpt2()).eval()
    config = GenerationConfig(max_new_tokens=6, temperature=0.9, top_k=8, seed=2)

    def run(tap: bool):
        engine = Engine(model)
        seq = engine.add(Request([5, 6, 7], config))
        shapes = []
        sink = lambda site, w: shapes.append((site.layer, tuple(w.shape))) if site.layer == 0 else None  # noqa: E731
        while not engine.idle:
            if tap:
                with AttentionTap(model, sink):
                    engine.step()
            else:
                engine.step()
        return seq.tokens, shapes

    plain, _ = run(False)
    tapped, shapes = run(True)
    assert tapped == plain
    # the prompt once (3 queries), then one new token per step over the cache (1 query, growing keys)
    assert shapes[0] == (0, (1, 4, 3, 3)) and shapes[1:] == [(0, (1, 4, 1, 3 + i)) for i in range(1, 6)]


@torch.no_grad()
def test_stream_tap_records_the_residual_arithmetic():
    torch.manual_seed(0)
    for norm_first in (True, False):
        model = DecoderLM(tiny_gpt2(norm_first=norm_first)).eval()
        ids = torch.randint(4, 50, (1, 6))
        with StreamTap(model.stack, keep_outputs=True) as tap:
            hidden = model.decode(ids).hidden
        assert _hooks(model) == 0
        names = [name for name, _ in tap.layers[0].points]
        assert names == ["input", "after self-attention", "after feed-forward"]
        assert [name for name, _ in tap.layers[0].added] == ["self-attention", "feed-forward"]
        for a, b in zip(tap.layers, tap.layers[1:]):
            assert torch.equal(a.points[-1][1], b.points[0][1])
        final = model.stack.final_norm(tap.outputs[-1]) if model.stack.final_norm is not None else tap.outputs[-1]
        torch.testing.assert_close(final, hidden)
        if norm_first:  # pre-LN: the stream after a sub-layer is the input plus what it added, exactly
            layer = tap.layers[0]
            assert bool((layer.points[1][1] <= layer.points[0][1] + layer.added[0][1] + 1e-5).all())

"""The static-cache decode step (what a CUDA graph replays) gives the dynamic cache's tokens."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_gpt2

import attentive
from attentive.decode import DecodeBatch, Engine, GenerationConfig, Request, generate
from attentive.models import DecoderLM
from attentive.nn import DynamicCache


def _greedy_dynamic(model, ids: torch.Tensor, new: int) -> torch.Tensor:
    """The plainest greedy loop: a dynamic cache, one token at a time."""
    cache, out = DynamicCache(), []
    with torch.no_grad():
        logits = model(ids, cache=cache)[:, -1]
        for _ in range(new):
            nxt = logits.argmax(-1)
            out.append(nxt)
            logits = model(nxt[:, None], cache=cache)[:, -1]
    return torch.stack(out, 1)  # (B, new)


def _models():
    return [DecoderLM(tiny_gpt2()).eval(), attentive.build("llama-tiny").eval()]


def _static_tokens(model, ids: torch.Tensor, new: int, **options) -> list[list[int]]:
    return generate(
        model, None, ids.tolist(), max_new_tokens=new, temperature=0.0, stop_tokens=(), cache="static", **options
    ).tokens


@pytest.mark.parametrize("model_index", [0, 1], ids=["gpt2-tiny", "llama-tiny"])
def test_static_cache_matches_dynamic_cache_tokens(model_index):
    model = _models()[model_index]
    ids = torch.randint(1, model.config.vocab_size, (3, 5))
    want = _greedy_dynamic(model, ids, 12).tolist()
    engine = Engine(model, cache="static")
    runs = []
    for _ in range(2):  # a second run on the same engine reuses the cache's buffers and starts clean
        sequences = [
            engine.add(Request(row, GenerationConfig(max_new_tokens=12, temperature=0.0))) for row in ids.tolist()
        ]
        keys = None
        for _ in engine.run():
            keys = engine.batch.cache.keys
        runs.append(([s.tokens for s in sequences], keys.data_ptr()))
    assert runs[0][0] == runs[1][0] == want
    assert runs[0][1] == runs[1][1]  # same cache memory both times (what a captured graph needs)


def test_static_cache_left_padded_prompts_match_dynamic():
    model = DecoderLM(tiny_gpt2()).eval()
    prompts = [[5, 6, 7, 8, 9], [11, 12], [3]]
    want = generate(model, None, prompts, max_new_tokens=9, temperature=0.0, stop_tokens=(), cache="dynamic")
    got = generate(model, None, prompts, max_new_tokens=9, temperature=0.0, stop_tokens=(), cache="static")
    assert got.tokens == want.tokens


def test_static_batch_cuts_at_stop_tokens_and_ends_early():
    model = DecoderLM(tiny_gpt2()).eval()
    ids = torch.randint(1, 50, (1, 4))
    full = _greedy_dynamic(model, ids, 10)[0].tolist()
    stop = full[3]
    engine = Engine(model, cache="static")
    steps = []
    original = engine.batch.step
    engine.batch.step = lambda tokens: steps.append(1) or original(tokens)
    seq = engine.add(
        Request(ids[0].tolist(), GenerationConfig(max_new_tokens=10, temperature=0.0, stop_tokens=(stop,)))
    )
    list(engine.run())
    assert seq.tokens == full[: full.index(stop)] and seq.finish_reason == "stop_token"
    assert len(steps) == full.index(stop) < 9  # no model step after the row stopped


def test_static_sampling_is_seeded_and_misuse_is_refused():
    model = DecoderLM(tiny_gpt2()).eval()
    ids = torch.randint(1, 50, (2, 3)).tolist()
    a = generate(model, None, ids, max_new_tokens=8, temperature=1.0, top_k=5, seed=1, stop_tokens=(), cache="static")
    b = generate(model, None, ids, max_new_tokens=8, temperature=1.0, top_k=5, seed=1, stop_tokens=(), cache="static")
    assert a.tokens == b.tokens
    batch = DecodeBatch(model, cache="static")
    batch.start(ids, max_new_tokens=3)
    for token in (1, 2):
        batch.step(torch.tensor([token, token]))
    with pytest.raises(ValueError, match="do not fit"):  # slots for 3 prompt + 3 new tokens - 1
        batch.step(torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="fixed batch"):
        batch.join([[4, 5]])
    with pytest.raises(ValueError, match="CUDA"):
        DecodeBatch(model, cache="cuda_graph")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_replay_matches_eager_steps():
    model = DecoderLM(tiny_gpt2()).cuda().eval()
    ids = torch.randint(1, 50, (2, 6), device="cuda")
    eager = _static_tokens(model, ids, 20)
    engine = Engine(model, cache="cuda_graph")
    for _ in range(2):  # replays reuse the captured graph
        sequences = [
            engine.add(Request(row, GenerationConfig(max_new_tokens=20, temperature=0.0))) for row in ids.tolist()
        ]
        list(engine.run())
        assert engine.batch.graph is not None
        assert [s.tokens for s in sequences] == eager
    sampled = generate(
        model, None, ids.tolist(), max_new_tokens=20, temperature=1.0, seed=3, stop_tokens=(), cache="cuda_graph"
    )
    again = generate(
        model, None, ids.tolist(), max_new_tokens=20, temperature=1.0, seed=3, stop_tokens=(), cache="static"
    )
    assert sampled.tokens == again.tokens  # sampling stays outside the graph: the same draws


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_beams_reorder_a_replayed_batch_in_place():
    """Beam search reorders its rows every step; a captured graph reads the batch's buffers at the
    addresses it was captured with, so the reorder is in place: the tokens are the dynamic cache's."""
    torch.manual_seed(0)
    model = attentive.build("llama-tiny", vocab_size=40, max_len=32, init_std=0.15).cuda().eval()
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    options = dict(max_new_tokens=10, temperature=0.0, num_beams=3, stop_tokens=(34,))
    want = generate(model, None, prompts, cache="dynamic", **options)
    got = generate(model, None, prompts, cache="cuda_graph", **options)
    assert got.tokens == want.tokens and got.finish_reasons == want.finish_reasons

"""The static-cache decode step (what a CUDA graph replays) gives the dynamic cache's tokens."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_gpt2

import attentive
from attentive.decode.cuda_graph import StaticDecoder
from attentive.decode.sampling import generate
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


@pytest.mark.parametrize("model_index", [0, 1], ids=["gpt2-tiny", "llama-tiny"])
def test_static_decoder_matches_dynamic_cache_tokens(model_index):
    model = _models()[model_index]
    ids = torch.randint(1, model.config.vocab_size, (3, 5))
    want = _greedy_dynamic(model, ids, 12)
    decoder = StaticDecoder(model, batch_size=3, max_len=20, cuda_graph=False)
    got, steps = decoder.generate_ids(ids, 12)
    assert steps == 11
    assert torch.equal(got, want)
    again, _ = decoder.generate_ids(ids, 12)  # a second run on the same buffers starts clean
    assert torch.equal(again, want)


def test_static_decoder_left_padded_prompts_match_generate():
    model = DecoderLM(tiny_gpt2()).eval()
    prompts = [[5, 6, 7, 8, 9], [11, 12], [3]]
    want = generate(model, None, prompts, max_new_tokens=9, temperature=0.0, stop_tokens=(), cache="dynamic")
    got = StaticDecoder(model, batch_size=3, max_len=16, cuda_graph=False).generate(prompts, 9)
    assert got.tokens == want.tokens


def test_static_decoder_cuts_at_stop_tokens_and_can_end_early():
    model = DecoderLM(tiny_gpt2()).eval()
    ids = torch.randint(1, 50, (1, 4))
    full = _greedy_dynamic(model, ids, 10)[0].tolist()
    stop = full[3]
    decoder = StaticDecoder(model, batch_size=1, max_len=16, cuda_graph=False)
    out = decoder.generate([ids[0].tolist()], 10, stop_tokens=(stop,), check_every=1)
    assert out.tokens == [full[:full.index(stop)]]
    assert out.steps == max(full.index(stop), 1) < 9  # the first check comes after one step


def test_static_decoder_sampling_is_seeded_and_checks_arguments():
    model = DecoderLM(tiny_gpt2()).eval()
    ids = torch.randint(1, 50, (2, 3))
    decoder = StaticDecoder(model, batch_size=2, max_len=12, cuda_graph=False, temperature=1.0, top_k=5)
    torch.manual_seed(1)
    a, _ = decoder.generate_ids(ids, 8)
    torch.manual_seed(1)
    b, _ = decoder.generate_ids(ids, 8)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="exceed"):
        decoder.generate_ids(ids, 10)
    with pytest.raises(ValueError, match="batch"):
        decoder.generate_ids(ids[:1], 4)
    with pytest.raises(ValueError, match="CUDA"):
        StaticDecoder(model, batch_size=1, max_len=8, cuda_graph=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_replay_matches_eager_steps():
    model = DecoderLM(tiny_gpt2()).cuda().eval()
    ids = torch.randint(1, 50, (2, 6), device="cuda")
    eager, _ = StaticDecoder(model, 2, 32, cuda_graph=False).generate_ids(ids, 20)
    graphed = StaticDecoder(model, 2, 32, cuda_graph=True)
    got, _ = graphed.generate_ids(ids, 20)
    assert graphed.graph is not None
    assert torch.equal(got, eager)
    assert torch.equal(graphed.generate_ids(ids, 20)[0], eager)  # replays reuse the captured graph

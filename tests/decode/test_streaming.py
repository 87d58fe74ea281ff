"""Streaming generation through attention sinks (``window=``, ``sinks=``): bounded memory, past the
context, with the same tokens as the full cache while the window still covers everything, and as
StreamingLLM's sink cache driven by hand once it does not."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.decode import DecodeBatch, Engine, EngineConfig, GenerationConfig, Request, generate
from attentive.nn import SinkCache


def _lm(positional: str = "rope", max_len: int = 32):
    torch.manual_seed(0)
    return attentive.build("llama-tiny", vocab_size=40, max_len=max_len, positional=positional, init_std=0.15).eval()


PROMPTS = [[5, 6, 7, 8], [9, 10, 11, 12]]


@pytest.mark.parametrize("positional", ["rope", "alibi", "relative"])
def test_a_window_that_covers_everything_changes_nothing(positional):
    model = _lm(positional, max_len=64)
    full = generate(model, None, PROMPTS, max_new_tokens=20, temperature=0.0, stop_tokens=()).tokens
    for window, sinks in ((24, 0), (20, 4)):
        streamed = generate(
            model, None, PROMPTS, max_new_tokens=20, temperature=0.0, stop_tokens=(), window=window, sinks=sinks
        ).tokens
        assert streamed == full


@pytest.mark.parametrize("prompt_len", [6, 30])  # within S + W; longer (read a window at a time)
def test_streaming_equals_the_sink_cache_driven_by_hand(prompt_len):
    """Past S + W the engine's tokens are what one SinkCache, fed the prompt and then each chosen
    token, produces: the same computation, no re-encoding, positions within the cache."""
    model, window, sinks = _lm(), 8, 2
    prompt = torch.randint(1, 40, (prompt_len,), generator=torch.Generator().manual_seed(1)).tolist()
    out = generate(model, None, prompt, max_new_tokens=40, temperature=0.0, stop_tokens=(), window=window, sinks=sinks)
    cache, ids, tokens = SinkCache(window, sinks), torch.tensor([prompt]), []
    with torch.no_grad():
        first = min(prompt_len, window + sinks)
        hidden = model.decode(ids[:, :first], cache=cache).hidden
        for start in range(first, prompt_len, window):
            hidden = model.decode(ids[:, start : start + window], cache=cache).hidden
        for _ in range(40):
            token = int(model.head(hidden[:, -1]).argmax(-1))
            tokens.append(token)
            hidden = model.decode(torch.tensor([[token]]), cache=cache).hidden
    assert out.tokens[0] == tokens


def test_memory_stays_bounded_and_positions_stay_in_the_cache():
    """A model with a 32-position learned table generates 300 tokens: positions never pass S + W."""
    model, window, sinks = _lm("learned", max_len=32), 12, 4
    batch = DecodeBatch(model, window=window, sinks=sinks)
    logits = batch.start([[1, 2, 3]])
    sizes = set()
    for step in range(300):
        logits = batch.step(logits.argmax(-1))
        if step >= window + sinks:
            sizes.add(batch.cache.nbytes())
        assert batch.cache.slots(1).item() <= window + sinks - 1
        assert batch.ids.shape[1] <= 2 * (window + sinks)  # the token buffer is bounded too
    assert len(sizes) == 1 and all(k.shape[2] == window + sinks for k in batch.cache.keys)
    assert batch.cache.seen == 303


def test_streaming_refuses_what_it_cannot_do():
    model = _lm()
    with pytest.raises(ValueError, match="prompts of equal length"):
        generate(model, None, [[1, 2], [3]], max_new_tokens=3, window=8)
    with pytest.raises(ValueError, match="use cache='dynamic' .*'static'"):
        EngineConfig(window=8, cache="static")
    with pytest.raises(ValueError, match=r"sinks \(9\) must not exceed the window \(8\)"):
        EngineConfig(window=8, sinks=9)
    with pytest.raises(ValueError, match="sinks=4 needs a window"):
        EngineConfig(sinks=4)
    with pytest.raises(ValueError, match="window must be a positive integer .*got 0"):
        EngineConfig(window=0)
    with pytest.raises(ValueError, match=r"sinks \(6\) must not exceed the window \(4\)"):
        DecodeBatch(model, window=4, sinks=6)


def test_a_streaming_batch_lets_new_requests_wait_until_it_finishes():
    model = _lm()
    engine = Engine(model, window=8, sinks=2)
    first = engine.add(Request([1, 2, 3], GenerationConfig(max_new_tokens=5, temperature=0.0)))
    engine.step()
    second = engine.add(Request([4, 5, 6, 7, 8], GenerationConfig(max_new_tokens=3, temperature=0.0)))
    list(engine.run())
    assert len(first.tokens) == 5 and len(second.tokens) == 3
    alone = generate(
        model, None, [4, 5, 6, 7, 8], max_new_tokens=3, temperature=0.0, stop_tokens=(), window=8, sinks=2
    ).tokens[0]
    assert second.tokens == alone

"""The decoding engine: one sampler and one chain of processors for every cache mode, requests
joining and leaving between steps, encoder-decoder rows with their memory, and outputs unchanged
from the four loops it replaced."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attentive
from attentive.decode import Engine, GenerationConfig, Request, SearchConfig, beam_search, generate, greedy_search
from attentive.models import EncoderDecoder, EncoderDecoderConfig

PROMPTS = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]


def _lm(max_len: int = 24):
    torch.manual_seed(0)
    return attentive.build("llama-tiny", vocab_size=40, max_len=max_len, init_std=0.15).eval()


def _alone(model, prompt, config, cache="dynamic"):
    engine = Engine(model, cache=cache)
    sequence = engine.add(Request(prompt, config))
    list(engine.run())
    return sequence.tokens


# ----------------------------------------------------------------------------- one sampler


@pytest.mark.parametrize(
    "settings",
    [
        dict(temperature=0.9, seed=11),
        dict(temperature=1.3, top_k=7, top_p=0.9, repetition_penalty=1.3, seed=5),
    ],
    ids=["plain", "every-processor"],
)
def test_same_seed_same_tokens_in_every_cache_mode(settings):
    """The draw depends on the logits and the row's seed only, so every way of keeping the cache
    (and compiling the static step) samples the same text."""
    model = _lm()
    runs = {}
    for cache, compile_ in (("none", False), ("dynamic", False), ("static", False), ("static", "aot_eager")):
        torch._dynamo.reset()
        out = generate(
            model, None, PROMPTS, max_new_tokens=18, stop_tokens=(), cache=cache, compile=compile_, **settings
        )
        runs[f"{cache}{'+compile' if compile_ else ''}"] = out.tokens
    torch._dynamo.reset()
    first = runs["none"]
    assert all(tokens == first for tokens in runs.values()), runs
    assert len({tuple(t) for t in first}) == 3  # three prompts, three different samples
    other = generate(model, None, PROMPTS, max_new_tokens=18, stop_tokens=(), **{**settings, "seed": 999}).tokens
    assert other != first


def test_a_rows_sample_does_not_depend_on_its_batch():
    """Row i draws from its own generator (seed + i): alone with that seed it draws the same."""
    model = _lm()
    batch = generate(model, None, PROMPTS, max_new_tokens=15, temperature=1.0, seed=3, stop_tokens=()).tokens
    for i, prompt in enumerate(PROMPTS):
        assert (
            generate(model, None, prompt, max_new_tokens=15, temperature=1.0, seed=3 + i, stop_tokens=()).tokens[0]
            == batch[i]
        )


# ----------------------------------------------------------------------------- requests between steps


def test_requests_that_join_between_steps_decode_as_if_alone():
    model = _lm()
    greedy = GenerationConfig(max_new_tokens=12, temperature=0.0)
    sampled = GenerationConfig(max_new_tokens=9, temperature=1.0, top_p=0.9, seed=4)
    engine = Engine(model, cache="dynamic")
    first = engine.add(Request([5, 6], greedy))
    for _ in range(3):
        engine.step()
    # a longer prompt than the running window, a shorter one, and a sampled one join mid-run
    late = [
        engine.add(Request([9, 10, 11, 12, 13, 14, 15], greedy)),
        engine.add(Request([8], greedy)),
        engine.add(Request([7, 3, 2], sampled)),
    ]
    engine.step()
    assert engine.batch.rows == 4
    list(engine.run())
    assert first.tokens == _alone(model, [5, 6], greedy)
    for seq in late:
        assert seq.tokens == _alone(model, seq.request.prompt, seq.request.config), seq.request.prompt
    assert engine.batch.rows == 0 and engine.idle


def test_a_cancelled_request_frees_its_row_and_the_others_go_on():
    model = _lm()
    config = GenerationConfig(max_new_tokens=10, temperature=0.0)
    engine = Engine(model)
    keep, drop = engine.add(Request([5, 6, 7], config)), engine.add(Request([8, 9], config))
    engine.step()
    engine.cancel(drop)
    events = engine.step()
    assert any(e.sequence is drop and e.finish_reason == "cancelled" for e in events)
    assert engine.batch.rows == 1 and drop.finish_reason == "cancelled" and len(drop.tokens) == 1
    list(engine.run())
    assert keep.tokens == _alone(model, [5, 6, 7], config)


def test_reconfigure_changes_the_settings_from_the_next_token_on():
    """New settings apply to the following tokens, over the same KV cache: a greedy sequence that
    starts sampling draws what a fresh request for its text so far draws with that seed, and a
    sampled one switched to greedy continues as greedy would."""
    model = _lm()
    greedy = GenerationConfig(max_new_tokens=10, temperature=0.0)
    sampled = GenerationConfig(max_new_tokens=7, temperature=1.2, top_k=9, top_p=0.95, seed=7)
    engine = Engine(model)
    seq = engine.add(Request([5, 6, 7], greedy))
    for _ in range(3):
        engine.step()
    head = list(seq.tokens)
    assert seq.generator is None
    engine.reconfigure(seq, sampled.replace(max_new_tokens=10))
    list(engine.run())
    assert seq.tokens[:3] == head and seq.tokens[3:] == _alone(model, [5, 6, 7, *head], sampled)

    engine = Engine(model)
    seq = engine.add(Request([5, 6, 7], sampled.replace(max_new_tokens=10)))
    engine.step()
    engine.step()
    engine.reconfigure(seq, greedy)
    list(engine.run())
    assert seq.tokens[2:] == _alone(model, [5, 6, 7, *seq.tokens[:2]], greedy.replace(max_new_tokens=8))
    with pytest.raises(ValueError, match="has finished"):
        engine.reconfigure(seq, greedy)


def test_a_steps_tokens_are_emitted_before_the_model_runs_again():
    model = _lm()
    engine = Engine(model)
    order, emitted = [], []
    forward = engine.batch.step
    engine.batch.step = lambda tokens: (order.append("forward"), forward(tokens))[1]
    seq = engine.add(Request([5, 6], GenerationConfig(max_new_tokens=3, temperature=0.0)))
    while not engine.idle:
        returned = engine.step(emit=lambda events: (order.append("emit"), emitted.append(events)))
        assert emitted[-1] is returned
    assert order == ["emit", "forward", "emit", "forward", "emit"]  # the last token needs no forward
    assert [e.token for events in emitted for e in events] == seq.tokens == _alone(model, [5, 6], seq.request.config)


def test_a_static_batch_is_fixed_so_new_requests_wait_for_it():
    model = _lm()
    config = GenerationConfig(max_new_tokens=4, temperature=0.0)
    engine = Engine(model, cache="static")
    first = engine.add(Request([5, 6, 7], config))
    engine.step()
    later = engine.add(Request([8], config))
    engine.step()
    assert engine.batch.rows == 1 and later in engine.pending
    list(engine.run())
    assert first.tokens == _alone(model, [5, 6, 7], config) and later.tokens == _alone(model, [8], config)


def test_logprobs_are_the_models_log_probabilities():
    model = _lm()
    engine = Engine(model)
    seq = engine.add(Request([5, 6, 7], GenerationConfig(max_new_tokens=5, temperature=0.0, logprobs=3)))
    list(engine.run())
    ids = torch.tensor([[5, 6, 7, *seq.tokens]])
    with torch.no_grad():
        want = F.log_softmax(model(ids)[0, 2:-1].float(), dim=-1)  # (5, V) before each new token
    for step, (token, lp, top) in enumerate(zip(seq.tokens, seq.logprobs, seq.top_logprobs)):
        assert lp == pytest.approx(float(want[step, token]), abs=1e-5)
        assert [t for t, _ in top] == want[step].topk(3).indices.tolist()
        assert top[0][0] == token  # greedy took the most likely token


def test_encoder_decoder_rows_join_with_their_memory():
    """Translation rows carry their own encoder output: joining later changes nothing."""
    torch.manual_seed(0)
    model = EncoderDecoder(
        EncoderDecoderConfig(
            src_vocab_size=60,
            tgt_vocab_size=60,
            d_model=32,
            num_heads=4,
            d_ff=64,
            num_encoder_layers=2,
            num_decoder_layers=2,
            max_len=40,
            dropout=0.0,
            attention_dropout=0.0,
        )
    ).eval()
    sources = [torch.tensor([[11, 12, 13, 14]]), torch.tensor([[20, 21]]), torch.tensor([[30, 31, 32, 33, 34, 35]])]
    alone = [greedy_search(model, s, SearchConfig(beam_size=1, max_len_b=6)).tokens[0] for s in sources]
    engine = Engine(model)
    sequences = []
    for src in sources:
        memory = model.encode(src).hidden[0]
        limit = src.shape[1] + 6 + 1
        sequences.append(
            engine.add(
                Request(
                    [1],
                    GenerationConfig(max_new_tokens=limit, temperature=0.0, force_stop_at_limit=True, stop_tokens=(2,)),
                    memory=memory,
                )
            )
        )
        engine.step()
    list(engine.run())
    assert [s.tokens for s in sequences] == alone


def test_processors_force_suppress_and_end_at_the_limit():
    model = _lm()
    free = _alone(model, [5, 6], GenerationConfig(max_new_tokens=6, temperature=0.0))
    banned = free[0]
    out = _alone(model, [5, 6], GenerationConfig(max_new_tokens=6, temperature=0.0, suppress_tokens=(banned,)))
    assert banned not in out
    out = _alone(model, [5, 6], GenerationConfig(max_new_tokens=6, temperature=0.0, begin_suppress_tokens=(banned,)))
    assert out[0] != banned
    out = _alone(model, [5, 6], GenerationConfig(max_new_tokens=6, temperature=0.0, forced_tokens={0: 3, 2: 4}))
    assert out[0] == 3 and out[2] == 4
    engine = Engine(model)
    seq = engine.add(
        Request(
            [5, 6], GenerationConfig(max_new_tokens=4, temperature=0.0, force_stop_at_limit=True, stop_tokens=(33,))
        )
    )
    list(engine.run())
    assert len(seq.tokens) == 3 and seq.finish_reason == "stop_token"  # the 4th token is the stop token


# ----------------------------------------------------------------------------- unchanged outputs
# Produced by the loops the engine replaced (greedy_search, beam_search and generate() at commit
# 4c16bf0) on the seeded models below; the engine must give the same tokens and scores.

GREEDY = [
    [58] * 39,
    [58] * 39,
    [27] + [58] + [43] + [58] + [43] * 10 + [58] * 4 + [43] * 9 + [58] * 12,
    [50] * 11 + [48] * 28,
    [18] + [16] * 38,
    [16] * 39,
]
BEAM4 = [
    [58] * 39,
    [58] * 39,
    [43] * 39,
    [48] + [50] * 20 + [48] + [50] * 17,
    [33] + [16] * 7 + [18] * 31,
    [16] * 39,
]
BEAM4_SCORES = [-5.74736, -7.2005, -25.29274, -21.74732, -11.30127, -10.87914]
LM_GREEDY = [
    [22, 20, 34, 5, 34, 36, 36, 36, 36, 36, 19, 34, 8, 8, 8, 8, 8, 8, 8, 8],
    [39, 25, 19, 39, 8, 25, 19, 19, 19, 19, 34, 34, 34, 0, 31, 0, 0, 0, 0, 0],
    [17, 16, 38, 38, 34, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]


def _translation_model_and_sources():
    torch.manual_seed(0)
    cfg = EncoderDecoderConfig(
        src_vocab_size=60,
        tgt_vocab_size=60,
        d_model=32,
        num_heads=4,
        d_ff=64,
        num_encoder_layers=2,
        num_decoder_layers=2,
        max_len=40,
        dropout=0.0,
        attention_dropout=0.0,
    )
    model = EncoderDecoder(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(2.0)
    g = torch.Generator().manual_seed(11)
    src = torch.zeros(6, 9, dtype=torch.long)
    for i, n in enumerate([9, 3, 5, 2, 7, 4]):
        src[i, :n] = torch.randint(4, 60, (n,), generator=g)
    return model, src


def test_translation_search_output_is_unchanged():
    model, src = _translation_model_and_sources()
    assert greedy_search(model, src, SearchConfig(beam_size=1)).tokens == GREEDY
    beam = beam_search(model, src, SearchConfig(beam_size=4))
    assert beam.tokens == BEAM4
    assert beam.scores == pytest.approx(BEAM4_SCORES, abs=1e-4)


@pytest.mark.parametrize("cache", ["dynamic", "static", "none"])
def test_language_model_greedy_output_is_unchanged(cache):
    out = generate(_lm(), None, PROMPTS, max_new_tokens=20, temperature=0, stop_tokens=(), cache=cache)
    assert out.tokens == LM_GREEDY

"""Slot decoding (``decode/slots.py``): rows of one static cache, each at its own length, joining
and leaving between steps. Every check compares tokens with the dynamic cache, the reference."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.decode import Engine, EngineConfig, GenerationConfig, Request, generate
from attentive.decode.slots import SlotBatch, bucket, forget_compiled
from attentive.nn.inference import optimize

PROMPTS = [[5, 6, 7], [8], [9, 10, 11, 12, 13], list(range(1, 30))]


def _lm(max_len: int = 128):
    torch.manual_seed(0)
    return attentive.build("llama-tiny", vocab_size=40, max_len=max_len, init_std=0.15).eval()


def _run(model, prompts, config, cache, **engine):
    out = generate(model, None, prompts, config, stop_tokens=(), cache=cache, **engine)
    return out.tokens


@pytest.mark.parametrize(
    "settings",
    [dict(temperature=0), dict(temperature=0.9, top_k=9, seed=4), dict(temperature=0, repetition_penalty=1.4)],
    ids=["greedy", "sampled", "penalised"],
)
def test_slots_give_the_dynamic_caches_tokens(settings):
    model = _lm()
    config = GenerationConfig(max_new_tokens=20, **settings)
    assert _run(model, PROMPTS, config, "slots") == _run(model, PROMPTS, config, "dynamic")


def test_rows_joining_and_leaving_between_steps_decode_as_alone():
    """Requests of different lengths and limits, added while others decode: each one's tokens are
    the tokens it gets alone in a dynamic cache (prompts longer than a chunk are written a chunk a
    step between the others' steps)."""
    model = _lm()
    configs = [GenerationConfig(max_new_tokens=n, temperature=0, stop_tokens=()) for n in (6, 15, 3, 12)]
    prompts = [PROMPTS[0], PROMPTS[3], PROMPTS[1], list(range(2, 39))]
    alone = []
    for prompt, config in zip(prompts, configs):
        engine = Engine(model, cache="dynamic")
        seq = engine.add(Request(prompt, config))
        list(engine.run())
        alone.append(seq.tokens)
    engine = Engine(model, cache="slots", max_batch=3)
    engine.batch.chunk = 8  # long prompts take several steps
    sequences = [engine.add(Request(prompts[0], configs[0])), engine.add(Request(prompts[1], configs[1]))]
    steps = 0
    while not engine.idle:
        engine.step()
        steps += 1
        if steps == 2:
            sequences.append(engine.add(Request(prompts[2], configs[2])))
        if steps == 4:
            sequences.append(engine.add(Request(prompts[3], configs[3])))
    assert [s.tokens for s in sequences] == alone
    assert engine.batch.slots <= 3


def test_beam_search_in_slots_equals_the_dynamic_cache():
    model = _lm()
    config = GenerationConfig(max_new_tokens=10, temperature=0, num_beams=3, stop_tokens=(3,))
    assert _run(model, PROMPTS[:3], config, "slots") == _run(model, PROMPTS[:3], config, "dynamic")


def test_a_prompt_that_shares_a_beginning_reuses_its_keys():
    """The second request begins with the first one's prompt: it takes the slot that holds it (or
    copies it from a slot in use) and computes only its own tokens, with the same result."""
    model = _lm()
    system = list(range(1, 25))
    config = GenerationConfig(max_new_tokens=5, temperature=0, stop_tokens=())
    engine = Engine(model, cache="slots", max_batch=4)
    first = engine.add(Request(system + [30], config))
    list(engine.run())
    written = []
    original = engine.batch._write
    engine.batch._write = lambda slot, ids, start: written.append((len(ids), start)) or original(slot, ids, start)
    second = engine.add(Request(system + [31, 32], config))
    list(engine.run())
    assert written == [(2, 24)]  # only the two new tokens were computed, from position 24
    reference = Engine(model, cache="dynamic")
    want = reference.add(Request(system + [31, 32], config))
    list(reference.run())
    assert second.tokens == want.tokens and first.tokens

    # shared with a row still decoding: copied into a free slot
    engine = Engine(model, cache="slots", max_batch=4)
    running = engine.add(Request(system + [30], GenerationConfig(max_new_tokens=30, temperature=0, stop_tokens=())))
    engine.step()
    engine.step()
    joining = engine.add(Request(system + [33], config))
    list(engine.run())
    reference = Engine(model, cache="dynamic")
    want = reference.add(Request(system + [33], config))
    list(reference.run())
    assert joining.tokens == want.tokens and len(running.tokens) == 30


def test_generation_past_a_slots_context_matches_the_dynamic_cache():
    """A slot that fills keeps its newest half and re-encodes it, as DecodeBatch's window does
    (there the batch's shared window decides when; here each row's own length, so rows are
    compared alone)."""
    model = _lm(max_len=32)
    config = GenerationConfig(max_new_tokens=60, temperature=0)
    for prompt in PROMPTS[:3]:
        want = _run(model, [prompt], config, "dynamic", context=16)
        assert _run(model, [prompt], config, "slots", context=16) == want
        assert len(want[0]) == 60


def test_slots_grow_when_a_later_row_needs_more():
    model = _lm(max_len=1024)
    batch = SlotBatch(model, EngineConfig(cache="slots"), layout=model.cache_layout())
    batch.start([[1, 2]], max_new_tokens=4)
    assert (batch.slots, batch.slot_len) == (1, 256)
    batch.join([[1 + i % 30 for i in range(300)]])
    assert batch.slots == 2 and batch.slot_len == 512


def test_auto_picks_slots_for_a_prepared_model_on_cpu_and_dynamic_otherwise():
    plain = _lm()
    assert Engine(plain).config.cache == "dynamic" and Engine(plain).config.compile is False
    prepared = optimize(_lm())
    engine = Engine(prepared)
    assert engine.config.cache == "slots" and isinstance(engine.batch, SlotBatch)
    assert engine.config.compile == "auto"  # decided from the first batch's tokens
    assert Engine(prepared, window=8).config.cache == "dynamic"  # a stream has its own cache


def test_the_prepared_models_default_path_gives_the_plain_models_tokens():
    """Fast by default: the optimised fp32 model in slots (the default) decodes the tokens of the
    plain model in the dynamic cache (the reference path)."""
    plain = _lm()
    prepared = optimize(_lm())
    config = GenerationConfig(max_new_tokens=12, temperature=0)
    out = generate(prepared, None, PROMPTS, config, stop_tokens=())
    assert out.tokens == _run(plain, PROMPTS, config, "dynamic")


def test_compiled_slot_step_gives_the_eager_tokens():
    model = _lm()
    config = GenerationConfig(max_new_tokens=8, temperature=0)
    torch._dynamo.reset()
    try:
        compiled = _run(model, PROMPTS[:2], config, "slots", compile="aot_eager")
        again = _run(model, PROMPTS[1:3], config, "slots", compile="aot_eager")  # the step is kept with the model
    finally:
        forget_compiled(model)
        torch._dynamo.reset()
    assert compiled == _run(model, PROMPTS[:2], config, "dynamic")
    assert again == _run(model, PROMPTS[1:3], config, "dynamic")


def test_bucket_sizes():
    assert [bucket(n, 16) for n in (1, 2, 3, 5, 9, 17)] == [1, 2, 4, 8, 16, 16]


def test_slots_refuse_encoder_memory():
    from attentive.models import EncoderDecoder, EncoderDecoderConfig

    model = EncoderDecoder(
        EncoderDecoderConfig(
            src_vocab_size=20,
            tgt_vocab_size=20,
            d_model=16,
            num_heads=2,
            num_encoder_layers=1,
            num_decoder_layers=1,
            d_ff=32,
            max_len=32,
        )
    )
    with pytest.raises(ValueError, match="decoder-only"):
        Engine(model, cache="slots")


def test_a_server_s_two_row_minimum_pads_a_lone_row_without_changing_it():
    """A server runs every step with at least two rows (one compiled graph for every load): a
    lone request's padding row changes nothing in its tokens."""
    model = _lm()
    config = GenerationConfig(max_new_tokens=12, temperature=0, stop_tokens=())
    engine = Engine(model, cache="slots")
    engine.batch.min_rows = 2
    seq = engine.add(Request(PROMPTS[2], config))
    list(engine.run())
    assert [seq.tokens] == _run(model, [PROMPTS[2]], config, "dynamic") and engine.batch.slots >= 2

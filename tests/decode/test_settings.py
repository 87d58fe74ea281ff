"""Decoding settings in two kinds (per request, per engine), each refused where it cannot be
honoured; the engine refuses requests it cannot decode; every generating model states its own
cache geometry, and decoding reads only that."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.decode import DecodeBatch, Engine, EngineConfig, GenerationConfig, Request, generate
from attentive.decode.config import split_options
from attentive.models import DecoderLM, EncoderDecoder, SpeechModel, SpeechConfig
from attentive.nn.cache import CacheLayout, StaticCache, check_window

from helpers import tiny_encdec, tiny_gpt2


def _lm(max_len: int = 24):
    torch.manual_seed(0)
    return attentive.build("llama-tiny", vocab_size=40, max_len=max_len, init_std=0.15).eval()


# ----------------------------------------------------------------------------- two kinds of settings


@pytest.mark.parametrize(
    "name, value",
    [
        ("context", 16),
        ("window", 8),
        ("sinks", 2),
        ("cache", "static"),
        ("compile", True),
        ("pad_id", 3),
        ("max_batch", 4),
    ],
)
def test_an_engine_setting_given_to_a_request_is_refused_naming_its_kind(name, value):
    with pytest.raises(ValueError, match=f"^{name} is an engine setting.*EngineConfig\\({name}=") as err:
        GenerationConfig(**{name: value})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=f"^{name} is an engine setting.*EngineConfig"):
        GenerationConfig(temperature=0.0).replace(**{name: value})


@pytest.mark.parametrize("name, value", [("temperature", 0.0), ("stop_tokens", (2,)), ("num_beams", 4)])
def test_a_request_setting_given_to_the_engine_is_refused_naming_its_kind(name, value):
    with pytest.raises(ValueError, match=f"^{name} is a request setting.*GenerationConfig\\({name}="):
        EngineConfig(**{name: value})
    with pytest.raises(ValueError, match=f"^{name} is a request setting"):
        Engine(_lm(), **{name: value})


def test_generate_routes_each_option_to_its_kind_and_names_both_for_an_unknown_one():
    request, engine = split_options(dict(temperature=0.0, cache="static", window=None, num_beams=2, seed=1))
    assert request == dict(temperature=0.0, num_beams=2, seed=1) and engine == dict(cache="static", window=None)
    with pytest.raises(ValueError, match=r"unknown generation option\(s\) \['bogus'\]") as err:
        generate(_lm(), None, [[1, 2]], bogus=1)
    assert "GenerationConfig" in str(err.value) and "EngineConfig" in str(err.value)
    assert "'temperature'" in str(err.value) and "'window'" in str(err.value)
    model = _lm()
    request, engine = GenerationConfig(max_new_tokens=6, temperature=0.0, stop_tokens=()), EngineConfig(cache="static")
    assert (
        generate(model, None, [[1, 2]], request, engine=engine).tokens
        == generate(model, None, [[1, 2]], max_new_tokens=6, temperature=0.0, stop_tokens=(), cache="static").tokens
    )
    assert (
        generate(model, None, [[1, 2]], request, engine=engine, cache="none").tokens
        == generate(model, None, [[1, 2]], request, engine=EngineConfig(cache="none")).tokens
    )


def test_each_kind_is_checked_once_where_it_is_made():
    with pytest.raises(ValueError, match="num_beams=3 is a deterministic search: give temperature=0"):
        GenerationConfig(num_beams=3)
    with pytest.raises(ValueError, match="num_beams must be a positive integer"):
        GenerationConfig(num_beams=0, temperature=0.0)
    with pytest.raises(ValueError, match="logprobs are per chosen token"):
        GenerationConfig(num_beams=2, temperature=0.0, logprobs=1)
    with pytest.raises(ValueError, match="stop_strings are matched in one sequence's text"):
        GenerationConfig(num_beams=2, temperature=0.0, stop_strings=("x",))
    with pytest.raises(ValueError, match="length_penalty ranks beam-search hypotheses: it needs num_beams"):
        GenerationConfig(length_penalty=0.6)
    with pytest.raises(ValueError, match="early_stopping must be True, False or 'never'"):
        GenerationConfig(num_beams=2, temperature=0.0, early_stopping="sometimes")
    with pytest.raises(ValueError, match="length_penalty_form must be one of"):
        GenerationConfig(num_beams=2, temperature=0.0, length_penalty_form="linear")
    with pytest.raises(ValueError, match="compile needs fixed shapes"):
        EngineConfig(cache="dynamic", compile=True)
    with pytest.raises(ValueError, match="compile needs fixed shapes"):
        Engine(_lm(), compile=True)  # a plain model: "auto" is the dynamic cache
    with pytest.raises(ValueError, match="max_batch must be a positive integer"):
        EngineConfig(max_batch=0)
    with pytest.raises(ValueError, match="cache must be one of"):
        DecodeBatch(_lm(), cache="paged")


def test_the_window_check_is_one_function_shared_by_engine_caches_and_streams():
    """``nn.cache.check_window``: the engine settings, the caches and perplexity streams say the same."""
    from attentive.evaluate.perplexity import stream_cache
    from attentive.nn.cache import SinkCache

    model = _lm()
    for window, sinks, message in (
        (8, 9, r"sinks \(9\) must not exceed the window \(8\)"),
        (0, 0, "window must be a positive integer .*got 0"),
        (8, -1, "sinks must be an integer >= 0, got -1"),
    ):
        for make in (
            check_window,
            lambda w, s: EngineConfig(window=w, sinks=s),
            SinkCache,
            lambda w, s: stream_cache(model, w, s),
        ):
            with pytest.raises(ValueError, match=message):
                make(window, sinks)
    for make in (lambda: check_window(None, 2), lambda: EngineConfig(sinks=2), lambda: stream_cache(model, None, 2)):
        with pytest.raises(ValueError, match="sinks=2 needs a window"):
            make()


# ----------------------------------------------------------------------------- what the engine refuses


def test_the_engine_refuses_requests_it_cannot_honour():
    model = _lm(max_len=24)
    beams = GenerationConfig(max_new_tokens=8, temperature=0.0, num_beams=3)
    with pytest.raises(
        ValueError, match=r"num_beams=3: beam search is not implemented for a streaming engine \(window=8\)"
    ):
        Engine(model, window=8).add(Request([1, 2], beams))
    with pytest.raises(ValueError, match="num_beams=3 needs 3 rows; this engine decodes at most max_batch=2"):
        Engine(model, max_batch=2).add(Request([1, 2], beams))
    with pytest.raises(ValueError, match=r"prompt \(20\) \+ max_new_tokens \(8\) - 1 = 27 > context \(24\)"):
        Engine(model).add(Request(list(range(1, 21)), beams))
    with pytest.raises(ValueError, match="it takes on_beams, not on_token"):
        Engine(model).add(Request([1, 2], beams, on_token=lambda token: None))
    with pytest.raises(ValueError, match="on_beams reports a beam search's hypotheses; this request has no num_beams"):
        Engine(model).add(Request([1, 2], GenerationConfig(temperature=0.0), on_beams=lambda *a: None))
    with pytest.raises(ValueError, match="without an encoder: a request with encoder memory cannot"):
        Engine(model).add(Request([1, 2], GenerationConfig(temperature=0.0), memory=torch.zeros(3, 64)))
    translation = EncoderDecoder(tiny_encdec()).eval()
    with pytest.raises(ValueError, match="over an encoder's output: the request needs its memory"):
        Engine(translation).add(Request([1], GenerationConfig(temperature=0.0)))
    engine = Engine(model)
    seq = engine.add(Request([1, 2], beams))
    with pytest.raises(ValueError, match="num_beams is fixed when a request is added"):
        engine.reconfigure(seq, GenerationConfig(max_new_tokens=8, temperature=0.0))
    # a beam request that fits is taken, and so is the same request one token shorter than the limit
    assert Engine(model).add(Request(list(range(1, 18)), beams)).request.config.num_beams == 3


def test_stop_tokens_have_one_home_the_request_settings():
    model = _lm()
    free = generate(model, None, [[5, 6]], max_new_tokens=8, temperature=0.0, stop_tokens=()).tokens[0]
    engine = Engine(model)
    seq = engine.add(Request([5, 6], GenerationConfig(max_new_tokens=8, temperature=0.0, stop_tokens=(free[2],))))
    list(engine.run())
    assert seq.tokens == free[:2] and seq.finish_reason == "stop_token"
    with pytest.raises(TypeError):
        Request([5, 6], GenerationConfig(), stop_tokens=(1,))  # no second home
    with pytest.raises(TypeError):
        Request([5, 6], GenerationConfig(), (1,))  # nor a positional one (it would have been read as memory)


# ----------------------------------------------------------------------------- cache geometry


def test_each_family_states_its_cache_layout_from_its_config():
    lm = DecoderLM(tiny_gpt2(num_kv_heads=2, max_len=40)).eval()
    assert lm.cache_layout() == CacheLayout(layers=2, kv_heads=2, head_dim=8, context=40, vocab=50)
    gqa = attentive.build("llama-tiny", vocab_size=40, max_len=24)
    c = gqa.config
    assert gqa.cache_layout() == CacheLayout(c.num_layers, c.num_kv_heads, c.d_model // c.num_heads, 24, 40)
    translation = EncoderDecoder(
        tiny_encdec(num_decoder_layers=3, src_vocab_size=70, tgt_vocab_size=70, head_dim=16)
    ).eval()
    assert translation.cache_layout() == CacheLayout(
        layers=3, kv_heads=4, head_dim=16, context=64, vocab=70, cross_attention=True
    )
    speech = SpeechModel(
        SpeechConfig(
            n_mels=8,
            d_model=32,
            num_heads=4,
            d_ff=64,
            num_encoder_layers=1,
            num_decoder_layers=2,
            vocab_size=60,
            max_len=20,
            max_source_positions=16,
            start_ids=[50, 51],
            eot_id=52,
            timestamp_begin=0,
        )
    ).eval()
    assert speech.cache_layout() == CacheLayout(
        layers=2, kv_heads=4, head_dim=8, context=20, vocab=60, cross_attention=True
    )
    for model in (lm, translation, speech):  # a static cache is the shape the layout gives
        layout = model.cache_layout()
        batch = DecodeBatch(model, cache="static")
        batch._static_cache(3, 7)
        assert isinstance(batch.cache, StaticCache) and tuple(batch.cache.keys.shape) == layout.static_shape(3, 7)
        assert Engine(model).vocab == layout.vocab and batch.context == layout.context


def test_the_layout_is_what_decoding_reads_not_the_config():
    """A model whose layout says a shorter context decodes with that context, whatever its config says."""
    model = _lm(max_len=24)
    model.cache_layout = lambda: CacheLayout(2, 2, 16, 12, 40)  # llama-tiny's geometry, a 12-token context
    assert Engine(model).batch.context == 12
    with pytest.warns(UserWarning, match=r"longer than the context \(12\)"):
        generate(model, None, [list(range(1, 16))], max_new_tokens=2, temperature=0.0, stop_tokens=())


def test_a_model_without_a_cache_layout_is_refused_in_one_line():
    class Bare(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.head, self.config = inner, inner.head, inner.config

        def decode(self, ids, **kw):
            return self.inner.decode(ids, **kw)

    bare = Bare(_lm())
    for make in (
        lambda: Engine(bare),
        lambda: DecodeBatch(bare),
        lambda: generate(bare, None, [[1, 2]], max_new_tokens=2),
    ):
        with pytest.raises(ValueError, match="^Bare does not state its cache layout .*cache_layout\\(\\)") as err:
            make()
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="CacheLayout.kv_heads must be a positive integer, got 0"):
        CacheLayout(2, 0, 16, 12, 40)

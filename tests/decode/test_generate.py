"""generate(): every option, cache = no cache, padded batch = each prompt alone, streaming."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.decode import GenerationConfig, generate, stream
from attentive.decode.batch import DecodeBatch, left_pad, positions_from_mask
from attentive.decode.generate import TextStream
from attentive.decode.processors import RowSettings, apply_repetition_penalty, apply_top_k, apply_top_p, choose
from attentive.text import BPETokenizer, CharTokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz ,.:\n"
NO_STOP = dict(stop_tokens=())  # random weights emit EOS now and then; most tests want full length


@pytest.fixture(scope="module")
def tok():
    return CharTokenizer.train(ALPHABET)


def _model(kind: str, vocab: int, max_len: int = 64):
    """Random weights with a larger init than training uses, so the next token depends on the
    context (with 0.02 a random model repeats one token). LLaMA's gated FFN grows activations
    faster, so its init is smaller to keep logits (and fp32 rounding) at a trained model's scale."""
    torch.manual_seed(0)
    if kind == "llama":
        return attentive.build("llama-tiny", vocab_size=vocab, max_len=max_len, init_std=0.15).eval()
    return attentive.build(
        "gpt2-small",
        vocab_size=vocab,
        num_layers=2,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=max_len,
        dropout=0.0,
        attention_dropout=0.0,
        init_std=0.25,
    ).eval()


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request, tok):
    return _model(request.param, tok.vocab_size)


# ----------------------------------------------------------------------------- cache parity


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_cached_logits_equal_uncached_at_every_step(model, tok, cache):
    prompts = ["the cat", "a", "sat on the mat, and"]
    ref = generate(model, tok, prompts, max_new_tokens=20, temperature=0, cache="none", output_logits=True, **NO_STOP)
    out = generate(model, tok, prompts, max_new_tokens=20, temperature=0, cache=cache, output_logits=True, **NO_STOP)
    assert len(out.logits) == len(ref.logits) == 20
    for step, (a, b) in enumerate(zip(ref.logits, out.logits)):
        assert (a - b).abs().max().item() <= 1e-5, f"step {step}"
    assert out.tokens == ref.tokens  # greedy output identical with and without cache


@pytest.mark.parametrize("cache", ["none", "dynamic", "static"])
def test_window_slides_past_the_context_identically(tok, cache):
    """max_new_tokens beyond the context: the window re-encodes its newest half, same for every cache."""
    model = _model("llama", tok.vocab_size, max_len=16)
    ref = generate(
        model, tok, ["ab", "hello there"], max_new_tokens=40, temperature=0, cache="none", output_logits=True, **NO_STOP
    )
    out = generate(
        model, tok, ["ab", "hello there"], max_new_tokens=40, temperature=0, cache=cache, output_logits=True, **NO_STOP
    )
    assert [len(t) for t in out.tokens] == [40, 40]
    assert out.tokens == ref.tokens
    assert max((a - b).abs().max().item() for a, b in zip(ref.logits, out.logits)) <= 1e-5


def test_static_cache_step_has_fixed_shapes(tok):
    """Each decode step after the prefill calls the static step with the same shapes (CUDA-graph ready)."""
    model = _model("llama", tok.vocab_size)
    batch = DecodeBatch(model, cache="static", context=64)
    shapes = []
    original = batch._static_forward
    batch._static_forward = lambda t, p, m, *rest: (
        shapes.append((t.shape, p.shape, m.shape)) or original(t, p, m, *rest)
    )
    batch.start([[5, 6, 7], [8]], max_new_tokens=6)
    for token in (9, 10, 11, 12):
        batch.step(torch.tensor([token, token]))
    assert len(set(shapes)) == 1 and shapes[0] == (torch.Size([2, 1]), torch.Size([2, 1]), torch.Size([2, 8]))


# ----------------------------------------------------------------------------- padded batches


@pytest.mark.parametrize("cache", ["none", "dynamic", "static"])
def test_padded_batch_matches_each_prompt_alone(model, tok, cache):
    prompts = ["a", "the cat sat", "on the mat, and then"]
    batch = generate(model, tok, prompts, max_new_tokens=15, temperature=0, cache=cache, **NO_STOP)
    for i, prompt in enumerate(prompts):
        alone = generate(model, tok, prompt, max_new_tokens=15, temperature=0, cache=cache, **NO_STOP)
        assert batch.tokens[i] == alone.tokens[0], prompt
        assert batch.texts[i] == alone.text


def test_left_padding_positions_and_masks():
    ids, real = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert real.tolist() == [[True, True, True], [False, False, True]]
    assert positions_from_mask(real).tolist() == [[0, 1, 2], [0, 0, 0]]


# ----------------------------------------------------------------------------- options


def test_greedy_is_argmax_and_ignores_the_seed(model, tok):
    a = generate(model, tok, "the", max_new_tokens=10, temperature=0, seed=1, output_logits=True, **NO_STOP)
    b = generate(model, tok, "the", max_new_tokens=10, temperature=0, seed=2, **NO_STOP)
    assert a.tokens == b.tokens
    assert a.tokens[0][0] == int(a.logits[0][0].argmax())


def test_seed_makes_sampling_reproducible(model, tok):
    runs = [
        generate(model, tok, "the", max_new_tokens=30, temperature=1.0, seed=s, **NO_STOP).tokens for s in (7, 7, 8)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_max_new_tokens(model, tok):
    out = generate(model, tok, ["x", "yz"], max_new_tokens=7, temperature=0, **NO_STOP)
    assert [len(t) for t in out.tokens] == [7, 7] and out.finish_reasons == ["length", "length"]
    assert generate(model, tok, "x", max_new_tokens=0).tokens == [[]]


def _choose(logits, config, generator=None):
    """Tokens for every row of ``logits`` under one config, through the engine's processors and sampler."""
    settings = RowSettings([config] * logits.shape[0], logits.shape[1], logits.device)
    processed = settings.process(logits, [0] * logits.shape[0], None)
    return choose(processed, settings, [generator] * logits.shape[0])


def test_temperature_scales_logits():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    cfg = GenerationConfig(temperature=2.0)
    settings = RowSettings([cfg], 3, "cpu")
    assert torch.allclose(settings.process(logits, [0], None), logits / 2)
    # low temperature concentrates the draws on the top token
    gen = torch.Generator().manual_seed(0)
    cold = [int(_choose(logits, GenerationConfig(temperature=0.05), gen)) for _ in range(50)]
    hot = {int(_choose(logits, GenerationConfig(temperature=5.0), gen)) for _ in range(200)}
    assert set(cold) == {0} and hot == {0, 1, 2}


def test_top_k_keeps_k_tokens(model, tok):
    logits = torch.tensor([[0.5, 3.0, 1.0, 2.0, -1.0]])
    kept = torch.isfinite(apply_top_k(logits, 2))
    assert kept.tolist() == [[False, True, False, True, False]]
    # top_k=1 sampling is greedy
    greedy = generate(model, tok, "the", max_new_tokens=12, temperature=0, **NO_STOP).tokens
    assert generate(model, tok, "the", max_new_tokens=12, top_k=1, seed=3, **NO_STOP).tokens == greedy


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(apply_top_p(logits, 0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(apply_top_p(logits, 0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(apply_top_p(logits, 0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(apply_top_p(logits, 0.01)).tolist() == [[True, False, False, False]]
    shuffled = logits[:, [2, 0, 3, 1]]  # order in the vocabulary does not matter
    assert torch.isfinite(apply_top_p(shuffled, 0.7)).tolist() == [[False, True, False, True]]


def test_top_p_sampling_draws_only_from_the_nucleus():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(400, 1)
    drawn = _choose(logits, GenerationConfig(top_p=0.7), torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1}


def test_repetition_penalty():
    logits = torch.tensor([[2.0, -1.0, 1.0]])
    seen = torch.tensor([[True, True, False]])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [[1.0, -2.0, 1.0]]


def test_repetition_penalty_discourages_repeats(tok):
    model = _model("llama", tok.vocab_size)
    plain = generate(model, tok, "aaaa", max_new_tokens=30, temperature=0, **NO_STOP).tokens[0]
    penalised = generate(
        model, tok, "aaaa", max_new_tokens=30, temperature=0, repetition_penalty=5.0, **NO_STOP
    ).tokens[0]
    assert len(set(penalised)) > len(set(plain))


def test_stop_tokens_end_a_row_and_are_not_returned(model, tok):
    free = generate(model, tok, ["the", "sat on"], max_new_tokens=20, temperature=0, **NO_STOP)
    stop = free.tokens[0][4]
    out = generate(model, tok, ["the", "sat on"], max_new_tokens=20, temperature=0, stop_tokens=[stop])
    first = free.tokens[0].index(stop)
    assert out.tokens[0] == free.tokens[0][:first]
    assert out.finish_reasons[0] == "stop_token"
    if stop in free.tokens[1]:
        assert out.tokens[1] == free.tokens[1][: free.tokens[1].index(stop)]
    else:  # the other row is unaffected by the first one stopping
        assert out.tokens[1] == free.tokens[1] and out.finish_reasons[1] == "length"


def test_eos_is_the_default_stop_token(model, tok):
    out = generate(model, tok, "the", max_new_tokens=50, temperature=0, stop_tokens=(), output_logits=True)
    eos = tok.eos_id
    # force EOS to be the argmax at step 3 through a model wrapper
    forced = _ForceAt(model, step=3, token=eos)
    out = generate(forced, tok, "the", max_new_tokens=50, temperature=0)
    assert out.finish_reasons == ["stop_token"] and len(out.tokens[0]) == 3


class _ForceAt(torch.nn.Module):
    """Wraps a model so that its ``step``-th next-token prediction is ``token`` (through its head,
    which decoding applies once per step)."""

    def __init__(self, model, step, token):
        super().__init__()
        self.inner, self.config, self.step, self.token, self.calls = model, model.config, step, token, 0
        self.head = _ForcingHead(self)

    def decode(self, ids, **kw):
        return self.inner.decode(ids, **kw)

    def cache_layout(self):
        return self.inner.cache_layout()


class _ForcingHead(torch.nn.Module):
    def __init__(self, owner):
        super().__init__()
        self.owner = [owner]  # not a submodule

    def forward(self, hidden):
        owner = self.owner[0]
        logits = owner.inner.head(hidden)
        if owner.calls == owner.step:
            logits[..., owner.token] = 1e4
        owner.calls += 1
        return logits


def test_stop_strings_cut_the_text(model, tok):
    free = generate(model, tok, "the", max_new_tokens=30, temperature=0, **NO_STOP)
    target = free.text[5:7]
    out = generate(model, tok, "the", max_new_tokens=30, temperature=0, stop_strings=[target], **NO_STOP)
    assert out.text == free.text[: free.text.index(target)]
    assert out.finish_reasons == ["stop_string"]


def test_streaming_pieces_join_to_the_text(model, tok):
    pieces: list[tuple[int, str]] = []
    out = generate(
        model, tok, ["the", "cat"], max_new_tokens=25, seed=0, on_text=lambda r, t: pieces.append((r, t)), **NO_STOP
    )
    for row in (0, 1):
        row_pieces = [t for r, t in pieces if r == row]
        assert len(row_pieces) > 5  # token by token, not all at the end
        assert "".join(row_pieces) == out.texts[row]
    streamed = "".join(d.text for d in stream(model, tok, "the", max_new_tokens=25, seed=0, **NO_STOP))
    assert streamed == generate(model, tok, "the", max_new_tokens=25, seed=0, **NO_STOP).text


def test_text_stream_holds_back_possible_stop_strings():
    stream_ = TextStream(lambda ids: "".join(chr(i) for i in ids), stop_strings=["END"])
    shown = [stream_.push(ord(c)) for c in "abEN"]
    assert "".join(shown) == "ab"  # "EN" might become "END"
    assert stream_.push(ord("x")) == "ENx"
    assert stream_.push(ord("E")) == "" and stream_.push(ord("N")) == "" and stream_.push(ord("D")) == ""
    assert stream_.stopped and stream_.text == "abENx"
    other = TextStream(lambda ids: "".join(chr(i) for i in ids), stop_strings=["END"])
    for c in "abE":
        other.push(ord(c))
    assert other.finish() == "E" and other.text == "abE"


def test_text_stream_waits_for_whole_characters():
    bpe = BPETokenizer.train(["plain ascii text only"], vocab_size=300)
    ids = bpe.encode("é!")  # byte-level: 'é' is two byte tokens
    s = TextStream(bpe.decode)
    pieces = [s.push(i) for i in ids]
    assert pieces[0] == "" and "".join(pieces) == "é!"


def test_token_id_prompts_and_empty_prompt(model, tok):
    ids = tok.encode("the cat")
    expected = generate(model, tok, "the cat", max_new_tokens=5, temperature=0).tokens
    assert generate(model, tok, ids, max_new_tokens=5, temperature=0).tokens == expected
    assert generate(model, tok, torch.tensor(ids), max_new_tokens=5, temperature=0).tokens == expected
    out = generate(model, tok, ["", "a"], max_new_tokens=5, temperature=0, **NO_STOP)
    assert out.prompt_tokens == [[tok.bos_id], tok.encode("a")]
    assert len(out.tokens[0]) == 5


def test_add_bos(model, tok):
    out = generate(model, tok, "ab", max_new_tokens=1, add_bos=True)
    assert out.prompt_tokens == [[tok.bos_id] + tok.encode("ab")]


def test_bpe_tokenizer(tok):
    bpe = BPETokenizer.train(["the cat sat on the mat"] * 5, vocab_size=300)
    model = _model("gpt2", bpe.vocab_size)
    out = generate(model, bpe, ["the cat", "mat"], max_new_tokens=10, temperature=0, **NO_STOP)
    assert [len(t) for t in out.tokens] == [10, 10]
    assert out.texts == [bpe.decode(t) for t in out.tokens]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(cache="paged"), "cache"),
        (dict(stop_strings=[""]), "stop strings"),
        (dict(bogus=1), "unknown generation option"),
    ],
)
def test_nonsensical_settings_are_rejected(model, tok, options, message):
    with pytest.raises(ValueError, match=message):
        generate(model, tok, "the", **options)


def test_unknown_characters_are_named(model, tok):
    with pytest.raises(ValueError, match=r"'Z', '!'"):
        generate(model, tok, "aZb!", max_new_tokens=3)


def test_token_ids_outside_the_vocabulary(model, tok):
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate(model, tok, [1, 2, 999], max_new_tokens=3)


def test_prompt_longer_than_context_is_left_truncated_with_a_warning(tok):
    model = _model("llama", tok.vocab_size, max_len=16)
    long_prompt = "the cat sat on the mat and then"
    with pytest.warns(UserWarning, match="longer than the context"):
        out = generate(model, tok, long_prompt, max_new_tokens=5, temperature=0, **NO_STOP)
    tail = generate(model, tok, long_prompt[-16:], max_new_tokens=5, temperature=0, **NO_STOP)
    assert out.tokens == tail.tokens

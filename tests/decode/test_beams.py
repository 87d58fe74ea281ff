"""Beam search inside the engine: the processors reach every beam, a beam request decodes the same
in every cache mode and beside other requests, width 1 is greedy, and the search is Hugging
Face's (length penalty, its three early-stopping rules) token for token."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attentive
from attentive.decode import Engine, GenerationConfig, Request, generate
from attentive.text import CharTokenizer

from helpers import tiny_gpt2

PROMPTS = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]


def _lm(max_len: int = 32, vocab: int = 40, seed: int = 0):
    torch.manual_seed(seed)
    return attentive.build("llama-tiny", vocab_size=vocab, max_len=max_len, init_std=0.15).eval()


def _beams(model, prompt, config, cache="dynamic"):
    """One beam request alone: its sequence and every step's (step, live, finished) report."""
    reports = []
    engine = Engine(model, cache=cache)
    seq = engine.add(Request(prompt, config, on_beams=lambda *r: reports.append(r)))
    list(engine.run())
    return seq, reports


BEAM = GenerationConfig(max_new_tokens=12, temperature=0.0, num_beams=4, stop_tokens=(19,))  # [5, 6, 7]: ends at 7


# ----------------------------------------------------------------------------- the processors reach every beam


def test_a_suppressed_token_never_appears_in_any_beam():
    model = _lm()
    free, reports = _beams(model, [5, 6, 7], BEAM)
    common = max(range(4, 40), key=lambda t: sum(t in h for _, live, _ in reports for h, _ in live))
    assert any(common in h for _, live, _ in reports for h, _ in live)
    seq, reports = _beams(model, [5, 6, 7], BEAM.replace(suppress_tokens=(common,)))
    assert reports and all(common not in h for _, live, done in reports for h, _ in _possible(live + done))
    assert common not in seq.tokens and seq.tokens != free.tokens
    first = free.tokens[0]
    _, reports = _beams(model, [5, 6, 7], BEAM.replace(begin_suppress_tokens=(first,)))
    assert all(h[0] != first for _, live, _ in reports for h, _ in _possible(live))


def _possible(hypotheses):
    """Those with a finite score (at the first step, and where forcing leaves fewer candidates than
    beams, the others carry -inf: they can never finish)."""
    return [(h, score) for h, score in hypotheses if score > float("-inf")]


def test_a_forced_token_is_in_every_beam_at_its_step():
    model = _lm()
    seq, reports = _beams(model, [5, 6, 7], BEAM.replace(forced_tokens={0: 17, 2: 23}))
    for step, live, finished in reports:
        assert _possible(live)
        for hypothesis, _ in _possible(live + finished):
            assert hypothesis[0] == 17 and (len(hypothesis) < 3 or hypothesis[2] == 23), (step, hypothesis)
    assert seq.tokens[0] == 17 and seq.tokens[2] == 23


def _teacher_forced(model, prompt, hypothesis, penalty: float) -> float:
    """Summed log-probability of ``hypothesis`` after ``prompt``, each step's log-probabilities
    penalised (CTRL) on the tokens of that beam's own prompt and output so far."""
    ids = torch.tensor([prompt + hypothesis])
    with torch.no_grad():
        log_probs = F.log_softmax(model(ids)[0, len(prompt) - 1 : -1].float(), dim=-1)  # (T, V)
    total = 0.0
    for t, token in enumerate(hypothesis):
        seen = set(prompt + hypothesis[:t])
        lp = float(log_probs[t, token])
        total += (lp / penalty if lp > 0 else lp * penalty) if token in seen else lp
    return total


def test_the_repetition_penalty_reaches_every_beam_with_its_own_history():
    model = _lm()
    free, _ = _beams(model, [5, 6, 7], BEAM.replace(stop_tokens=(3,)))
    seq, reports = _beams(model, [5, 6, 7], BEAM.replace(stop_tokens=(3,), repetition_penalty=1.8))
    assert seq.tokens != free.tokens
    for step, live, _ in reports[:6]:
        for hypothesis, score in _possible(live):
            assert score == pytest.approx(_teacher_forced(model, [5, 6, 7], hypothesis, 1.8), abs=1e-4)


# ----------------------------------------------------------------------------- one engine, every cache


@pytest.mark.parametrize("cache", ["none", "static"])
def test_beams_are_the_same_in_every_cache_mode(cache):
    model = _lm()
    want = generate(model, None, PROMPTS, max_new_tokens=10, temperature=0.0, num_beams=3, stop_tokens=(34,))
    got = generate(
        model, None, PROMPTS, max_new_tokens=10, temperature=0.0, num_beams=3, stop_tokens=(34,), cache=cache
    )
    assert got.tokens == want.tokens and got.finish_reasons == want.finish_reasons
    assert want.finish_reasons == ["stop_token", "length", "stop_token"]  # rows leave the batch at different steps


def test_width_one_gives_greedy_tokens():
    model = _lm()
    greedy = generate(model, None, PROMPTS, max_new_tokens=10, temperature=0.0, stop_tokens=(3,))
    beam = generate(
        model, None, PROMPTS, max_new_tokens=10, temperature=0.0, num_beams=1, stop_tokens=(3,), early_stopping=True
    )
    assert beam.tokens == greedy.tokens


def test_a_beam_request_beside_others_decodes_as_if_alone():
    """Greedy and sampled rows share the batch with beam rows; rows join between steps and leave."""
    model = _lm()
    sampled = GenerationConfig(max_new_tokens=9, temperature=1.0, top_p=0.9, seed=4)
    greedy = GenerationConfig(max_new_tokens=12, temperature=0.0, repetition_penalty=1.2)
    alone = {
        "beam": _beams(model, [5, 6], BEAM)[0].tokens,
        "narrow": _beams(model, [9, 10, 11, 12], BEAM.replace(num_beams=2, max_new_tokens=5))[0].tokens,
    }
    engine = Engine(model)
    first = engine.add(Request([8, 9, 10], greedy))
    engine.step()
    beam = engine.add(Request([5, 6], BEAM))
    engine.step()
    other = engine.add(Request([7, 3, 2], sampled))
    narrow = engine.add(Request([9, 10, 11, 12], BEAM.replace(num_beams=2, max_new_tokens=5)))
    engine.step()
    assert engine.batch.rows == 1 + 4 + 1 + 2 and len(engine.active) == 4
    list(engine.run())
    assert beam.tokens == alone["beam"] and narrow.tokens == alone["narrow"]
    for seq in (first, other):
        e = Engine(model)
        want = e.add(Request(seq.request.prompt, seq.request.config))
        list(e.run())
        assert seq.tokens == want.tokens


def test_max_batch_counts_a_beam_request_as_its_rows():
    model = _lm()
    engine = Engine(model, max_batch=5)
    a = engine.add(Request([5, 6], BEAM))
    b = engine.add(Request([7], BEAM.replace(num_beams=2)))
    engine.step()
    assert engine.batch.rows == 4 and b in engine.pending  # 4 + 2 > 5: it waits
    list(engine.run())
    assert a.done and b.done and b.tokens == _beams(model, [7], BEAM.replace(num_beams=2))[0].tokens


def test_generate_streams_a_beam_searchs_text_when_it_ends():
    tok = CharTokenizer.train("abcdefghij ")
    model = attentive.build(tiny_gpt2(vocab_size=tok.vocab_size, max_len=40, init_std=0.3)).eval()
    pieces = []
    out = generate(
        model,
        tok,
        ["abc", "j"],
        max_new_tokens=8,
        temperature=0.0,
        num_beams=3,
        on_text=lambda row, text: pieces.append((row, text)),
    )
    assert out.texts == [tok.decode(t) for t in out.tokens]
    assert ["".join(p for r, p in pieces if r == row) for row in (0, 1)] == out.texts
    with pytest.raises(ValueError, match="output_logits keeps one row's logits per prompt"):
        generate(model, tok, "abc", max_new_tokens=3, temperature=0.0, num_beams=2, output_logits=True)


# ----------------------------------------------------------------------------- Hugging Face's beam search


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A random GPT-2 in attentive and the same weights in transformers' GPT2LMHeadModel."""
    transformers = pytest.importorskip("transformers")
    from attentive.interop.hf_export import export_hf

    torch.manual_seed(3)
    model = attentive.build(tiny_gpt2(vocab_size=30, max_len=40, init_std=0.35)).eval()  # token 8 ends some
    folder = tmp_path_factory.mktemp("hf") / "gpt2"
    export_hf(model, None, folder)
    return model, transformers.GPT2LMHeadModel.from_pretrained(folder).eval()


@pytest.mark.parametrize("stops", [(8,), (8, 10)], ids=["one-stop", "two-stops"])
@pytest.mark.parametrize("early_stopping", [False, True, "never"])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0])
def test_beam_search_is_hugging_faces_token_for_token(pair, early_stopping, length_penalty, stops):
    """Over 3 widths x 3 prompts each (``test_the_hugging_face_cases_are_not_all_alike``)."""
    ours, hf = pair
    new = 14
    for beams in (2, 3, 5):
        for prompt in ([4, 9, 2], [11], [20, 21, 22, 23, 24, 25]):
            with torch.no_grad():
                ref = hf.generate(
                    torch.tensor([prompt]),
                    attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                    do_sample=False,
                    num_beams=beams,
                    max_new_tokens=new,
                    eos_token_id=list(stops),
                    pad_token_id=stops[0],
                    length_penalty=length_penalty,
                    early_stopping=early_stopping,
                )
            ref = ref[0, len(prompt) :].tolist()
            ended = [i for i, t in enumerate(ref) if t in stops]
            ref = ref[: ended[0]] if ended else ref
            got = generate(
                ours,
                None,
                [prompt],
                max_new_tokens=new,
                temperature=0.0,
                num_beams=beams,
                stop_tokens=stops,
                length_penalty=length_penalty,
                early_stopping=early_stopping,
            )
            assert got.tokens[0] == ref, (beams, prompt)


def test_the_hugging_face_cases_are_not_all_alike(pair):
    """Some searches end in a stop token, some at the length limit, and the length penalty and the
    stopping rule change what is found."""
    ours, _ = pair
    found: dict[tuple, set] = {}
    reasons = set()
    for early_stopping in (False, True, "never"):
        for length_penalty in (1.0, 0.0, 2.0):
            for beams in (2, 3, 5):
                for prompt in ([4, 9, 2], [11], [20, 21, 22, 23, 24, 25]):
                    out = generate(
                        ours,
                        None,
                        [prompt],
                        max_new_tokens=14,
                        temperature=0.0,
                        num_beams=beams,
                        stop_tokens=(8,),
                        length_penalty=length_penalty,
                        early_stopping=early_stopping,
                    )
                    found.setdefault((beams, tuple(prompt)), set()).add(tuple(out.tokens[0]))
                    reasons.add(out.finish_reasons[0])
    assert reasons == {"stop_token", "length"}
    assert sum(len(v) for v in found.values()) >= 18  # of 9 (width, prompt) cases, most change with the settings

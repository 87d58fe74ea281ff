"""Greedy and beam search: beam 1 is greedy, the KV cache changes nothing, batching changes nothing,
length limits hold, and beam search scores are what it claims."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attentive.decode import SearchConfig, beam_search, greedy_search
from attentive.decode.search import length_penalty, output_limits
from attentive.models import EncoderDecoder
from attentive.text.special import BOS_ID, EOS_ID, PAD_ID

from helpers import tiny_encdec


def _model(seed: int = 0, **overrides) -> EncoderDecoder:
    torch.manual_seed(seed)
    model = EncoderDecoder(tiny_encdec(max_len=48, **overrides)).eval()
    with torch.no_grad():  # a sharper output layer makes EOS likely within a few steps
        model.head.weight.mul_(3.0)
    return model.double()


def _sources(n: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (n,), generator=g)
    src = torch.full((n, int(lengths.max())), PAD_ID, dtype=torch.long)  # (B, S)
    for i, n_tok in enumerate(lengths.tolist()):
        src[i, :n_tok] = torch.randint(4, 50, (n_tok,), generator=g)
    return src


def _sequence_log_prob(model, src_row: torch.Tensor, out: list[int]) -> float:
    """log p(out + EOS | src) by teacher forcing (no search involved)."""
    src = src_row[src_row != PAD_ID][None]  # (1, S)
    tgt_in = torch.tensor([[BOS_ID, *out]])
    labels = torch.tensor([out + [EOS_ID]])
    logp = F.log_softmax(model(src, tgt_in).double(), dim=-1)  # (1, T, V)
    return logp.gather(-1, labels[..., None]).sum().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_is_greedy(seed):
    model, src = _model(seed), _sources(seed=seed)
    greedy = greedy_search(model, src, SearchConfig(beam_size=1))
    beam = beam_search(model, src, SearchConfig(beam_size=1))
    assert beam.tokens == greedy.tokens


@pytest.mark.parametrize("beam", [1, 3])
def test_cached_and_uncached_decoding_agree(beam):
    model, src = _model(), _sources()
    run = greedy_search if beam == 1 else beam_search
    cached = run(model, src, SearchConfig(beam_size=beam, use_cache=True))
    uncached = run(model, src, SearchConfig(beam_size=beam, use_cache=False))
    assert cached.tokens == uncached.tokens
    assert cached.scores == pytest.approx(uncached.scores, abs=1e-9)


@pytest.mark.parametrize("beam", [1, 4])
def test_batched_equals_one_at_a_time(beam):
    model, src = _model(3), _sources(5, seed=4)
    config = SearchConfig(beam_size=beam)
    run = greedy_search if beam == 1 else beam_search
    batched = run(model, src, config)
    for i in range(src.shape[0]):
        alone = run(model, src[i : i + 1, : int((src[i] != PAD_ID).sum())], config)
        assert alone.tokens[0] == batched.tokens[i]
        assert alone.scores[0] == pytest.approx(batched.scores[i], abs=1e-9)


def test_scores_are_length_normalised_log_probabilities():
    model, src = _model(5), _sources(4, seed=5)
    greedy = greedy_search(model, src)
    beam = beam_search(model, src, SearchConfig(beam_size=4, alpha=0.6))
    for i in range(src.shape[0]):
        assert greedy.scores[i] == pytest.approx(_sequence_log_prob(model, src[i], greedy.tokens[i]), abs=1e-9)
        lp = length_penalty(len(beam.tokens[i]) + 1, 0.6)
        assert beam.scores[i] == pytest.approx(_sequence_log_prob(model, src[i], beam.tokens[i]) / lp, abs=1e-9)
        # beam search keeps the best of a superset of greedy's path, under its own ranking
        greedy_norm = greedy.scores[i] / length_penalty(len(greedy.tokens[i]) + 1, 0.6)
        assert beam.scores[i] >= greedy_norm - 1e-9 or len(beam.tokens[i]) < len(greedy.tokens[i])


def test_length_limit_is_source_length_plus_b_and_model_max_len():
    model = _model(seed=7)
    model.head = _NoEOS(model.head)  # never choose EOS: decoding must stop at the limit
    src = _sources(3, seed=8)
    src_len = (src != PAD_ID).sum(1)
    for beam in (1, 2):
        out = (greedy_search if beam == 1 else beam_search)(model, src, SearchConfig(beam_size=beam, max_len_b=5))
        assert [len(t) for t in out.tokens] == (src_len + 5).tolist()
    limits = output_limits(torch.ones(1, 40, dtype=torch.bool), 50, model)
    assert limits.tolist() == [48]  # capped by max_len positions: 47 tokens + EOS


class _NoEOS(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, hidden):
        logits = self.inner(hidden)
        logits[..., EOS_ID] = -1e9
        return logits


def test_length_penalty_is_gnmt():
    assert length_penalty(1, 0.6) == pytest.approx(1.0)
    assert length_penalty(10, 0.6) == pytest.approx((15 / 6) ** 0.6)
    assert length_penalty(10, 0.0) == 1.0


def test_bad_search_settings_are_named():
    with pytest.raises(ValueError, match="beam_size"):
        SearchConfig(beam_size=0)
    with pytest.raises(ValueError, match="alpha"):
        SearchConfig(alpha=-1)


def test_translator_cross_attention_rows_are_distributions():
    from attentive.decode import Translator
    from attentive.text import BPETokenizer

    texts = ["ein hund rennt", "a dog runs", "zwei katzen schlafen", "two cats sleep"] * 5
    tok = BPETokenizer.train(texts, vocab_size=300)
    model = EncoderDecoder(tiny_encdec(src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size, max_len=12))
    translator = Translator(model.eval(), tok)
    result = translator.cross_attention("ein hund rennt", SearchConfig(beam_size=2, max_len_b=4))
    layers, heads, t_len, s_len = result.weights.shape
    assert (layers, heads) == (2, 4)
    assert s_len == len(result.source_tokens) == len(tok.encode("ein hund rennt"))
    assert t_len == len(result.output_tokens) and result.output_tokens[-1] == "</s>"
    assert torch.allclose(result.weights.sum(-1), torch.ones(layers, heads, t_len), atol=1e-5)
    assert translator.translate(["", "  "]) == ["", ""]  # blank in, blank out, no model call


def test_beam_steps_report_the_hypotheses_and_their_scores():
    """``on_step`` sees every sentence's K live prefixes with their summed log-probabilities (what
    teacher forcing gives them) and its finished hypotheses, the last of which the search returns."""
    model, src, k = _model(), _sources(3), 3
    steps = []
    out = beam_search(model, src, SearchConfig(beam_size=k), on_step=steps.append)
    assert steps and all(len(s.live) == k for report in steps for s in report)
    for report in steps[:4]:
        for s in report:
            row = src[s.sentence]
            for tokens, score in s.live:
                assert len(tokens) == s.step + 1
                prefix = src[s.sentence : s.sentence + 1, : int((row != PAD_ID).sum())]
                logp = F.log_softmax(model(prefix, torch.tensor([[BOS_ID, *tokens[:-1]]])).double(), dim=-1)
                want = logp[0].gather(-1, torch.tensor(tokens)[:, None]).sum().item()
                assert score == pytest.approx(want, abs=1e-6)
    for sentence in range(3):
        last = [s for report in steps for s in report if s.sentence == sentence][-1]
        best = max(last.finished, key=lambda h: h[1])
        assert (best[0], best[1]) == (out.tokens[sentence], pytest.approx(out.scores[sentence]))

"""Translation beam search gives what the loop it replaced gave (``beam_reference.py``): the same
tokens, the same scores and the same step reports, for beam sizes 1-5, length-penalty exponents
0 and 0.6, with and without a KV cache, on seeded random encoder-decoder models."""

from __future__ import annotations

import pytest
import torch

from attentive.decode import SearchConfig, beam_search
from attentive.models import EncoderDecoder
from attentive.text.special import BOS_ID, EOS_ID, PAD_ID

from beam_reference import reference_beam_search
from helpers import tiny_encdec


def _model(seed: int, max_len: int = 48) -> EncoderDecoder:
    torch.manual_seed(seed)
    model = EncoderDecoder(tiny_encdec(max_len=max_len)).eval()
    with torch.no_grad():  # a sharper output layer: EOS within a few steps, and sentences that end apart
        model.head.weight.mul_(2.5 + seed)
    return model


def _sources(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 10, (n,), generator=g)
    src = torch.full((n, int(lengths.max())), PAD_ID, dtype=torch.long)  # (B, S)
    for i, length in enumerate(lengths.tolist()):
        src[i, :length] = torch.randint(4, 50, (length,), generator=g)
    return src


CASES = [(seed, beam, alpha) for seed in (0, 1, 2) for beam in (1, 2, 3, 4, 5) for alpha in (0.0, 0.6)]


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("seed,beam,alpha", CASES)
def test_engine_beams_equal_the_reference_loop(seed, beam, alpha, use_cache):
    model, src = _model(seed), _sources(5, seed + 10)
    max_len_b = 4 + 3 * seed
    want_steps, got_steps = [], []
    want = reference_beam_search(
        model,
        src,
        beam,
        alpha,
        max_len_b,
        "dynamic" if use_cache else "none",
        BOS_ID,
        EOS_ID,
        on_step=want_steps.append,
    )
    got = beam_search(
        model,
        src,
        SearchConfig(beam_size=beam, alpha=alpha, max_len_b=max_len_b, use_cache=use_cache),
        on_step=got_steps.append,
    )
    assert got.tokens == want[0]
    assert got.scores == want[1]
    assert len(got_steps) == len(want_steps)
    for mine, theirs in zip(got_steps, want_steps):
        assert [(s.step, s.sentence, s.live, s.finished) for s in mine] == [
            (s.step, s.sentence, s.live, s.finished) for s in theirs
        ]


@pytest.mark.parametrize("beam", [1, 3])
def test_engine_beams_equal_the_reference_at_the_models_length_cap(beam):
    """Sources as long as the decoder's positions: the length limit (and the forced end) comes
    from ``max_len``, and the last hypothesis fills the whole context."""
    model = _model(3, max_len=12)
    model.head = _LateEOS(model.head)  # EOS only where it is forced
    src = _sources(3, 7)
    want = reference_beam_search(model, src, beam, 0.6, 50, "dynamic", BOS_ID, EOS_ID)
    got = beam_search(model, src, SearchConfig(beam_size=beam, alpha=0.6, max_len_b=50))
    assert got.tokens == want[0] and got.scores == want[1]
    assert all(len(t) == 11 for t in got.tokens)


class _LateEOS(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, hidden):
        logits = self.inner(hidden)
        logits[..., EOS_ID] -= 50.0
        return logits

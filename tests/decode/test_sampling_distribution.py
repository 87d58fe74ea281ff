"""The sampler draws from the distribution it should: frequencies of many seeded draws against
the probabilities, computed here independently of ``processors.py``, after temperature, top-k
and top-p.

Each case is one batched ``choose`` call of ``DRAWS`` rows with the same logits (one seeded
generator feeds the rows' noise in turn), so the frequencies come from one vectorised race. The
tolerance is 5 standard deviations of a frequency (``sqrt(p (1 - p) / DRAWS)``) per token,
plus a chi-square bound: a wrong race (``p * E`` instead of ``p / E``, noise of the wrong law)
misses both by far.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attentive.decode.config import GenerationConfig
from attentive.decode.processors import RowSettings, choose

DRAWS = 40_000
LOGITS = [2.0, 1.5, 1.0, 0.6, 0.3, 0.0, -0.5, -1.2]  # 8 tokens, probabilities 0.30 .. 0.01
# Chi-square upper quantile at 1 - 1e-6 for up to 7 degrees of freedom (a false alarm once in a
# million runs; the seeds are fixed anyway).
CHI2_BOUND = 40.0


def _expected(logits: list[float], temperature: float, top_k: int | None, top_p: float) -> np.ndarray:
    """The distribution to sample from, by the definitions: softmax(logits / T), the k most likely
    kept, then the smallest most-likely set whose mass reaches top_p (renormalised)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(len(z), dtype=bool)
    order = np.argsort(-z, kind="stable")
    if top_k is not None:
        keep[order[top_k:]] = False
    p = np.where(keep, np.exp(z - z.max()), 0.0)
    p /= p.sum()
    if top_p < 1.0:
        mass, kept = 0.0, np.zeros(len(z), dtype=bool)
        for i in order:
            if not keep[i] or mass >= top_p:
                break
            kept[i] = True
            mass += p[i]
        p = np.where(kept, p, 0.0)
        p /= p.sum()
    return p


def _sample(config: GenerationConfig, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    vocab = len(LOGITS)
    settings = RowSettings([config] * draws, vocab, "cpu")
    raw = torch.tensor(LOGITS, dtype=torch.float32).expand(draws, vocab).contiguous()
    logits = settings.process(raw, [0] * draws, None)
    generator = torch.Generator().manual_seed(seed)
    tokens = choose(logits, settings, [generator] * draws)
    return np.bincount(tokens.numpy(), minlength=vocab) / draws


def _assert_follows(freq: np.ndarray, p: np.ndarray, draws: int = DRAWS) -> None:
    assert np.all(freq[p == 0] == 0), f"tokens outside the kept set drawn: {freq} vs {p}"
    sigma = np.sqrt(p * (1 - p) / draws)
    err = np.abs(freq - p)
    assert np.all(err <= 5 * sigma + 1e-12), f"frequencies {np.round(freq, 4)} vs probabilities {np.round(p, 4)}"
    kept = p > 0
    chi2 = float(draws * np.sum((freq[kept] - p[kept]) ** 2 / p[kept]))
    assert chi2 < CHI2_BOUND, f"chi-square {chi2:.1f} over {int(kept.sum()) - 1} degrees of freedom"


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [
        (1.0, None, 1.0),  # the plain softmax
        (0.7, None, 1.0),  # sharper
        (2.0, None, 1.0),  # flatter
        (1.0, 4, 1.0),  # top-k
        (1.0, None, 0.8),  # nucleus
        (1.5, 5, 0.9),  # all three, in the chain's order
    ],
)
def test_sampled_frequencies_follow_the_transformed_distribution(temperature, top_k, top_p):
    config = GenerationConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    p = _expected(LOGITS, temperature, top_k, top_p)
    _assert_follows(_sample(config), p)


def test_the_expected_distributions_are_what_the_definitions_say():
    """The reference itself, on numbers worked by hand (so the test above checks something)."""
    p = _expected([math.log(4), math.log(3), math.log(2), 0.0], 1.0, None, 1.0)
    np.testing.assert_allclose(p, [0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(
        _expected([math.log(4), math.log(3), math.log(2), 0.0], 1.0, 2, 1.0), [4 / 7, 3 / 7, 0, 0]
    )
    # top_p=0.65: 0.4 < 0.65, 0.4 + 0.3 reaches it: two tokens kept.
    np.testing.assert_allclose(
        _expected([math.log(4), math.log(3), math.log(2), 0.0], 1.0, None, 0.65), [4 / 7, 3 / 7, 0, 0]
    )


def test_a_wrong_race_is_caught():
    """The check has power: draws by ``argmax(p * E)`` (a plausible slip) fail it by far."""
    p = _expected(LOGITS, 1.0, None, 1.0)
    probs = torch.tensor(p, dtype=torch.float32).expand(DRAWS, len(p))
    noise = torch.empty_like(probs).exponential_(1.0, generator=torch.Generator().manual_seed(0))
    wrong = np.bincount((probs * noise).argmax(dim=-1).numpy(), minlength=len(p)) / DRAWS
    with pytest.raises(AssertionError):
        _assert_follows(wrong, p)


def test_greedy_rows_in_a_sampled_batch_take_the_argmax():
    sampled = GenerationConfig(temperature=1.0)
    greedy = GenerationConfig(temperature=0.0)
    configs = [greedy, sampled] * 500
    settings = RowSettings(configs, len(LOGITS), "cpu")
    raw = torch.tensor(LOGITS).expand(len(configs), len(LOGITS)).contiguous()
    tokens = choose(
        settings.process(raw, [0] * len(configs), None), settings, [torch.Generator().manual_seed(1)] * len(configs)
    )
    assert torch.all(tokens[0::2] == 0)
    assert len(set(tokens[1::2].tolist())) > 3  # the sampled rows do spread

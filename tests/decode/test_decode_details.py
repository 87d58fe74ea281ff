"""Details of decoding the default suite passed by (found by mutation testing): GNMT's length
penalty by its formula, the best hypothesis among equal scores, an unknown option named in one
line, a repetition penalty of exactly 2."""

from __future__ import annotations

import pytest
import torch

from attentive.decode.beams import Beams, length_penalty
from attentive.decode.config import EngineConfig, GenerationConfig
from attentive.decode.processors import RowSettings


@pytest.mark.parametrize("length, exponent", [(1, 1.0), (7, 0.6), (20, 2.0)])
def test_length_penalties_by_their_formulas(length, exponent):
    assert length_penalty(length, exponent, "gnmt") == pytest.approx(((5 + length) / 6) ** exponent, rel=1e-12)
    assert length_penalty(length, exponent) == pytest.approx(length**exponent, rel=1e-12)
    assert length_penalty(1, 5.0, "gnmt") == 1.0  # GNMT's penalty is 1 at length 1


def test_the_best_hypothesis_is_the_first_of_equals():
    beams = Beams(width=3)
    beams.finished = [(-2.0, [1, 2], True), (-1.0, [3], True), (-1.0, [9, 9], True), (-5.0, [7], False)]
    assert beams.best() == (-1.0, [3], True)


@pytest.mark.parametrize("cls", [GenerationConfig, EngineConfig])
def test_an_unknown_option_is_one_value_error_naming_it(cls):
    with pytest.raises(ValueError, match=rf"^unknown {cls.__name__} option\(s\) \['bogus', 'zzz'\]; valid options: "):
        cls(zzz=1, bogus=2)
    with pytest.raises(ValueError, match=r"option\(s\) \['bogus'\]"):
        cls().replace(bogus=1)


@pytest.mark.parametrize("penalty", [2.0, 0.5])
def test_the_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits(penalty):
    settings = RowSettings([GenerationConfig(temperature=0.0, repetition_penalty=penalty)], 4, "cpu")
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    got = settings.process(logits, [1], seen)
    assert torch.equal(got, torch.tensor([[2.0 / penalty, -2.0 * penalty, 2.0, -2.0]]))

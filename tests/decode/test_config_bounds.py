"""Every bound of ``GenerationConfig`` at its edge: the last value accepted and the first refused,
each refusal one ValueError naming the setting and the value (found by mutation testing:
``<= 20`` turned into ``< 20`` passed the suite)."""

from __future__ import annotations

import pytest

from attentive.decode.config import GenerationConfig
from attentive.decode.processors import RowSettings


@pytest.mark.parametrize(
    "name, ok, bad, message",
    [
        ("max_new_tokens", 0, -1, "max_new_tokens must be a non-negative integer, got -1"),
        ("temperature", 0.0, -0.01, r"temperature must be a finite number >= 0 \(0 = greedy\), got -0.01"),
        ("top_k", 1, 0, r"top_k must be a positive integer \(or None for no limit\), got 0"),
        ("top_p", 1.0, 1.01, r"top_p must be in \(0, 1\], got 1.01"),
        ("top_p", 1e-9, 0.0, r"top_p must be in \(0, 1\], got 0.0"),
        ("repetition_penalty", 1e-9, 0.0, r"repetition_penalty must be a finite number > 0 \(1 = off\), got 0.0"),
        ("logprobs", 20, 21, r"logprobs must be an integer from 0 to 20 \(or None\), got 21"),
        ("logprobs", 0, -1, r"logprobs must be an integer from 0 to 20 \(or None\), got -1"),
    ],
)
def test_each_bound_accepts_its_edge_and_refuses_the_next_value(name, ok, bad, message):
    assert getattr(GenerationConfig(**{name: ok}), name) == ok
    with pytest.raises(ValueError, match=f"^{message}$"):
        GenerationConfig(**{name: bad})


@pytest.mark.parametrize("field", ["suppress_tokens", "begin_suppress_tokens", "stop_tokens"])
def test_negative_token_ids_are_refused(field):
    assert GenerationConfig(**{field: (0,)})
    with pytest.raises(ValueError, match=r"^token ids and steps must be >= 0, got \[-1\]$"):
        GenerationConfig(**{field: (-1,)})


def test_negative_forced_steps_and_tokens_are_refused():
    assert GenerationConfig(forced_tokens={0: 0}).forced_tokens == {0: 0}
    for forced in ({-1: 3}, {3: -1}):
        with pytest.raises(ValueError, match=r"^token ids and steps must be >= 0, got \[-1\]$"):
            GenerationConfig(forced_tokens=forced)


def test_row_settings_know_whether_any_row_wants_logprobs():
    plain, wants = GenerationConfig(), GenerationConfig(logprobs=0)
    assert RowSettings([plain, plain], 8, "cpu").logprobs is False
    assert RowSettings([plain, wants], 8, "cpu").logprobs is True

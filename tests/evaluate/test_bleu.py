"""sacreBLEU wrapper: perfect match, a hand-computed case, signatures, errors."""

import math

import pytest

from attentive.evaluate import corpus_scores


def test_identical_text_scores_100():
    refs = ["A man rides a horse .", "Two dogs play in the snow."]
    scores = corpus_scores(refs, refs)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)


def test_known_small_case():
    # 1-4 gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty.
    scores = corpus_scores(["the cat sat on the mat"], ["the cat sat on a mat"])
    expected = 100 * math.exp(sum(map(math.log, [5 / 6, 3 / 5, 2 / 4, 1 / 3])) / 4)
    assert scores["bleu"] == pytest.approx(expected)  # 53.73
    assert scores["bleu_bp"] == 1.0
    assert scores["sys_len"] == scores["ref_len"] == 6


def test_signatures_cased_13a():
    scores = corpus_scores(["The cat"], ["the cat"])
    assert "case:mixed" in scores["bleu_signature"] and "tok:13a" in scores["bleu_signature"]
    assert "nrefs:1" in scores["bleu_signature"]
    assert scores["chrf_signature"].startswith("nrefs:1")
    assert scores["bleu"] < 100  # cased: "The" != "the"


def test_multiple_reference_streams():
    scores = corpus_scores(["the cat sat on the mat"], [["the cat sat on a mat"], ["the cat sat on the mat"]])
    assert scores["bleu"] == pytest.approx(100.0)
    assert "nrefs:2" in scores["bleu_signature"]


def test_errors():
    with pytest.raises(ValueError, match="reference stream 0 has 1 sentences, hypotheses have 2"):
        corpus_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="hypotheses is empty"):
        corpus_scores([], [])
    with pytest.raises(TypeError, match="not one string"):
        corpus_scores("a cat", ["a cat"])

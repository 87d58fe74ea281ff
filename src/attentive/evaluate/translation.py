"""Translate a test set and score it: sacreBLEU BLEU and chrF, with their signatures."""

from __future__ import annotations

from collections.abc import Sequence

from ..decode.search import SearchConfig
from ..decode.translator import Translator
from .bleu import corpus_scores


def evaluate_translator(
    translator: Translator,
    sources: Sequence[str],
    references: Sequence[str],
    search: SearchConfig | None = None,
    batch_tokens: int = 6000,
) -> dict:
    """``corpus_scores`` of the translations of ``sources`` against ``references``, plus the
    hypotheses themselves (``hypotheses``)."""
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} source sentences but {len(references)} references")
    if not sources:
        raise ValueError("nothing to evaluate: no sentences")
    hyps = translator.translate(list(sources), search, batch_tokens=batch_tokens)
    return {**corpus_scores(hyps, list(references)), "hypotheses": hyps}

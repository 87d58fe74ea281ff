"""Corpus BLEU and chrF via sacreBLEU, with the signatures that make scores comparable.

BLEU is cased with the default 13a tokenisation: the setting papers report, applied to
detokenised text. Nothing here re-implements the metric.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF


def _reference_streams(references: Sequence[str] | Sequence[Sequence[str]], n_hyp: int) -> list[list[str]]:
    """sacreBLEU's layout: a list of streams, each with one reference per hypothesis."""
    if isinstance(references, str):
        raise TypeError("references must be a sequence of strings, not one string")
    if not references:
        raise ValueError("references is empty")
    streams = [list(references)] if isinstance(references[0], str) else [list(r) for r in references]
    for k, stream in enumerate(streams):
        if len(stream) != n_hyp:
            raise ValueError(f"reference stream {k} has {len(stream)} sentences, hypotheses have {n_hyp}")
        bad = next((i for i, r in enumerate(stream) if not isinstance(r, str)), None)
        if bad is not None:
            raise TypeError(f"reference stream {k}, sentence {bad}: expected str, got {type(stream[bad]).__name__}")
    return streams


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> dict:
    """BLEU and chrF of detokenised ``hypotheses`` against ``references``.

    ``references`` is one reference per hypothesis, or several streams of them
    (sacreBLEU's convention: ``[[ref_a_1, ref_a_2, ...], [ref_b_1, ref_b_2, ...]]``).
    Returns ``bleu``, ``chrf`` (0-100), ``bleu_signature``, ``chrf_signature``, and BLEU's
    details: ``bleu_precisions``, ``bleu_bp``, ``sys_len``, ``ref_len``.
    """
    if isinstance(hypotheses, str):
        raise TypeError("hypotheses must be a sequence of strings, not one string")
    hyps = list(hypotheses)
    if not hyps:
        raise ValueError("hypotheses is empty")
    bad = next((i for i, h in enumerate(hyps) if not isinstance(h, str)), None)
    if bad is not None:
        raise TypeError(f"hypotheses[{bad}]: expected str, got {type(hyps[bad]).__name__}")
    refs = _reference_streams(references, len(hyps))

    bleu_metric, chrf_metric = BLEU(), CHRF()
    bleu = bleu_metric.corpus_score(hyps, refs)
    chrf = chrf_metric.corpus_score(hyps, refs)
    return {
        "bleu": float(bleu.score),
        "chrf": float(chrf.score),
        "bleu_signature": str(bleu_metric.get_signature()),
        "chrf_signature": str(chrf_metric.get_signature()),
        "bleu_precisions": [float(p) for p in bleu.precisions],
        "bleu_bp": float(bleu.bp),
        "sys_len": int(bleu.sys_len),
        "ref_len": int(bleu.ref_len),
    }

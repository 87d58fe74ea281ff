"""Evaluation metrics: BLEU/chrF through sacreBLEU (more metrics join here)."""

from attentive.evaluate.bleu import corpus_scores

__all__ = ["corpus_scores"]

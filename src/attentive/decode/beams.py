"""Beam search as a search strategy of the engine: the bookkeeping of one step over beam rows.

A request with ``num_beams=K`` occupies K rows of the engine's batch. Every step its rows' logits
become log-probabilities (``log_probs``) and go through the same processor chain as every other
row (suppressed, begin-suppressed and forced tokens, the stop token at the length limit,
repetition penalty); then ``candidates`` ranks, per request, the K x V continuations by summed
log-probability and keeps the best ``C = max(2, 1 + stop tokens) * K`` of them: at most one per
beam and stop token ends, so K always go on. A candidate ending in a stop token (or reaching the
length limit) within the top K finishes a hypothesis, scored by its sum over the length
penalty (``length_penalty``); the K best others continue, and the engine reorders the rows
(``DecodeBatch.select``) so each continues from the beam it extends.

``Beams.done`` is the stopping rule, Hugging Face's three (``early_stopping``): True: once K
hypotheses have finished (fairseq's, which translation uses); False: also once the best live
hypothesis, scored at its current length, cannot beat the worst of the K best finished;
"never": the same at the longest length it could reach (when the penalty favours length). The
result is the best finished hypothesis. Beam width 1 gives greedy search's tokens.

Dimension names: b requests in a group (same K and C), K beams, C candidates kept, V vocabulary,
R rows of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


def length_penalty(length: int, exponent: float, form: str = "power") -> float:
    """What a finished hypothesis's summed log-probability is divided by: ``length ** exponent``
    (Hugging Face) or GNMT's ``((5 + length) / 6) ** exponent`` (Wu et al., 2016); ``length``
    counts the generated tokens, the stop token included."""
    if form == "gnmt":
        return ((5.0 + length) / 6.0) ** exponent
    return float(length) ** exponent


def log_probs(logits: Tensor, rows: Tensor | None) -> Tensor:
    """Logits ``(R, V)`` -> a new tensor, at least float32, with the beam rows ``rows`` (None:
    all) as log-probabilities; the other rows' logits as they were."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    if rows is None:
        return torch.log_softmax(logits.to(dtype), dim=-1)
    out = logits.to(dtype, copy=True)
    out[rows] = torch.log_softmax(out[rows], dim=-1)
    return out


def candidates(log_probs: Tensor, scores: Tensor, keep: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``keep`` best continuations of each request's beams: ``log_probs (b, K, V)`` added to
    the beams' running ``scores (b, K)`` -> ``(scores, beam, token)``, each ``(b, C)``, best first."""
    b, k, vocab = log_probs.shape
    summed = (scores[:, :, None] + log_probs).view(b, k * vocab)  # (b, K*V)
    top, index = summed.topk(keep, dim=1)  # (b, C)
    return top, index // vocab, index % vocab


def continuing(stopped: Tensor, k: int) -> Tensor:
    """Of each request's candidates (best first), the first ``k`` that do not end in a stop token
    ``(b, K)`` (a stable sort moves those last)."""
    return torch.sort(stopped.int(), dim=1, stable=True).indices[:, :k]


@dataclass
class Beams:
    """One beam request's search: how far it is and what has finished. (Its rows' running scores
    and tokens live in the engine, beside the rows.)"""

    width: int
    step: int = 0  # tokens every live hypothesis has
    finished: list[tuple[float, list[int], bool]] = field(default_factory=list)  # (score, tokens, stopped)

    def finish(self, score: float, tokens: list[int], stopped: bool) -> None:
        self.finished.append((score, tokens, stopped))

    def done(self, config, best_live: float) -> bool:
        """After a step: is the search over (``best_live``: the best continuing beam's summed
        log-probability)? At the length limit it always is."""
        if self.step >= config.max_new_tokens:
            return True
        if len(self.finished) < self.width:
            return False
        if config.early_stopping is True:
            return True
        longest = config.early_stopping == "never" and config.length_penalty > 0
        length = config.max_new_tokens if longest else self.step
        worst = sorted((h[0] for h in self.finished), reverse=True)[self.width - 1]
        return best_live / length_penalty(length, config.length_penalty, config.length_penalty_form) <= worst

    def best(self) -> tuple[float, list[int], bool]:
        """The best finished hypothesis (the first of equals)."""
        return max(self.finished, key=lambda h: h[0])

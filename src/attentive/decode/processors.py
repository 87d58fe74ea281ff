"""Logits processors and the one sampler: raw next-token logits -> the token each row takes.

The chain runs in a fixed order on float32 logits ``(R, V)``, one row per sequence (one per
beam of a beam search), each row with its own ``GenerationConfig``:

1. suppressed tokens (never), begin-suppressed tokens (not as the first new token);
2. forced tokens (a step whose token is fixed) and the stop token at a row's length limit;
3. repetition penalty (CTRL, Keskar et al., 2019) on tokens already in the prompt or output;
4. temperature, top-k, top-p (nucleus, Holtzman et al., 2020).

``-inf`` marks a token that can no longer be chosen. Beam rows come in as log-probabilities
(the log-softmax of their logits: the chain then acts on the scores beams are ranked by, as in
Hugging Face's and fairseq's beam search) and leave before step 4; the engine's beam selection
(``beams.py``) picks from them. Greedy rows take the argmax of the result
(temperature, top-k and top-p never move the argmax, so greedy and sampled rows share one
chain). Sampled rows draw by the exponential race: ``argmax(p / E)`` with ``E ~ Exp(1)`` per
token is a draw from ``p`` (the Gumbel-max trick in another form), the noise coming from the
row's own seeded ``torch.Generator``. A row's tokens therefore depend only on its logits and
its seed, never on its neighbours in the batch or on how the KV cache is kept.

Dimension names: R rows, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .config import GenerationConfig

NEG_INF = float("-inf")


# ----------------------------------------------------------------------------- single processors


def apply_repetition_penalty(logits: Tensor, seen: Tensor | None, penalty: float | Tensor) -> Tensor:
    """Divide positive / multiply negative logits of seen tokens by ``penalty`` (a float or ``(R, 1)``)."""
    if seen is None or (not isinstance(penalty, Tensor) and penalty == 1.0):
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)  # seen (R, V) bool


def apply_top_k(logits: Tensor, k: int | None) -> Tensor:
    """Keep the k largest logits per row (ties at the k-th value are kept too)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (R, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits: Tensor, p: float | Tensor) -> Tensor:
    """Keep the most likely tokens until their probabilities sum to at least ``p`` (a float or
    ``(R, 1)``); the most likely token always survives."""
    if not isinstance(p, Tensor) and p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (R, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the better tokens
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, NEG_INF)


def force_token(logits: Tensor, rows: Tensor, tokens: Tensor) -> Tensor:
    """Rows ``rows (n,)`` may only take ``tokens (n,)``: every other logit of theirs becomes -inf
    (in place). The forced token keeps its own value (a beam's score goes on counting its
    log-probability), or 0 where it had been suppressed (-inf)."""
    kept = logits[rows, tokens]  # (n,)
    kept = kept.masked_fill(~torch.isfinite(kept), 0.0)
    logits[rows] = NEG_INF
    logits[rows, tokens] = kept
    return logits


# ----------------------------------------------------------------------------- the chain for a batch


class RowSettings:
    """The processors' settings for the rows of one batch, as tensors, built when rows join or
    leave (not every step). Rows are in the batch's order."""

    def __init__(self, configs: Sequence[GenerationConfig], vocab: int, device):
        self.configs, self.vocab, self.device = list(configs), vocab, device
        rows = len(self.configs)
        col = dict(dtype=torch.float32, device=device)
        self.greedy = torch.tensor([c.greedy for c in configs], dtype=torch.bool, device=device)  # (R,)
        temps = [c.temperature if not c.greedy else 1.0 for c in configs]
        self.temperature = torch.tensor(temps, **col)[:, None] if any(t != 1.0 for t in temps) else None
        pens = [c.repetition_penalty for c in configs]
        self.penalty = torch.tensor(pens, **col)[:, None] if any(p != 1.0 for p in pens) else None
        tops = [c.top_p for c in configs]
        self.top_p = torch.tensor(tops, **col)[:, None] if any(p < 1.0 for p in tops) else None
        self.top_k = [None if c.greedy else c.top_k for c in configs]
        self.suppress = self._mask([c.suppress_tokens for c in configs])  # (R, V) or None
        self.begin_suppress = self._mask([c.begin_suppress_tokens for c in configs])
        self.limit_stop = [c.stop_tokens[0] if c.force_stop_at_limit and c.stop_tokens else None for c in configs]
        self.any_forcing = any(c.forced_tokens for c in configs) or any(t is not None for t in self.limit_stop)
        self.sampled_rows = [i for i in range(rows) if not configs[i].greedy]
        self.logprobs = any(c.logprobs is not None for c in configs)  # some row wants log-probabilities
        self.identity = (
            self.suppress is None
            and self.begin_suppress is None
            and not self.any_forcing
            and self.penalty is None
            and not self.sampled_rows
        )  # greedy and nothing else

    def _mask(self, token_lists: list[tuple[int, ...]]) -> Tensor | None:
        if not any(token_lists):
            return None
        mask = torch.zeros((len(token_lists), self.vocab), dtype=torch.bool, device=self.device)  # (R, V)
        for row, tokens in enumerate(token_lists):
            ids = [t for t in tokens if t < self.vocab]
            if ids:
                mask[row, ids] = True
        return mask

    def process(self, logits: Tensor, steps: list[int], seen: Tensor | None, sample: bool = True) -> Tensor:
        """Raw logits ``(R, V)`` -> the logits tokens are chosen from (at least float32, a new
        tensor, unless nothing applies: then ``logits`` as they are, for the argmax). ``steps``: new
        tokens each row has so far; ``seen (R, V)``: tokens in prompt or output. ``sample=False``
        stops before step 4 (what beam rows are ranked by)."""
        if self.identity:
            return logits
        # As few passes over (R, V) as can be: on CPU each one costs a wake-up of PyTorch's threads
        # (V > 32,768), tens of microseconds for microseconds of work, at every step.
        dtype = torch.promote_types(logits.dtype, torch.float32)
        if self.suppress is not None:  # a new tensor: copy and suppress in one pass
            logits = torch.where(self.suppress, NEG_INF, logits.to(dtype))
        else:
            logits = logits.to(dtype, copy=True)
        if self.begin_suppress is not None and 0 in steps:
            first = torch.tensor([s == 0 for s in steps], dtype=torch.bool, device=logits.device)[:, None]  # (R, 1)
            logits.masked_fill_(self.begin_suppress & first, NEG_INF)
        if self.any_forcing:  # after suppression: a forced token wins
            rows, tokens = [], []
            for i, (config, step) in enumerate(zip(self.configs, steps)):
                token = config.forced_tokens.get(step)
                if token is None and self.limit_stop[i] is not None and step == config.max_new_tokens - 1:
                    token = self.limit_stop[i]
                if token is not None:
                    rows.append(i)
                    tokens.append(token)
            if rows:
                force_token(
                    logits, torch.tensor(rows, device=logits.device), torch.tensor(tokens, device=logits.device)
                )
        if self.penalty is not None and seen is not None:
            logits = apply_repetition_penalty(logits, seen, self.penalty)
        if not self.sampled_rows or not sample:
            return logits
        if self.temperature is not None:
            logits = logits / self.temperature
        for k in set(self.top_k) - {None}:
            rows = [i for i, kk in enumerate(self.top_k) if kk == k]
            if len(rows) == len(self.top_k):
                logits = apply_top_k(logits, k)
            else:
                index = torch.tensor(rows, device=logits.device)
                logits[index] = apply_top_k(logits[index], k)
        if self.top_p is not None:
            logits = apply_top_p(logits, self.top_p)
        return logits


def choose(logits: Tensor, settings: RowSettings, generators: Sequence[torch.Generator | None]) -> Tensor:
    """Processed logits ``(R, V)`` -> tokens ``(R,)``: argmax for greedy rows, the exponential
    race with each sampled row's own generator otherwise."""
    tokens = logits.argmax(dim=-1)  # (R,)
    rows = settings.sampled_rows
    if not rows:
        return tokens
    index = torch.tensor(rows, device=logits.device)
    probs = logits[index].softmax(dim=-1)  # (n, V)
    noise = torch.empty_like(probs)
    for i, row in enumerate(rows):
        noise[i].exponential_(1.0, generator=generators[row])
    drawn = (probs / noise).argmax(dim=-1)  # (n,)
    return tokens.index_copy(0, index, drawn)


def new_generator(seed: int | None, device) -> torch.Generator:
    """A row's own generator: seeded with ``seed``, or with a seed drawn from torch's global
    generator (so ``torch.manual_seed`` still makes unseeded runs repeatable)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(int(seed))

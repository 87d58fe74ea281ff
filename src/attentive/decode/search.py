"""Greedy and beam search for encoder-decoder models (translation), batched, over a KV cache.

The source is encoded once. Each step feeds the decoder only the newest token and a
``DynamicCache`` supplies the keys/values of the prefix (self-attention) and of the encoder
memory (cross-attention), so no step recomputes the prefix; ``use_cache=False`` feeds the whole
prefix instead (the reference the tests compare against). Sentences that finish leave the
batch (their cache rows are dropped with ``cache.reorder``), so a long sentence does not keep
short ones computing.

Beam search follows the paper (section 6.1) and GNMT (Wu et al., 2016):

* hypotheses are ranked by ``log p(Y | X) / lp(Y)`` with ``lp(Y) = ((5 + |Y|) / 6) ** alpha``,
  ``alpha = 0.6``, where ``|Y|`` counts the generated tokens including the end-of-sequence token;
* output length is at most source length + 50 tokens (``max_len_b``), and never more than the
  model's ``max_len`` positions; at the limit the end-of-sequence token is forced;
* early stopping: a sentence is done once it holds ``beam_size`` finished hypotheses. As in
  fairseq, only end-of-sequence candidates ranked within the top ``beam_size`` finish a
  hypothesis, so ``beam_size=1`` is exactly greedy search.

The model is anything with ``encode(src, src_valid) -> .hidden (B, S, D)``,
``decode(tgt, memory, memory_valid, cache=) -> .hidden (B, T, D)``, ``generator(hidden) -> logits``
and ``config.pad_id`` / ``config.max_len`` (``EncoderDecoder``).

Dimension names: B sentences, K beam size, R rows in the decoder batch (B or B*K, shrinking as
sentences finish), S source length, T tokens so far, D model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn.cache import DynamicCache
from ..text.special import BOS_ID, EOS_ID


@dataclass
class SearchConfig:
    """How to decode. ``beam_size=1`` is greedy search."""

    beam_size: int = 4
    alpha: float = 0.6  # GNMT length-penalty exponent (0 = raw log-probability)
    max_len_b: int = 50  # output tokens allowed beyond the source length
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if self.alpha < 0:
            raise ValueError(f"alpha (length penalty) must be >= 0, got {self.alpha}")
        if self.max_len_b < 0:
            raise ValueError(f"max_len_b must be >= 0, got {self.max_len_b}")


@dataclass
class SearchOutput:
    tokens: list[list[int]]  # per sentence: the output ids, without BOS and EOS
    scores: list[float]  # per sentence: log-probability (greedy) or length-normalised score (beam)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT: ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + length) / 6.0) ** alpha


def output_limits(src_valid: Tensor, max_len_b: int, model) -> Tensor:
    """Decoding steps allowed per sentence ``(B,)``: source length + ``max_len_b`` tokens, + 1 for
    the end-of-sequence token, capped so decoder positions stay below the model's ``max_len``."""
    limits = src_valid.sum(dim=1) + max_len_b + 1  # (B,)
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    return limits.clamp(max=max_len) if max_len else limits


def _step_log_probs(model, prefix: Tensor, memory: Tensor, memory_valid: Tensor, cache) -> Tensor:
    """Next-token log-probabilities ``(R, V)`` (at least float32) for decoder input ``prefix (R, T)``."""
    inp = prefix[:, -1:] if cache is not None else prefix  # the cache holds the rest of the prefix
    hidden = model.decode(inp, memory, memory_valid, cache=cache).hidden[:, -1]  # (R, D)
    logits = model.generator(hidden)  # (R, V)
    return F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


def _force_eos(log_probs: Tensor, at_limit: Tensor, eos_id: int) -> None:
    """Rows at their length limit may only end: every other token gets -inf (in place)."""
    if at_limit.any():
        eos_col = log_probs[at_limit, eos_id].clone()
        log_probs[at_limit] = float("-inf")
        log_probs[at_limit, eos_id] = eos_col


def _encode(model, src: Tensor) -> tuple[Tensor, Tensor]:
    src_valid = src != model.config.pad_id  # (B, S)
    return model.encode(src, src_valid).hidden, src_valid  # (B, S, D), (B, S)


@torch.no_grad()
def greedy_search(model, src: Tensor, config: SearchConfig | None = None, *, bos_id: int = BOS_ID,
                  eos_id: int = EOS_ID) -> SearchOutput:
    """Pick the most probable token at every step. src ``(B, S)`` padded token ids."""
    config = config or SearchConfig(beam_size=1)
    memory, src_valid = _encode(model, src)
    limits = output_limits(src_valid, config.max_len_b, model)  # (B,)
    batch = src.shape[0]
    tokens: list[list[int]] = [[] for _ in range(batch)]
    scores = [0.0] * batch
    rows = torch.arange(batch, device=src.device)  # sentence behind each decoder row
    prefix = torch.full((batch, 1), bos_id, dtype=torch.long, device=src.device)  # (R, T)
    cache = DynamicCache() if config.use_cache else None
    for step in range(int(limits.max()) if batch else 0):
        log_probs = _step_log_probs(model, prefix, memory, src_valid, cache)  # (R, V)
        _force_eos(log_probs, step + 1 >= limits, eos_id)
        best, next_tok = log_probs.max(dim=-1)  # (R,), (R,)
        for row, tok, lp in zip(rows.tolist(), next_tok.tolist(), best.tolist()):
            scores[row] += lp
            if tok != eos_id:
                tokens[row].append(tok)
        keep = next_tok != eos_id  # (R,)
        if not keep.any():
            break
        if not keep.all():
            index = keep.nonzero().squeeze(1)  # (R',)
            memory, src_valid, limits, rows = memory[index], src_valid[index], limits[index], rows[index]
            prefix, next_tok = prefix[index], next_tok[index]
            if cache is not None:
                cache.reorder(index)
        prefix = torch.cat([prefix, next_tok[:, None]], dim=1)  # (R, T + 1)
    return SearchOutput(tokens, scores)


@torch.no_grad()
def beam_search(model, src: Tensor, config: SearchConfig | None = None, *, bos_id: int = BOS_ID,
                eos_id: int = EOS_ID) -> SearchOutput:
    """Keep the ``beam_size`` best prefixes per sentence; return each sentence's best finished one."""
    config = config or SearchConfig()
    k = config.beam_size
    memory, src_valid = _encode(model, src)  # (B, S, D), (B, S)
    limits = output_limits(src_valid, config.max_len_b, model)  # (B,)
    batch, device = src.shape[0], src.device
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    sentences = torch.arange(batch, device=device)  # sentence behind each active beam group (b,)
    # every beam starts as BOS; only beam 0 is live at first so the k copies do not all win
    beam_scores = torch.zeros(batch, k, device=device)  # (b, K)
    beam_scores[:, 1:] = float("-inf")
    memory = memory.repeat_interleave(k, dim=0)  # (b*K, S, D)
    src_valid = src_valid.repeat_interleave(k, dim=0)  # (b*K, S)
    prefix = torch.full((batch * k, 1), bos_id, dtype=torch.long, device=device)  # (b*K, T)
    cache = DynamicCache() if config.use_cache else None

    for step in range(int(limits.max()) if batch else 0):
        b = sentences.numel()
        log_probs = _step_log_probs(model, prefix, memory, src_valid, cache)  # (b*K, V)
        vocab = log_probs.shape[-1]
        at_limit = step + 1 >= limits  # (b,)
        _force_eos(log_probs, at_limit.repeat_interleave(k), eos_id)
        candidates = (beam_scores[:, :, None] + log_probs.view(b, k, vocab)).view(b, k * vocab)  # (b, K*V)
        # 2K candidates: at most K of them end (one per beam), so K always continue
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (b, 2K)
        origin, top_tok = top_index // vocab, top_index % vocab  # beam each came from, its token
        is_eos = top_tok == eos_id  # (b, 2K)

        # end-of-sequence candidates within the top K finish a hypothesis
        ended = (is_eos[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero().tolist()
        if ended:
            prefix_rows = prefix[:, 1:].tolist()
            scores_list, origin_list = top_scores.tolist(), origin.tolist()
            penalty = length_penalty(step + 1, config.alpha)
            for i, j in ended:
                hyp = prefix_rows[i * k + origin_list[i][j]]
                finished[int(sentences[i])].append((scores_list[i][j] / penalty, hyp))

        # the K best candidates that continue (a stable sort moves EOS candidates last)
        order = torch.sort(is_eos.int(), dim=1, stable=True).indices[:, :k]  # (b, K)
        beam_scores = top_scores.gather(1, order)  # (b, K)
        new_tok = top_tok.gather(1, order)  # (b, K)
        source_row = torch.arange(b, device=device)[:, None] * k + origin.gather(1, order)  # (b, K)

        counts = torch.tensor([len(finished[s]) for s in sentences.tolist()], device=device)
        keep = (counts < k) & ~at_limit  # (b,) sentences still searching
        if not keep.any():
            break
        index = source_row[keep].reshape(-1)  # (b'*K,) rows to carry into the next step
        prefix = torch.cat([prefix[index], new_tok[keep].reshape(-1, 1)], dim=1)  # (b'*K, T + 1)
        beam_scores, sentences, limits = beam_scores[keep], sentences[keep], limits[keep]
        memory, src_valid = memory[index], src_valid[index]
        if cache is not None:
            cache.reorder(index)

    tokens, scores = [], []
    for hyps in finished:
        score, hyp = max(hyps, key=lambda h: h[0])
        tokens.append(hyp)
        scores.append(score)
    return SearchOutput(tokens, scores)


def search(model, src: Tensor, config: SearchConfig | None = None, **ids) -> SearchOutput:
    """Greedy search for ``beam_size == 1``, beam search otherwise."""
    config = config or SearchConfig()
    return greedy_search(model, src, config, **ids) if config.beam_size == 1 else beam_search(model, src, config, **ids)

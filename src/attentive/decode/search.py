"""Greedy and beam search for encoder-decoder models (translation), batched, over a KV cache.

The source is encoded once; its rows carry the encoder output through the decoding engine
(greedy: ``Engine``, one request per sentence; beam: ``DecodeBatch`` directly, one row per
hypothesis), whose cache keeps the keys/values of the prefix and of the encoder memory, so no
step recomputes the prefix. ``use_cache=False`` re-encodes the whole prefix every step (the
reference the tests compare against). Sentences that finish leave the batch, so a long sentence
does not keep short ones computing.

Beam search follows the paper (section 6.1) and GNMT (Wu et al., 2016):

* hypotheses are ranked by ``log p(Y | X) / lp(Y)`` with ``lp(Y) = ((5 + |Y|) / 6) ** alpha``,
  ``alpha = 0.6``, where ``|Y|`` counts the generated tokens including the end-of-sequence token;
* output length is at most source length + 50 tokens (``max_len_b``), and never more than the
  model's ``max_len`` positions; at the limit the end-of-sequence token is forced;
* early stopping: a sentence is done once it holds ``beam_size`` finished hypotheses. As in
  fairseq, only end-of-sequence candidates ranked within the top ``beam_size`` finish a
  hypothesis, so ``beam_size=1`` is exactly greedy search.

The model is anything with ``encode(src, key_mask) -> .hidden (B, S, D)`` and the decoding
protocol of ``batch.py`` (``EncoderDecoder``); its ``config.pad_id`` marks source padding.

Dimension names: B sentences, K beam size, R rows in the decoder batch (B or B*K, shrinking as
sentences finish), S source length, T tokens so far, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..text.special import BOS_ID, EOS_ID
from .batch import DecodeBatch
from .config import GenerationConfig
from .engine import Engine, Request
from .processors import force_token


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

    @property
    def cache(self) -> str:
        return "dynamic" if self.use_cache else "none"


@dataclass
class BeamStep:
    """One sentence after one step of beam search (what ``beam_search(on_step=...)`` reports):
    the ``live`` hypotheses it carries on, as (tokens without BOS, summed log-probability), and
    the ``finished`` ones so far, as (tokens without BOS and EOS, length-normalised score)."""

    step: int
    sentence: int
    live: list[tuple[list[int], float]]
    finished: list[tuple[list[int], float]]


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


def _encode(model, src: Tensor) -> tuple[Tensor, Tensor]:
    src_valid = src != model.config.pad_id  # (B, S)
    return model.encode(src, src_valid).hidden, src_valid  # (B, S, D), (B, S)


@torch.no_grad()
def greedy_search(model, src: Tensor, config: SearchConfig | None = None, *, bos_id: int = BOS_ID,
                  eos_id: int = EOS_ID) -> SearchOutput:
    """Pick the most probable token at every step. src ``(B, S)`` padded token ids."""
    config = config or SearchConfig(beam_size=1)
    memory, src_valid = _encode(model, src)
    limits = output_limits(src_valid, config.max_len_b, model).tolist()  # (B,)
    engine = Engine(model, cache=config.cache, pad_id=model.config.pad_id)
    sequences = [
        engine.add(Request([bos_id], GenerationConfig(max_new_tokens=int(limit), temperature=0.0, logprobs=0,
                                                      force_stop_at_limit=True),
                           stop_tokens=(eos_id,), memory=memory[i], memory_key_mask=src_valid[i]))
        for i, limit in enumerate(limits)
    ]
    for _ in engine.run():
        pass
    return SearchOutput([s.tokens for s in sequences], [s.score for s in sequences])


@torch.no_grad()
def beam_search(model, src: Tensor, config: SearchConfig | None = None, *, bos_id: int = BOS_ID,
                eos_id: int = EOS_ID, on_step: Callable[[list[BeamStep]], None] | None = None) -> SearchOutput:
    """Keep the ``beam_size`` best prefixes per sentence; return each sentence's best finished one.

    ``on_step`` (optional) gets a ``BeamStep`` per sentence still searching after every step."""
    config = config or SearchConfig()
    k = config.beam_size
    memory, src_valid = _encode(model, src)  # (B, S, D), (B, S)
    limits = output_limits(src_valid, config.max_len_b, model)  # (B,)
    batch, device = src.shape[0], src.device
    if batch == 0:
        return SearchOutput([], [])
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    sentences = torch.arange(batch, device=device)  # sentence behind each active beam group (b,)
    # every beam starts as BOS; only beam 0 is live at first so the k copies do not all win
    beam_scores = torch.zeros(batch, k, device=device)  # (b, K)
    beam_scores[:, 1:] = float("-inf")
    rows = DecodeBatch(model, cache=config.cache, pad_id=model.config.pad_id)
    logits = rows.start([[bos_id]] * (batch * k), memory.repeat_interleave(k, dim=0),
                        src_valid.repeat_interleave(k, dim=0))  # (b*K, V)

    for step in range(int(limits.max())):
        b = sentences.numel()
        log_probs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # (b*K, V)
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
            prefix_rows = rows.history()[:, 1:].tolist()
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

        if on_step is not None:
            on_step(_beam_steps(step, rows.history(), source_row, new_tok, beam_scores, sentences, finished))
        counts = torch.tensor([len(finished[s]) for s in sentences.tolist()], device=device)
        keep = (counts < k) & ~at_limit  # (b,) sentences still searching
        if not keep.any():
            break
        rows.select(source_row[keep].reshape(-1))  # (b'*K,) rows to carry into the next step
        beam_scores, sentences, limits = beam_scores[keep], sentences[keep], limits[keep]
        logits = rows.step(new_tok[keep].reshape(-1))

    tokens, scores = [], []
    for hyps in finished:
        score, hyp = max(hyps, key=lambda h: h[0])
        tokens.append(hyp)
        scores.append(score)
    return SearchOutput(tokens, scores)


def _beam_steps(step: int, history: Tensor, source_row: Tensor, new_tok: Tensor, beam_scores: Tensor,
                sentences: Tensor, finished: list[list[tuple[float, list[int]]]]) -> list[BeamStep]:
    """The live beams (their row's prefix without BOS, plus the new token) and finished hypotheses
    of every sentence still in the batch."""
    prefixes = history[source_row.reshape(-1), 1:].tolist()  # (b*K, T-1)
    tokens, scores = new_tok.reshape(-1).tolist(), beam_scores.reshape(-1).tolist()
    k = new_tok.shape[1]
    out = []
    for i, sentence in enumerate(sentences.tolist()):
        live = [(prefixes[i * k + j] + [tokens[i * k + j]], scores[i * k + j]) for j in range(k)]
        done = [(hyp, score) for score, hyp in finished[sentence]]
        out.append(BeamStep(step, sentence, live, done))
    return out


def _force_eos(log_probs: Tensor, at_limit: Tensor, eos_id: int) -> None:
    """Rows at their length limit may only end: every other token gets -inf (in place), the
    end-of-sequence token keeps its log-probability."""
    if at_limit.any():
        rows = at_limit.nonzero().squeeze(1)
        eos_col = log_probs[rows, eos_id].clone()
        force_token(log_probs, rows, torch.full_like(rows, eos_id))
        log_probs[rows, eos_id] = eos_col


def search(model, src: Tensor, config: SearchConfig | None = None, **ids) -> SearchOutput:
    """Greedy search for ``beam_size == 1``, beam search otherwise."""
    config = config or SearchConfig()
    return greedy_search(model, src, config, **ids) if config.beam_size == 1 else beam_search(model, src, config, **ids)

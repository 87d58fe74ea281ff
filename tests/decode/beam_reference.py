"""The translation beam search as it was before it moved into the decoding engine: its own step
loop over a ``DecodeBatch``, its own log-softmax, top-2K and forced stop at the length limit.

Kept here, unchanged but for names, as the reference the engine's beams must reproduce token for
token and score for score (tests/decode/test_beam_parity.py). GNMT length penalty
``((5 + |Y|) / 6) ** alpha``; a sentence is done once it holds ``beam_size`` finished hypotheses
(fairseq); only end-of-sequence candidates within the top K finish one.

Dimension names: b sentences still searching, K beam size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from attentive.decode.batch import DecodeBatch


@dataclass
class ReferenceStep:
    step: int
    sentence: int
    live: list[tuple[list[int], float]]
    finished: list[tuple[list[int], float]]


def _length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


def _limits(src_valid: Tensor, max_len_b: int, model) -> Tensor:
    limits = src_valid.sum(dim=1) + max_len_b + 1  # (B,)
    return limits.clamp(max=model.config.max_len)


@torch.no_grad()
def reference_beam_search(
    model, src: Tensor, beam_size: int, alpha: float, max_len_b: int, cache: str, bos_id: int, eos_id: int, on_step=None
) -> tuple[list[list[int]], list[float]]:
    k = beam_size
    src_valid = src != model.config.pad_id  # (B, S)
    memory = model.encode(src, src_valid).hidden  # (B, S, D)
    limits = _limits(src_valid, max_len_b, model)  # (B,)
    batch, device = src.shape[0], src.device
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    sentences = torch.arange(batch, device=device)
    beam_scores = torch.zeros(batch, k, device=device)  # (b, K)
    beam_scores[:, 1:] = float("-inf")
    rows = DecodeBatch(model, cache=cache, pad_id=model.config.pad_id)
    logits = rows.start(
        [[bos_id]] * (batch * k), memory.repeat_interleave(k, dim=0), src_valid.repeat_interleave(k, dim=0)
    )  # (b*K, V)

    for step in range(int(limits.max())):
        b = sentences.numel()
        log_probs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # (b*K, V)
        vocab = log_probs.shape[-1]
        at_limit = step + 1 >= limits  # (b,)
        forced = at_limit.repeat_interleave(k)
        if forced.any():  # at the limit only EOS, with its own log-probability
            index = forced.nonzero().squeeze(1)
            eos_col = log_probs[index, eos_id].clone()
            log_probs[index] = float("-inf")
            log_probs[index, eos_id] = eos_col
        candidates = (beam_scores[:, :, None] + log_probs.view(b, k, vocab)).view(b, k * vocab)  # (b, K*V)
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (b, 2K)
        origin, top_tok = top_index // vocab, top_index % vocab
        is_eos = top_tok == eos_id  # (b, 2K)

        ended = (is_eos[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero().tolist()
        if ended:
            prefix_rows = rows.history()[:, 1:].tolist()
            scores_list, origin_list = top_scores.tolist(), origin.tolist()
            penalty = _length_penalty(step + 1, alpha)
            for i, j in ended:
                hyp = prefix_rows[i * k + origin_list[i][j]]
                finished[int(sentences[i])].append((scores_list[i][j] / penalty, hyp))

        order = torch.sort(is_eos.int(), dim=1, stable=True).indices[:, :k]  # (b, K)
        beam_scores = top_scores.gather(1, order)  # (b, K)
        new_tok = top_tok.gather(1, order)  # (b, K)
        source_row = torch.arange(b, device=device)[:, None] * k + origin.gather(1, order)  # (b, K)

        if on_step is not None:
            prefixes = rows.history()[source_row.reshape(-1), 1:].tolist()
            tokens, scores = new_tok.reshape(-1).tolist(), beam_scores.reshape(-1).tolist()
            report = []
            for i, sentence in enumerate(sentences.tolist()):
                live = [(prefixes[i * k + j] + [tokens[i * k + j]], scores[i * k + j]) for j in range(k)]
                report.append(ReferenceStep(step, sentence, live, [(h, s) for s, h in finished[sentence]]))
            on_step(report)
        counts = torch.tensor([len(finished[s]) for s in sentences.tolist()], device=device)
        keep = (counts < k) & ~at_limit  # (b,)
        if not keep.any():
            break
        rows.select(source_row[keep].reshape(-1))
        beam_scores, sentences, limits = beam_scores[keep], sentences[keep], limits[keep]
        logits = rows.step(new_tok[keep].reshape(-1))

    tokens, scores = [], []
    for hyps in finished:
        score, hyp = max(hyps, key=lambda h: h[0])
        tokens.append(hyp)
        scores.append(score)
    return tokens, scores

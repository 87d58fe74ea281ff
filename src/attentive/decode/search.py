"""Greedy and beam search for encoder-decoder models (translation), batched, over a KV cache.

The source is encoded once; each sentence is one request to the decoding engine (``Engine``),
its rows carrying the encoder output: greedy search is a request with ``temperature=0``, beam
search one with ``num_beams=K`` (K rows, the engine's beam strategy, ``beams.py``). The cache
keeps the keys/values of the prefix and of the encoder memory, so no step recomputes the
prefix; ``use_cache=False`` re-encodes the whole prefix every step (the reference the tests
compare against). Sentences that finish leave the batch, so a long sentence does not keep short
ones computing. ``SearchConfig`` is translation's vocabulary for the request settings
(``beam_size`` -> ``num_beams``, ``alpha`` -> ``length_penalty`` in GNMT's form, the length
limit -> ``max_new_tokens`` with the end-of-sequence token forced there).

Beam search follows the paper (section 6.1) and GNMT (Wu et al., 2016):

* hypotheses are ranked by ``log p(Y | X) / lp(Y)`` with ``lp(Y) = ((5 + |Y|) / 6) ** alpha``,
  ``alpha = 0.6``, where ``|Y|`` counts the generated tokens including the end-of-sequence token;
* output length is at most source length + 50 tokens (``max_len_b``), and never more than the
  positions the decoder reads (its ``cache_layout().context``, the config's ``max_len``); at the
  limit the end-of-sequence token is forced;
* early stopping: a sentence is done once it holds ``beam_size`` finished hypotheses. As in
  fairseq, only end-of-sequence candidates ranked within the top ``beam_size`` finish a
  hypothesis, so ``beam_size=1`` is exactly greedy search (its scores length-normalised).

The model is anything with ``encode(src, key_mask) -> .hidden (B, S, D)`` and the decoding
protocol of ``batch.py`` (``EncoderDecoder``); its ``config.pad_id`` marks source padding.

Dimension names: B sentences, K beam size, R rows in the decoder batch (B or B*K, shrinking as
sentences finish), S source length, T tokens so far, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..text.special import BOS_ID, EOS_ID
from . import beams
from .batch import cache_layout
from .config import EngineConfig, GenerationConfig
from .engine import Engine, Request


@dataclass
class SearchConfig:
    """How to decode. ``beam_size=1`` is greedy search."""

    beam_size: int = 4
    alpha: float = 0.6  # GNMT length-penalty exponent (0 = raw log-probability)
    max_len_b: int = 50  # output tokens allowed beyond the source length
    use_cache: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise ValueError(f"beam_size must be an integer >= 1 (1 = greedy), got {self.beam_size!r}")
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
    return beams.length_penalty(length, alpha, "gnmt")


def output_limits(src_valid: Tensor, max_len_b: int, model) -> Tensor:
    """Decoding steps allowed per sentence ``(B,)``: source length + ``max_len_b`` tokens, + 1 for
    the end-of-sequence token, capped so decoder positions stay within the model's context."""
    limits = src_valid.sum(dim=1) + max_len_b + 1  # (B,)
    return limits.clamp(max=cache_layout(model).context)


def _encode(model, src: Tensor) -> tuple[Tensor, Tensor]:
    src_valid = src != model.config.pad_id  # (B, S)
    return model.encode(src, src_valid).hidden, src_valid  # (B, S, D), (B, S)


def _decode(
    model,
    src: Tensor,
    config: SearchConfig,
    settings: GenerationConfig,
    bos_id: int,
    on_beams: Callable[[int], Callable] | None = None,
    after_step: Callable[[], None] | None = None,
) -> list:
    """One engine request per sentence of ``src (B, S)`` with ``settings`` (its length limit
    filled in; ``on_beams(i)``: sentence i's beam reporter); returns their sequences, in order.
    ``after_step()`` runs after every step."""
    memory, src_valid = _encode(model, src)  # (B, S, D), (B, S)
    limits = output_limits(src_valid, config.max_len_b, model).tolist()  # (B,)
    engine = Engine(model, EngineConfig(cache=config.cache, pad_id=model.config.pad_id))
    sequences = [
        engine.add(
            Request(
                [bos_id],
                settings.replace(max_new_tokens=int(limit)),
                memory=memory[i],
                memory_key_mask=src_valid[i],
                on_beams=on_beams(i) if on_beams else None,
            )
        )
        for i, limit in enumerate(limits)
    ]
    while not engine.idle:
        engine.step()
        if after_step is not None:
            after_step()
    return sequences


@torch.no_grad()
def greedy_search(
    model, src: Tensor, config: SearchConfig | None = None, *, bos_id: int = BOS_ID, eos_id: int = EOS_ID
) -> SearchOutput:
    """Pick the most probable token at every step. src ``(B, S)`` padded token ids."""
    config = config or SearchConfig(beam_size=1)
    settings = GenerationConfig(temperature=0.0, logprobs=0, force_stop_at_limit=True, stop_tokens=(eos_id,))
    sequences = _decode(model, src, config, settings, bos_id)
    return SearchOutput([s.tokens for s in sequences], [s.score for s in sequences])


def beam_settings(config: SearchConfig, eos_id: int) -> GenerationConfig:
    """Translation's beam search as request settings: K beams ranked by GNMT's length penalty,
    done once K hypotheses have finished (fairseq), the end-of-sequence token forced at the limit."""
    return GenerationConfig(
        temperature=0.0,
        num_beams=config.beam_size,
        length_penalty=config.alpha,
        length_penalty_form="gnmt",
        early_stopping=True,
        force_stop_at_limit=True,
        stop_tokens=(eos_id,),
    )


@torch.no_grad()
def beam_search(
    model,
    src: Tensor,
    config: SearchConfig | None = None,
    *,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    on_step: Callable[[list[BeamStep]], None] | None = None,
) -> SearchOutput:
    """Keep the ``beam_size`` best prefixes per sentence; return each sentence's best finished one.

    ``on_step`` (optional) gets a ``BeamStep`` per sentence still searching after every step."""
    config = config or SearchConfig()
    if src.shape[0] == 0:
        return SearchOutput([], [])
    report: list[BeamStep] = []

    def reporter(sentence: int) -> Callable:
        return lambda step, live, finished: report.append(BeamStep(step, sentence, live, finished))

    def flush() -> None:
        if report:
            on_step(list(report))
            report.clear()

    sequences = _decode(
        model,
        src,
        config,
        beam_settings(config, eos_id),
        bos_id,
        on_beams=reporter if on_step is not None else None,
        after_step=flush if on_step is not None else None,
    )
    return SearchOutput([s.tokens for s in sequences], [s.score for s in sequences])


def search(model, src: Tensor, config: SearchConfig | None = None, **ids) -> SearchOutput:
    """Greedy search for ``beam_size == 1``, beam search otherwise."""
    config = config or SearchConfig()
    return greedy_search(model, src, config, **ids) if config.beam_size == 1 else beam_search(model, src, config, **ids)

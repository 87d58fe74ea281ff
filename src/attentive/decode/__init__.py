"""Decoding: one engine for every model that generates token by token.

Settings come in two kinds (``config``): ``GenerationConfig`` per request (sampling, stop
conditions, log-probabilities, suppressed and forced tokens, beam search) and ``EngineConfig``
per engine (cache kind, compile, context, window, sinks, padding, batch size), each checked
once; a setting given to the wrong kind is refused. ``batch.DecodeBatch`` runs the model over a
KV cache (none / dynamic / static / CUDA graph), sized from the model's own ``cache_layout()``;
``processors`` hold the logits processors and the one sampler; ``engine.Engine`` turns requests
into tokens a step at a time (rows join and leave between steps), greedy, sampled or by beam
search (``beams``: a request with ``num_beams=K`` holds K rows and runs the same processors);
``generate`` (language models), ``search`` (translation: greedy and beam), ``transcriber``
(Whisper: greedy and beam) and ``translator`` (text in, text out) are built on them.
"""

from .batch import DecodeBatch
from .config import CACHES, EngineConfig, GenerationConfig
from .engine import Engine, Request, Sequence, TokenEvent
from .generate import GenerationOutput, TextDelta, generate, stream
from .search import BeamStep, SearchConfig, SearchOutput, beam_search, greedy_search, search
from .translator import Translator

__all__ = [
    "BeamStep",
    "CACHES",
    "DecodeBatch",
    "Engine",
    "EngineConfig",
    "GenerationConfig",
    "GenerationOutput",
    "Request",
    "SearchConfig",
    "SearchOutput",
    "Sequence",
    "TextDelta",
    "TokenEvent",
    "Translator",
    "beam_search",
    "generate",
    "greedy_search",
    "search",
    "stream",
]

"""Decoding: one engine for every model that generates token by token.

``batch.DecodeBatch`` runs the model over a KV cache (none / dynamic / static / CUDA graph);
``processors`` hold the logits processors and the one sampler; ``engine.Engine`` turns requests
into tokens a step at a time (rows join and leave between steps); ``generate`` (language
models), ``search`` (translation: greedy and beam), ``transcriber`` (Whisper) and
``translator`` (text in, text out) are built on them.
"""

from .batch import DecodeBatch
from .config import CACHES, GenerationConfig
from .engine import Engine, Request, Sequence, TokenEvent
from .generate import GenerationOutput, TextDelta, generate, stream
from .search import BeamStep, SearchConfig, SearchOutput, beam_search, greedy_search, search
from .translator import Translator

__all__ = [
    "BeamStep", "CACHES", "DecodeBatch", "Engine", "GenerationConfig", "GenerationOutput", "Request", "SearchConfig",
    "SearchOutput", "Sequence", "TextDelta", "TokenEvent", "Translator", "beam_search", "generate",
    "greedy_search", "search", "stream",
]

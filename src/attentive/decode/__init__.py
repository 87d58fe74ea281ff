"""Decoding: greedy, beam search and sampling; static-cache / CUDA-graph runners."""

from .sampling import GenerationConfig, GenerationOutput, TextDelta, generate, stream

__all__ = ["GenerationConfig", "GenerationOutput", "TextDelta", "generate", "stream"]

# translation (encoder-decoder) search
from .search import SearchConfig, SearchOutput, beam_search, greedy_search, search  # noqa: E402
from .translator import Translator  # noqa: E402

__all__ += ["SearchConfig", "SearchOutput", "Translator", "beam_search", "greedy_search", "search"]

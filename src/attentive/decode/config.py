"""How to continue a sequence: one settings object for every model and every loop.

A ``GenerationConfig`` belongs to one request (a prompt, a sentence, an audio window): the
decoding engine keeps one per row, so rows with different settings decode side by side.
Every value is checked when the config is made, with a message naming the setting.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

CACHES = ("dynamic", "static", "cuda_graph", "none")
FINISH_REASONS = ("stop_token", "stop_string", "length", "cancelled")


@dataclass
class GenerationConfig:
    """How to continue a prompt."""

    max_new_tokens: int = 100
    temperature: float = 1.0  # 0 = greedy (argmax); > 1 flatter, < 1 sharper
    top_k: int | None = None  # sample among the k most likely tokens (None: all)
    top_p: float = 1.0  # nucleus: the smallest set of tokens whose probability reaches top_p
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prompt or output (CTRL)
    suppress_tokens: tuple[int, ...] = ()  # never generated
    begin_suppress_tokens: tuple[int, ...] = ()  # not generated as the first new token
    forced_tokens: dict[int, int] = field(default_factory=dict)  # {step: token}: that step's token is fixed
    force_stop_at_limit: bool = False  # the last allowed token is the stop token (translation's length limit)
    stop_tokens: tuple[int, ...] | None = None  # None: the tokenizer's end-of-sequence id(s)
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None  # None: a seed drawn from torch's global generator
    cache: str = "dynamic"  # dynamic | static | cuda_graph | none
    # static caches: torch.compile the step (True = inductor, on CPU with the weights frozen in; or a backend name)
    compile: bool | str = False
    add_bos: bool = False  # prepend BOS to every prompt (an empty prompt always starts from BOS)
    context: int | None = None  # tokens the model sees at most (None: the model's max_len)
    # streaming (StreamingLLM): keep only the last `window` tokens' keys (and the first `sinks`),
    # positions within that cache, so generation runs past the context with bounded memory
    window: int | None = None
    sinks: int = 0
    logprobs: int | None = None  # None: no log-probabilities; N >= 0: the chosen token's and N alternatives'

    def __post_init__(self) -> None:
        if self.stop_tokens is not None:
            self.stop_tokens = tuple(int(t) for t in self.stop_tokens)
        if isinstance(self.stop_strings, str):
            self.stop_strings = (self.stop_strings,)
        self.stop_strings = tuple(self.stop_strings)
        self.suppress_tokens = tuple(int(t) for t in self.suppress_tokens)
        self.begin_suppress_tokens = tuple(int(t) for t in self.begin_suppress_tokens)
        self.forced_tokens = {int(k): int(v) for k, v in dict(self.forced_tokens or {}).items()}
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {self.max_new_tokens!r}")
        if not _is_number(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer (or None for no limit), got {self.top_k!r}")
        if not _is_number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ValueError(
                f"repetition_penalty must be a finite number > 0 (1 = off), got {self.repetition_penalty!r}"
            )
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop_strings!r}")
        bad = [t for t in (*self.suppress_tokens, *self.begin_suppress_tokens, *self.forced_tokens.values()) if t < 0]
        bad += [s for s in self.forced_tokens if s < 0]
        if bad:
            raise ValueError(f"token ids and steps must be >= 0, got {bad[:5]}")
        if self.cache not in CACHES:
            raise ValueError(f"cache must be one of {CACHES}, got {self.cache!r}")
        if self.compile and self.cache not in ("static", "cuda_graph"):
            raise ValueError(f"compile needs fixed shapes: use cache='static' (got cache={self.cache!r})")
        if self.context is not None and (not _is_int(self.context) or self.context < 1):
            raise ValueError(
                f"context must be a positive integer (or None for the model's max_len), got {self.context!r}"
            )
        if self.window is not None and (not _is_int(self.window) or self.window < 1):
            raise ValueError(f"window must be a positive integer (tokens kept), or None, got {self.window!r}")
        if not _is_int(self.sinks) or self.sinks < 0:
            raise ValueError(f"sinks must be an integer >= 0, got {self.sinks!r}")
        if self.sinks and self.window is None:
            raise ValueError(f"sinks={self.sinks} needs a window (the recent tokens kept besides the sinks)")
        if self.window is not None and self.sinks > self.window:
            raise ValueError(f"sinks ({self.sinks}) must not exceed the window ({self.window})")
        if self.window is not None and self.cache != "dynamic":
            raise ValueError(f"a window streams through its own bounded cache: use cache='dynamic' (got {self.cache!r})")
        if self.logprobs is not None and (not _is_int(self.logprobs) or not 0 <= self.logprobs <= 20):
            raise ValueError(f"logprobs must be an integer from 0 to 20 (or None), got {self.logprobs!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **overrides) -> GenerationConfig:
        """A copy with ``overrides``; an unknown name is an error listing the valid ones."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown generation option(s) {unknown}; valid options: {names}")
        return dataclasses.replace(self, **overrides)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

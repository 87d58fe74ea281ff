"""Decoding settings, in two kinds, each checked once, here, when it is made.

* ``GenerationConfig``: how to continue one request (a prompt, a sentence, an audio window):
  sampling, stop conditions, log-probabilities, suppressed and forced tokens, beam search. The
  engine keeps one per row, so requests with different settings decode side by side.
* ``EngineConfig``: what the engine fixes when it is built (KV-cache kind, compilation,
  context, streaming window and sinks, padding, batch size); every request it decodes shares it.

A setting given to the wrong kind is refused with a one-line error naming the right one
(``GenerationConfig(context=...)`` says ``context`` is an engine setting), never ignored;
``split_options`` routes a flat list of keyword options (``generate(..., cache=, temperature=)``)
to the two kinds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..nn.cache import check_window

CACHES = ("auto", "dynamic", "slots", "static", "cuda_graph", "none")
STATIC_CACHES = ("static", "cuda_graph")  # a fixed batch: fixed shapes, no rows join once started
COMPILED_CACHES = ("slots", "static", "cuda_graph")  # fixed shapes: a step that can be compiled
# compile="auto": compile a CPU slot step when a batch will decode this many tokens. A start with
# inductor's code cached on disk still costs tens of seconds on 2 cores (dynamo traces again) and
# the compiled step saves ~8-10 ms a token at batch 1 (SmolLM2 int4): it pays after ~1,000 tokens
COMPILE_PAYS_TOKENS = 1024
FINISH_REASONS = ("stop_token", "stop_string", "length", "cancelled")
LENGTH_PENALTIES = ("power", "gnmt")  # score / len ** p (Hugging Face) | score / ((5 + len) / 6) ** p (GNMT)
EARLY_STOPPING = (True, False, "never")


class _Settings:
    """Refuses, before the dataclass's ``__init__`` runs, a name that belongs to the other kind of
    settings or to neither (a one-line ValueError instead of a TypeError)."""

    def __new__(cls, *args, **kwargs):
        _check_names(cls, kwargs)
        return super().__new__(cls)

    def replace(self, **overrides):
        """A copy with ``overrides`` (checked like a new config)."""
        _check_names(type(self), overrides)
        return dataclasses.replace(self, **overrides)


@dataclass
class GenerationConfig(_Settings):
    """How to continue one request."""

    max_new_tokens: int = 100
    temperature: float = 1.0  # 0 = greedy (argmax); > 1 flatter, < 1 sharper
    top_k: int | None = None  # sample among the k most likely tokens (None: all)
    top_p: float = 1.0  # nucleus: the smallest set of tokens whose probability reaches top_p
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prompt or output (CTRL)
    suppress_tokens: tuple[int, ...] = ()  # never generated
    begin_suppress_tokens: tuple[int, ...] = ()  # not generated as the first new token
    forced_tokens: dict[int, int] = field(default_factory=dict)  # {step: token}: that step's token is fixed
    force_stop_at_limit: bool = False  # the last allowed token is the stop token (translation's length limit)
    # ids that end the request (not kept). None: the tokenizer's end-of-sequence id(s), filled in by
    # whoever holds the tokenizer (generate, the server); an Engine, which has none, reads None as ().
    stop_tokens: tuple[int, ...] | None = None
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None  # None: a seed drawn from torch's global generator
    add_bos: bool = False  # prepend BOS to every prompt (an empty prompt always starts from BOS)
    logprobs: int | None = None  # None: no log-probabilities; N >= 0: the chosen token's and N alternatives'
    # beam search (deterministic: temperature=0). None: none (greedy or sampled); N >= 1: keep the N
    # best hypotheses, ranked by summed log-probability over a length penalty (1 gives greedy's tokens)
    num_beams: int | None = None
    length_penalty: float = 1.0  # the penalty's exponent: > 0 favours longer hypotheses, 0 = raw score
    length_penalty_form: str = "power"  # power: / len ** p (Hugging Face) | gnmt: / ((5 + len) / 6) ** p
    # True: done when num_beams hypotheses have finished (fairseq's rule); False: also done when the
    # best live one, at its current length, cannot beat the worst finished; "never": the same at
    # the longest length it could reach (Hugging Face's three)
    early_stopping: bool | str = False

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
        bad = [
            t
            for t in (
                *self.suppress_tokens,
                *self.begin_suppress_tokens,
                *self.forced_tokens.values(),
                *(self.stop_tokens or ()),
            )
            if t < 0
        ]
        bad += [s for s in self.forced_tokens if s < 0]
        if bad:
            raise ValueError(f"token ids and steps must be >= 0, got {bad[:5]}")
        if self.logprobs is not None and (not _is_int(self.logprobs) or not 0 <= self.logprobs <= 20):
            raise ValueError(f"logprobs must be an integer from 0 to 20 (or None), got {self.logprobs!r}")
        self._validate_beams()

    def _validate_beams(self) -> None:
        if not _is_number(self.length_penalty):
            raise ValueError(f"length_penalty must be a finite number (the exponent), got {self.length_penalty!r}")
        if self.length_penalty_form not in LENGTH_PENALTIES:
            raise ValueError(f"length_penalty_form must be one of {LENGTH_PENALTIES}, got {self.length_penalty_form!r}")
        if not any(self.early_stopping is e for e in EARLY_STOPPING[:2]) and self.early_stopping != "never":
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        beams = self.num_beams
        if beams is None:
            ranked = [
                name
                for name, default in (
                    ("length_penalty", 1.0),
                    ("length_penalty_form", "power"),
                    ("early_stopping", False),
                )
                if getattr(self, name) != default
            ]
            if ranked:
                raise ValueError(f"{ranked[0]} ranks beam-search hypotheses: it needs num_beams (got None)")
            return
        if not _is_int(beams) or beams < 1:
            raise ValueError(f"num_beams must be a positive integer (or None: no beam search), got {beams!r}")
        if self.temperature != 0:
            raise ValueError(
                f"num_beams={beams} is a deterministic search: give temperature=0 "
                f"(got {self.temperature}; sampling among beams is not implemented)"
            )
        if self.logprobs is not None:
            raise ValueError(
                f"logprobs are per chosen token of one sequence; a beam search (num_beams={beams}) "
                "returns its best hypothesis's score instead"
            )
        if self.stop_strings:
            raise ValueError(
                f"stop_strings are matched in one sequence's text as it streams; a beam search "
                f"(num_beams={beams}) has no such text until it ends: use stop_tokens"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def rows(self) -> int:
        """Rows this request occupies in a batch: its beams, or one."""
        return self.num_beams or 1


@dataclass
class EngineConfig(_Settings):
    """What an ``Engine`` (and its ``DecodeBatch``) fixes when it is built."""

    # auto: "slots" for a model prepared for CPU decoding (nn.inference.optimize: what from_pretrained
    # gives on CPU), else "dynamic" | dynamic | slots | static | cuda_graph | none
    cache: str = "auto"
    # slots / static caches: torch.compile the step (True = inductor, on CPU with the weights frozen
    # in; or a backend name). auto: slots on CPU for a prepared model compile when a batch decodes
    # at least COMPILE_PAYS_TOKENS tokens (the compile is cached on disk: seconds after the first
    # time); anything else is not compiled unless asked
    compile: bool | str = "auto"
    context: int | None = None  # tokens the model sees at most (None: the model's own, its cache layout's)
    # streaming (StreamingLLM): keep only the last `window` tokens' keys (and the first `sinks`),
    # positions within that cache, so generation runs past the context with bounded memory
    window: int | None = None
    sinks: int = 0
    packed_head: bool | None = None  # pack the vocabulary head for CPU matmuls (None: when it is large)
    pad_id: int | None = None  # the id left-padding is filled with, hidden by the key mask (None: the
    # tokenizer's pad id where generate() knows the tokenizer, else 0)
    max_batch: int | None = None  # rows decoding at once (None: no limit); more requests wait

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        if self.cache not in CACHES:
            raise ValueError(f"cache must be one of {CACHES}, got {self.cache!r}")
        if self.compile and self.compile != "auto" and self.cache not in COMPILED_CACHES + ("auto",):
            raise ValueError(f"compile needs fixed shapes: use cache='slots' or 'static' (got cache={self.cache!r})")
        if self.context is not None and (not _is_int(self.context) or self.context < 1):
            raise ValueError(
                f"context must be a positive integer (or None for the model's max_len), got {self.context!r}"
            )
        check_window(self.window, self.sinks)
        if self.window is not None and self.cache not in ("dynamic", "auto"):
            raise ValueError(
                f"a window streams through its own bounded cache: use cache='dynamic' (got {self.cache!r})"
            )
        if self.pad_id is not None and (not _is_int(self.pad_id) or self.pad_id < 0):
            raise ValueError(f"pad_id must be a token id >= 0 (or None), got {self.pad_id!r}")
        if self.max_batch is not None and (not _is_int(self.max_batch) or self.max_batch < 1):
            raise ValueError(f"max_batch must be a positive integer (or None for no limit), got {self.max_batch!r}")

    def resolved(self, model, layout, slots: bool = True) -> EngineConfig:
        """``cache`` / ``compile`` "auto" made concrete for ``model`` (its parameters' device, whether
        it was prepared for CPU decoding, its ``layout``): a prepared decoder-only model on CPU
        decodes in slots (continuous batching over fixed shapes); everything else in the dynamic
        cache, uncompiled. compile="auto" stays "auto" for a slots cache: the batch decides when
        it starts, from the tokens it will decode (``COMPILE_PAYS_TOKENS``). ``slots=False``: for a
        caller that has no slots (``DecodeBatch`` alone), where "auto" means dynamic."""
        param = next(model.parameters(), None)
        cpu = param is None or param.device.type == "cpu"
        prepared = cpu and bool(getattr(model, "inference", None))
        cache = self.cache
        if cache == "auto":
            cache = "slots" if slots and prepared and not layout.cross_attention and self.window is None else "dynamic"
        compile = self.compile
        if compile and compile != "auto" and cache not in COMPILED_CACHES:
            raise ValueError(
                f"compile needs fixed shapes: this model decodes in the {cache} cache here; "
                "use cache='slots' or 'static' (a model prepared for CPU decoding gets slots by default)"
            )
        if compile == "auto" and cache != "slots":  # only slots decide by themselves; static compiles when asked
            compile = False
        return dataclasses.replace(self, cache=cache, compile=compile)

    @property
    def fixed(self) -> bool:
        """A static cache: fixed shapes, a batch fixed once started."""
        return self.cache in STATIC_CACHES

    @property
    def streaming(self) -> bool:
        return self.window is not None


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def split_options(options: dict) -> tuple[dict, dict]:
    """Keyword options -> (request settings, engine settings); a name of neither kind is a
    ValueError listing both kinds' names."""
    request, engine = set(_names(GenerationConfig)), set(_names(EngineConfig))
    unknown = sorted(set(options) - request - engine)
    if unknown:
        raise ValueError(
            f"unknown generation option(s) {unknown}; request settings (GenerationConfig): "
            f"{_names(GenerationConfig)}; engine settings (EngineConfig): {_names(EngineConfig)}"
        )
    return ({k: v for k, v in options.items() if k in request}, {k: v for k, v in options.items() if k in engine})


def _check_names(cls, given: dict) -> None:
    names = _names(cls)
    wrong = [n for n in given if n not in names]
    if not wrong:
        return
    other = EngineConfig if cls is GenerationConfig else GenerationConfig
    misplaced = [n for n in wrong if n in _names(other)]
    if misplaced:
        kind = "an engine setting, fixed when the engine is built" if other is EngineConfig else "a request setting"
        raise ValueError(
            f"{misplaced[0]} is {kind}: give it to {other.__name__}({misplaced[0]}=...), not {cls.__name__}"
        )
    raise ValueError(f"unknown {cls.__name__} option(s) {sorted(wrong)}; valid options: {names}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

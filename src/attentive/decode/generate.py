"""Text generation with decoder-only language models: greedy, sampled or beam search, batched, streamed.

``generate(model, tokenizer, prompts, config, **options)`` continues one prompt or a batch of
prompts of different lengths through the decoding engine (``engine.py``). Its settings are of
two kinds (``config.py``): each prompt's ``GenerationConfig`` (sampling, stop conditions, beams)
and the engine's ``EngineConfig`` (cache, compile, context, window, sinks); ``options`` may name
fields of either, and each goes to its kind:

* **Batching.** Prompts are left-padded; a row's positions count only its real tokens and the
  key mask hides the padding, so a padded row computes what the prompt alone would.
* **KV cache** (engine). ``cache="auto"`` (default: ``"slots"`` for a model prepared for CPU
  decoding, which ``from_pretrained`` gives on CPU, else ``"dynamic"``), ``"slots"`` (rows of one
  static buffer at their own lengths: fixed shapes, rows join and leave; ``compile=`` compiles the
  step, and ``"auto"`` does where the batch decodes enough tokens), ``"dynamic"``, ``"static"``
  (a fixed batch of fixed shapes; ``compile=True`` compiles the step), ``"cuda_graph"`` (static,
  replayed as a CUDA graph) or ``"none"`` (recompute the window each step: the reference the tests
  compare with). The same seed gives the same tokens in every mode.
* **Context window** (engine). The model sees at most ``context`` tokens (default: its own). A
  longer prompt is left-truncated with a warning; when generation fills the window the oldest
  half is dropped and the rest re-encoded, so ``max_new_tokens`` may exceed the context.
* **Streaming** (engine). ``window=W, sinks=S`` keeps only the first S and the last W tokens' keys
  (StreamingLLM's attention sinks) with positions within that cache: nothing is re-encoded or
  truncated, memory stays bounded, and generation runs for any length. Prompts of one batch must
  have equal lengths.
* **Choosing a token.** One chain of processors and one sampler for every model
  (``processors.py``); row ``i`` of a batch draws from its own generator seeded ``seed + i``.
  ``num_beams=K`` (with ``temperature=0``) searches K hypotheses per prompt instead; its text
  arrives whole when the search ends.
* **Stopping.** A row stops at a stop token (default: the tokenizer's end-of-sequence ids), a
  stop string (in the generated text only), or after ``max_new_tokens``. Neither the stop token
  nor the stop string is part of the returned text.
* **Streaming.** Text arrives piece by piece through ``on_text(row, text)`` or ``stream(...)``.
  Text that could still become a stop string, or that ends inside a multi-byte character, is held
  back until it cannot, so the streamed pieces always join to the returned text.

The tokenizer needs ``encode``/``decode`` and, where used, ``bos_id``, ``eos_id`` (or
``eos_ids``) and ``pad_id``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .config import EngineConfig, GenerationConfig, split_options
from .engine import Engine, Request

# ----------------------------------------------------------------------------- text streaming


class TextStream:
    """Turns one row's tokens into text pieces, holding back what a stop string could still claim.

    Decoding the whole continuation each time (not token by token) keeps multi-token characters
    and tokenizers that merge across tokens correct; text ending in U+FFFD (an incomplete
    UTF-8 sequence) waits for the next token.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop_strings: Sequence[str] = ()):
        self.decode, self.stop_strings = decode, tuple(stop_strings)
        self.tokens: list[int] = []
        self.text = ""  # the continuation so far (cut at a stop string once one appears)
        self.emitted = 0  # characters of ``text`` handed out
        self.stopped = False

    def push(self, token: int) -> str:
        """Add one token; return the text that is now safe to show (maybe '')."""
        self.tokens.append(token)
        text = self.decode(self.tokens)
        hit = self._find_stop(text)
        if hit is not None:
            self.text, self.stopped = text[:hit], True
            return self._emit(hit)
        self.text = text
        if text.endswith("\ufffd"):
            return ""
        return self._emit(len(text) - self._holdback(text))

    def finish(self) -> str:
        """The held-back rest, at the end of generation."""
        return self._emit(len(self.text))

    def _emit(self, end: int) -> str:
        piece = self.text[self.emitted : end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece

    def _find_stop(self, text: str) -> int | None:
        hits = [i for s in self.stop_strings if (i := text.find(s, max(0, self.emitted - len(s)))) >= 0]
        return min(hits) if hits else None

    def _holdback(self, text: str) -> int:
        """Length of the longest tail of ``text`` that begins some stop string."""
        return max((k for s in self.stop_strings for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


# ----------------------------------------------------------------------------- outputs


@dataclass
class TextDelta:
    """One streamed piece: ``row``'s new ``text`` after ``token`` (None for the final flush)."""

    row: int
    token: int | None
    text: str


@dataclass
class GenerationOutput:
    """What ``generate`` returns: one entry per prompt."""

    tokens: list[list[int]]  # generated ids (a stop token is not included)
    texts: list[str] | None  # decoded continuations, cut before any stop string (None: no tokenizer)
    finish_reasons: list[str]  # stop_token | stop_string | length
    prompt_tokens: list[list[int]]  # the ids each prompt became (BOS included)
    logits: list[Tensor] | None = field(default=None, repr=False)  # raw (B, V) per step, if asked

    @property
    def text(self) -> str:
        """The continuation of a single prompt."""
        if self.texts is None or len(self.texts) != 1:
            raise ValueError("`.text` is for one prompt with a tokenizer; use `.texts`")
        return self.texts[0]


# ----------------------------------------------------------------------------- prompts


def _special(tokenizer, name: str, default=None):
    return getattr(tokenizer, name, default) if tokenizer is not None else default


def stop_ids(tokenizer) -> tuple[int, ...]:
    """The tokenizer's end-of-sequence id(s)."""
    ids = _special(tokenizer, "eos_ids")
    if ids is None:
        eos = _special(tokenizer, "eos_id")
        ids = () if eos is None else (eos,)
    return tuple(int(i) for i in ids)


def pad_id_of(tokenizer) -> int:
    pad = _special(tokenizer, "pad_id", 0)
    return 0 if pad is None else int(pad)


def encode_prompts(tokenizer, prompts, config: GenerationConfig) -> list[list[int]]:
    """Text or id prompts -> id lists, with BOS where asked for (always for an empty prompt)."""
    encoded = []
    for prompt in prompts:
        if isinstance(prompt, str):
            if tokenizer is None:
                raise ValueError("text prompts need a tokenizer; pass token ids instead or give a tokenizer")
            ids = list(tokenizer.encode(prompt))  # a char tokenizer names unknown characters here
        else:
            ids = [int(t) for t in prompt]
        if config.add_bos or not ids:
            bos = _special(tokenizer, "bos_id")
            if bos is None:
                raise ValueError("an empty prompt starts from BOS, but the tokenizer has no bos_id")
            ids = [int(bos)] + ids
        encoded.append(ids)
    return encoded


def as_prompt_list(prompts) -> list:
    """One prompt (text or ids) or several -> a list of prompts."""
    if isinstance(prompts, Tensor):
        prompts = prompts.tolist()  # (T,) one prompt or (B, T) several, as ids
    single = isinstance(prompts, str) or (len(prompts) > 0 and isinstance(prompts[0], int))
    prompts = [prompts] if single else list(prompts)
    if not prompts:
        raise ValueError("no prompts given")
    return prompts


# ----------------------------------------------------------------------------- generate


class _Generation:
    """One run of ``generate``: iterate it for ``TextDelta`` pieces, then read ``output()``."""

    def __init__(self, model, tokenizer, prompts, config: GenerationConfig, engine: EngineConfig, output_logits: bool):
        prompts = as_prompt_list(prompts)
        if config.stop_strings and tokenizer is None:
            raise ValueError("stop strings need a tokenizer to decode the text")
        if output_logits and config.num_beams is not None:
            raise ValueError(
                f"output_logits keeps one row's logits per prompt; a beam search (num_beams="
                f"{config.num_beams}) decodes several"
            )
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.prompt_tokens = encode_prompts(tokenizer, prompts, config)
        self.engine = Engine(model, engine)
        context = self.engine.batch.context
        too_long = [len(p) for p in self.prompt_tokens if len(p) > context]
        if too_long and engine.window is None:
            warnings.warn(
                f"prompt of {max(too_long)} tokens is longer than the context ({context}); "
                f"the model sees only its last {context} tokens",
                stacklevel=3,
            )
        if config.stop_tokens is None:
            config = config.replace(stop_tokens=stop_ids(tokenizer))
        self.streams = (
            [TextStream(tokenizer.decode, config.stop_strings) for _ in self.prompt_tokens]
            if tokenizer is not None
            else None
        )
        self.sequences = []
        for row, prompt in enumerate(self.prompt_tokens):
            row_config = config if config.seed is None else config.replace(seed=config.seed + row)
            on_token = self._stop_string_check(row) if self.streams is not None and config.stop_strings else None
            self.sequences.append(self.engine.add(Request(prompt, row_config, on_token=on_token)))
        self.row_of = {s.id: row for row, s in enumerate(self.sequences)}
        self.logits: list[Tensor] | None = [] if output_logits else None
        self._pieces: dict[int, str] = {}

    def _stop_string_check(self, row: int) -> Callable[[int], str | None]:
        def check(token: int) -> str | None:
            stream = self.streams[row]
            self._pieces[row] = stream.push(token)
            return "stop_string" if stream.stopped else None

        return check

    def __iter__(self) -> Iterator[TextDelta]:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            yield from self._run()
        finally:
            model.train(was_training)

    def _run(self) -> Iterator[TextDelta]:
        while not self.engine.idle:
            events = self.engine.step()
            if self.logits is not None and events:
                self._keep_logits()
            for event in events:
                row = self.row_of[event.sequence.id]
                if event.sequence.beams is not None and event.finish_reason is not None and self.streams is not None:
                    for token in event.sequence.tokens:  # a beam search's text arrives when it ends
                        yield TextDelta(row, token, self.streams[row].push(token))
                if event.token is None or self.streams is None:
                    continue
                piece = self._pieces.pop(row) if row in self._pieces else self.streams[row].push(event.token)
                yield TextDelta(row, event.token, piece)
        if self.streams is not None:
            for row, stream in enumerate(self.streams):
                rest = stream.finish()
                if rest:
                    yield TextDelta(row, None, rest)

    def _keep_logits(self) -> None:
        """The raw logits every prompt's row chose from this step, ``(B, V)`` in prompt order
        (rows that have finished repeat their last logits: they are not read)."""
        rows = {s.id: i for i, s in enumerate(self.engine.last_rows)}
        current, last = self.engine.last_logits, self.logits[-1] if self.logits else None
        step = torch.stack([current[rows[s.id]] if s.id in rows else last[row] for row, s in enumerate(self.sequences)])
        self.logits.append(step.detach().clone())

    def output(self) -> GenerationOutput:
        texts = [s.text for s in self.streams] if self.streams is not None else None
        return GenerationOutput(
            [s.tokens for s in self.sequences],
            texts,
            [s.finish_reason for s in self.sequences],
            self.prompt_tokens,
            self.logits,
        )


def _configs(
    config: GenerationConfig | None, engine: EngineConfig | None, tokenizer, options: dict
) -> tuple[GenerationConfig, EngineConfig]:
    """The request and engine settings of one call: ``config``, ``engine``, then ``options``,
    each option to its kind."""
    request_options, engine_options = split_options(options)
    config, engine = config or GenerationConfig(), engine or EngineConfig()
    if engine.pad_id is None and "pad_id" not in engine_options:
        engine_options["pad_id"] = pad_id_of(tokenizer)
    return (
        config.replace(**request_options) if request_options else config,
        engine.replace(**engine_options) if engine_options else engine,
    )


def generate(
    model,
    tokenizer,
    prompts,
    config: GenerationConfig | None = None,
    *,
    engine: EngineConfig | None = None,
    on_text: Callable[[int, str], None] | None = None,
    output_logits: bool = False,
    **options,
) -> GenerationOutput:
    """Continue ``prompts`` (a string, a list of strings, or token-id lists) with ``model``.

    ``config``: every prompt's settings (``GenerationConfig``); ``engine``: the engine's
    (``EngineConfig``; default: padding with the tokenizer's pad id). ``options`` override fields of either, by name: request settings
    (``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``,
    ``stop_tokens``, ``stop_strings``, ``seed``, ``add_bos``, ``num_beams``, ...) and engine
    settings (``cache``, ``compile``, ``context``, ``window``, ``sinks``, ...); a name of neither
    is an error listing both. ``on_text(row, piece)`` receives the text as it is produced;
    ``output_logits`` keeps the raw next-token logits of every step (for tests and analysis).
    """
    run = _Generation(model, tokenizer, prompts, *_configs(config, engine, tokenizer, options), output_logits)
    for delta in run:
        if on_text is not None and delta.text:
            on_text(delta.row, delta.text)
    return run.output()


def stream(
    model, tokenizer, prompts, config: GenerationConfig | None = None, *, engine: EngineConfig | None = None, **options
) -> Iterator[TextDelta]:
    """``generate`` as an iterator of ``TextDelta`` pieces, for callers that pull text."""
    yield from _Generation(
        model, tokenizer, prompts, *_configs(config, engine, tokenizer, options), output_logits=False
    )

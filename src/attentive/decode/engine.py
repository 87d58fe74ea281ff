"""The decoding engine: sequences in, one token per sequence per step out.

Everything that generates token by token runs here: language-model generation, greedy
translation, Whisper transcription, and a server that takes requests as they come.

::

    engine = Engine(model, cache="dynamic")
    seq = engine.add(Request(prompt_ids, GenerationConfig(max_new_tokens=50, temperature=0.8, seed=1)))
    while not engine.idle:
        for event in engine.step():        # TokenEvent(sequence, token, logprob, ...)
            ...
    seq.tokens, seq.finish_reason

A step (1) admits waiting requests: their prompts are encoded and join the running batch
(``DecodeBatch.join``; with a static cache only when the batch is empty), (2) chooses a token for
every row from its next-token logits (``processors``: one chain, one sampler, per-row settings
and seeds), (3) lets finished and cancelled sequences leave, and (4) runs the model one step for
the rows that remain. A request can be added or cancelled between any two steps; a sequence's
tokens depend only on its own prompt, settings and seed, not on what else is in the batch (up
to floating-point rounding in a batch of another size).

Dimension names: R rows, V vocabulary.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence as Seq
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .batch import DecodeBatch, STATIC_MODES
from .config import GenerationConfig
from .processors import RowSettings, choose, new_generator

_ids = itertools.count()


@dataclass
class Request:
    """One sequence to continue: ``prompt`` ids (an LM's prompt; an encoder-decoder's start tokens)
    and its settings. ``memory (S, D)`` / ``memory_key_mask (S,)``: its encoder output.
    ``stop_tokens`` end it (the token is not kept); ``on_token(token)`` may return a finish
    reason (a stop string seen in the text) to end it after that token."""

    prompt: list[int]
    config: GenerationConfig
    stop_tokens: tuple[int, ...] = ()
    memory: Tensor | None = None
    memory_key_mask: Tensor | None = None
    on_token: Callable[[int], str | None] | None = None


@dataclass
class Sequence:
    """A request in flight: what it has generated and why it stopped."""

    request: Request
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)  # generated ids (a stop token is not kept)
    logprobs: list[float] = field(default_factory=list)  # the chosen tokens' log-probabilities (if asked)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str | None = None  # stop_token | stop_string | length | cancelled
    score: float = 0.0  # sum of the chosen tokens' log-probabilities, stop token included (if asked)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


@dataclass
class TokenEvent:
    """What one step did to one sequence: the token it took (None when it only finished)."""

    sequence: Sequence
    token: int | None
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    finish_reason: str | None = None


class Engine:
    """Decodes any number of sequences over one ``DecodeBatch``; see the module docstring."""

    def __init__(self, model, *, cache: str = "dynamic", context: int | None = None, compile: bool | str = False,
                 packed_head: bool | None = None, pad_id: int = 0, max_batch: int | None = None):
        self.model = model
        self.batch = DecodeBatch(model, cache=cache, context=context, compile=compile, packed_head=packed_head,
                                 pad_id=pad_id)
        self.device, self.pad_id, self.max_batch = self.batch.device, pad_id, max_batch
        self.vocab = int(model.config.vocab_size if hasattr(model.config, "vocab_size") else
                         model.config.tgt_vocab_size)
        self.pending: list[Sequence] = []
        self.rows: list[Sequence] = []  # the batch's rows, in order (static: finished ones stay as padding)
        self.logits: Tensor | None = None  # (R, V) next-token logits of every row
        self.seen: Tensor | None = None  # (R, V) tokens in each row's prompt or output (repetition penalty)
        self.settings: RowSettings | None = None
        self._events: list[TokenEvent] = []  # reported at the next step (cancellations)
        self.last_rows: list[Sequence] = []  # the rows of the last step's choice, and their raw logits
        self.last_logits: Tensor | None = None

    # ------------------------------------------------------------------ requests
    def add(self, request: Request) -> Sequence:
        """Queue a request; it joins the batch at the next step."""
        config = request.config
        if not request.prompt:
            raise ValueError("a request needs at least one prompt token (BOS for an empty prompt)")
        bad = [t for t in request.prompt if not 0 <= t < self.vocab]
        if bad:
            raise ValueError(f"prompt token id(s) {bad[:10]} are outside the model's vocabulary of {self.vocab}")
        generator = None if config.greedy else new_generator(config.seed, self.device)
        sequence = Sequence(request, generator)
        if config.max_new_tokens == 0:
            sequence.finish_reason = "length"
        else:
            self.pending.append(sequence)
        return sequence

    def cancel(self, sequence: Sequence) -> None:
        """Stop ``sequence`` now; its row leaves the batch at the next step."""
        if sequence.done:
            return
        sequence.finish_reason = "cancelled"
        if sequence in self.pending:
            self.pending.remove(sequence)
        self._events.append(TokenEvent(sequence, None, finish_reason="cancelled"))

    def reconfigure(self, sequence: Sequence, config: GenerationConfig) -> None:
        """Give ``sequence`` new settings from its next token on (an explorer's temperature, top-k
        and top-p sliders); its tokens and KV cache stay as they are. A greedy sequence that
        starts sampling gets a generator seeded by ``config.seed``."""
        if sequence.done:
            raise ValueError(f"sequence {sequence.id} has finished ({sequence.finish_reason}); it takes no settings")
        if sequence not in self.pending and sequence not in self.rows:
            raise ValueError(f"sequence {sequence.id} is not in this engine")
        sequence.request.config = config
        if not config.greedy and sequence.generator is None:
            sequence.generator = new_generator(config.seed, self.device)
        if sequence in self.rows:
            self._settings()

    @property
    def active(self) -> list[Sequence]:
        return [s for s in self.rows if not s.done]

    def _live(self) -> bool:
        return any(not s.done for s in self.rows)

    @property
    def idle(self) -> bool:
        return not self.pending and not self._live()

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, emit: Callable[[list[TokenEvent]], None] | None = None) -> list[TokenEvent]:
        """Admit waiting requests, choose one token for every live row, advance the batch.

        ``emit(events)``, when given, receives the step's events as soon as its tokens are chosen,
        before the model runs for the next ones (a server streams each token a forward pass
        sooner); the events are returned as well."""
        events, self._events = self._events, []
        self._drop_finished()
        self._admit()
        if not self._live():
            if emit is not None:
                emit(events)
            return events
        self.last_rows, self.last_logits = list(self.rows), self.logits
        steps = [len(s.tokens) for s in self.rows]
        processed = self.settings.process(self.logits, steps, self.seen)
        chosen = choose(processed, self.settings, [s.generator for s in self.rows])  # (R,)
        raw = None  # (R, V) the model's log-probabilities, in at least float32
        if self.settings.logprobs:
            raw = torch.log_softmax(self.logits.to(torch.promote_types(self.logits.dtype, torch.float32)), dim=-1)
        tokens = chosen.tolist()
        for row, (sequence, token) in enumerate(zip(self.rows, tokens)):
            if sequence.done:
                continue
            events.append(self._take(sequence, row, token, raw))
        self._drop_finished()
        if emit is not None:
            emit(events)
        if self._live():
            if len(self.rows) != len(tokens):  # rows left the batch: feed the others' tokens
                fed = torch.tensor([s.tokens[-1] for s in self.rows], dtype=torch.long, device=self.device)
            elif all(not s.done for s in self.rows):
                fed = chosen
            else:  # a static batch keeps its finished rows: they are fed padding
                done = torch.tensor([s.done for s in self.rows], device=self.device)
                fed = chosen.masked_fill(done, self.pad_id)
            self.logits = self.batch.step(fed)
        return events

    def _take(self, sequence: Sequence, row: int, token: int, raw: Tensor | None) -> TokenEvent:
        config = sequence.request.config
        event = TokenEvent(sequence, token)
        if raw is not None and config.logprobs is not None:
            event.logprob = float(raw[row, token])
            sequence.logprobs.append(event.logprob)
            if config.logprobs:
                values, ids = raw[row].topk(config.logprobs)
                event.top_logprobs = list(zip(ids.tolist(), values.tolist()))
                sequence.top_logprobs.append(event.top_logprobs)
            sequence.score += event.logprob
        if token in sequence.request.stop_tokens:
            event.token, sequence.finish_reason = None, "stop_token"
        else:
            sequence.tokens.append(token)
            if self.seen is not None:
                self.seen[row, token] = True
            reason = sequence.request.on_token(token) if sequence.request.on_token else None
            if reason is not None:
                sequence.finish_reason = reason
            elif len(sequence.tokens) >= config.max_new_tokens:
                sequence.finish_reason = "length"
        event.finish_reason = sequence.finish_reason
        return event

    # ------------------------------------------------------------------ rows in and out
    def _admit(self) -> None:
        if not self.pending:
            return
        if self.batch.fixed and self._live():
            return  # a static batch is fixed: the waiting requests start when it has finished
        room = len(self.pending) if self.max_batch is None else max(0, self.max_batch - len(self.active))
        new, self.pending = self.pending[:room], self.pending[room:]
        if not new:
            return
        prompts = [s.request.prompt for s in new]
        memory, memory_key_mask = _stack_memory([s.request for s in new])
        if self.batch.fixed or not self.rows:
            longest = max(s.request.config.max_new_tokens for s in new)
            self.rows, self.seen = [], None
            logits = self.batch.start(prompts, memory, memory_key_mask, max_new_tokens=longest)
            self.logits = logits
        else:
            logits = self.batch.join(prompts, memory, memory_key_mask)
            self.logits = torch.cat((self.logits, logits))
        new_seen = self._seen_rows(new)
        if new_seen is not None or self.seen is not None:
            old = self.seen if self.seen is not None else torch.zeros((len(self.rows), self.vocab), dtype=torch.bool,
                                                                     device=self.device)
            fresh = new_seen if new_seen is not None else torch.zeros((len(new), self.vocab), dtype=torch.bool,
                                                                      device=self.device)
            self.seen = torch.cat((old, fresh))
        self.rows = self.rows + new
        self._settings()

    def _seen_rows(self, new: list[Sequence]) -> Tensor | None:
        if all(s.request.config.repetition_penalty == 1.0 for s in new):
            return None
        seen = torch.zeros((len(new), self.vocab), dtype=torch.bool, device=self.device)  # (n, V)
        for row, s in enumerate(new):
            seen[row, torch.as_tensor(s.request.prompt, dtype=torch.long, device=self.device)] = True
        return seen

    def _drop_finished(self) -> None:
        """Finished rows leave the batch (a static batch keeps them, fed padding, until all finish)."""
        if not self.rows:
            return
        if self.batch.fixed:
            if not self._live():
                self.rows, self.logits, self.seen, self.settings = [], None, None, None
                self.batch.select(torch.zeros(0, dtype=torch.long))
            return
        keep = [i for i, s in enumerate(self.rows) if not s.done]
        if len(keep) == len(self.rows):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.rows = [self.rows[i] for i in keep]
        self.batch.select(index)
        self.logits = self.logits.index_select(0, index) if keep else None
        self.seen = self.seen.index_select(0, index) if self.seen is not None and keep else None
        self._settings()

    def _settings(self) -> None:
        self.settings = (RowSettings([s.request.config for s in self.rows], [s.request.stop_tokens for s in self.rows],
                                     self.vocab, self.device) if self.rows else None)

    def run(self) -> Iterator[TokenEvent]:
        """Step until every sequence has finished."""
        while not self.idle:
            yield from self.step()


def _stack_memory(requests: Seq[Request]) -> tuple[Tensor | None, Tensor | None]:
    """The requests' encoder outputs as ``(n, S, D)`` and ``(n, S)``, padded to the longest."""
    if all(r.memory is None for r in requests):
        return None, None
    if any(r.memory is None for r in requests):
        raise ValueError("requests with encoder memory and requests without cannot decode together")
    length = max(r.memory.shape[0] for r in requests)
    memory = requests[0].memory.new_zeros((len(requests), length, requests[0].memory.shape[-1]))
    mask = torch.zeros((len(requests), length), dtype=torch.bool, device=memory.device)
    for i, r in enumerate(requests):
        memory[i, :r.memory.shape[0]] = r.memory
        mask[i, :r.memory.shape[0]] = True if r.memory_key_mask is None else r.memory_key_mask
    return memory, mask

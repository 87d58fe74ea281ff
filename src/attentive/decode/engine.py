"""The decoding engine: sequences in, one token per sequence per step out.

Everything that generates token by token runs here: language-model generation, translation
(greedy and beam search), Whisper transcription (greedy and beam search), and a server that
takes requests as they come.

::

    engine = Engine(model, EngineConfig(cache="dynamic"))     # or Engine(model, cache="dynamic")
    seq = engine.add(Request(prompt_ids, GenerationConfig(max_new_tokens=50, temperature=0.8, seed=1)))
    while not engine.idle:
        for event in engine.step():        # TokenEvent(sequence, token, logprob, ...)
            ...
    seq.tokens, seq.finish_reason

The engine's settings (``EngineConfig``: cache kind, compile, context, window, sinks, padding,
batch size) are fixed when it is built; each request brings its own (``GenerationConfig``), and
``add`` refuses, with a one-line error, a request this engine cannot honour (see ``add``). The
model states its cache geometry (``model.cache_layout()``, an ``nn.cache.CacheLayout``): the
engine reads the vocabulary, the context and whether rows carry encoder memory from it.

A step (1) admits waiting requests: their prompts are encoded and join the running batch
(``DecodeBatch.join``; with a static cache or a streaming window only when the batch is empty),
(2) chooses a token for every row from its next-token logits (``processors``: one chain, one
sampler, per-row settings and seeds), (3) lets finished and cancelled sequences leave, and (4)
runs the model one step for the rows that remain. A request can be added or cancelled between
any two steps; a sequence's tokens depend only on its own prompt, settings and seed, not on what
else is in the batch (up to floating-point rounding in a batch of another size).

Beam search is the same step for a request with ``num_beams=K``: it holds K rows, the processor
chain runs on their log-probabilities, and instead of (2) ``beams.py`` ranks their candidates,
records the hypotheses that finish and says which row each beam continues from; the rows are
reordered with the batch's ``select`` in the same call that drops finished rows. Its sequence
reports nothing until it finishes (one event, its best hypothesis in ``tokens``, the
length-penalised score in ``score``); ``Request.on_beams`` sees every step's hypotheses. Rows
that do not search beams pay nothing for this: the greedy and sampling step is unchanged.

Dimension names: R rows, V vocabulary, K beams, T tokens of the longest beam hypothesis.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence as Seq
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor

from . import beams as beam
from .batch import DecodeBatch, cache_layout
from .slots import SlotBatch
from .config import EngineConfig, GenerationConfig
from .processors import RowSettings, choose, new_generator

_ids = itertools.count()


@dataclass
class Request:
    """One sequence to continue: ``prompt`` ids (an LM's prompt; an encoder-decoder's start tokens)
    and its settings (``config.stop_tokens`` end it; the token is not kept). ``memory (S, D)`` /
    ``memory_key_mask (S,)``: its encoder output. ``on_token(token)`` may return a finish reason
    (a stop string seen in the text) to end it after that token. A beam request
    (``config.num_beams``) may give ``on_beams(step, live, finished)`` instead: after every step,
    its live hypotheses as (tokens, summed log-probability) and its finished ones as (tokens
    without the stop token, length-penalised score)."""

    prompt: list[int]
    config: GenerationConfig
    _: KW_ONLY
    memory: Tensor | None = None
    memory_key_mask: Tensor | None = None
    on_token: Callable[[int], str | None] | None = None
    on_beams: Callable[[int, list, list], None] | None = None


@dataclass
class Sequence:
    """A request in flight: what it has generated and why it stopped."""

    request: Request
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)  # generated ids (a stop token is not kept)
    logprobs: list[float] = field(default_factory=list)  # the chosen tokens' log-probabilities (if asked)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str | None = None  # stop_token | stop_string | length | cancelled
    # sum of the chosen tokens' log-probabilities, stop token included (if asked); a beam search:
    # its best hypothesis's length-penalised score
    score: float = 0.0
    beams: beam.Beams | None = None  # a beam search's state (num_beams given)
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
    """Decodes any number of sequences over one ``DecodeBatch``; see the module docstring.
    ``Engine(model, EngineConfig(...))``, or the same settings as keywords."""

    def __init__(self, model, config: EngineConfig | None = None, **options):
        config = config or EngineConfig()
        config = config.replace(**options) if options else config
        self.layout = cache_layout(model)
        config = config.resolved(model, self.layout)  # cache / compile "auto" made concrete
        self.model, self.config = model, config
        batch = SlotBatch if config.cache == "slots" else DecodeBatch
        self.batch = batch(model, config, layout=self.layout)
        self.device, self.pad_id, self.max_batch = self.batch.device, self.batch.pad_id, config.max_batch
        self.vocab = self.layout.vocab
        self.pending: list[Sequence] = []
        self.prefilling: list[tuple[Sequence, list]] = []  # (sequence, its rows' Prefills): prompts being written
        self.rows: list[Sequence] = []  # the batch's rows, in order (static: finished ones stay as padding)
        self.logits: Tensor | None = None  # (R, V) next-token logits of every row
        self.seen: Tensor | None = None  # (R, V) tokens in each row's prompt or output (repetition penalty)
        self.settings: RowSettings | None = None
        self.beam_rows = 0  # rows held by beam requests (0: the plain greedy / sampling step)
        self.beam_scores: Tensor | None = None  # (R,) each beam's summed log-probability (while beam_rows)
        self.beam_tokens: Tensor | None = None  # (R, T) each beam's tokens, right-aligned (while beam_rows)
        self._events: list[TokenEvent] = []  # reported at the next step (cancellations)
        self.last_rows: list[Sequence] = []  # the rows of the last step's choice, and their raw logits
        self.last_logits: Tensor | None = None

    # ------------------------------------------------------------------ requests
    def add(self, request: Request) -> Sequence:
        """Queue a request; it joins the batch at the next step. Refused (ValueError, one line)
        when this engine cannot honour it: an empty prompt or ids outside the vocabulary; encoder
        memory for a model without cross-attention, or none for one with it; a beam request on a
        streaming engine (``window``), wider than ``max_batch``, longer than the context (the
        window would drop its hypotheses' beginnings: a beam search never slides it), or with
        ``on_token``; ``on_beams`` without beams."""
        config = request.config
        if not request.prompt:
            raise ValueError("a request needs at least one prompt token (BOS for an empty prompt)")
        bad = [t for t in request.prompt if not 0 <= t < self.vocab]
        if bad:
            raise ValueError(f"prompt token id(s) {bad[:10]} are outside the model's vocabulary of {self.vocab}")
        if (request.memory is not None) != self.layout.cross_attention:
            raise ValueError(
                f"{type(self.model).__name__} decodes "
                + (
                    "over an encoder's output: the request needs its memory"
                    if self.layout.cross_attention
                    else "without an encoder: a request with encoder memory cannot be decoded by it"
                )
            )
        if config.num_beams is not None:
            self._check_beams(request)
        elif request.on_beams is not None:
            raise ValueError("on_beams reports a beam search's hypotheses; this request has no num_beams")
        generator = None if config.greedy else new_generator(config.seed, self.device)
        sequence = Sequence(request, generator)
        if config.num_beams is not None:
            sequence.beams = beam.Beams(config.num_beams)
        if config.max_new_tokens == 0:
            sequence.finish_reason = "length"
        else:
            self.pending.append(sequence)
        return sequence

    def _check_beams(self, request: Request) -> None:
        config, k = request.config, request.config.num_beams
        if self.config.streaming:
            raise ValueError(
                f"num_beams={k}: beam search is not implemented for a streaming engine "
                f"(window={self.config.window}); use an engine without a window"
            )
        if self.max_batch is not None and k > self.max_batch:
            raise ValueError(f"num_beams={k} needs {k} rows; this engine decodes at most max_batch={self.max_batch}")
        length = len(request.prompt) + config.max_new_tokens - 1
        if length > self.batch.context:
            raise ValueError(
                f"a beam search keeps its whole hypotheses in the context: prompt ({len(request.prompt)}) "
                f"+ max_new_tokens ({config.max_new_tokens}) - 1 = {length} > context "
                f"({self.batch.context}); lower max_new_tokens"
            )
        if request.on_token is not None:
            raise ValueError(
                f"num_beams={k}: a beam search has no single token to report each step; it takes on_beams, not on_token"
            )

    def cancel(self, sequence: Sequence) -> None:
        """Stop ``sequence`` now; its row leaves the batch at the next step."""
        if sequence.done:
            return
        sequence.finish_reason = "cancelled"
        if sequence in self.pending:
            self.pending.remove(sequence)
        for entry in [e for e in self.prefilling if e[0] is sequence]:
            self.prefilling.remove(entry)
            self.batch.abandon(entry[1])
        self._events.append(TokenEvent(sequence, None, finish_reason="cancelled"))

    def reconfigure(self, sequence: Sequence, config: GenerationConfig) -> None:
        """Give ``sequence`` new settings from its next token on (an explorer's temperature, top-k
        and top-p sliders); its tokens and KV cache stay as they are. A greedy sequence that
        starts sampling gets a generator seeded by ``config.seed``."""
        if sequence.done:
            raise ValueError(f"sequence {sequence.id} has finished ({sequence.finish_reason}); it takes no settings")
        if sequence not in self.pending and sequence not in self.rows:
            raise ValueError(f"sequence {sequence.id} is not in this engine")
        if config.num_beams != sequence.request.config.num_beams:
            raise ValueError(
                f"num_beams is fixed when a request is added (it holds that many rows): "
                f"{sequence.request.config.num_beams} cannot become {config.num_beams}"
            )
        sequence.request.config = config
        if not config.greedy and sequence.generator is None:
            sequence.generator = new_generator(config.seed, self.device)
        if sequence in self.rows:
            self._settings()

    def warm_up(self) -> None:
        """Compile the decoding step now rather than at the first request (a slot batch that
        compiles; other batches compile, if at all, at their first step)."""
        if isinstance(self.batch, SlotBatch):
            self.batch.warm_up()

    @property
    def active(self) -> list[Sequence]:
        """The sequences decoding now (a beam search once, though it holds several rows)."""
        live = [s for s in self.rows if not s.done]
        return list({s.id: s for s in live}.values()) if self.beam_rows else live

    def _rows_in_use(self) -> int:
        return sum(1 for s in self.rows if not s.done)

    def _live(self) -> bool:
        return any(not s.done for s in self.rows)

    @property
    def idle(self) -> bool:
        return not self.pending and not self.prefilling and not self._live()

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
        if self.beam_rows:
            fed = self._beam_step(events)
        else:
            fed = self._choose(events)
        if emit is not None:
            emit(events)
        if self._live():
            self.logits = self.batch.step(fed)
        return events

    def _choose(self, events: list[TokenEvent]) -> Tensor | None:
        """Greedy and sampled rows: one token each; finished rows leave. Returns what the
        remaining rows are fed ``(R,)``."""
        steps = [len(s.tokens) for s in self.rows]
        processed = self.settings.process(self.logits, steps, self.seen)
        chosen = choose(processed, self.settings, [s.generator for s in self.rows])  # (R,)
        raw = self._raw_log_probs()
        tokens = chosen.tolist()
        for row, (sequence, token) in enumerate(zip(self.rows, tokens)):
            if sequence.done:
                continue
            events.append(self._take(sequence, row, token, raw))
        self._drop_finished()
        if not self._live():
            return None
        if len(self.rows) != len(tokens):  # rows left the batch: feed the others' tokens
            return torch.tensor([s.tokens[-1] for s in self.rows], dtype=torch.long, device=self.device)
        if all(not s.done for s in self.rows):
            return chosen
        done = torch.tensor([s.done for s in self.rows], device=self.device)  # a static batch keeps its
        return chosen.masked_fill(done, self.pad_id)  # finished rows: they are fed padding

    def _raw_log_probs(self) -> Tensor | None:
        """The model's log-probabilities ``(R, V)``, in at least float32, if some row wants them."""
        if not self.settings.logprobs:
            return None
        return torch.log_softmax(self.logits.to(torch.promote_types(self.logits.dtype, torch.float32)), dim=-1)

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
        stops = config.stop_tokens
        if stops and token in stops:
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

    # ------------------------------------------------------------------ beam search
    def _beam_step(self, events: list[TokenEvent]) -> Tensor | None:
        """A step with beam rows: the other rows choose as in ``_choose``; each beam request's
        candidates are ranked (``beams.py``), its finished hypotheses recorded, and its rows
        continue from the beams they extend. Returns what the remaining rows are fed ``(R,)``."""
        rows = self.rows
        steps = [s.beams.step if s.beams is not None else len(s.tokens) for s in rows]
        beam_index = torch.tensor([i for i, s in enumerate(rows) if s.beams is not None], device=self.device)
        every_row = len(beam_index) == len(rows)
        inputs = beam.log_probs(self.logits, None if every_row else beam_index)  # (R, V) beam rows: log-probs
        processed = self.settings.process(inputs, steps, self.seen, sample=False)  # what beams are ranked by
        fed = torch.full((len(rows),), self.pad_id, dtype=torch.long, device=self.device)  # (R,)
        if not every_row:
            sampling = self.settings.process(inputs, steps, self.seen) if self.settings.sampled_rows else processed
            chosen = choose(sampling, self.settings, [s.generator for s in rows])  # (R,)
            raw = self._raw_log_probs()
            for row, (sequence, token) in enumerate(zip(rows, chosen.tolist())):
                if sequence.done or sequence.beams is not None:
                    continue
                events.append(self._take(sequence, row, token, raw))
                if not sequence.done:
                    fed[row] = token
        order = torch.arange(len(rows), device=self.device)  # (R,) the row each row continues from
        scores, tokens = self.beam_scores.clone(), fed.clone()  # (R,) each, in the new order
        groups: dict[tuple[int, int], list[tuple[int, Sequence]]] = {}
        first = 0
        while first < len(rows):
            sequence = rows[first]
            if sequence.beams is None:
                first += 1
                continue
            k = sequence.beams.width
            if not sequence.done:
                keep = max(2, 1 + len(sequence.request.config.stop_tokens or ())) * k
                groups.setdefault((k, keep), []).append((first, sequence))
            first += k
        history = _History(self)
        for (k, keep), members in groups.items():
            self._advance_group(processed, k, keep, members, order, scores, tokens, history, events)
        searching = torch.tensor([s.beams is not None and not s.done for s in rows], device=self.device)  # (R,)
        fed = torch.where(searching, tokens, fed)  # finished rows (kept by a static batch) are fed padding
        self.beam_tokens = torch.cat((self.beam_tokens.index_select(0, order), tokens[:, None]), dim=1)
        self.beam_scores = scores
        if self.seen is not None:
            self.seen = self.seen.index_select(0, order)
            self.seen[beam_index, tokens[beam_index]] = True
        kept = self._drop_finished(order)
        if not self._live():
            return None
        return fed if kept is None else fed.index_select(0, kept)

    def _advance_group(
        self,
        processed: Tensor,
        k: int,
        keep: int,
        members: list[tuple[int, Sequence]],
        order: Tensor,
        scores: Tensor,
        tokens: Tensor,
        history: _History,
        events: list[TokenEvent],
    ) -> None:
        """One step of the beam requests ``members`` (each with ``k`` rows from its first row):
        writes where their rows continue from (``order``), their scores and new tokens."""
        vocab = processed.shape[-1]
        b = len(members)
        firsts = [f for f, _ in members]
        index = (torch.tensor(firsts, device=self.device)[:, None] + torch.arange(k, device=self.device)).view(
            -1
        )  # (b*K,) their rows
        if b * k == len(self.rows):  # every row (translation, transcription): no gather
            log_probs, running = processed.view(b, k, vocab), self.beam_scores.view(b, k)
        else:
            log_probs = processed.index_select(0, index).view(b, k, vocab)  # (b, K, V)
            running = self.beam_scores.index_select(0, index).view(b, k)  # (b, K)
        top, origin, top_tok = beam.candidates(log_probs, running, keep)  # (b, C) each
        configs = [s.request.config for _, s in members]
        stops = [c.stop_tokens or () for c in configs]
        width = max(1, max(len(t) for t in stops))
        stop_ids = torch.tensor([list(t) + [-1] * (width - len(t)) for t in stops], device=self.device)  # (b, S)
        is_stop = (top_tok[:, :, None] == stop_ids[:, None, :]).any(-1)  # (b, C)
        at_limit = torch.tensor(
            [s.beams.step + 1 >= c.max_new_tokens for (_, s), c in zip(members, configs)], device=self.device
        )  # (b,)
        finishing = is_stop | at_limit[:, None]
        ended = (finishing[:, :k] & torch.isfinite(top[:, :k])).nonzero().tolist()
        if ended:  # a stop token (or the length limit) within the top K: a finished hypothesis
            top_list, origin_list, tok_list, stop_list = (
                top.tolist(),
                origin.tolist(),
                top_tok.tolist(),
                is_stop.tolist(),
            )
            for i, j in ended:
                first, sequence = members[i]
                config, state = configs[i], sequence.beams
                hypothesis = history.tokens(first + origin_list[i][j], state.step)
                if not stop_list[i][j]:
                    hypothesis = hypothesis + [tok_list[i][j]]
                penalty = beam.length_penalty(state.step + 1, config.length_penalty, config.length_penalty_form)
                state.finish(top_list[i][j] / penalty, hypothesis, stop_list[i][j])
        pick = beam.continuing(is_stop, k)  # (b, K) (at the limit they go nowhere: the request is done)
        new_scores, new_tok = top.gather(1, pick), top_tok.gather(1, pick)  # (b, K)
        source = index.view(b, k).gather(1, origin.gather(1, pick))  # (b, K) the row each beam extends
        order[index] = source.view(-1)
        scores[index] = new_scores.view(-1).to(scores.dtype)
        tokens[index] = new_tok.view(-1)
        best = new_scores[:, 0].tolist()
        reports = {i for i, (_, s) in enumerate(members) if s.request.on_beams is not None}
        if reports:
            live_tok, live_score, rows = new_tok.tolist(), new_scores.tolist(), source.tolist()
        for i, (first, sequence) in enumerate(members):
            state = sequence.beams
            if i in reports:
                live = [(history.tokens(rows[i][j], state.step) + [live_tok[i][j]], live_score[i][j]) for j in range(k)]
                sequence.request.on_beams(state.step, live, [(h, score) for score, h, _ in state.finished])
            state.step += 1
            if state.done(configs[i], best[i]):
                if not state.finished:  # nothing ended (every candidate impossible): the best live beam
                    state.finish(
                        best[i], history.tokens(source[i, 0].item(), state.step - 1) + [new_tok[i, 0].item()], False
                    )
                score, hypothesis, stopped = state.best()
                sequence.tokens, sequence.score = hypothesis, score
                sequence.finish_reason = "stop_token" if stopped else "length"
                events.append(TokenEvent(sequence, None, finish_reason=sequence.finish_reason))

    # ------------------------------------------------------------------ rows in and out
    def _admit(self) -> None:
        if self.prefilling:
            self._prefill()
        if not self.pending:
            return
        if not self.batch.joinable and self._live():
            return  # a static or streaming batch is fixed: the waiting requests start when it has finished
        busy = self._rows_in_use() + sum(s.request.config.rows for s, _ in self.prefilling)
        room = None if self.max_batch is None else max(0, self.max_batch - busy)
        taken = 0
        new: list[Sequence] = []
        for sequence in self.pending:
            width = sequence.request.config.rows
            if room is not None and taken + width > room:
                break
            new.append(sequence)
            taken += width
        self.pending = self.pending[len(new) :]
        if not new:
            return
        if isinstance(self.batch, SlotBatch) and (self.rows or self.prefilling):
            # rows are decoding: the new prompts are written a chunk a step between their steps
            self.prefilling += [(s, [self.batch.begin(s.request.prompt)]) for s in new]
            self._prefill()
            return
        rows = [s for s in new for _ in range(s.request.config.rows)]  # a beam request: K rows
        prompts = [s.request.prompt for s in rows]
        memory, memory_key_mask = _stack_memory([s.request for s in rows])
        if self.batch.fixed or not self.rows:
            longest = max(s.request.config.max_new_tokens for s in new)
            self.rows, self.seen, self.beam_scores, self.beam_tokens, self.logits = [], None, None, None, None
            logits = self.batch.start(prompts, memory, memory_key_mask, max_new_tokens=longest)
        else:
            logits = self.batch.join(prompts, memory, memory_key_mask)
        self._joined(rows, logits)

    def _prefill(self) -> None:
        """Chunked prefill (a ``SlotBatch``): write up to one chunk of waiting prompts, so running
        rows wait one chunk a step, not a whole long prompt; the prompts that are in join. With no
        row decoding, each waiting prompt advances a chunk a step. A beam request's
        other rows start from its first row's keys (copied, not computed again)."""
        live = self._live()
        budget = self.batch.chunk  # prompt tokens written this step while rows decode
        ready = []
        for entry in self.prefilling:
            sequence, parts = entry
            for part in parts:
                before = part.done
                self.batch.prefill(part, budget if live else None)
                budget -= part.done - before
            width = sequence.request.config.rows
            if parts[0].finished and len(parts) < width:  # the other beams: the prompt's keys are there now
                parts += [self.batch.begin(sequence.request.prompt) for _ in range(width - len(parts))]
                for part in parts[1:]:
                    self.batch.prefill(part)
            if all(p.finished for p in parts):
                ready.append(entry)
            if budget <= 0 if live else ready:  # the step's budget is spent, or a row can start decoding
                break
        for entry in ready:
            self.prefilling.remove(entry)
            sequence, parts = entry
            logits = self.batch.attach(parts)
            self._joined([sequence] * len(parts), logits)

    def _joined(self, rows: list[Sequence], logits: Tensor) -> None:
        """``rows`` (their next-token logits ``(n, V)``) have joined the batch after the current ones."""
        self.logits = logits if self.logits is None or not self.rows else torch.cat((self.logits, logits))
        new_seen = self._seen_rows(rows)
        if new_seen is not None or self.seen is not None:
            old = (
                self.seen
                if self.seen is not None
                else torch.zeros((len(self.rows), self.vocab), dtype=torch.bool, device=self.device)
            )
            fresh = (
                new_seen
                if new_seen is not None
                else torch.zeros((len(rows), self.vocab), dtype=torch.bool, device=self.device)
            )
            self.seen = torch.cat((old, fresh))
        if any(s.beams is not None for s in rows) or self.beam_scores is not None:
            self._beam_rows_join(rows)
        self.rows = self.rows + rows
        self._settings()

    def _beam_rows_join(self, rows: list[Sequence]) -> None:
        """Running scores and tokens for joining rows: a beam request's first beam at 0, the others
        at -inf (so the K copies of its prompt do not all win the first step)."""
        dtype = torch.promote_types(self.batch.dtype, torch.float32)
        fresh = torch.zeros(len(rows), dtype=dtype, device=self.device)  # (n,)
        for i, s in enumerate(rows):
            if s.beams is not None and i > 0 and rows[i - 1] is s:
                fresh[i] = float("-inf")
        old_scores = (
            self.beam_scores
            if self.beam_scores is not None
            else torch.zeros(len(self.rows), dtype=dtype, device=self.device)
        )
        old_tokens = (
            self.beam_tokens
            if self.beam_tokens is not None
            else torch.zeros((len(self.rows), 0), dtype=torch.long, device=self.device)
        )
        self.beam_scores = torch.cat((old_scores, fresh))
        self.beam_tokens = torch.cat((old_tokens, old_tokens.new_zeros((len(rows), old_tokens.shape[1]))))

    def _seen_rows(self, new: list[Sequence]) -> Tensor | None:
        if all(s.request.config.repetition_penalty == 1.0 for s in new):
            return None
        seen = torch.zeros((len(new), self.vocab), dtype=torch.bool, device=self.device)  # (n, V)
        for row, s in enumerate(new):
            seen[row, torch.as_tensor(s.request.prompt, dtype=torch.long, device=self.device)] = True
        return seen

    def _drop_finished(self, order: Tensor | None = None) -> Tensor | None:
        """Finished rows leave the batch (a static batch keeps them, fed padding, until all finish);
        returns the rows kept, when some left. ``order (R,)``: after a beam step, the row each row
        continues from (the engine's row-aligned state is in that order already, the batch's is
        not): the batch is reordered in the same ``select``."""
        if not self.rows:
            return None
        if self.batch.fixed:
            if not self._live():
                self._clear_rows()
                self.batch.select(torch.zeros(0, dtype=torch.long))
            elif order is not None:
                self.batch.select(order)
            return None
        keep = [i for i, s in enumerate(self.rows) if not s.done]
        if len(keep) == len(self.rows):
            if order is not None:
                self.batch.select(order)
            return None
        if not keep:
            self._clear_rows()
            self.batch.select(torch.zeros(0, dtype=torch.long))
            return None
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.rows = [self.rows[i] for i in keep]
        self.batch.select(index if order is None else order.index_select(0, index))
        self.logits = self.logits.index_select(0, index) if order is None else None  # a beam step: new logits next
        self.seen = self.seen.index_select(0, index) if self.seen is not None else None
        if self.beam_scores is not None:
            self.beam_scores = self.beam_scores.index_select(0, index)
            self.beam_tokens = self.beam_tokens.index_select(0, index)
        self._settings()
        return index

    def _clear_rows(self) -> None:
        self.rows, self.logits, self.seen, self.settings = [], None, None, None
        self.beam_rows, self.beam_scores, self.beam_tokens = 0, None, None

    def _settings(self) -> None:
        self.settings = (
            RowSettings([s.request.config for s in self.rows], self.vocab, self.device) if self.rows else None
        )
        self.beam_rows = sum(1 for s in self.rows if s.beams is not None)
        if not self.beam_rows:
            self.beam_scores = self.beam_tokens = None
        elif self.beam_tokens is not None:  # keep the columns the longest live hypothesis needs
            longest = max((s.beams.step for s in self.rows if s.beams is not None and not s.done), default=0)
            if self.beam_tokens.shape[1] > 2 * longest + 16:
                self.beam_tokens = self.beam_tokens[:, self.beam_tokens.shape[1] - longest :].contiguous()

    def run(self) -> Iterator[TokenEvent]:
        """Step until every sequence has finished."""
        while not self.idle:
            yield from self.step()


class _History:
    """The beams' tokens so far, read from the engine once per step, and only if asked."""

    def __init__(self, engine: Engine):
        self.engine, self._rows = engine, None

    def tokens(self, row: int, step: int) -> list[int]:
        """Row ``row``'s hypothesis of ``step`` tokens (before this step's token)."""
        if step == 0:
            return []
        if self._rows is None:
            self._rows = self.engine.beam_tokens.tolist()
        tokens = self._rows[row]
        return tokens[len(tokens) - step :]


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
        memory[i, : r.memory.shape[0]] = r.memory
        mask[i, : r.memory.shape[0]] = True if r.memory_key_mask is None else r.memory_key_mask
    return memory, mask

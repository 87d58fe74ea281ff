"""The one owner of a language model's decoding engine: a thread that steps it while there is work.

The engine (``decode.Engine``) is not thread-safe, so exactly one thread touches it. Requests
reach it through an inbox (``submit``, ``cancel``) that the thread drains between steps: a new
request joins the running batch at the next step (its prompt is encoded and its rows are
left-padded into the shared dynamic KV cache, with its own positions and key mask), and a
finished or cancelled one leaves it. That is continuous batching; ``max_batch`` bounds the
rows, and requests beyond it wait in the engine's queue, ``max_queue`` of them at most. With a
``static`` or ``cuda_graph`` cache (fixed shapes: a CUDA graph replays one step) the batch is
fixed once started, and requests that arrive meanwhile start together when it has finished.

Each request's choices are ``Ticket``s. In the engine thread a ticket turns its tokens into text
(``TextStream``: stop strings are found here and end the sequence; text that could still
become one is held back) and hands an ``Update`` per step to its request's event loop
(``deliver``: ``loop.call_soon_threadsafe``) as soon as the step has chosen them, before the
model runs for the next tokens, so the event loop never waits on the model and a token reaches
its client a forward pass sooner.

An exception inside a step fails every request in flight with an error update (a stream ends
with an error event, not a dropped connection) and the engine starts afresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..decode.config import EngineConfig
from ..decode.engine import Engine, Request, TokenEvent
from ..decode.generate import TextStream, pad_id_of
from .errors import APIError, queue_full

log = logging.getLogger("attentive.serve")

# the engine's reasons -> OpenAI's finish_reason (cancelled is internal: its client has gone)
FINISH = {"stop_token": "stop", "stop_string": "stop", "length": "length", "cancelled": "cancelled"}


@dataclass
class Update:
    """What one step did to one choice, ready for the response: sent to the request's event loop."""

    index: int  # the choice's index in its response
    token: int | None  # the token taken (None: the step only finished the choice)
    text: str  # text that is now safe to show ('' while held back)
    logprob: float | None = None
    token_text: str | None = None  # the taken token's own text (with logprobs)
    top_logprobs: list[tuple[str, float]] | None = None  # alternatives' text and log-probability
    finish_reason: str | None = None  # stop | length | cancelled | error
    error: str | None = None


class Ticket:
    """One choice in flight: its engine ``Request``, its text, and where its updates go."""

    def __init__(
        self,
        index: int,
        request: Request,
        decode: Callable,
        deliver: Callable[[Update], None],
        stop_strings=(),
        logprobs: bool = False,
        token_text: Callable | None = None,
    ):
        self.index, self.request, self.deliver = index, request, deliver
        self.decode, self.logprobs = decode, logprobs
        self.token_text = token_text or decode  # one token's text (special tokens shown), for log-probabilities
        self.stream = TextStream(decode, stop_strings)
        self.request.on_token = self._on_token
        self.sequence = None
        self.done = False
        self._text = ""  # text released since the last update
        self._token_text: str | None = None

    def _on_token(self, token: int) -> str | None:
        """Called by the engine for every kept token (engine thread): text, and stop strings."""
        before = self.stream.text
        self._text += self.stream.push(token)
        if self.logprobs:
            after = self.stream.text  # the piece this token added, so the pieces join to the text
            piece = after[len(before) :] if after.startswith(before) and not self.stream.stopped else ""
            self._token_text = piece or self.token_text([token])
        return "stop_string" if self.stream.stopped else None

    def update(self, event: TokenEvent) -> Update:
        text, self._text = self._text, ""
        reason = FINISH.get(event.finish_reason) if event.finish_reason else None
        if reason in ("stop", "length"):
            text += self.stream.finish()
        update = Update(self.index, event.token, text, finish_reason=reason)
        if self.logprobs and event.token is not None:
            update.logprob, update.token_text = event.logprob, self._token_text
            update.top_logprobs = [(self.token_text([i]), p) for i, p in (event.top_logprobs or [])]
        if reason is not None:
            self.done = True
        return update

    def fail(self, message: str) -> None:
        self.done = True
        self.deliver(Update(self.index, None, "", finish_reason="error", error=message))


class GenerationScheduler:
    """Steps one model's ``Engine`` in its own thread; see the module docstring. ``engine``: the
    engine's settings (cache kind, context, ...); the scheduler sets its batch size (``max_batch``)
    and its padding (the tokenizer's)."""

    def __init__(
        self,
        name: str,
        model,
        tokenizer,
        *,
        max_batch: int,
        max_queue: int,
        retry_after: int = 1,
        metrics=None,
        engine: EngineConfig | None = None,
        prefill_chunk: int | None = None,
    ):
        self.name, self.model, self.max_batch, self.max_queue = name, model, max_batch, max_queue
        self.retry_after, self.metrics, self.prefill_chunk = retry_after, metrics, prefill_chunk
        self.engine_config = (engine or EngineConfig()).replace(pad_id=pad_id_of(tokenizer), max_batch=max_batch)
        self.engine = self._new_engine()
        self._lock = threading.Condition()
        self._inbox: list[tuple[str, Ticket]] = []
        self._adds = 0  # "add" entries in the inbox
        self._pending = 0  # requests in the engine still waiting for a row (after the last step)
        self._active = 0  # rows decoding (after the last step)
        self._tickets: dict[int, Ticket] = {}  # by sequence id
        self._closed = False
        self.error: str | None = None  # why the thread stopped, if it died
        self.steps = 0
        self._thread = threading.Thread(target=self._run, name=f"attentive-engine-{name}", daemon=True)
        self._thread.start()

    def _new_engine(self) -> Engine:
        engine = Engine(self.model, self.engine_config)
        if hasattr(engine.batch, "min_rows"):  # slots: one compiled graph for every load
            engine.batch.min_rows = 2
            if self.prefill_chunk is not None:
                engine.batch.chunk = self.prefill_chunk
        engine.warm_up()  # a compiled step is compiled now (or found cached), not at the first request
        return engine

    @property
    def path(self) -> dict:
        """How this model decodes: the cache kind, whether the step is compiled, and the weights
        (``fp32`` / ``int8`` / ``int4`` panels prepared for CPU decoding, or ``plain``)."""
        compiled = getattr(self.engine.batch, "compile", False)
        return {
            "cache": self.engine.config.cache,
            "compiled": bool(compiled) and compiled != "auto",
            "weights": getattr(self.model, "inference", None) or "plain",
        }

    # ------------------------------------------------------------------ the event loop's side
    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    @property
    def waiting(self) -> int:
        """Requests submitted that have no row yet."""
        return self._adds + self._pending

    @property
    def active(self) -> int:
        return self._active

    def submit(self, tickets: list[Ticket]) -> None:
        """Queue ``tickets`` (all of one request) for the next step, or raise 429 when the queue is full."""
        with self._lock:
            if not self.alive:
                raise APIError(
                    503,
                    f"model {self.name!r} cannot decode: {self.error or 'the server is stopping'}",
                    code="engine_stopped",
                )
            room = self.max_queue + max(0, self.max_batch - self._active)
            if self.waiting + len(tickets) > room:
                raise queue_full(self.name, self.waiting, self.retry_after)
            self._inbox.extend(("add", t) for t in tickets)
            self._adds += len(tickets)
            self._publish()
            self._lock.notify()

    def cancel(self, tickets: list[Ticket]) -> None:
        """Stop ``tickets`` that have not finished (their client went away, or time ran out)."""
        with self._lock:
            live = [t for t in tickets if not t.done]
            if not live:
                return
            self._inbox.extend(("cancel", t) for t in live)
            self._lock.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the engine thread
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._inbox and self.engine.idle and not self._closed:
                        self._lock.wait()
                    if self._closed:
                        break
                    work, self._inbox = self._inbox, []
                    self._pending, self._adds = self._pending + self._adds, 0  # still waiting until the step says
                self._apply(work)
                self._step()
                with self._lock:
                    self._pending = len(self.engine.pending) + len(self.engine.prefilling)
                    self._active = len(self.engine.active)
                    self._publish()
        except BaseException as err:  # a bug in this loop, not in a step: nothing more can decode
            self.error = f"{type(err).__name__}: {err}"
            log.exception("the engine thread of %s stopped", self.name)
        finally:
            with self._lock:
                self._closed = True
                leftover = [t for _, t in self._inbox if not t.done]
                self._inbox, self._adds = [], 0
            self._fail_all(f"model {self.name!r} stopped decoding ({self.error or 'the server is stopping'})", leftover)
            with self._lock:
                self._pending = self._active = 0
                self._publish()

    def _apply(self, work: list[tuple[str, Ticket]]) -> None:
        for op, ticket in work:
            if op == "add":
                if ticket.done:
                    continue
                try:
                    ticket.sequence = self.engine.add(ticket.request)
                except ValueError as err:  # the endpoint checks first; this is the engine's own guard
                    ticket.fail(str(err))
                    continue
                self._tickets[ticket.sequence.id] = ticket
            elif ticket.sequence is not None and not ticket.done:
                self.engine.cancel(ticket.sequence)

    def _step(self) -> None:
        try:
            self.engine.step(emit=self._deliver)  # tokens go out before the model runs for the next ones
        except Exception as err:
            log.exception("decoding step of %s failed", self.name)
            self.engine = self._new_engine()  # the failed rows are gone with the old one
            self._fail_all(f"decoding failed ({type(err).__name__}: {err})")
            return
        self.steps += 1

    def _deliver(self, events: list[TokenEvent]) -> None:
        tokens = cancelled = 0
        for event in events:
            ticket = self._tickets.get(event.sequence.id)
            if ticket is None:
                continue
            update = ticket.update(event)
            tokens += event.token is not None
            if update.finish_reason is not None:
                del self._tickets[event.sequence.id]
                cancelled += update.finish_reason == "cancelled"
            try:
                ticket.deliver(update)
            except RuntimeError:  # the request's event loop has closed (server shutting down)
                pass
        if self.metrics is not None:
            self.metrics.decode_step(
                self.name, rows=len(self.engine.last_rows) if tokens else 0, tokens=tokens, cancelled=cancelled
            )

    def _fail_all(self, message: str, extra: list[Ticket] = ()) -> None:
        tickets, self._tickets = [*self._tickets.values(), *extra], {}
        for ticket in tickets:
            if not ticket.done:
                try:
                    ticket.fail(message)
                except RuntimeError:
                    pass

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.engine_state(self.name, waiting=self.waiting, active=self._active)

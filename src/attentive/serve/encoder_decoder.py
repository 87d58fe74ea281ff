"""Translation and Whisper through one engine thread per model: clients' requests decode together.

A translation request is one engine request per sentence, a transcription one per 30 s window of
its audio (windows do not depend on each other: each starts from Whisper's start tokens); these
are its ``Piece``s. The model's ``EncoderDecoderScheduler`` is a ``GenerationScheduler`` (the
same thread, inbox, bounded queue, failure handling and metrics) whose thread, between two
steps, runs the encoder once over every piece that has arrived since the last step (in groups
of at most ``encode_batch``) and adds their requests to the running engine: they join its batch
at the next step, beside the pieces already decoding, greedy and beam searches side by side.
How sources become requests is the command line's own code (``Translator.requests``,
``transcriber.transcription_requests``), so a piece decodes to the tokens ``translate_ids`` and
``transcribe_audio`` give. A piece leaves the batch when its rows finish; a request is answered
when all of its pieces have.

``max_queue`` counts pieces (sentences, windows) waiting for rows, as the language models'
schedulers count choices; beyond it, 429. The deadline (``--timeout``) runs from submission;
when it passes, the request's pieces leave the batch at the next step and the client gets 504.
An exception in a step fails every piece in flight (500, ``engine_error``) and the thread goes
on with a fresh engine; one in the encoder fails the pieces it was encoding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import torch

from ..decode.config import EngineConfig
from ..decode.engine import Request, Sequence, TokenEvent
from ..decode.transcriber import transcription_requests
from .errors import APIError, timed_out
from .scheduler import GenerationScheduler

log = logging.getLogger("attentive.serve")

KINDS = ("translation", "speech")  # the kinds of model this scheduler serves


class Piece:
    """One engine request of a client's request: its ``source`` (what ``prepare`` reads), its engine
    sequence once added, and ``deliver(index, sequence, error)``, called once, when it has finished
    or failed (in the engine thread). The scheduler's ticket for it."""

    def __init__(self, index: int, source: Any, deliver: Callable[[int, Sequence | None, str | None], None]):
        self.index, self.source, self.deliver = index, source, deliver
        self.sequence: Sequence | None = None
        self.done = False

    def finish(self, sequence: Sequence) -> None:
        self.done = True
        self.deliver(self.index, sequence, None)

    def fail(self, message: str) -> None:
        self.done = True
        self.deliver(self.index, None, message)


class EncoderDecoderScheduler(GenerationScheduler):
    """Decodes an encoder-decoder's pieces in one engine thread; see the module docstring.
    ``prepare(sources) -> requests``: encodes the sources together and returns one engine
    request per source (in the engine thread)."""

    def __init__(
        self,
        name: str,
        model,
        tokenizer,
        prepare: Callable[[list], list[Request]],
        *,
        max_batch: int,
        max_queue: int,
        retry_after: int = 1,
        timeout: float | None = None,
        metrics=None,
        encode_batch: int | None = None,
    ):
        self.prepare, self.timeout = prepare, timeout
        self.encode_batch = encode_batch or max_batch
        self._chosen: list | None = None  # the engine's last_rows at the last step that chose tokens
        super().__init__(
            name,
            model,
            tokenizer,
            max_batch=max_batch,
            max_queue=max_queue,
            retry_after=retry_after,
            metrics=metrics,
            engine=EngineConfig(cache="dynamic"),  # rows join between steps
        )

    # ------------------------------------------------------------------ the event loop's side
    async def run(self, sources: list) -> list[Sequence]:
        """Decode one piece per source; their finished sequences, in order. 429 when the queue is
        full, 504 past the deadline, 500 when decoding failed."""
        if not sources:
            return []
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        results: list[Sequence | None] = [None] * len(sources)
        left = [len(sources)]

        def settle(index: int, sequence: Sequence | None, error: str | None) -> None:  # event loop
            if answer.done():
                return
            if error is None and sequence.finish_reason == "cancelled":
                error = "the request was cancelled"
            if error is not None:
                answer.set_exception(APIError(500, error, code="engine_error"))
                return
            results[index] = sequence
            left[0] -= 1
            if not left[0]:
                answer.set_result(results)

        def deliver(index: int, sequence: Sequence | None, error: str | None) -> None:  # engine thread
            try:
                loop.call_soon_threadsafe(settle, index, sequence, error)
            except RuntimeError:  # the event loop has closed (server shutting down)
                pass

        pieces = [Piece(i, source, deliver) for i, source in enumerate(sources)]
        self.submit(pieces)
        try:
            return await asyncio.wait_for(answer, self.timeout)
        except asyncio.TimeoutError:
            raise timed_out(self.timeout) from None
        finally:  # time-out, a failed piece, the client gone: what still decodes leaves the batch
            self.cancel(pieces)

    # ------------------------------------------------------------------ the engine thread
    def _apply(self, work: list[tuple[str, Piece]]) -> None:
        """Cancel what was cancelled; encode what arrived, together, and add it to the engine."""
        adds = []
        for op, piece in work:
            if op == "add":
                adds.append(piece)
            elif piece.done:
                continue
            elif piece.sequence is not None:
                self.engine.cancel(piece.sequence)  # its rows leave at the next step
            else:
                piece.fail("the request was cancelled")  # not encoded yet: it never will be
        adds = [p for p in adds if not p.done]
        for start in range(0, len(adds), self.encode_batch):
            self._add(adds[start : start + self.encode_batch])

    def _add(self, pieces: list[Piece]) -> None:
        try:
            requests = self.prepare([p.source for p in pieces])
        except Exception as err:
            log.exception("encoding for %s failed", self.name)
            for piece in pieces:
                piece.fail(f"encoding failed ({type(err).__name__}: {err})")
            return
        for piece, request in zip(pieces, requests):
            try:
                piece.sequence = self.engine.add(request)
            except ValueError as err:  # the endpoint checks first; this is the engine's own guard
                piece.fail(str(err))
                continue
            if piece.sequence.done:  # nothing to generate (max_new_tokens=0): no step reports it
                piece.finish(piece.sequence)
            else:
                self._tickets[piece.sequence.id] = piece

    def _deliver(self, events: list[TokenEvent]) -> None:
        """A step's events: the pieces that finished are answered before the model runs again."""
        cancelled = 0
        for event in events:
            if event.finish_reason is None:
                continue
            piece = self._tickets.pop(event.sequence.id, None)
            if piece is None:
                continue
            cancelled += event.finish_reason == "cancelled"
            piece.finish(event.sequence)
        if self.metrics is not None:  # tokens are counted by the endpoints, beam searches' included
            rows = self.engine.last_rows  # a new list whenever a step chose tokens
            chose, self._chosen = rows is not self._chosen, rows
            self.metrics.decode_step(self.name, rows=len(rows) if chose else 0, tokens=0, cancelled=cancelled)


def encoder_decoder_scheduler(served, settings, metrics=None) -> EncoderDecoderScheduler:
    """The scheduler of a translation or Whisper model (``served.kind`` in ``KINDS``).

    Its sources: ``(source ids, SearchConfig)`` per sentence (translation), ``(features (M, F),
    GenerationConfig)`` per window (speech)."""
    if served.kind == "translation":
        translator = served.translator

        def prepare(items: list) -> list[Request]:
            return translator.requests([ids for ids, _ in items], [config for _, config in items])

    elif served.kind == "speech":
        model = served.model

        def prepare(items: list) -> list[Request]:
            features = torch.stack([window for window, _ in items])  # (B, M, F)
            return transcription_requests(model, features, [config for _, config in items])

    else:
        raise ValueError(f"a {served.kind} model is not an encoder-decoder this scheduler decodes")
    return EncoderDecoderScheduler(
        served.name,
        served.model,
        served.tokenizer,
        prepare,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        retry_after=settings.retry_after,
        timeout=settings.timeout,
        metrics=metrics,
    )

"""Chat and text completions over the scheduler: prompts in, OpenAI responses and streams out.

``prepare`` turns a checked request body into token-id prompts and one ``GenerationConfig`` per
choice (its stop tokens included), refusing what cannot be served (a prompt plus ``max_tokens``
beyond the model's context, which its engine was built with, token ids outside its vocabulary)
before anything is queued. ``Run`` submits the choices to the model's ``GenerationScheduler``
and reads their ``Update``s from an asyncio queue, which also receives two sentinels: the
deadline (``--timeout``) and the client's disconnect; either cancels the choices still running,
so their rows leave the batch at the next step. ``respond`` answers with one JSON body,
``stream`` with Server-Sent Events: ``data: {json}\\n\\n`` per chunk, every chunk with the
request's one id, the role first, the ``finish_reason`` last, a usage chunk when asked, then
``data: [DONE]``. An error after the stream has started is sent as ``data: {"error": ...}``
followed by ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..decode.config import GenerationConfig
from ..decode.engine import Request as EngineRequest
from ..decode.generate import encode_prompts, stop_ids
from .errors import APIError, bad_request, check_count, error_body, timed_out
from .registry import ServedModel
from .scheduler import GenerationScheduler, Ticket, Update
from .schemas import ChatCompletionRequest, CompletionRequest
from .settings import ServeSettings

_TIMEOUT, _DISCONNECTED = "timeout", "disconnected"  # sentinels in a run's queue


@dataclass
class Prepared:
    """A request ready for the scheduler: its prompts (ids) and each choice's settings."""

    kind: str  # chat | text
    prompts: list[list[int]]
    configs: list[GenerationConfig]  # one per choice: prompt i's choice j is choices[i * n + j]
    stop_strings: list[str]
    prompt_texts: list[str]  # for echo
    echo: bool = False


def prepare(body: ChatCompletionRequest | CompletionRequest, served: ServedModel, settings: ServeSettings) -> Prepared:
    """Prompts and per-choice settings for ``body``, or a 400 naming the limit it breaks."""
    tokenizer = served.tokenizer
    if body.n > settings.max_n:
        raise bad_request(f"n is {body.n}; this server allows at most {settings.max_n} choices", param="n")
    if isinstance(body, ChatCompletionRequest):
        kind = "chat"
        try:
            text = tokenizer.apply_chat_template(body.conversation(), add_generation_prompt=True)
        except ValueError as err:
            raise bad_request(str(err), param="messages") from None
        prompts = [tokenizer.encode(text)]
        prompt_texts = [text]
    else:
        kind = "text"
        try:
            texts = body.prompts()
        except ValueError as err:
            raise bad_request(str(err), param="prompt") from None
        check_count(len(texts), settings.max_inputs, "prompts", "prompt")
        try:
            prompts = encode_prompts(tokenizer, texts, GenerationConfig())
        except ValueError as err:  # unknown characters, no BOS for an empty prompt
            raise bad_request(f"prompt: {err}", param="prompt") from None
    vocab = served.vocab_size
    for ids in prompts:
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise bad_request(
                f"prompt token id(s) {bad[:5]} are outside the model's vocabulary of {vocab}", param="prompt"
            )
    if kind == "text":
        prompt_texts = [t if isinstance(t, str) else tokenizer.decode(t) for t in texts] if body.echo else []
    limit = _token_limit(body, kind, max(len(p) for p in prompts), served.context, settings)
    stops = () if body.ignore_eos else stop_ids(tokenizer)
    configs = []
    for i in range(len(prompts) * body.n):
        configs.append(
            GenerationConfig(
                max_new_tokens=limit,
                temperature=body.temperature,
                top_p=body.top_p,
                top_k=body.top_k,
                repetition_penalty=body.repetition_penalty,
                seed=None if body.seed is None else body.seed + i,
                logprobs=body.logprob_count,
                stop_tokens=stops,
            )
        )
    return Prepared(kind, prompts, configs, list(body.stop or ()), prompt_texts, echo=kind == "text" and body.echo)


def _token_limit(body, kind: str, prompt_tokens: int, context: int, settings: ServeSettings) -> int:
    """``max_tokens``, checked against the context: prompt + new tokens must fit in it."""
    room = context - prompt_tokens
    asked = body.token_limit
    param = "max_completion_tokens" if kind == "chat" and body.max_completion_tokens is not None else "max_tokens"
    if room <= 0:
        raise APIError(
            400,
            f"this model's context is {context} tokens and the prompt has {prompt_tokens} tokens: "
            f"no room for a completion; shorten the prompt",
            param="messages" if kind == "chat" else "prompt",
            code="context_length_exceeded",
        )
    if asked is None:  # OpenAI: chat runs to the end of the context, completions default to 16 tokens
        return room if kind == "chat" else min(settings.default_completion_tokens, room)
    if asked > room:
        raise APIError(
            400,
            f"this model's context is {context} tokens; the prompt has {prompt_tokens} tokens and "
            f"{param} asks for {asked} more ({prompt_tokens + asked} > {context}); lower {param} to at "
            f"most {room} or shorten the prompt",
            param=param,
            code="context_length_exceeded",
        )
    return asked


# ----------------------------------------------------------------------------- a run


class Run:
    """One request's choices in the scheduler, read back as ``Update``s."""

    def __init__(
        self,
        request: Request,
        served: ServedModel,
        scheduler: GenerationScheduler,
        prepared: Prepared,
        settings: ServeSettings,
        metrics,
        started: float,
    ):
        self.request, self.served, self.scheduler, self.prepared = request, served, scheduler, prepared
        self.settings, self.metrics, self.started = settings, metrics, started
        self.id = f"{'chatcmpl' if prepared.kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.n = len(prepared.configs) // len(prepared.prompts)
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.completion_tokens = 0
        self.first_token_at: float | None = None
        tokenizer = served.tokenizer
        token_text = lambda ids: tokenizer.decode(ids, skip_special=False)  # noqa: E731
        self.tickets = [
            Ticket(
                i,
                EngineRequest(prepared.prompts[i // self.n], config),
                tokenizer.decode,
                self._deliver,
                prepared.stop_strings,
                logprobs=config.logprobs is not None,
                token_text=token_text,
            )
            for i, config in enumerate(prepared.configs)
        ]
        self._timer = None
        self._watcher: asyncio.Task | None = None

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prepared.prompts)

    def _deliver(self, update: Update) -> None:  # engine thread
        self.loop.call_soon_threadsafe(self.queue.put_nowait, update)

    def start(self) -> None:
        """Submit every choice (429 when the model's queue is full), arm the deadline and the disconnect watch."""
        self.scheduler.submit(self.tickets)
        self.metrics.prompt_tokens.labels(self.served.name).inc(self.prompt_tokens)
        if self.settings.timeout is not None:
            self._timer = self.loop.call_at(self.loop.time() + self.settings.timeout, self._stop, _TIMEOUT)
        self._watcher = asyncio.ensure_future(self._watch_disconnect())

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                self._stop(_DISCONNECTED)
                return

    def _stop(self, why: str) -> None:
        """Time is up or the client has gone: the rows leave the batch now, whether or not
        anything still reads this run (a stream that never started reads nothing)."""
        self.scheduler.cancel(self.tickets)
        self.queue.put_nowait(why)

    async def updates(self):
        """Every choice's updates until all have finished; raises ``APIError`` on time-out or engine error,
        ``ConnectionAbortedError`` when the client has gone."""
        live = len(self.tickets)
        while live:
            item = await self.queue.get()
            if isinstance(item, str):  # a sentinel: the deadline, or the client has gone
                if item == _TIMEOUT:
                    raise timed_out(self.settings.timeout)
                raise ConnectionAbortedError("the client disconnected")
            if item.error is not None:
                raise APIError(500, item.error, code="engine_error")
            if item.token is not None:
                self.completion_tokens += 1
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                    self.metrics.ttft.labels(self.served.name).observe(self.first_token_at - self.started)
            if item.finish_reason is not None:
                live -= 1
            yield item

    def close(self) -> None:
        """Cancel what still runs (client gone, time-out, error) and stop the timers."""
        self.scheduler.cancel(self.tickets)
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()

    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    # ------------------------------------------------------------------ answers
    async def respond(self) -> JSONResponse:
        """The whole response as one JSON body."""
        texts = [""] * len(self.tickets)
        reasons: list[str | None] = [None] * len(self.tickets)
        logprobs = [[] for _ in self.tickets]
        try:
            async for update in self.updates():
                texts[update.index] += update.text
                if update.logprob is not None:
                    logprobs[update.index].append(update)
                if update.finish_reason is not None:
                    reasons[update.index] = update.finish_reason
        except ConnectionAbortedError:
            return JSONResponse(error_body("client disconnected"), status_code=499)
        finally:
            self.close()
        choices = []
        for i, (text, reason) in enumerate(zip(texts, reasons)):
            wants = self.prepared.configs[i].logprobs is not None
            if self.prepared.kind == "chat":
                choices.append(
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": _chat_logprobs(logprobs[i]) if wants else None,
                        "finish_reason": reason,
                    }
                )
            else:
                prefix = self.prepared.prompt_texts[i // self.n] if self.prepared.echo else ""
                choices.append(
                    {
                        "index": i,
                        "text": prefix + text,
                        "logprobs": _text_logprobs(logprobs[i]) if wants else None,
                        "finish_reason": reason,
                    }
                )
        body = {
            "id": self.id,
            "object": "chat.completion" if self.prepared.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.served.name,
            "system_fingerprint": None,
            "choices": choices,
            "usage": self.usage(),
        }
        return JSONResponse(body)

    def stream(self, include_usage: bool) -> StreamingResponse:
        return StreamingResponse(
            self._events(include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def _chunk(self, choices: list[dict], usage: dict | None = None, with_usage: bool = False) -> str:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.prepared.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.served.name,
            "system_fingerprint": None,
            "choices": choices,
        }
        if with_usage:
            chunk["usage"] = usage
        return _sse(chunk)

    async def _events(self, include_usage: bool):
        chat = self.prepared.kind == "chat"
        try:
            for i in range(len(self.tickets)):  # the first chunk of every choice: the role (chat) or the echo
                if chat:
                    yield self._chunk(
                        [
                            {
                                "index": i,
                                "delta": {"role": "assistant", "content": ""},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                        with_usage=include_usage,
                    )
                elif self.prepared.echo:
                    yield self._chunk(
                        [
                            {
                                "index": i,
                                "text": self.prepared.prompt_texts[i // self.n],
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                        with_usage=include_usage,
                    )
            async for update in self.updates():
                wants = update.logprob is not None
                if not update.text and not wants and update.finish_reason is None:
                    continue  # text held back (a stop string may be starting): nothing to send yet
                if chat:
                    delta = {"content": update.text} if update.text or update.finish_reason is None else {}
                    choice = {
                        "index": update.index,
                        "delta": delta,
                        "logprobs": _chat_logprobs([update]) if wants else None,
                        "finish_reason": update.finish_reason,
                    }
                else:
                    choice = {
                        "index": update.index,
                        "text": update.text,
                        "logprobs": _text_logprobs([update]) if wants else None,
                        "finish_reason": update.finish_reason,
                    }
                yield self._chunk([choice], with_usage=include_usage)
            if include_usage:
                yield self._chunk([], self.usage(), with_usage=True)
        except APIError as err:
            yield _sse(err.body())
        except ConnectionAbortedError:
            return
        finally:
            self.close()
        yield "data: [DONE]\n\n"


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _chat_logprobs(updates: list[Update]) -> dict:
    """OpenAI's chat ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}]}``."""
    return {
        "content": [
            {
                "token": u.token_text,
                "logprob": u.logprob,
                "bytes": list(u.token_text.encode()),
                "top_logprobs": [
                    {"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in u.top_logprobs or []
                ],
            }
            for u in updates
        ],
        "refusal": None,
    }


def _text_logprobs(updates: list[Update]) -> dict:
    """The completions ``logprobs``: parallel lists, and each token's offset in the text."""
    offsets, at = [], 0
    for u in updates:
        offsets.append(at)
        at += len(u.token_text)
    return {
        "tokens": [u.token_text for u in updates],
        "token_logprobs": [u.logprob for u in updates],
        "top_logprobs": [dict(u.top_logprobs or []) for u in updates],
        "text_offset": offsets,
    }

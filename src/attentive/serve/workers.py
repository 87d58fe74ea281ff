"""One worker thread per model that does not decode token by token (embeddings, images).

These requests are one forward pass each, so they run whole, one at a time per model, in
arrival order, off the event loop; ``max_queue`` bounds how many may wait (then 429 with
``Retry-After``) and the server's ``--timeout`` how long a caller waits (a job that has not
started by then is dropped). Translation and Whisper decode through an engine thread instead,
where concurrent requests share the decoding steps (``encoder_decoder.py``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from .errors import queue_full, timed_out


class Worker:
    """Runs one model's jobs in its own thread; see the module docstring."""

    def __init__(self, name: str, *, max_queue: int, retry_after: int = 1, timeout: float | None = None, metrics=None):
        self.name, self.max_queue, self.retry_after, self.timeout = name, max_queue, retry_after, timeout
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"attentive-{name}")
        self._lock = threading.Lock()
        self._jobs = 0  # submitted and not finished (the one running included)

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        """``fn(*args)`` in the worker thread, under ``torch.no_grad``; its exceptions come back here."""
        with self._lock:
            if self._jobs > self.max_queue:  # one running + max_queue waiting
                raise queue_full(self.name, self._jobs - 1, self.retry_after)
            self._jobs += 1
            self._publish()
        future = self._pool.submit(_no_grad, fn, *args)
        future.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except asyncio.TimeoutError:
            future.cancel()  # dropped if it has not started; a running forward pass ends by itself
            raise timed_out(self.timeout) from None

    def _finished(self, _future) -> None:
        with self._lock:
            self._jobs -= 1
            self._publish()

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(max(0, self._jobs - 1))
            self.metrics.active.labels(self.name).set(min(1, self._jobs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)

"""Prometheus metrics of one server (``GET /metrics``), through ``prometheus_client``.

Each app gets its own ``CollectorRegistry`` (two apps in one process never share counters), with
the process collector (resident memory, CPU seconds, open files) beside attentive's own:

==============================================  =====================================================
``attentive_requests_total{endpoint,status}``   HTTP requests answered, by route and status code
``attentive_request_latency_seconds{endpoint}`` arrival to last byte, by route
``attentive_time_to_first_token_seconds{model}`` arrival to the first generated token
``attentive_prompt_tokens_total{model}``        tokens read (prompts, texts to embed or translate)
``attentive_generated_tokens_total{model}``     tokens generated
``attentive_queue_depth{model}``                requests waiting for a row or a worker
``attentive_active_sequences{model}``           rows decoding now
``attentive_decode_batch_rows{model}``          rows per decoding step (continuous batching at work)
``attentive_cancelled_sequences_total{model}``  sequences stopped early (client gone, time limit)
==============================================  =====================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import ProcessCollector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The server's counters; ``render()`` is the ``/metrics`` body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        reg = dict(registry=self.registry)
        self.requests = Counter(
            "attentive_requests", "HTTP requests answered, by route and status code", ["endpoint", "status"], **reg
        )
        self.latency = Histogram(
            "attentive_request_latency_seconds",
            "Arrival to last byte, by route",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            **reg,
        )
        self.ttft = Histogram(
            "attentive_time_to_first_token_seconds",
            "Arrival to the first generated token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            **reg,
        )
        self.prompt_tokens = Counter("attentive_prompt_tokens", "Tokens read (prompts, texts)", ["model"], **reg)
        self.generated_tokens = Counter("attentive_generated_tokens", "Tokens generated", ["model"], **reg)
        self.queue_depth = Gauge("attentive_queue_depth", "Requests waiting for a row or a worker", ["model"], **reg)
        self.active = Gauge("attentive_active_sequences", "Rows decoding now", ["model"], **reg)
        self.batch_rows = Histogram(
            "attentive_decode_batch_rows", "Rows per decoding step", ["model"], buckets=ROW_BUCKETS, **reg
        )
        self.cancelled = Counter(
            "attentive_cancelled_sequences", "Sequences stopped early (client gone, time limit)", ["model"], **reg
        )

    def add_model(self, name: str) -> None:
        """Show a loaded model's series at zero before its first request."""
        for metric in (self.prompt_tokens, self.generated_tokens, self.queue_depth, self.active, self.cancelled):
            metric.labels(name)

    # called by the engine thread and the workers (prometheus_client is thread-safe)
    def decode_step(self, model: str, rows: int, tokens: int, cancelled: int) -> None:
        if rows:
            self.batch_rows.labels(model).observe(rows)
        if tokens:
            self.generated_tokens.labels(model).inc(tokens)
        if cancelled:
            self.cancelled.labels(model).inc(cancelled)

    def engine_state(self, model: str, waiting: int, active: int) -> None:
        self.queue_depth.labels(model).set(waiting)
        self.active.labels(model).set(active)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: counts every HTTP response by route and status and times it.

    Routes are labelled by their path when the app has that route and ``other`` otherwise, so a
    client probing random paths cannot grow the label set."""

    def __init__(self, app, metrics: Metrics, routes: Callable[[], set[str]]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        path = scope.get("path", "")
        endpoint = path if path in self.routes() else "other"

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

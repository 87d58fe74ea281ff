"""What a server allows: one typed settings object, checked when it is made.

Every limit here is one a client can hit, and each has the error it produces next to it in the
README's "Serving" section. ``ServeSettings()`` holds the defaults of ``attentive serve``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

API_KEY_ENV = "ATTENTIVE_API_KEY"
CACHES = ("auto", "slots", "dynamic", "static", "cuda_graph")


@dataclass
class ServeSettings:
    """Limits and switches of one server."""

    host: str = "127.0.0.1"  # loopback only unless asked
    port: int = 8000
    api_key: str | None = None  # None: no key needed (ATTENTIVE_API_KEY fills it in the CLI)
    max_batch: int = 32  # rows decoding together per language model (1 = one request at a time)
    # auto: slots for a model prepared for CPU decoding (from_pretrained's default on CPU), else dynamic;
    # slots / dynamic: rows join between steps; static / cuda_graph: a fixed batch runs to its end
    cache: str = "auto"
    compile: bool = True  # a slots cache: compile its step when the server starts (cached on disk)
    # tokens a request may hold, for a model decoded in slots (each row a buffer of this length; at
    # most the model's context; None: the model's). Other models grow their cache as they need
    context: int | None = 2048
    prefill_chunk: int = 256  # prompt tokens written a step while other requests decode (chunked prefill)
    max_queue: int = 256  # requests waiting for a row (or a worker) per model; more -> 429
    timeout: float | None = 600.0  # seconds a request may take from arrival to its last token (None: no limit)
    max_body_bytes: int = 2 * 1024 * 1024  # JSON bodies
    max_upload_bytes: int = 25 * 1024 * 1024  # multipart uploads (audio, images), as OpenAI's 25 MB
    max_inputs: int = 256  # texts per embeddings / translation request, prompts per completion
    max_n: int = 16  # choices per completion request
    max_audio_seconds: float = 600.0
    max_image_pixels: int = 16_000_000  # width x height of an uploaded image
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are given
    retry_after: int = 1  # seconds a client is told to wait when a queue is full
    default_completion_tokens: int = 16  # /v1/completions without max_tokens (OpenAI's default)
    extra: dict = field(default_factory=dict)  # room for routers mounted beside these (explorer)

    def __post_init__(self) -> None:
        self.cors_origins = tuple(self.cors_origins)
        positive_ints = (
            "max_batch",
            "max_queue",
            "max_body_bytes",
            "max_upload_bytes",
            "max_inputs",
            "max_n",
            "max_image_pixels",
            "retry_after",
            "default_completion_tokens",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535, got {self.port!r}")
        if self.cache not in CACHES:
            raise ValueError(f"cache must be one of {', '.join(CACHES)}, got {self.cache!r}")
        if self.context is not None and (not isinstance(self.context, int) or self.context < 1):
            raise ValueError(f"context must be a positive integer (or None for the model's), got {self.context!r}")
        if not isinstance(self.prefill_chunk, int) or self.prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be a positive integer, got {self.prefill_chunk!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0 (or None for no limit), got {self.timeout!r}")
        if not self.max_audio_seconds > 0:
            raise ValueError(f"max_audio_seconds must be > 0, got {self.max_audio_seconds!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (leave it unset for a server without a key)")

    @classmethod
    def from_env(cls, **values) -> ServeSettings:
        """Settings with ``api_key`` taken from ``ATTENTIVE_API_KEY`` when not given."""
        if values.get("api_key") is None and os.environ.get(API_KEY_ENV):
            values["api_key"] = os.environ[API_KEY_ENV]
        return cls(**values)

    def replace(self, **overrides) -> ServeSettings:
        return dataclasses.replace(self, **overrides)

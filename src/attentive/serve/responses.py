"""Response bodies, as pydantic models: what each endpoint answers, for the OpenAPI schema.

The endpoints build their answers as plain dicts (no validation on the hot path); these models
describe exactly those dicts, field for field (``extra="forbid"``: a field an endpoint adds
without declaring it here fails ``tests/serve/test_openapi.py``, which validates real answers
against them). The names follow OpenAI's API reference where attentive answers as OpenAI does
(``ChatCompletion``, ``ChatCompletionChunk``, ``Completion``, ``Embedding``, ``Model``); the rest
are attentive's own (translations, image classification, health).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FinishReason = Literal["stop", "length"]  # stop: a stop token or string; length: max_tokens or the context


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- errors


class ErrorDetail(_Answer):
    message: str = Field(description="one line naming the problem (and the field, for a bad request)")
    type: str = Field(
        description="OpenAI's error type: invalid_request_error, authentication_error, rate_limit_error, "
        "server_error, timeout_error"
    )
    param: str | None = Field(description="the request field at fault (dotted path), if any")
    code: str | None = Field(
        description="a machine-readable reason where there is one: invalid_json, context_length_exceeded, "
        "model_not_found, wrong_model_kind, missing_api_key, invalid_api_key, body_too_large, "
        "unsupported_media_type, queue_full, engine_stopped, engine_error, timeout, audio_too_long"
    )


class ErrorResponse(_Answer):
    """Every error, in OpenAI's shape."""

    error: ErrorDetail


# ----------------------------------------------------------------------------- text generation


class Usage(_Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(_Answer):
    token: str
    logprob: float
    bytes: list[int] = Field(description="the token's text as UTF-8 bytes")


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(description="the most likely alternatives (top_logprobs of them)")


class ChatLogprobs(_Answer):
    content: list[TokenLogprob]
    refusal: None = None


class ChatCompletionMessage(_Answer):
    role: Literal["assistant"]
    content: str


class ChatChoice(_Answer):
    index: int
    message: ChatCompletionMessage
    logprobs: ChatLogprobs | None = Field(description="only with logprobs: true")
    finish_reason: FinishReason


class ChatCompletion(_Answer):
    """``POST /v1/chat/completions`` without ``stream``."""

    id: str
    object: Literal["chat.completion"]
    created: int = Field(description="Unix time, seconds")
    model: str
    system_fingerprint: None
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(_Answer):
    role: Literal["assistant"] | None = Field(None, description="in each choice's first chunk only")
    content: str | None = Field(None, description="the next piece of text (absent in a choice's last chunk)")


class ChatChunkChoice(_Answer):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: FinishReason | None = Field(description="set in the choice's last chunk")


class ChatCompletionChunk(_Answer):
    """One Server-Sent Event of a streamed chat: ``data: {ChatCompletionChunk}``. With
    ``stream_options.include_usage`` every chunk has ``usage`` (null) and one more chunk, with no
    choices, carries the request's usage."""

    id: str = Field(description="the same in every chunk of a response")
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(None, description="only with stream_options.include_usage")


class CompletionLogprobs(_Answer):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] = Field(description="per token: alternative -> log-probability")
    text_offset: list[int] = Field(description="per token: where its text starts in the choice's text")


class CompletionChoice(_Answer):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = Field(description="only with logprobs")
    finish_reason: FinishReason


class Completion(_Answer):
    """``POST /v1/completions`` without ``stream``: ``n`` choices per prompt, prompt by prompt."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunkChoice(_Answer):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: FinishReason | None = Field(description="set in the choice's last chunk")


class CompletionChunk(_Answer):
    """One Server-Sent Event of a streamed completion: ``data: {CompletionChunk}``."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: None
    choices: list[CompletionChunkChoice]
    usage: Usage | None = Field(None, description="only with stream_options.include_usage")


# ----------------------------------------------------------------------------- other endpoints


class Embedding(_Answer):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(
        description='the vector: numbers, or with encoding_format "base64" its little-endian float32 bytes, '
        "base64-encoded"
    )


class EmbeddingUsage(_Answer):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Answer):
    """``POST /v1/embeddings``: one vector per input, in input order."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Translation(_Answer):
    object: Literal["translation"]
    index: int
    text: str


class TranslationList(_Answer):
    """``POST /v1/translations/text``: one translation per input, in input order."""

    object: Literal["list"]
    model: str
    data: list[Translation]
    usage: Usage


class TranscriptionUsage(_Answer):
    type: Literal["duration"]
    seconds: int = Field(description="the clip's length, rounded up")


class Transcription(_Answer):
    """``POST /v1/audio/transcriptions`` with ``response_format`` json."""

    text: str
    usage: TranscriptionUsage


class ImageClassification(_Answer):
    """``POST /v1/classifications/image``: the most likely class and every class's probability."""

    object: Literal["classification"]
    model: str
    label: str
    index: int
    probability: float
    probabilities: dict[str, float] = Field(description="class index (as a string) -> probability")


# ----------------------------------------------------------------------------- models and health


class ModelCard(_Answer):
    """One loaded model: OpenAI's fields, then attentive's."""

    id: str = Field(description="the name requests use in model")
    object: Literal["model"]
    created: int
    owned_by: Literal["attentive"]
    kind: Literal["lm", "encoder", "speech", "translation", "vit"]
    endpoints: list[str] = Field(description="the endpoints that serve this model")
    context_length: int | None = Field(
        None, description="tokens a request may hold (language and translation models only)"
    )


class ModelList(_Answer):
    """``GET /v1/models``."""

    object: Literal["list"]
    data: list[ModelCard]


class DecodingPath(_Answer):
    """How a model's engine decodes."""

    cache: str = Field(description="the cache kind: slots, dynamic, static, cuda_graph")
    compiled: bool = Field(description="whether the decoding step is compiled")
    weights: str = Field(description="fp32 / int8 / int4 panels prepared for CPU decoding, or plain")


class Health(_Answer):
    """``GET /health`` when the models are loaded and every engine thread runs."""

    status: Literal["ok"]
    models: list[str]
    decoding: dict[str, DecodingPath] = Field(description="model -> how its engine decodes (decoding models)")


class HealthError(_Answer):
    """``GET /health`` (503) when an engine thread has stopped."""

    status: Literal["error"]
    stopped: dict[str, str] = Field(description="model -> why its engine stopped")

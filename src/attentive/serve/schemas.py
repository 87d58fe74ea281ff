"""Request bodies, as pydantic models checked before anything runs.

The fields and their limits follow OpenAI's API reference; a value outside them is a 400 whose
message names the field (``messages.0.role: Input should be 'system', 'user', ...``). Fields
OpenAI has but attentive does not implement (tools, response formats other than text,
presence / frequency penalties other than 0) are refused by name rather than ignored, so a
client never gets an answer to a question it did not ask. Unknown fields are ignored, as
OpenAI's own server does. attentive's extensions, sent by the ``openai`` client through
``extra_body``: ``top_k``, ``repetition_penalty`` and ``ignore_eos`` (vLLM's names).

The same models are the request bodies of the OpenAPI schema (``openapi.py``). The uploads'
multipart fields are described by ``TranscriptionForm`` and ``ImageClassificationForm``: their
endpoints read exactly those fields and check each value with a message of their own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import APIError, bad_request, validation_message

ROLES = ("system", "developer", "user", "assistant")
MAX_STOP = 4  # stop sequences per request (OpenAI's limit)
MAX_STOP_CHARS = 256  # characters per stop sequence (each is searched for in the text after every token)
MAX_ALPHA = 10.0  # translation's length penalty ((5 + length) / 6) ** alpha: beyond, floats overflow
_STOP_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


def parse(schema: type[BaseModel], data: Any) -> BaseModel:
    """``data`` (decoded JSON) as ``schema``, or a 400 naming the first bad field."""
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        message, param = validation_message(err)
        raise APIError(400, message, param=param) from None


# ----------------------------------------------------------------------------- text generation


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    """What chat and completions share."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = Field(None, description="only with stream: true")
    stop: str | list[str] | None = Field(
        None,
        description=f"up to {MAX_STOP} non-empty stop sequences of at most {MAX_STOP_CHARS} characters",
        json_schema_extra={
            "anyOf": [_STOP_TEXT, {"type": "array", "items": _STOP_TEXT, "maxItems": MAX_STOP}, {"type": "null"}]
        },
    )
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="a 64-bit integer")
    presence_penalty: float = Field(0.0, description="not supported: only 0")
    frequency_penalty: float = Field(0.0, description="not supported: only 0")
    logit_bias: dict[str, float] | None = Field(None, description="not supported: only empty")
    # attentive's extensions (vLLM's names)
    top_k: int | None = Field(None, ge=1, description="attentive's extension: sample from the k most likely tokens")
    repetition_penalty: float = Field(1.0, gt=0.0, description="attentive's extension: > 1 discourages repeats")
    ignore_eos: bool = Field(False, description="attentive's extension: decode past the end-of-text token")

    @field_validator("stop")
    @classmethod
    def _stop(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        longest = max(stops, key=len, default="")
        if len(longest) > MAX_STOP_CHARS:
            raise ValueError(f"a stop sequence has {len(longest)} characters; at most {MAX_STOP_CHARS} are allowed")
        return stops

    @model_validator(mode="after")
    def _unsupported(self):
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ValueError(f"{name} is not supported (only 0); use repetition_penalty (extra_body) instead")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal[ROLES]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value):
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(p, dict) for p in value):
            if any(p.get("type") != "text" for p in value):
                kinds = sorted({str(p.get("type")) for p in value} - {"text"})
                raise ValueError(f"content parts must be text, got {', '.join(kinds)}")
            return value
        raise ValueError(f"content must be a string or a list of text parts, got {type(value).__name__}")

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ResponseFormat(_Body):
    type: str

    @field_validator("type")
    @classmethod
    def _text_only(cls, value):
        if value != "text":
            raise ValueError(f"response_format {value!r} is not supported; only 'text'")
        return value


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list | None = Field(None, description="not supported: only empty")
    tool_choice: Any = None
    functions: list | None = Field(None, description="not supported: only empty")

    @model_validator(mode="after")
    def _chat_options(self):
        if self.tools or self.functions:
            raise ValueError("tools and functions are not supported")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if (
            self.max_completion_tokens is not None
            and self.max_tokens is not None
            and self.max_completion_tokens != self.max_tokens
        ):
            raise ValueError("max_tokens and max_completion_tokens differ; give one of them")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def logprob_count(self) -> int | None:
        """``GenerationConfig.logprobs``: None, or the number of alternatives."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def conversation(self) -> list[dict[str, str]]:
        """The messages as a chat template reads them (``developer`` is the newer name of ``system``)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = Field(None, description="not supported: only empty")
    best_of: int | None = Field(None, description="only 1 or equal to n")

    @model_validator(mode="after")
    def _completion_options(self):
        if self.suffix:
            raise ValueError("suffix (insertion) is not supported")
        if self.best_of not in (None, 1) and self.best_of != self.n:
            raise ValueError("best_of is not supported (only equal to n)")
        if self.echo and self.logprobs is not None:
            raise ValueError("echo with logprobs is not supported (prompt log-probabilities are not computed)")
        return self

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens

    @property
    def logprob_count(self) -> int | None:
        return self.logprobs

    def prompts(self) -> list:
        """One prompt or several: strings or token-id lists."""
        p = self.prompt
        if isinstance(p, str) or (p and isinstance(p[0], int)):
            return [p]
        if not p:
            raise ValueError("prompt must not be an empty list")
        return list(p)


# ----------------------------------------------------------------------------- other endpoints


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else list(self.input)
        if not texts:
            raise bad_request("input must not be empty", param="input")
        for i, text in enumerate(texts):
            if not text.strip():
                where = "input" if isinstance(self.input, str) else f"input.{i}"
                raise bad_request(f"{where} is empty; every input needs some text", param="input")
        return texts


class TranslationRequest(_Body):
    model: str
    input: str | list[str]
    beam: int | None = Field(None, ge=1, le=16)
    alpha: float | None = Field(None, ge=0.0, le=MAX_ALPHA, description="length penalty (beam search)")
    max_len_b: int | None = Field(None, ge=1)

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else list(self.input)
        if not texts:
            raise bad_request("input must not be empty", param="input")
        return texts


# ----------------------------------------------------------------------------- uploads (multipart forms)


class TranscriptionForm(_Body):
    """The multipart fields of ``POST /v1/audio/transcriptions`` (others are ignored)."""

    file: bytes = Field(description="the audio: a PCM WAV file (any rate, any channel count)")
    model: str
    response_format: Literal["json", "text"] = "json"
    language: str | None = Field(
        None, description="ISO-639-1 code; only the language the model was loaded to transcribe"
    )
    prompt: str | None = Field(None, max_length=0, description="not supported: a non-empty prompt is refused")
    temperature: float = Field(0.0, ge=0.0, le=0.0, description="only 0: decoding is greedy")


class ImageClassificationForm(_Body):
    """The multipart fields of ``POST /v1/classifications/image`` (others are ignored)."""

    file: bytes = Field(description="the image: PNG, JPEG or any format Pillow reads")
    model: str

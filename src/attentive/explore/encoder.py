"""Encoder-only models (``Encoder``: BERT, the shipped all-MiniLM-L6-v2).

``analyze(text)`` encodes the text with its special tokens (``[CLS] ... [SEP]``) under the
attention tap: one bidirectional stack, every token attending to every token.

Dimension names: T tokens.
"""

from __future__ import annotations

import torch

from .subject import Analysis, Primary, Subject


class EncoderModel(Subject):
    family = "encoder"
    labels = {"stack": "self-attention (bidirectional)"}

    def encode(self, text: str) -> list[int]:
        return self.encode_text(text, self._tokenize)

    def _tokenize(self, text: str) -> list[int]:
        if not hasattr(self.tokenizer, "hf"):
            return self.tokenizer.encode(text)
        # a pretrained (Hugging Face) tokenizer places [CLS] and [SEP] itself
        encoding = self.tokenizer.hf.encode(text, add_special_tokens=True)
        if encoding.overflowing:  # the tokenizer truncates to the model's length: say so instead
            kept = len(encoding.ids)
            raise ValueError(f"the text is longer than the {kept} tokens this encoder reads; shorten it")
        return encoding.ids

    def _analyze(self, text: str, key: str) -> Analysis:
        ids = self.encode(text)
        tokens = self.labels_of(ids)
        stores = self.stores_for({("stack", "self"): (tokens, tokens)})
        x = torch.tensor([ids], device=self.device)  # (1, T)
        model = self.model
        with self.tapped(stores), self.stream_tap(model.stack) as stream:
            model.encode(x)
        primary = Primary(
            x, tokens, model.stack, "stack", model.embed, lambda ids, key_mask: model.encode(ids, key_mask)
        )
        return Analysis(key, self.family, {s.name: s for s in stores.values()}, primary, streams=stream.layers)

"""A model the explorer shows: its family, its input, and one analysed input (an ``Analysis``).

Each family (``lm``, ``translation``, ``encoder``, ``vision``, ``speech``) is a ``Subject``
subclass in a module of its own; ``load_subject(spec)`` picks it from what the path holds.
``Subject.analyze(value)`` runs the model once under an ``AttentionTap`` and returns what the
views draw; the analyses are kept in a small cache keyed by their ``id`` so the page can ask
for windows, layers and idea panels without re-running the model.

A model is not thread-safe under hooks, so every run holds the subject's ``lock``.

Dimension names: T tokens, D model width, V vocabulary.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..nn.embedding import TokenEmbedding
from ..nn.stack import StackOutput, TransformerStack
from .capture import AttentionTap, Site, StreamTap, stacks_of
from .weights import WeightStore

EXAMPLES = {  # the text the page starts with: the first one the model's tokenizer reads
    "lm": ("The quick brown fox jumps over the lazy dog.", "the quick brown fox jumps over the lazy dog."),
    "translation": ("Ein Hund rennt durch den Park.", "ein hund rennt durch den park."),
    "encoder": ("The cat sat on the mat because it was tired.", "the cat sat on the mat because it was tired."),
}
MAX_TOKENS = 1024  # longest input the explorer takes (or the model's context, if shorter)
MAX_CHARS = 20_000  # longest text accepted before tokenising
CACHE_SIZE = 4  # analyses kept


@dataclass
class Primary:
    """The sequence the idea panels work on, and how to run the model over it.

    ``run(inputs, key_mask)`` takes ``inputs`` like ``ids`` (token ids ``(B, T)``, or images
    ``(B, C, H, W)`` for vision) and a real-token mask ``(B, T)`` or None, and returns the output
    of ``stack``."""

    inputs: Tensor
    tokens: list[str]
    stack: TransformerStack
    stack_name: str
    embedding: TokenEmbedding | None
    run: Callable[[Tensor, Tensor | None], StackOutput]
    is_text: bool = True


@dataclass
class Analysis:
    """One input, analysed: the weights of every stack, and what the family adds to the views."""

    id: str
    family: str
    stores: dict[str, WeightStore]
    primary: Primary
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-ready family data (translation, image, ...)
    streams: list | None = None  # capture.LayerStream per layer of the primary stack
    layer_outputs: Tensor | None = None  # (L, T, D) for the logit lens (language models)

    def summary(self) -> dict:
        return {
            "id": self.id,
            "family": self.family,
            "tokens": self.primary.tokens,
            "primary_stack": self._primary_store(),
            "stacks": [store.summary() for store in self.stores.values()],
            **self.extra,
        }

    def _primary_store(self) -> str:
        """The store that holds the primary stack's self-attention (what the idea panels show)."""
        return self.primary.stack_name if self.primary.stack_name in self.stores else next(iter(self.stores))

    def store(self, name: str | None) -> WeightStore:
        if name is None:
            return next(iter(self.stores.values()))
        if name not in self.stores:
            raise ValueError(f"no stack {name!r} in this analysis; it has {', '.join(self.stores)}")
        return self.stores[name]


class Subject:
    """A loaded model and its tokenizer; subclasses are the families."""

    family = ""
    input_kind = "text"  # text | image | audio
    views: tuple[str, ...] = ("head", "model", "ideas")
    labels: dict[str, str] = {}  # stack key -> label

    def __init__(self, model: nn.Module, tokenizer, name: str):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.lock = threading.Lock()  # one model run at a time (the taps are hooks on the model)
        self._cache_lock = threading.Lock()
        self.cache: OrderedDict[str, Analysis] = OrderedDict()
        self.device = next(model.parameters()).device

    # ------------------------------------------------------------------ what the page is told first
    @property
    def config(self):
        return self.model.config

    @property
    def max_tokens(self) -> int:
        return min(MAX_TOKENS, int(getattr(self.config, "max_len", MAX_TOKENS) or MAX_TOKENS))

    def info(self) -> dict:
        c = self.config
        return {
            "name": self.name,
            "family": self.family,
            "input": self.input_kind,
            "views": list(self.views),
            "model_type": c.model_type,
            "d_model": c.d_model,
            "heads": c.num_heads,
            "kv_heads": c.num_kv_heads or c.num_heads,
            "positional": c.positional,
            "norm_first": c.norm_first,
            "max_tokens": self.max_tokens,
            "max_chars": MAX_CHARS,
            "example": self.example(),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }

    def example(self) -> str:
        """A text to start with that this model's tokenizer reads ('' if none does)."""
        for text in EXAMPLES.get(self.family, ()):
            try:
                self.encode_text(text, self._tokenize)
                return text
            except (ValueError, KeyError):
                continue
        return ""

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    # ------------------------------------------------------------------ analyses
    def analyze(self, value) -> Analysis:
        """Run the model on ``value`` (text, image bytes or audio bytes); cached by content."""
        key = _key(self.family, value)
        with self._cache_lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        with self.lock, torch.no_grad():
            analysis = self._analyze(value, key)
        with self._cache_lock:
            self.cache[key] = analysis
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)
        return analysis

    def cached(self, analysis_id: str) -> Analysis:
        with self._cache_lock:
            if analysis_id not in self.cache:
                raise ValueError(
                    f"that input is no longer in the explorer's cache (it keeps the last {CACHE_SIZE}); run it again"
                )
            self.cache.move_to_end(analysis_id)
            return self.cache[analysis_id]

    def is_cached(self, analysis_id: str) -> bool:
        with self._cache_lock:
            return analysis_id in self.cache

    def _analyze(self, value, key: str) -> Analysis:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for the families
    def encode_text(self, text: str, encode: Callable[[str], list[int]]) -> list[int]:
        """Checked text -> ids: not empty, not over the limits (one-line errors)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("enter some text first")
        if len(text) > MAX_CHARS:
            raise ValueError(f"the text has {len(text):,} characters; the explorer takes at most {MAX_CHARS:,}")
        ids = encode(text)
        if not ids:
            raise ValueError("the text gives no tokens")
        if len(ids) > self.max_tokens:
            raise ValueError(f"the text is {len(ids):,} tokens; the explorer takes at most {self.max_tokens:,}")
        return ids

    def labels_of(self, ids: list[int]) -> list[str]:
        return [token_label(self.tokenizer, i) for i in ids]

    def stores_for(
        self, spec: dict[tuple[str, str], tuple[list[str], list[str]]]
    ) -> dict[tuple[str, str], WeightStore]:
        """Empty stores for the sites ``(stack, kind) -> (query tokens, key tokens)``."""
        stacks = {name: len(s.layers) for name, s in stacks_of(self.model).items()}
        heads = self.config.num_heads
        out = {}
        for (stack, kind), (q, k) in spec.items():
            name = "cross" if kind == "cross" else stack
            out[(stack, kind)] = WeightStore.sized(name, self.labels.get(name, name), q, k, stacks[stack], heads)
        return out

    def tapped(self, stores: dict[tuple[str, str], WeightStore]) -> AttentionTap:
        """A tap whose weights (batch row 0) go to ``stores``; sites not in it are ignored."""

        def sink(site: Site, weights: Tensor) -> None:
            store = stores.get((site.stack, site.kind))
            if store is not None:
                store.add(weights[0])

        return AttentionTap(self.model, sink)

    def stream_tap(self, stack: TransformerStack, keep_outputs: bool = False) -> StreamTap:
        return StreamTap(stack, keep_outputs)


def _key(family: str, value) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return hashlib.sha256(family.encode() + b"\0" + data).hexdigest()[:16]


def token_label(tokenizer, token_id: int) -> str:
    """A token as the page shows it: its text, a leading space as '▁', a newline as '↵'."""
    text = tokenizer.decode([token_id], skip_special=False)
    if not text:
        text = _raw_token(tokenizer, token_id)
    text = text.replace("\n", "↵").replace("\t", "⇥").replace("\r", "␍")
    if not text.isprintable():
        text = _raw_token(tokenizer, token_id) or f"<{token_id}>"
    return "▁" + text[1:] if text.startswith(" ") else text


def _raw_token(tokenizer, token_id: int) -> str:
    if hasattr(tokenizer, "id_to_token"):
        return tokenizer.id_to_token(token_id) or ""
    hf = getattr(tokenizer, "hf", None)
    return (hf.id_to_token(token_id) or "") if hf is not None else ""


def residual_summary(streams) -> dict:
    """Stream sizes (norms) per layer for the residual panel: the mean over tokens and each token."""
    layers = []
    for i, layer in enumerate(streams):
        layers.append(
            {
                "layer": i,
                "points": [
                    {"name": name, "mean": float(n[0].mean()), "tokens": n[0].tolist()} for name, n in layer.points
                ],
                "added": [
                    {"name": name, "mean": float(n[0].mean()), "tokens": n[0].tolist()} for name, n in layer.added
                ],
            }
        )
    return {"layers": layers}

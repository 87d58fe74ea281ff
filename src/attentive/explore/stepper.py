"""The generation stepper: a language model continues a text one token per click, through the
decoding engine.

A ``Stepper`` owns an ``Engine`` (dynamic KV cache) with one request. Each ``step`` runs
``Engine.step`` once under an attention tap: the engine chooses a token with the one chain of
processors and the one sampler, then feeds that token through the KV cache, and the tap sees
that call, so the new token's attention over every earlier token (each layer, each head) is the
exact weights of the cached step. The probability bars are the distribution the token was drawn
from: the step's raw logits through the same processors (temperature, top-k, top-p) as the
engine applies. Changed settings apply from the next token on (``Engine.reconfigure``).

Dimension names: L layers, H heads, Tk keys (tokens so far), V vocabulary.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

from ..decode.config import EngineConfig, GenerationConfig
from ..decode.engine import Engine, Request
from ..decode.generate import stop_ids
from ..decode.processors import RowSettings
from .capture import AttentionTap, Site

BARS = 10  # probability bars shown
MAX_STEPS = 512  # tokens one stepper may add
SESSIONS = 8  # steppers kept per model

_ids = itertools.count(1)


@dataclass
class Settings:
    """The sampling controls of the page."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    seed: int = 0

    def config(self, max_new_tokens: int, stop_tokens: tuple[int, ...] = ()) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            seed=self.seed,
            stop_tokens=stop_tokens,
        )


class Stepper:
    """One text being continued a token at a time; see the module docstring."""

    def __init__(self, subject, text: str, settings: Settings):
        self.subject, self.settings = subject, settings
        ids = subject.encode(text)
        self.id = f"s{next(_ids)}"
        self.stops = stop_ids(subject.tokenizer)
        self.engine = Engine(subject.model, EngineConfig(cache="dynamic", pad_id=0))
        self.config = settings.config(MAX_STEPS, self.stops)  # checks the values (one-line errors)
        self.sequence = self.engine.add(Request(ids, self.config))
        self.tokens = subject.labels_of(ids)
        self.prompt_length = len(ids)
        self.attention: list[Tensor] = []  # per layer (H, Tk): the newest query's weights
        self.attention_labels: list[str] = []  # the Tk keys' tokens

    def _sink(self, site: Site, weights: Tensor) -> None:
        if site.kind == "self":
            row = weights[0, :, -1].float()  # (H, Tk): the last query (the new token)
            if site.layer < len(self.attention):
                self.attention[site.layer] = row
            else:
                self.attention.append(row)

    @torch.no_grad()
    def step(self, settings: Settings | None = None) -> dict:
        """Take one token; returns it, the distribution it was drawn from and its attention."""
        if self.sequence.done:
            raise ValueError(f"this generation has finished ({self.sequence.finish_reason}); start a new one")
        if settings is not None and settings != self.settings:
            config = settings.config(MAX_STEPS, self.stops)  # checks the values before anything changes
            self.engine.reconfigure(self.sequence, config)
            self.settings, self.config = settings, config
        with self.subject.lock, AttentionTap(self.subject.model, self._sink):
            events = self.engine.step()
        event = next(e for e in events if e.sequence is self.sequence)
        bars = self._bars(event.token)
        if event.token is not None:
            self.tokens.append(self.subject.labels_of([event.token])[0])
        # The rows belong to the last token the model was fed: the new one, unless the sequence
        # finished after taking it (then nothing was fed). The keys are the window's newest tokens.
        fed = self.tokens if event.token is None or not self.sequence.done else self.tokens[:-1]
        keys = self.attention[0].shape[1] if self.attention else 0
        self.attention_labels = fed[-keys:] if keys else []
        return {
            "session": self.id,
            "token": None if event.token is None else {"id": event.token, "label": self.tokens[-1]},
            "tokens": self.tokens,
            "prompt_length": self.prompt_length,
            "finish_reason": self.sequence.finish_reason,
            "bars": bars,
            "attention_query": keys - 1,
            "layers": len(self.attention),
            "settings": vars(self.settings),
        }

    def _bars(self, chosen: int | None) -> list[dict]:
        """The top tokens of the distribution the step drew from, and of the raw model."""
        logits = self.engine.last_logits[:1]  # (1, V) this sequence is the only row
        settings = RowSettings([self.config], logits.shape[-1], logits.device)
        processed = settings.process(logits, [0], None)  # no step-dependent processors are set here
        probs = processed.float().softmax(dim=-1)[0]  # (V,)
        raw = logits.float().softmax(dim=-1)[0]
        values, index = probs.topk(BARS)
        ids = index.tolist()
        if chosen is not None and chosen not in ids:
            ids.append(chosen)  # the drawn token always has a bar
        return [
            {
                "id": i,
                "token": self.subject.labels_of([i])[0],
                "p": float(probs[i]),
                "raw": float(raw[i]),
                "chosen": i == chosen,
            }
            for i in ids
        ]

    def layer_attention(self, layer: int) -> dict:
        """The newest token's weights over every earlier token in ``layer``, all heads ``(H, Tk)``."""
        if not self.attention:
            raise ValueError("take a step first")
        layers = len(self.attention)
        if not -layers <= layer < layers:
            raise ValueError(f"layer {layer} is out of range: the model has {layers} layers")
        weights = self.attention[layer % layers]
        return {
            "layer": layer % layers,
            "heads": weights.shape[0],
            "keys": weights.shape[1],
            "weights": weights.tolist(),
            "tokens": self.attention_labels,
        }


class Steppers:
    """The open steppers of one model, the oldest dropped beyond ``SESSIONS``."""

    def __init__(self):
        self.open: OrderedDict[str, Stepper] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, subject, text: str, settings: Settings) -> Stepper:
        stepper = Stepper(subject, text, settings)
        with self._lock:
            self.open[stepper.id] = stepper
            while len(self.open) > SESSIONS:
                self.open.popitem(last=False)
        return stepper

    def get(self, session: str) -> Stepper:
        with self._lock:
            if session not in self.open:
                raise ValueError(
                    f"no generation {session!r} is open (the explorer keeps the last {SESSIONS}); start a new one"
                )
            self.open.move_to_end(session)
            return self.open[session]

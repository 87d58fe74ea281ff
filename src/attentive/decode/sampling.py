"""Text generation for decoder-only language models: greedy and sampled, batched, streamed.

``generate(model, tokenizer, prompts, ...)`` continues one prompt or a batch of prompts of
different lengths. It runs the model's own forward with ``key_mask`` / ``positions`` / ``cache``
(the same call training makes), so there is one copy of the model's maths:

* **Batching.** Prompts are left-padded so every row's next token sits in the last column.
  A row's positions count only its real tokens (``cumsum(real) - 1``, clamped at 0), and the key
  mask hides the padding, so a padded row computes what the prompt alone would.
* **KV cache.** ``cache="dynamic"`` grows a ``DynamicCache``; ``cache="static"`` preallocates a
  ``StaticCache`` of fixed length, so every decode step has the same shapes (what
  ``torch.compile`` and CUDA graphs need: see ``DecodeSession.forward_step``); ``cache="none"``
  recomputes the whole window each step (the reference the tests compare against).
* **Context window.** The model sees at most ``context`` tokens (default: the model's
  ``max_len``). A prompt longer than that is left-truncated with a warning; when generation
  fills the window, the oldest half is dropped and the rest re-encoded (positions restart at 0),
  so ``max_new_tokens`` may exceed the context.
* **Choosing a token.** Logits pass through the processors in a fixed order: repetition penalty,
  temperature, top-k, top-p; then argmax (``temperature=0``: greedy) or a draw from a
  ``torch.Generator`` seeded with ``seed`` (same seed, same text).
* **Stopping.** A row stops at a stop token (default: the tokenizer's end-of-sequence ids), a
  stop string (in the generated text only), or after ``max_new_tokens``. Neither the stop token
  nor the stop string is part of the returned text.
* **Streaming.** Text arrives piece by piece through ``on_text(row, text)`` or ``stream(...)``.
  Text that could still become a stop string, or that ends inside a multi-byte character, is held
  back until it cannot, so the streamed pieces always join to the returned text.

The model is anything called as ``model(ids, key_mask=, positions=, cache=) -> logits (B, T, V)``
with a ``config`` giving ``max_len``, ``num_layers``, ``num_heads``, ``num_kv_heads``,
``head_dim``/``d_model`` (``DecoderLM``). The tokenizer needs ``encode``/``decode`` and, where
used, ``bos_id``, ``eos_id`` (or ``eos_ids``) and ``pad_id``.

Dimension names: B batch (prompts), N tokens so far (padded prompt + generated), T tokens in the
model's window, L static-cache slots, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..nn.cache import DynamicCache, StaticCache
from ..nn.embedding import OutputProjection
from ..nn.packed import inference_head

CACHES = ("dynamic", "static", "none")
FINISH_REASONS = ("stop_token", "stop_string", "length")


# ----------------------------------------------------------------------------- settings


@dataclass
class GenerationConfig:
    """How to continue a prompt. Every value is checked when the config is made."""

    max_new_tokens: int = 100
    temperature: float = 1.0  # 0 = greedy (argmax); > 1 flatter, < 1 sharper
    top_k: int | None = None  # sample among the k most likely tokens (None: all)
    top_p: float = 1.0  # nucleus: the smallest set of tokens whose probability reaches top_p
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the prompt or output (CTRL)
    stop_tokens: tuple[int, ...] | None = None  # None: the tokenizer's end-of-sequence id(s)
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None  # None: torch's global generator
    cache: str = "dynamic"  # dynamic | static | none
    add_bos: bool = False  # prepend BOS to every prompt (an empty prompt always starts from BOS)
    context: int | None = None  # tokens the model sees at most (None: the model's max_len)

    def __post_init__(self) -> None:
        if self.stop_tokens is not None:
            self.stop_tokens = tuple(int(t) for t in self.stop_tokens)
        if isinstance(self.stop_strings, str):
            self.stop_strings = (self.stop_strings,)
        self.stop_strings = tuple(self.stop_strings)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {self.max_new_tokens!r}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer (or None for no limit), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not (isinstance(self.repetition_penalty, (int, float)) and math.isfinite(self.repetition_penalty)) \
                or self.repetition_penalty <= 0:
            raise ValueError(
                f"repetition_penalty must be a finite number > 0 (1 = off), got {self.repetition_penalty!r}"
            )
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop_strings!r}")
        if self.cache not in CACHES:
            raise ValueError(f"cache must be one of {CACHES}, got {self.cache!r}")
        if self.context is not None and (not isinstance(self.context, int) or self.context < 1):
            raise ValueError(
                f"context must be a positive integer (or None for the model's max_len), got {self.context!r}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **overrides) -> GenerationConfig:
        """A copy with ``overrides``; an unknown name is an error listing the valid ones."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown generation option(s) {unknown}; valid options: {names}")
        return dataclasses.replace(self, **overrides)


# ----------------------------------------------------------------------------- logits processors
# Each takes and returns float logits (B, V); -inf marks a token that can no longer be chosen.


def apply_repetition_penalty(logits: Tensor, seen: Tensor | None, penalty: float) -> Tensor:
    """CTRL (Keskar et al., 2019): divide positive / multiply negative logits of seen tokens."""
    if penalty == 1.0 or seen is None:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)  # seen (B, V) bool


def apply_top_k(logits: Tensor, k: int | None) -> Tensor:
    """Keep the k largest logits per row (ties at the k-th value are kept too)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering (Holtzman et al., 2020): keep the most likely tokens until their
    probabilities sum to at least ``p``; the most likely token always survives."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the better tokens
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def process_logits(logits: Tensor, config: GenerationConfig, seen: Tensor | None = None) -> Tensor:
    """Raw next-token logits (B, V) -> the logits tokens are chosen from (float32)."""
    logits = apply_repetition_penalty(logits.float(), seen, config.repetition_penalty)
    if config.greedy:
        return logits
    logits = logits / config.temperature
    return apply_top_p(apply_top_k(logits, config.top_k), config.top_p)


def choose_tokens(logits: Tensor, config: GenerationConfig, seen: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """Raw logits (B, V) -> next tokens (B,): argmax when greedy, else a seeded draw."""
    logits = process_logits(logits, config, seen)
    if config.greedy:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ----------------------------------------------------------------------------- batching helpers


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[Tensor, Tensor]:
    """Token lists -> ``ids (B, P)`` padded on the left and ``real (B, P)`` bool (True = token)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    real = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
            real[row, width - len(prompt):] = True
    return ids.to(device), real.to(device)


def positions_from_mask(real: Tensor) -> Tensor:
    """Position of each token among its row's real tokens: ``cumsum(real) - 1``, pads at 0."""
    return (real.long().cumsum(dim=-1) - 1).clamp(min=0)  # (B, T)


def model_context(model) -> int:
    config = getattr(model, "config", None)
    if config is None or not getattr(config, "max_len", None):
        raise ValueError(f"{type(model).__name__} has no config.max_len; pass context=N to generate()")
    return int(config.max_len)


def make_static_cache(model, batch_size: int, length: int, device, dtype) -> StaticCache:
    """A ``StaticCache`` shaped for ``model`` (layers, KV heads and head width from its config)."""
    c = model.config
    kv_heads = c.num_kv_heads or c.num_heads
    head_dim = c.head_dim or c.d_model // c.num_heads
    return StaticCache(c.num_layers, batch_size, kv_heads, head_dim, length, dtype=dtype, device=device)


def decode_head(model, device: torch.device, packed: bool | None = None) -> Callable[[Tensor], Tensor] | None:
    """What turns the last hidden state into logits while decoding, or None to call the model whole.

    A model with ``hidden_states`` and an ``OutputProjection`` ``lm_head`` (``DecoderLM``) gets
    its head applied to the last position only, not to every prompt position. ``packed`` uses a
    ``PackedProjection`` copy of the head, whose few-row products run across the cores instead of
    as one single-threaded matrix-vector product (see ``attentive.nn.packed``). By default it is
    used on CPU for heads of ``PACKED_HEAD_MIN_BYTES`` or more (``inference_head``).
    """
    head = getattr(model, "lm_head", None)
    if not (hasattr(model, "hidden_states") and isinstance(head, OutputProjection)):
        return None
    return inference_head(head, device, packed)


def last_logits(model, head: Callable[[Tensor], Tensor] | None, ids: Tensor, **inputs) -> Tensor:
    """Next-token logits ``(B, V)`` after ``ids (B, T)``; ``inputs``: key_mask, positions, cache."""
    if head is None:
        return model(ids, **inputs)[:, -1]
    return head(model.hidden_states(ids, **inputs).hidden[:, -1])


# ----------------------------------------------------------------------------- the decode state


class DecodeSession:
    """The state one batched decode carries between steps: tokens so far, window, cache, masks.

    ``prefill()`` encodes the window and returns the next-token logits; ``step(tokens)`` appends
    one token per row and returns the following logits. With ``cache="static"`` every
    ``step`` is one call of ``forward_step`` on fixed shapes (tokens ``(B, 1)``, positions
    ``(B, 1)``, key mask ``(B, L)``), the function a CUDA-graph runner captures; prefills
    (the first, and after the window slides) have variable length and stay eager.
    """

    def __init__(self, model, ids: Tensor, real: Tensor, *, max_new_tokens: int, context: int, cache: str):
        batch, prompt_len = ids.shape
        self.model, self.cache_kind, self.context = model, cache, context
        self.head = decode_head(model, ids.device)
        capacity = prompt_len + max_new_tokens
        self.ids = torch.zeros((batch, capacity), dtype=torch.long, device=ids.device)  # (B, N_max)
        self.real = torch.zeros((batch, capacity), dtype=torch.bool, device=ids.device)
        self.ids[:, :prompt_len], self.real[:, :prompt_len] = ids, real
        self.length = prompt_len  # columns filled
        self.start = max(0, prompt_len - context)  # first column of the window the model sees
        self.cache = None
        self.key_mask: Tensor | None = None  # static cache: (B, L) over slots
        self.next_position: Tensor | None = None  # (B,)
        if cache == "static":
            param = next(model.parameters())
            slots = min(context, max(capacity - 1, 1))  # tokens ever fed at once stay within this
            self.cache = make_static_cache(model, batch, slots, ids.device, param.dtype)
            self.key_mask = torch.zeros((batch, slots), dtype=torch.bool, device=ids.device)

    @property
    def window(self) -> tuple[Tensor, Tensor]:
        return self.ids[:, self.start:self.length], self.real[:, self.start:self.length]  # (B, T)

    def prefill(self) -> Tensor:
        """Encode the whole window (from scratch) -> next-token logits (B, V)."""
        ids, real = self.window
        positions = positions_from_mask(real)  # (B, T)
        key_mask = real
        if self.cache_kind == "dynamic":
            self.cache = DynamicCache()
        elif self.cache_kind == "static":
            self.cache.reset()
            self.key_mask.zero_()
            self.key_mask[:, :real.shape[1]] = real  # slots past the window stay False
            key_mask = self.key_mask
        self.next_position = real.sum(dim=-1)  # (B,) the next token's position
        with torch.no_grad():
            return last_logits(self.model, self.head, ids, key_mask=key_mask, positions=positions, cache=self.cache)

    def step(self, tokens: Tensor) -> Tensor:
        """Append ``tokens (B,)`` and return the logits (B, V) for the token after them."""
        self.ids[:, self.length] = tokens
        self.real[:, self.length] = True
        self.length += 1
        if self.length - self.start > self.context:  # window full: keep the newest half, re-encode
            self.start = self.length - max(1, self.context // 2)
            return self.prefill()
        if self.cache_kind == "none":
            return self.prefill()
        positions = self.next_position[:, None]  # (B, 1)
        if self.cache_kind == "static":
            self.key_mask[:, self.cache.get_seq_length()] = True
            key_mask = self.key_mask  # (B, L)
        else:
            key_mask = self.real[:, self.start:self.length]  # (B, Tk) cached + new
        logits = self.forward_step(tokens[:, None], positions, key_mask)
        self.next_position = self.next_position + 1
        return logits

    def forward_step(self, tokens: Tensor, positions: Tensor, key_mask: Tensor) -> Tensor:
        """One token per row through the cached model: ``(B, 1)`` ids -> ``(B, V)`` logits."""
        with torch.no_grad():
            return last_logits(self.model, self.head, tokens, key_mask=key_mask, positions=positions,
                               cache=self.cache)


# ----------------------------------------------------------------------------- text streaming


class TextStream:
    """Turns one row's tokens into text pieces, holding back what a stop string could still claim.

    Decoding the whole continuation each time (not token by token) keeps multi-token characters
    and tokenizers that merge across tokens correct; text ending in U+FFFD (an incomplete
    UTF-8 sequence) waits for the next token.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop_strings: Sequence[str] = ()):
        self.decode, self.stop_strings = decode, tuple(stop_strings)
        self.tokens: list[int] = []
        self.text = ""  # the continuation so far (cut at a stop string once one appears)
        self.emitted = 0  # characters of ``text`` handed out
        self.stopped = False

    def push(self, token: int) -> str:
        """Add one token; return the text that is now safe to show (maybe '')."""
        self.tokens.append(token)
        text = self.decode(self.tokens)
        hit = self._find_stop(text)
        if hit is not None:
            self.text, self.stopped = text[:hit], True
            return self._emit(hit)
        self.text = text
        if text.endswith("\ufffd"):
            return ""
        return self._emit(len(text) - self._holdback(text))

    def finish(self) -> str:
        """The held-back rest, at the end of generation."""
        return self._emit(len(self.text))

    def _emit(self, end: int) -> str:
        piece = self.text[self.emitted:end] if end > self.emitted else ""
        self.emitted = max(self.emitted, end)
        return piece

    def _find_stop(self, text: str) -> int | None:
        hits = [i for s in self.stop_strings if (i := text.find(s, max(0, self.emitted - len(s)))) >= 0]
        return min(hits) if hits else None

    def _holdback(self, text: str) -> int:
        """Length of the longest tail of ``text`` that begins some stop string."""
        return max((k for s in self.stop_strings for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


# ----------------------------------------------------------------------------- generate


@dataclass
class TextDelta:
    """One streamed piece: ``row``'s new ``text`` after ``token`` (None for the final flush)."""

    row: int
    token: int | None
    text: str


@dataclass
class GenerationOutput:
    """What ``generate`` returns: one entry per prompt."""

    tokens: list[list[int]]  # generated ids (a stop token is not included)
    texts: list[str] | None  # decoded continuations, cut before any stop string (None: no tokenizer)
    finish_reasons: list[str]  # stop_token | stop_string | length
    prompt_tokens: list[list[int]]  # the ids each prompt became (BOS included)
    logits: list[Tensor] | None = field(default=None, repr=False)  # raw (B, V) per step, if asked

    @property
    def text(self) -> str:
        """The continuation of a single prompt."""
        if self.texts is None or len(self.texts) != 1:
            raise ValueError("`.text` is for one prompt with a tokenizer; use `.texts`")
        return self.texts[0]


def _special(tokenizer, name: str, default=None):
    return getattr(tokenizer, name, default) if tokenizer is not None else default


def _stop_ids(tokenizer) -> tuple[int, ...]:
    ids = _special(tokenizer, "eos_ids")
    if ids is None:
        eos = _special(tokenizer, "eos_id")
        ids = () if eos is None else (eos,)
    return tuple(int(i) for i in ids)


def encode_prompts(tokenizer, prompts, config: GenerationConfig) -> list[list[int]]:
    """Text or id prompts -> id lists, with BOS where asked for (always for an empty prompt)."""
    encoded = []
    for prompt in prompts:
        if isinstance(prompt, str):
            if tokenizer is None:
                raise ValueError("text prompts need a tokenizer; pass token ids instead or give a tokenizer")
            ids = list(tokenizer.encode(prompt))  # a char tokenizer names unknown characters here
        else:
            ids = [int(t) for t in prompt]
        if config.add_bos or not ids:
            bos = _special(tokenizer, "bos_id")
            if bos is None:
                raise ValueError("an empty prompt starts from BOS, but the tokenizer has no bos_id")
            ids = [int(bos)] + ids
        encoded.append(ids)
    return encoded


class _Generation:
    """One run of ``generate``: iterate it for ``TextDelta`` pieces, then read ``output()``."""

    def __init__(self, model, tokenizer, prompts, config: GenerationConfig, output_logits: bool):
        if isinstance(prompts, Tensor):
            prompts = prompts.tolist()  # (T,) one prompt or (B, T) several, as ids
        single = isinstance(prompts, str) or (len(prompts) > 0 and isinstance(prompts[0], int))
        prompts = [prompts] if single else list(prompts)
        if not prompts:
            raise ValueError("no prompts given")
        if config.stop_strings and tokenizer is None:
            raise ValueError("stop strings need a tokenizer to decode the text")
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.prompt_tokens = encode_prompts(tokenizer, prompts, config)
        self.context = config.context or model_context(model)
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        bad = sorted({t for p in self.prompt_tokens for t in p if t < 0 or (vocab is not None and t >= vocab)})
        if bad:
            raise ValueError(f"prompt token id(s) {bad[:10]} are outside the model's vocabulary of {vocab}")
        too_long = [len(p) for p in self.prompt_tokens if len(p) > self.context]
        if too_long:
            warnings.warn(
                f"prompt of {max(too_long)} tokens is longer than the context ({self.context}); "
                f"the model sees only its last {self.context} tokens", stacklevel=3,
            )
        self.stop_ids = set(_stop_ids(tokenizer) if config.stop_tokens is None else config.stop_tokens)
        batch = len(self.prompt_tokens)
        self.tokens: list[list[int]] = [[] for _ in range(batch)]
        self.reasons: list[str] = ["length"] * batch
        self.streams = [TextStream(tokenizer.decode, config.stop_strings) for _ in range(batch)] \
            if tokenizer is not None else None
        self.logits: list[Tensor] | None = [] if output_logits else None

    def __iter__(self) -> Iterator[TextDelta]:
        model, config = self.model, self.config
        was_training = model.training
        model.eval()
        try:
            yield from self._run(model, config)
        finally:
            model.train(was_training)

    def _run(self, model, config: GenerationConfig) -> Iterator[TextDelta]:
        device = next(model.parameters()).device
        pad_id = _special(self.tokenizer, "pad_id", 0)
        pad_id = 0 if pad_id is None else int(pad_id)
        ids, real = left_pad(self.prompt_tokens, pad_id, device)  # (B, P)
        batch = ids.shape[0]
        generator = None
        if config.seed is not None and not config.greedy:
            generator = torch.Generator(device=device).manual_seed(config.seed)
        seen = None
        if config.repetition_penalty != 1.0:
            vocab = model.config.vocab_size
            seen = torch.zeros((batch, vocab), dtype=torch.bool, device=device)  # (B, V)
            for row, prompt in enumerate(self.prompt_tokens):
                seen[row, torch.as_tensor(prompt, dtype=torch.long, device=device)] = True
        done = [False] * batch
        if config.max_new_tokens == 0:
            return
        session = DecodeSession(model, ids, real, max_new_tokens=config.max_new_tokens, context=self.context,
                                cache=config.cache)
        logits = session.prefill()  # (B, V)
        for step in range(config.max_new_tokens):
            if self.logits is not None:
                self.logits.append(logits.detach().clone())
            chosen = choose_tokens(logits, config, seen, generator)  # (B,)
            if seen is not None:
                seen[torch.arange(batch, device=device), chosen] = True
            for row, token in enumerate(chosen.tolist()):
                if done[row]:
                    continue
                if token in self.stop_ids:
                    done[row], self.reasons[row] = True, "stop_token"
                    continue
                self.tokens[row].append(token)
                if self.streams is not None:
                    stream = self.streams[row]
                    yield TextDelta(row, token, stream.push(token))
                    if stream.stopped:
                        done[row], self.reasons[row] = True, "stop_string"
            if all(done) or step == config.max_new_tokens - 1:
                break
            finished = torch.tensor(done, device=device)
            logits = session.step(chosen.masked_fill(finished, pad_id))
        if self.streams is not None:
            for row, stream in enumerate(self.streams):
                rest = stream.finish()
                if rest:
                    yield TextDelta(row, None, rest)

    def output(self) -> GenerationOutput:
        texts = [s.text for s in self.streams] if self.streams is not None else None
        return GenerationOutput(self.tokens, texts, self.reasons, self.prompt_tokens, self.logits)


def _config(config: GenerationConfig | None, options: dict) -> GenerationConfig:
    config = config or GenerationConfig()
    return config.replace(**options) if options else config


def generate(model, tokenizer, prompts, config: GenerationConfig | None = None, *,
             on_text: Callable[[int, str], None] | None = None, output_logits: bool = False,
             **options) -> GenerationOutput:
    """Continue ``prompts`` (a string, a list of strings, or token-id lists) with ``model``.

    ``options`` override fields of ``config`` (``max_new_tokens``, ``temperature``, ``top_k``,
    ``top_p``, ``repetition_penalty``, ``stop_tokens``, ``stop_strings``, ``seed``, ``cache``,
    ``add_bos``, ``context``). ``on_text(row, piece)`` receives the text as it is produced;
    ``output_logits`` keeps the raw next-token logits of every step (for tests and analysis).
    """
    run = _Generation(model, tokenizer, prompts, _config(config, options), output_logits)
    for delta in run:
        if on_text is not None and delta.text:
            on_text(delta.row, delta.text)
    return run.output()


def stream(model, tokenizer, prompts, config: GenerationConfig | None = None, **options) -> Iterator[TextDelta]:
    """``generate`` as an iterator of ``TextDelta`` pieces, for callers that pull text."""
    yield from _Generation(model, tokenizer, prompts, _config(config, options), output_logits=False)

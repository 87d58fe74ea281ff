"""Perplexity of a language model on a text: ``exp(mean negative log-likelihood per token)``.

The text is tokenised and walked in consecutive blocks of the model's context length, so every
token after the first is predicted exactly once, from the tokens before it in its block (the
same measurement as the training task's validation loss). Lower is better; a model that knew
nothing about a vocabulary of V tokens would score V. A model with segment-level recurrence
(``memory_len``, Transformer-XL) reads each block in segments, carrying its memory along.

``stream_perplexity`` reads the whole text as one stream through a KV cache, a chunk at a time,
so a text of any length is scored with bounded memory: a full cache (every earlier token), a
sliding window of the last W tokens, or a window with S attention sinks (StreamingLLM). It keeps
every token's loss and the cache's size after each chunk, for curves against tokens read.

Dimension names: B blocks per batch, T block length, V vocabulary, N tokens in the stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.lm import sequential_blocks
from ..nn.cache import DynamicCache, KVCache, SegmentMemory, SinkCache, check_window


@dataclass
class PerplexityResult:
    loss: float  # mean negative log-likelihood, nats per token
    perplexity: float  # exp(loss)
    tokens: int  # tokens scored (all but the first)
    block_size: int  # context each block had at most (a stream: the tokens it read)
    losses: Tensor | None = field(default=None, repr=False)  # (N - 1,) each token's loss (streams only)
    cache_bytes: list[tuple[int, int]] = field(default_factory=list, repr=False)  # (tokens read, cache bytes)

    @property
    def bits_per_token(self) -> float:
        return self.loss / math.log(2)


def token_losses(
    model: nn.Module, ids: Tensor, targets: Tensor, cache: KVCache | None = None, rows: int = 1024
) -> Tensor:
    """Each target's loss ``(B, T)`` (nats, float32) for ``ids (B, T)`` through ``model.decode``
    (with ``cache``); the head runs ``rows`` positions at a time, so a 16k-token block never holds
    its whole ``(T, V)`` logits."""
    hidden = model.decode(ids, cache=cache).hidden  # (B, T, D)
    out = torch.empty(targets.shape, dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[1], rows):
        logits = model.head(hidden[:, start : start + rows])  # (B, rows, V)
        out[:, start : start + rows] = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), targets[:, start : start + rows], reduction="none"
        )
    return out


def _config(model: nn.Module, name: str):
    return getattr(getattr(model, "config", None), name, None)


def memory_len_of(model: nn.Module) -> int:
    return int(_config(model, "memory_len") or 0)


def perplexity(
    model: nn.Module,
    tokens: Tensor | list[int],
    *,
    block_size: int | None = None,
    batch_size: int = 16,
    segment_len: int | None = None,
) -> PerplexityResult:
    """Score a 1-D token stream; ``block_size`` defaults to the model's context (``max_len``).

    A model with ``memory_len`` M reads each block ``segment_len`` tokens at a time (default M)
    with a segment memory, so its blocks may be longer than its context.
    """
    tokens = _check_tokens(model, tokens)
    context = _config(model, "max_len")
    memory = memory_len_of(model)
    block_size = block_size or context
    if block_size is None:
        raise ValueError(f"{type(model).__name__} has no config.max_len; pass block_size")
    limit = context
    scaling = _config(model, "rope_scaling")
    if limit is not None and isinstance(scaling, dict) and scaling.get("factor"):
        limit = int(limit * float(scaling["factor"]))  # a scaled RoPE reaches factor x its trained context
    if limit is not None and block_size > limit and not memory:
        scaled = f", {limit} with its RoPE scaling" if limit != context else ""
        raise ValueError(f"block_size {block_size} is longer than the model's context ({context}{scaled})")
    segment = segment_len or memory or block_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for x, y in sequential_blocks(tokens, block_size, batch_size):  # (B, T) each
                x, y = x.to(device), y.to(device)
                cache = SegmentMemory(memory) if memory else None
                for start in range(0, x.shape[1], segment):
                    part = slice(start, start + segment)
                    total += token_losses(model, x[:, part], y[:, part], cache).double().sum().item()
                count += y.numel()
    finally:
        model.train(was_training)
    loss = total / count
    return PerplexityResult(loss=loss, perplexity=math.exp(loss), tokens=count, block_size=block_size)


def stream_cache(model: nn.Module, window: int | None = None, sinks: int = 0) -> KVCache:
    """The cache a stream is read through: the model's segment memory (recurrence), a full cache
    (``window`` None), or the last ``window`` tokens plus ``sinks`` first ones."""
    check_window(window, sinks)
    memory = memory_len_of(model)
    if memory:
        if window is not None:
            raise ValueError(
                "a model with segment memory (memory_len) reads a stream through its memory; drop window/sinks"
            )
        return SegmentMemory(memory)
    return DynamicCache() if window is None else SinkCache(window, sinks)


def stream_perplexity(
    model: nn.Module,
    tokens: Tensor | list[int],
    *,
    window: int | None = None,
    sinks: int = 0,
    chunk: int | None = None,
    cache: KVCache | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PerplexityResult:
    """Read ``tokens`` as one stream through a cache (``stream_cache``), ``chunk`` tokens per
    model call, and score every token after the first from everything the cache holds.

    ``chunk`` defaults to 1 with sinks (each token sees exactly the sinks and its last W tokens,
    StreamingLLM's definition), else to the window (exact: a window without sinks is the same in
    chunks), the segment (recurrence) or 512 (full cache). ``progress(read, total)`` is called
    after every chunk.
    """
    tokens = _check_tokens(model, tokens)
    cache = cache if cache is not None else stream_cache(model, window, sinks)
    if chunk is None:
        chunk = (
            (1 if cache.sinks else cache.window)
            if cache.window is not None
            else (getattr(cache, "memory_len", None) or 512)
        )
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    losses = torch.empty(len(tokens) - 1, dtype=torch.float64)
    sizes: list[tuple[int, int]] = []
    try:
        with torch.no_grad():
            for start in range(0, len(tokens) - 1, chunk):
                end = min(start + chunk, len(tokens) - 1)
                x = tokens[start:end][None].to(device)  # (1, chunk)
                y = tokens[start + 1 : end + 1][None].to(device)
                losses[start:end] = token_losses(model, x, y, cache)[0].double().cpu()
                sizes.append((end, cache.nbytes()))
                if progress is not None:
                    progress(end, len(tokens) - 1)
    finally:
        model.train(was_training)
    loss = float(losses.mean())
    return PerplexityResult(
        loss=loss,
        perplexity=math.exp(loss),
        tokens=len(losses),
        block_size=len(tokens),
        losses=losses,
        cache_bytes=sizes,
    )


def _check_tokens(model: nn.Module, tokens: Tensor | list[int]) -> Tensor:
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if tokens.dim() != 1 or len(tokens) < 2:
        raise ValueError(f"perplexity needs a 1-D stream of at least 2 tokens, got shape {tuple(tokens.shape)}")
    vocab = _config(model, "vocab_size")
    if vocab is not None and int(tokens.max()) >= vocab:
        raise ValueError(f"token id {int(tokens.max())} is outside the model's vocabulary of {vocab}")
    return tokens


def text_perplexity(model: nn.Module, tokenizer, text: str, *, stream: bool = False, **options) -> PerplexityResult:
    """Tokenise ``text`` (a char tokenizer names any unknown characters) and score it, in blocks
    or (``stream``, or ``window`` given) as one stream."""
    score = stream_perplexity if stream or options.get("window") is not None else perplexity
    return score(model, tokenizer.encode(text), **options)


def file_perplexity(model: nn.Module, tokenizer, path: str | Path, **options) -> PerplexityResult:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return text_perplexity(model, tokenizer, text, **options)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None

"""Rows decoding together over one KV cache: the one place decoding calls the model.

Every model that generates speaks one protocol: ``model.decode(ids, [memory, memory_key_mask,]
key_mask=, positions=, cache=) -> StackOutput``, ``model.head`` (hidden -> logits) and
``model.cache_layout()`` (an ``nn.cache.CacheLayout``: its layers, key/value heads, head width,
context and vocabulary, which caches are sized from; a model without one is refused). A
decoder-only LM (``DecoderLM``) is an encoder-decoder without the encoder; a translation model
(``EncoderDecoder``) and Whisper (``SpeechModel``) are encoded once by their caller, and their
rows carry the encoder output (``memory``) here.

The rows sit in columns of one window, right-aligned: a shorter prompt is left-padded, the key
mask hides the padding, and a row's positions count only its real tokens
(``cumsum(valid) - 1``), so a padded row computes what it would alone. The window holds at most
``context`` tokens; when a step would overflow it, the newest half is kept and re-encoded
(positions restart at 0), so generation can run past the model's context.

With ``window=W`` (and ``sinks=S``) the batch streams instead (StreamingLLM): keys and values
live in a ``SinkCache`` that keeps the first S and the last W tokens, positions are assigned
within that cache, nothing is ever re-encoded, and memory stays O(S + W) however many tokens
are generated. Rows must have prompts of equal length (no padding) and cannot join a running
batch; a prompt longer than S + W is read W tokens at a time.

How the keys and values of past tokens are kept is the ``cache`` mode:

* ``none``: every step re-encodes the whole window (the reference the tests compare with);
* ``dynamic``: a ``DynamicCache`` grows by one column a step; rows can join (``join``: their
  prompt is encoded apart and the two caches are left-padded to one width) and leave
  (``select``) between steps, which is what serving concurrent requests needs;
* ``static``: a ``StaticCache`` of fixed slots, so every step after the first has the same
  shapes (``torch.compile`` with ``compile=``); the batch is fixed once started;
* ``cuda_graph``: ``static`` with the step recorded once as a CUDA graph and replayed.

Dimension names: R rows, W window width (columns), L static-cache slots, S memory length,
D model width, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..nn.cache import CacheLayout, DynamicCache, SinkCache
from ..nn.packed import inference_head
from .config import STATIC_CACHES, EngineConfig
from .cuda_graph import CUDAGraphStep


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[Tensor, Tensor]:
    """Token lists -> ``ids (R, W)`` padded on the left and ``valid (R, W)`` bool (True = token)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        if len(prompt):
            ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
            valid[row, width - len(prompt) :] = True
    return ids.to(device), valid.to(device)


def positions_from_mask(valid: Tensor) -> Tensor:
    """Position of each token among its row's real tokens: ``cumsum(valid) - 1``, pads at 0."""
    return (valid.long().cumsum(dim=-1) - 1).clamp(min=0)  # (R, W)


def cache_layout(model) -> CacheLayout:
    """The model's own statement of its cache geometry (``model.cache_layout()``)."""
    state = getattr(model, "cache_layout", None)
    if state is None:
        raise ValueError(
            f"{type(model).__name__} does not state its cache layout (a cache_layout() method "
            "returning nn.cache.CacheLayout): it cannot decode token by token"
        )
    return state()


class DecodeBatch:
    """Rows of token ids (and encoder memory) decoding together; see the module docstring.

    ``start(prompts)`` encodes fresh rows and returns their next-token logits ``(R, V)``;
    ``step(tokens)`` appends one token per row and returns the following logits;
    ``select(index)`` keeps (and reorders) rows; ``join(prompts)`` adds rows between steps.
    Settings: an ``EngineConfig`` (checked there), or its fields as keywords.
    """

    def __init__(
        self, model, config: EngineConfig | None = None, *, layout: CacheLayout | None = None, head=None, **options
    ):
        config = config or EngineConfig()
        config = config.replace(**options) if options else config
        layout = layout or cache_layout(model)
        if config.cache == "slots":
            raise ValueError("cache='slots' is SlotBatch's (decode/slots.py); an Engine picks it")
        config = config.resolved(model, layout, slots=False)  # "auto" made concrete
        self.config, self.layout = config, layout
        cache, compile = config.cache, config.compile
        self.window, self.sinks = config.window, config.sinks
        param = next(model.parameters())
        self.model, self.mode, self.pad_id = model, cache, config.pad_id or 0
        self.device, self.dtype = param.device, param.dtype
        if cache == "cuda_graph" and self.device.type != "cuda":
            raise ValueError("cache='cuda_graph' needs the model on a CUDA device")
        self.context = config.context or self.layout.context
        self.head = head if head is not None else inference_head(model.head, self.device, config.packed_head)
        self.compile = compile
        self._static_forward = self._forward_step
        if compile:
            backend = "inductor" if compile is True else compile
            # On CPU the weights are constants of the compiled step (inductor's freezing): no
            # per-token checks of ~400 weight tensors' sizes and strides (SmolLM2-135M fp32: 41 ->
            # 45 tok/s). So a batch reads the weights its model had when the step was compiled:
            # a model changed afterwards (further training) needs a new batch (a new Engine).
            options = {"freezing": True} if compile is True and self.device.type == "cpu" else None
            self._static_forward = torch.compile(
                self._forward_step, fullgraph=True, dynamic=False, backend=backend, options=options
            )
        self.graph = None  # CUDAGraphStep, captured on the first step
        self.cache = None
        self._clear()

    def _clear(self) -> None:
        self.ids = torch.zeros((0, 0), dtype=torch.long, device=self.device)  # (R, capacity)
        self.valid = torch.zeros((0, 0), dtype=torch.bool, device=self.device)  # (R, capacity)
        self.width = 0  # columns in use
        self.next_pos = torch.zeros(0, dtype=torch.long, device=self.device)  # (R,)
        self.memory: Tensor | None = None  # (R, S, D)
        self.memory_key_mask: Tensor | None = None  # (R, S)

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    @property
    def fixed(self) -> bool:
        return self.mode in STATIC_CACHES

    @property
    def streaming(self) -> bool:
        return self.window is not None

    @property
    def joinable(self) -> bool:
        """Rows can join between steps (not a static batch, not a stream of equal-length rows)."""
        return not self.fixed and not self.streaming

    def history(self) -> Tensor:
        """The window's token ids ``(R, W)`` (padding included)."""
        return self.ids[:, : self.width]

    # ------------------------------------------------------------------ rows in
    @torch.no_grad()
    def start(
        self,
        prompts: Sequence[Sequence[int]],
        memory: Tensor | None = None,
        memory_key_mask: Tensor | None = None,
        max_new_tokens: int = 0,
    ) -> Tensor:
        """Replace the batch with ``prompts`` (id lists; ``memory (R, S, D)`` for encoder-decoders)
        and return their next-token logits ``(R, V)``. A static cache is sized for
        ``max_new_tokens`` more tokens (at most the context)."""
        if not prompts:
            raise ValueError("no prompts to decode")
        if self.streaming and len({len(p) for p in prompts}) > 1:
            raise ValueError(
                f"streaming with a window needs prompts of equal length (got lengths "
                f"{sorted({len(p) for p in prompts})}); decode them one at a time"
            )
        ids, valid = left_pad(prompts, self.pad_id, self.device)  # (R, W)
        if ids.shape[1] > self.context and not self.streaming:  # the model sees only the last `context` tokens
            ids, valid = ids[:, -self.context :], valid[:, -self.context :]
        width = ids.shape[1]
        if self.fixed:
            slots = min(self.context, max(width + max_new_tokens - 1, width, 1))
            capacity = slots
        else:
            capacity = max(2 * width, 16)
        self._clear()
        self.ids = torch.full((len(prompts), capacity), self.pad_id, dtype=torch.long, device=self.device)
        self.valid = torch.zeros((len(prompts), capacity), dtype=torch.bool, device=self.device)
        self.ids[:, :width], self.valid[:, :width], self.width = ids, valid, width
        if memory is not None:
            self.memory = memory.to(self.device)
            self.memory_key_mask = _unless_all_true(memory_key_mask)
        if self.fixed:
            self._static_cache(len(prompts), capacity)
        return self._encode()

    @torch.no_grad()
    def join(
        self, prompts: Sequence[Sequence[int]], memory: Tensor | None = None, memory_key_mask: Tensor | None = None
    ) -> Tensor:
        """Add rows between steps; returns the new rows' next-token logits. Their prompts are
        encoded apart, then both windows are left-padded to one width and stacked."""
        if self.rows == 0:
            return self.start(prompts, memory, memory_key_mask)
        if self.fixed:
            raise ValueError(
                f"a {self.mode} cache decodes a fixed batch; use cache='dynamic' to add rows between steps"
            )
        if self.streaming:
            raise ValueError(
                "a streaming batch (window=) holds rows of equal length: rows cannot join it; start a new batch"
            )
        if (memory is None) != (self.memory is None):
            raise ValueError("rows with encoder memory and rows without cannot decode together")
        other = DecodeBatch(self.model, self.config, layout=self.layout, head=self.head)
        logits = other.start(prompts, memory, memory_key_mask)
        width = max(self.width, other.width)
        self._pad_left(width - self.width)
        other._pad_left(width - other.width)
        capacity = max(self.ids.shape[1], other.ids.shape[1])
        self.ids = torch.cat((_widen(self.ids, capacity, self.pad_id), _widen(other.ids, capacity, self.pad_id)))
        self.valid = torch.cat((_widen(self.valid, capacity, False), _widen(other.valid, capacity, False)))
        self.next_pos = torch.cat((self.next_pos, other.next_pos))
        if self.memory is not None:
            length = max(self.memory.shape[1], other.memory.shape[1])
            masks = [
                _pad_to(
                    b.memory_key_mask
                    if b.memory_key_mask is not None
                    else torch.ones(b.memory.shape[:2], dtype=torch.bool, device=self.device),
                    1,
                    length,
                    False,
                )
                for b in (self, other)
            ]
            self.memory = torch.cat((_pad_to(self.memory, 1, length, 0.0), _pad_to(other.memory, 1, length, 0.0)))
            self.memory_key_mask = _unless_all_true(torch.cat(masks))
        if self.cache is not None:
            self.cache.concat(other.cache)
        return logits

    def _pad_left(self, n: int) -> None:
        """Shift every row ``n`` columns right (empty columns on the left)."""
        if n <= 0:
            return
        self._ensure_capacity(self.width + n)
        self.ids[:, n : self.width + n] = self.ids[:, : self.width].clone()
        self.valid[:, n : self.width + n] = self.valid[:, : self.width].clone()
        self.ids[:, :n], self.valid[:, :n] = self.pad_id, False
        self.width += n
        if self.cache is not None:
            self.cache.pad_left(n)

    # ------------------------------------------------------------------ rows out
    def select(self, index: Tensor) -> None:
        """Keep the rows ``index`` (in that order; a row may repeat: beam search). A static batch
        keeps its rows and its buffers' addresses (a captured CUDA graph reads them): it can
        only be reordered, in place, or emptied."""
        index = index.to(self.device)
        if index.numel() == 0:
            self._clear()
            self.cache = None if not self.fixed else self.cache
            return
        if self.fixed:
            self._reorder_in_place(index)
            return
        self.ids, self.valid = self.ids.index_select(0, index), self.valid.index_select(0, index)
        self.next_pos = self.next_pos.index_select(0, index)
        if self.memory is not None:
            self.memory = self.memory.index_select(0, index)
            if self.memory_key_mask is not None:
                self.memory_key_mask = self.memory_key_mask.index_select(0, index)
        if self.cache is not None:
            self.cache.reorder(index)
        self._trim_left()

    def _reorder_in_place(self, index: Tensor) -> None:
        if index.numel() != self.rows:
            raise ValueError(
                f"a {self.mode} batch keeps its {self.rows} rows; it can be reordered, not resized "
                f"(got {index.numel()} rows)"
            )
        for t in (self.ids, self.valid, self.next_pos, self.memory, self.memory_key_mask):
            if t is not None:
                t.copy_(t.index_select(0, index))
        self.cache.reorder(index)

    def _trim_left(self) -> None:
        """Drop leading columns no row uses (they held padding, or rows that left)."""
        used = self.valid[:, : self.width].any(dim=0)  # (W,)
        if self.width == 0 or bool(used[0]):
            return
        first = int(used.nonzero()[0]) if bool(used.any()) else self.width
        self.ids = self.ids[:, first:].contiguous()
        self.valid = self.valid[:, first:].contiguous()
        self.width -= first
        if self.cache is not None:
            self.cache.trim_left(first)

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def step(self, tokens: Tensor) -> Tensor:
        """Append ``tokens (R,)`` and return the logits ``(R, V)`` for the token after them."""
        if tokens.shape != (self.rows,):
            raise ValueError(f"step takes one token per row: expected shape ({self.rows},), got {tuple(tokens.shape)}")
        if self.width == self.context and not self.streaming:  # full: keep the newest half (with this token), re-encode
            keep = max(1, self.context // 2) - 1
            self.ids[:, :keep] = self.ids[:, self.width - keep : self.width].clone()
            self.valid[:, :keep] = self.valid[:, self.width - keep : self.width].clone()
            self.valid[:, keep:] = False
            self.width = keep
            self._append(tokens)
            return self._encode()
        column = self._append(tokens)
        if self.mode == "none":
            return self._encode()
        positions = self.next_pos[:, None].clone()  # (R, 1)
        self.next_pos.add_(1)
        new = self.ids[:, column : column + 1]  # (R, 1)
        if self.fixed:
            if self.graph is None and self.mode == "cuda_graph":
                self.graph = CUDAGraphStep(self)
            before = self.cache.length
            if self.graph is not None:
                logits = self.graph.replay(new, positions)
            else:
                logits = self._static_forward(new, positions, self.valid, self.memory, self.memory_key_mask)
            if self.cache.length == before:  # compiled or replayed code cannot move the host copy
                self.cache.advance(1)
            return logits
        padded = not bool(self.valid[:, : self.width].all())
        return self._logits(new, self.valid[:, : self.width] if padded else None, positions if padded else None)

    def _append(self, tokens: Tensor) -> int:
        """Write ``tokens (R,)`` into the next column; returns that column."""
        if self.streaming and self.width == self.ids.shape[1]:
            self._compact()
        self._ensure_capacity(self.width + 1)
        column = self.width
        self.ids[:, column] = tokens.to(self.device)
        self.valid[:, column] = True
        self.width += 1
        return column

    def _forward_step(
        self, tokens: Tensor, positions: Tensor, key_mask: Tensor, memory: Tensor | None, memory_key_mask: Tensor | None
    ) -> Tensor:
        """One token per row through the static cache, every shape fixed: ``(R, 1)`` ids -> ``(R, V)``."""
        return self._logits(tokens, key_mask, positions, memory, memory_key_mask)

    def _compact(self) -> None:
        """Streaming: keep only the columns the cache still holds (the first S and the last W), so
        the token buffer stays bounded too."""
        keep = self.sinks + self.window
        if self.width <= keep:
            return
        tail = self.ids[:, self.width - self.window : self.width].clone()
        self.ids[:, self.sinks : keep] = tail
        self.valid[:, :keep] = True
        self.valid[:, keep:] = False
        self.width = keep

    def _stream(self) -> Tensor:
        """Streaming: read the prompt through a fresh sink cache, a window at a time."""
        self.cache = SinkCache(self.window, self.sinks)
        ids = self.ids[:, : self.width]  # (R, W) equal-length rows: no padding
        first = min(ids.shape[1], self.sinks + self.window)  # all at once: nothing is evicted yet
        logits = self._logits(ids[:, :first], None, None)
        for start in range(first, ids.shape[1], self.window):
            logits = self._logits(ids[:, start : start + self.window], None, None)
        self.next_pos = torch.full((self.rows,), self.width, dtype=torch.long, device=self.device)
        return logits

    def _encode(self) -> Tensor:
        """Encode the whole window from scratch -> next-token logits ``(R, V)``."""
        if self.streaming:
            return self._stream()
        ids, valid = self.ids[:, : self.width], self.valid[:, : self.width]  # (R, W)
        self.next_pos = valid.sum(dim=-1)  # (R,) the next token's position
        padded = not bool(valid.all())
        positions = positions_from_mask(valid) if padded else None
        if self.mode == "dynamic":
            self.cache = DynamicCache()
        elif self.fixed:
            self.cache.reset()
            return self._logits(ids, self.valid, positions_from_mask(valid))
        return self._logits(ids, valid if padded else None, positions)

    def _logits(
        self,
        ids: Tensor,
        key_mask: Tensor | None,
        positions: Tensor | None,
        memory: Tensor | None = None,
        memory_key_mask: Tensor | None = None,
    ) -> Tensor:
        """The model over ``ids (R, T)`` with the batch's cache; the head on the last position only."""
        memory = self.memory if memory is None else memory
        memory_key_mask = self.memory_key_mask if memory_key_mask is None else memory_key_mask
        if memory is not None:
            out = self.model.decode(
                ids, memory, memory_key_mask, key_mask=key_mask, positions=positions, cache=self.cache
            )
        else:
            out = self.model.decode(ids, key_mask=key_mask, positions=positions, cache=self.cache)
        return self.head(out.hidden[:, -1])  # (R, V)

    # ------------------------------------------------------------------ buffers
    def _static_cache(self, rows: int, slots: int) -> None:
        """A static cache for ``rows`` x ``slots``, shaped by the model's layout; reused (same
        addresses) when the shape repeats."""
        if self.cache is None or tuple(self.cache.keys.shape) != self.layout.static_shape(rows, slots):
            self.cache = self.layout.static_cache(rows, slots, dtype=self.dtype, device=self.device)
            self.graph = None

    def _ensure_capacity(self, columns: int) -> None:
        if columns <= self.ids.shape[1]:
            return
        if self.fixed:
            raise ValueError(f"the static cache has {self.ids.shape[1]} slots; {columns} tokens do not fit")
        grow = max(columns, 2 * self.ids.shape[1])
        self.ids = _widen(self.ids, grow, self.pad_id)
        self.valid = _widen(self.valid, grow, False)


def _unless_all_true(mask: Tensor | None) -> Tensor | None:
    """A memory mask that hides nothing is left out, so attention takes its unmasked path."""
    return None if mask is None or bool(mask.all()) else mask


def _widen(t: Tensor, columns: int, fill) -> Tensor:
    """``t (R, C)`` with columns added on the right up to ``columns``."""
    if t.shape[1] >= columns:
        return t
    out = torch.full((t.shape[0], columns), fill, dtype=t.dtype, device=t.device)
    out[:, : t.shape[1]] = t
    return out


def _pad_to(t: Tensor, dim: int, length: int, fill) -> Tensor:
    """``t`` padded with ``fill`` along ``dim`` (on the right) to ``length``."""
    if t.shape[dim] >= length:
        return t
    shape = list(t.shape)
    shape[dim] = length - t.shape[dim]
    return torch.cat((t, torch.full(shape, fill, dtype=t.dtype, device=t.device)), dim=dim)

"""Key/value caches for incremental decoding.

Each self-attention layer calls ``cache.update(layer_idx, k, v)`` with the keys/values of the
new tokens and gets back all keys/values to attend to. Cross-attention layers keep the
projected encoder memory with ``set_cross`` / ``get_cross``, so an encoder-decoder (translation,
Whisper) and a decoder-only model (language models) decode through the same interface. The
stack asks the cache where the new tokens go (``slots``) and how many keys attention will see
(``key_length``); it never looks at which kind of cache it has.

* ``DynamicCache`` grows by concatenation: simple, any length; rows can leave (``reorder``) and
  join (``pad_left`` + ``concat``) between steps, as a server adding requests needs.
* ``StaticCache`` is preallocated to ``max_len`` slots and written in place at a position held
  in a device tensor: every step has the same shapes and the same memory addresses, as
  ``torch.compile`` and CUDA graphs need. Unfilled slots lie in the future and the causal
  mask hides them.
* ``SlotCache`` is a static buffer of rows ("slots") that each hold their own sequence and
  length: a decoding step writes every row's new key at that row's own position, so rows of
  different lengths decode together with fixed shapes, and a row can be refilled (a new
  request) while the others run. The key mask, not the causal mask, says which slots a row
  sees. A row's prompt is written through ``StaticCache.over`` (one row's view, its own
  position), so prefill and steps share the buffer.

Context memory (bounded caches, and Transformer-XL's recurrence) uses the same interface:

* ``SlidingWindowCache(window, sinks=0)`` keeps the last W positions (and the first S): memory
  O(W + S) however long the stream. Positions stay absolute; ``key_slots`` tells the stack the
  kept keys' positions, so the banded mask and ALiBi / T5 biases see the right distances.
* ``SinkCache(window, sinks)`` (StreamingLLM) keeps the same keys but assigns positions within
  the cache (a new token's position is its index in the cache), so positions never pass S + W
  and a model runs past its training length. Keys that move left when the middle is evicted are
  rotated by the shift through the positional module (``shift_keys``: a rotation for RoPE).
* ``SegmentMemory(M)`` (Transformer-XL) holds, per layer, the last M attention inputs of the
  previous segments, detached; attention projects keys and values from memory + segment
  (``projects_inputs``/``inputs``), and ``slots`` put the memory before the segment.

A cache says what it keeps with ``window`` / ``sinks`` (the stack masks keys outside the
window) and where its keys sit with ``key_slots``; ``check_window`` is the one check of a
window and its sinks, for the caches and for everything that will build one (decoding
settings, perplexity streams).

A model that decodes token by token states its cache geometry as a ``CacheLayout`` (layers,
key/value heads, head width, context, vocabulary): decoding sizes its caches from that alone.

Dimension names: B batch, Hkv key/value heads, T new tokens, Tk cached + new, S memory length,
Dh head width, D model width, M segment-memory length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def check_window(window: int | None, sinks: int = 0) -> None:
    """Raise a one-line ValueError unless ``window`` (tokens kept, or None: all) and ``sinks``
    (first tokens kept besides the window) make a bounded cache."""
    if window is None:
        if sinks:
            raise ValueError(f"sinks={sinks} needs a window (the recent tokens kept besides the sinks)")
        return
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer (the tokens kept), or None, got {window!r}")
    if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
        raise ValueError(f"sinks must be an integer >= 0, got {sinks!r}")
    if sinks > window:
        raise ValueError(f"sinks ({sinks}) must not exceed the window ({window})")


@dataclass(frozen=True)
class CacheLayout:
    """A decoder's cache geometry, stated by its model (``model.cache_layout()``): per layer,
    ``kv_heads`` keys and values of ``head_dim`` per token; at most ``context`` positions;
    ``vocab`` next-token logits; ``cross_attention``: it reads an encoder's output (its rows
    carry that memory). Decoding reads this, never the model's config."""

    layers: int
    kv_heads: int
    head_dim: int
    context: int
    vocab: int
    cross_attention: bool = False

    def __post_init__(self) -> None:
        for name in ("layers", "kv_heads", "head_dim", "context", "vocab"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CacheLayout.{name} must be a positive integer, got {value!r}")

    def static_shape(self, rows: int, slots: int) -> tuple[int, int, int, int, int]:
        """The shape of a ``StaticCache``'s keys (and values) for ``rows`` x ``slots``."""
        return (self.layers, rows, self.kv_heads, slots, self.head_dim)

    def static_cache(self, rows: int, slots: int, dtype: torch.dtype = torch.float32, device=None) -> StaticCache:
        return StaticCache(self.layers, rows, self.kv_heads, self.head_dim, slots, dtype=dtype, device=device)


class KVCache:
    """Interface shared by all caches, with cross-attention storage."""

    fixed_shape = False  # True: keys always have ``max_len`` slots (a static cache)
    window: int | None = None  # keys further back than this many positions are gone (the stack masks them)
    sinks: int = 0  # the first ``sinks`` slots stay visible beyond the window
    projects_inputs = False  # True: attention projects keys/values from ``inputs()`` (segment memory)

    def __init__(self) -> None:
        self._cross: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def get_seq_length(self) -> int:
        """Number of slots already filled (taken before the new tokens are added)."""
        raise NotImplementedError

    def slots(self, q_len: int, device=None) -> Tensor:
        """Slots ``(T,)`` the next ``q_len`` tokens are written to (and whose causal mask they get)."""
        past = self.get_seq_length()
        return torch.arange(past, past + q_len, device=device)

    def key_length(self, q_len: int) -> int:
        """Length of the keys ``update`` returns for ``q_len`` new tokens."""
        return self.get_seq_length() + q_len

    def key_slots(self, q_len: int, device=None) -> Tensor:
        """Slots ``(Tk,)`` of the keys ``update`` returns (their positions for masks and biases)."""
        return torch.arange(self.key_length(q_len), device=device)

    def bind(self, positional) -> None:
        """The stack hands over its positional module (a cache that moves keys asks it how)."""

    def inputs(self, layer_idx: int, x: Tensor) -> Tensor:
        """``projects_inputs`` caches: the attention input ``x (B, T, D)`` with the memory before it."""
        raise NotImplementedError(f"{type(self).__name__} stores keys and values; it has no inputs()")

    def nbytes(self) -> int:
        """Bytes the cached tensors occupy (keys, values, memories; cross-attention included)."""
        tensors = [t for pair in self._cross.values() for t in pair] + list(self._tensors())
        return sum(t.numel() * t.element_size() for t in tensors)

    def _tensors(self):
        return ()

    def reset(self) -> None:
        """Forget everything: the next update starts at slot 0."""
        self._cross.clear()

    def has_cross(self, layer_idx: int) -> bool:
        return layer_idx in self._cross

    def get_cross(self, layer_idx: int) -> tuple[Tensor, Tensor]:
        return self._cross[layer_idx]

    def set_cross(self, layer_idx: int, k: Tensor, v: Tensor) -> None:
        self._cross[layer_idx] = (k, v)

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search, finished rows leaving): every cached tensor becomes ``t[index]``."""
        raise NotImplementedError


class DynamicCache(KVCache):
    """Grows by one concatenation per step."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if layer_idx == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        elif layer_idx < len(self.keys):
            self.keys[layer_idx] = torch.cat((self.keys[layer_idx], k), dim=2)  # (B, Hkv, Tk, Dh)
            self.values[layer_idx] = torch.cat((self.values[layer_idx], v), dim=2)
        else:
            raise ValueError(f"cache layers must be filled in order: got layer {layer_idx}, have {len(self.keys)}")
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def _tensors(self):
        return self.keys + self.values

    def reset(self) -> None:
        super().reset()
        self.keys, self.values = [], []

    def reorder(self, index: Tensor) -> None:
        self._cross = {i: (k.index_select(0, index), v.index_select(0, index)) for i, (k, v) in self._cross.items()}
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]

    def trim_left(self, n: int) -> None:
        """Drop the ``n`` oldest slots of every row (slots no row attends to any more)."""
        if n > 0:
            self.keys = [k[:, :, n:] for k in self.keys]
            self.values = [v[:, :, n:] for v in self.values]

    def pad_left(self, n: int) -> None:
        """Put ``n`` empty slots before the oldest one (the key mask must hide them)."""
        if n > 0:
            self.keys = [_pad(k, 2, n, left=True) for k in self.keys]
            self.values = [_pad(v, 2, n, left=True) for v in self.values]

    def concat(self, other: DynamicCache) -> None:
        """Append ``other``'s rows below this cache's rows. Both must have the same number of
        slots; cross-attention memories of different lengths are padded to the longer one on the
        right (the memory mask must hide the padding)."""
        if self.get_seq_length() != other.get_seq_length() or len(self.keys) != len(other.keys):
            raise ValueError(
                f"cannot join caches of {self.get_seq_length()} and {other.get_seq_length()} slots "
                f"({len(self.keys)} and {len(other.keys)} layers): pad them to one length first"
            )
        self.keys = [torch.cat((a, b), dim=0) for a, b in zip(self.keys, other.keys)]
        self.values = [torch.cat((a, b), dim=0) for a, b in zip(self.values, other.values)]
        if set(self._cross) != set(other._cross):
            raise ValueError("cannot join a cache holding encoder memory with one that holds none")
        for i, (k, v) in self._cross.items():
            k2, v2 = other._cross[i]
            width = max(k.shape[2], k2.shape[2])  # (B, Hkv, S, Dh)
            self._cross[i] = (
                torch.cat((_pad(k, 2, width - k.shape[2]), _pad(k2, 2, width - k2.shape[2]))),
                torch.cat((_pad(v, 2, width - v.shape[2]), _pad(v2, 2, width - v2.shape[2]))),
            )


class StaticCache(KVCache):
    """Preallocated ``(num_layers, B, Hkv, max_len, Dh)`` buffers, written in place.

    The write position lives in a device tensor (``position``) that the last layer's update
    advances in place, so a captured CUDA graph replays correctly step after step. A host copy
    (``length``) is kept beside it for bounds checks and ``get_seq_length``; code that runs
    compiled or as a replayed graph cannot move the host copy, so its caller does, with ``advance``.
    """

    fixed_shape = True

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        shape = (num_layers, batch_size, num_kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        # Without gradients each layer writes through a view taken once here: under torch.compile
        # a write into a fresh ``self.keys[layer_idx]`` is functionalised into a copy of the whole
        # all-layer buffer per layer and step (3.4 GB a step for SmolLM2 at batch 16); a write into
        # a view taken beforehand stays in place. (With gradients a view made without them may not
        # be written, so that path takes a fresh view.)
        with torch.no_grad():
            self._layer_keys = [self.keys[i] for i in range(num_layers)]
            self._layer_values = [self.values[i] for i in range(num_layers)]
        self.num_layers, self.max_len = num_layers, max_len
        self.position = torch.zeros((), dtype=torch.long, device=self.keys.device)  # next slot to write
        self.length = 0  # host copy of ``position``
        self._write: Tensor | None = None  # the slots of this step's tokens (until the last layer has written)

    @classmethod
    def over(cls, keys: Tensor, values: Tensor, position: int) -> StaticCache:
        """A static cache over existing buffers ``(layers, B, Hkv, max_len, Dh)`` (views into a larger
        one: a ``SlotCache``'s row), its next write at ``position``; writes land in those buffers."""
        cache = cls.__new__(cls)
        KVCache.__init__(cache)
        cache.keys, cache.values = keys, values
        with torch.no_grad():
            cache._layer_keys = [keys[i] for i in range(keys.shape[0])]
            cache._layer_values = [values[i] for i in range(values.shape[0])]
        cache.num_layers, cache.max_len = keys.shape[0], keys.shape[3]
        cache.position = torch.tensor(position, dtype=torch.long, device=keys.device)
        cache.length, cache._write = position, None
        return cache

    def key_length(self, q_len: int) -> int:
        return self.max_len

    def slots(self, q_len: int, device=None) -> Tensor:
        """``(T,)`` slots from the device position, no host sync; computed once per step."""
        if self._write is None or self._write.numel() != q_len:
            self._write = self.position + torch.arange(q_len, device=self.position.device)
        return self._write

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        new = k.shape[2]
        host = not (torch.compiler.is_compiling() or (self.keys.is_cuda and torch.cuda.is_current_stream_capturing()))
        if layer_idx == 0:
            if host and self.length + new > self.max_len:
                raise ValueError(f"static cache is full: {self.length} + {new} tokens > max_len {self.max_len}")
        slots = self.slots(new)
        if torch.is_grad_enabled():
            keys, values = self.keys[layer_idx], self.values[layer_idx]  # (B, Hkv, max_len, Dh)
        else:
            keys, values = self._layer_keys[layer_idx], self._layer_values[layer_idx]
        keys.index_copy_(2, slots, k.to(keys.dtype))
        values.index_copy_(2, slots, v.to(values.dtype))
        if layer_idx == self.num_layers - 1:
            self._write = None  # the next step's slots follow the new position
            self.position.add_(new)
            if host:
                self.length += new
        return keys, values

    def get_seq_length(self) -> int:
        return self.length

    def _tensors(self):
        return (self.keys, self.values)

    def advance(self, new: int) -> None:
        """The host copy follows a replayed graph that wrote ``new`` tokens (checked against the size)."""
        if self.length + new > self.max_len:
            raise ValueError(f"static cache is full: {self.length} + {new} tokens > max_len {self.max_len}")
        self.length += new

    def reset(self) -> None:
        super().reset()
        self.position.zero_()
        self.length = 0
        self._write = None

    def reorder(self, index: Tensor) -> None:
        """Rows are gathered in place (the buffers keep their addresses for a captured graph), so
        the batch size cannot change."""
        if index.numel() != self.keys.shape[1]:
            raise ValueError(
                f"a static cache keeps its batch of {self.keys.shape[1]} rows; got {index.numel()} "
                "(use a dynamic cache for batches that shrink or grow)"
            )
        self.keys.copy_(self.keys.index_select(1, index))
        self.values.copy_(self.values.index_select(1, index))
        for k, v in self._cross.values():
            k.copy_(k.index_select(0, index))
            v.copy_(v.index_select(0, index))


class SlotCache(KVCache):
    """Rows of a static buffer ``(layers, R, Hkv, L, Dh)``, each at its own length: one decoding
    step writes row r's new key and value at slot ``write_at[r]`` (a device tensor the caller
    fills before the step, so a compiled step reads it as an input). Every row's attention sees
    all L slots, and the key mask the caller gives hides the ones a row has not filled; so
    ``slots`` puts the queries last (the causal mask hides nothing). Only single-token steps:
    a prompt is written through ``StaticCache.over`` on its row."""

    fixed_shape = True

    def __init__(self, layer_keys: list[Tensor], layer_values: list[Tensor], write_at: Tensor) -> None:
        """``layer_keys[i]`` / ``layer_values[i]``: layer i's ``(R, Hkv, L, Dh)`` buffers, views taken
        before any compiled step (a write into a view made inside it would be functionalised into a
        copy of the whole buffer; see ``StaticCache``)."""
        super().__init__()
        self._layer_keys, self._layer_values, self.write_at = list(layer_keys), list(layer_values), write_at
        rows, kv_heads, self.max_len, _ = layer_keys[0].shape
        self.num_layers = len(layer_keys)
        self._rows = torch.arange(rows, device=write_at.device)[:, None]  # (R, 1)
        self._heads = torch.arange(kv_heads, device=write_at.device)[None, :]  # (1, Hkv)

    def key_length(self, q_len: int) -> int:
        return self.max_len

    def slots(self, q_len: int, device=None) -> Tensor:
        return torch.arange(self.max_len - q_len, self.max_len, device=device)

    def get_seq_length(self) -> int:
        return self.max_len

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if k.shape[2] != 1:
            raise ValueError(f"a slot cache takes one new token per row a step, got {k.shape[2]}")
        keys, values = self._layer_keys[layer_idx], self._layer_values[layer_idx]  # (R, Hkv, L, Dh)
        at = self.write_at[:, None]  # (R, 1)
        keys.index_put_((self._rows, self._heads, at), k[:, :, 0].to(keys.dtype))  # (R, Hkv, Dh) at each row's slot
        values.index_put_((self._rows, self._heads, at), v[:, :, 0].to(values.dtype))
        return keys, values

    def _tensors(self):
        return (*self._layer_keys, *self._layer_values)

    def reorder(self, index: Tensor) -> None:
        raise ValueError("a slot cache's rows stay where they are; its owner maps requests to slots")


class SlidingWindowCache(KVCache):
    """Keeps the keys/values of the last ``window`` positions and of the first ``sinks``.

    After any step it holds at most ``sinks + window`` entries (exactly that many once the
    stream is that long). ``update`` returns the kept keys plus the new ones: the stored ones no
    new query can see are dropped first, and the stack's banded mask (``window``, ``sinks``)
    hides the rest that lie outside a query's window, so a chunk of several new tokens is
    computed exactly as the masked full pass computes it. Positions are absolute (the n-th token
    is at position n, as without a cache).
    """

    def __init__(self, window: int, sinks: int = 0) -> None:
        super().__init__()
        if window is None:
            raise ValueError("window must be a positive integer (the tokens kept), got None")
        check_window(window, sinks)
        self.window, self.sinks = window, sinks
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []
        self.seen = 0  # tokens written so far
        self.positions = torch.zeros(0, dtype=torch.long)  # (n,) absolute position of each stored key
        self._step: tuple[int, int, int, int] | None = None  # this step's (s, dropped, s_after, keep_from)

    # -- bookkeeping shared by every layer of one step
    def _stored_sinks(self) -> int:
        return min(self.sinks, self.seen)

    def _dropped(self) -> int:
        """Stored non-sink keys the first new query cannot see (they lie W or more positions back)."""
        recent = len(self.positions) - self._stored_sinks()
        return max(0, recent - (self.window - 1))

    def get_seq_length(self) -> int:
        return self.seen

    def key_length(self, q_len: int) -> int:
        return len(self.positions) - self._dropped() + q_len

    def _key_positions(self, q_len: int) -> Tensor:
        """Absolute positions ``(Tk,)`` of the keys ``update`` returns: sinks, kept, new."""
        s, dropped = self._stored_sinks(), self._dropped()
        new = torch.arange(self.seen, self.seen + q_len)
        return torch.cat((self.positions[:s], self.positions[s + dropped :], new))

    def key_slots(self, q_len: int, device=None) -> Tensor:
        return self._key_positions(q_len).to(device)

    def _plan(self, q_len: int) -> tuple[int, int, int, int]:
        """(sinks stored, dropped before attention, sinks after, first kept non-sink after) for a
        step of ``q_len`` tokens; commits the step's positions."""
        s, dropped = self._stored_sinks(), self._dropped()
        positions = self._key_positions(q_len)
        self.seen += q_len
        s_after = self._stored_sinks()
        keep_from = max(s_after, len(positions) - self.window)
        self.positions = torch.cat((positions[:s_after], positions[keep_from:]))
        return s, dropped, s_after, keep_from

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if layer_idx == 0:
            self._step = self._plan(k.shape[2])
        elif layer_idx > len(self.keys) or self._step is None:
            raise ValueError(f"cache layers must be filled in order: got layer {layer_idx}, have {len(self.keys)}")
        s, dropped, s_after, keep_from = self._step
        if layer_idx < len(self.keys):
            old_k, old_v = self.keys[layer_idx], self.values[layer_idx]
            k = torch.cat((old_k[:, :, :s], old_k[:, :, s + dropped :], k), dim=2)  # (B, Hkv, Tk, Dh)
            v = torch.cat((old_v[:, :, :s], old_v[:, :, s + dropped :], v), dim=2)
        kept_k = torch.cat((k[:, :, :s_after], k[:, :, keep_from:]), dim=2)  # (B, Hkv, <= S + W, Dh)
        kept_v = torch.cat((v[:, :, :s_after], v[:, :, keep_from:]), dim=2)
        if layer_idx == len(self.keys):
            self.keys.append(kept_k)
            self.values.append(kept_v)
        else:
            self.keys[layer_idx], self.values[layer_idx] = kept_k, kept_v
        return self._read(k), v

    def _read(self, k: Tensor) -> Tensor:
        """The keys attention sees (a subclass may move them)."""
        return k

    def _tensors(self):
        return self.keys + self.values

    def reset(self) -> None:
        super().reset()
        self.keys, self.values, self.seen = [], [], 0
        self.positions = torch.zeros(0, dtype=torch.long)
        self._step = None

    def reorder(self, index: Tensor) -> None:
        self._cross = {i: (k.index_select(0, index), v.index_select(0, index)) for i, (k, v) in self._cross.items()}
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]


class SinkCache(SlidingWindowCache):
    """StreamingLLM: the first ``sinks`` tokens plus the last ``window``, with positions assigned
    within the cache: a new token's position is its index among the keys attention sees, so
    positions never pass ``sinks + window`` however long the stream runs.

    When the middle is evicted the kept keys move left. Each key is stored as it was rotated when
    it arrived and, when read, turned by how far it has moved since (``positional.shift_keys``),
    so a key is rotated once from its original, never step after step (no drift over a long
    stream). For ALiBi and T5 biases the stack computes the bias from the in-cache positions;
    positions added to the embedding cannot move (their keys keep what they were given).
    One token per step is StreamingLLM exactly; a chunk of several tokens sees the same keys as
    token by token, but its later queries see the sinks a few positions further away.
    """

    def __init__(self, window: int, sinks: int = 4) -> None:
        super().__init__(window, sinks)
        self.rotated_at = torch.zeros(0, dtype=torch.long)  # (n,) the position each stored key was rotated at
        self.positional = None
        self._shift: Tensor | None = None  # (Tk,) this step's key moves

    def bind(self, positional) -> None:
        self.positional = positional

    def get_seq_length(self) -> int:
        return len(self.positions)

    def slots(self, q_len: int, device=None) -> Tensor:
        first = len(self.positions) - self._dropped()
        return torch.arange(first, first + q_len, device=device)

    def key_slots(self, q_len: int, device=None) -> Tensor:
        return torch.arange(self.key_length(q_len), device=device)

    def _plan(self, q_len: int) -> tuple[int, int, int, int]:
        s, dropped = self._stored_sinks(), self._dropped()
        new = self.slots(q_len)  # the new keys are rotated at their slots
        rotated_at = torch.cat((self.rotated_at[:s], self.rotated_at[s + dropped :], new))  # (Tk,)
        self._shift = torch.arange(len(rotated_at)) - rotated_at  # <= 0: how far each key has moved left
        plan = super()._plan(q_len)
        _, _, s_after, keep_from = plan
        self.rotated_at = torch.cat((rotated_at[:s_after], rotated_at[keep_from:]))
        return plan

    def _read(self, k: Tensor) -> Tensor:
        moved = self._shift.nonzero()
        if self.positional is None or moved.numel() == 0:
            return k
        first, last = int(moved[0]), int(moved[-1]) + 1  # the moved keys are one run (after the sinks)
        return torch.cat(
            (k[:, :, :first], self.positional.shift_keys(k[:, :, first:last], self._shift[first:last]), k[:, :, last:]),
            dim=2,
        )

    def reset(self) -> None:
        super().reset()
        self.rotated_at = torch.zeros(0, dtype=torch.long)
        self._shift = None


class SegmentMemory(KVCache):
    """Transformer-XL's segment-level recurrence: each layer attends over the last ``memory_len``
    inputs of the previous segments (detached: no gradient flows into them) and its own segment.

    Attention projects keys and values from ``inputs(layer, x)`` = memory + segment, the queries
    from the segment alone. Slots put the memory before the segment (the segment's queries at
    ``M' .. M' + T - 1``, keys at ``0 .. M' + T - 1`` for M' remembered positions), so RoPE and
    relative biases see consistent distances across segments. The memory is the attention input
    (after a pre-LN norm), which is the hidden state the paper stores, normalised.
    """

    projects_inputs = True

    def __init__(self, memory_len: int) -> None:
        super().__init__()
        if isinstance(memory_len, bool) or not isinstance(memory_len, int) or memory_len < 1:
            raise ValueError(f"memory_len must be a positive integer, got {memory_len!r}")
        self.memory_len = memory_len
        self.memory: list[Tensor] = []  # per layer (B, M', D)

    def get_seq_length(self) -> int:
        return self.memory[0].shape[1] if self.memory else 0

    def inputs(self, layer_idx: int, x: Tensor) -> Tensor:
        if layer_idx < len(self.memory):
            memory = self.memory[layer_idx]
            if memory.shape[0] != x.shape[0]:
                raise ValueError(
                    f"segment memory holds {memory.shape[0]} rows, the segment has {x.shape[0]}; "
                    "reset() the memory when the batch changes"
                )
            source = torch.cat((memory.to(x.dtype), x), dim=1)  # (B, M' + T, D)
            self.memory[layer_idx] = source[:, -self.memory_len :].detach()
        elif layer_idx == len(self.memory):
            source = x
            self.memory.append(x[:, -self.memory_len :].detach())
        else:
            raise ValueError(f"memory layers must be filled in order: got layer {layer_idx}, have {len(self.memory)}")
        return source

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        raise TypeError("SegmentMemory gives attention its inputs (inputs()); it does not store keys")

    def _tensors(self):
        return self.memory

    def reset(self) -> None:
        super().reset()
        self.memory = []

    def reorder(self, index: Tensor) -> None:
        self.memory = [m.index_select(0, index) for m in self.memory]


def _pad(t: Tensor, dim: int, n: int, left: bool = False) -> Tensor:
    """``t`` with ``n`` zeros added along ``dim`` (on the right, or the left)."""
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    zeros = t.new_zeros(shape)
    return torch.cat((zeros, t) if left else (t, zeros), dim=dim)

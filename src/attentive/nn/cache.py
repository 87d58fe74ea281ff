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

Dimension names: B batch, Hkv key/value heads, T new tokens, Tk cached + new, S memory length,
Dh head width.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Interface shared by all caches, with cross-attention storage."""

    fixed_shape = False  # True: keys always have ``max_len`` slots (a static cache)

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
            raise ValueError(f"cannot join caches of {self.get_seq_length()} and {other.get_seq_length()} slots "
                             f"({len(self.keys)} and {len(other.keys)} layers): pad them to one length first")
        self.keys = [torch.cat((a, b), dim=0) for a, b in zip(self.keys, other.keys)]
        self.values = [torch.cat((a, b), dim=0) for a, b in zip(self.values, other.values)]
        if set(self._cross) != set(other._cross):
            raise ValueError("cannot join a cache holding encoder memory with one that holds none")
        for i, (k, v) in self._cross.items():
            k2, v2 = other._cross[i]
            width = max(k.shape[2], k2.shape[2])  # (B, Hkv, S, Dh)
            self._cross[i] = (torch.cat((_pad(k, 2, width - k.shape[2]), _pad(k2, 2, width - k2.shape[2]))),
                              torch.cat((_pad(v, 2, width - v.shape[2]), _pad(v2, 2, width - v2.shape[2]))))


class StaticCache(KVCache):
    """Preallocated ``(num_layers, B, Hkv, max_len, Dh)`` buffers, written in place.

    The write position lives in a device tensor (``position``) that the last layer's update
    advances in place, so a captured CUDA graph replays correctly step after step. A host copy
    (``length``) is kept beside it for bounds checks and ``get_seq_length``; code that runs
    compiled or as a replayed graph cannot move the host copy, so its caller does, with ``advance``.
    """

    fixed_shape = True

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, head_dim: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
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
            raise ValueError(f"a static cache keeps its batch of {self.keys.shape[1]} rows; got {index.numel()} "
                             "(use a dynamic cache for batches that shrink or grow)")
        self.keys.copy_(self.keys.index_select(1, index))
        self.values.copy_(self.values.index_select(1, index))
        for k, v in self._cross.values():
            k.copy_(k.index_select(0, index))
            v.copy_(v.index_select(0, index))


def _pad(t: Tensor, dim: int, n: int, left: bool = False) -> Tensor:
    """``t`` with ``n`` zeros added along ``dim`` (on the right, or the left)."""
    if n <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    zeros = t.new_zeros(shape)
    return torch.cat((zeros, t) if left else (t, zeros), dim=dim)

"""Key/value caches for incremental decoding.

Each self-attention layer calls ``cache.update(layer_idx, k, v)`` with the keys/values of the
new tokens and gets back all keys/values to attend to. Cross-attention layers keep the
projected encoder memory with ``set_cross`` / ``get_cross``, so an encoder-decoder (translation,
Whisper) and a decoder-only model (language models) decode through the same interface.

* ``DynamicCache`` grows by concatenation: simple, any length.
* ``StaticCache`` is preallocated to ``max_len`` slots: fixed shapes, as ``torch.compile`` and
  CUDA graphs need. Unfilled slots lie in the future and the causal mask hides them.

Dimension names: B batch, Hkv key/value heads, T new tokens, Tk cached + new, Dh head width.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Interface shared by all caches, with cross-attention storage."""

    def __init__(self) -> None:
        self._cross: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def get_seq_length(self) -> int:
        """Number of slots already filled (taken before the new tokens are added)."""
        raise NotImplementedError

    @property
    def key_length(self) -> int | None:
        """Length of the keys ``update`` returns for the next step; None = past + new tokens."""
        return None

    def has_cross(self, layer_idx: int) -> bool:
        return layer_idx in self._cross

    def get_cross(self, layer_idx: int) -> tuple[Tensor, Tensor]:
        return self._cross[layer_idx]

    def set_cross(self, layer_idx: int, k: Tensor, v: Tensor) -> None:
        self._cross[layer_idx] = (k, v)

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search): every cached tensor becomes ``t[index]``."""
        self._cross = {i: (k.index_select(0, index), v.index_select(0, index)) for i, (k, v) in self._cross.items()}


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

    def reorder(self, index: Tensor) -> None:
        super().reorder(index)
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]


class StaticCache(KVCache):
    """Preallocated ``(num_layers, B, Hkv, max_len, Dh)`` buffers; ``update`` writes in place.

    The write position is ``self.length`` (an int, advanced after the last layer's update), or
    ``cache_position`` (a tensor of slots) when set, which keeps shapes and graphs fixed.
    """

    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, head_dim: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        shape = (num_layers, batch_size, num_kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.num_layers, self.max_len = num_layers, max_len
        self.length = 0
        self.cache_position: Tensor | None = None

    @property
    def key_length(self) -> int:
        return self.max_len

    def update(self, layer_idx: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        new = k.shape[2]
        if self.cache_position is not None:  # graph-friendly: slots given as a tensor
            self.keys[layer_idx].index_copy_(2, self.cache_position, k.to(self.keys.dtype))
            self.values[layer_idx].index_copy_(2, self.cache_position, v.to(self.values.dtype))
        else:
            if self.length + new > self.max_len:
                raise ValueError(f"static cache is full: {self.length} + {new} tokens > max_len {self.max_len}")
            self.keys[layer_idx, :, :, self.length:self.length + new] = k
            self.values[layer_idx, :, :, self.length:self.length + new] = v
            if layer_idx == self.num_layers - 1:
                self.length += new
        return self.keys[layer_idx], self.values[layer_idx]  # (B, Hkv, max_len, Dh)

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self.length = 0
        self._cross.clear()

    def reorder(self, index: Tensor) -> None:
        super().reorder(index)
        self.keys = self.keys.index_select(1, index)
        self.values = self.values.index_select(1, index)

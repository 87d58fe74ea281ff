"""A stack of N layers with its positional encoding: the paper's encoder and decoder stacks.

The stack takes embeddings (token, patch, audio or trajectory embeddings alike), adds or
prepares positions, builds the masks once, and runs its layers. Models own the embeddings
and heads; stacks own what happens between them.

With a cache, the cache says where the new tokens sit (``slots``), how many keys attention will
see and where those sit (``key_length``, ``key_slots``: a bounded cache drops old keys), and
what it keeps (``window``, ``sinks``). The mask and the ALiBi / relative biases are built from
those slots, so a windowed or sink cache, or a Transformer-XL memory, needs nothing else here.
A model's own ``attention_window`` (sliding-window attention) bands the same mask.

Dimension names: B batch, T sequence (queries), Tk keys (past + new), S memory length,
D model width, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .layers import LayerSpec, TransformerLayer
from .masks import band_mask, causal_mask, combine_masks, key_mask as expand_key_mask, segment_mask
from .norm import make_norm
from .positional import PositionalEncoding


@dataclass
class StackOutput:
    hidden: Tensor  # (B, T, D)
    self_attentions: list[Tensor] = field(default_factory=list)  # each (B, H, T, Tk)
    cross_attentions: list[Tensor] = field(default_factory=list)  # each (B, H, T, S)


class TransformerStack(nn.Module):
    """N identical layers. ``causal`` makes it a decoder stack; ``cross_attention`` adds memory."""

    def __init__(
        self,
        spec: LayerSpec,
        num_layers: int,
        positional: PositionalEncoding,
        *,
        causal: bool,
        cross_attention: bool = False,
        memory_dim: int | None = None,
        final_norm: bool | None = None,
        embed_dropout: float | None = None,
    ):
        super().__init__()
        if spec.attention_window is not None and spec.attention_window < 1:
            raise ValueError(f"attention_window must be a positive number of positions, got {spec.attention_window}")
        self.causal = causal
        self.window = spec.attention_window
        self.positional = positional
        self.embed_dropout = nn.Dropout(spec.dropout if embed_dropout is None else embed_dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(spec, cross_attention=cross_attention, memory_dim=memory_dim) for _ in range(num_layers)
        )
        final_norm = spec.norm_first if final_norm is None else final_norm  # pre-LN ends with a norm
        self.final_norm = make_norm(spec.norm, spec.d_model, spec.norm_eps, spec.bias) if final_norm else None

    def self_attention_mask(
        self,
        batch_valid: Tensor | None,
        q_len: int,
        k_len: int,
        device,
        q_slots: Tensor | None = None,
        k_slots: Tensor | None = None,
        window: int | None = None,
        sinks: int = 0,
    ) -> tuple[Tensor | None, bool]:
        """(mask, is_causal) for self-attention; no mask is materialised when is_causal suffices.

        The queries are the last ``q_len`` of ``k_len`` keys, unless ``q_slots (T,)`` gives their
        slots as a tensor (a static cache, whose keys include unfilled future slots). ``k_slots
        (Tk,)``: where the keys sit (a cache that dropped old keys). ``window`` / ``sinks``: each
        query sees the keys of its last ``window`` positions and the first ``sinks`` slots.
        """
        keys = expand_key_mask(batch_valid) if batch_valid is not None else None  # (B, 1, 1, Tk)
        if keys is not None and keys.shape[-1] != k_len:
            raise ValueError(
                f"key mask covers {keys.shape[-1]} positions, but attention sees {k_len} keys "
                f"({k_len - q_len} cached + {q_len} new)"
                if q_slots is None or k_slots is not None
                else f"key mask covers {keys.shape[-1]} positions, but the static cache has {k_len} slots"
            )
        banded = window is not None and (window < k_len or q_slots is not None or k_slots is not None)
        if not self.causal:
            if not banded:
                return keys, False
            q_slots = torch.arange(k_len - q_len, k_len, device=device) if q_slots is None else q_slots
            k_slots = torch.arange(k_len, device=device) if k_slots is None else k_slots
            return combine_masks(band_mask(q_slots, k_slots, window), keys), False
        if q_slots is not None or k_slots is not None or banded:
            if q_slots is None:
                q_slots = torch.arange(k_len - q_len, k_len, device=device)
            return combine_masks(
                causal_mask(q_len, k_len, q_slots=q_slots, k_slots=k_slots, window=window, sinks=sinks), keys
            ), False
        past = k_len - q_len
        if keys is None and past == 0:
            return None, True
        if keys is None and q_len == 1:
            return None, False  # one new token attends to every past token
        return combine_masks(causal_mask(q_len, k_len, past=past, device=device), keys), False

    def forward(
        self,
        x: Tensor,
        *,
        key_mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_key_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache=None,
        need_weights: bool = False,
        segment_ids: Tensor | None = None,
    ) -> StackOutput:
        """x ``(B, T, D)`` embeddings. ``key_mask (B, Tk)`` bool, True = real token (Tk = cached +
        new when a cache is used, or the static cache's slots). ``memory (B, S, D)`` with
        ``memory_key_mask (B, S)`` for cross-attention. ``positions (B, T)`` default to the slots
        the cache gives the new tokens (``0 .. T - 1`` without a cache).

        ``segment_ids (B, T)``: packed sequences (no cache). Tokens attend only within their own
        segment; give each segment its own ``positions`` (restarting at 0) as well."""
        if x.dim() != 3:
            raise ValueError(f"a stack takes embeddings of shape (batch, seq, d_model), got {tuple(x.shape)}")
        batch, q_len, _ = x.shape
        window, sinks, key_slots, key_rope = self.window, 0, None, None
        if cache is None:
            slots, k_len = torch.arange(q_len, device=x.device), q_len  # (T,)
        else:
            cache.bind(self.positional)
            slots, k_len = cache.slots(q_len, x.device), cache.key_length(q_len)  # (T,)
            if cache.window is not None:  # a bounded cache: its keys are not simply 0 .. Tk - 1
                key_slots = cache.key_slots(q_len, x.device)  # (Tk,)
                window = cache.window if window is None else min(window, cache.window)
                sinks = cache.sinks
        positions = slots[None] if positions is None else positions  # (B|1, T)

        x = self.embed_dropout(self.positional.add_to(x, positions))
        rope = self.positional.rotary(positions)
        if rope is not None and cache is not None and cache.projects_inputs:  # memory + segment keys
            key_rope = self.positional.rotary(cache.key_slots(q_len, x.device))
        all_keys = key_slots if key_slots is not None else torch.arange(k_len, device=x.device)  # (Tk,)
        bias = self.positional.attention_bias(slots, all_keys)  # (1, H, T, Tk)
        fixed = cache is not None and cache.fixed_shape
        own_slots = fixed or key_slots is not None  # queries are not simply the last q_len of the keys
        mask, is_causal = self.self_attention_mask(
            key_mask,
            q_len,
            k_len,
            x.device,
            q_slots=slots if own_slots else None,
            k_slots=key_slots,
            window=window,
            sinks=sinks,
        )
        if segment_ids is not None:
            if cache is not None or tuple(segment_ids.shape) != (batch, q_len):
                raise ValueError(
                    f"segment_ids (packed sequences) must have shape (batch, seq) = {(batch, q_len)} "
                    f"and work without a KV cache; got {tuple(segment_ids.shape)}"
                    f"{' with a cache' if cache is not None else ''}"
                )
            causal = causal_mask(q_len, device=x.device) if is_causal else None  # (1, 1, T, T)
            mask, is_causal = combine_masks(mask, causal, segment_mask(segment_ids)), False  # (B, 1, T, T)
        cross_mask = expand_key_mask(memory_key_mask) if memory_key_mask is not None else None  # (B, 1, 1, S)

        out = StackOutput(hidden=x)
        for i, layer in enumerate(self.layers):
            x, weights = layer(
                x,
                memory,
                mask=mask,
                is_causal=is_causal,
                memory_mask=cross_mask,
                bias=bias,
                rope=rope,
                key_rope=key_rope,
                cache=cache,
                layer_idx=i,
                need_weights=need_weights,
            )
            if need_weights:
                out.self_attentions.append(weights["self"])
                if "cross" in weights:
                    out.cross_attentions.append(weights["cross"])
        out.hidden = self.final_norm(x) if self.final_norm is not None else x
        return out

"""Attention masks: one convention everywhere.

A mask is a boolean tensor broadcastable to ``(batch, heads, q_len, k_len)`` in which
``True`` means *this query may attend to this key*. Helpers here build padding, causal
and combined masks; nothing else in the library makes masks by hand.

Dimension names: B batch, H heads, Tq query length, Tk key length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Key-padding mask from token ids: True where the token is real.

    Returns ``(B, 1, 1, Tk)`` so it broadcasts over heads and queries.
    """
    if tokens.dim() != 2:
        raise ValueError(f"padding_mask expects token ids of shape (batch, seq), got {tuple(tokens.shape)}")
    return (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, Tk)


def lengths_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Key-padding mask from sequence lengths (right padding): ``(B, 1, 1, Tk)``."""
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]


def key_mask(valid: Tensor) -> Tensor:
    """Turn a ``(B, Tk)`` boolean 'real token' mask into ``(B, 1, 1, Tk)``."""
    if valid.dtype != torch.bool or valid.dim() != 2:
        raise ValueError(
            f"a key mask must be a bool tensor of shape (batch, key_len), got dtype {valid.dtype} "
            f"and shape {tuple(valid.shape)}"
        )
    return valid[:, None, None, :]


def causal_mask(
    q_len: int, k_len: int | None = None, *, past: int = 0, device=None, q_slots: Tensor | None = None
) -> Tensor:
    """Causal mask ``(1, 1, Tq, Tk)``: query i (at slot ``past + i``) sees keys at slots <= its own.

    With a KV cache the queries are the last tokens, so the mask is aligned bottom-right;
    keys beyond ``past + q_len`` (unfilled slots of a static cache) are never visible.
    ``q_slots (Tq,)`` gives the query slots as a tensor instead (a static cache written at
    ``cache_position``): the mask then follows the tensor, with no host sync and one graph
    for every step.
    """
    if q_slots is not None:
        if k_len is None:
            raise ValueError("causal_mask with q_slots needs k_len (the static cache's length)")
        k_slots = torch.arange(k_len, device=q_slots.device)  # (Tk,)
        return (k_slots[None, :] <= q_slots[:, None])[None, None]  # (1, 1, Tq, Tk)
    k_len = past + q_len if k_len is None else k_len
    q_slots = torch.arange(past, past + q_len, device=device)  # (Tq,)
    k_slots = torch.arange(k_len, device=device)  # (Tk,)
    return (k_slots[None, :] <= q_slots[:, None])[None, None]  # (1, 1, Tq, Tk)


def segment_mask(segment_ids: Tensor, q_len: int | None = None) -> Tensor:
    """Packed sequences: ``(B, Tk)`` segment ids -> ``(B, 1, Tq, Tk)``, True where query and key
    belong to the same segment, so examples packed into one row never attend to each other.

    The queries are the last ``q_len`` positions (default: all ``Tk``). Combine with
    ``causal_mask`` for a decoder.
    """
    if segment_ids.dim() != 2 or segment_ids.is_floating_point():
        raise ValueError(
            f"segment ids must be an integer tensor of shape (batch, seq), got dtype {segment_ids.dtype} "
            f"and shape {tuple(segment_ids.shape)}"
        )
    queries = segment_ids if q_len is None else segment_ids[:, segment_ids.shape[1] - q_len:]  # (B, Tq)
    return queries[:, None, :, None] == segment_ids[:, None, None, :]  # (B, 1, Tq, Tk)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of any number of masks (None means 'attend everywhere')."""
    result = None
    for mask in masks:
        if mask is None:
            continue
        result = mask if result is None else result & mask
    return result


def check_mask(mask: Tensor, batch: int, heads: int, q_len: int, k_len: int) -> None:
    """Raise a ValueError naming the problem if ``mask`` cannot serve these shapes."""
    if mask.dtype != torch.bool:
        raise ValueError(f"attention masks are boolean (True = may attend), got dtype {mask.dtype}")
    if mask.dim() != 4:
        raise ValueError(
            f"attention mask must have 4 dims broadcastable to (batch, heads, q_len, k_len) = "
            f"{(batch, heads, q_len, k_len)}, got shape {tuple(mask.shape)}"
        )
    for size, want, name in zip(mask.shape, (batch, heads, q_len, k_len), ("batch", "heads", "q_len", "k_len")):
        if size not in (1, want):
            raise ValueError(
                f"attention mask of shape {tuple(mask.shape)} does not broadcast to (batch, heads, q_len, k_len) = "
                f"{(batch, heads, q_len, k_len)}: its {name} size is {size}, expected 1 or {want}"
            )

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
    q_len: int,
    k_len: int | None = None,
    *,
    past: int = 0,
    device=None,
    q_slots: Tensor | None = None,
    k_slots: Tensor | None = None,
    window: int | None = None,
    sinks: int = 0,
) -> Tensor:
    """Causal mask ``(1, 1, Tq, Tk)``: query i (at slot ``past + i``) sees keys at slots <= its own.

    With a KV cache the queries are the last tokens, so the mask is aligned bottom-right;
    keys beyond ``past + q_len`` (unfilled slots of a static cache) are never visible.
    ``q_slots (Tq,)`` gives the query slots as a tensor instead (a static cache written at
    ``cache_position``): the mask then follows the tensor, with no host sync and one graph
    for every step. ``k_slots (Tk,)`` gives the keys' slots (a cache that has dropped old keys;
    default ``0 .. Tk - 1``).

    ``window`` W makes it banded (sliding-window attention): query q sees keys in ``(q - W, q]``,
    W keys counting itself; the first ``sinks`` slots stay visible to every later query
    (attention sinks, StreamingLLM).
    """
    if window is not None and window < 1:
        raise ValueError(f"attention window must be >= 1, got {window}")
    if sinks < 0:
        raise ValueError(f"sinks must be >= 0, got {sinks}")
    if q_slots is None:
        q_slots = torch.arange(past, past + q_len, device=device)  # (Tq,)
    elif k_len is None and k_slots is None:
        raise ValueError("causal_mask with q_slots needs k_len (the static cache's length) or k_slots")
    if k_slots is None:
        if k_len is None:
            k_len = past + q_len
        k_slots = torch.arange(k_len, device=q_slots.device)  # (Tk,)
    elif k_len is not None and k_slots.numel() != k_len:
        raise ValueError(f"causal_mask: k_len is {k_len} but k_slots has {k_slots.numel()} slots")
    q, k = q_slots[:, None], k_slots.to(q_slots.device)[None, :]
    mask = k <= q  # (Tq, Tk)
    if window is not None:
        mask = mask & ((k > q - window) | (k < sinks))
    return mask[None, None]  # (1, 1, Tq, Tk)


def band_mask(q_slots: Tensor, k_slots: Tensor, window: int) -> Tensor:
    """Local attention without causality (an encoder's window): ``|q - k| < W``, ``(1, 1, Tq, Tk)``."""
    if window < 1:
        raise ValueError(f"attention window must be >= 1, got {window}")
    return ((q_slots[:, None] - k_slots.to(q_slots.device)[None, :]).abs() < window)[None, None]


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
    queries = segment_ids if q_len is None else segment_ids[:, segment_ids.shape[1] - q_len :]  # (B, Tq)
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

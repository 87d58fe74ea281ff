"""The Transformer's ideas, each shown with numbers from the loaded model on the analysed input.

One function per panel; each returns JSON for the page. They work on the analysis's primary
sequence (the LM's text, the translation model's source, the encoder's text, the ViT's patches,
Whisper's transcript), cut to its first ``IDEA_TOKENS`` tokens so the numbers fit a panel (a
causal model computes the same for a prefix; a bidirectional one sees only the prefix).

1. ``embedding``: a one-hot vector times the embedding matrix is the lookup; the row and its
   nearest tokens.
2. ``positions``: the model's positional encoding (sinusoidal, learned, rotary, ALiBi, relative)
   and what adding it does to a token's vector.
3. ``attention_steps``: scaled dot-product attention for one query, step by step: Q.K, / sqrt(d_k),
   bias, mask, softmax, the weighted sum of V; checked against ``attention()`` and the tap.
4. ``heads``: the heads of one layer for the same query, side by side, and how much they overlap.
5. ``residual``: the size of the residual stream before and after each sub-layer.
6. ``permutation``: with positions (and the causal mask) off, shuffled tokens give shuffled
   outputs; with them on, they do not.
7. ``masks``: the padding and causal masks the stack builds, and the weights under them.

Dimension names: B batch, H heads, Hkv key/value heads, T tokens, Tk keys, Dh head width,
D model width, V vocabulary.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..nn.attention import attention
from ..nn.masks import causal_mask
from ..nn.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    PositionalEncoding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
)
from ..nn.stack import TransformerStack
from .capture import AttentionTap, Site
from .subject import Analysis, Primary, Subject, residual_summary
from .weights import as_b64

IDEA_TOKENS = 48  # tokens the panels work on
PERMUTE_TOKENS = 16
MASK_TOKENS = 12
TABLE_POSITIONS = 64  # rows of a positional table shown
NEAREST = 8
IDEAS = ("embedding", "positions", "attention_steps", "heads", "residual", "permutation", "masks")


def run_idea(subject: Subject, analysis: Analysis, name: str, params: dict) -> dict:
    """Dispatch to the panel ``name`` with its parameters (unknown ones are an error)."""
    panels = {
        "embedding": embedding,
        "positions": positions,
        "attention_steps": attention_steps,
        "heads": heads,
        "residual": residual,
        "permutation": permutation,
        "masks": masks,
    }
    if name not in panels:
        raise ValueError(f"no idea panel {name!r}; the panels are {', '.join(IDEAS)}")
    with subject.lock, torch.no_grad():
        out = panels[name](subject, analysis, **params)
    return {"idea": name, **out}


def _cut(primary: Primary, limit: int = IDEA_TOKENS) -> tuple[Tensor, list[str]]:
    if not primary.is_text:
        return primary.inputs, primary.tokens
    return primary.inputs[:, :limit], primary.tokens[:limit]


def _index(value, size: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not -size <= value < size:
        raise ValueError(f"{what} {value} is out of range (0..{size - 1})")
    return value % size


def _unavailable(why: str) -> dict:
    return {"available": False, "why": why}


def _heat(t: Tensor, lo: float | None = None, hi: float | None = None) -> dict:
    """A float matrix as a picture for the page: uint8 pixels and the range they span (its own, or
    ``lo..hi`` so two pictures share one scale)."""
    lo = float(t.min()) if lo is None else lo
    hi = float(t.max()) if hi is None else hi
    pixels = ((t - lo) / max(hi - lo, 1e-12) * 255).round()
    return {"rows": t.shape[0], "cols": t.shape[1], "min": lo, "max": hi, "pixels": as_b64(pixels)}


# ----------------------------------------------------------------------------- 1. embedding


def embedding(subject: Subject, analysis: Analysis, position: int = 0) -> dict:
    primary = analysis.primary
    emb = primary.embedding
    if emb is None:
        return _unavailable(
            "a Vision Transformer has no token embedding: each patch's pixels are projected "
            "by a linear map (the same idea without the one-hot: a matrix times a vector)"
        )
    ids, tokens = _cut(primary)
    position = _index(position, ids.shape[1], "position")
    token = ids[:, position : position + 1]  # (1, 1)
    lookup = emb(token)[0, 0]  # (D,) the table lookup (times the scale)
    one_hot = emb.one_hot_lookup(token)[0, 0]  # (D,) one-hot (1, V) @ E (V, D), times the scale
    row = emb.weight[int(token)]
    cosine = torch.nn.functional.cosine_similarity(emb.weight.float(), row.float()[None], dim=-1)  # (V,)
    cosine[int(token)] = -2.0
    values, index = cosine.topk(min(NEAREST, cosine.numel() - 1))
    return {
        "available": True,
        "position": position,
        "token": tokens[position],
        "id": int(token),
        "vocab": emb.vocab_size,
        "d_model": emb.d_model,
        "scale": emb.scale,
        "lookup": lookup.tolist(),
        "one_hot": one_hot.tolist(),
        "equal": bool(torch.equal(lookup, one_hot)),
        "max_difference": float((lookup - one_hot).abs().max()),
        "nearest": [
            {"id": i, "token": subject.labels_of([i])[0], "cosine": c} for i, c in zip(index.tolist(), values.tolist())
        ],
        "tokens": tokens,
    }


# ----------------------------------------------------------------------------- 2. positions


def _positional(subject: Subject, stack: TransformerStack) -> PositionalEncoding:
    """The positional module that serves ``stack`` (an encoder adds its own before its norm)."""
    module = stack.positional
    if type(module) is PositionalEncoding:
        own = getattr(subject.model, "positions", None)
        if isinstance(own, PositionalEncoding) and type(own) is not PositionalEncoding:
            return own
    return module


def positions(subject: Subject, analysis: Analysis, position: int = 0) -> dict:
    primary = analysis.primary
    module = _positional(subject, primary.stack)
    ids, tokens = _cut(primary)
    steps = len(tokens)
    position = _index(position, steps, "position")
    shown = max(steps, min(TABLE_POSITIONS, getattr(module, "max_len", TABLE_POSITIONS)))
    out = {"available": True, "kind": type(module).__name__, "position": position, "tokens": tokens}
    if isinstance(module, (SinusoidalPositionalEncoding, LearnedPositionalEmbedding)):
        table = module.table if isinstance(module, SinusoidalPositionalEncoding) else module.weight
        table = table[:shown].float()  # (P, D)
        out.update(mode="added", table=_heat(table))
        if primary.embedding is not None:
            token = ids[:, position : position + 1]
            e = primary.embedding(token)  # (1, 1, D)
            summed = module.add_to(e, torch.tensor([[position]], device=e.device))[0, 0]
            pe = summed - e[0, 0]
            out.update(
                embedding=e[0, 0].tolist(),
                position_vector=pe.tolist(),
                sum=summed.tolist(),
                norms={"embedding": float(e.norm()), "position": float(pe.norm()), "sum": float(summed.norm())},
            )
            # how alike the same token enters at another position (without positions: identical)
            other = 0 if position else min(1, steps - 1)
            there = module.add_to(e, torch.tensor([[other]], device=e.device))[0, 0]
            out["same_token_elsewhere"] = {
                "other_position": other,
                "cosine_with_positions": float(torch.nn.functional.cosine_similarity(summed, there, dim=0)),
            }
    elif isinstance(module, RotaryEmbedding):
        cos, _ = module.rotary(torch.arange(shown, device=subject.device))  # (1, 1, P, Dr)
        half = cos.shape[-1] // 2
        out.update(
            mode="rotary",
            base=module.base,
            rotary_dim=module.rotary_dim,
            table=_heat(cos[0, 0, :, :half].float()),
            inv_freq=module.inv_freq.tolist(),
        )
    elif isinstance(module, (ALiBi, RelativePositionBias)):
        where = torch.arange(steps, device=subject.device)
        bias = module.attention_bias(where, where)[0].float()  # (H, T, T)
        out.update(
            mode="bias",
            heads=[_heat(b) for b in bias[: min(4, bias.shape[0])]],
            slopes=module.slopes.tolist() if isinstance(module, ALiBi) else None,
        )
    else:
        out.update(mode="none")
    return out


# ----------------------------------------------------------------------------- 3. attention, step by step


def _split_heads(linear: nn.Linear, x: Tensor, heads: int, head_dim: int) -> Tensor:
    batch, steps, _ = x.shape
    return linear(x).view(batch, steps, heads, head_dim).transpose(1, 2)  # (B, heads, T, Dh)


def _layer_call(primary: Primary, inputs: Tensor, layer: int) -> tuple[Tensor, dict, dict[int, Tensor]]:
    """Run the primary stack over ``inputs``; the self-attention input and keyword arguments of
    ``layer`` (x, mask, is_causal, bias, rope), and every layer's tapped weights ``(B, H, T, T)``."""
    captured: dict = {}
    module = primary.stack.layers[layer].self_attn

    def grab(mod, args, kwargs):
        captured["x"], captured["kwargs"] = args[0], dict(kwargs)

    tapped: dict[int, Tensor] = {}

    def sink(site: Site, weights: Tensor) -> None:
        if site.kind == "self":
            tapped[site.layer] = weights

    handle = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with AttentionTap(primary.stack, sink):
            primary.run(inputs, None)
    finally:
        handle.remove()
    return captured["x"], captured["kwargs"], tapped


def attention_steps(subject: Subject, analysis: Analysis, layer: int = 0, head: int = 0, query: int = -1) -> dict:
    primary = analysis.primary
    inputs, tokens = _cut(primary)
    layers, heads_n = len(primary.stack.layers), subject.config.num_heads
    layer, head = _index(layer, layers, "layer"), _index(head, heads_n, "head")
    query = _index(query, len(tokens), "query")
    x, kw, tapped = _layer_call(primary, inputs, layer)
    mha = primary.stack.layers[layer].self_attn
    q = _split_heads(mha.q_proj, x, mha.num_heads, mha.head_dim)  # (1, H, T, Dh)
    k = _split_heads(mha.k_proj, x, mha.num_kv_heads, mha.head_dim)  # (1, Hkv, T, Dh)
    v = _split_heads(mha.v_proj, x, mha.num_kv_heads, mha.head_dim)
    if kw.get("rope") is not None:
        q, k = apply_rotary(q, *kw["rope"]), apply_rotary(k, *kw["rope"])
    mask, bias, is_causal = kw.get("mask"), kw.get("bias"), bool(kw.get("is_causal"))
    kv_head = head // (mha.num_heads // mha.num_kv_heads)
    steps = q.shape[2]

    # the formula, one query, written out
    qv, keys, values = q[0, head, query].float(), k[0, kv_head].float(), v[0, kv_head].float()  # (Dh,) (Tk, Dh)
    dots = keys @ qv  # (Tk,)
    scale = 1.0 / math.sqrt(mha.head_dim)
    scaled = dots * scale
    heads_shape = (1, mha.num_heads, steps, keys.shape[0])
    biased = scaled + torch.broadcast_to(bias, heads_shape)[0, head, query].float() if bias is not None else scaled
    allowed = torch.ones(keys.shape[0], dtype=torch.bool, device=dots.device)
    if mask is not None:
        allowed &= torch.broadcast_to(mask[:1], heads_shape)[0, head, query]
    if is_causal:
        allowed &= causal_mask(steps, device=dots.device)[0, 0, query]
    masked = biased.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(masked, dim=-1)  # (Tk,)
    output = weights @ values  # (Dh,)

    # the library's attention() on the same inputs, and what the tap (the head view) showed
    lib_out, lib_weights = attention(q, k, v, mask=mask, bias=bias, is_causal=is_causal, need_weights=True)
    lib_row, lib_vec = lib_weights[0, head, query].float(), lib_out[0, head, query].float()
    tap_row = tapped[layer][0, head, query].float()
    return {
        "available": True,
        "layer": layer,
        "head": head,
        "kv_head": kv_head,
        "query": query,
        "tokens": tokens,
        "head_dim": mha.head_dim,
        "scale": scale,
        "rotary": kw.get("rope") is not None,
        "q": qv.tolist(),
        "k": keys.tolist(),
        "v": values.tolist(),
        "dots": dots.tolist(),
        "scaled": scaled.tolist(),
        "bias": None if bias is None else (biased - scaled).tolist(),
        "allowed": allowed.tolist(),
        "masked": [m if a else None for a, m in zip(allowed.tolist(), masked.tolist())],  # -inf is not JSON
        "weights": weights.tolist(),
        "output": output.tolist(),
        "attention_weights": lib_row.tolist(),
        "attention_output": lib_vec.tolist(),
        "tap_weights": tap_row.tolist(),
        "max_difference": {
            "weights": float((weights - lib_row).abs().max()),
            "output": float((output - lib_vec).abs().max()),
            "tap": float((lib_row - tap_row).abs().max()),
        },
    }


# ----------------------------------------------------------------------------- 4. multi-head


def heads(subject: Subject, analysis: Analysis, layer: int = 0, query: int = -1) -> dict:
    primary = analysis.primary
    inputs, tokens = _cut(primary)
    layer = _index(layer, len(primary.stack.layers), "layer")
    query = _index(query, len(tokens), "query")
    _, _, tapped = _layer_call(primary, inputs, layer)
    rows = tapped[layer][0, :, query].float()  # (H, Tk)
    entropy = -(rows * rows.clamp_min(1e-30).log2()).sum(-1)  # (H,) bits
    overlap = torch.minimum(rows[:, None], rows[None]).sum(-1)  # (H, H): weight two heads share
    return {
        "available": True,
        "layer": layer,
        "query": query,
        "tokens": tokens,
        "rows": rows.tolist(),
        "entropy": entropy.tolist(),
        "top": rows.argmax(-1).tolist(),
        "overlap": overlap.tolist(),
        "max_entropy": math.log2(int((rows[0] > 0).sum()) or 1),
    }


# ----------------------------------------------------------------------------- 5. residual stream


def residual(subject: Subject, analysis: Analysis) -> dict:
    if not analysis.streams:
        return _unavailable("no residual stream was recorded for this input")
    return {
        "available": True,
        "tokens": analysis.primary.tokens,
        "norm_first": subject.config.norm_first,
        **residual_summary(analysis.streams),
    }


# ----------------------------------------------------------------------------- 6. permutation


@contextmanager
def positions_off(model: nn.Module):
    """Every positional module of ``model`` becomes 'none' and every stack bidirectional, for the
    duration (a causal mask carries order too)."""
    swapped, stacks = [], []
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, PositionalEncoding) and type(child) is not PositionalEncoding:
                swapped.append((parent, name, child))
                setattr(parent, name, PositionalEncoding())
    for module in model.modules():
        if isinstance(module, TransformerStack):
            stacks.append((module, module.causal))
            module.causal = False
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for module, causal in stacks:
            module.causal = causal


def _permute_patches(images: Tensor, order: list[int], patch: int) -> Tensor:
    """Move patch ``order[i]`` to place ``i`` in ``images (B, C, H, W)``."""
    b, c, h, w = images.shape
    g = h // patch
    grid = images.reshape(b, c, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c, patch, patch)
    grid = grid[:, order]
    return grid.reshape(b, g, g, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def permutation(subject: Subject, analysis: Analysis, seed: int = 0) -> dict:
    primary = analysis.primary
    model = subject.model
    if primary.is_text:
        inputs, tokens = _cut(primary, PERMUTE_TOKENS)
        n = len(tokens)
    else:
        inputs, tokens = primary.inputs, primary.tokens
        n = len(tokens) - 1  # the patches; the class token stays first
    if n < 2:
        return _unavailable("permuting needs at least two tokens")
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=g).tolist()
    if order == sorted(order):
        order = order[1:] + order[:1]
    if primary.is_text:
        shuffled_inputs = inputs[:, order]
        token_order = order
    else:
        shuffled_inputs = _permute_patches(inputs, order, subject.config.patch_size)
        token_order = [0] + [i + 1 for i in order]

    def compare() -> dict:
        a = primary.run(inputs, None).hidden[0].float()  # (T, D)
        b = primary.run(shuffled_inputs, None).hidden[0].float()
        moved = a[token_order]  # the first run's outputs in the shuffled order
        diff = (b - moved).abs()
        both = torch.cat((moved[:, :16], b[:, :16]))  # one colour scale for the two pictures
        lo, hi = float(both.min()), float(both.max())
        return {
            "max_difference": float(diff.max()),
            "token_difference": diff.max(-1).values.tolist(),
            "outputs": _heat(moved[:, :16], lo, hi),
            "shuffled_outputs": _heat(b[:, :16], lo, hi),
        }

    with positions_off(model):
        off = compare()
    on = compare()
    return {
        "available": True,
        "tokens": tokens,
        "order": token_order,
        "shuffled_tokens": [tokens[i] for i in token_order],
        "off": off,
        "on": on,
        "causal": any(s.causal for s in model.modules() if isinstance(s, TransformerStack)),
        "positional": type(_positional(subject, primary.stack)).__name__,
    }


# ----------------------------------------------------------------------------- 7. masks


def masks(subject: Subject, analysis: Analysis) -> dict:
    primary = analysis.primary
    stack = primary.stack
    if not primary.is_text:
        return {
            "available": True,
            "mode": "none",
            "causal": False,
            "tokens": primary.tokens,
            "why": "every patch attends to every patch: no padding (one fixed-size image) and no causal mask",
        }
    ids, tokens = _cut(primary, MASK_TOKENS)
    steps = len(tokens)
    if steps < 2:
        return _unavailable("the masks need at least two tokens")
    short = (steps + 1) // 2
    batch = ids.repeat(2, 1)  # (2, T): the text, and its first half padded on the right
    pad_id = int(getattr(subject.config, "pad_id", 0) or 0)
    batch[1, short:] = pad_id
    key_mask = torch.ones_like(batch, dtype=torch.bool)
    key_mask[1, short:] = False
    mask, is_causal = stack.self_attention_mask(key_mask, steps, steps, batch.device)
    if mask is None and is_causal:
        mask = causal_mask(steps, device=batch.device)
    full = mask.expand(2, 1, steps, steps)[:, 0] if mask is not None else torch.ones(2, steps, steps, dtype=torch.bool)
    tapped: dict[int, Tensor] = {}

    def sink(site: Site, weights: Tensor) -> None:
        if site.kind == "self":
            tapped.setdefault(site.layer, weights)

    with AttentionTap(stack, sink):
        primary.run(batch, key_mask)
    weights = tapped[0][:, 0].float()  # (2, T, T): layer 0, head 0
    causal = causal_mask(steps, device=batch.device)[0, 0] if stack.causal else None
    return {
        "available": True,
        "mode": "causal" if stack.causal else "padding",
        "causal": stack.causal,
        "tokens": tokens,
        "short": short,
        "padding": key_mask[1].tolist(),
        "causal_mask": None if causal is None else causal.tolist(),
        "combined": full[1].tolist(),
        "full_row_mask": full[0].tolist(),
        "weights": weights[1].tolist(),
        "weights_full": weights[0].tolist(),
        "masked_weight_max": float(weights[1].masked_fill(full[1], 0).abs().max()),
    }

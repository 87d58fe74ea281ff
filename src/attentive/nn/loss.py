"""Cross-entropy over a large vocabulary without materialising the full logits.

A language model's last step maps hidden states ``(N, D)`` to logits ``(N, V)``. With GPT-2's
50k vocabulary and 16k tokens a batch, the logits alone take 1.6 GB in bf16, and the usual
recipe (upcast to float32, log-softmax, keep it for backward) adds 3.3 GB more and as much
again for its gradient: often the largest tensors in the whole step.

``linear_cross_entropy`` fuses the output projection with the loss and walks the rows in
chunks: for each chunk it computes the logits, the loss and, right away, the gradients of the
hidden states and of the projection weight, then reuses the logits' buffer for the next chunk.
Backward only scales the stored gradients. Peak extra memory is one chunk of logits instead of
all of them, and the work is the same three matrix products autograd would do.

A chunk's logits are laid out vocabulary-major, ``(V, C)``, and visited in three passes: the
product and the maximum per row; ``exp(logit - max)`` in place with its sum and its product with
the weight (the hidden-state gradient before normalising); the weight gradient. On CPU each pass
walks cache-sized blocks of the vocabulary, so the elementwise work reads what the product has
just written from cache, and the exponential runs once per logit: on 2 cores at GPT-2's
vocabulary the head trains about 1.2x faster than the plain float32 path under torch.compile.

``cross_entropy`` is the plain form on given logits (float32 softmax), the reference the tests
hold the fused form to. Both use PyTorch's definitions: label smoothing ``eps`` mixes the
one-hot target with a uniform ``eps / V`` over every class; targets equal to ``ignore_index``
add nothing to the loss, the gradient, or a ``mean``'s count.

Dimension names: N rows (tokens), D model width, V vocabulary, C rows in a chunk.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("sum", "mean")
CHUNK_ELEMENTS = 2**25  # logits per chunk by default: 128 MB in float32 (640 rows at GPT-2's vocabulary)
CPU_BLOCK_ELEMENTS = 2**21  # logits per pass on CPU: 8 MB in float32, cache-sized (3,276 classes at 640 rows)


def cross_entropy(
    logits: Tensor,
    targets: Tensor,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "sum",
) -> Tensor:
    """Plain cross-entropy of ``logits (..., V)`` against ``targets (...)``, softmax in float32."""
    _check_reduction(reduction)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).to(_softmax_dtype(logits.dtype)),
        targets.reshape(-1),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    bias: Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "sum",
    chunk_size: int | None = None,
) -> Tensor:
    """``cross_entropy(hidden @ weight.T + bias, targets)`` computed ``chunk_size`` rows at a time.

    hidden ``(..., D)``, weight ``(V, D)`` (e.g. a tied embedding), bias ``(V,)`` or None,
    targets ``(...)`` integer ids. Under autocast the products run in the autocast dtype and the
    softmax in float32, as the plain path does. ``chunk_size`` rows at a time (default: as many
    as keep one chunk's float32 logits near 128 MB). Returns a scalar (``sum`` or ``mean``).
    """
    _check_reduction(reduction)
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} disagree in leading dims")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be (vocab, {hidden.shape[-1]}), got {tuple(weight.shape)}")
    if chunk_size is None:
        chunk_size = max(64, (CHUNK_ELEMENTS // weight.shape[0]) // 64 * 64)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    device_type = hidden.device.type
    compute_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    args = (
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        bias,
        targets.reshape(-1),
        label_smoothing,
        ignore_index,
        reduction == "mean",
        chunk_size,
        compute_dtype,
        needs_grad,
    )
    if hidden.device.type in OPAQUE_DEVICES:
        return _fused_loss_and_grads(*args)[0]
    return _TracedLinearCrossEntropy.apply(*args)


# Where torch.compile should run the code below as written (one opaque custom op) rather than
# trace it: on CPU its cache-sized blocks are the point (measured 1.19x faster than the compiled
# plain loss); elsewhere inductor traces it and fuses the elementwise passes into its own kernels.
OPAQUE_DEVICES = ("cpu",)


@torch.library.custom_op("attentive::linear_cross_entropy", mutates_args=())
def _fused_loss_and_grads(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    label_smoothing: float,
    ignore_index: int,
    mean: bool,
    chunk_size: int,
    compute_dtype: torch.dtype,
    needs_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The loss of ``hidden (N, D)`` and, if ``needs_grad``, its gradients with respect to hidden,
    weight and bias (empty tensors where not computed): forward does all the work, so the logits
    never outlive their chunk; backward only scales these gradients."""
    with torch.autocast(hidden.device.type, enabled=False):
        return _forward_chunks(
            hidden,
            weight,
            bias,
            targets,
            label_smoothing,
            ignore_index,
            mean,
            chunk_size,
            compute_dtype,
            needs_grad,
            reuse_buffer=True,
        )


@_fused_loss_and_grads.register_fake
def _(hidden, weight, bias, targets, label_smoothing, ignore_index, mean, chunk_size, compute_dtype, needs_grad):
    acc = _softmax_dtype(compute_dtype)
    if not needs_grad:
        nothing = hidden.new_empty(0, dtype=acc)
        return hidden.new_empty((), dtype=acc), nothing, nothing.clone(), nothing.clone()
    grad_bias = hidden.new_empty(weight.shape[0] if bias is not None else 0, dtype=acc)
    return (
        hidden.new_empty((), dtype=acc),
        hidden.new_empty(hidden.shape, dtype=compute_dtype),
        hidden.new_empty(weight.shape, dtype=acc),
        grad_bias,
    )


def _setup_context(ctx, inputs, output):
    hidden, weight, bias = inputs[:3]
    ctx.save_for_backward(*output[1:])
    ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)


def _backward(ctx, grad_loss, *_unused):
    """Scale the stored gradients in place (no second (V, D) tensor): if a retained graph runs
    backward twice, autograd's version check on the saved tensors refuses the second time."""
    return _scaled_grads(ctx, grad_loss, in_place=True)


def _scaled_grads(ctx, grad_loss, in_place):
    hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
    grads = [g.mul_(grad_loss) if in_place else g * grad_loss for g in ctx.saved_tensors]
    gh, gw = grads[0].to(hidden_dtype), grads[1].to(weight_dtype)
    gb = grads[2].to(bias_dtype) if bias_dtype is not None else None
    return gh, gw, gb, None, None, None, None, None, None, None


_fused_loss_and_grads.register_autograd(_backward, setup_context=_setup_context)


class _TracedLinearCrossEntropy(torch.autograd.Function):
    """The same computation as an autograd Function that torch.compile traces (GPUs)."""

    @staticmethod
    def forward(
        ctx, hidden, weight, bias, targets, label_smoothing, ignore_index, mean, chunk_size, compute_dtype, needs_grad
    ):
        with torch.autocast(hidden.device.type, enabled=False):
            loss, *grads = _forward_chunks(
                hidden,
                weight,
                bias,
                targets,
                label_smoothing,
                ignore_index,
                mean,
                chunk_size,
                compute_dtype,
                needs_grad,
                reuse_buffer=False,
            )
        _setup_context(ctx, (hidden, weight, bias), (loss, *grads))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        return _scaled_grads(ctx, grad_loss, in_place=False)


def _forward_chunks(
    hidden, weight, bias, targets, eps, ignore_index, mean, chunk_size, compute_dtype, needs_grad, reuse_buffer
):
    """Row chunks of ``hidden``; each chunk's logits are made, used for the loss and the gradients,
    and overwritten by the next chunk's, in one buffer (on CPU, with ``reuse_buffer``, kept for
    the next call too)."""
    rows, vocab = hidden.shape[0], weight.shape[0]
    acc = _softmax_dtype(compute_dtype)  # float32, or float64 for float64 inputs
    h_all = hidden.to(compute_dtype)  # (N, D)
    w = weight.to(compute_dtype)  # (V, D)
    valid_all = targets != ignore_index  # (N,)
    count = valid_all.sum()
    # mean divides by the number of counted rows: one factor, applied to the loss and the grads
    ones = torch.ones((), dtype=acc, device=hidden.device)
    scale = ones / count.clamp(min=1) if mean else ones
    total = torch.zeros((), dtype=acc, device=hidden.device)
    nothing = hidden.new_empty(0, dtype=acc)
    if needs_grad:
        grad_hidden = torch.empty_like(h_all)  # (N, D)
        # (V, D): the first chunk overwrites it, so only a batch without rows needs zeros
        grad_weight = (torch.empty if rows else torch.zeros)(weight.shape, dtype=acc, device=weight.device)
        grad_bias = torch.zeros(vocab, dtype=acc, device=weight.device) if bias is not None else nothing.clone()
        # the uniform eps / V part of the target is rank one: applied on the narrow (., D) side
        # instead of as a pass over every (V, C) chunk
        w_colsum = w.sum(0).to(acc) if eps else None  # (D,)
        h_sum = torch.zeros(w.shape[1], dtype=acc, device=hidden.device)  # (D,) sum of counted rows
    chunk_size = min(chunk_size, max(rows, 1))
    numel = vocab * chunk_size
    if reuse_buffer and hidden.device.type == "cpu":
        logits_buffer = _workspace(numel, compute_dtype)
    else:  # GPUs: PyTorch's caching allocator already reuses the memory
        logits_buffer = torch.empty(numel, dtype=compute_dtype, device=hidden.device)
    block = _vocab_block(vocab, chunk_size, hidden.device)
    for start in range(0, rows, chunk_size):
        h = h_all[start : start + chunk_size]  # (C, D)
        valid = valid_all[start : start + chunk_size]  # (C,)
        y = torch.where(valid, targets[start : start + chunk_size], 0)  # (C,), ignored rows point anywhere
        logits = logits_buffer[: vocab * h.shape[0]].view(vocab, h.shape[0])  # (V, C): vocabulary-major
        # pass 1: the logits, their maximum (and sum) over the vocabulary
        col_max, logit_sum = _logits_and_max(h, w, bias, logits, block, acc, with_sum=bool(eps))  # (C,)
        target_logit = logits.gather(0, y[None, :]).squeeze(0).to(acc)  # (C,)
        # pass 2: logits -> e = exp(logits - max) in place, and e.T @ w, the softmax's unnormalised
        # share of the hidden-state gradient
        sum_exp, e_w = _exp_in_place(logits, col_max, w if needs_grad else None, block, acc)  # (C,), (C, D)
        lse = col_max + sum_exp.log()  # (C,)
        loss = lse - target_logit  # -log p(target)
        if eps:  # (1 - eps) nll + eps * mean over classes of -log p
            loss = (1 - eps) * loss + eps * (lse - logit_sum / vocab)
        total = total + (loss * valid).sum()
        if not needs_grad:  # evaluation: the loss is all we need
            continue
        # d loss / d logits = e / sum_exp - (1 - eps) onehot - eps / V: the 1 / sum_exp of each
        # column is applied on the narrow side, to the hidden rows and to e.T @ w
        inv_sum = valid.to(acc) / sum_exp  # (C,); zero for ignored rows
        grad_h = e_w * inv_sum[:, None] - (1 - eps) * w[y].to(acc)  # (C, D)
        # pass 3: the weight (and bias) gradient from e with (1 - eps) * sum_exp taken off at the targets
        logits.scatter_add_(0, y[None, :], (-(1 - eps) * sum_exp).to(logits.dtype)[None, :])  # one per column
        h_scaled = (h.to(acc) * inv_sum[:, None]).to(compute_dtype)  # (C, D)
        if grad_weight.dtype == compute_dtype:
            grad_weight.addmm_(logits, h_scaled, beta=0.0 if start == 0 else 1.0)  # beta 0: ignore the empty start
        elif start == 0:
            grad_weight.copy_(logits @ h_scaled)
        else:
            grad_weight += logits @ h_scaled
        if bias is not None:
            grad_bias += logits.to(acc) @ inv_sum
        if eps:
            grad_h -= (eps / vocab) * w_colsum
            h_sum += (h.to(acc) * valid[:, None]).sum(0)
        grad_hidden[start : start + chunk_size] = (grad_h * (valid.to(acc) * scale)[:, None]).to(compute_dtype)
    if not needs_grad:
        return total * scale, nothing, nothing.clone(), nothing.clone()
    if eps:
        grad_weight -= (eps / vocab) * h_sum[None, :]
        if bias is not None:
            grad_bias -= (eps / vocab) * count.to(acc)
    grad_weight *= scale
    grad_bias *= scale
    return total * scale, grad_hidden, grad_weight, grad_bias


_cache = threading.local()


def _workspace(numel: int, dtype: torch.dtype) -> Tensor:
    """A CPU buffer for one chunk's logits. A fresh 128 MB buffer costs its page faults on every
    call (about 35 ms a step on 2 cores), so each thread keeps its own and reuses it while it is
    large enough."""
    buffers = _cache.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[dtype] = torch.empty(numel, dtype=dtype)
    return buffer[:numel]


def release_workspace() -> None:
    """Drop this thread's CPU logits buffers (at most one chunk, 128 MB in float32 by default, per
    dtype): for a process that is done with training and wants the memory back."""
    _cache.__dict__.pop("buffers", None)


def _vocab_block(vocab: int, chunk_rows: int, device: torch.device) -> int:
    """Vocabulary rows per pass over a chunk's logits: on CPU a cache-sized block (8 MB in float32),
    so each pass works in cache right after the product or the pass before it; on GPUs the whole
    vocabulary, as few large kernels."""
    if device.type != "cpu":
        return vocab
    return max(1, CPU_BLOCK_ELEMENTS // max(chunk_rows, 1))


def _logits_and_max(h, w, bias, logits, block, acc, with_sum):
    """Fill ``logits (V, C)`` with ``w @ h.T + bias`` block by block; return the maximum over the
    vocabulary ``(C,)`` and, if asked, the sum of the logits ``(C,)``, in ``acc``."""
    col_max, logit_sum = None, None
    for v0 in range(0, w.shape[0], block):
        out = logits[v0 : v0 + block]  # (b, C)
        torch.mm(w[v0 : v0 + block], h.t(), out=out)
        if bias is not None:
            out += bias[v0 : v0 + block, None].to(out.dtype)
        block_max = out.amax(0)  # (C,)
        col_max = block_max if col_max is None else torch.maximum(col_max, block_max)
        if with_sum:
            block_sum = out.sum(0, dtype=acc)
            logit_sum = block_sum if logit_sum is None else logit_sum + block_sum
    return col_max.to(acc), logit_sum


def _exp_in_place(logits, col_max, w, block, acc):
    """Replace ``logits (V, C)`` by ``exp(logits - col_max)`` block by block; return its sum over the
    vocabulary ``(C,)`` in ``acc`` and, given ``w (V, D)``, the product ``e.T @ w (C, D)`` in ``acc``
    (None without ``w``), each block multiplied while still in cache."""
    sum_exp = torch.zeros(logits.shape[1], dtype=acc, device=logits.device)
    e_w = torch.zeros(logits.shape[1], w.shape[1], dtype=acc, device=logits.device) if w is not None else None
    for v0 in range(0, logits.shape[0], block):
        stored = logits[v0 : v0 + block]  # (b, C)
        if stored.dtype == acc:
            e = stored.sub_(col_max).exp_()
        else:  # bf16 logits: the exponent in float32, stored back at the products' precision
            e = (stored.to(acc) - col_max).exp_()
            stored.copy_(e)
        sum_exp += e.sum(0)
        if w is None:
            continue
        if stored.dtype == acc:
            e_w.addmm_(stored.t(), w[v0 : v0 + block])
        else:
            e_w += (stored.t() @ w[v0 : v0 + block]).to(acc)
    return sum_exp, e_w


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 (half types upcast), never below the input's precision (float64 kept)."""
    return torch.promote_types(dtype, torch.float32)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} is not one of {REDUCTIONS}")

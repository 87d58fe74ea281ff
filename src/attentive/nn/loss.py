"""Cross-entropy over a large vocabulary without materialising the full logits.

A language model's last step maps hidden states ``(N, D)`` to logits ``(N, V)``. With GPT-2's
50k vocabulary and 16k tokens a batch, the logits alone take 1.6 GB in bf16, and the usual
recipe (upcast to float32, log-softmax, keep it for backward) adds 3.3 GB more and as much
again for its gradient: often the largest tensors in the whole step.

``linear_cross_entropy`` fuses the output projection with the loss and walks the rows in
chunks: for each chunk it computes the logits, the loss and, right away, the gradients of the
hidden states and of the projection weight, then drops the logits. Backward only scales the
stored gradients. Peak extra memory is one chunk of logits instead of all of them, and the
work is the same three matrix products autograd would do.

``cross_entropy`` is the plain form on given logits (float32 softmax), the reference the tests
hold the fused form to. Both use PyTorch's definitions: label smoothing ``eps`` mixes the
one-hot target with a uniform ``eps / V`` over every class; targets equal to ``ignore_index``
add nothing to the loss, the gradient, or a ``mean``'s count.

Dimension names: N rows (tokens), D model width, V vocabulary, C rows in a chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("sum", "mean")
CHUNK_ELEMENTS = 2**25  # logits per chunk by default: 128 MB in float32 (640 rows at GPT-2's vocabulary)
CPU_SOFTMAX_ELEMENTS = 2**21  # logits per softmax pass on CPU: 8 MB in float32, cache-sized (41 rows at 50k)


def cross_entropy(
    logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0, ignore_index: int = -100,
    reduction: str = "sum",
) -> Tensor:
    """Plain cross-entropy of ``logits (..., V)`` against ``targets (...)``, softmax in float32."""
    _check_reduction(reduction)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).to(_softmax_dtype(logits.dtype)), targets.reshape(-1),
        ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
    )


def linear_cross_entropy(
    hidden: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None = None, *, label_smoothing: float = 0.0,
    ignore_index: int = -100, reduction: str = "sum", chunk_size: int | None = None,
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
    return _LinearCrossEntropy.apply(
        hidden.reshape(-1, hidden.shape[-1]), weight, bias, targets.reshape(-1), label_smoothing, ignore_index,
        reduction, chunk_size, compute_dtype, needs_grad,
    )


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and the gradients; backward multiplies them by the upstream grad."""

    @staticmethod
    def forward(
        ctx, hidden, weight, bias, targets, label_smoothing, ignore_index, reduction, chunk_size, compute_dtype,
        needs_grad,
    ):
        with torch.autocast(hidden.device.type, enabled=False):
            rows, vocab = hidden.shape[0], weight.shape[0]
            h_all = hidden.to(compute_dtype)  # (N, D)
            w = weight.to(compute_dtype)  # (V, D)
            grad_hidden = torch.empty_like(h_all)  # (N, D)
            acc = _softmax_dtype(compute_dtype)  # float32, or float64 for float64 inputs
            grad_weight: Tensor | None = None  # (V, D), from the first chunk's product on
            grad_bias = torch.zeros(vocab, dtype=acc, device=weight.device) if bias is not None else None
            valid_all = targets != ignore_index  # (N,)
            count = valid_all.sum()
            # mean divides by the number of counted rows: one factor, applied to the loss and the grads
            ones = torch.ones((), dtype=acc, device=hidden.device)
            scale = ones / count.clamp(min=1) if reduction == "mean" else ones
            total = torch.zeros((), dtype=acc, device=hidden.device)
            eps = label_smoothing
            # the uniform eps / V part of the target is rank one: applied on the narrow (., D) side
            # instead of as a pass over every (C, V) chunk
            w_colsum = w.sum(0).to(acc) if eps and needs_grad else None  # (D,)
            h_sum = torch.zeros(w.shape[1], dtype=acc, device=hidden.device)  # (D,) sum of counted rows
            for start in range(0, rows, chunk_size):
                h = h_all[start:start + chunk_size]  # (C, D)
                y = targets[start:start + chunk_size]  # (C,)
                valid = valid_all[start:start + chunk_size]
                logits = (h @ w.t()).to(acc)  # (C, V)
                if bias is not None:
                    logits += bias.to(acc)
                safe_y = torch.where(valid, y, 0)
                target_logit = logits.gather(1, safe_y[:, None]).squeeze(1)  # (C,)
                mean_logit = logits.mean(-1) if eps else None
                lse = _softmax_(logits)  # (C,); logits now hold the softmax
                loss = lse - target_logit  # -log p(target)
                if eps:  # (1 - eps) nll + eps * mean over classes of -log p
                    loss = (1 - eps) * loss + eps * (lse - mean_logit)
                total = total + (loss * valid).sum()
                if not needs_grad:  # evaluation: the loss is all we need
                    continue
                # d loss / d logits = softmax - (1 - eps) onehot - eps / V, zero for ignored rows
                probs = logits  # (C, V)
                probs.scatter_add_(1, safe_y[:, None], torch.full_like(probs[:, :1], -(1 - eps)))
                mask = valid.to(acc)  # (C,)
                probs_c = probs.to(compute_dtype)
                grad_h = (probs_c @ w).to(acc)  # (C, D)
                if eps:
                    grad_h -= (eps / vocab) * w_colsum
                grad_hidden[start:start + chunk_size] = (grad_h * (mask * scale)[:, None]).to(compute_dtype)
                h_valid = h * valid[:, None].to(h.dtype)  # (C, D)
                if grad_weight is None:
                    grad_weight = (probs_c.t() @ h_valid).to(acc)  # (V, D)
                elif grad_weight.dtype == compute_dtype:  # accumulate in place: no (V, D) temporary
                    grad_weight.addmm_(probs_c.t(), h_valid)
                else:
                    grad_weight += (probs_c.t() @ h_valid).to(acc)
                if eps:
                    h_sum += h_valid.sum(0).to(acc)
                if grad_bias is not None:
                    grad_bias += mask @ probs
            loss = total * scale
            if needs_grad and grad_weight is None:  # no rows at all
                grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device)
            if needs_grad:
                if eps:
                    grad_weight -= (eps / vocab) * h_sum[None, :]
                    if grad_bias is not None:
                        grad_bias -= (eps / vocab) * count.to(acc)
                grad_weight *= scale
                if grad_bias is not None:
                    grad_bias *= scale
        nothing = hidden.new_empty(0)  # evaluation keeps no weight gradient; a model may have no bias
        ctx.save_for_backward(grad_hidden, grad_weight if grad_weight is not None else nothing,
                              grad_bias if grad_bias is not None else nothing)
        ctx.has_bias = bias is not None
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        gh = (grad_hidden * grad_out).to(hidden_dtype)
        gw = (grad_weight * grad_out).to(weight_dtype)
        gb = (grad_bias * grad_out).to(bias_dtype) if ctx.has_bias else None
        return gh, gw, gb, None, None, None, None, None, None, None


def _softmax_(logits: Tensor) -> Tensor:
    """Turn float ``logits (C, V)`` into probabilities in place; return their log-sum-exp ``(C,)``.

    Eager on CPU a few rows at a time, so the passes over the rows run in cache rather than main
    memory (half the time at GPT-2's vocabulary); on GPUs, and under torch.compile (which fuses
    the passes into one loop of its own), all rows at once.
    """
    blocked = logits.device.type == "cpu" and not torch.compiler.is_compiling()
    rows = max(1, CPU_SOFTMAX_ELEMENTS // logits.shape[1]) if blocked else max(logits.shape[0], 1)
    parts = []
    for start in range(0, logits.shape[0], rows):
        block = logits[start:start + rows]  # (c, V)
        lse = torch.logsumexp(block, dim=-1)  # (c,)
        block.sub_(lse[:, None]).exp_()
        parts.append(lse)
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts) if parts else logits.new_empty(0)


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 (half types upcast), never below the input's precision (float64 kept)."""
    return torch.promote_types(dtype, torch.float32)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} is not one of {REDUCTIONS}")

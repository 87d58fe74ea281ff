"""The fused, chunked cross-entropy gives the plain loss and the plain gradients."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import attentive.nn.loss as loss_module
from attentive.nn.loss import cross_entropy, linear_cross_entropy


@pytest.fixture(params=["opaque", "traced"])
def wrapper(request, monkeypatch):
    """Both ways the fused loss is called: the custom op (CPU) and the traced autograd Function
    (other devices, forced here onto CPU); they share the computation but not the glue."""
    if request.param == "traced":
        monkeypatch.setattr(loss_module, "OPAQUE_DEVICES", ())
    return request.param


def _plain(hidden, weight, bias, targets, **kw):
    logits = hidden @ weight.t() + (bias if bias is not None else 0)
    return cross_entropy(logits, targets, **kw)


def _grads(fn, hidden, weight, bias, targets, **kw):
    params = [t.detach().clone().requires_grad_() for t in (hidden, weight) + ((bias,) if bias is not None else ())]
    loss = fn(params[0], params[1], params[2] if bias is not None else None, targets, **kw)
    loss.backward()
    return loss.detach(), [p.grad for p in params]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_cross_entropy_matches_plain_loss_and_grads(label_smoothing, reduction, with_bias, wrapper):
    hidden = torch.randn(2, 11, 16, dtype=torch.float64)
    weight = torch.randn(37, 16, dtype=torch.float64)
    bias = torch.randn(37, dtype=torch.float64) if with_bias else None
    targets = torch.randint(0, 37, (2, 11))
    targets[0, :3] = -100  # ignored rows (padding)
    kw = dict(label_smoothing=label_smoothing, reduction=reduction)
    want, want_grads = _grads(_plain, hidden, weight, bias, targets, **kw)
    got, got_grads = _grads(
        lambda h, w, b, y, **k: linear_cross_entropy(h, w, y, b, chunk_size=5, **k), hidden, weight, bias, targets, **kw
    )
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 70, 150])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunks_and_vocabulary_blocks_with_remainders(chunk_size, dtype, with_bias, monkeypatch, wrapper):
    """Row chunks and, within each, CPU vocabulary blocks that do not divide evenly: the
    log-sum-exp combines across blocks, every target is found in its block, and the weight
    gradient accumulates in place across chunks."""
    monkeypatch.setattr(loss_module, "CPU_BLOCK_ELEMENTS", 16 * 150)  # 41 classes in blocks of 16 (34 at 70 rows)
    torch.manual_seed(0)
    hidden, weight = torch.randn(3, 50, 16, dtype=dtype), torch.randn(41, 16, dtype=dtype)
    bias = torch.randn(41, dtype=dtype) if with_bias else None
    targets = torch.randint(0, 41, (3, 50))
    targets[1, 5:9] = -100
    targets[2, :3] = torch.tensor([0, 40, 16])  # the first and last class, and a block's first
    kw = dict(label_smoothing=0.1, reduction="mean")
    want, want_grads = _grads(_plain, hidden, weight, bias, targets, **kw)
    got, got_grads = _grads(
        lambda h, w, b, y, **k: linear_cross_entropy(h, w, y, b, chunk_size=chunk_size, **k),
        hidden,
        weight,
        bias,
        targets,
        **kw,
    )
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


def test_linear_cross_entropy_scales_with_upstream_gradient_and_skips_grads_in_eval(wrapper):
    hidden = torch.randn(6, 8, requires_grad=True)
    weight = torch.randn(10, 8, requires_grad=True)
    targets = torch.randint(0, 10, (6,))
    (3.0 * linear_cross_entropy(hidden, weight, targets)).backward()
    g3 = hidden.grad.clone()
    hidden.grad = None
    linear_cross_entropy(hidden, weight, targets).backward()
    torch.testing.assert_close(g3, 3 * hidden.grad)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets), _plain(hidden, weight, None, targets))


def test_linear_cross_entropy_under_bf16_autocast_is_close_to_float32():
    hidden = torch.randn(64, 32)
    weight = torch.randn(100, 32) * 0.1
    targets = torch.randint(0, 100, (64,))
    want = _plain(hidden, weight, None, targets, reduction="mean")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(hidden, weight, targets, reduction="mean", chunk_size=16)
    assert got.dtype == torch.float32
    assert abs(got.item() - want.item()) < 2e-2


def test_bf16_blocks_and_chunks_match_the_plain_bf16_path(monkeypatch, wrapper):
    """Under bf16 autocast the logits are stored in bf16 and the exponent taken in float32, block
    by block: loss and gradients stay within bf16 rounding of the plain path run the same way."""
    monkeypatch.setattr(loss_module, "CPU_BLOCK_ELEMENTS", 16 * 24)  # 100 classes in blocks of 24 at 16 rows
    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(64, 32), torch.randn(100, 32) * 0.3, torch.randn(100) * 0.1
    targets = torch.randint(0, 100, (64,))

    def plain_bf16(h, w, b, y, **kw):
        return cross_entropy(F.linear(h, w, b), y, **kw)  # autocast: bf16 product, float32 softmax

    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, want_grads = _grads(plain_bf16, hidden, weight, bias, targets, reduction="mean")
        got, got_grads = _grads(
            lambda h, w, b, y, **k: linear_cross_entropy(h, w, y, b, chunk_size=16, **k),
            hidden,
            weight,
            bias,
            targets,
            reduction="mean",
        )
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=5e-2, atol=2e-3)


def test_workspace_is_reused_across_sizes_and_kept_apart_between_threads():
    """The CPU logits buffer outlives a call: a bigger call after a smaller one, a smaller one
    after it, and two threads at once each still get the plain loss."""
    torch.manual_seed(0)
    weight = torch.randn(53, 8, dtype=torch.float64)
    cases = [(torch.randn(n, 8, dtype=torch.float64), torch.randint(0, 53, (n,))) for n in (5, 40, 3, 40)]
    for hidden, targets in cases:
        torch.testing.assert_close(
            linear_cross_entropy(hidden, weight, targets, chunk_size=32), _plain(hidden, weight, None, targets)
        )
    results = {}

    def worker(name, hidden, targets):
        results[name] = [linear_cross_entropy(hidden, weight, targets, chunk_size=32) for _ in range(50)]

    threads = [threading.Thread(target=worker, args=(i, *cases[i])) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in (1, 2):
        want = _plain(weight=weight, bias=None, hidden=cases[i][0], targets=cases[i][1])
        for got in results[i]:
            torch.testing.assert_close(got, want)
    loss_module.release_workspace()
    assert not getattr(loss_module._cache, "buffers", None)
    torch.testing.assert_close(
        linear_cross_entropy(*cases[0][:1], weight, cases[0][1]), _plain(cases[0][0], weight, None, cases[0][1])
    )


def test_a_retained_graph_cannot_run_backward_twice_on_the_scaled_gradients():
    """Backward scales the stored gradients in place; a second backward is refused, not wrong."""
    hidden = torch.randn(6, 8, requires_grad=True)
    weight = torch.randn(10, 8, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.randint(0, 10, (6,)))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("rows", [0, 5])
def test_no_rows_or_only_ignored_rows_give_zero_loss_and_gradients(rows, wrapper):
    """An empty batch, or one whose targets are all ignored: nothing to count, so zeros (the
    weight gradient is written by the first chunk, and here there is none to write it)."""
    hidden = torch.randn(rows, 8, requires_grad=True)
    weight = torch.randn(10, 8, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, torch.full((rows,), -100), label_smoothing=0.1, reduction="mean")
    loss.backward()
    assert loss.item() == 0.0
    assert not weight.grad.any() and not hidden.grad.any()


def test_linear_cross_entropy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(torch.randn(2, 4), torch.randn(5, 4), torch.zeros(2, dtype=torch.long), reduction="none")
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(torch.randn(2, 4), torch.randn(5, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="leading"):
        linear_cross_entropy(torch.randn(2, 4), torch.randn(5, 4), torch.zeros(3, dtype=torch.long))

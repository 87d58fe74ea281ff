"""PanelLinear: the CPU kernel computes what the reference path (dequantise + F.linear) computes,
the quantisers stay within their rounding, quantised blocks are kept exactly, and a missing
kernel falls back to the reference path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attentive.nn import kernels
from attentive.nn.quant import KERNEL_MAX_ROWS, PanelLinear, QuantizedWeight, quantize_activations

needs_kernels = pytest.mark.skipif(kernels.panel_ops() is None, reason=kernels.kernel_status())
ACTS = [
    "float",
    pytest.param(
        "int8",
        marks=pytest.mark.skipif(
            not kernels.has_int8_activations(), reason="no AVX512-VNNI: int8 activations run the reference"
        ),
    ),
]


def _weight(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 0.1, torch.randn(n, generator=g), torch.Generator().manual_seed(seed + 1)


@needs_kernels
@pytest.mark.parametrize(
    "mode, act", [("fp32", "float"), ("int8", "float"), ("int4", "float"), ("int8", "int8"), ("int4", "int8")]
)
@pytest.mark.parametrize("n, k", [(1, 32), (37, 64), (96, 96), (200, 160)])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 11, 70])
def test_kernel_equals_reference(mode, act, n, k, rows):
    if act == "int8" and not kernels.has_int8_activations():
        pytest.skip("no AVX512-VNNI")
    weight, bias, g = _weight(n, k, seed=n + k)
    for b in (None, bias):
        layer = PanelLinear.from_weight(weight, b, mode, act=act)
        assert layer.act == act
        x = torch.randn(rows, k, generator=g)
        with torch.no_grad():
            got = layer(x)
        xr = quantize_activations(x) if act == "int8" else x
        want = F.linear(xr.double(), layer.dequantize().double(), None if b is None else b.double()).float()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("group", [32, 64, 128])
def test_kernel_handles_groups_with_and_without_minimums_and_leading_dims(act, group):
    weight, bias, g = _weight(70, 128, seed=3)
    q = torch.randint(-128, 128, (70, 128), generator=g, dtype=torch.int64).to(torch.int8)
    scale, mins = torch.rand(70, 128 // group, generator=g), torch.randn(70, 128 // group, generator=g)
    for m in (None, mins):
        for mode, values in (("int8", q), ("int4", (q.to(torch.int64) & 15).to(torch.uint8))):
            layer = PanelLinear.from_quantized(values, scale, m, mode, group=group, bias=bias, act=act)
            assert torch.equal(layer.values(), values)
            x = torch.randn(2, 3, 128, generator=g)
            with torch.no_grad():
                got = layer(x)
            assert got.shape == (2, 3, 70)
            w = layer.dequantize().double()
            xr = quantize_activations(x) if act == "int8" else x
            want = F.linear(xr.double(), w, bias.double()).float()
            size = (x.double().abs() @ w.abs().T).max().item()  # float32 rounding grows with the sum's terms
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6 * size)


def test_reference_path_when_the_kernels_are_missing(monkeypatch):
    weight, bias, g = _weight(40, 64)
    x = torch.randn(3, 64, generator=g)
    layers = {
        (mode, act): PanelLinear.from_weight(weight, bias, mode, act=act)
        for mode in ("fp32", "int8", "int4")
        for act in ("float", "int8")
    }
    with torch.no_grad():
        want = {mode: layer(x) for mode, layer in layers.items()}
    monkeypatch.setattr("attentive.nn.quant.panel_ops", lambda: None)
    with torch.no_grad():
        for mode, layer in layers.items():
            torch.testing.assert_close(layer(x), want[mode], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layers["fp32", "float"](x), F.linear(x, weight, bias))
    assert layers["fp32", "int8"].act == "float"  # fp32 weights keep float activations


def test_many_rows_and_gradients_take_the_reference_path():
    weight, bias, g = _weight(40, 64)
    layer = PanelLinear.from_weight(weight, bias, "int8")
    x = torch.randn(KERNEL_MAX_ROWS + 1, 64, generator=g)
    torch.testing.assert_close(layer(x), layer.reference(x))


def test_fp32_panels_hold_the_weight_exactly():
    weight, bias, _ = _weight(45, 96)
    layer = PanelLinear.from_weight(weight, bias, "fp32")
    assert torch.equal(layer.dequantize(), weight)
    assert layer.weight_bytes() == 2 * 32 * 96 * 4  # two panels of 32 columns


def test_int8_is_per_channel_symmetric_within_half_a_step():
    weight, _, _ = _weight(64, 96)
    layer = PanelLinear.from_weight(weight, None, "int8")
    step = weight.abs().amax(dim=1, keepdim=True) / 127
    assert ((layer.dequantize() - weight).abs() <= step / 2 + 1e-7).all()
    assert layer.group == 96 and layer.mins is None


def test_int4_groups_of_32_within_half_a_step():
    weight, _, _ = _weight(64, 96)
    layer = PanelLinear.from_weight(weight, None, "int4")
    groups = weight.reshape(64, 3, 32)
    step = (groups.amax(-1) - groups.amin(-1)) / 15  # (N, G)
    error = (layer.dequantize() - weight).reshape(64, 3, 32).abs()
    assert (error <= step[..., None] / 2 + 1e-6).all()
    assert layer.values().min() >= 0 and layer.values().max() <= 15
    assert PanelLinear.from_weight(torch.zeros(4, 40), None, "int4").group == 20  # the largest that tiles 40


def test_int8_activations_round_in_blocks_of_32():
    x = torch.randn(3, 96, generator=torch.Generator().manual_seed(4))
    x[1, 32:64] = 0.0  # an all-zero block stays zero
    r = quantize_activations(x)
    blocks, rounded = x.reshape(3, 3, 32), r.reshape(3, 3, 32)
    step = blocks.abs().amax(-1, keepdim=True) / 127
    assert ((rounded - blocks).abs() <= step / 2 + 1e-6).all()
    assert torch.equal(r[1, 32:64], torch.zeros(32))
    assert PanelLinear.from_weight(torch.zeros(8, 40), None, "int8", act="int8").act == "float"  # 40: not blocks of 32


@pytest.mark.parametrize("act", ["float", "int8"])
def test_blocks_are_kept_not_requantised(act):
    g = torch.Generator().manual_seed(5)
    q4 = torch.randint(0, 16, (33, 64), generator=g).to(torch.uint8)
    q8 = torch.randint(-128, 128, (33, 64), generator=g).to(torch.int8)
    scale, mins = torch.rand(33, 2, generator=g), torch.randn(33, 2, generator=g)
    q4_1 = QuantizedWeight(q4, scale, mins, group=32, bits=4, kind="Q4_1")
    q8_0 = QuantizedWeight(q8, scale, None, group=32, bits=8, kind="Q8_0")
    int4 = PanelLinear.from_blocks(q4_1, "int4", act=act)
    assert int4.mode == "int4" and torch.equal(int4.values(), q4)
    assert torch.equal(int4.dequantize(), q4_1.dequantize())
    widened = PanelLinear.from_blocks(q4_1, "int8", act=act)  # 4-bit values held exactly in int8
    assert widened.mode == "int8" and torch.equal(widened.dequantize(), q4_1.dequantize())
    kept = PanelLinear.from_blocks(q8_0, "int4", act=act)  # 8-bit blocks keep their precision
    assert kept.mode == "int8" and torch.equal(kept.values(), q8)
    assert torch.equal(PanelLinear.from_blocks(q8_0, "fp32").dequantize(), q8_0.dequantize())


@pytest.mark.parametrize(
    "mode, act", [("fp32", "float"), ("int8", "float"), ("int4", "float"), ("int8", "int8"), ("int4", "int8")]
)
def test_cat_computes_the_parts_side_by_side(mode, act):
    g = torch.Generator().manual_seed(2)
    parts = [
        PanelLinear.from_weight(torch.randn(n, 64, generator=g), b, mode, act=act)
        for n, b in ((40, torch.randn(40, generator=g)), (24, None), (33, torch.randn(33, generator=g)))
    ]
    joined = PanelLinear.cat(parts)
    x = torch.randn(2, 64, generator=g)
    with torch.no_grad():
        want = torch.cat([p(x) for p in parts], dim=-1)
        torch.testing.assert_close(joined(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cannot join"):
        PanelLinear.cat([parts[0], PanelLinear.from_weight(torch.zeros(8, 32), None, mode, act=act)])


def test_kernel_status_names_the_path():
    assert kernels.kernel_status().startswith(("panel kernels:", "reference path:"))


@needs_kernels
@pytest.mark.parametrize(
    "mode, act", [("fp32", "float"), ("int8", "float"), ("int4", "float"), ("int8", "int8"), ("int4", "int8")]
)
def test_large_products_split_over_threads_give_the_same_result(mode, act):
    """Above ~4M units of work the kernel runs on PyTorch's threads (below, on the caller's)."""
    weight, bias, g = _weight(4100, 1024, seed=9)  # 16 MiB in fp32, 8M multiply-adds at 2 rows
    layer = PanelLinear.from_weight(weight, bias, mode, act=act)
    x = torch.randn(5, 1024, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            two = layer(x)
        torch.set_num_threads(1)
        with torch.no_grad():
            one = layer(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)  # each panel is computed whole by one thread
    torch.testing.assert_close(two, layer.reference(x), rtol=1e-4, atol=1e-4)

"""The CPU kernels outside attention and the panel products: ``gelu_erf`` (GELU for a decoding
step's few values, which PyTorch's wakes every thread for) and ``gemm`` (oneDNN's GEMM for many
rows: encoders, long prompts), each held to PyTorch's own result."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attentive.nn import kernels
from attentive.nn.inference import optimize
from attentive.nn.quant import GemmLinear, PanelLinear

needs_kernels = pytest.mark.skipif(kernels.panel_ops() is None, reason=kernels.kernel_status())


@needs_kernels
def test_gelu_kernel_matches_the_erf_form():
    """``gelu_erf`` against float64 GELU over a wide range, the tails, zeros and tiny values: as
    close as PyTorch's own float32 GELU is (within 1e-6)."""
    x = torch.cat(
        [
            torch.linspace(-12, 12, 20_001),
            torch.randn(1_000, generator=torch.Generator().manual_seed(0)) * 3,
            torch.tensor([0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, 7.0]),
        ]
    )  # 21,008: not a multiple of 16
    want = torch.nn.functional.gelu(x.double())
    got = kernels.panel_ops().gelu_erf(x)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    assert got[-3].item() == 100.0 and got[-2].item() == 0.0  # the tails are exact


@needs_kernels
def test_gelu_takes_the_kernel_for_a_decoding_step_only(monkeypatch):
    kernels.panel_ops()
    calls = []
    real = kernels.loaded_ops()

    class Counting:
        def gelu_erf(self, x):
            calls.append(x.numel())
            return real.gelu_erf(x)

    monkeypatch.setattr(kernels, "loaded_ops", lambda: Counting())
    small, large = torch.randn(2, 1, 1536), torch.randn(1, 1500, 1536)
    with torch.no_grad():
        torch.testing.assert_close(kernels.gelu(small), torch.nn.functional.gelu(small), rtol=1e-6, atol=1e-6)
        kernels.gelu(large)
    torch.testing.assert_close(kernels.gelu(small), torch.nn.functional.gelu(small))  # with gradients: PyTorch's
    assert calls == [small.numel()]


@pytest.mark.parametrize("shape", [(1500, 384), (2, 70, 384), (1, 384), (0, 384)])
def test_gemm_equals_linear(shape):
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(*shape, generator=g), torch.randn(1536, 384, generator=g), torch.randn(1536, generator=g)
    with torch.no_grad():
        got = kernels.gemm(x, w, b)
        no_bias = kernels.gemm(x, w)
    assert got.shape == (*shape[:-1], 1536)
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(no_bias, F.linear(x, w), rtol=1e-5, atol=1e-4)


def test_gemm_leaves_training_to_linear():
    w = torch.randn(8, 4, requires_grad=True)
    y = kernels.gemm(torch.randn(100, 4), w)
    y.sum().backward()  # F.linear's autograd
    assert w.grad is not None


def test_encoders_take_gemm_linear_in_fp32_and_compute_the_same():
    """optimize(): an encoder's linears (many rows a call) become GemmLinear, fused q/k/v
    included; the decoder's become panels; the model's outputs stay the same."""
    from attentive.models.speech import SpeechConfig, SpeechModel

    torch.manual_seed(0)
    model = SpeechModel(
        SpeechConfig(
            vocab_size=300,
            n_mels=16,
            num_encoder_layers=2,
            num_decoder_layers=2,
            d_model=64,
            num_heads=2,
            d_ff=128,
            max_len=32,
            max_source_positions=50,
            start_ids=[1],
            eot_id=2,
            timestamp_begin=0,
            begin_suppress_tokens=[],
        )
    )
    model.eval()
    fast = optimize(copy.deepcopy(model))
    encoder_linears = [m for m in fast.encoder.modules() if isinstance(m, nn.Linear)]
    assert encoder_linears and all(isinstance(m, GemmLinear) for m in encoder_linears)
    assert fast.encoder.layers[0].self_attn.qkv_proj is not None  # fused, still a GemmLinear
    assert isinstance(fast.decoder.layers[0].ffn.up, PanelLinear)
    features, ids = torch.randn(2, 16, 100), torch.tensor([[1, 5, 7], [1, 9, 3]])
    with torch.no_grad():
        torch.testing.assert_close(fast(features, ids), model(features, ids), rtol=1e-4, atol=1e-4)
    assert set(fast.state_dict()) >= {"encoder.layers.0.ffn.up.weight", "encoder.layers.0.ffn.up.bias"}

"""optimize(): fused projections equal the unfused model; the fp32 panel model decodes the same
tokens as the original in every cache mode; int8 / int4 kernels give what their reference path
gives; the optimised static step compiles as one graph."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import tiny_encdec, tiny_gpt2

import attentive
from attentive.decode import DecodeBatch, generate
from attentive.models import DecoderLM, EncoderDecoder, SpeechModel
from attentive.models.speech import SpeechConfig
from attentive.nn import GatedFeedForward, TransformerLayer
from attentive.nn.inference import fuse_projections, optimize
from attentive.nn.quant import PanelLinear


def _llama():
    torch.manual_seed(0)
    return attentive.build("llama-tiny", init_std=0.1).eval()


def _speech():
    torch.manual_seed(0)
    config = SpeechConfig(
        vocab_size=300,
        n_mels=16,
        num_encoder_layers=2,
        num_decoder_layers=2,
        d_model=64,
        num_heads=4,
        d_ff=128,
        max_len=48,
        max_source_positions=40,
        eot_id=299,
        start_ids=[298],
        timestamp_begin=0,
        begin_suppress_tokens=[],
    )
    return SpeechModel(config).eval()


def _greedy(model, prompts, cache="dynamic", n=12, **kwargs):
    return generate(
        model, None, prompts, max_new_tokens=n, temperature=0.0, stop_tokens=(), cache=cache, **kwargs
    ).tokens


@pytest.mark.parametrize(
    "make",
    [_llama, lambda: DecoderLM(tiny_gpt2()).eval(), lambda: EncoderDecoder(tiny_encdec()).eval(), _speech],
    ids=["llama", "gpt2", "encoder-decoder", "whisper"],
)
def test_fused_projections_equal_the_unfused_model(make):
    model = make()
    fused = copy.deepcopy(model)
    joins = fuse_projections(fused)
    layers = [m for m in fused.modules() if isinstance(m, TransformerLayer)]
    gated = [m for m in fused.modules() if isinstance(m, GatedFeedForward)]
    assert joins == len(layers) + len(gated) > 0
    assert all(layer.self_attn.qkv_proj is not None and layer.self_attn.q_proj is None for layer in layers)
    torch.manual_seed(1)
    with torch.no_grad():
        if isinstance(model, SpeechModel):
            features, ids = torch.randn(2, 16, 80), torch.randint(0, 298, (2, 7))
            want, got = model(features, ids), fused(features, ids)
        elif isinstance(model, EncoderDecoder):
            src, tgt = torch.randint(3, 50, (2, 9)), torch.randint(3, 50, (2, 6))
            want, got = model(src, tgt), fused(src, tgt)
        else:
            ids = torch.randint(1, 50, (2, 10))
            want, got = model(ids), fused(ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if isinstance(model, DecoderLM):
        prompts = [[5, 9, 2], [7]]
        assert _greedy(fused, prompts) == _greedy(model, prompts)


@pytest.mark.parametrize("cache", ["dynamic", "static", "none"])
def test_fp32_panel_model_decodes_the_same_tokens(cache):
    model = _llama()
    fast = optimize(copy.deepcopy(model))
    assert isinstance(fast.head, PanelLinear) and fast.inference == "fp32"
    assert isinstance(DecodeBatch(fast).head, PanelLinear)  # used as it is, not packed again
    prompts = [[5, 9, 2, 11], [7, 3]]  # a left-padded row too
    assert _greedy(fast, prompts, cache) == _greedy(model, prompts, cache)
    with torch.no_grad():
        ids = torch.randint(1, 500, (2, 9))
        torch.testing.assert_close(fast(ids), model(ids), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", ["float", "int8"])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantised_kernels_give_the_reference_paths_tokens(mode, act, monkeypatch):
    model = optimize(_llama(), mode, activations=act)
    layers = [m for m in model.modules() if isinstance(m, PanelLinear)]
    assert layers and all(m.mode == mode for m in layers)
    assert {m.act for m in layers} == ({"float"} if act == "float" else {"int8", "float"})  # d_ff 172: float
    prompts = [[5, 9, 2, 11], [7, 3]]
    torch.manual_seed(2)
    ids = torch.randint(1, 500, (2, 9))
    with torch.no_grad():
        fast_logits = model(ids)
    fast = _greedy(model, prompts, "static")
    monkeypatch.setattr("attentive.nn.quant.panel_ops", lambda: None)  # dequantise + F.linear
    with torch.no_grad():
        torch.testing.assert_close(fast_logits, model(ids), rtol=1e-4, atol=1e-4)
    assert fast == _greedy(model, prompts, "static")


@pytest.mark.parametrize("act", ["float", "int8"])
@pytest.mark.parametrize("mode, bound", [("int8", 0.05), ("int4", 0.5)])
def test_quantised_logits_stay_near_fp32(mode, bound, act):
    model = _llama()
    quantised = optimize(copy.deepcopy(model), mode, activations=act)
    ids = torch.randint(1, 500, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want, got = model(ids), quantised(ids)
    assert (got - want).abs().max() / want.abs().max() < bound


def test_whisper_decoder_optimised_keeps_the_transcript_tokens():
    from attentive.decode.transcriber import greedy_transcribe

    model = _speech()
    features = torch.randn(2, 16, 80, generator=torch.Generator().manual_seed(4))
    want = greedy_transcribe(model, features, max_new_tokens=10)
    fast = optimize(copy.deepcopy(model))
    assert isinstance(fast.encoder.layers[0].self_attn.qkv_proj, torch.nn.Linear)  # encoders keep F.linear in fp32
    assert isinstance(fast.decoder.layers[0].self_attn.qkv_proj, PanelLinear)
    assert greedy_transcribe(fast, features, max_new_tokens=10) == want
    int8 = optimize(copy.deepcopy(model), "int8")
    assert isinstance(int8.encoder.layers[0].ffn.up, PanelLinear)
    assert len(greedy_transcribe(int8, features, max_new_tokens=10)) == 2


@pytest.mark.parametrize("mode", [None, "int8", "int4"])
def test_optimised_static_step_compiles_as_one_graph(mode):
    torch._dynamo.reset()
    model = optimize(_llama(), mode)
    prompts = [[5, 9, 2, 11], [7, 3]]
    eager = _greedy(model, prompts, "static", n=8)
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    assert _greedy(model, prompts, "static", n=8, compile=counting_backend) == eager
    assert len(graphs) == 1
    ops = {str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"}
    assert any("attentive_cpu" in op for op in ops) or "reference" in attentive.nn.kernels.kernel_status()
    # one-query attention is the kernel's op in the graph, which inductor cannot rewrite into SDPA
    assert any("attend_one" in op for op in ops) or "reference" in attentive.nn.kernels.kernel_status()
    torch._dynamo.reset()


def test_optimize_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="float32 models on CPU"):
        optimize(_llama().double())
    with pytest.raises(ValueError, match="quantize must be one of"):
        optimize(_llama(), "int3")
    with pytest.raises(ValueError, match="activations must be one of"):
        optimize(_llama(), "int8", activations="int4")


def _batch_greedy(batch, prompts, n):
    logits, out = batch.start(prompts, max_new_tokens=n), []
    for i in range(n):
        tokens = logits.argmax(-1)
        out.append(tokens.tolist())
        if i < n - 1:
            logits = batch.step(tokens)
    return out


def test_inductor_step_with_frozen_weights_gives_the_eager_tokens_batch_after_batch():
    """compile=True on CPU compiles the step with the weights as constants (inductor's freezing);
    the static cache stays an input written in place: two batches in turn through one compiled
    step give the eager tokens, the second not reading the first's keys."""
    torch._dynamo.reset()
    model = optimize(_llama(), "int8")
    eager, compiled = DecodeBatch(model, cache="static"), DecodeBatch(model, cache="static", compile=True)
    with torch.no_grad():
        for prompts in ([[5, 9, 2, 11], [7, 3, 8, 1]], [[40, 2, 9, 9], [13, 6, 6, 2]]):
            assert _batch_greedy(compiled, prompts, 8) == _batch_greedy(eager, prompts, 8)
    torch._dynamo.reset()

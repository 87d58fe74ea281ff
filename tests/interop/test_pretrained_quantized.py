"""Pretrained models loaded for CPU inference: ``from_pretrained(..., quantize=)`` and the CLI.

SmolLM2's GGUF holds its linear weights as Q4_1 blocks and its (tied) embedding as Q8_0. Loaded
with ``quantize="int4"`` the 4-bit layers hold exactly the file's values, scales and minimums
(nothing requantised), and ``quantize="int8"`` holds the same numbers in 8 bits; so both compute
with the very weights the fp32 model dequantises, and give its greedy tokens.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import pytest
import torch

from pretrained_paths import need_smollm2, need_whisper_ct2

from attentive.nn.quant import PanelLinear

PROMPT = "The history of the Roman Empire spans many centuries. It began when"


@pytest.fixture(scope="module")
def gguf_blocks():
    from attentive.interop.gguf import load_gguf_llama

    return load_gguf_llama(need_smollm2(), keep_blocks=True)


@pytest.fixture(scope="module")
def smollm2(gguf_blocks):
    """fp32, int8 and int4 from one read of the file, as from_pretrained(quantize=) makes them
    (checked against from_pretrained itself below)."""
    from attentive.interop.pretrained import pretrained_from_gguf
    from attentive.nn.inference import optimize

    out = {}
    for q in (None, "int8", "int4"):
        pre = pretrained_from_gguf(gguf_blocks, str(need_smollm2()))
        if q:
            optimize(pre.model, q, blocks=pre.blocks)
        pre.blocks = None
        out[q] = pre
    return out


def test_gguf_blocks_dequantise_to_the_readers_floats(gguf_blocks):
    kinds = {b.kind for b in gguf_blocks.blocks.values()}
    assert kinds == {"Q4_1", "Q8_0"}
    assert len(gguf_blocks.blocks) == 30 * 7 + 1
    for name, blocks in gguf_blocks.blocks.items():  # q/k rows un-permuted like the floats
        assert torch.equal(blocks.dequantize(), gguf_blocks.state_dict[name]), name


def test_int4_layers_hold_the_files_q4_1_values(gguf_blocks, smollm2):
    model = smollm2["int4"].model
    assert model.inference == "int4"
    layer = model.stack.layers[3]
    qkv = layer.self_attn.qkv_proj
    assert isinstance(qkv, PanelLinear) and qkv.mode == "int4" and qkv.group == 32
    hf = "model.layers.3.self_attn.{}_proj.weight"
    parts = [gguf_blocks.blocks[hf.format(p)] for p in "qkv"]
    assert torch.equal(qkv.values(), torch.cat([p.values for p in parts]))  # no requantisation
    assert torch.equal(qkv.dequantize(), torch.cat([p.dequantize() for p in parts]))
    down = layer.ffn.down
    assert torch.equal(down.values(), gguf_blocks.blocks["model.layers.3.mlp.down_proj.weight"].values)
    head = model.head  # the tied Q8_0 embedding stays 8-bit, its own blocks
    assert head.mode == "int8" and head.group == 32
    assert torch.equal(head.values(), gguf_blocks.blocks["model.embed_tokens.weight"].values)


def test_int8_holds_the_same_numbers(gguf_blocks, smollm2):
    model = smollm2["int8"].model
    layers = [m for m in model.modules() if isinstance(m, PanelLinear)]
    assert len(layers) == 30 * 4 + 1 and all(m.mode == "int8" for m in layers)
    down = model.stack.layers[0].ffn.down
    assert torch.equal(down.dequantize(), gguf_blocks.state_dict["model.layers.0.mlp.down_proj.weight"])


def test_quantised_models_give_the_fp32_tokens(smollm2):
    from attentive.decode import generate

    prompt = smollm2[None].tokenizer.encode(PROMPT)
    outputs = {
        q: generate(
            pre.model, None, [prompt], max_new_tokens=16, temperature=0.0, stop_tokens=(), cache="static"
        ).tokens[0]
        for q, pre in smollm2.items()
    }
    assert outputs["int8"] == outputs[None]
    assert outputs["int4"] == outputs[None]


def test_from_pretrained_quantize_is_the_same_model(smollm2):
    from attentive import from_pretrained

    pre = from_pretrained(need_smollm2(), quantize="int4")
    assert pre.blocks is None and pre.model.inference == "int4"
    want = dict(smollm2["int4"].model.named_buffers())
    for name, buffer in pre.model.named_buffers():
        assert torch.equal(buffer, want[name]), name


def test_quantize_is_checked_and_such_models_are_not_saved(smollm2, tmp_path):
    from attentive import from_pretrained

    with pytest.raises(ValueError, match="quantize must be one of"):
        from_pretrained(need_smollm2(), quantize="int2")
    with pytest.raises(ValueError, match="runs on CPU in float32"):
        from_pretrained(need_smollm2(), quantize="int8", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="prepared for inference"):
        smollm2["int4"].save(tmp_path)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_cli_generate_quantize(mode, monkeypatch, smollm2):
    from attentive.cli.main import main

    monkeypatch.setattr("attentive.interop.resolve.from_pretrained", lambda *a, quantize=None, **k: smollm2[quantize])
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "generate",
                "--model",
                "smollm2.gguf",
                "--quantize",
                mode,
                "--greedy",
                "--max-new-tokens",
                "8",
                "--no-echo",
                PROMPT,
            ]
        )
    assert code == 0
    want = smollm2[None].tokenizer.decode(smollm2[None].tokenizer.encode(PROMPT))  # the model echoes nothing
    assert out.getvalue().strip() and want not in out.getvalue()


def test_cli_quantize_refuses_a_gpu(capsys):
    from attentive.cli.main import main

    assert main(["generate", "--model", "x.gguf", "--quantize", "int8", "--device", "cuda", "hi"]) == 2
    assert "--quantize runs on the CPU" in capsys.readouterr().err


def test_whisper_int8_loads_every_linear_quantised():
    from attentive import from_pretrained

    pre = from_pretrained(need_whisper_ct2(), quantize="int8")
    layers = [m for m in pre.model.modules() if isinstance(m, PanelLinear)]
    assert layers and all(m.mode == "int8" for m in layers)
    assert not any(isinstance(m, torch.nn.Linear) for m in pre.model.modules())

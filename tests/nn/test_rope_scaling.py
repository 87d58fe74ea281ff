"""RoPE scaling (linear, dynamic NTK, YaRN, LLaMA 3): cos/sin equal transformers' LLaMA rotary
embedding for every type on the same config; configs are checked with one-line errors; a key
moved by ``shift_keys`` equals the key rotated at its new position."""

from __future__ import annotations

import pytest
import torch

from attentive.models import DecoderLM
from attentive.nn import RopeScaling, RotaryEmbedding
from attentive.nn.positional import apply_rotary
from helpers import tiny_gpt2

transformers = pytest.importorskip("transformers")

HEAD_DIM, BASE, MAX_LEN = 64, 10000.0, 256
SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0},
    "yarn-deepseek": {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 64,
        "beta_fast": 16,
        "beta_slow": 2,
        "mscale": 1.0,
        "mscale_all_dim": 0.5,
    },
    "yarn-attention-factor": {"type": "yarn", "factor": 3.0, "attention_factor": 0.8, "truncate": False},
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 128,
    },
}


def hf_rotary(scaling: dict | None):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = transformers.LlamaConfig(
        hidden_size=4 * HEAD_DIM,
        num_attention_heads=4,
        max_position_embeddings=MAX_LEN,
        rope_theta=BASE,
        rope_scaling=dict(scaling) if scaling else None,
    )
    return LlamaRotaryEmbedding(config)


@pytest.mark.parametrize("name", [None, *SCALINGS])
@pytest.mark.parametrize("length", [100, MAX_LEN, 1000])  # below, at and (4x) beyond the training length
def test_cos_sin_equal_transformers_llama_rotary_embedding(name, length):
    scaling = SCALINGS.get(name)
    ours = RotaryEmbedding(HEAD_DIM, BASE, scaling=scaling, max_len=MAX_LEN)
    positions = torch.arange(length)[None]
    hf_cos, hf_sin = hf_rotary(scaling)(torch.zeros(1), positions)  # (1, T, Dh)
    cos, sin = ours.rotary(positions)  # (1, 1, T, Dh)
    assert (cos[:, 0] - hf_cos).abs().max().item() <= 1e-6
    assert (sin[:, 0] - hf_sin).abs().max().item() <= 1e-6


def test_scaling_types_really_change_the_angles_past_the_training_length():
    plain = RotaryEmbedding(HEAD_DIM, BASE, max_len=MAX_LEN).rotary(torch.arange(1000))[0]
    for name, scaling in SCALINGS.items():
        cos = RotaryEmbedding(HEAD_DIM, BASE, scaling=scaling, max_len=MAX_LEN).rotary(torch.arange(1000))[0]
        assert (cos - plain).abs().max() > 1e-2, name
    # dynamic NTK leaves a pass within the training length alone
    dynamic = RotaryEmbedding(HEAD_DIM, BASE, scaling=SCALINGS["dynamic"], max_len=MAX_LEN)
    assert torch.equal(dynamic.rotary(torch.arange(MAX_LEN))[0], plain[..., :MAX_LEN, :])


@pytest.mark.parametrize(
    "value, message",
    [
        ({"rope_type": "ntk-by-parts", "factor": 2.0}, "rope_scaling type 'ntk-by-parts' is not one of"),
        ({"rope_type": "linear", "factor": 0.5}, "factor must be >= 1 .*got 0.5"),
        ({"rope_type": "linear"}, "'linear' needs factor"),
        ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0}, "high_freq_factor"),
        ({"rope_type": "yarn", "factor": 2.0, "scale": 3}, r"unknown rope_scaling key\(s\) \['scale'\]"),
        ({"factor": 2.0}, "needs a rope_type"),
        ({"type": "yarn", "rope_type": "linear", "factor": 2.0}, "two types"),
        ("yarn", "must be a dict"),
    ],
)
def test_bad_rope_scaling_is_one_line_naming_the_value(value, message):
    with pytest.raises(ValueError, match=message) as err:
        RopeScaling.parse(value)
    assert "\n" not in str(err.value)


def test_config_takes_hf_fields_and_rejects_bad_ones():
    config = tiny_gpt2(positional="rope", rope_scaling={"type": "yarn", "factor": 2.0, "beta_fast": 16})
    model = DecoderLM(config)
    rope = model.stack.positional
    assert rope.scaling == RopeScaling("yarn", factor=2.0, beta_fast=16) and rope.attention_factor > 1
    assert type(config).from_dict(config.to_dict()) == config  # travels in config.json unchanged
    assert RopeScaling.parse({"rope_type": "default"}) is None
    with pytest.raises(ValueError, match=r"DecoderLMConfig.rope_scaling factor must be >= 1 .*got 0.9") as err:
        tiny_gpt2(positional="rope", rope_scaling={"rope_type": "linear", "factor": 0.9})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="rope_scaling type 'cubic'"):
        tiny_gpt2(positional="rope", rope_scaling={"rope_type": "cubic", "factor": 2.0})
    with pytest.raises(ValueError, match="applies to positional='rope', not 'alibi'"):
        tiny_gpt2(positional="alibi", rope_scaling={"rope_type": "linear", "factor": 2.0})


@pytest.mark.parametrize("name", [None, "linear", "yarn"])
def test_shifted_key_equals_the_key_rotated_at_its_new_position(name):
    rope = RotaryEmbedding(16, 100.0, scaling=SCALINGS.get(name), max_len=32)
    k = torch.randn(2, 3, 5, 16)
    at = torch.tensor([7, 9, 12, 40, 41])
    shift = torch.tensor([-3, -3, -5, -20, 0])
    rotated = apply_rotary(k, *rope.rotary(at))  # (B, H, T, Dh), YaRN's scale included
    moved = rope.shift_keys(rotated, shift)
    want = apply_rotary(k, *rope.rotary(at + shift))
    assert (moved - want).abs().max().item() < 1e-5


def test_a_model_cast_to_bf16_keeps_float32_angles():
    rope = RotaryEmbedding(16, 10000.0, max_len=64)
    exact = rope.rotary(torch.arange(5000))
    rope = rope.to(torch.bfloat16)
    assert rope.inv_freq.dtype == torch.bfloat16  # the buffer follows the cast ...
    assert all(torch.equal(a, b) for a, b in zip(rope.rotary(torch.arange(5000)), exact))  # ... the angles do not

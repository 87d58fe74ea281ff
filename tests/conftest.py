"""Shared fixtures for the core tests: seeding and tiny model configs."""

from __future__ import annotations

import pytest
import torch

from attentive.models import DecoderLMConfig, EncoderDecoderConfig


# The tests run tiny tensors on a few shared cores: one intra-op thread avoids oversubscription,
# which otherwise makes small-op tests 10x slower when the machine is busy.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def tiny_encdec(**overrides) -> EncoderDecoderConfig:
    """A 2+2-layer, 32-wide encoder-decoder; no dropout so eval/train agree."""
    base = dict(
        src_vocab_size=50, tgt_vocab_size=50, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2,
        num_decoder_layers=2, max_len=64, dropout=0.0, attention_dropout=0.0,
    )
    base.update(overrides)
    return EncoderDecoderConfig(**base)


def tiny_gpt2(**overrides) -> DecoderLMConfig:
    """GPT-2-shaped (learned positions, pre-LN, GELU, biases, tied) but 2 layers, 32 wide."""
    base = dict(
        vocab_size=50, num_layers=2, d_model=32, num_heads=4, d_ff=64, max_len=64, dropout=0.0,
        attention_dropout=0.0,
    )
    base.update(overrides)
    return DecoderLMConfig(**base)

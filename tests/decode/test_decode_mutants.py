"""Tests that kill the mutants a sampled mutmut run left alive in ``attentive.decode``
(``benchmarks/reliability/mutation.json``)."""

from __future__ import annotations

import pytest
import torch

from attentive.decode.config import EngineConfig
from attentive.models import DecoderLM, DecoderLMConfig


def test_compile_with_a_dynamic_cache_names_the_caches_that_work():
    torch.manual_seed(0)
    model = DecoderLM(DecoderLMConfig(vocab_size=20, num_layers=1, d_model=8, num_heads=2, d_ff=16, max_len=16))
    with pytest.raises(ValueError, match=r"dynamic cache here; use cache='slots' or 'static' \(a model prepared"):
        EngineConfig(cache="auto", compile=True).resolved(model, model.cache_layout())

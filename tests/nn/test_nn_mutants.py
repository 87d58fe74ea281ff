"""Tests that kill the mutants a sampled mutmut run left alive in ``attentive.nn``
(``benchmarks/reliability/mutation.json``)."""

from __future__ import annotations

import torch

from attentive.nn.loss import CPU_BLOCK_ELEMENTS, _vocab_block
from attentive.nn.rope_scaling import RopeScaling


def test_a_one_row_chunk_gets_the_whole_cpu_block():
    cpu = torch.device("cpu")
    assert _vocab_block(50_000, 1, cpu) == CPU_BLOCK_ELEMENTS
    assert _vocab_block(50_000, 0, cpu) == CPU_BLOCK_ELEMENTS
    assert _vocab_block(50_000, 4, cpu) == CPU_BLOCK_ELEMENTS // 4


def test_rope_scaling_to_dict_keeps_only_what_is_set():
    assert RopeScaling(rope_type="linear", factor=2.0).to_dict() == {"rope_type": "linear", "factor": 2.0}
    yarn = RopeScaling(rope_type="yarn", factor=4.0, original_max_position_embeddings=32, truncate=False)
    assert yarn.to_dict() == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 32,
        "truncate": False,
    }

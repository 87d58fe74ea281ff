"""Packed sequences: a row holding several examples (segment ids, positions restarting per
segment) computes, for each example, exactly what that example computes alone."""

from __future__ import annotations

import pytest
import torch

import attentive


@pytest.mark.parametrize("preset", ["llama-tiny", "gpt2-small"])
def test_packed_row_equals_each_example_alone(preset):
    torch.manual_seed(0)
    overrides = (
        {
            "num_layers": 2,
            "d_model": 64,
            "num_heads": 4,
            "d_ff": 128,
            "vocab_size": 100,
            "max_len": 32,
            "dropout": 0.0,
            "attention_dropout": 0.0,
        }
        if preset == "gpt2-small"
        else {"vocab_size": 100}
    )
    model = attentive.build(preset, **overrides).eval()
    examples = [torch.randint(1, 100, (n,)) for n in (5, 3, 7)]
    ids = torch.cat(examples + [torch.zeros(2, dtype=torch.long)])[None]  # (1, 17): 3 examples + 2 pads
    segments = torch.cat([torch.full((len(e),), i + 1) for i, e in enumerate(examples)] + [torch.zeros(2)]).long()
    positions = torch.cat([torch.arange(len(e)) for e in examples] + [torch.arange(2)])
    with torch.no_grad():
        packed = model(ids, positions=positions[None], segment_ids=segments[None])[0]  # (17, V)
        start = 0
        for example in examples:
            alone = model(example[None])[0]
            torch.testing.assert_close(packed[start : start + len(example)], alone, atol=1e-5, rtol=1e-5)
            start += len(example)


def test_segment_ids_refuse_a_cache_and_a_wrong_shape():
    model = attentive.build("llama-tiny").eval()
    ids = torch.randint(1, 100, (1, 4))
    with pytest.raises(ValueError, match="segment_ids"):
        model(ids, segment_ids=torch.ones(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="without a KV cache"):
        model(ids, segment_ids=torch.ones(1, 4, dtype=torch.long), cache=attentive.nn.DynamicCache())

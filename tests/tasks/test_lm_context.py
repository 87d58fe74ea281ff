"""Language models with context memory: Transformer-XL training on consecutive segments (the
sampler, the memory carried across steps and cleared when the lanes start over, validation over
lanes), perplexity with a segment memory, and one-stream perplexity through bounded caches."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.data.lm import SegmentSampler, lane_segments
from attentive.evaluate.perplexity import perplexity, stream_perplexity
from attentive.recipes import get_recipe
from attentive.train.trainer import Trainer

TINY = dict(
    num_layers=1,
    d_model=32,
    num_heads=2,
    d_ff=64,
    block_size=32,
    batch_size=4,
    eval_tokens=2000,
    max_minutes=None,
    progress=False,
    device="cpu",
    log_every=5,
    warmup_steps=5,
    precision="fp32",
)


def test_segment_sampler_gives_each_row_consecutive_segments_of_its_lane():
    tokens = torch.arange(1000)
    sampler = SegmentSampler(tokens, block_size=10, batch_size=3, rank=1, world_size=2)  # 6 lanes of 166
    assert (sampler.lane_len, sampler.segments) == (166, 16)
    x0, y0, fresh0 = sampler.batch(0)
    x1, _, fresh1 = sampler.batch(1)
    assert fresh0 and not fresh1
    assert x0[:, 0].tolist() == [3 * 166, 4 * 166, 5 * 166]  # rank 1 holds lanes 3, 4, 5
    assert torch.equal(x1[:, 0], x0[:, -1] + 1) and torch.equal(y0, x0 + 1)  # row b continues its lane
    assert sampler.batch(16)[2] and torch.equal(sampler.batch(16)[0], x0)  # wraps, and says so
    other = SegmentSampler(tokens, block_size=10, batch_size=3, rank=0, world_size=2).batch(0)[0]
    assert not set(other.flatten().tolist()) & set(x0.flatten().tolist())  # ranks never share a lane


def test_lane_segments_score_every_lane_token_once():
    tokens = torch.arange(103)
    seen = torch.cat([y.flatten() for _, y in lane_segments(tokens, rows=4, segment=7)])
    assert sorted(seen.tolist()) == list(range(1, 101))  # 4 lanes of 25 targets; 2 tokens left unscored
    with pytest.raises(ValueError, match="rows and segment"):
        next(lane_segments(tokens, rows=0, segment=7))


def test_recurrent_training_carries_the_memory_and_clears_it_when_lanes_restart(tmp_path):
    recipe = get_recipe("shakespeare-char").build(
        {"out_dir": str(tmp_path), **TINY, "max_steps": 6, "positional": "rope", "memory_len": 48}
    )
    task = recipe.task
    assert task.memory_len == 48 and recipe.model.config.memory_len == 48
    batches = task.train_batches(0)
    assert len(batches[0]) == 3 and batches[0][2] and not batches[1][2]
    result = Trainer(task, recipe.model, recipe.train_config).fit()
    assert [tuple(m.shape) for m in task.memory.memory] == [(4, 48, 32)]  # 6 segments of 32: the last 48 states
    assert not task.memory.memory[0].requires_grad
    memory = task.memory
    task.loss(recipe.model, batches[0])  # the lanes start over: a fresh, empty memory
    assert task.memory is not memory and task.memory.memory[0].shape[1] == 32
    assert result["val_tokens"] == 111_520 and result["val_loss"] < 4.3  # validation over 32 lanes


def test_learned_positions_cannot_recur(tmp_path):
    with pytest.raises(ValueError, match="memory_len=48 .*not positional='learned'"):
        get_recipe("shakespeare-char").build(
            {"out_dir": str(tmp_path), **TINY, "positional": "learned", "memory_len": 48}
        )


def test_perplexity_of_a_recurrent_model_reads_blocks_in_segments():
    """Memory = segment = half the block: the two segments are exactly one causal pass over the
    block, so the recurrent model scores what the same weights score without memory."""
    torch.manual_seed(0)
    plain = attentive.build("llama-tiny", vocab_size=40, max_len=32, init_std=0.15).eval()
    recurrent = attentive.build(plain.config.replace(memory_len=32)).eval()
    recurrent.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 40, (300,), generator=torch.Generator().manual_seed(1))
    want = perplexity(plain, tokens, block_size=32, batch_size=4)
    got = perplexity(recurrent, tokens, block_size=64, batch_size=4, segment_len=32)
    blocks64 = attentive.build(plain.config.replace(max_len=64)).eval()
    blocks64.load_state_dict(plain.state_dict())
    assert got.loss == pytest.approx(perplexity(blocks64, tokens, block_size=64, batch_size=4).loss, abs=1e-6)
    assert got.loss != pytest.approx(want.loss, abs=1e-4)  # longer context than 32-token blocks: a different score


def test_stream_perplexity_through_full_window_and_sink_caches():
    torch.manual_seed(0)
    model = attentive.build("llama-tiny", vocab_size=40, max_len=64, init_std=0.15).eval()
    tokens = torch.randint(0, 40, (60,), generator=torch.Generator().manual_seed(2))
    blocks = perplexity(model, tokens, block_size=64)
    full = stream_perplexity(model, tokens, chunk=7)
    assert full.loss == pytest.approx(blocks.loss, abs=1e-6) and full.losses.shape == (59,)
    covered = stream_perplexity(model, tokens, window=56, sinks=4)  # S + W covers the text: the full cache
    assert covered.loss == pytest.approx(blocks.loss, abs=1e-6)
    window = stream_perplexity(model, tokens, window=8)
    sinks = stream_perplexity(model, tokens, window=8, sinks=2)
    assert window.loss != pytest.approx(blocks.loss, abs=1e-4) and sinks.loss != pytest.approx(window.loss, abs=1e-4)
    assert torch.allclose(window.losses[:8], full.losses[:8], atol=1e-6)  # the first W tokens see everything
    sizes = [b for _, b in sinks.cache_bytes]
    assert max(sizes) == sizes[-1] == 2 * 2 * 10 * 2 * 16 * 4  # layers x (k, v) x (S + W) x Hkv x Dh x 4 bytes
    assert [n for n, _ in sinks.cache_bytes] == list(range(1, 60))  # one token per call with sinks
    with pytest.raises(ValueError, match="sinks=2 needs a window"):
        stream_perplexity(model, tokens, sinks=2)

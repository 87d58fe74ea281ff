"""Token-count batching invariants and collation of id lists into padded tensors."""

import random

import pytest
import torch

from attentive.data import PairBatch, TokenBatchSampler, collate_pairs, pad_sequences, pair_lengths
from attentive.text import BOS_ID, EOS_ID, PAD_ID


def _lengths(n=500, seed=0):
    rng = random.Random(seed)
    return [(rng.randint(1, 40), rng.randint(1, 40)) for _ in range(n)]


def _padded_tokens(batch, lengths):
    return len(batch) * (max(lengths[i][0] for i in batch) + max(lengths[i][1] for i in batch))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_budget_and_each_example_once_across_ranks(world_size):
    lengths = _lengths()
    samplers = [
        TokenBatchSampler(lengths, max_tokens=400, seed=7, rank=r, world_size=world_size) for r in range(world_size)
    ]
    for epoch in (0, 1):
        shards = [s.batches(epoch) for s in samplers]
        assert len({len(b) for b in shards}) == 1  # same number of batches on every rank
        seen = [i for shard in shards for batch in shard for i in batch]
        assert sorted(seen) == list(range(len(lengths)))  # once each, shards disjoint
        for shard in shards:
            assert all(batch and _padded_tokens(batch, lengths) <= 400 for batch in shard)


def test_deterministic_per_epoch_and_varies_between_epochs():
    lengths = _lengths()
    a = TokenBatchSampler(lengths, max_tokens=400, seed=3)
    b = TokenBatchSampler(lengths, max_tokens=400, seed=3)
    assert a.batches(5) == b.batches(5)
    assert a.batches(0) != a.batches(1)
    assert TokenBatchSampler(lengths, max_tokens=400, seed=4).batches(0) != a.batches(0)
    # contents, not just order, change between epochs (shuffled ties within buckets)
    assert {tuple(sorted(x)) for x in a.batches(0)} != {tuple(sorted(x)) for x in a.batches(1)}


def test_resume_skips_into_the_same_order():
    lengths = _lengths()
    sampler = TokenBatchSampler(lengths, max_tokens=400, seed=1)
    full = sampler.batches(2)
    resumed = TokenBatchSampler(lengths, max_tokens=400, seed=1).batches(2)[10:]
    assert resumed == full[10:]


def test_iter_len_and_set_epoch():
    sampler = TokenBatchSampler(_lengths(), max_tokens=400, seed=0)
    sampler.set_epoch(3)
    assert list(sampler) == sampler.batches(3) and len(sampler) == len(sampler.batches(3))


def test_no_shuffle_is_length_sorted():
    lengths = [5, 1, 3, 9, 2, 8]
    batches = TokenBatchSampler(lengths, max_tokens=10, shuffle=False, bucket_width=1).batches(0)
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_batches_are_reasonably_full():
    lengths = _lengths(2000)
    batches = TokenBatchSampler(lengths, max_tokens=1000, seed=0).batches(0)
    fill = sum(_padded_tokens(b, lengths) for b in batches) / (1000 * len(batches))
    assert fill > 0.8


def test_too_long_example():
    lengths = [(3, 3), (50, 60), (2, 2)]
    with pytest.raises(ValueError, match=r"index 1 \(src 50 \+ tgt 60 tokens\)"):
        TokenBatchSampler(lengths, max_tokens=100)
    sampler = TokenBatchSampler(lengths, max_tokens=100, drop_too_long=True)
    assert sampler.dropped == [1] and sampler.num_examples == 2
    assert sorted(i for b in sampler.batches(0) for i in b) == [0, 2]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        TokenBatchSampler([1, 2], max_tokens=10, rank=2, world_size=2)
    with pytest.raises(TypeError, match=r"lengths\[1\]"):
        TokenBatchSampler([1, "x"], max_tokens=10)
    with pytest.raises(ValueError, match="single-example batches"):
        TokenBatchSampler([9, 9, 9], max_tokens=10, world_size=2).batches(0)


def test_collate_pairs_shapes_and_shift():
    pairs = [([5, 6, 7], [8, 9]), ([10], [11, 12, 13, 14])]
    batch = collate_pairs(pairs)
    assert isinstance(batch, PairBatch)
    assert batch.src.shape == (2, 3) and batch.src.dtype == torch.long
    assert batch.tgt_in.shape == batch.labels.shape == (2, 5)
    assert batch.src.tolist() == [[5, 6, 7], [10, PAD_ID, PAD_ID]]
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, 9, PAD_ID, PAD_ID], [BOS_ID, 11, 12, 13, 14]]
    assert batch.labels.tolist() == [[8, 9, EOS_ID, PAD_ID, PAD_ID], [11, 12, 13, 14, EOS_ID]]
    assert batch.n_tokens == 3 + 5
    assert pair_lengths(pairs) == [(3, 3), (1, 5)]  # matches the collated widths


def test_collate_options():
    batch = collate_pairs([([5], [8])], src_eos=True, label_pad_id=-100)
    assert batch.src.tolist() == [[5, EOS_ID]]
    batch = collate_pairs([([5], [8]), ([5], [8, 9])], label_pad_id=-100)
    assert batch.labels.tolist()[0] == [8, EOS_ID, -100]
    assert batch.to("cpu").labels.equal(batch.labels)
    with pytest.raises(ValueError, match="empty batch"):
        collate_pairs([])


def test_pad_sequences_empty_row():
    assert pad_sequences([[], [1, 2]]).tolist() == [[PAD_ID, PAD_ID], [1, 2]]

"""LM data: Tiny Shakespeare, the split, deterministic random blocks, sequential eval blocks."""

import pytest
import torch

from attentive.data import (
    RandomBlockSampler,
    load_tinyshakespeare,
    sequential_blocks,
    split_train_val,
)
from attentive.text import CharTokenizer


def test_tinyshakespeare_loads():
    text = load_tinyshakespeare()
    assert len(text) == 1_115_394
    assert text.startswith("First Citizen:")
    assert len(set(text)) == 65


def test_split_train_val():
    train, val = split_train_val("abcdefghij", 0.9)
    assert (train, val) == ("abcdefghi", "j")
    t_train, t_val = split_train_val(torch.arange(100))
    assert len(t_train) == 90 and t_val[0] == 90
    with pytest.raises(ValueError, match="train_fraction"):
        split_train_val("abc", 1.0)


def test_char_encode_whole_corpus():
    text = load_tinyshakespeare()[:50_000]
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text


def test_random_blocks_shape_shift_and_determinism():
    tokens = torch.arange(1000)
    sampler = RandomBlockSampler(tokens, block_size=16, batch_size=4, seed=5)
    x, y = sampler.batch(0)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(y, x + 1)  # y is x shifted by one token
    again = RandomBlockSampler(tokens, block_size=16, batch_size=4, seed=5)
    assert all(torch.equal(sampler.batch(s)[0], again.batch(s)[0]) for s in (0, 1, 77))
    assert not torch.equal(sampler.batch(0)[0], sampler.batch(1)[0])
    assert not torch.equal(sampler.batch(0)[0], RandomBlockSampler(tokens, 16, 4, seed=6).batch(0)[0])
    assert not torch.equal(sampler.batch(0)[0], RandomBlockSampler(tokens, 16, 4, seed=5, rank=1).batch(0)[0])


def test_random_blocks_resume_matches():
    sampler = RandomBlockSampler(torch.arange(500), block_size=8, batch_size=2, seed=0)
    it = sampler.iter_from(0)
    first = [next(it) for _ in range(6)]
    resumed = sampler.iter_from(3)
    assert all(torch.equal(first[k][0], next(resumed)[0]) for k in range(3, 6))


def test_random_blocks_reach_the_end():
    tokens = torch.arange(20)
    sampler = RandomBlockSampler(tokens, block_size=19, batch_size=8, seed=0)
    x, y = sampler.batch(0)
    assert (y[:, -1] == 19).all()


def test_random_blocks_errors():
    with pytest.raises(ValueError, match="too few for block_size=10"):
        RandomBlockSampler(torch.arange(10), block_size=10, batch_size=1)
    with pytest.raises(TypeError, match="1-D tensor"):
        RandomBlockSampler(torch.zeros(2, 50, dtype=torch.long), block_size=4, batch_size=1)


@pytest.mark.parametrize("n,block,batch", [(101, 10, 3), (100, 10, 4), (11, 10, 2), (2, 5, 1)])
def test_sequential_blocks_cover_every_target_once(n, block, batch):
    tokens = torch.arange(n)
    targets = []
    for x, y in sequential_blocks(tokens, block, batch):
        assert x.shape == y.shape and x.shape[0] <= batch and x.shape[1] <= block
        assert torch.equal(y, x + 1)
        targets += y.flatten().tolist()
    assert targets == list(range(1, n))

"""MNIST data: bundled arrays, augmentation, batch sampler, image files."""

import numpy as np
import pytest
import torch
from PIL import Image

from attentive.data.images import (
    MNIST_MEAN,
    MNIST_STD,
    BatchSampler,
    load_image_bytes,
    load_image_file,
    load_mnist,
    normalize,
    random_shift,
)


@pytest.fixture(scope="module")
def mnist_test():
    return load_mnist("test")


def test_mnist_shapes_counts_and_first_labels():
    x, y = load_mnist("train")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert y[:5].tolist() == [5, 0, 4, 1, 9]
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_test_split(mnist_test):
    x, y = mnist_test
    assert x.shape == (10000, 28, 28)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    assert abs(x.float().mean().item() - 33.791) < 0.01


def test_unknown_split():
    with pytest.raises(ValueError, match="valid"):
        load_mnist("valid")


def test_normalize_matches_constants(mnist_test):
    x, _ = mnist_test
    z = normalize(x[:10])
    assert z.dtype == torch.float32
    assert torch.allclose(z, (x[:10].float() / 255 - MNIST_MEAN) / MNIST_STD)
    assert torch.allclose(normalize(x[:10].float() / 255), z)
    with pytest.raises(TypeError, match="int64"):
        normalize(x[:10].long())


def test_random_shift_shape_and_determinism(mnist_test):
    x = mnist_test[0][:64]
    a = random_shift(x, 2, torch.Generator().manual_seed(3))
    b = random_shift(x, 2, torch.Generator().manual_seed(3))
    c = random_shift(x, 2, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)
    four = random_shift(x.unsqueeze(1).float(), 2, torch.Generator().manual_seed(3))
    assert torch.equal(four.squeeze(1), a.float())


def test_random_shift_is_a_translation():
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, 10:14, 12:16] = 255  # a square well inside the frame
    for seed in range(5):
        out = random_shift(img, 2, torch.Generator().manual_seed(seed))
        assert out.sum() == img.sum()  # moved, not clipped
        rows, cols = out[0].nonzero(as_tuple=True)
        assert 8 <= rows.min() <= 12 and 10 <= cols.min() <= 14


def test_batch_sampler_deterministic_and_epoch_dependent():
    s = BatchSampler(100, 8, seed=1)
    assert len(s) == 12
    a = s.epoch_batches(0)
    assert all(len(b) == 8 for b in a)
    assert [b.tolist() for b in a] == [b.tolist() for b in BatchSampler(100, 8, seed=1).epoch_batches(0)]
    assert torch.cat(a).tolist() != torch.cat(s.epoch_batches(1)).tolist()
    assert len(set(torch.cat(a).tolist())) == 96


@pytest.mark.parametrize("drop_last", [True, False])
def test_batch_sampler_shards_equal_and_cover(drop_last):
    n, bs, world = 103, 4, 3
    shards = [BatchSampler(n, bs, seed=7, rank=r, world_size=world, drop_last=drop_last) for r in range(world)]
    batches = [s.epoch_batches(2) for s in shards]
    assert len({len(b) for b in batches}) == 1 and len(batches[0]) == len(shards[0])
    seen = torch.cat([torch.cat(b) for b in batches]).tolist()
    if drop_last:
        assert len(seen) == len(set(seen)) == 96
    else:
        assert set(seen) == set(range(n))
        assert len({b[-1].numel() for b in batches}) == 1  # same last-batch size everywhere
    # the union over ranks is the one-process order with the global batch size
    single = BatchSampler(n, bs * world, seed=7, drop_last=drop_last).permutation(2)
    assert torch.equal(shards[0].permutation(2), single)


def test_batch_sampler_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        BatchSampler(10, 2, rank=2, world_size=2)


def test_load_png_white_on_black(tmp_path, mnist_test):
    digit = mnist_test[0][0].numpy()
    path = tmp_path / "seven.png"
    Image.fromarray(digit).save(path)
    out = load_image_file(path)
    assert out.shape == (1, 28, 28) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.from_numpy(digit).float() / 255)


def test_load_black_on_white_rgb_is_inverted(tmp_path, mnist_test):
    digit = mnist_test[0][0].numpy()
    rgb = np.repeat((255 - digit)[:, :, None], 3, axis=2)
    path = tmp_path / "seven.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    out = load_image_file(path)
    assert out.shape == (1, 28, 28)
    assert out.mean() < 0.5  # background became black
    assert (out[0] - torch.from_numpy(digit).float() / 255).abs().mean() < 0.03


def test_load_large_image_is_framed(tmp_path):
    paper = np.full((300, 200), 255, dtype=np.uint8)
    paper[50:250, 90:110] = 0  # a thick dark "1"
    path = tmp_path / "one.png"
    Image.fromarray(paper).convert("RGBA").save(path)
    out = load_image_file(path)[0]
    assert out.shape == (28, 28)
    rows, cols = (out > 0.5).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)  # fitted into the 20-pixel box
    assert abs(cols.float().mean().item() - 13.5) < 1.5  # centred


def test_an_image_in_memory_reads_as_its_file_does(tmp_path):
    paper = np.full((300, 200), 255, dtype=np.uint8)
    paper[50:250, 90:110] = 0
    path = tmp_path / "one.png"
    Image.fromarray(paper).save(path)
    assert torch.equal(load_image_bytes(path.read_bytes()), load_image_file(path))
    with pytest.raises(ValueError, match="300 = 60,000 pixels; the limit is 50,000"):
        load_image_bytes(path.read_bytes(), max_pixels=50_000)  # refused from its header, before decoding
    with pytest.raises(ValueError, match="not an image file"):
        load_image_bytes(b"hello, not pixels")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, not pixels")
    with pytest.raises(ValueError, match="not an image file"):
        load_image_file(path)


def test_missing_image(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_image_file(tmp_path / "absent.png")

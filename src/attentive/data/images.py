"""MNIST for the Vision Transformer: bundled data, augmentation, batching, image files.

Dimension legend: N images, C channels, H x W pixels (28 x 28 for MNIST).

Everything random here takes a ``torch.Generator`` (or a seed), so a resumed run that
restores the generator state reproduces the same crops and the same batch order.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
MNIST_SPLITS = ("train", "test")
IMAGE_SIZE = 28
MAX_PIXELS = 50_000_000  # a larger image is refused before it is decoded (a decompression bomb)


def mnist_path() -> Path:
    """Path of the bundled ``mnist.npz`` (shipped inside the package, no download)."""
    ref = resources.files("attentive.data") / "bundled" / "mnist" / "mnist.npz"
    return Path(str(ref))


def load_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images uint8 (N, 28, 28), labels int64 (N,))`` in the original IDX order."""
    if split not in MNIST_SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {', '.join(MNIST_SPLITS)}")
    with np.load(mnist_path(), allow_pickle=False) as data:
        images = data[f"x_{split}"]
        labels = data[f"y_{split}"]
    return torch.from_numpy(images.astype(np.uint8, copy=False)), torch.from_numpy(labels.astype(np.int64))


def normalize(images: torch.Tensor, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    """Map pixels to the standard MNIST scale: uint8 0..255 or float 0..1 -> (x - mean) / std."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif not images.is_floating_point():
        raise TypeError(f"normalize expects uint8 or float images, got dtype {images.dtype}")
    return (images - mean) / std


def random_shift(
    images: torch.Tensor,
    max_shift: int = 2,
    generator: torch.Generator | None = None,
    fill: float = 0.0,
) -> torch.Tensor:
    """Pad every image by ``max_shift`` then take a random H x W crop (a shift of each image).

    Works on a batch ``(N, H, W)`` or ``(N, C, H, W)`` of any dtype; all channels of one image
    move together. Apply before :func:`normalize` so that ``fill=0`` is the background.
    Offsets are drawn on the CPU from ``generator``, so the result is the same on any device.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if images.dim() not in (3, 4):
        raise ValueError(f"random_shift expects images (N, H, W) or (N, C, H, W), got shape {tuple(images.shape)}")
    if max_shift == 0 or images.shape[0] == 0:
        return images.clone()
    squeeze = images.dim() == 3
    x = images.unsqueeze(1) if squeeze else images  # (N, C, H, W)
    n, c, h, w = x.shape
    p = max_shift
    padded = x.new_full((n, c, h + 2 * p, w + 2 * p), fill)
    padded[:, :, p : p + h, p : p + w] = x
    offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator).to(x.device)  # (2, N)
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)
    return out.squeeze(1) if squeeze else out


@dataclass
class BatchSampler:
    """Shuffled mini-batch indices, fixed by ``(seed, epoch)`` and sharded by rank.

    Each epoch's permutation is split into global batches of ``batch_size * world_size``;
    rank ``r`` takes every ``world_size``-th index of each global batch. So every rank gets
    the same number of batches, and the union over ranks equals a one-process run with the
    global batch size. ``drop_last`` drops the final partial global batch; otherwise the
    permutation is padded (wrapping round) to a multiple of ``world_size`` and the final
    batch of each rank may be shorter than ``batch_size``.
    """

    num_items: int
    batch_size: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = True

    def __post_init__(self) -> None:
        if self.num_items <= 0:
            raise ValueError(f"num_items must be > 0, got {self.num_items}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {self.batch_size}")
        if self.world_size <= 0:
            raise ValueError(f"world_size must be > 0, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")
        if self.drop_last and self.num_items < self.batch_size * self.world_size:
            raise ValueError(
                f"num_items {self.num_items} is smaller than one global batch "
                f"({self.batch_size} x {self.world_size} ranks); use drop_last=False or a smaller batch"
            )

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        if self.drop_last:
            return self.num_items // self.global_batch
        padded = math.ceil(self.num_items / self.world_size) * self.world_size
        return math.ceil(padded / self.global_batch)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The epoch's full permutation of ``range(num_items)``, identical on every rank."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (2**63))
        return torch.randperm(self.num_items, generator=g)

    def epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of int64 indices for ``epoch``; slice it to resume mid-epoch."""
        perm = self.permutation(epoch)
        if self.drop_last:
            perm = perm[: len(self) * self.global_batch]
        else:
            extra = (-self.num_items) % self.world_size
            if extra:
                perm = torch.cat([perm, perm[:extra]])
        return [g[self.rank :: self.world_size] for g in perm.split(self.global_batch)]


def _open_image(path: Path, max_pixels: int | None = None):
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    with open(path, "rb") as f:
        return _decode(f, f"{path}: ", max_pixels)


def _decode(fp, where: str, max_pixels: int | None):
    """Decode an image file; anything wrong with it (not an image, truncated, corrupt, more than
    ``max_pixels`` pixels, ``MAX_PIXELS`` by default) is a one-line ValueError starting with ``where``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    limit = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            img = Image.open(fp)  # reads the header only
            width, height = img.size
            if width * height > limit:
                raise _TooLarge(f"the image is {width}x{height} = {width * height:,} pixels; the limit is {limit:,}")
            img.load()
            return ImageOps.exif_transpose(img)
    except _TooLarge as exc:
        raise ValueError(f"{where}{exc}") from None
    except UnidentifiedImageError:
        raise ValueError(f"{where}not an image file (Pillow cannot identify it)") from None
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, struct.error, ... for corrupt files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{where}not a readable image file ({detail})") from None


class _TooLarge(Exception):
    """An image over the pixel limit (raised inside ``_decode``'s own try)."""


def _to_gray(img) -> np.ndarray:
    """Grayscale float array 0..255; transparent pixels become white paper."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max()
        arr = arr * (255.0 / hi) if hi > 255 else arr
        return np.clip(arr, 0, 255)
    return np.asarray(img.convert("L"), dtype=np.float64)


def _frame_like_mnist(ink: np.ndarray) -> np.ndarray:
    """Fit the ink's bounding box into 20x20 and centre its mass in 28x28, as MNIST was made."""
    from PIL import Image

    mask = ink > 0.1 * ink.max() if ink.max() > 0 else None
    if mask is None or not mask.any():
        small = Image.fromarray(ink.astype(np.uint8)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float64)
    rows, cols = np.nonzero(mask)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    digit = np.asarray(
        Image.fromarray(crop.astype(np.float32)).resize((nw, nh), Image.Resampling.LANCZOS),
        dtype=np.float64,
    ).clip(0, 255)
    total = digit.sum()
    if total > 0:
        cy = (digit.sum(axis=1) * np.arange(nh)).sum() / total
        cx = (digit.sum(axis=0) * np.arange(nw)).sum() / total
    else:
        cy, cx = (nh - 1) / 2, (nw - 1) / 2
    top = int(round(IMAGE_SIZE / 2 - 0.5 - cy))
    left = int(round(IMAGE_SIZE / 2 - 0.5 - cx))
    top = min(max(top, 0), IMAGE_SIZE - nh)
    left = min(max(left, 0), IMAGE_SIZE - nw)
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float64)
    out[top : top + nh, left : left + nw] = digit
    return out


def load_image_file(path: str | Path, fit: bool = True) -> torch.Tensor:
    """Read a PNG/JPEG/... of a digit as MNIST would see it: float (1, 28, 28) in 0..1.

    Any size and mode is accepted. Dark ink on light paper (mean > 127) is inverted to
    MNIST's white-on-black. A 28x28 image is kept as drawn; a larger or smaller one is,
    with ``fit``, cropped to its ink, scaled into 20x20 and centred by mass (MNIST's own
    preprocessing), else simply resized. Apply :func:`normalize` before the model.
    """
    return _as_mnist(_open_image(Path(path)), fit)  # at most MAX_PIXELS pixels


def load_image_bytes(data: bytes, fit: bool = True, max_pixels: int | None = None) -> torch.Tensor:
    """``load_image_file`` for an image held in memory (an upload): float (1, 28, 28) in 0..1.

    An image of more than ``max_pixels`` pixels is refused before it is decoded."""
    img = open_image_bytes(data, max_pixels)
    return _as_mnist(img, fit)


def open_image_bytes(data: bytes, max_pixels: int | None = None):
    """A PIL image from bytes; a ValueError for data that is not an image or is too large
    (``max_pixels``, ``MAX_PIXELS`` by default)."""
    import io

    return _decode(io.BytesIO(data), "", max_pixels)


def _as_mnist(img, fit: bool) -> torch.Tensor:
    gray = _to_gray(img)  # (H, W) 0..255
    if gray.mean() > 127:
        gray = 255.0 - gray
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        out = gray
    elif fit:
        out = _frame_like_mnist(gray)
    else:
        from PIL import Image

        img = Image.fromarray(gray.astype(np.float32))
        out = np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS), dtype=np.float64)
    out = np.clip(out, 0, 255) / 255.0
    return torch.from_numpy(out.astype(np.float32)).unsqueeze(0)


__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "BatchSampler",
    "load_image_bytes",
    "load_image_file",
    "load_mnist",
    "mnist_path",
    "normalize",
    "random_shift",
]

"""Image classification: MNIST digits with a Vision Transformer.

The task holds the bundled MNIST arrays as uint8 in memory, cuts a validation split off
the end of the training set, and hands the trainer batches of shifted crops (pad 2, crop
28: the light augmentation the ViT needs on a small dataset). Each batch is built on
demand from ``(seed, epoch, index)``, so the epoch is an indexable, exactly resumable list.

Dimension legend: B batch, H x W = 28 x 28 pixels, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.images import BatchSampler, load_mnist, random_shift
from ..train.task import Task
from ..train.throughput import transformer_flops_per_token


@dataclass
class ClassificationConfig:
    """Data settings of the MNIST task."""

    batch_size: int = 128
    val_size: int = 5000  # taken from the end of the 60k training images
    max_shift: int = 2  # random translation of up to this many pixels (pad + crop)
    eval_batch_size: int = 1000
    train_limit: int | None = None  # use only the first N training images (tests, quick runs)
    test_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.val_size < 0 or self.max_shift < 0:
            raise ValueError(f"val_size and max_shift must be >= 0, got {self.val_size} and {self.max_shift}")


@dataclass
class ImageBatch:
    images: Tensor  # (B, 1, H, W) float pixels in 0..1
    labels: Tensor  # (B,) int64

    def to(self, device: torch.device | str) -> ImageBatch:
        return ImageBatch(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True))


class _EpochBatches(Sequence):
    """One epoch of augmented batches, each made when indexed (same index -> same batch)."""

    def __init__(self, images: Tensor, labels: Tensor, indices: list[Tensor], max_shift: int, seed: int):
        self.images, self.labels, self.indices = images, labels, indices
        self.max_shift, self.seed = max_shift, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> ImageBatch:
        idx = self.indices[i]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        crops = random_shift(self.images[idx], self.max_shift, generator=g)  # (B, H, W) uint8
        return ImageBatch(_to_float(crops), self.labels[idx])


def _to_float(images: Tensor) -> Tensor:
    """uint8 ``(N, H, W)`` -> float ``(N, 1, H, W)`` in 0..1 (the model normalises)."""
    return images.unsqueeze(1).float() / 255.0


class ImageClassificationTask(Task):
    """MNIST: cross-entropy on shifted crops; accuracy on the validation split and the test set."""

    name = "mnist"
    unit = "img"

    def __init__(self, config: ClassificationConfig | None = None, seed: int = 0):
        self.config = config or ClassificationConfig()
        self.seed = seed
        images, labels = load_mnist("train")
        if self.config.train_limit:
            images, labels = images[: self.config.train_limit], labels[: self.config.train_limit]
        n_val = min(self.config.val_size, len(images) // 2)
        self.train_images, self.train_labels = images[: len(images) - n_val], labels[: len(images) - n_val]
        self.val_images, self.val_labels = images[len(images) - n_val :], labels[len(images) - n_val :]
        test_images, test_labels = load_mnist("test")
        limit = self.config.test_limit or len(test_images)
        self.test_images, self.test_labels = test_images[:limit], test_labels[:limit]

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Sequence[ImageBatch]:
        sampler = BatchSampler(len(self.train_images), self.config.batch_size, self.seed, rank, world_size)
        batch_seed = (self.seed * 7919 + epoch) * 131 + rank  # distinct crops per epoch and rank
        return _EpochBatches(
            self.train_images, self.train_labels, sampler.epoch_batches(epoch), self.config.max_shift, batch_seed
        )

    def count(self, batch: ImageBatch) -> int:
        return len(batch.labels)

    def loss(self, model: nn.Module, batch: ImageBatch) -> tuple[Tensor, dict[str, float]]:
        logits = model(batch.images)  # (B, K)
        return F.cross_entropy(logits.float(), batch.labels, reduction="sum"), {}

    def _score(self, model: nn.Module, images: Tensor, labels: Tensor) -> dict[str, float]:
        """Mean loss and accuracy over ``images (N, H, W) uint8`` in eval-sized chunks."""
        if len(images) == 0:
            return {}
        device = next(model.parameters()).device
        loss_sum, correct = 0.0, 0
        for start in range(0, len(images), self.config.eval_batch_size):
            x = _to_float(images[start : start + self.config.eval_batch_size]).to(device)
            y = labels[start : start + self.config.eval_batch_size].to(device)
            logits = model(x).float()  # (B, K)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
        return {"loss": loss_sum / len(images), "accuracy": correct / len(images)}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self._score(model, self.val_images, self.val_labels)

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        val = self._score(model, self.val_images, self.val_labels)
        test = self._score(model, self.test_images, self.test_labels)
        out = {f"val_{k}": v for k, v in val.items()}
        out.update({f"test_{k}": v for k, v in test.items()})
        out["test_images"] = len(self.test_images)
        return out

    def flops_per_unit(self, model: nn.Module) -> float | None:
        cfg = model.config
        tokens = cfg.num_tokens
        return transformer_flops_per_token(model, cfg.num_layers, cfg.d_model, tokens) * tokens

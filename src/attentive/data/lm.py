"""Language-modelling data: Tiny Shakespeare, a train/val split, and block samplers.

Training draws random (x, y) blocks, where y is x shifted by one token. Each batch is a
pure function of (seed, step, rank), so a resumed run reproduces the exact batches
without saving sampler state. Evaluation walks the stream in order, predicting every
token after the first exactly once.

A model with segment-level recurrence (Transformer-XL) needs consecutive segments instead: the
stream is cut into one contiguous lane per batch row, and step i gives every row the i-th
segment of its lane (``SegmentSampler``, ``lane_segments``), so a row's memory always holds the
text just before its segment.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from typing import TypeVar

import torch

from attentive.data.bundle import bundled_file

T = TypeVar("T", str, torch.Tensor, list)


def load_tinyshakespeare() -> str:
    """The bundled Tiny Shakespeare text (1,115,394 characters)."""
    return gzip.decompress(bundled_file("tinyshakespeare", "input.txt.gz").read_bytes()).decode("utf-8")


def split_train_val(data: T, train_fraction: float = 0.9) -> tuple[T, T]:
    """First ``train_fraction`` for training, the rest for validation (no shuffling)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    cut = int(len(data) * train_fraction)
    if cut == 0 or cut == len(data):
        raise ValueError(f"{len(data)} items are too few to split at {train_fraction}")
    return data[:cut], data[cut:]


def _step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed from (seed, step, rank), stable across runs and Python versions."""
    digest = hashlib.blake2b(f"{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _as_stream(tokens: torch.Tensor, block_size: int) -> torch.Tensor:
    """Validate a 1-D token stream long enough for one (x, y) block."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
        raise TypeError(f"tokens must be a 1-D tensor, got {type(tokens).__name__} {getattr(tokens, 'shape', '')}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if len(tokens) < block_size + 1:
        raise ValueError(f"{len(tokens)} tokens are too few for block_size={block_size} (need block_size + 1)")
    return tokens.long()


class RandomBlockSampler:
    """Random (x, y) blocks; ``batch(step)`` is deterministic in (seed, step, rank)."""

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, seed: int = 0, rank: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tokens = _as_stream(tokens, block_size)
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y), each (batch, block) long; y[:, i] is the token after x[:, i]."""
        gen = torch.Generator().manual_seed(_step_seed(self.seed, step, self.rank))
        n_starts = len(self.tokens) - self.block_size
        starts = torch.randint(n_starts, (self.batch_size,), generator=gen)  # (batch,)
        offsets = torch.arange(self.block_size + 1)  # (block + 1,)
        window = self.tokens[starts[:, None] + offsets]  # (batch, block + 1)
        return window[:, :-1], window[:, 1:]

    def iter_from(self, step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches starting at ``step`` (resume by passing the next step)."""
        while True:
            yield self.batch(step)
            step += 1


def sequential_blocks(
    tokens: torch.Tensor, block_size: int, batch_size: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive non-overlapping (x, y) blocks covering the stream, for evaluation.

    Every token but the first is a target exactly once (``len(tokens) - 1`` in all), so
    summing the loss over batches gives the stream's exact perplexity. Full blocks come
    ``batch_size`` at a time; a shorter final block comes alone.
    """
    tokens = _as_stream(tokens, 1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    n_targets = len(tokens) - 1
    n_full = n_targets // block_size
    offsets = torch.arange(block_size + 1)  # (block + 1,)
    for first in range(0, n_full, batch_size):
        starts = torch.arange(first, min(first + batch_size, n_full)) * block_size  # (batch,)
        window = tokens[starts[:, None] + offsets]  # (batch, block + 1)
        yield window[:, :-1], window[:, 1:]
    rest = n_targets - n_full * block_size
    if rest:
        tail = tokens[n_full * block_size :]  # (rest + 1,)
        yield tail[None, :-1], tail[None, 1:]


class SegmentSampler:
    """Consecutive ``(x, y)`` segments for recurrence: the stream is cut into ``batch_size *
    world_size`` contiguous lanes (this rank's rows are lanes ``rank * B .. rank * B + B - 1``);
    ``batch(step)`` gives row b the ``step mod n``-th segment of its lane, and ``fresh`` is True
    when the lanes start over (the memory must be cleared). A pure function of (step, rank)."""

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.tokens = _as_stream(tokens, block_size)
        self.block_size, self.batch_size = block_size, batch_size
        lanes = batch_size * world_size
        self.lane_len = (len(self.tokens) - 1) // lanes
        self.segments = self.lane_len // block_size  # full segments per lane
        if self.segments < 1:
            raise ValueError(
                f"{len(self.tokens)} tokens are too few for {lanes} lanes of at least one {block_size}-token segment"
            )
        self.first_lane = rank * batch_size

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(x, y, fresh): x and y ``(batch, block)``; y[:, i] is the token after x[:, i]."""
        index = step % self.segments
        lanes = torch.arange(self.first_lane, self.first_lane + self.batch_size)  # (batch,)
        starts = lanes * self.lane_len + index * self.block_size
        window = self.tokens[starts[:, None] + torch.arange(self.block_size + 1)]  # (batch, block + 1)
        return window[:, :-1], window[:, 1:], index == 0


def lane_segments(tokens: torch.Tensor, rows: int, segment: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Evaluation with recurrence: ``rows`` contiguous lanes walked side by side, ``segment``
    tokens at a time (the last segment may be shorter). Every lane token but the first is a
    target once; the ``(len - 1) mod rows`` tokens past the last lane are not scored."""
    tokens = _as_stream(tokens, 1)
    if rows < 1 or segment < 1:
        raise ValueError(f"rows and segment must be >= 1, got {rows} and {segment}")
    rows = min(rows, len(tokens) - 1)
    lane_len = (len(tokens) - 1) // rows
    lanes = torch.arange(rows)[:, None] * lane_len  # (rows, 1)
    for start in range(0, lane_len, segment):
        width = min(segment, lane_len - start)
        index = lanes + start + torch.arange(width + 1)  # (rows, width + 1)
        window = tokens[index]
        yield window[:, :-1], window[:, 1:]

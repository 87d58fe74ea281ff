"""Datasets and readers: bundled corpora, parallel text, token-count batching, LM blocks.

Bundled files live under ``attentive/data/bundled/`` and are found with
``importlib.resources`` so they work from a source tree or an installed wheel.
"""

from __future__ import annotations

from importlib.resources import files

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable


def bundled_file(*parts: str) -> Traversable:
    """A bundled data file, e.g. ``bundled_file("multi30k", "train.de.gz")``.

    Returns a ``Traversable`` (a ``Path`` in a normal install); read it with
    ``read_bytes()``/``open()``.
    """
    resource = files(__name__).joinpath("bundled", *parts)
    if not resource.is_file():
        raise FileNotFoundError(
            f"bundled data file not found: {'/'.join(parts)} (looked in {resource})"
        )
    return resource


# Re-exports, after bundled_file: these modules use it.
# ruff: noqa: E402
from attentive.data.batching import (
    PairBatch,
    TokenBatchSampler,
    collate_pairs,
    pad_sequences,
    pair_lengths,
)
from attentive.data.lm import (
    RandomBlockSampler,
    SegmentSampler,
    lane_segments,
    load_tinyshakespeare,
    sequential_blocks,
    split_train_val,
)
from attentive.data.parallel import (
    MULTI30K_SPLITS,
    ParallelCorpus,
    load_multi30k,
    read_parallel,
    read_tsv,
)

__all__ = [
    "MULTI30K_SPLITS",
    "PairBatch",
    "ParallelCorpus",
    "RandomBlockSampler",
    "SegmentSampler",
    "TokenBatchSampler",
    "bundled_file",
    "collate_pairs",
    "lane_segments",
    "load_multi30k",
    "load_tinyshakespeare",
    "pad_sequences",
    "pair_lengths",
    "read_parallel",
    "read_tsv",
    "sequential_blocks",
    "split_train_val",
]

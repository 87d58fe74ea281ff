"""Datasets and readers: bundled corpora, parallel text, token-count batching, LM blocks.

Bundled files live under ``attentive/data/bundled/`` and are found with
``importlib.resources`` so they work from a source tree or an installed wheel.
"""

from __future__ import annotations

from attentive.data.bundle import bundled_file
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

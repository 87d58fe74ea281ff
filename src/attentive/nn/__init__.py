"""The layer library: embeddings, positions, masks, attention, caches, FFNs, norms, layers, stacks.

No I/O and no training code lives here; models compose these parts.
"""

from .attention import MultiHeadAttention, attention
from .cache import DynamicCache, KVCache, SegmentMemory, SinkCache, SlidingWindowCache, SlotCache, StaticCache
from .embedding import OutputProjection, TokenEmbedding
from .feedforward import FeedForward, GatedFeedForward, make_feedforward
from .layers import LayerSpec, TransformerLayer
from .masks import band_mask, causal_mask, combine_masks, key_mask, lengths_mask, padding_mask, segment_mask
from .norm import RMSNorm, make_norm
from .packed import PackedProjection
from .rope_scaling import RopeScaling, rope_frequencies
from .positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    PositionalEncoding,
    RelativePositionBias,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    make_positional,
    sinusoidal_table,
)
from .stack import StackOutput, TransformerStack

__all__ = [
    "ALiBi",
    "DynamicCache",
    "FeedForward",
    "GatedFeedForward",
    "KVCache",
    "LayerSpec",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "OutputProjection",
    "PackedProjection",
    "PositionalEncoding",
    "RMSNorm",
    "RelativePositionBias",
    "RopeScaling",
    "RotaryEmbedding",
    "SegmentMemory",
    "SinkCache",
    "SinusoidalPositionalEncoding",
    "SlidingWindowCache",
    "StackOutput",
    "SlotCache",
    "StaticCache",
    "TokenEmbedding",
    "TransformerLayer",
    "TransformerStack",
    "attention",
    "band_mask",
    "causal_mask",
    "combine_masks",
    "key_mask",
    "lengths_mask",
    "make_feedforward",
    "make_norm",
    "make_positional",
    "padding_mask",
    "rope_frequencies",
    "segment_mask",
    "sinusoidal_table",
]

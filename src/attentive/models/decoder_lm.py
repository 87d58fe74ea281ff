"""Decoder-only language models (GPT-2 and LLaMA families) from the same layer library.

Dimension names: B batch, T new tokens, Tk keys (cached + new), D model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..config import TransformerConfig, register_model, register_preset
from ..nn import OutputProjection, TokenEmbedding, TransformerStack, make_positional
from ..nn.cache import CacheLayout
from ..nn.stack import StackOutput
from .init import init_gpt2


@dataclass
class DecoderLMConfig(TransformerConfig):
    """A causal stack with a token embedding and a (tied) softmax head. Defaults: GPT-2 style."""

    model_type = "decoder-lm"
    vocab_size: int = 50257
    num_layers: int = 12
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    ffn: str = "gelu_tanh"
    norm_first: bool = True
    positional: str = "learned"
    tie_embeddings: bool = True
    scale_embedding: bool = False
    init_std: float = 0.02
    pad_id: int = 0
    # Transformer-XL recurrence: training and evaluation walk the text in consecutive segments,
    # each layer attending over the previous segments' last memory_len states too (0 = off)
    memory_len: int = 0

    def validate(self) -> None:
        super().validate()
        if isinstance(self.memory_len, bool) or not isinstance(self.memory_len, int) or self.memory_len < 0:
            raise ValueError(
                f"DecoderLMConfig.memory_len must be an integer >= 0 (0 = no recurrence), got {self.memory_len!r}"
            )
        if self.memory_len and self.positional in ("learned", "sinusoidal"):
            raise ValueError(
                f"DecoderLMConfig.memory_len={self.memory_len} (Transformer-XL recurrence) needs relative "
                f"positions (rope, alibi, relative), not positional={self.positional!r}: absolute "
                "positions would repeat in every segment"
            )


@register_model(DecoderLMConfig)
class DecoderLM(nn.Module):
    """``forward(ids) -> logits``; ``decode`` (the stack over ids, with a KV cache the new tokens
    only) is what the decoding engine calls: an encoder-decoder without the encoder."""

    def __init__(self, config: DecoderLMConfig):
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config.vocab_size, config.d_model, config.scale_embedding)
        positional = make_positional(
            config.positional,
            config.d_model,
            config.num_heads,
            config.max_len,
            config.rope_base,
            config.head_dim,
            bidirectional=False,
            rope_scaling=config.rope_scaling,
        )
        self.stack = TransformerStack(config.layer_spec(), config.num_layers, positional, causal=True)
        self.head = OutputProjection(
            config.d_model, config.vocab_size, tie_to=self.embed if config.tie_embeddings else None
        )
        init_gpt2(self, config.num_layers, config.init_std)

    def cache_layout(self) -> CacheLayout:
        """What decoding caches per token and how far it reaches: one stack, no encoder."""
        c = self.config
        return CacheLayout(
            layers=c.num_layers,
            kv_heads=c.num_kv_heads or c.num_heads,
            head_dim=c.head_dim or c.d_model // c.num_heads,
            context=c.max_len,
            vocab=c.vocab_size,
        )

    def decode(
        self,
        ids: Tensor,
        *,
        key_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache=None,
        need_weights: bool = False,
        segment_ids: Tensor | None = None,
    ) -> StackOutput:
        """ids ``(B, T)`` -> final hidden ``(B, T, D)`` (before the softmax head)."""
        if ids.dim() != 2:
            raise ValueError(f"input ids must have shape (batch, seq), got {tuple(ids.shape)}")
        return self.stack(
            self.embed(ids),
            key_mask=key_mask,
            positions=positions,
            cache=cache,
            need_weights=need_weights,
            segment_ids=segment_ids,
        )

    def forward(
        self,
        ids: Tensor,
        *,
        key_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache=None,
        return_hidden: bool = False,
        segment_ids: Tensor | None = None,
    ) -> Tensor:
        """ids ``(B, T)`` -> logits ``(B, T, V)``. ``key_mask (B, Tk)``: True for real tokens.

        ``return_hidden``: the final hidden states ``(B, T, D)`` instead, for a loss that applies
        the head itself (``linear_cross_entropy``) yet must go through ``forward`` (DDP's hooks).
        ``segment_ids (B, T)`` with per-segment ``positions``: several examples packed in a row,
        none attending to another (instruction tuning).
        """
        hidden = self.decode(ids, key_mask=key_mask, positions=positions, cache=cache, segment_ids=segment_ids).hidden
        return hidden if return_hidden else self.head(hidden)


register_preset(
    "gpt2-small",
    DecoderLMConfig(),
    "GPT-2 small: 12 layers, 768 wide, 12 heads, 1024 context, learned positions, pre-LN, tied (~124M)",
)
register_preset(
    "llama-tiny",
    DecoderLMConfig(
        vocab_size=512,
        num_layers=2,
        d_model=64,
        num_heads=4,
        num_kv_heads=2,
        d_ff=172,
        ffn="swiglu",
        norm="rmsnorm",
        norm_eps=1e-5,
        positional="rope",
        bias=False,
        dropout=0.0,
        attention_dropout=0.0,
        max_len=256,
    ),
    "a 2-layer LLaMA-style model (RoPE, RMSNorm, SwiGLU, GQA, no biases) for tests",
)
register_preset(
    "smollm2-135m",
    DecoderLMConfig(
        vocab_size=49152,
        num_layers=30,
        d_model=576,
        num_heads=9,
        num_kv_heads=3,
        d_ff=1536,
        ffn="swiglu",
        norm="rmsnorm",
        norm_eps=1e-5,
        positional="rope",
        rope_base=100000.0,
        bias=False,
        dropout=0.0,
        attention_dropout=0.0,
        max_len=8192,
    ),
    "shaped like SmolLM2-135M: 30 layers, 576 wide, 9 query / 3 KV heads, FFN 1536, RoPE base 1e5, tied",
)

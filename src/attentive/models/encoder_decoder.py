"""The paper's model: an encoder stack, a decoder stack, shared embeddings and a softmax head.

Dimension names: B batch, S source length, T target length, D model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import TransformerConfig, register_model, register_preset
from ..nn import OutputProjection, TokenEmbedding, TransformerStack, make_positional
from ..nn.cache import CacheLayout
from ..nn.stack import StackOutput
from .init import init_xavier

TIE_CHOICES = ("all", "output", "none")


@dataclass
class EncoderDecoderConfig(TransformerConfig):
    """Transformer (Vaswani et al., 2017). Defaults are the paper's base model."""

    model_type = "encoder-decoder"
    src_vocab_size: int = 37000
    tgt_vocab_size: int = 37000
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    tie_embeddings: str = "all"  # all: source, target and output share one matrix (section 3.4)
    scale_embedding: bool = True  # multiply embeddings by sqrt(d_model)
    pad_id: int = 0

    def validate(self) -> None:
        super().validate()
        if self.tie_embeddings not in TIE_CHOICES:
            raise ValueError(f"tie_embeddings = {self.tie_embeddings!r} is not one of {TIE_CHOICES}")
        if self.tie_embeddings == "all" and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                f"tie_embeddings='all' needs one shared vocabulary, got src_vocab_size={self.src_vocab_size} "
                f"and tgt_vocab_size={self.tgt_vocab_size}"
            )


def _stack(config: TransformerConfig, num_layers: int, causal: bool, cross: bool) -> TransformerStack:
    positional = make_positional(
        config.positional,
        config.d_model,
        config.num_heads,
        config.max_len,
        config.rope_base,
        config.head_dim,
        bidirectional=not causal,
        rope_scaling=config.rope_scaling,
    )
    return TransformerStack(config.layer_spec(), num_layers, positional, causal=causal, cross_attention=cross)


@register_model(EncoderDecoderConfig)
class EncoderDecoder(nn.Module):
    """``forward(src, tgt_in) -> logits``; ``encode`` once and ``decode`` step by step (the
    protocol the decoding engine drives, shared with ``SpeechModel``)."""

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        self.config = config
        self.src_embed = TokenEmbedding(config.src_vocab_size, config.d_model, config.scale_embedding)
        self.tgt_embed = (
            self.src_embed
            if config.tie_embeddings == "all"
            else TokenEmbedding(config.tgt_vocab_size, config.d_model, config.scale_embedding)
        )
        self.encoder = _stack(config, config.num_encoder_layers, causal=False, cross=False)
        self.decoder = _stack(config, config.num_decoder_layers, causal=True, cross=True)
        init_xavier(self)
        tied = self.tgt_embed if config.tie_embeddings in ("all", "output") else None
        self.head = OutputProjection(config.d_model, config.tgt_vocab_size, tie_to=tied)

    def encode(self, src: Tensor, key_mask: Tensor | None = None, need_weights: bool = False) -> StackOutput:
        """src ``(B, S)`` token ids -> memory ``(B, S, D)``; ``key_mask (B, S)`` True for real
        tokens (default: ``src != pad_id``)."""
        _check_ids(src, "src")
        key_mask = src != self.config.pad_id if key_mask is None else key_mask  # (B, S)
        return self.encoder(self.src_embed(src), key_mask=key_mask, need_weights=need_weights)

    def cache_layout(self) -> CacheLayout:
        """The decoder's cache geometry: its own layers, the target vocabulary, cross-attention."""
        c = self.config
        return CacheLayout(
            layers=c.num_decoder_layers,
            kv_heads=c.num_kv_heads or c.num_heads,
            head_dim=c.head_dim or c.d_model // c.num_heads,
            context=c.max_len,
            vocab=c.tgt_vocab_size,
            cross_attention=True,
        )

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_key_mask: Tensor | None = None,
        *,
        key_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache=None,
        need_weights: bool = False,
    ) -> StackOutput:
        """tgt ``(B, T)`` decoder input ids (BOS + prefix; the new tokens when a cache is used),
        memory ``(B, S, D)`` with its real-token mask ``(B, S)`` -> hidden ``(B, T, D)``."""
        _check_ids(tgt, "tgt")
        return self.decoder(
            self.tgt_embed(tgt),
            memory=memory,
            memory_key_mask=memory_key_mask,
            key_mask=key_mask,
            positions=positions,
            cache=cache,
            need_weights=need_weights,
        )

    def forward(
        self, src: Tensor, tgt: Tensor, key_mask: Tensor | None = None, *, return_hidden: bool = False
    ) -> Tensor:
        """Teacher forcing: src ``(B, S)``, tgt ``(B, T)`` -> logits ``(B, T, V)``.

        ``return_hidden``: the decoder's final hidden states ``(B, T, D)`` instead, for a loss
        that applies the head itself (``linear_cross_entropy``) yet must go through
        ``forward`` (DDP's hooks).
        """
        key_mask = src != self.config.pad_id if key_mask is None else key_mask
        memory = self.encode(src, key_mask).hidden  # (B, S, D)
        hidden = self.decode(tgt, memory, key_mask).hidden  # (B, T, D)
        return hidden if return_hidden else self.head(hidden)


def _check_ids(ids: Tensor, name: str) -> None:
    if ids.dim() != 2:
        raise ValueError(f"{name} must be token ids of shape (batch, seq), got shape {tuple(ids.shape)}")
    if ids.dtype not in (torch.long, torch.int32):
        raise TypeError(f"{name} must be integer token ids, got dtype {ids.dtype}")


register_preset("transformer-base", EncoderDecoderConfig(), "the paper's base model: N=6, d=512, h=8, d_ff=2048, ~65M")
register_preset(
    "transformer-big",
    EncoderDecoderConfig(d_model=1024, num_heads=16, d_ff=4096, dropout=0.3, attention_dropout=0.3),
    "the paper's big model: N=6, d=1024, h=16, d_ff=4096, dropout 0.3, ~213M",
)
register_preset(
    "transformer-tiny",
    EncoderDecoderConfig(
        src_vocab_size=1000,
        tgt_vocab_size=1000,
        d_model=64,
        num_heads=4,
        d_ff=128,
        num_encoder_layers=2,
        num_decoder_layers=2,
        max_len=256,
    ),
    "a 2+2-layer, 64-wide model for tests and quick experiments",
)

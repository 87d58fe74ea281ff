"""Whisper-style speech recognition: a log-Mel encoder and a text decoder (Radford et al., 2022).

The encoder reads a log-Mel spectrogram (``attentive.audio``): two 1-D convolutions with GELU
(the second halves the frame rate, 100 -> 50 per second), a fixed sinusoidal position table,
then pre-LN Transformer layers. The decoder is the paper's decoder (learned positions,
pre-LN, cross-attention over the encoder output) with its softmax head tied to the token
embedding. Special tokens steer it: ``<|startoftranscript|>`` (then language and task on
multilingual models) and ``<|notimestamps|>`` start the transcript, ``<|endoftext|>`` ends it.

Dimension names: B batch, M mel bins, F frames (3000 for 30 s), S encoder positions (F/2),
T decoder tokens, D model width, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TransformerConfig, register_model, register_preset
from ..nn import LearnedPositionalEmbedding, OutputProjection, TokenEmbedding, TransformerStack, make_positional
from ..nn.cache import CacheLayout
from ..nn.stack import StackOutput
from .init import init_gpt2


@dataclass
class SpeechConfig(TransformerConfig):
    """Whisper's shape and its special tokens. Defaults: Whisper tiny.en."""

    model_type = "speech"
    vocab_size: int = 51864
    n_mels: int = 80
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    d_model: int = 384
    num_heads: int = 6
    d_ff: int = 1536
    ffn: str = "gelu"
    norm_first: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    positional: str = "learned"  # decoder positions
    max_len: int = 448  # decoder positions (text context)
    max_source_positions: int = 1500  # encoder positions (audio context: 30 s)
    tie_embeddings: bool = True
    eot_id: int = 50256  # <|endoftext|>
    start_ids: list[int] = field(default_factory=lambda: [50257, 50362])  # <|startoftranscript|> <|notimestamps|>
    timestamp_begin: int = 50363  # first timestamp token; it and all above are suppressed (0 = none)
    suppress_tokens: list[int] = field(default_factory=list)  # never generated
    begin_suppress_tokens: list[int] = field(default_factory=lambda: [220, 50256])  # not as the first token
    init_std: float = 0.02

    def validate(self) -> None:
        super().validate()
        if self.max_source_positions <= 0:
            raise ValueError(f"SpeechConfig.max_source_positions must be positive, got {self.max_source_positions}")
        if not self.start_ids:
            raise ValueError("SpeechConfig.start_ids must hold at least <|startoftranscript|>")
        bad = [i for i in (*self.start_ids, self.eot_id) if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(
                f"SpeechConfig: special token ids {bad} are outside the vocabulary (0..{self.vocab_size - 1})"
            )


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's encoder table ``(length, channels)``: all sines, then all cosines (not interleaved)."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2))  # (D/2,)
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]  # (S, D/2)
    return torch.cat((scaled.sin(), scaled.cos()), dim=1)  # (S, D)


@register_model(SpeechConfig)
class SpeechModel(nn.Module):
    """``forward(features, ids) -> logits``; ``encode`` once and ``decode`` step by step (the
    protocol the decoding engine drives, shared with ``EncoderDecoder``)."""

    def __init__(self, config: SpeechConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.conv1 = nn.Conv1d(config.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        # A fixed table, stored with the weights (as Whisper's checkpoints store it) and not trained.
        encoder_positions = LearnedPositionalEmbedding(d, config.max_source_positions)
        self.encoder = TransformerStack(config.layer_spec(), config.num_encoder_layers, encoder_positions, causal=False)
        self.embed = TokenEmbedding(config.vocab_size, d, scale=False)
        positional = make_positional(
            config.positional,
            d,
            config.num_heads,
            config.max_len,
            config.rope_base,
            config.head_dim,
            bidirectional=False,
            rope_scaling=config.rope_scaling,
        )
        self.decoder = TransformerStack(
            config.layer_spec(),
            config.num_decoder_layers,
            positional,
            causal=True,
            cross_attention=True,
        )
        self.head = OutputProjection(d, config.vocab_size, tie_to=self.embed if config.tie_embeddings else None)
        init_gpt2(self, config.num_encoder_layers + config.num_decoder_layers, config.init_std)
        with torch.no_grad():
            encoder_positions.weight.copy_(whisper_sinusoids(config.max_source_positions, d))
        encoder_positions.weight.requires_grad_(False)

    def encode(self, features: Tensor, need_weights: bool = False) -> StackOutput:
        """Log-Mel features ``(B, M, F)`` -> encoder output ``(B, F/2, D)``."""
        if features.dim() != 3 or features.shape[1] != self.config.n_mels:
            raise ValueError(
                f"features must have shape (batch, {self.config.n_mels} mel bins, frames), got {tuple(features.shape)}"
            )
        x = F.gelu(self.conv1(features))  # (B, D, F)
        x = F.gelu(self.conv2(x))  # (B, D, F/2)
        if x.shape[-1] > self.config.max_source_positions:
            raise ValueError(
                f"{features.shape[-1]} frames give {x.shape[-1]} encoder positions; the model has "
                f"{self.config.max_source_positions} (30 s): split longer audio into chunks"
            )
        return self.encoder(x.transpose(1, 2), need_weights=need_weights)  # hidden (B, S, D)

    def cache_layout(self) -> CacheLayout:
        """The text decoder's cache geometry: its layers, ``max_len`` text positions, cross-attention
        over the audio encoder's output."""
        c = self.config
        return CacheLayout(
            layers=c.num_decoder_layers,
            kv_heads=c.num_kv_heads or c.num_heads,
            head_dim=c.head_dim or c.d_model // c.num_heads,
            context=c.max_len,
            vocab=c.vocab_size,
            cross_attention=True,
        )

    def decode(
        self,
        ids: Tensor,
        memory: Tensor,
        memory_key_mask: Tensor | None = None,
        *,
        key_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache=None,
        need_weights: bool = False,
    ) -> StackOutput:
        """ids ``(B, T)`` (the new tokens when a cache is used), memory ``(B, S, D)`` -> final
        decoder states ``(B, T, D)``, before the vocabulary head."""
        if ids.dim() != 2:
            raise ValueError(f"decoder ids must have shape (batch, seq), got {tuple(ids.shape)}")
        return self.decoder(
            self.embed(ids),
            memory=memory,
            memory_key_mask=memory_key_mask,
            key_mask=key_mask,
            positions=positions,
            cache=cache,
            need_weights=need_weights,
        )

    def forward(self, features: Tensor, ids: Tensor) -> Tensor:
        """Teacher forcing: features ``(B, M, F)``, ids ``(B, T)`` -> logits ``(B, T, V)``."""
        return self.head(self.decode(ids, self.encode(features).hidden).hidden)


register_preset(
    "whisper-tiny",
    SpeechConfig(),
    "shaped like Whisper tiny.en: 4+4 layers, 384 wide, 6 heads, 80 mel bins, 30 s audio context",
)
register_preset(
    "whisper-base",
    SpeechConfig(num_encoder_layers=6, num_decoder_layers=6, d_model=512, num_heads=8, d_ff=2048),
    "shaped like Whisper base.en: 6+6 layers, 512 wide, 8 heads",
)

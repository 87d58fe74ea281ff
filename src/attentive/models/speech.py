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
from ..nn import DynamicCache, LearnedPositionalEmbedding, OutputProjection, TokenEmbedding, TransformerStack
from ..nn import make_positional
from ..nn.packed import inference_head
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
            raise ValueError(f"SpeechConfig: special token ids {bad} are outside the vocabulary "
                             f"(0..{self.vocab_size - 1})")


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's encoder table ``(length, channels)``: all sines, then all cosines (not interleaved)."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2))  # (D/2,)
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]  # (S, D/2)
    return torch.cat((scaled.sin(), scaled.cos()), dim=1)  # (S, D)


@register_model(SpeechConfig)
class SpeechModel(nn.Module):
    """``forward(features, ids) -> logits``; ``encode`` and ``decode`` for step-by-step decoding."""

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
            config.positional, d, config.num_heads, config.max_len, config.rope_base, config.head_dim,
            bidirectional=False,
        )
        self.decoder = TransformerStack(
            config.layer_spec(), config.num_decoder_layers, positional, causal=True, cross_attention=True,
        )
        self.lm_head = OutputProjection(d, config.vocab_size, tie_to=self.embed if config.tie_embeddings else None)
        init_gpt2(self, config.num_encoder_layers + config.num_decoder_layers, config.init_std)
        with torch.no_grad():
            encoder_positions.weight.copy_(whisper_sinusoids(config.max_source_positions, d))
        encoder_positions.weight.requires_grad_(False)

    def encode(self, features: Tensor) -> Tensor:
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
        return self.encoder(x.transpose(1, 2)).hidden  # (B, S, D)

    def decode_hidden(self, ids: Tensor, memory: Tensor, cache=None) -> Tensor:
        """ids ``(B, T)`` (the new tokens when a cache is used), memory ``(B, S, D)`` -> final
        decoder states ``(B, T, D)``, before the vocabulary head."""
        if ids.dim() != 2:
            raise ValueError(f"decoder ids must have shape (batch, seq), got {tuple(ids.shape)}")
        return self.decoder(self.embed(ids), memory=memory, cache=cache).hidden

    def decode(self, ids: Tensor, memory: Tensor, cache=None) -> Tensor:
        """ids ``(B, T)`` (the new tokens when a cache is used), memory ``(B, S, D)`` -> logits ``(B, T, V)``."""
        return self.lm_head(self.decode_hidden(ids, memory, cache))

    def forward(self, features: Tensor, ids: Tensor) -> Tensor:
        """Teacher forcing: features ``(B, M, F)``, ids ``(B, T)`` -> logits ``(B, T, V)``."""
        return self.decode(ids, self.encode(features))


def suppress_mask(config: SpeechConfig, first_step: bool, device=None) -> Tensor:
    """Bool ``(V,)``: True for tokens greedy decoding must not pick at this step."""
    mask = torch.zeros(config.vocab_size, dtype=torch.bool, device=device)
    mask[torch.tensor(config.suppress_tokens, dtype=torch.long)] = True
    if first_step:
        mask[torch.tensor(config.begin_suppress_tokens, dtype=torch.long)] = True
    if config.timestamp_begin:
        mask[config.timestamp_begin:] = True  # no timestamps in the transcript
    return mask


@torch.no_grad()
def greedy_transcribe(model: SpeechModel, features: Tensor, max_new_tokens: int | None = None) -> list[list[int]]:
    """Greedy decoding with a KV cache, timestamps suppressed: features ``(B, M, F)`` -> token ids
    per row (without the start tokens and ``<|endoftext|>``)."""
    config = model.config
    batch = features.shape[0]
    memory = model.encode(features)  # (B, S, D)
    start = torch.tensor(config.start_ids, device=features.device).expand(batch, -1)  # (B, T0)
    limit = config.max_len - start.shape[1]
    limit = limit if max_new_tokens is None else min(limit, max_new_tokens)
    cache, ids, done = DynamicCache(), start, torch.zeros(batch, dtype=torch.bool, device=features.device)
    head = inference_head(model.lm_head, features.device)  # on CPU, the 51k-token head packed
    out: list[Tensor] = []
    for step in range(limit):
        logits = head(model.decode_hidden(ids, memory, cache=cache)[:, -1]).float()  # (B, V)
        logits = logits.masked_fill(suppress_mask(config, step == 0, logits.device), float("-inf"))
        ids = logits.argmax(-1).masked_fill(done, config.eot_id)[:, None]  # (B, 1)
        done = done | (ids[:, 0] == config.eot_id)
        out.append(ids)
        if bool(done.all()):
            break
    tokens = torch.cat(out, dim=1).tolist() if out else [[] for _ in range(batch)]
    return [row[:row.index(config.eot_id)] if config.eot_id in row else row for row in tokens]


def transcribe_audio(model: SpeechModel, tokenizer, audio, sample_rate: int, max_new_tokens: int | None = None) -> str:
    """Mono samples in [-1, 1] at any rate -> transcript text.

    Audio is resampled to 16 kHz when needed and cut into 30 s windows (Whisper's context),
    which are transcribed as one batch and joined; ``tokenizer.decode`` drops special tokens.
    """
    from ..audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, resample

    samples = resample(audio, sample_rate, SAMPLE_RATE)  # (N,) float32 at 16 kHz
    windows = [samples[i:i + N_SAMPLES] for i in range(0, max(len(samples), 1), N_SAMPLES)]
    features = torch.stack([log_mel_spectrogram(w, model.config.n_mels) for w in windows])  # (B, M, 3000)
    param = next(model.parameters())
    tokens = greedy_transcribe(model, features.to(param.device, param.dtype), max_new_tokens)
    return " ".join(text for text in (tokenizer.decode(ids).strip() for ids in tokens) if text)


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

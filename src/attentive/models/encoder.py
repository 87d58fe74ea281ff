"""Encoder-only models (BERT, MiniLM): token + segment + position embeddings, a bidirectional
stack, and pooling into one vector per text (sentence embeddings).

BERT normalises the summed embeddings (LayerNorm) before the first layer and uses post-LN
layers (the paper's order) with exact GELU. Pooling turns the per-token states into one
vector: the mean over real tokens (sentence-transformers), the [CLS] state, the maximum,
or BERT's own pooler (``tanh(W h_cls + b)``); ``normalize`` scales it to unit length so a
dot product is a cosine similarity.

Dimension names: B batch, T tokens, D model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TransformerConfig, register_model, register_preset
from ..nn import PositionalEncoding, TokenEmbedding, TransformerStack, make_norm, make_positional
from ..nn.stack import StackOutput
from .init import init_gpt2

POOLINGS = ("mean", "cls", "max", "pooler")
_ADDED_POSITIONS = ("learned", "sinusoidal")  # kinds added to the embedding (before its norm)


@dataclass
class EncoderConfig(TransformerConfig):
    """A bidirectional stack over token embeddings. Defaults: BERT-base."""

    model_type = "encoder"
    vocab_size: int = 30522
    num_layers: int = 12
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    ffn: str = "gelu"
    norm_eps: float = 1e-12
    positional: str = "learned"
    max_len: int = 512
    num_token_types: int = 2  # segment (token type) embeddings; 0 = none
    embed_norm: bool = True  # LayerNorm over the summed embeddings (BERT)
    pooling: str = "mean"
    normalize: bool = True  # unit-length pooled vectors
    pooler: bool = False  # BERT's dense + tanh over [CLS] (needed for pooling="pooler")
    pad_id: int = 0
    init_std: float = 0.02

    def validate(self) -> None:
        super().validate()
        if self.pooling not in POOLINGS:
            raise ValueError(f"EncoderConfig.pooling = {self.pooling!r} is not one of {POOLINGS}")
        if self.pooling == "pooler" and not self.pooler:
            raise ValueError("EncoderConfig.pooling = 'pooler' needs pooler=True")
        if self.num_token_types < 0:
            raise ValueError(f"EncoderConfig.num_token_types must be >= 0, got {self.num_token_types}")


@register_model(EncoderConfig)
class Encoder(nn.Module):
    """``forward(ids) -> hidden (B, T, D)``; ``embed_ids(ids) -> pooled sentence vectors (B, D)``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config.vocab_size, config.d_model, scale=False)
        self.token_type = nn.Embedding(config.num_token_types, config.d_model) if config.num_token_types else None
        positional = make_positional(
            config.positional,
            config.d_model,
            config.num_heads,
            config.max_len,
            config.rope_base,
            config.head_dim,
            rope_scaling=config.rope_scaling,
        )
        # Added positions must come before the embedding norm, so the model adds them itself;
        # in-attention kinds (RoPE, ALiBi, relative) go to the stack as usual.
        adds = config.positional in _ADDED_POSITIONS
        self.positions = positional if adds else PositionalEncoding()
        self.embed_norm = (
            make_norm(config.norm, config.d_model, config.norm_eps, config.bias) if config.embed_norm else None
        )
        self.stack = TransformerStack(
            config.layer_spec(),
            config.num_layers,
            PositionalEncoding() if adds else positional,
            causal=False,
        )
        self.pooler = nn.Linear(config.d_model, config.d_model) if config.pooler else None
        init_gpt2(self, config.num_layers, config.init_std)

    def encode(
        self,
        ids: Tensor,
        key_mask: Tensor | None = None,
        token_types: Tensor | None = None,
        need_weights: bool = False,
    ) -> StackOutput:
        """ids ``(B, T)``; ``key_mask (B, T)`` True for real tokens (default: ids != pad_id)."""
        if ids.dim() != 2:
            raise ValueError(f"input ids must have shape (batch, seq), got {tuple(ids.shape)}")
        key_mask = ids != self.config.pad_id if key_mask is None else key_mask  # (B, T)
        x = self.embed(ids)  # (B, T, D)
        if self.token_type is not None:
            types = torch.zeros_like(ids) if token_types is None else token_types
            x = x + self.token_type(types)
        x = self.positions.add_to(x, torch.arange(ids.shape[1], device=ids.device)[None])
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return self.stack(x, key_mask=key_mask, need_weights=need_weights)

    def forward(self, ids: Tensor, key_mask: Tensor | None = None, token_types: Tensor | None = None) -> Tensor:
        """ids ``(B, T)`` -> last hidden states ``(B, T, D)``."""
        return self.encode(ids, key_mask, token_types).hidden

    def pool(self, hidden: Tensor, key_mask: Tensor) -> Tensor:
        """hidden ``(B, T, D)``, key_mask ``(B, T)`` -> one vector per row ``(B, D)``."""
        kind = self.config.pooling
        if kind == "mean":
            weights = key_mask[..., None].to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        elif kind == "max":
            pooled = hidden.masked_fill(~key_mask[..., None], float("-inf")).max(1).values
        elif kind == "cls":
            pooled = hidden[:, 0]
        else:  # BERT's pooler
            pooled = torch.tanh(self.pooler(hidden[:, 0]))
        return F.normalize(pooled, p=2, dim=-1) if self.config.normalize else pooled

    def embed_ids(self, ids: Tensor, key_mask: Tensor | None = None, token_types: Tensor | None = None) -> Tensor:
        """ids ``(B, T)`` -> pooled (sentence) embeddings ``(B, D)``; pads never count."""
        key_mask = ids != self.config.pad_id if key_mask is None else key_mask
        return self.pool(self(ids, key_mask, token_types), key_mask)


def embed_texts(model: Encoder, tokenizer, texts: list[str], batch_size: int = 32) -> Tensor:
    """Sentence embeddings ``(N, D)`` for ``texts``.

    ``tokenizer.encode_batch(texts, add_special_tokens=True)`` gives the ids ([CLS] ... [SEP]
    for BERT). Each batch is right-padded to its longest text; the key mask keeps pads out of
    attention and out of the pooled mean, so a text's vector does not depend on its batch.
    """
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        rows = tokenizer.encode_batch(texts[start : start + batch_size], add_special_tokens=True)
        rows = [r[: model.config.max_len] for r in rows]
        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), model.config.pad_id, dtype=torch.long)  # (B, T)
        valid = torch.zeros(len(rows), longest, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            valid[i, : len(r)] = True
        with torch.no_grad():
            out.append(model.embed_ids(ids.to(device), valid.to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.d_model)


register_preset(
    "bert-base",
    EncoderConfig(pooling="cls", normalize=False, pooler=True),
    "BERT-base shape: 12 layers, 768 wide, 12 heads, post-LN, GELU, learned positions (~110M)",
)
register_preset(
    "minilm-l6",
    EncoderConfig(num_layers=6, d_model=384, num_heads=12, d_ff=1536, pooler=True),
    "shaped like all-MiniLM-L6-v2: 6 layers, 384 wide, 12 heads; mean-pooled, normalised embeddings",
)

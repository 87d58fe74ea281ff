"""Marian (``MarianMTModel``) <-> attentive's ``EncoderDecoder``: the paper's model, the model width
reordered.

``MarianMTModel`` is the paper's model as Hugging Face has it: post-LN, sinusoidal positions, one
vocabulary shared by both embeddings and the output layer, embeddings scaled by sqrt(d_model).
Its sinusoid table keeps all sines, then all cosines, where the paper (and attentive) interleave
them; the two agree after reordering the model width, so every weight that reads or writes the
residual stream has that axis permuted (``width_order``). LayerNorm and attention do not care
about the order of the width, so the permuted model computes the same logits.

Our recipes' pre-LN models (``norm_first=True``) have no Hugging Face counterpart with the
paper's sinusoid table (mBART and M2M100 are pre-LN but have learned positions or another
sinusoid and count positions from 2), so they are refused on export.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...checkpoint import unique_state_dict
from ...models.encoder_decoder import EncoderDecoderConfig
from ...text.special import BOS_ID, EOS_ID
from ..hf_maps import check, invert, need, rename
from ..loading import HFFolder, build

NAME = "Marian"
EXPORTS = ("encoder-decoder", None)

RULES: list[tuple[str, str]] = [
    ("model.shared.weight", "src_embed.weight"),
    ("model.{side}.layers.{i}.self_attn.{proj}.{p}", "{side}.layers.{i}.self_attn.{proj}.{p}"),
    ("model.{side}.layers.{i}.self_attn_layer_norm.{p}", "{side}.layers.{i}.self_attn_residual.norm.{p}"),
    ("model.decoder.layers.{i}.encoder_attn.{proj}.{p}", "decoder.layers.{i}.cross_attn.{proj}.{p}"),
    ("model.decoder.layers.{i}.encoder_attn_layer_norm.{p}", "decoder.layers.{i}.cross_attn_residual.norm.{p}"),
    ("model.{side}.layers.{i}.fc1.{p}", "{side}.layers.{i}.ffn.up.{p}"),
    ("model.{side}.layers.{i}.fc2.{p}", "{side}.layers.{i}.ffn.down.{p}"),
    ("model.{side}.layers.{i}.final_layer_norm.{p}", "{side}.layers.{i}.ffn_residual.norm.{p}"),
]
# copies of the shared embedding, the fixed sinusoid tables and the (zero) logits bias: checked, not loaded
DERIVED = (
    r"model\.(encoder|decoder)\.embed_tokens\.weight",
    r"lm_head\.weight",
    r"model\.(encoder|decoder)\.embed_positions\.weight",
    r"final_logits_bias",
)
ACTIVATIONS = {"relu": "relu", "gelu": "gelu"}
EXPORT_ACTIVATIONS = invert(ACTIVATIONS)  # ours -> HF's, for export


def width_order(d_model: int) -> torch.Tensor:
    """Marian's width index -> attentive's: sines (attentive's even columns), then cosines (odd)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])  # (D,)


def permute_width(name: str, tensor: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Reorder the model-width axis of one attentive tensor (``order`` from ``width_order``,
    or its inverse to go back)."""
    if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "ffn.up.weight", "embed.weight")):
        return tensor[:, order]  # reads the stream
    if name.endswith(("out_proj.weight", "ffn.down.weight")):
        return tensor[order, :]  # writes the stream
    if name.endswith(("out_proj.bias", "ffn.down.bias", "norm.weight", "norm.bias")):
        return tensor[order]
    return tensor  # q/k/v and FFN-hidden biases live in the heads' and hidden widths


# ----------------------------------------------------------------------------- read


def read_config(hf: dict[str, Any]) -> EncoderDecoderConfig:
    """``MarianConfig`` fields -> ``EncoderDecoderConfig`` (post-LN, sinusoidal, all embeddings tied)."""
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(a) != hf.get(b):
            raise ValueError(
                f"Marian with {a}={hf.get(a)} != {b}={hf.get(b)} is not supported; supported: one "
                f"layer shape for both stacks"
            )
    act = hf.get("activation_function", "swish")
    if act not in ACTIVATIONS:
        raise ValueError(f"Marian activation_function {act!r} is not supported; supported: relu, gelu")
    vocab = hf["vocab_size"]
    if not hf.get("share_encoder_decoder_embeddings", True) or hf.get("decoder_vocab_size", vocab) != vocab:
        raise ValueError(
            "Marian with separate encoder and decoder vocabularies is not supported; supported: one shared vocabulary"
        )
    return EncoderDecoderConfig(
        src_vocab_size=vocab,
        tgt_vocab_size=vocab,
        d_model=hf["d_model"],
        num_heads=hf["encoder_attention_heads"],
        d_ff=hf["encoder_ffn_dim"],
        num_encoder_layers=hf["encoder_layers"],
        num_decoder_layers=hf["decoder_layers"],
        ffn=ACTIVATIONS[act],
        dropout=float(hf.get("dropout", 0.1)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        activation_dropout=float(hf.get("activation_dropout", 0.0)),
        norm_first=False,
        positional="sinusoidal",
        max_len=hf.get("max_position_embeddings", 512),
        bias=True,
        tie_embeddings="all",
        scale_embedding=bool(hf.get("scale_embedding", True)),
        pad_id=hf.get("pad_token_id") or 0,
    )


def read_state(state: dict[str, torch.Tensor], config: EncoderDecoderConfig) -> dict[str, torch.Tensor]:
    """``MarianMTModel`` weights -> ``EncoderDecoder`` names, width reordered back to interleaved."""
    from ...nn.positional import sinusoidal_table

    order = width_order(config.d_model)
    shared = state["model.shared.weight"]
    for name, tensor in state.items():
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            if not torch.equal(tensor, shared):
                raise ValueError(f"Marian {name} differs from model.shared.weight; supported: one tied embedding")
        elif name.endswith("embed_positions.weight"):
            table = sinusoidal_table(tensor.shape[0], config.d_model)[:, order]  # (T, D), Marian's order
            if (tensor - table).abs().max() > 1e-4:
                raise ValueError(f"Marian {name} is not the sinusoid table; supported: fixed sinusoidal positions")
        elif name == "final_logits_bias" and tensor.any():
            raise ValueError("Marian with a non-zero final_logits_bias is not supported; supported: no output bias")
    inverse = torch.argsort(order)
    renamed = rename(state, RULES, DERIVED, NAME)
    return {name: permute_width(name, tensor, inverse) for name, tensor in renamed.items()}


def load(folder: HFFolder, language: str | None, overrides: dict[str, Any]) -> tuple[nn.Module, Any]:
    """An ``EncoderDecoder`` and, with a ``tokenizer.json``, attentive's tokenizer for it."""
    config = read_config(folder.config)
    model = build(config, read_state(folder.state, config), str(folder.path))
    tokenizer = None
    if (folder.path / "tokenizer.json").is_file():
        from ...text import load_tokenizer

        tokenizer = load_tokenizer(folder.path)
    return model, tokenizer


# ----------------------------------------------------------------------------- export


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``MarianConfig`` fields, ``MarianMTModel``-named tensors with the width in Marian's order)."""
    from ...nn.positional import sinusoidal_table

    c = model.config
    what = "a Marian (MarianMTModel) export of the encoder-decoder"
    check(
        c,
        what,
        norm_first=False,
        positional="sinusoidal",
        norm="layernorm",
        ffn=tuple(EXPORT_ACTIVATIONS),
        bias=True,
        tie_embeddings="all",
        head_dim=None,
        num_kv_heads=(None, c.num_heads),
    )
    need(c.norm_eps == 1e-5, f"{what} needs norm_eps=1e-05 (Marian's LayerNorm); this model has {c.norm_eps}")
    order = width_order(c.d_model)
    state = {name: permute_width(name, tensor, order) for name, tensor in unique_state_dict(model).items()}
    state = rename(state, RULES, family=NAME, reverse=True)
    table = sinusoidal_table(c.max_len, c.d_model)[:, order]  # (T, D): sines, then cosines
    state.update(
        {
            "model.encoder.embed_positions.weight": table,
            "model.decoder.embed_positions.weight": table.clone(),
            "final_logits_bias": torch.zeros(1, c.tgt_vocab_size),
        }
    )  # (1, V)
    config = {
        "architectures": ["MarianMTModel"],
        "model_type": "marian",
        "vocab_size": c.src_vocab_size,
        "decoder_vocab_size": c.tgt_vocab_size,
        "d_model": c.d_model,
        "encoder_layers": c.num_encoder_layers,
        "decoder_layers": c.num_decoder_layers,
        "encoder_attention_heads": c.num_heads,
        "decoder_attention_heads": c.num_heads,
        "encoder_ffn_dim": c.d_ff,
        "decoder_ffn_dim": c.d_ff,
        "activation_function": EXPORT_ACTIVATIONS[c.ffn],
        "max_position_embeddings": c.max_len,
        "scale_embedding": c.scale_embedding,
        "share_encoder_decoder_embeddings": True,
        "tie_word_embeddings": True,
        "dropout": c.dropout,
        "attention_dropout": c.attention_dropout,
        "activation_dropout": c.activation_dropout,
        "pad_token_id": c.pad_id,
        "decoder_start_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "bos_token_id": BOS_ID,
        "is_encoder_decoder": True,
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    return config, state


def hf_generation_config(model: nn.Module, tokenizer, config: dict[str, Any]) -> dict[str, Any]:
    """``generation_config.json``: beam search as Marian models ship it, our special token ids."""
    c = model.config
    return {
        "decoder_start_token_id": BOS_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": c.pad_id,
        "num_beams": 4,
        "max_length": c.max_len,
    }

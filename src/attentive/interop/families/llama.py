"""LLaMA (``LlamaForCausalLM``) <-> attentive's ``DecoderLM``: RoPE, RMSNorm, SwiGLU, GQA, no biases.

One table of tensor names (``RULES``) serves both directions; the configs map by hand each way
(``read_config``, ``hf_config``). Where the HF parts land (``L`` = ``stack.layers.{i}``)::

    input_layernorm                  -> L.self_attn_residual.norm   (pre-LN)
    mlp.gate_proj/up_proj/down_proj  -> L.ffn.gate/up/down          (SwiGLU)

GGUF files (llama.cpp) name the same tensors their own way: ``GGUF_LAYER_NAMES`` and
``GGUF_TOP_NAMES`` map them to the HF names, for the GGUF reader (``interop.gguf``) and
exporter (``interop.gguf_export``) alike; ``from_gguf`` builds the model from what the reader read.
Query and key rows are in HF's rotate-half order here (the GGUF modules permute them).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...checkpoint import unique_state_dict
from ...models.decoder_lm import DecoderLMConfig
from ...nn.rope_scaling import ROPE_TYPES
from ...text.pretrained import PretrainedTokenizer
from ..hf_maps import check, drop_tied_head, need, rename
from ..loading import HFFolder, build
from . import decoder

NAME = "LLaMA"
EXPORTS = ("decoder-lm", "rope")  # a DecoderLM with rotary positions

RULES: list[tuple[str, str]] = [
    ("model.embed_tokens.weight", "embed.weight"),
    ("model.layers.{i}.self_attn.{x}_proj.weight", "stack.layers.{i}.self_attn.{x}_proj.weight"),
    ("model.layers.{i}.self_attn.o_proj.weight", "stack.layers.{i}.self_attn.out_proj.weight"),
    ("model.layers.{i}.mlp.{f}_proj.weight", "stack.layers.{i}.ffn.{f}.weight"),
    ("model.layers.{i}.input_layernorm.weight", "stack.layers.{i}.self_attn_residual.norm.weight"),
    ("model.layers.{i}.post_attention_layernorm.weight", "stack.layers.{i}.ffn_residual.norm.weight"),
    ("model.norm.weight", "stack.final_norm.weight"),
    ("lm_head.weight", "head.weight"),
]
IGNORED = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq")

# GGUF names -> HF names: a layer's parts (``blk.{i}.attn_q.weight`` -> ``model.layers.{i}.self_attn.q_proj.weight``)
# and the tensors outside the layers
GGUF_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
GGUF_TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


# ----------------------------------------------------------------------------- read


def read_config(hf: dict[str, Any]) -> DecoderLMConfig:
    """``LlamaConfig`` fields -> ``DecoderLMConfig`` (RoPE, RMSNorm, SwiGLU, GQA, no biases)."""
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"LLaMA rope type {rope_type!r} is not supported; supported: {', '.join(ROPE_TYPES)}")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(
            f"LLaMA with partial_rotary_factor={rope['partial_rotary_factor']} is not supported; supported: 1.0"
        )
    # the scaling fields map over unchanged; rope_theta is rope_base here (transformers 5 keeps it inside)
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ValueError("LLaMA with attention_bias or mlp_bias is not supported; supported: no biases")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"LLaMA hidden_act {hf['hidden_act']!r} is not supported; supported: silu")
    d_model, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or d_model // heads
    return DecoderLMConfig(
        vocab_size=hf["vocab_size"],
        num_layers=hf["num_hidden_layers"],
        d_model=d_model,
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=None if head_dim * heads == d_model else head_dim,
        d_ff=hf["intermediate_size"],
        ffn="swiglu",
        norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        positional="rope",
        rope_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        bias=False,
        rope_scaling=scaling if rope_type != "default" else None,
        dropout=0.0,
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        max_len=hf.get("max_position_embeddings", 2048),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        pad_id=hf.get("pad_token_id") or 0,
    )


def read_state(state: dict[str, torch.Tensor], config: DecoderLMConfig) -> dict[str, torch.Tensor]:
    """``LlamaForCausalLM`` weights (q/k in HF's rotate-half order) -> ``DecoderLM`` names."""
    out = rename(state, RULES, IGNORED, NAME)
    drop_tied_head(out, config.tie_embeddings)
    return out


def load(folder: HFFolder, language: str | None, overrides: dict[str, Any]) -> tuple[nn.Module, Any]:
    """A ``DecoderLM`` and the folder's tokenizer (None without ``tokenizer.json``)."""
    config = read_config(folder.config)
    model = build(config, read_state(folder.state, config), str(folder.path), overrides)
    return model, decoder.load_tokenizer(folder)


def from_gguf(gg, source: str, overrides: dict[str, Any] | None = None) -> tuple[nn.Module, PretrainedTokenizer, Any]:
    """(``DecoderLM``, tokenizer, the file's quantised blocks under attentive names or None) from an
    already read ``GGUFLlama`` (``interop.gguf.load_gguf_llama``)."""
    config = read_config(gg.config.to_hf())
    model = build(config, read_state(gg.state_dict, config), source, overrides)
    tok = gg.tokenizer
    tokenizer = PretrainedTokenizer(
        tok.backend_tokenizer,
        bos_token=tok.bos_token,
        eos_tokens=[tok.eos_token],
        pad_token=tok.pad_token,
        chat_template=gg.chat_template,
        unk_token=tok.unk_token,
    )
    blocks = None if gg.blocks is None else rename(gg.blocks, RULES, IGNORED)
    return model, tokenizer, blocks


# ----------------------------------------------------------------------------- export


def hf_config(c) -> dict[str, Any]:
    """``LlamaConfig`` fields for a ``DecoderLMConfig``; a one-line refusal for what LLaMA lacks."""
    what = "a LLaMA (LlamaForCausalLM) export"
    need(c.model_type == "decoder-lm", f"{what} needs a DecoderLM; this is a {c.model_type} model")
    check(c, what, positional="rope", norm="rmsnorm", ffn="swiglu", bias=False, norm_first=True, scale_embedding=False)
    heads = c.num_heads
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": c.num_kv_heads or heads,
        "head_dim": c.head_dim or c.d_model // heads,
        "hidden_act": "silu",
        "max_position_embeddings": c.max_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_base,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_base},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": c.attention_dropout,
        "tie_word_embeddings": bool(c.tie_embeddings),
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``LlamaConfig`` fields, ``LlamaForCausalLM``-named tensors; a tied head stored once)."""
    config = hf_config(model.config)
    return config, rename(unique_state_dict(model), RULES, family=NAME, reverse=True)


hf_generation_config = decoder.hf_generation_config  # the special token ids and every EOS id

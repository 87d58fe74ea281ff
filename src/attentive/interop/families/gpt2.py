"""GPT-2 (``GPT2LMHeadModel``) <-> attentive's ``DecoderLM``: learned positions, pre-LN, LayerNorm,
biases, a tied head.

GPT-2's linear layers are ``Conv1D``: weights stored (in, out), the transpose of a Linear's, and
q, k, v fused into one ``c_attn``. ``read_state`` transposes and splits around the name table
(``RULES``), ``to_hf`` fuses and transposes back around the same table read backwards::

    c_attn (q, k, v fused, Conv1D)  -> L.self_attn.q_proj/k_proj/v_proj (split, transposed)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...checkpoint import unique_state_dict
from ...models.decoder_lm import DecoderLMConfig
from ..hf_maps import check, drop_tied_head, invert, rename
from ..loading import HFFolder, build
from . import decoder

NAME = "GPT-2"
EXPORTS = ("decoder-lm", "learned")  # a DecoderLM with learned positions

RULES: list[tuple[str, str]] = [
    ("transformer.wte.weight", "embed.weight"),
    ("transformer.wpe.weight", "stack.positional.weight"),
    ("transformer.h.{i}.ln_1.{p}", "stack.layers.{i}.self_attn_residual.norm.{p}"),
    ("transformer.h.{i}.attn.c_attn.{p}", "stack.layers.{i}.self_attn.qkv.{p}"),  # split / fused outside
    ("transformer.h.{i}.attn.c_proj.{p}", "stack.layers.{i}.self_attn.out_proj.{p}"),
    ("transformer.h.{i}.ln_2.{p}", "stack.layers.{i}.ffn_residual.norm.{p}"),
    ("transformer.h.{i}.mlp.c_fc.{p}", "stack.layers.{i}.ffn.up.{p}"),
    ("transformer.h.{i}.mlp.c_proj.{p}", "stack.layers.{i}.ffn.down.{p}"),
    ("transformer.ln_f.{p}", "stack.final_norm.{p}"),
    ("lm_head.weight", "head.weight"),
]
IGNORED = (r"transformer\.h\.\d+\.attn\.(masked_)?bias",)  # old causal-mask buffers

ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
EXPORT_ACTIVATIONS = invert(ACTIVATIONS)  # ours -> HF's, for export (gelu_tanh -> gelu_new)


def is_conv1d(name: str) -> bool:
    """GPT-2's Conv1D weights, stored (in, out): every 2-D layer weight."""
    return name.startswith("transformer.h.") and name.endswith(".weight") and ".ln_" not in name


# ----------------------------------------------------------------------------- read


def read_config(hf: dict[str, Any]) -> DecoderLMConfig:
    """``GPT2Config`` fields -> ``DecoderLMConfig`` (learned positions, pre-LN, LayerNorm, biases, tied)."""
    act = hf.get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(f"GPT-2 activation_function {act!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    for flag, default in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)):
        if hf.get(flag, default) != default:
            raise ValueError(f"GPT-2 with {flag}={hf[flag]} is not supported; supported: {flag}={default}")
    d_model = hf["n_embd"]
    return DecoderLMConfig(
        vocab_size=hf["vocab_size"],
        num_layers=hf["n_layer"],
        d_model=d_model,
        num_heads=hf["n_head"],
        d_ff=hf.get("n_inner") or 4 * d_model,
        ffn=ACTIVATIONS[act],
        norm="layernorm",
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        norm_first=True,
        positional="learned",
        bias=True,
        dropout=float(hf.get("resid_pdrop", 0.1)),
        attention_dropout=float(hf.get("attn_pdrop", 0.1)),
        max_len=hf.get("n_positions", 1024),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        pad_id=hf.get("pad_token_id") or 0,
    )


def read_state(state: dict[str, torch.Tensor], config: DecoderLMConfig) -> dict[str, torch.Tensor]:
    """``GPT2LMHeadModel`` weights -> ``DecoderLM`` names: Conv1D weights transposed, c_attn split."""
    state = {k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}": v for k, v in state.items()}
    state = {k: v.t() if is_conv1d(k) else v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in rename(state, RULES, IGNORED, NAME).items():
        if ".self_attn.qkv." in name:
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                out[name.replace("qkv", part)] = chunk.contiguous()
        else:
            out[name] = tensor
    drop_tied_head(out, config.tie_embeddings)
    return out


def load(folder: HFFolder, language: str | None, overrides: dict[str, Any]) -> tuple[nn.Module, Any]:
    """A ``DecoderLM`` and the folder's tokenizer (None without ``tokenizer.json``)."""
    config = read_config(folder.config)
    model = build(config, read_state(folder.state, config), str(folder.path), overrides)
    return model, decoder.load_tokenizer(folder)


# ----------------------------------------------------------------------------- export


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``GPT2Config`` fields, ``GPT2LMHeadModel``-named tensors: q, k, v fused, Conv1D-transposed)."""
    c = model.config
    check(
        c,
        "a GPT-2 (GPT2LMHeadModel) export",
        positional="learned",
        norm="layernorm",
        ffn=tuple(EXPORT_ACTIVATIONS),
        bias=True,
        norm_first=True,
        scale_embedding=False,
        head_dim=None,
        num_kv_heads=(None, c.num_heads),
    )
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_embd": c.d_model,
        "n_layer": c.num_layers,
        "n_head": c.num_heads,
        "n_inner": c.d_ff,
        "n_positions": c.max_len,
        "n_ctx": c.max_len,
        "activation_function": EXPORT_ACTIVATIONS[c.ffn],
        "layer_norm_epsilon": c.norm_eps,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.attention_dropout,
        "tie_word_embeddings": bool(c.tie_embeddings),
        "scale_attn_weights": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    state = dict(unique_state_dict(model))
    for i in range(c.num_layers):  # q, k, v -> one c_attn
        prefix = f"stack.layers.{i}.self_attn."
        for p in ("weight", "bias"):
            state[f"{prefix}qkv.{p}"] = torch.cat([state.pop(f"{prefix}{x}_proj.{p}") for x in "qkv"])
    state = rename(state, RULES, family=NAME, reverse=True)
    return config, {k: v.t().contiguous() if is_conv1d(k) else v for k, v in state.items()}


hf_generation_config = decoder.hf_generation_config  # the special token ids and every EOS id

"""BERT (``BertModel``) <-> attentive's ``Encoder``: post-LN, learned positions, segment embeddings,
and sentence-transformers pooling both ways.

Where the HF parts land (``L`` = ``stack.layers.{i}``)::

    attention.self.query/key/value   -> L.self_attn.q_proj/k_proj/v_proj
    attention.output.LayerNorm       -> L.self_attn_residual.norm   (post-LN)
    intermediate.dense, output.dense -> L.ffn.up, L.ffn.down

A sentence-transformers folder says how to pool token vectors into one embedding
(``modules.json``, ``1_Pooling/config.json``) and whether to normalise it; ``load`` reads those
files into the config and ``extra_files`` writes them, from one table (``ST_POOLING``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...checkpoint import unique_state_dict
from ...models.encoder import EncoderConfig
from ...text.files import read_json
from ...text.pretrained import PretrainedTokenizer
from ..hf_maps import check, invert, need, rename, strip_prefix
from ..loading import HFFolder, build

NAME = "BERT"
EXPORTS = ("encoder", None)

RULES: list[tuple[str, str]] = [
    ("embeddings.word_embeddings.weight", "embed.weight"),
    ("embeddings.position_embeddings.weight", "positions.weight"),
    ("embeddings.token_type_embeddings.weight", "token_type.weight"),
    ("embeddings.LayerNorm.{p}", "embed_norm.{p}"),
    ("encoder.layer.{i}.attention.self.query.{p}", "stack.layers.{i}.self_attn.q_proj.{p}"),
    ("encoder.layer.{i}.attention.self.key.{p}", "stack.layers.{i}.self_attn.k_proj.{p}"),
    ("encoder.layer.{i}.attention.self.value.{p}", "stack.layers.{i}.self_attn.v_proj.{p}"),
    ("encoder.layer.{i}.attention.output.dense.{p}", "stack.layers.{i}.self_attn.out_proj.{p}"),
    ("encoder.layer.{i}.attention.output.LayerNorm.{p}", "stack.layers.{i}.self_attn_residual.norm.{p}"),
    ("encoder.layer.{i}.intermediate.dense.{p}", "stack.layers.{i}.ffn.up.{p}"),
    ("encoder.layer.{i}.output.dense.{p}", "stack.layers.{i}.ffn.down.{p}"),
    ("encoder.layer.{i}.output.LayerNorm.{p}", "stack.layers.{i}.ffn_residual.norm.{p}"),
    ("pooler.dense.{p}", "pooler.{p}"),
]
IGNORED = (r"embeddings\.position_ids", r"cls\..*")  # a buffer; task heads (MLM/NSP) are not loaded

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
EXPORT_ACTIVATIONS = invert(ACTIVATIONS)  # ours -> HF's, for export (gelu_tanh -> gelu_new)
# sentence-transformers' pooling flags -> attentive's pooling
ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}


# ----------------------------------------------------------------------------- read


def read_config(
    hf: dict[str, Any], pooling: str = "mean", normalize: bool = False, pooler: bool = False
) -> EncoderConfig:
    """``BertConfig`` fields -> ``EncoderConfig`` (post-LN, learned positions, segment embeddings)."""
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"BERT position_embedding_type {hf['position_embedding_type']!r} is not supported; supported: absolute"
        )
    act = hf.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise ValueError(f"BERT hidden_act {act!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    return EncoderConfig(
        vocab_size=hf["vocab_size"],
        num_layers=hf["num_hidden_layers"],
        d_model=hf["hidden_size"],
        num_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        ffn=ACTIVATIONS[act],
        norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        max_len=hf.get("max_position_embeddings", 512),
        num_token_types=hf.get("type_vocab_size", 2),
        dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        pad_id=hf.get("pad_token_id") or 0,
        pooling=pooling,
        normalize=normalize,
        pooler=pooler,
    )


def read_state(state: dict[str, torch.Tensor], config: EncoderConfig | None = None) -> dict[str, torch.Tensor]:
    """``BertModel`` (or ``bert.``-prefixed) weights -> ``Encoder`` names; old gamma/beta names too."""
    state = strip_prefix(state, "bert.")
    state = {
        re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
        for k, v in state.items()
    }
    return rename(state, RULES, IGNORED, NAME)


def sentence_transformers(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max tokens) from a sentence-transformers folder; plain BERT: mean, no norm."""
    modules = read_json(folder / "modules.json") if (folder / "modules.json").is_file() else []
    pooling, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling") and (folder / module.get("path", "") / "config.json").is_file():
            cfg = read_json(folder / module["path"] / "config.json")
            modes = [mode for key, mode in ST_POOLING.items() if cfg.get(key)]
            if len(modes) != 1:
                raise ValueError(
                    f"sentence-transformers pooling {cfg} is not supported; supported: one of cls, mean, max"
                )
            pooling = modes[0]
    st = folder / "sentence_bert_config.json"
    max_tokens = read_json(st).get("max_seq_length") if st.is_file() else None
    return pooling, normalize, max_tokens


def load(folder: HFFolder, language: str | None, overrides: dict[str, Any]) -> tuple[nn.Module, PretrainedTokenizer]:
    """An ``Encoder`` pooling as the folder's sentence-transformers files say, and its tokenizer,
    truncating to the model's length and never padding."""
    pooling, normalize, max_tokens = sentence_transformers(folder.path)
    has_pooler = any(k.endswith("pooler.dense.weight") for k in folder.state)
    config = read_config(folder.config, pooling, normalize, pooler=has_pooler)
    model = build(config, read_state(folder.state), str(folder.path), overrides)
    tokenizer = PretrainedTokenizer.load(folder.path)
    tokenizer.hf.no_padding()
    tokenizer.hf.enable_truncation(min(max_tokens or config.max_len, config.max_len))
    return model, tokenizer


# ----------------------------------------------------------------------------- export


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``BertConfig`` fields, ``BertModel``-named tensors); BertModel always has a pooler."""
    c = model.config
    what = "a BERT (BertModel) export"
    check(
        c,
        what,
        positional="learned",
        norm="layernorm",
        ffn=tuple(EXPORT_ACTIVATIONS),
        bias=True,
        norm_first=False,
        embed_norm=True,
        head_dim=None,
        num_kv_heads=(None, c.num_heads),
    )
    need(c.num_token_types > 0, f"{what} needs segment embeddings (num_token_types >= 1); this model has none")
    need(c.pooler, f"{what} needs BERT's pooler (pooler=True): BertModel always has one")
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.d_ff,
        "hidden_act": EXPORT_ACTIVATIONS[c.ffn],
        "max_position_embeddings": c.max_len,
        "type_vocab_size": c.num_token_types,
        "layer_norm_eps": c.norm_eps,
        "pad_token_id": c.pad_id,
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    return config, rename(unique_state_dict(model), RULES, family=NAME, reverse=True)


def extra_files(model: nn.Module) -> dict[str, Any]:
    """The pooling (and normalisation) as sentence-transformers modules, so the folder embeds as ours does."""
    c = model.config
    if c.pooling == "pooler":
        return {}
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if c.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {
        "word_embedding_dimension": c.d_model,
        **{key: c.pooling == mode for key, mode in ST_POOLING.items()},
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    return {
        "modules.json": modules,
        "1_Pooling/config.json": pooling,
        "sentence_bert_config.json": {"max_seq_length": c.max_len, "do_lower_case": False},
    }

"""attentive models -> Hugging Face folders that ``transformers`` loads as they are.

A folder holds ``config.json``, ``model.safetensors`` (tied weights stored once, as
``save_pretrained`` does), the tokenizer files (``tokenizer.json`` + ``tokenizer_config.json``,
when the model has a Hugging Face tokenizer) and ``generation_config.json`` for the models that
generate. Names come from the same tables ``hf_maps`` reads with, read backwards, so a folder
read into attentive and written again holds the very same tensors.

What maps where::

    DecoderLM  RoPE, RMSNorm, SwiGLU, no biases, pre-LN       -> LlamaForCausalLM
               learned positions, LayerNorm, GELU, biases     -> GPT2LMHeadModel (q, k, v fused, Conv1D)
    Encoder    post-LN, learned positions, segment embeddings -> BertModel (+ sentence-transformers pooling)
    SpeechModel                                               -> WhisperForConditionalGeneration
    VisionTransformer                                         -> ViTForImageClassification (+ image processor)
    EncoderDecoder  the paper's post-LN model, shared vocabulary -> MarianMTModel (the width reordered)

Anything else (another positional scheme, post-LN where the class is pre-LN, GQA in GPT-2, a
model family with no counterpart) is refused with one line naming the setting: an exported
folder that loads but computes something else would be worse than none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import save_tensors, unique_state_dict
from ..fileio import atomic_directory, atomic_write_text
from ..text.special import BOS_ID, EOS_ID
from . import hf_maps

HF_TARGETS = ("LLaMA- and GPT-2-style DecoderLM, BERT-style Encoder, Whisper-style SpeechModel, ViT, post-LN "
              "EncoderDecoder")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check(config, what: str, **expected: Any) -> None:
    """Every ``field=value`` must hold, else a one-line refusal naming the first that does not."""
    for field, want in expected.items():
        have = getattr(config, field)
        allowed = want if isinstance(want, tuple) else (want,)
        _need(have in allowed, f"{what} needs {field}={' or '.join(map(repr, allowed))}; this model has "
                               f"{field}={have!r}")


# ----------------------------------------------------------------------------- LLaMA


def llama_hf_config(c) -> dict[str, Any]:
    """``LlamaConfig`` fields for a ``DecoderLMConfig``; a one-line refusal for what LLaMA lacks."""
    what = "a LLaMA (LlamaForCausalLM) export"
    _need(c.model_type == "decoder-lm", f"{what} needs a DecoderLM; this is a {c.model_type} model")
    _check(c, what, positional="rope", norm="rmsnorm", ffn="swiglu", bias=False, norm_first=True,
           scale_embedding=False)
    heads = c.num_heads
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
        "hidden_size": c.d_model, "intermediate_size": c.d_ff, "num_hidden_layers": c.num_layers,
        "num_attention_heads": heads, "num_key_value_heads": c.num_kv_heads or heads,
        "head_dim": c.head_dim or c.d_model // heads, "hidden_act": "silu", "max_position_embeddings": c.max_len,
        "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_base,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_base},
        "attention_bias": False, "mlp_bias": False, "attention_dropout": c.attention_dropout,
        "tie_word_embeddings": bool(c.tie_embeddings), "bos_token_id": None, "eos_token_id": None,
        "pad_token_id": None, "torch_dtype": "float32", "dtype": "float32",
    }


def llama_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config = llama_hf_config(model.config)
    return config, hf_maps.rename(unique_state_dict(model), hf_maps.LLAMA_RULES, family="LLaMA", reverse=True)


# ----------------------------------------------------------------------------- GPT-2


_GPT2_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}


def gpt2_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    c = model.config
    what = "a GPT-2 (GPT2LMHeadModel) export"
    _check(c, what, positional="learned", norm="layernorm", ffn=tuple(_GPT2_ACTIVATION), bias=True,
           norm_first=True, scale_embedding=False, head_dim=None, num_kv_heads=(None, c.num_heads))
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
        "n_embd": c.d_model, "n_layer": c.num_layers, "n_head": c.num_heads, "n_inner": c.d_ff,
        "n_positions": c.max_len, "n_ctx": c.max_len, "activation_function": _GPT2_ACTIVATION[c.ffn],
        "layer_norm_epsilon": c.norm_eps, "resid_pdrop": c.dropout, "embd_pdrop": c.dropout,
        "attn_pdrop": c.attention_dropout, "tie_word_embeddings": bool(c.tie_embeddings),
        "scale_attn_weights": True, "bos_token_id": None, "eos_token_id": None, "torch_dtype": "float32",
        "dtype": "float32",
    }
    state = dict(unique_state_dict(model))
    for i in range(c.num_layers):  # q, k, v -> one c_attn
        prefix = f"stack.layers.{i}.self_attn."
        for p in ("weight", "bias"):
            state[f"{prefix}qkv.{p}"] = torch.cat([state.pop(f"{prefix}{x}_proj.{p}") for x in "qkv"])
    state = hf_maps.rename(state, hf_maps.GPT2_RULES, family="GPT-2", reverse=True)
    return config, {k: v.t().contiguous() if hf_maps._is_conv1d(k) else v for k, v in state.items()}


# ----------------------------------------------------------------------------- BERT


_BERT_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


def bert_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    c = model.config
    what = "a BERT (BertModel) export"
    _check(c, what, positional="learned", norm="layernorm", ffn=tuple(_BERT_ACTIVATION), bias=True, norm_first=False,
           embed_norm=True, head_dim=None, num_kv_heads=(None, c.num_heads))
    _need(c.num_token_types > 0, f"{what} needs segment embeddings (num_token_types >= 1); this model has none")
    _need(c.pooler, f"{what} needs BERT's pooler (pooler=True): BertModel always has one")
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": c.vocab_size, "hidden_size": c.d_model,
        "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads, "intermediate_size": c.d_ff,
        "hidden_act": _BERT_ACTIVATION[c.ffn], "max_position_embeddings": c.max_len,
        "type_vocab_size": c.num_token_types, "layer_norm_eps": c.norm_eps, "pad_token_id": c.pad_id,
        "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attention_dropout,
        "position_embedding_type": "absolute", "torch_dtype": "float32", "dtype": "float32",
    }
    return config, hf_maps.rename(unique_state_dict(model), hf_maps.BERT_RULES, family="BERT", reverse=True)


def _sentence_transformers_files(model: nn.Module) -> dict[str, str]:
    """The pooling (and normalisation) as sentence-transformers modules, so the folder embeds as ours does."""
    c = model.config
    if c.pooling == "pooler":
        return {}
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if c.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": c.d_model, "pooling_mode_cls_token": c.pooling == "cls",
               "pooling_mode_mean_tokens": c.pooling == "mean", "pooling_mode_max_tokens": c.pooling == "max",
               "pooling_mode_mean_sqrt_len_tokens": False}
    return {"modules.json": _json(modules), "1_Pooling/config.json": _json(pooling),
            "sentence_bert_config.json": _json({"max_seq_length": c.max_len, "do_lower_case": False})}


# ----------------------------------------------------------------------------- Whisper


def whisper_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    c = model.config
    what = "a Whisper (WhisperForConditionalGeneration) export"
    _check(c, what, positional="learned", norm="layernorm", ffn="gelu", bias=True, norm_first=True, head_dim=None,
           num_kv_heads=(None, c.num_heads))
    state = {}
    for name, tensor in unique_state_dict(model).items():
        if name.endswith("k_proj.bias"):  # Whisper's key projections have no bias: ours must be zero
            _need(not tensor.any(), f"{what} needs zero key-projection biases (Whisper has none); {name} is not")
            continue
        state[name] = tensor
    state = hf_maps.rename(state, hf_maps.WHISPER_RULES, family="Whisper", reverse=True)
    state = {k if k == "proj_out.weight" else f"model.{k}": v for k, v in state.items()}
    sot = c.start_ids[0]
    config = {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "vocab_size": c.vocab_size,
        "num_mel_bins": c.n_mels, "encoder_layers": c.num_encoder_layers, "decoder_layers": c.num_decoder_layers,
        "d_model": c.d_model, "encoder_attention_heads": c.num_heads, "decoder_attention_heads": c.num_heads,
        "encoder_ffn_dim": c.d_ff, "decoder_ffn_dim": c.d_ff, "max_source_positions": c.max_source_positions,
        "max_target_positions": c.max_len, "activation_function": "gelu", "scale_embedding": False,
        "tie_word_embeddings": bool(c.tie_embeddings), "pad_token_id": c.eot_id, "bos_token_id": c.eot_id,
        "eos_token_id": c.eot_id, "decoder_start_token_id": sot, "suppress_tokens": list(c.suppress_tokens),
        "begin_suppress_tokens": list(c.begin_suppress_tokens), "dropout": c.dropout,
        "attention_dropout": c.attention_dropout, "torch_dtype": "float32", "dtype": "float32",
    }
    return config, state


# ----------------------------------------------------------------------------- ViT


def vit_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    c = model.config
    what = "a ViT (ViTForImageClassification) export"
    _check(c, what, positional="learned", norm="layernorm", ffn="gelu", bias=True, norm_first=True, head_dim=None,
           num_kv_heads=(None, c.num_heads))
    state = dict(unique_state_dict(model))
    state["encoder.positional.weight"] = state["encoder.positional.weight"][:c.num_tokens][None]  # (1, T, D)
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].reshape(
        c.d_model, c.in_channels, c.patch_size, c.patch_size)  # (D, C, P, P)
    config = {
        "architectures": ["ViTForImageClassification"], "model_type": "vit", "image_size": c.image_size,
        "patch_size": c.patch_size, "num_channels": c.in_channels, "hidden_size": c.d_model,
        "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads, "intermediate_size": c.d_ff,
        "hidden_act": "gelu", "layer_norm_eps": c.norm_eps, "qkv_bias": True, "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout, "num_labels": c.num_classes,
        "id2label": {str(i): str(i) for i in range(c.num_classes)},
        "label2id": {str(i): i for i in range(c.num_classes)}, "torch_dtype": "float32", "dtype": "float32",
    }
    return config, hf_maps.rename(state, hf_maps.VIT_RULES, family="ViT", reverse=True)


def _image_processor(model: nn.Module) -> dict[str, str]:
    """Our ViT normalises raw 0..1 pixels itself; HF's image processor does it before the model."""
    c = model.config
    return {"preprocessor_config.json": _json({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": c.image_size,
        "width": c.image_size}, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [c.pixel_mean] * c.in_channels, "image_std": [c.pixel_std] * c.in_channels})}


# ----------------------------------------------------------------------------- Marian


def marian_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The paper's encoder-decoder as ``MarianMTModel``: post-LN, sinusoidal, one shared vocabulary.

    Our recipes' pre-LN models (``norm_first=True``) have no Hugging Face counterpart with the
    paper's sinusoid table (mBART and M2M100 are pre-LN but have learned positions or another
    sinusoid and count positions from 2), so they are refused.
    """
    from ..nn.positional import sinusoidal_table

    c = model.config
    what = "a Marian (MarianMTModel) export of the encoder-decoder"
    _check(c, what, norm_first=False, positional="sinusoidal", norm="layernorm", ffn=("relu", "gelu"), bias=True,
           tie_embeddings="all", head_dim=None, num_kv_heads=(None, c.num_heads))
    _need(c.norm_eps == 1e-5, f"{what} needs norm_eps=1e-05 (Marian's LayerNorm); this model has {c.norm_eps}")
    order = hf_maps.marian_width_order(c.d_model)
    state = {name: hf_maps.permute_width(name, tensor, order) for name, tensor in unique_state_dict(model).items()}
    state = hf_maps.rename(state, hf_maps.MARIAN_RULES, family="Marian", reverse=True)
    table = sinusoidal_table(c.max_len, c.d_model)[:, order]  # sines, then cosines
    state.update({"model.encoder.embed_positions.weight": table, "model.decoder.embed_positions.weight": table.clone(),
                  "final_logits_bias": torch.zeros(1, c.tgt_vocab_size)})
    config = {
        "architectures": ["MarianMTModel"], "model_type": "marian", "vocab_size": c.src_vocab_size,
        "decoder_vocab_size": c.tgt_vocab_size, "d_model": c.d_model, "encoder_layers": c.num_encoder_layers,
        "decoder_layers": c.num_decoder_layers, "encoder_attention_heads": c.num_heads,
        "decoder_attention_heads": c.num_heads, "encoder_ffn_dim": c.d_ff, "decoder_ffn_dim": c.d_ff,
        "activation_function": c.ffn, "max_position_embeddings": c.max_len, "scale_embedding": c.scale_embedding,
        "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True, "dropout": c.dropout,
        "attention_dropout": c.attention_dropout, "activation_dropout": c.activation_dropout,
        "pad_token_id": c.pad_id, "decoder_start_token_id": BOS_ID, "eos_token_id": EOS_ID, "bos_token_id": BOS_ID,
        "is_encoder_decoder": True, "torch_dtype": "float32", "dtype": "float32",
    }
    return config, state


# ----------------------------------------------------------------------------- the folder


def hf_family(model: nn.Module) -> str:
    """Which Hugging Face class an attentive model becomes; a one-line refusal when none fits."""
    kind = model.config.model_type
    if kind == "decoder-lm":
        if model.config.positional == "rope":
            return "llama"
        if model.config.positional == "learned":
            return "gpt2"
        raise ValueError(f"a DecoderLM with positional={model.config.positional!r} has no Hugging Face "
                         f"counterpart; exportable: rope (LLaMA) or learned (GPT-2)")
    families = {"encoder": "bert", "speech": "whisper", "vit": "vit", "encoder-decoder": "marian"}
    if kind not in families:
        raise ValueError(f"a {kind} model has no Hugging Face export; exportable: {HF_TARGETS}")
    return families[kind]


_WRITERS = {"llama": llama_hf, "gpt2": gpt2_hf, "bert": bert_hf, "whisper": whisper_hf, "vit": vit_hf,
            "marian": marian_hf}


def hf_files(model: nn.Module, tokenizer=None) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """(config.json, model.safetensors tensors, other text files by name) of the Hugging Face folder."""
    from ..lora import lora_config_of

    if lora_config_of(model) is not None:
        raise ValueError("this model carries an unmerged LoRA adapter: merge it (attentive merge), or export the "
                         "adapter itself with --to peft")
    family = hf_family(model)
    config, state = _WRITERS[family](model)
    extra: dict[str, str] = {}
    if family == "bert":
        extra.update(_sentence_transformers_files(model))
    if family == "vit":
        extra.update(_image_processor(model))
    if tokenizer is not None and getattr(tokenizer, "hf", None) is not None:
        extra.update(_tokenizer_files(tokenizer, config))
    if family in ("llama", "gpt2", "whisper", "marian"):
        extra["generation_config.json"] = _json(_generation_config(model, tokenizer, config))
    return config, state, extra


def export_hf(model: nn.Module, tokenizer, out: str | Path) -> Path:
    """Write the Hugging Face folder ``out`` (whole or not at all; an earlier one is replaced)."""
    config, state, extra = hf_files(model, tokenizer)
    with atomic_directory(out) as tmp:
        save_tensors(tmp / "model.safetensors", {k: v.contiguous() for k, v in state.items()},
                     metadata={"format": "pt"})
        atomic_write_text(tmp / "config.json", _json(config))
        for name, text in extra.items():
            atomic_write_text(tmp / name, text)
    return Path(out)


def _tokenizer_files(tokenizer, config: dict[str, Any]) -> dict[str, str]:
    """``tokenizer.json`` as it is, and a ``tokenizer_config.json`` that ``AutoTokenizer`` reads."""
    hf = tokenizer.hf
    names = {}
    for role, token_id in (("bos_token", getattr(tokenizer, "bos_id", None)),
                           ("eos_token", getattr(tokenizer, "eos_id", None)),
                           ("pad_token", getattr(tokenizer, "pad_id", None)),
                           ("unk_token", getattr(tokenizer, "unk_id", None))):
        if token_id is not None and hf.id_to_token(token_id) is not None:
            names[role] = hf.id_to_token(token_id)
    meta = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **names}
    if getattr(tokenizer, "chat_template", None):
        meta["chat_template"] = tokenizer.chat_template
    if config.get("max_position_embeddings"):
        meta["model_max_length"] = config["max_position_embeddings"]
    for role in ("bos_token_id", "eos_token_id", "pad_token_id"):
        token = names.get(role.removesuffix("_id"))
        if token is not None and config.get(role) is None:
            config[role] = hf.token_to_id(token)
    return {"tokenizer.json": hf.to_str(), "tokenizer_config.json": _json(meta)}


def _generation_config(model: nn.Module, tokenizer, config: dict[str, Any]) -> dict[str, Any]:
    c = model.config
    if c.model_type == "encoder-decoder":
        return {"decoder_start_token_id": BOS_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID,
                "pad_token_id": c.pad_id, "num_beams": 4, "max_length": c.max_len}
    if c.model_type == "speech":
        return {"decoder_start_token_id": c.start_ids[0], "eos_token_id": c.eot_id, "pad_token_id": c.eot_id,
                "bos_token_id": c.eot_id, "forced_decoder_ids": [[i, t] for i, t in enumerate(c.start_ids[1:], 1)],
                "suppress_tokens": list(c.suppress_tokens), "begin_suppress_tokens": list(c.begin_suppress_tokens),
                "max_length": c.max_len}
    eos = list(getattr(tokenizer, "eos_ids", None) or [])
    if not eos and config.get("eos_token_id") is not None:
        eos = [config["eos_token_id"]]
    out = {"bos_token_id": config.get("bos_token_id"), "pad_token_id": config.get("pad_token_id")}
    out["eos_token_id"] = eos[0] if len(eos) == 1 else (eos or None)
    return {k: v for k, v in out.items() if v is not None}


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

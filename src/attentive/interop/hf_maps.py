"""Hugging Face names and configs -> attentive's own model classes (BERT, LLaMA, GPT-2, Whisper, ViT).

Every reader in ``interop`` hands over weights under the names ``transformers`` uses
(``BertModel``, ``LlamaForCausalLM``, ``WhisperForConditionalGeneration``), so each family
needs one table here: a list of ``(HF name, attentive name)`` templates, read top to bottom
(and backwards by ``interop.hf_export``), and one function turning the HF config dict into the
family's typed config. Nothing here touches files.

Where each HF part lands (``{i}`` = layer index, ``L`` = ``stack.layers.{i}``)::

    BERT  attention.self.query/key/value  -> L.self_attn.q_proj/k_proj/v_proj
          attention.output.LayerNorm      -> L.self_attn_residual.norm   (post-LN)
          intermediate.dense, output.dense -> L.ffn.up, L.ffn.down
    LLaMA input_layernorm                 -> L.self_attn_residual.norm   (pre-LN)
          mlp.gate_proj/up_proj/down_proj -> L.ffn.gate/up/down          (SwiGLU)
    Whisper encoder_attn                  -> decoder.layers.{i}.cross_attn
          fc1, fc2                        -> ffn.up, ffn.down
    GPT-2 c_attn (q, k, v fused, Conv1D)  -> L.self_attn.q_proj/k_proj/v_proj (split, transposed)
    ViT   layernorm_before / _after       -> encoder.layers.{i}.self_attn_residual / ffn_residual.norm
    Marian (the paper's model)            -> EncoderDecoder, the model width reordered (sinusoid layout)
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..models.decoder_lm import DecoderLMConfig
from ..models.encoder_decoder import EncoderDecoderConfig
from ..models.encoder import EncoderConfig
from ..models.speech import SpeechConfig
from ..models.vit import ViTConfig
from ..nn.rope_scaling import ROPE_TYPES

# A rule is a pair of name templates, (Hugging Face name, attentive name), read top to bottom;
# ``{slot}`` stands for the same part on both sides (a layer index, "weight" or "bias", ...), so
# one table maps names both ways: HF -> attentive when reading, attentive -> HF when exporting.
SLOTS = {"i": r"\d+", "p": r"weight|bias", "x": r"q|k|v", "f": r"gate|up|down", "side": r"encoder|decoder",
         "n": r"1|2", "proj": r"q_proj|k_proj|v_proj|out_proj"}

BERT_RULES: list[tuple[str, str]] = [
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
BERT_IGNORED = (r"embeddings\.position_ids", r"cls\..*")  # a buffer; task heads (MLM/NSP) are not loaded

LLAMA_RULES: list[tuple[str, str]] = [
    ("model.embed_tokens.weight", "embed.weight"),
    ("model.layers.{i}.self_attn.{x}_proj.weight", "stack.layers.{i}.self_attn.{x}_proj.weight"),
    ("model.layers.{i}.self_attn.o_proj.weight", "stack.layers.{i}.self_attn.out_proj.weight"),
    ("model.layers.{i}.mlp.{f}_proj.weight", "stack.layers.{i}.ffn.{f}.weight"),
    ("model.layers.{i}.input_layernorm.weight", "stack.layers.{i}.self_attn_residual.norm.weight"),
    ("model.layers.{i}.post_attention_layernorm.weight", "stack.layers.{i}.ffn_residual.norm.weight"),
    ("model.norm.weight", "stack.final_norm.weight"),
    ("lm_head.weight", "head.weight"),
]
LLAMA_IGNORED = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq")

WHISPER_RULES: list[tuple[str, str]] = [  # names after dropping a leading "model."
    ("encoder.conv{n}.{p}", "conv{n}.{p}"),
    ("encoder.embed_positions.weight", "encoder.positional.weight"),
    ("decoder.embed_tokens.weight", "embed.weight"),
    ("decoder.embed_positions.weight", "decoder.positional.weight"),
    ("{side}.layer_norm.{p}", "{side}.final_norm.{p}"),
    ("{side}.layers.{i}.self_attn.{proj}.{p}", "{side}.layers.{i}.self_attn.{proj}.{p}"),
    ("{side}.layers.{i}.self_attn_layer_norm.{p}", "{side}.layers.{i}.self_attn_residual.norm.{p}"),
    ("decoder.layers.{i}.encoder_attn.{proj}.{p}", "decoder.layers.{i}.cross_attn.{proj}.{p}"),
    ("decoder.layers.{i}.encoder_attn_layer_norm.{p}", "decoder.layers.{i}.cross_attn_residual.norm.{p}"),
    ("{side}.layers.{i}.fc1.{p}", "{side}.layers.{i}.ffn.up.{p}"),
    ("{side}.layers.{i}.fc2.{p}", "{side}.layers.{i}.ffn.down.{p}"),
    ("{side}.layers.{i}.final_layer_norm.{p}", "{side}.layers.{i}.ffn_residual.norm.{p}"),
    ("proj_out.weight", "head.weight"),
]

# GPT-2 (``GPT2LMHeadModel``): Conv1D weights are stored (in, out), the transpose of a Linear's,
# and q, k, v are one fused ``c_attn``; ``gpt2_state`` / ``gpt2_to_hf`` do both around this table.
GPT2_RULES: list[tuple[str, str]] = [
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
GPT2_IGNORED = (r"transformer\.h\.\d+\.attn\.(masked_)?bias",)  # old causal-mask buffers

# ViT (``ViTForImageClassification``): pre-LN layers; the patch projection is a convolution
# (D, C, P, P) in HF and the same numbers as a Linear (D, C*P*P) here.
VIT_RULES: list[tuple[str, str]] = [
    ("vit.embeddings.cls_token", "cls_token"),
    ("vit.embeddings.position_embeddings", "encoder.positional.weight"),  # (1, T, D) <-> (max_len, D)
    ("vit.embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    ("vit.encoder.layer.{i}.attention.attention.query.{p}", "encoder.layers.{i}.self_attn.q_proj.{p}"),
    ("vit.encoder.layer.{i}.attention.attention.key.{p}", "encoder.layers.{i}.self_attn.k_proj.{p}"),
    ("vit.encoder.layer.{i}.attention.attention.value.{p}", "encoder.layers.{i}.self_attn.v_proj.{p}"),
    ("vit.encoder.layer.{i}.attention.output.dense.{p}", "encoder.layers.{i}.self_attn.out_proj.{p}"),
    ("vit.encoder.layer.{i}.layernorm_before.{p}", "encoder.layers.{i}.self_attn_residual.norm.{p}"),
    ("vit.encoder.layer.{i}.intermediate.dense.{p}", "encoder.layers.{i}.ffn.up.{p}"),
    ("vit.encoder.layer.{i}.output.dense.{p}", "encoder.layers.{i}.ffn.down.{p}"),
    ("vit.encoder.layer.{i}.layernorm_after.{p}", "encoder.layers.{i}.ffn_residual.norm.{p}"),
    ("vit.layernorm.{p}", "encoder.final_norm.{p}"),
    ("classifier.{p}", "head.{p}"),
]


def _pattern(template: str) -> re.Pattern:
    r"""``a.{i}.b`` -> ``a\.(?P<i>\d+)\.b``."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(part) if k % 2 == 0 else f"(?P<{part}>{SLOTS[part]})"
                              for k, part in enumerate(parts)))


def rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str]], ignored: tuple[str, ...] = (),
           family: str = "model", reverse: bool = False) -> dict[str, torch.Tensor]:
    """Apply the first matching rule to every name (``reverse``: attentive -> HF names); a name no
    rule knows is an error."""
    pairs = [(attentive, hf) if reverse else (hf, attentive) for hf, attentive in rules]
    compiled = [(_pattern(source), target) for source, target in pairs]
    skip = [re.compile(pattern) for pattern in ignored]
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if any(s.fullmatch(name) for s in skip):
            continue
        for pattern, target in compiled:
            match = pattern.fullmatch(name)
            if match:
                out[target.format(**match.groupdict())] = tensor
                break
        else:
            source, where = ("attentive", f"{family} names") if reverse else (family, "attentive's names")
            raise ValueError(f"{source} weight {name!r} has no mapping to {where}")
    return out


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _drop_tied_head(out: dict[str, torch.Tensor], tied: bool, head: str = "head.weight",
                    embed: str = "embed.weight") -> None:
    """A tied head is the embedding: drop its copy, after checking that it really is one."""
    if tied and head in out:
        if out[head] is not out[embed] and not torch.equal(out[head], out[embed]):
            raise ValueError("config says the output head is tied to the embedding, but the weights differ")
        del out[head]


# ----------------------------------------------------------------------------- BERT


_BERT_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def bert_config(hf: dict[str, Any], pooling: str = "mean", normalize: bool = False,
                pooler: bool = False) -> EncoderConfig:
    """``BertConfig`` fields -> ``EncoderConfig`` (post-LN, learned positions, segment embeddings)."""
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"BERT position_embedding_type {hf['position_embedding_type']!r} is not supported; "
                         f"supported: absolute")
    act = hf.get("hidden_act", "gelu")
    if act not in _BERT_ACTIVATIONS:
        raise ValueError(f"BERT hidden_act {act!r} is not supported; supported: {sorted(_BERT_ACTIVATIONS)}")
    return EncoderConfig(
        vocab_size=hf["vocab_size"], num_layers=hf["num_hidden_layers"], d_model=hf["hidden_size"],
        num_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"], ffn=_BERT_ACTIVATIONS[act],
        norm_eps=float(hf.get("layer_norm_eps", 1e-12)), max_len=hf.get("max_position_embeddings", 512),
        num_token_types=hf.get("type_vocab_size", 2), dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1), pad_id=hf.get("pad_token_id") or 0,
        pooling=pooling, normalize=normalize, pooler=pooler,
    )


def bert_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``BertModel`` (or ``bert.``-prefixed) weights -> ``Encoder`` names; old gamma/beta names too."""
    state = _strip_prefix(state, "bert.")
    state = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
             for k, v in state.items()}
    return rename(state, BERT_RULES, BERT_IGNORED, "BERT")


# ----------------------------------------------------------------------------- LLaMA


def llama_config(hf: dict[str, Any]) -> DecoderLMConfig:
    """``LlamaConfig`` fields -> ``DecoderLMConfig`` (RoPE, RMSNorm, SwiGLU, GQA, no biases)."""
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"LLaMA rope type {rope_type!r} is not supported; supported: {', '.join(ROPE_TYPES)}")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"LLaMA with partial_rotary_factor={rope['partial_rotary_factor']} is not supported; "
                         "supported: 1.0")
    # the scaling fields map over unchanged; rope_theta is rope_base here (transformers 5 keeps it inside)
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ValueError("LLaMA with attention_bias or mlp_bias is not supported; supported: no biases")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"LLaMA hidden_act {hf['hidden_act']!r} is not supported; supported: silu")
    d_model, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or d_model // heads
    return DecoderLMConfig(
        vocab_size=hf["vocab_size"], num_layers=hf["num_hidden_layers"], d_model=d_model, num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=None if head_dim * heads == d_model else head_dim,
        d_ff=hf["intermediate_size"], ffn="swiglu", norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        positional="rope", rope_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))), bias=False,
        rope_scaling=scaling if rope_type != "default" else None,
        dropout=0.0, attention_dropout=float(hf.get("attention_dropout", 0.0)),
        max_len=hf.get("max_position_embeddings", 2048), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        pad_id=hf.get("pad_token_id") or 0,
    )


def llama_state(state: dict[str, torch.Tensor], config: DecoderLMConfig) -> dict[str, torch.Tensor]:
    """``LlamaForCausalLM`` weights (q/k in HF's rotate-half order) -> ``DecoderLM`` names."""
    out = rename(state, LLAMA_RULES, LLAMA_IGNORED, "LLaMA")
    _drop_tied_head(out, config.tie_embeddings)
    return out


# ----------------------------------------------------------------------------- Whisper


def whisper_config(hf: dict[str, Any], special: dict[str, int], language: str | None = None) -> SpeechConfig:
    """``WhisperConfig`` fields + special token ids (from the tokenizer) -> ``SpeechConfig``.

    ``special`` maps ``<|endoftext|>``, ``<|startoftranscript|>``, ``<|notimestamps|>`` and, for
    multilingual models, ``<|transcribe|>`` and the language token to their ids.
    """
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(a) != hf.get(b):
            raise ValueError(f"Whisper with {a}={hf.get(a)} != {b}={hf.get(b)} is not supported; "
                             f"supported: one layer shape for both stacks")
    if hf.get("activation_function", "gelu") != "gelu":
        raise ValueError(f"Whisper activation {hf['activation_function']!r} is not supported; supported: gelu")
    if hf.get("scale_embedding"):
        raise ValueError("Whisper with scale_embedding=True is not supported; supported: unscaled embeddings")
    eot, sot, no_ts = special["<|endoftext|>"], special["<|startoftranscript|>"], special["<|notimestamps|>"]
    start = [sot, no_ts]
    if hf["vocab_size"] >= 51865:  # multilingual: <|sot|> <|lang|> <|transcribe|> <|notimestamps|>
        lang = f"<|{language or 'en'}|>"
        if lang not in special:
            raise ValueError(f"language token {lang} is not in this model's vocabulary")
        start = [sot, special[lang], special["<|transcribe|>"], no_ts]
    elif language not in (None, "en"):
        raise ValueError(f"this Whisper model is English-only; it cannot transcribe language {language!r}")
    return SpeechConfig(
        vocab_size=hf["vocab_size"], n_mels=hf.get("num_mel_bins", 80),
        num_encoder_layers=hf["encoder_layers"], num_decoder_layers=hf["decoder_layers"], d_model=hf["d_model"],
        num_heads=hf["encoder_attention_heads"], d_ff=hf["encoder_ffn_dim"],
        max_len=hf.get("max_target_positions", 448), max_source_positions=hf.get("max_source_positions", 1500),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)), eot_id=eot, start_ids=start,
        timestamp_begin=no_ts + 1, suppress_tokens=list(hf.get("suppress_tokens") or []),
        begin_suppress_tokens=list(hf.get("begin_suppress_tokens") or [220, eot]),
    )


def whisper_state(state: dict[str, torch.Tensor], config: SpeechConfig) -> dict[str, torch.Tensor]:
    """``WhisperForConditionalGeneration`` weights -> ``SpeechModel`` names.

    Whisper's key projections have no bias; attentive's attention has one ``bias`` flag for
    all four projections, so a zero key bias stands in (it changes no output: a constant
    added to every key shifts all scores of a query equally, and softmax ignores that).
    """
    out = rename(_strip_prefix(state, "model."), WHISPER_RULES, (), "Whisper")
    for name, weight in list(out.items()):
        if name.endswith("k_proj.weight") and name.replace("weight", "bias") not in out:
            out[name.replace("weight", "bias")] = torch.zeros(weight.shape[0], dtype=weight.dtype)
    _drop_tied_head(out, config.tie_embeddings)
    return out


# ----------------------------------------------------------------------------- GPT-2


_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def gpt2_config(hf: dict[str, Any]) -> DecoderLMConfig:
    """``GPT2Config`` fields -> ``DecoderLMConfig`` (learned positions, pre-LN, LayerNorm, biases, tied)."""
    act = hf.get("activation_function", "gelu_new")
    if act not in _GPT2_ACTIVATIONS:
        raise ValueError(f"GPT-2 activation_function {act!r} is not supported; supported: {sorted(_GPT2_ACTIVATIONS)}")
    for flag, default in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)):
        if hf.get(flag, default) != default:
            raise ValueError(f"GPT-2 with {flag}={hf[flag]} is not supported; supported: {flag}={default}")
    d_model = hf["n_embd"]
    return DecoderLMConfig(
        vocab_size=hf["vocab_size"], num_layers=hf["n_layer"], d_model=d_model, num_heads=hf["n_head"],
        d_ff=hf.get("n_inner") or 4 * d_model, ffn=_GPT2_ACTIVATIONS[act], norm="layernorm",
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)), norm_first=True, positional="learned", bias=True,
        dropout=float(hf.get("resid_pdrop", 0.1)), attention_dropout=float(hf.get("attn_pdrop", 0.1)),
        max_len=hf.get("n_positions", 1024), tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        pad_id=hf.get("pad_token_id") or 0,
    )


def _is_conv1d(name: str) -> bool:
    """GPT-2's Conv1D weights, stored (in, out): every 2-D layer weight."""
    return name.startswith("transformer.h.") and name.endswith(".weight") and ".ln_" not in name


def gpt2_state(state: dict[str, torch.Tensor], config: DecoderLMConfig) -> dict[str, torch.Tensor]:
    """``GPT2LMHeadModel`` weights -> ``DecoderLM`` names: Conv1D weights transposed, c_attn split."""
    state = {k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}": v for k, v in state.items()}
    state = {k: v.t() if _is_conv1d(k) else v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in rename(state, GPT2_RULES, GPT2_IGNORED, "GPT-2").items():
        if ".self_attn.qkv." in name:
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                out[name.replace("qkv", part)] = chunk.contiguous()
        else:
            out[name] = tensor
    _drop_tied_head(out, config.tie_embeddings)
    return out


# ----------------------------------------------------------------------------- ViT


def vit_config(hf: dict[str, Any], preprocessor: dict[str, Any] | None = None) -> ViTConfig:
    """``ViTConfig`` fields (+ the image processor's mean and std) -> attentive's ``ViTConfig``."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"ViT hidden_act {hf['hidden_act']!r} is not supported; supported: gelu")
    if not hf.get("qkv_bias", True):
        raise ValueError("ViT with qkv_bias=False is not supported; supported: biases on every projection")
    pre = preprocessor or {}
    stats = []
    for key, default in (("image_mean", 0.5), ("image_std", 0.5)):
        values = pre.get(key, [default])
        values = values if isinstance(values, list) else [values]
        if len(set(values)) != 1:
            raise ValueError(f"ViT {key} {values} differs per channel; supported: one value for every channel")
        stats.append(float(values[0]))
    labels = hf.get("id2label") or {}
    image, patch = hf.get("image_size", 224), hf.get("patch_size", 16)
    return ViTConfig(
        image_size=image, patch_size=patch, in_channels=hf.get("num_channels", 3),
        num_classes=hf.get("num_labels") or len(labels) or 2, num_layers=hf["num_hidden_layers"],
        d_model=hf["hidden_size"], num_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"],
        dropout=float(hf.get("hidden_dropout_prob", 0.0)),
        attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.0)), ffn="gelu", norm_first=True,
        norm_eps=float(hf.get("layer_norm_eps", 1e-12)), positional="learned", max_len=(image // patch) ** 2 + 1,
        pixel_mean=stats[0], pixel_std=stats[1],
    )


def vit_state(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """``ViTForImageClassification`` weights -> ``VisionTransformer`` names (patch convolution
    (D, C, P, P) -> Linear (D, C*P*P), position table (1, T, D) -> (T, D))."""
    out = rename(state, VIT_RULES, (), "ViT")
    out["patch_embed.proj.weight"] = out["patch_embed.proj.weight"].reshape(config.d_model, -1)
    out["encoder.positional.weight"] = out["encoder.positional.weight"][0]
    return out


# ----------------------------------------------------------------------------- Marian (the paper's encoder-decoder)

# MarianMTModel is the paper's model as Hugging Face has it: post-LN, sinusoidal positions, one
# vocabulary shared by both embeddings and the output layer, embeddings scaled by sqrt(d_model).
# Its sinusoid table keeps all sines, then all cosines, where the paper (and attentive) interleave
# them; the two agree after reordering the model width, so every weight that reads or writes the
# residual stream has that axis permuted (``marian_width_order``). LayerNorm and attention do not
# care about the order of the width, so the permuted model computes the same logits.
MARIAN_RULES: list[tuple[str, str]] = [
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
MARIAN_DERIVED = (r"model\.(encoder|decoder)\.embed_tokens\.weight", r"lm_head\.weight",
                  r"model\.(encoder|decoder)\.embed_positions\.weight", r"final_logits_bias")
_MARIAN_ACTIVATIONS = {"relu": "relu", "gelu": "gelu"}


def marian_width_order(d_model: int) -> torch.Tensor:
    """Marian's width index -> attentive's: sines (attentive's even columns), then cosines (odd)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def permute_width(name: str, tensor: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Reorder the model-width axis of one attentive tensor (``order`` from ``marian_width_order``,
    or its inverse to go back)."""
    if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "ffn.up.weight", "embed.weight")):
        return tensor[:, order]  # reads the stream
    if name.endswith(("out_proj.weight", "ffn.down.weight")):
        return tensor[order, :]  # writes the stream
    if name.endswith(("out_proj.bias", "ffn.down.bias", "norm.weight", "norm.bias")):
        return tensor[order]
    return tensor  # q/k/v and FFN-hidden biases live in the heads' and hidden widths


def marian_config(hf: dict[str, Any]) -> EncoderDecoderConfig:
    """``MarianConfig`` fields -> ``EncoderDecoderConfig`` (post-LN, sinusoidal, all embeddings tied)."""
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(a) != hf.get(b):
            raise ValueError(f"Marian with {a}={hf.get(a)} != {b}={hf.get(b)} is not supported; supported: one "
                             f"layer shape for both stacks")
    act = hf.get("activation_function", "swish")
    if act not in _MARIAN_ACTIVATIONS:
        raise ValueError(f"Marian activation_function {act!r} is not supported; supported: relu, gelu")
    vocab = hf["vocab_size"]
    if not hf.get("share_encoder_decoder_embeddings", True) or hf.get("decoder_vocab_size", vocab) != vocab:
        raise ValueError("Marian with separate encoder and decoder vocabularies is not supported; supported: one "
                         "shared vocabulary")
    return EncoderDecoderConfig(
        src_vocab_size=vocab, tgt_vocab_size=vocab, d_model=hf["d_model"], num_heads=hf["encoder_attention_heads"],
        d_ff=hf["encoder_ffn_dim"], num_encoder_layers=hf["encoder_layers"], num_decoder_layers=hf["decoder_layers"],
        ffn=_MARIAN_ACTIVATIONS[act], dropout=float(hf.get("dropout", 0.1)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        activation_dropout=float(hf.get("activation_dropout", 0.0)), norm_first=False, positional="sinusoidal",
        max_len=hf.get("max_position_embeddings", 512), bias=True, tie_embeddings="all",
        scale_embedding=bool(hf.get("scale_embedding", True)), pad_id=hf.get("pad_token_id") or 0,
    )


def marian_state(state: dict[str, torch.Tensor], config: EncoderDecoderConfig) -> dict[str, torch.Tensor]:
    """``MarianMTModel`` weights -> ``EncoderDecoder`` names, width reordered back to interleaved."""
    from ..nn.positional import sinusoidal_table

    order = marian_width_order(config.d_model)
    shared = state["model.shared.weight"]
    for name, tensor in state.items():
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            if not torch.equal(tensor, shared):
                raise ValueError(f"Marian {name} differs from model.shared.weight; supported: one tied embedding")
        elif name.endswith("embed_positions.weight"):
            table = sinusoidal_table(tensor.shape[0], config.d_model)[:, order]
            if (tensor - table).abs().max() > 1e-4:
                raise ValueError(f"Marian {name} is not the sinusoid table; supported: fixed sinusoidal positions")
        elif name == "final_logits_bias" and tensor.any():
            raise ValueError("Marian with a non-zero final_logits_bias is not supported; supported: no output bias")
    inverse = torch.argsort(order)
    renamed = rename(state, MARIAN_RULES, MARIAN_DERIVED, "Marian")
    return {name: permute_width(name, tensor, inverse) for name, tensor in renamed.items()}

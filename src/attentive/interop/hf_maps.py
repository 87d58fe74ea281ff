"""Hugging Face names and configs -> attentive's own model classes (BERT, LLaMA, Whisper).

Every reader in ``interop`` hands over weights under the names ``transformers`` uses
(``BertModel``, ``LlamaForCausalLM``, ``WhisperForConditionalGeneration``), so each family
needs one table here: a list of ``(HF name pattern, attentive name)`` rules, read top to
bottom, and one function turning the HF config dict into the family's typed config.
Nothing here touches files.

Where each HF part lands (``{i}`` = layer index, ``L`` = ``stack.layers.{i}``)::

    BERT  attention.self.query/key/value  -> L.self_attn.q_proj/k_proj/v_proj
          attention.output.LayerNorm      -> L.self_attn_residual.norm   (post-LN)
          intermediate.dense, output.dense -> L.ffn.up, L.ffn.down
    LLaMA input_layernorm                 -> L.self_attn_residual.norm   (pre-LN)
          mlp.gate_proj/up_proj/down_proj -> L.ffn.gate/up/down          (SwiGLU)
    Whisper encoder_attn                  -> decoder.layers.{i}.cross_attn
          fc1, fc2                        -> ffn.up, ffn.down
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..models.decoder_lm import DecoderLMConfig
from ..models.encoder import EncoderConfig
from ..models.speech import SpeechConfig
from ..nn.rope_scaling import ROPE_TYPES

_L = r"(\d+)"  # a layer index

BERT_RULES: list[tuple[str, str]] = [
    (r"embeddings\.word_embeddings\.weight", "embed.weight"),
    (r"embeddings\.position_embeddings\.weight", "positions.weight"),
    (r"embeddings\.token_type_embeddings\.weight", "token_type.weight"),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embed_norm.\1"),
    (rf"encoder\.layer\.{_L}\.attention\.self\.query\.(weight|bias)", r"stack.layers.\1.self_attn.q_proj.\2"),
    (rf"encoder\.layer\.{_L}\.attention\.self\.key\.(weight|bias)", r"stack.layers.\1.self_attn.k_proj.\2"),
    (rf"encoder\.layer\.{_L}\.attention\.self\.value\.(weight|bias)", r"stack.layers.\1.self_attn.v_proj.\2"),
    (rf"encoder\.layer\.{_L}\.attention\.output\.dense\.(weight|bias)", r"stack.layers.\1.self_attn.out_proj.\2"),
    (rf"encoder\.layer\.{_L}\.attention\.output\.LayerNorm\.(weight|bias)",
     r"stack.layers.\1.self_attn_residual.norm.\2"),
    (rf"encoder\.layer\.{_L}\.intermediate\.dense\.(weight|bias)", r"stack.layers.\1.ffn.up.\2"),
    (rf"encoder\.layer\.{_L}\.output\.dense\.(weight|bias)", r"stack.layers.\1.ffn.down.\2"),
    (rf"encoder\.layer\.{_L}\.output\.LayerNorm\.(weight|bias)", r"stack.layers.\1.ffn_residual.norm.\2"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.\1"),
]
BERT_IGNORED = (r"embeddings\.position_ids", r"cls\..*")  # a buffer; task heads (MLM/NSP) are not loaded

LLAMA_RULES: list[tuple[str, str]] = [
    (r"model\.embed_tokens\.weight", "embed.weight"),
    (rf"model\.layers\.{_L}\.self_attn\.(q|k|v)_proj\.weight", r"stack.layers.\1.self_attn.\2_proj.weight"),
    (rf"model\.layers\.{_L}\.self_attn\.o_proj\.weight", r"stack.layers.\1.self_attn.out_proj.weight"),
    (rf"model\.layers\.{_L}\.mlp\.(gate|up|down)_proj\.weight", r"stack.layers.\1.ffn.\2.weight"),
    (rf"model\.layers\.{_L}\.input_layernorm\.weight", r"stack.layers.\1.self_attn_residual.norm.weight"),
    (rf"model\.layers\.{_L}\.post_attention_layernorm\.weight", r"stack.layers.\1.ffn_residual.norm.weight"),
    (r"model\.norm\.weight", "stack.final_norm.weight"),
    (r"lm_head\.weight", "head.weight"),
]
LLAMA_IGNORED = (rf"model\.layers\.{_L}\.self_attn\.rotary_emb\.inv_freq", r"model\.rotary_emb\.inv_freq")

_SIDE = r"(encoder|decoder)"
WHISPER_RULES: list[tuple[str, str]] = [  # names after dropping a leading "model."
    (r"encoder\.conv(1|2)\.(weight|bias)", r"conv\1.\2"),
    (r"encoder\.embed_positions\.weight", "encoder.positional.weight"),
    (r"decoder\.embed_tokens\.weight", "embed.weight"),
    (r"decoder\.embed_positions\.weight", "decoder.positional.weight"),
    (rf"{_SIDE}\.layer_norm\.(weight|bias)", r"\1.final_norm.\2"),
    (rf"{_SIDE}\.layers\.{_L}\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)",
     r"\1.layers.\2.self_attn.\3.\4"),
    (rf"{_SIDE}\.layers\.{_L}\.self_attn_layer_norm\.(weight|bias)", r"\1.layers.\2.self_attn_residual.norm.\3"),
    (rf"decoder\.layers\.{_L}\.encoder_attn\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)",
     r"decoder.layers.\1.cross_attn.\2.\3"),
    (rf"decoder\.layers\.{_L}\.encoder_attn_layer_norm\.(weight|bias)",
     r"decoder.layers.\1.cross_attn_residual.norm.\2"),
    (rf"{_SIDE}\.layers\.{_L}\.fc1\.(weight|bias)", r"\1.layers.\2.ffn.up.\3"),
    (rf"{_SIDE}\.layers\.{_L}\.fc2\.(weight|bias)", r"\1.layers.\2.ffn.down.\3"),
    (rf"{_SIDE}\.layers\.{_L}\.final_layer_norm\.(weight|bias)", r"\1.layers.\2.ffn_residual.norm.\3"),
    (r"proj_out\.weight", "head.weight"),
]


def rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str]], ignored: tuple[str, ...] = (),
           family: str = "model") -> dict[str, torch.Tensor]:
    """Apply the first matching rule to every name; a name no rule knows is an error."""
    compiled = [(re.compile(pattern), target) for pattern, target in rules]
    skip = [re.compile(pattern) for pattern in ignored]
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if any(s.fullmatch(name) for s in skip):
            continue
        for pattern, target in compiled:
            match = pattern.fullmatch(name)
            if match:
                out[match.expand(target)] = tensor
                break
        else:
            raise ValueError(f"{family} weight {name!r} has no mapping to attentive's names")
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

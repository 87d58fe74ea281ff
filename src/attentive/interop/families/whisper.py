"""Whisper (``WhisperForConditionalGeneration``) <-> attentive's ``SpeechModel``, from a Hugging Face
folder or a CTranslate2 one.

Where the HF parts land (names after dropping a leading ``model.``)::

    encoder_attn  -> decoder.layers.{i}.cross_attn
    fc1, fc2      -> ffn.up, ffn.down

The decoder's prompt (start of transcript, language, task, no timestamps) is token ids, so the
config is made from the HF config *and* the tokenizer's special tokens; a folder's tokenizer
without BOS / EOS gets Whisper's own (``load_tokenizer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...checkpoint import unique_state_dict
from ...models.speech import SpeechConfig
from ...text.pretrained import PretrainedTokenizer
from ..hf_maps import check, drop_tied_head, need, rename, strip_prefix
from ..loading import HFFolder, build

NAME = "Whisper"
EXPORTS = ("speech", None)

RULES: list[tuple[str, str]] = [  # names after dropping a leading "model."
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


# ----------------------------------------------------------------------------- read


def read_config(hf: dict[str, Any], special: dict[str, int], language: str | None = None) -> SpeechConfig:
    """``WhisperConfig`` fields + special token ids (from the tokenizer) -> ``SpeechConfig``.

    ``special`` maps ``<|endoftext|>``, ``<|startoftranscript|>``, ``<|notimestamps|>`` and, for
    multilingual models, ``<|transcribe|>`` and the language token to their ids.
    """
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf.get(a) != hf.get(b):
            raise ValueError(
                f"Whisper with {a}={hf.get(a)} != {b}={hf.get(b)} is not supported; "
                f"supported: one layer shape for both stacks"
            )
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
        vocab_size=hf["vocab_size"],
        n_mels=hf.get("num_mel_bins", 80),
        num_encoder_layers=hf["encoder_layers"],
        num_decoder_layers=hf["decoder_layers"],
        d_model=hf["d_model"],
        num_heads=hf["encoder_attention_heads"],
        d_ff=hf["encoder_ffn_dim"],
        max_len=hf.get("max_target_positions", 448),
        max_source_positions=hf.get("max_source_positions", 1500),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        eot_id=eot,
        start_ids=start,
        timestamp_begin=no_ts + 1,
        suppress_tokens=list(hf.get("suppress_tokens") or []),
        begin_suppress_tokens=list(hf.get("begin_suppress_tokens") or [220, eot]),
    )


def read_state(state: dict[str, torch.Tensor], config: SpeechConfig) -> dict[str, torch.Tensor]:
    """``WhisperForConditionalGeneration`` weights -> ``SpeechModel`` names.

    Whisper's key projections have no bias; attentive's attention has one ``bias`` flag for
    all four projections, so a zero key bias stands in (it changes no output: a constant
    added to every key shifts all scores of a query equally, and softmax ignores that).
    """
    out = rename(strip_prefix(state, "model."), RULES, (), NAME)
    for name, weight in list(out.items()):
        if name.endswith("k_proj.weight") and name.replace("weight", "bias") not in out:
            out[name.replace("weight", "bias")] = torch.zeros(weight.shape[0], dtype=weight.dtype)  # (D,)
    drop_tied_head(out, config.tie_embeddings)
    return out


def load_tokenizer(folder: Path) -> PretrainedTokenizer:
    """The folder's tokenizer, with Whisper's start-of-transcript and end-of-text where it names none."""
    tokenizer = PretrainedTokenizer.load(folder)
    tokenizer.bos_token = tokenizer.bos_token or "<|startoftranscript|>"
    tokenizer.eos_tokens = tokenizer.eos_tokens or ["<|endoftext|>"]
    return tokenizer


def load(folder: HFFolder, language: str | None, overrides: dict[str, Any]) -> tuple[nn.Module, PretrainedTokenizer]:
    """A ``SpeechModel`` transcribing ``language`` (multilingual models; default en) and its tokenizer;
    the suppressed tokens come from ``generation_config.json`` where ``config.json`` has none."""
    hf = folder.config
    for key in ("suppress_tokens", "begin_suppress_tokens"):
        hf.setdefault(key, folder.generation.get(key))
    tokenizer = load_tokenizer(folder.path)
    config = read_config(hf, tokenizer.special_tokens(), language)
    model = build(config, read_state(folder.state, config), str(folder.path), overrides)
    return model, tokenizer


def from_ct2(folder: Path, language: str | None, overrides: dict[str, Any]) -> tuple[nn.Module, PretrainedTokenizer]:
    """A ``SpeechModel`` and its tokenizer from a CTranslate2 Whisper folder (``model.bin`` + ``tokenizer.json``)."""
    from ..ctranslate2 import read_ct2_folder, whisper_ct2_to_hf

    hf_config, state = whisper_ct2_to_hf(read_ct2_folder(folder))
    if not (folder / "tokenizer.json").is_file():
        raise ValueError(f"{folder} has no tokenizer.json; a CTranslate2 Whisper folder needs it to read text")
    tokenizer = load_tokenizer(folder)
    config = read_config(hf_config, tokenizer.special_tokens(), language)
    model = build(config, read_state(state, config), str(folder / "model.bin"), overrides)
    return model, tokenizer


# ----------------------------------------------------------------------------- export


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``WhisperConfig`` fields, ``WhisperForConditionalGeneration``-named tensors; zero key biases dropped)."""
    c = model.config
    what = "a Whisper (WhisperForConditionalGeneration) export"
    check(
        c,
        what,
        positional="learned",
        norm="layernorm",
        ffn="gelu",
        bias=True,
        norm_first=True,
        head_dim=None,
        num_kv_heads=(None, c.num_heads),
    )
    state = {}
    for name, tensor in unique_state_dict(model).items():
        if name.endswith("k_proj.bias"):  # Whisper's key projections have no bias: ours must be zero
            need(not tensor.any(), f"{what} needs zero key-projection biases (Whisper has none); {name} is not")
            continue
        state[name] = tensor
    state = rename(state, RULES, family=NAME, reverse=True)
    state = {k if k == "proj_out.weight" else f"model.{k}": v for k, v in state.items()}
    sot = c.start_ids[0]
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": c.vocab_size,
        "num_mel_bins": c.n_mels,
        "encoder_layers": c.num_encoder_layers,
        "decoder_layers": c.num_decoder_layers,
        "d_model": c.d_model,
        "encoder_attention_heads": c.num_heads,
        "decoder_attention_heads": c.num_heads,
        "encoder_ffn_dim": c.d_ff,
        "decoder_ffn_dim": c.d_ff,
        "max_source_positions": c.max_source_positions,
        "max_target_positions": c.max_len,
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": bool(c.tie_embeddings),
        "pad_token_id": c.eot_id,
        "bos_token_id": c.eot_id,
        "eos_token_id": c.eot_id,
        "decoder_start_token_id": sot,
        "suppress_tokens": list(c.suppress_tokens),
        "begin_suppress_tokens": list(c.begin_suppress_tokens),
        "dropout": c.dropout,
        "attention_dropout": c.attention_dropout,
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    return config, state


def hf_generation_config(model: nn.Module, tokenizer, config: dict[str, Any]) -> dict[str, Any]:
    """``generation_config.json``: the decoder prompt as forced ids, the suppressed tokens."""
    c = model.config
    return {
        "decoder_start_token_id": c.start_ids[0],
        "eos_token_id": c.eot_id,
        "pad_token_id": c.eot_id,
        "bos_token_id": c.eot_id,
        "forced_decoder_ids": [[i, t] for i, t in enumerate(c.start_ids[1:], 1)],
        "suppress_tokens": list(c.suppress_tokens),
        "begin_suppress_tokens": list(c.begin_suppress_tokens),
        "max_length": c.max_len,
    }

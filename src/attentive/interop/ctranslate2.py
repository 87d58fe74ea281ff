"""Read CTranslate2's ``model.bin`` and map a Whisper model to Hugging Face names.

The binary format (little-endian), as written by CTranslate2's ``ModelSpec.save``:

- ``u32`` binary version (6 for current converters; 4-6 read here),
- spec name (``u16`` byte length incl. trailing NUL, then UTF-8 bytes), ``u32`` spec revision,
- ``u32`` variable count, then per variable: name (string as above), ``u8`` rank,
  ``rank x u32`` shape, ``u8`` dtype id (0 float32, 1 int8, 2 int16, 3 int32, 4 float16,
  5 bfloat16), ``u32`` byte count, raw row-major data,
- ``u32`` alias count, then per alias: alias name, target variable name (both strings).

Scalars (rank 0) carry flags such as ``decoder/activation`` or ``encoder/num_heads``. Weights
are kept in their stored dtype (float16 stays float16); callers convert when they load.

``whisper_ct2_to_hf`` produces ``transformers.WhisperForConditionalGeneration`` names:
``model.encoder.conv1.weight``, ``model.encoder.embed_positions.weight``,
``model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.*``, ``...self_attn_layer_norm.*``,
``...fc1.*``, ``...fc2.*``, ``...final_layer_norm.*``, ``model.encoder.layer_norm.*``, the
decoder likewise plus ``encoder_attn.*`` / ``encoder_attn_layer_norm.*``,
``model.decoder.embed_tokens.weight`` and ``proj_out.weight`` (the same tensor object as the
embedding: Whisper ties them). CTranslate2 fuses self-attention Q,K,V and cross-attention
K,V into one matrix; they are split here, and the key bias (absent in Whisper, stored as
zeros by CTranslate2) is dropped.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..text.files import read_json, read_json_object

__all__ = ["SUPPORTED_VERSIONS", "CT2Model", "read_ct2_model", "read_ct2_folder", "whisper_ct2_to_hf"]

SUPPORTED_VERSIONS = (4, 5, 6)
_DTYPES = {
    0: (np.float32, torch.float32),
    1: (np.int8, torch.int8),
    2: (np.int16, torch.int16),
    3: (np.int32, torch.int32),
    4: (np.float16, torch.float16),
    5: (np.uint16, torch.bfloat16),
}
_DTYPE_NAMES = "0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16"
# CTranslate2 ActivationType ids -> transformers activation names.
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 2: "silu", 3: "gelu"}


@dataclass
class CT2Model:
    """Parsed model.bin: named tensors (aliases resolved to the same tensor) plus folder files."""

    spec: str
    spec_revision: int
    binary_version: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    vocabulary: list[str] = field(default_factory=list)
    tokenizer_json: Path | None = None
    path: Path | None = None  # the model.bin it was read from (named by mapping errors)


class _Cursor:
    """Bounds-checked reads over the file bytes; running out is a one-line ValueError."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = memoryview(data), path, 0

    def take(self, n: int, what: str) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise ValueError(
                f"{self.path} is truncated or corrupt: reading {what} needs "
                f"bytes {self.pos}..{end}, file has {len(self.data)}"
            )
        out, self.pos = self.data[self.pos : end], end
        return out

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        raw = bytes(self.take(self.unpack("<H", f"length of {what}"), what))
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{self.path} is corrupt: {what} at byte {self.pos} is not UTF-8") from None


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse one ``model.bin``; tensors keep their stored dtype."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CTranslate2 model file not found: {path}")
    cur = _Cursor(path.read_bytes(), path)
    version = cur.unpack("<I", "binary version")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(
            f"{path} has CTranslate2 binary version {version}; supported: {', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    spec = cur.string("spec name")
    revision = cur.unpack("<I", "spec revision")
    variables: dict[str, torch.Tensor] = {}
    for index in range(cur.unpack("<I", "variable count")):
        name = cur.string(f"name of variable {index}")
        rank = cur.unpack("<B", f"rank of {name!r}")
        shape = tuple(cur.unpack("<I", f"shape of {name!r}") for _ in range(rank))
        dtype_id = cur.unpack("<B", f"dtype of {name!r}")
        if dtype_id not in _DTYPES:
            raise ValueError(f"{path}: variable {name!r} has dtype id {dtype_id}; supported: {_DTYPE_NAMES}")
        np_dtype, torch_dtype = _DTYPES[dtype_id]
        nbytes = cur.unpack("<I", f"byte count of {name!r}")
        if math.prod(d or 1 for d in shape) >= 2**62:  # torch's strides overflow, even with a zero dim
            raise ValueError(f"{path} is corrupt: {name!r} has shape {shape}, too large for any tensor")
        expected = math.prod(shape) * np.dtype(np_dtype).itemsize
        if nbytes != expected:
            raise ValueError(
                f"{path} is corrupt: {name!r} of shape {shape} needs {expected} bytes, header says {nbytes}"
            )
        raw = np.frombuffer(cur.take(nbytes, f"data of {name!r}"), dtype=np_dtype).copy()
        tensor = torch.from_numpy(raw)
        if torch_dtype == torch.bfloat16:
            tensor = tensor.view(torch.bfloat16)
        variables[name] = tensor.reshape(shape)
    aliases: dict[str, str] = {}
    if cur.pos < len(cur.data):
        for index in range(cur.unpack("<I", "alias count")):
            alias = cur.string(f"alias {index}")
            aliases[alias] = cur.string(f"target of alias {alias!r}")
    if cur.pos != len(cur.data):
        raise ValueError(f"{path} is corrupt: {len(cur.data) - cur.pos} unexpected bytes after the last alias")
    for alias, target in aliases.items():
        if target not in variables:
            raise ValueError(f"{path} is corrupt: alias {alias!r} points to missing {target!r}")
        variables[alias] = variables[target]
    return CT2Model(
        spec=spec, spec_revision=revision, binary_version=version, variables=variables, aliases=aliases, path=path
    )


def read_ct2_folder(folder: str | Path) -> CT2Model:
    """``model.bin`` plus ``config.json`` and the vocabulary file from a converted folder."""
    folder = Path(folder)
    model = read_ct2_model(folder / "model.bin")
    if (folder / "config.json").is_file():
        model.config = read_json_object(folder / "config.json")
    for name in ("vocabulary.txt", "vocabulary.json"):
        vocab = folder / name
        if vocab.is_file():
            model.vocabulary = read_json(vocab) if name.endswith(".json") else _read_lines(vocab)
            break
    if (folder / "tokenizer.json").is_file():
        model.tokenizer_json = folder / "tokenizer.json"
    return model


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start})") from None


def _scalar(v: dict[str, torch.Tensor], name: str, default: int | None = None) -> int:
    if name not in v:
        if default is None:
            raise ValueError(f"CTranslate2 Whisper model lacks {name!r}")
        return default
    if v[name].numel() != 1 or v[name].is_floating_point():
        raise ValueError(f"CTranslate2 flag {name!r} should be one integer, got shape {tuple(v[name].shape)}")
    return int(v[name].item())


def _split_fused(
    prefix: str, weight: torch.Tensor, bias: torch.Tensor, names: list[str], out: dict[str, torch.Tensor]
) -> None:
    """Split a fused projection into equal row blocks; the key block loses its (zero) bias."""
    for part, w, b in zip(names, weight.chunk(len(names)), bias.chunk(len(names))):
        out[f"{prefix}.{part}.weight"] = w.clone()
        if part == "k_proj":
            if b.float().abs().max().item() != 0.0:
                raise ValueError(
                    f"{prefix}.k_proj has a non-zero bias in the CTranslate2 file; Whisper's key projection has no bias"
                )
        else:
            out[f"{prefix}.{part}.bias"] = b.clone()


def _copy(v: dict[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    if src not in v:
        raise ValueError(f"CTranslate2 Whisper model lacks {src!r}")
    out[dst] = v[src]


def whisper_ct2_to_hf(model: CT2Model | dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``WhisperConfig`` kwargs, ``WhisperForConditionalGeneration`` state dict); a file whose
    variables do not make a Whisper model is a one-line ValueError naming it."""
    path = model.path if isinstance(model, CT2Model) else None
    try:
        return _whisper_ct2_to_hf(model)
    except ValueError as err:
        if path is None or str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from None
    except (KeyError, IndexError, TypeError, RuntimeError) as err:  # variables of the wrong shape or kind
        where = f"{path}: " if path is not None else ""
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{where}the variables do not make a Whisper model ({type(err).__name__}: {first})") from None


def _whisper_ct2_to_hf(model: CT2Model | dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    v = model.variables if isinstance(model, CT2Model) else model
    extra = model.config if isinstance(model, CT2Model) else {}
    if isinstance(model, CT2Model) and model.spec != "WhisperSpec":
        raise ValueError(f"CTranslate2 spec {model.spec!r} is not supported; supported: WhisperSpec")
    act_id = _scalar(v, "decoder/activation", 3)
    if act_id not in _ACTIVATIONS:
        raise ValueError(
            f"CTranslate2 activation id {act_id} is not supported; supported: "
            + ", ".join(f"{k} {n}" for k, n in _ACTIVATIONS.items())
        )
    if (
        not _scalar(v, "decoder/pre_norm", 1)
        or _scalar(v, "decoder/scale_embeddings", 0)
        or _scalar(v, "decoder/alibi", 0)
    ):
        raise ValueError(
            "CTranslate2 decoder flags (pre_norm, scale_embeddings, alibi) do "
            "not match Whisper; supported: pre-norm, unscaled, no ALiBi"
        )

    def count(side: str) -> int:
        return len({k.split("/")[1] for k in v if re.match(rf"{side}/layer_\d+/", k)})

    out: dict[str, torch.Tensor] = {}
    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        for i in range(count(side)):
            src, dst = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            sa = f"{src}/self_attention"
            _split_fused(
                f"{dst}.self_attn",
                v[f"{sa}/linear_0/weight"],
                v[f"{sa}/linear_0/bias"],
                ["q_proj", "k_proj", "v_proj"],
                out,
            )
            for p in ("weight", "bias"):
                _copy(v, f"{sa}/linear_1/{p}", f"{dst}.self_attn.out_proj.{p}", out)
            _copy(v, f"{sa}/layer_norm/gamma", f"{dst}.self_attn_layer_norm.weight", out)
            _copy(v, f"{sa}/layer_norm/beta", f"{dst}.self_attn_layer_norm.bias", out)
            if side == "decoder":
                ca = f"{src}/attention"
                for p in ("weight", "bias"):
                    _copy(v, f"{ca}/linear_0/{p}", f"{dst}.encoder_attn.q_proj.{p}", out)
                    _copy(v, f"{ca}/linear_2/{p}", f"{dst}.encoder_attn.out_proj.{p}", out)
                _split_fused(
                    f"{dst}.encoder_attn",
                    v[f"{ca}/linear_1/weight"],
                    v[f"{ca}/linear_1/bias"],
                    ["k_proj", "v_proj"],
                    out,
                )
                _copy(v, f"{ca}/layer_norm/gamma", f"{dst}.encoder_attn_layer_norm.weight", out)
                _copy(v, f"{ca}/layer_norm/beta", f"{dst}.encoder_attn_layer_norm.bias", out)
            ffn = f"{src}/ffn"
            for p in ("weight", "bias"):
                _copy(v, f"{ffn}/linear_0/{p}", f"{dst}.fc1.{p}", out)
                _copy(v, f"{ffn}/linear_1/{p}", f"{dst}.fc2.{p}", out)
            _copy(v, f"{ffn}/layer_norm/gamma", f"{dst}.final_layer_norm.weight", out)
            _copy(v, f"{ffn}/layer_norm/beta", f"{dst}.final_layer_norm.bias", out)
        _copy(v, f"{side}/layer_norm/gamma", f"{hf}.layer_norm.weight", out)
        _copy(v, f"{side}/layer_norm/beta", f"{hf}.layer_norm.bias", out)
        _copy(v, f"{side}/position_encodings/encodings", f"{hf}.embed_positions.weight", out)
    for conv in ("conv1", "conv2"):
        for p in ("weight", "bias"):
            _copy(v, f"encoder/{conv}/{p}", f"model.encoder.{conv}.{p}", out)
    _copy(v, "decoder/embeddings/weight", "model.decoder.embed_tokens.weight", out)
    projection = v.get("decoder/projection/weight", v["decoder/embeddings/weight"])
    tied = projection is v["decoder/embeddings/weight"] or torch.equal(projection, v["decoder/embeddings/weight"])
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"] if tied else projection

    vocab, d_model = out["model.decoder.embed_tokens.weight"].shape
    ffn_dim = out["model.encoder.layers.0.fc1.weight"].shape[0]
    config = {
        "vocab_size": int(vocab),
        "d_model": int(d_model),
        "num_mel_bins": int(out["model.encoder.conv1.weight"].shape[1]),
        "encoder_layers": count("encoder"),
        "decoder_layers": count("decoder"),
        "encoder_attention_heads": _scalar(v, "encoder/num_heads"),
        "decoder_attention_heads": _scalar(v, "decoder/num_heads"),
        "encoder_ffn_dim": int(ffn_dim),
        "decoder_ffn_dim": int(out["model.decoder.layers.0.fc1.weight"].shape[0]),
        "max_source_positions": int(out["model.encoder.embed_positions.weight"].shape[0]),
        "max_target_positions": int(out["model.decoder.embed_positions.weight"].shape[0]),
        "activation_function": _ACTIVATIONS[act_id],
        "scale_embedding": False,
        "tie_word_embeddings": bool(tied),
        # Whisper's special ids: <|endoftext|> 50256, <|startoftranscript|> 50257.
        "pad_token_id": 50256,
        "bos_token_id": 50257,
        "eos_token_id": 50256,
        "decoder_start_token_id": 50257,
        "suppress_tokens": list(extra.get("suppress_ids", [])),
        "begin_suppress_tokens": list(extra.get("suppress_ids_begin", [220, 50256])),
    }
    return config, out

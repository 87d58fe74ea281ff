"""Read a LLaMA-family GGUF file into Hugging Face names, float32 weights and a tokenizer.

GGUF (llama.cpp's format) keeps weights, quantised in blocks, plus all metadata (shape of
the model, tokenizer vocabulary, merges, chat template) in one file. This module turns it
into what the rest of attentive and ``transformers.LlamaForCausalLM`` expect (the tensor names
by ``interop.families.llama``'s GGUF table, which the exporter reads backwards):

- ``state_dict``: ``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.q_proj.weight``,
  ``...k_proj``, ``...v_proj``, ``...o_proj``, ``model.layers.{i}.mlp.gate_proj/up_proj/
  down_proj.weight``, ``model.layers.{i}.input_layernorm.weight``,
  ``model.layers.{i}.post_attention_layernorm.weight``, ``model.norm.weight`` and
  ``lm_head.weight``. When the file has no separate ``output.weight``,
  ``config.tie_word_embeddings`` is True and ``lm_head.weight`` is the very same tensor
  object as ``model.embed_tokens.weight`` (so a strict ``load_state_dict`` works; dedupe
  before saving with safetensors). All float32, Linear weights ``(out, in)``.
- q/k rows are put back in Hugging Face's rotary order: llama.cpp's converter interleaves
  the two halves of each head (it rotates adjacent pairs, HF rotates halves), we undo it.

With ``keep_blocks=True`` the quantised tensors are also kept as they are in the file
(``GGUFLlama.blocks``, HF names -> ``attentive.nn.quant.QuantizedWeight``): Q8_0 as int8 values
with a scale per block of 32, Q4_0 and Q4_1 as 4-bit values 0..15 with a scale and a minimum
per block (Q4_0's ``d * (q - 8)`` is ``d * q - 8 d``), so a model quantised on load
(``from_pretrained(..., quantize=)``) computes with the file's own numbers, never requantised.

Only the ``gguf`` package is used to parse the file; nothing in it is executed.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..nn.quant import QuantizedWeight
from .families.llama import GGUF_LAYER_NAMES, GGUF_TOP_NAMES

__all__ = [
    "SUPPORTED_TYPES",
    "LlamaGGUFConfig",
    "GGUFLlama",
    "read_metadata",
    "llama_config",
    "dequantize_tensor",
    "read_tensors",
    "to_hf_llama",
    "unpermute_rotary",
    "build_tokenizer",
    "load_gguf_llama",
    "BLOCK_TYPES",
    "read_blocks",
    "blocks_to_hf",
]

# Tensor types we dequantise (all handled by gguf.quants.dequantize, checked against numpy).
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
# Block types kept as they are with keep_blocks=True (the others are dequantised, then quantised).
BLOCK_TYPES = ("Q8_0", "Q4_0", "Q4_1")


@dataclass
class LlamaGGUFConfig:
    """Shape of a LLaMA-family model as stored in GGUF metadata (``llama.*`` keys)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    ffn_size: int
    rope_theta: float
    rms_norm_eps: float
    vocab_size: int
    context_length: int
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_id: int | None
    head_dim: int

    def to_hf(self) -> dict[str, Any]:
        """Keyword arguments for ``transformers.LlamaConfig``."""
        return {
            "num_hidden_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "intermediate_size": self.ffn_size,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.context_length,
            "head_dim": self.head_dim,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GGUFLlama:
    """Everything read from one file: config, HF-named float32 weights, tokenizer."""

    config: LlamaGGUFConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    chat_template: str | None
    metadata: dict[str, Any]
    blocks: dict[str, QuantizedWeight] | None = None  # HF names -> the file's quantised blocks


# GGUF value types (gguf.GGUFValueType) -> struct format of a scalar; 8 is a string, 9 an array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_MAX_DIMS = 4  # GGML_MAX_DIMS


def check_header(path: Path) -> None:
    """Walk a GGUF header checking every count, length and tensor extent against the file's size,
    before the ``gguf`` package reads it: that package trusts them (an array length of 2**63 past
    the end of the file loops for minutes, growing its lists, then fails with a SystemError).
    A bad number is a one-line ValueError naming the file, the field and its byte offset."""
    import mmap

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    size = path.stat().st_size
    if size < 24:
        raise ValueError(f"{path} is not a readable GGUF file: {size} bytes, shorter than a GGUF header")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        order = "<" if struct.unpack_from("<I", data, 4)[0] & 0xFFFF else ">"  # as gguf reads big-endian files
        version = struct.unpack_from(order + "I", data, 4)[0]
        if version not in (2, 3):
            return  # the gguf package refuses it with its own message
        pos = 8

        def fail(what: str, at: int) -> None:
            raise ValueError(f"{path} is not a readable GGUF file ({what} at byte {at}; the file has {size} bytes)")

        def number(fmt: str, what: str) -> int:
            nonlocal pos
            n = struct.calcsize(fmt)
            if pos + n > size:
                fail(f"{what} runs past the end", pos)
            (value,) = struct.unpack_from(order + fmt, data, pos)
            pos += n
            return value

        def skip(n: int, what: str) -> None:
            nonlocal pos
            if n > size - pos:
                fail(f"{what} of {n} bytes runs past the end", pos)
            pos += n

        def string(what: str) -> None:
            skip(number("Q", f"length of {what}"), what)

        def value(kind: int, what: str) -> None:
            if kind in _SCALARS:
                skip(struct.calcsize(_SCALARS[kind]), what)
            elif kind == 8:
                string(what)
            elif kind == 9:
                at = pos
                item = number("I", f"item type of {what}")
                count = number("Q", f"length of {what}")
                if item in _SCALARS:
                    skip(count * struct.calcsize(_SCALARS[item]), what)
                    return
                if item not in (8, 9):
                    fail(f"{what} has item type {item}, not a GGUF value type", at)
                if count * (8 if item == 8 else 12) > size - pos:  # each item at least its own header
                    fail(f"{what} of {count} items runs past the end", at)
                for _ in range(count):
                    value(item, what)
            else:
                fail(f"{what} has type {kind}, not a GGUF value type", pos - 4)

        n_tensors = number("Q", "tensor count")
        n_kv = number("Q", "key/value count")
        if n_kv * 13 > size or n_tensors * 24 > size:
            fail(f"{n_tensors} tensors and {n_kv} keys do not fit", 8)
        alignment = 32
        for index in range(n_kv):
            at = pos
            key_len = number("Q", f"length of key {index}")
            skip(key_len, f"key {index}")
            key = bytes(data[pos - key_len : pos])
            kind = number("I", f"type of key {key!r:.60}")
            if key == b"general.alignment" and kind == 4:
                alignment = struct.unpack_from(order + "I", data, pos)[0] if pos + 4 <= size else alignment
            value(kind, f"value of {key!r:.60} (key at byte {at})")
        infos = []
        for index in range(n_tensors):
            string(f"name of tensor {index}")
            dims = number("I", f"dimension count of tensor {index}")
            if not 0 < dims <= _MAX_DIMS:
                fail(f"tensor {index} has {dims} dimensions; GGUF allows 1 to {_MAX_DIMS}", pos - 4)
            shape = [number("Q", f"dimension of tensor {index}") for _ in range(dims)]
            kind = number("I", f"type of tensor {index}")
            infos.append((index, shape, kind, number("Q", f"data offset of tensor {index}"), pos))
        if alignment and not alignment & (alignment - 1):
            start = -(-pos // alignment) * alignment
            for index, shape, kind, offset, at in infos:
                try:
                    block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
                except (ValueError, KeyError):
                    fail(f"tensor {index} has GGML type {kind}, which the gguf package does not know", at)
                count = int(np.prod([int(d) for d in shape], dtype=object))
                if count % block or start + offset + count // block * block_bytes > size:
                    fail(f"tensor {index}'s data ({shape}, type {kind}, offset {offset}) lies past the end", at)


def _reader(path: str | Path):
    import gguf

    path = Path(path)
    if path.is_file():
        check_header(path)
    try:
        return gguf.GGUFReader(path, "r")
    except FileNotFoundError:
        raise ValueError(f"GGUF file not found: {path}") from None
    except (ValueError, struct.error, IndexError, KeyError, OverflowError, OSError) as err:  # KeyError: a key twice
        raise ValueError(
            f"{path} is not a readable GGUF file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None


def read_metadata(reader) -> dict[str, Any]:
    """All key/value fields as plain Python values (arrays as lists)."""
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        out[key] = value
    return out


def _need(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise ValueError(f"GGUF metadata lacks {key!r}; a LLaMA-family file needs it")
    return meta[key]


def _count(meta: dict[str, Any], key: str, default: int | None = None) -> int:
    """A positive integer field (a size or a count), else a one-line ValueError naming the key."""
    value = _need(meta, key) if default is None else meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value < 2**31:
        raise ValueError(f"GGUF metadata {key!r} is {value!r:.60}; expected a positive integer below 2**31")
    return int(value)


def _number(meta: dict[str, Any], key: str, default: float | None = None) -> float:
    value = _need(meta, key) if default is None else meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise ValueError(f"GGUF metadata {key!r} is {value!r:.60}; expected a finite number")
    return float(value)


def _token_id(meta: dict[str, Any], key: str) -> int | None:
    value = meta.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
        raise ValueError(f"GGUF metadata {key!r} is {value!r:.60}; expected a token id")
    return value


def llama_config(meta: dict[str, Any], tensor_names: set[str]) -> LlamaGGUFConfig:
    """Config from ``{arch}.*`` metadata; only LLaMA-layout architectures are accepted."""
    arch = meta.get("general.architecture")
    if arch not in ("llama", "mistral"):
        raise ValueError(f"GGUF architecture {arch!r} is not supported; supported: llama, mistral")
    hidden = _count(meta, f"{arch}.embedding_length")
    heads = _count(meta, f"{arch}.attention.head_count")
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is not None and not isinstance(tokens, list):
        raise ValueError(f"GGUF metadata 'tokenizer.ggml.tokens' is a {type(tokens).__name__}; expected a list")
    vocab = _count(meta, f"{arch}.vocab_size", len(tokens) if tokens else None)
    return LlamaGGUFConfig(
        num_layers=_count(meta, f"{arch}.block_count"),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=_count(meta, f"{arch}.attention.head_count_kv", heads),
        ffn_size=_count(meta, f"{arch}.feed_forward_length"),
        rope_theta=_number(meta, f"{arch}.rope.freq_base", 10000.0),
        # Stored as float32: print-and-parse gives back the intended decimal (1e-05).
        rms_norm_eps=float(str(np.float32(_number(meta, f"{arch}.attention.layer_norm_rms_epsilon")))),
        vocab_size=vocab,
        context_length=_count(meta, f"{arch}.context_length", 2048),
        tie_word_embeddings="output.weight" not in tensor_names,
        bos_token_id=_token_id(meta, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_token_id(meta, "tokenizer.ggml.eos_token_id"),
        head_dim=_count(meta, f"{arch}.attention.key_length", max(hidden // heads, 1)),
    )


def dequantize_tensor(tensor) -> torch.Tensor:
    """One ``ReaderTensor`` as float32, shaped in PyTorch order (GGUF lists dims reversed)."""
    from gguf.quants import dequantize

    kind = tensor.tensor_type.name
    if kind not in SUPPORTED_TYPES:
        raise ValueError(f"tensor {tensor.name!r} has GGUF type {kind}; supported: {', '.join(SUPPORTED_TYPES)}")
    shape = tuple(int(d) for d in reversed(list(tensor.shape)))
    values = dequantize(np.asarray(tensor.data), tensor.tensor_type)
    # Plain F32 tensors come back as read-only views of the memory map: copy them.
    values = np.array(values, dtype=np.float32, copy=True).reshape(shape)
    return torch.from_numpy(values)


def read_blocks(tensor) -> QuantizedWeight | None:
    """A Q8_0 / Q4_0 / Q4_1 matrix as its blocks' own values, scales and minimums (None for
    other types). Block layouts (32 values each): Q8_0 = fp16 d, 32 x int8; Q4_0 = fp16 d,
    16 bytes; Q4_1 = fp16 d, fp16 m, 16 bytes, where byte j holds value j (low nibble) and
    value j + 16 (high nibble)."""
    kind = tensor.tensor_type.name
    if kind not in BLOCK_TYPES or len(tensor.shape) != 2:
        return None
    rows, cols = (int(d) for d in reversed(list(tensor.shape)))  # (N, K)
    raw = np.asarray(tensor.data, dtype=np.uint8).reshape(rows, cols // 32, -1)  # (N, blocks, bytes)
    scale = torch.from_numpy(raw[..., :2].copy().view(np.float16)[..., 0].astype(np.float32))  # (N, G)
    if kind == "Q8_0":
        values = torch.from_numpy(raw[..., 2:].copy().view(np.int8).reshape(rows, cols))
        return QuantizedWeight(values, scale, None, 32, 8, kind)
    start = 4 if kind == "Q4_1" else 2
    packed = raw[..., start:]  # (N, G, 16)
    nibbles = np.concatenate((packed & 15, packed >> 4), axis=-1).reshape(rows, cols)  # values 0..15
    if kind == "Q4_1":
        mins = torch.from_numpy(raw[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32))
    else:
        mins = -8.0 * scale
    return QuantizedWeight(torch.from_numpy(nibbles.copy()), scale, mins, 32, 4, kind)


def read_tensors(reader) -> dict[str, torch.Tensor]:
    """Every tensor in the file, dequantised, under its GGUF name."""
    return {t.name: dequantize_tensor(t) for t in reader.tensors}


def unpermute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation, back to HF's rotate-half layout.

    llama.cpp writes row ``h*d + 2*i + j`` from HF row ``h*d + j*d/2 + i`` (d = head_dim),
    so each head's two halves are interleaved; here they are separated again.
    """
    rows = weight.shape[0]
    if weight.dim() < 1 or rows % (2 * n_heads):
        raise ValueError(f"a q/k weight of shape {tuple(weight.shape)} does not split into {n_heads} heads of pairs")
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _hf_name(name: str, config: LlamaGGUFConfig) -> tuple[str | None, int | None]:
    """A GGUF tensor name -> (its ``LlamaForCausalLM`` name, or None to skip; the head count
    whose rotary row order to undo, or None)."""
    if name in GGUF_TOP_NAMES:
        return GGUF_TOP_NAMES[name], None
    if name == "rope_freqs.weight":
        return None, None  # llama3 rope scaling factors; recomputed from config by HF
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != "blk" or parts[2] not in GGUF_LAYER_NAMES:
        raise ValueError(
            f"GGUF tensor {name!r} has no LLaMA mapping; supported: "
            f"{', '.join(GGUF_TOP_NAMES)}, blk.N.({'|'.join(GGUF_LAYER_NAMES)}).weight"
        )
    heads = {"attn_q": config.num_heads, "attn_k": config.num_kv_heads}.get(parts[2])
    return f"model.layers.{parts[1]}.{GGUF_LAYER_NAMES[parts[2]]}.{parts[3]}", heads


def to_hf_llama(tensors: dict[str, torch.Tensor], config: LlamaGGUFConfig) -> dict[str, torch.Tensor]:
    """GGUF names -> ``LlamaForCausalLM`` names, with q/k rows un-permuted."""
    out: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        hf, heads = _hf_name(name, config)
        if hf is not None:
            out[hf] = value if heads is None else unpermute_rotary(value, heads)
    if "model.embed_tokens.weight" not in out:
        raise ValueError("GGUF file has no token_embd.weight, the token embedding a LLaMA model needs")
    if "lm_head.weight" not in out and config.tie_word_embeddings:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def blocks_to_hf(reader, config: LlamaGGUFConfig) -> dict[str, QuantizedWeight]:
    """The file's Q8_0 / Q4_0 / Q4_1 matrices under HF names, q/k rows un-permuted (rows of the
    values, scales and minimums alike: a block never spans two rows)."""
    out: dict[str, QuantizedWeight] = {}
    for tensor in reader.tensors:
        blocks = read_blocks(tensor)
        hf, heads = _hf_name(tensor.name, config)
        if blocks is None or hf is None:
            continue
        out[hf] = blocks if heads is None else blocks.map_rows(lambda t, h=heads: unpermute_rotary(t, h))
    return out


def _list_of(meta: dict[str, Any], key: str, kind: type, default: list | None) -> list:
    """A metadata array whose items are all ``kind`` (int: any integer, bool excluded)."""
    value = _need(meta, key) if default is None else meta.get(key, default)
    ok = isinstance(value, list) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) if kind is int else isinstance(v, kind)
        for v in value
    )
    if not ok:
        raise ValueError(f"GGUF metadata {key!r} is not a list of {kind.__name__}")
    return value


def build_tokenizer(meta: dict[str, Any]):
    """A ``PreTrainedTokenizerFast`` from the vocabulary and merges stored in the metadata.

    Supports GPT-2 style byte-level BPE (``tokenizer.ggml.model == "gpt2"``). The
    pre-tokenizer follows ``tokenizer.ggml.pre``: "smollm" splits every digit, then applies
    the GPT-2 regex, which is what SmolLM's own tokenizer.json does.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer model {kind!r} is not supported; supported: gpt2")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in ("smollm", "gpt2", "default"):
        raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported; supported: smollm, gpt2")
    tokens: list[str] = _list_of(meta, "tokenizer.ggml.tokens", str, None)
    types: list[int] = _list_of(meta, "tokenizer.ggml.token_type", int, [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in _list_of(meta, "tokenizer.ggml.merges", str, [])]
    if any(len(m) != 2 for m in merges):
        raise ValueError("GGUF metadata 'tokenizer.ggml.merges' holds an entry without a space; expected 'left right'")
    for key in ("bos", "eos", "unknown", "padding"):
        idx = _token_id(meta, f"tokenizer.ggml.{key}_token_id")
        if idx is not None and idx >= len(tokens):
            raise ValueError(f"GGUF metadata 'tokenizer.ggml.{key}_token_id' is {idx}, past the {len(tokens)} tokens")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    for index, (left, right) in enumerate(merges):
        for part in (left, right, left + right):
            if part not in vocab:  # tokenizers would raise a bare Exception
                raise ValueError(
                    f"GGUF merge {index} ({left!r} {right!r}) needs token {part!r:.40}, which is not in the token list"
                )
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") and bos_id is not None:
        bos = tokens[bos_id]
        tok.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
                ),
            ]
        )
    # Token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    special = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3]
    user = [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == 4]
    tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)

    def name(key: str) -> str | None:
        idx = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[idx] if idx is not None and 0 <= idx < len(tokens) else None

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=name("bos"),
        eos_token=name("eos"),
        unk_token=name("unknown"),
        pad_token=name("padding"),
        clean_up_tokenization_spaces=False,
    )
    template = meta.get("tokenizer.chat_template")
    if template:
        fast.chat_template = template
    return fast


def load_gguf_llama(path: str | Path, *, with_tokenizer: bool = True, keep_blocks: bool = False) -> GGUFLlama:
    """Read a LLaMA-family GGUF file: config, HF-named float32 state dict, tokenizer (and with
    ``keep_blocks`` the quantised matrices as they are stored)."""
    reader = _reader(path)
    meta = read_metadata(reader)
    names = {t.name for t in reader.tensors}
    config = llama_config(meta, names)
    state = to_hf_llama(read_tensors(reader), config)
    tokenizer = build_tokenizer(meta) if with_tokenizer else None
    return GGUFLlama(
        config=config,
        state_dict=state,
        tokenizer=tokenizer,
        chat_template=meta.get("tokenizer.chat_template"),
        metadata=meta,
        blocks=blocks_to_hf(reader, config) if keep_blocks else None,
    )

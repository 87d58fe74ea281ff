"""Typed model configs and the registry of named presets.

Every model family has a dataclass config (a subclass of ``ModelConfig``) that travels with
its weights as ``config.json`` and rebuilds the exact model. ``FAMILIES`` and ``PRESETS`` below
say where each family and each named preset (``transformer-base``, ``gpt2-small``, ...) lives;
the family's module ties its config to its model class with ``register_model`` and defines its
presets with ``register_preset``, and is imported the first time one of them is asked for.
``build(name, **overrides)`` turns a preset into a model.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from .lazy import entry
from .nn.feedforward import FEEDFORWARDS
from .nn.layers import LayerSpec
from .nn.norm import NORMS
from .nn.positional import POSITIONALS
from .nn.rope_scaling import RopeScaling


@dataclass
class ModelConfig:
    """Base for model configs: validation, JSON round-trip, checked overrides."""

    model_type: ClassVar[str] = "base"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad field; subclasses extend this."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_size", "_layers", "d_model", "d_ff", "num_heads", "max_len")) and isinstance(
                value, int
            ):
                if value <= 0:
                    raise ValueError(f"{type(self).__name__}.{f.name} must be positive, got {value}")
            if "dropout" in f.name and isinstance(value, float) and not 0.0 <= value < 1.0:
                raise ValueError(f"{type(self).__name__}.{f.name} must be in [0, 1), got {value}")

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, **dataclasses.asdict(self)}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = {k: v for k, v in data.items() if k != "model_type"}
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {cls.field_names()}")
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            if not _fits(value, hints[name]):
                raise ValueError(f"{cls.__name__}.{name} must be {_type_words(hints[name])}, got {value!r:.80}")
        return cls(**data)

    def replace(self, **overrides: Any) -> "ModelConfig":
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise ValueError(
                f"override(s) {unknown} are not fields of {type(self).__name__}; valid fields: {self.field_names()}"
            )
        return dataclasses.replace(self, **overrides)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config field's annotation (int, float, bool, str, dict,
    list[int], X | None): a config file's ``"d_model": [64]`` or ``1e400`` stops here, not in torch."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    origin = typing.get_origin(hint) or hint
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and (item is Any or all(_fits(v, item) for v in value))
    return isinstance(value, origin) if isinstance(origin, type) else True


def _type_words(hint: Any) -> str:
    words = str(hint).replace("<class '", "").replace("'>", "").replace(" | ", " or ")
    return words.replace("float", "a finite number").replace("int", "an integer below 2**63")


@dataclass
class TransformerConfig(ModelConfig):
    """Fields shared by every Transformer stack: what one layer is and how positions enter."""

    d_model: int = 512
    num_heads: int = 8
    num_kv_heads: int | None = None
    head_dim: int | None = None
    d_ff: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    ffn: str = "relu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = False
    positional: str = "sinusoidal"
    max_len: int = 1024
    rope_base: float = 10000.0
    # Hugging Face's rope_scaling dict: {"rope_type": "linear" | "dynamic" | "yarn" | "llama3", "factor": ..., ...}
    rope_scaling: dict | None = None
    bias: bool = True
    attn_impl: str = "auto"
    attention_window: int | None = None  # sliding-window self-attention: each query sees its last W positions

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.head_dim is None and self.d_model % self.num_heads:
            raise ValueError(f"{name}: d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        kv = self.num_kv_heads if self.num_kv_heads is not None else self.num_heads
        if kv <= 0 or self.num_heads % kv:
            raise ValueError(f"{name}: num_heads ({self.num_heads}) must be divisible by num_kv_heads ({kv})")
        for field_name, value, allowed in (
            ("ffn", self.ffn, FEEDFORWARDS),
            ("norm", self.norm, NORMS),
            ("positional", self.positional, POSITIONALS),
            ("attn_impl", self.attn_impl, ("auto", "reference", "fused")),
        ):
            if value not in allowed:
                raise ValueError(f"{name}.{field_name} = {value!r} is not one of {allowed}")
        if self.attention_window is not None and (
            isinstance(self.attention_window, bool)
            or not isinstance(self.attention_window, int)
            or self.attention_window < 1
        ):
            raise ValueError(
                f"{name}.attention_window must be a positive number of positions (or None), "
                f"got {self.attention_window!r}"
            )
        if self.rope_scaling is not None:
            if self.positional != "rope":
                raise ValueError(f"{name}.rope_scaling applies to positional='rope', not {self.positional!r}")
            try:
                RopeScaling.parse(self.rope_scaling)
            except ValueError as err:
                raise ValueError(f"{name}.{err}") from None

    def layer_spec(self) -> LayerSpec:
        return LayerSpec(
            d_model=self.d_model,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            ffn=self.ffn,
            norm=self.norm,
            norm_eps=self.norm_eps,
            norm_first=self.norm_first,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation_dropout=self.activation_dropout,
            bias=self.bias,
            attn_impl=self.attn_impl,
            attention_window=self.attention_window,
        )


# ----------------------------------------------------------------------------- registries
#
# Where every family and every preset lives. The modules are imported by name on first use, never
# here: they import this module (for TransformerConfig and the register_* calls), so importing
# them from it would be a circle. A new family is its module under models/ plus its lines here.

FAMILIES: dict[str, str] = {  # model_type -> "module:model class"; the class's config_class is its config
    "decision-transformer": "attentive.models.decision:DecisionTransformer",
    "decoder-lm": "attentive.models.decoder_lm:DecoderLM",
    "encoder": "attentive.models.encoder:Encoder",
    "encoder-decoder": "attentive.models.encoder_decoder:EncoderDecoder",
    "speech": "attentive.models.speech:SpeechModel",
    "vit": "attentive.models.vit:VisionTransformer",
}

PRESETS: dict[str, str] = {  # preset name -> the module whose register_preset call defines it
    "bert-base": "attentive.models.encoder",
    "decision-transformer": "attentive.models.decision",
    "gpt2-small": "attentive.models.decoder_lm",
    "llama-tiny": "attentive.models.decoder_lm",
    "minilm-l6": "attentive.models.encoder",
    "smollm2-135m": "attentive.models.decoder_lm",
    "transformer-base": "attentive.models.encoder_decoder",
    "transformer-big": "attentive.models.encoder_decoder",
    "transformer-tiny": "attentive.models.encoder_decoder",
    "vit-b16": "attentive.models.vit",
    "vit-tiny": "attentive.models.vit",
    "whisper-base": "attentive.models.speech",
    "whisper-tiny": "attentive.models.speech",
}


@dataclass
class Preset:
    name: str
    config: ModelConfig
    description: str


_PRESETS: dict[str, Preset] = {}  # filled by register_preset as PRESETS' modules are imported


def register_model(config_cls: type[ModelConfig]):
    """Class decorator: ``@register_model(MyConfig) class MyModel(nn.Module)``. Ties the config
    to the model and checks that FAMILIES names this class for the config's model_type."""

    def decorator(model_cls):
        where = f"{model_cls.__module__}:{model_cls.__qualname__}"
        if FAMILIES.get(config_cls.model_type) != where:
            raise ValueError(
                f"FAMILIES in attentive/config.py maps model_type {config_cls.model_type!r} to "
                f"{FAMILIES.get(config_cls.model_type)!r}, not to {where!r}: add or correct its line"
            )
        model_cls.config_class = config_cls
        return model_cls

    return decorator


def register_preset(name: str, config: ModelConfig, description: str) -> None:
    """Define a preset, next to its family; PRESETS above must list it, with the calling module."""
    if name not in PRESETS:
        raise ValueError(
            f"preset {name!r} is not in PRESETS in attentive/config.py; add it there with the module that registers it"
        )
    _PRESETS[name] = Preset(name, config, description)


def presets() -> list[str]:
    """Names of all registered model presets."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(sorted(PRESETS))}")
    importlib.import_module(PRESETS[name])
    if name not in _PRESETS:
        raise ValueError(
            f"PRESETS in attentive/config.py says {PRESETS[name]} defines preset {name!r}, "
            "but that module registers no such preset"
        )
    return _PRESETS[name]


def _family(model_type: str) -> type:
    """The model class FAMILIES names for ``model_type``, checked to be registered for it."""
    model_cls = entry(FAMILIES[model_type])
    if getattr(model_cls, "config_class", None) is None or model_cls.config_class.model_type != model_type:
        raise ValueError(
            f"FAMILIES in attentive/config.py maps model_type {model_type!r} to "
            f"{FAMILIES[model_type]!r}, which is not registered for it with @register_model"
        )
    return model_cls


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of a named preset, with checked overrides."""
    # always a copy: configs are mutable dataclasses and the registered preset must stay pristine
    return get_preset(name).config.replace(**overrides)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from its JSON form (dispatching on ``model_type``)."""
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ValueError(f"unknown model_type {model_type!r} in config; known types: {sorted(FAMILIES)}")
    return _family(model_type).config_class.from_dict(data)


def load_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    from .text.files import read_json_object  # bad JSON, too deep, not UTF-8, not an object: one line

    try:
        data = read_json_object(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no config.json at {path}") from None
    try:
        return config_from_dict(data)
    except (ValueError, TypeError) as err:  # a field the family lacks, a value of the wrong kind
        raise ValueError(f"{path}: {err}") from None


def build_model(config: ModelConfig):
    """Instantiate the model class registered for ``config``'s family."""
    if config.model_type not in FAMILIES:
        raise ValueError(f"no model registered for model_type {config.model_type!r}")
    return _family(config.model_type)(config)


def build(name_or_config: str | ModelConfig, **overrides: Any):
    """``build("transformer-base", dropout=0.3)`` -> a freshly initialised model."""
    if isinstance(name_or_config, ModelConfig):
        config = name_or_config.replace(**overrides) if overrides else name_or_config
    else:
        config = preset_config(name_or_config, **overrides)
    return build_model(config)

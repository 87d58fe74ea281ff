"""Rotary-position scaling: how a RoPE model trained on ``L`` tokens is stretched to read more.

RoPE rotates feature pair ``i`` of a query or key at position ``p`` by ``p * theta_i`` with
``theta_i = base^(-2i/d)``. Past the training length the slow pairs turn through angles the model
never saw. Each scheme changes the frequencies ``theta_i`` (and YaRN also the attention
temperature), configured with the fields of Hugging Face's ``rope_scaling`` /
``rope_parameters`` so a model's ``config.json`` maps over unchanged:

* ``linear`` -- position interpolation (Chen et al. 2023): every ``theta_i / factor``;
* ``dynamic`` -- NTK-aware scaling, dynamic as in ``transformers``: for a forward pass whose
  largest position ``n`` exceeds the training length ``L``, the base becomes
  ``base * (factor * n / L - (factor - 1)) ** (d / (d - 2))``; below ``L`` nothing changes;
* ``yarn`` -- YaRN (Peng et al. 2023): fast pairs (more than ``beta_fast`` turns over the
  original length) extrapolate, slow pairs (fewer than ``beta_slow``) interpolate by ``factor``,
  a linear ramp between; cos/sin are scaled by ``0.1 ln(factor) + 1`` (or ``attention_factor``,
  or the ``mscale`` / ``mscale_all_dim`` ratio);
* ``llama3`` -- LLaMA 3.1: wavelengths longer than ``L / low_freq_factor`` are divided by
  ``factor``, shorter than ``L / high_freq_factor`` kept, a smooth blend between.

``rope_frequencies`` computes ``(inv_freq, attention_factor)`` the way
``transformers/modeling_rope_utils.py`` does (same formulas, same float32 arithmetic), so cos
and sin agree with ``LlamaRotaryEmbedding`` to float rounding (tested for each type).

Dimension names: Dr rotary width (head width, or the rotated part of it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
_NEEDS = {  # fields a type cannot do without
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "yarn": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
}


@dataclass(frozen=True)
class RopeScaling:
    """One ``rope_scaling`` dict, typed and checked. Field names are Hugging Face's."""

    rope_type: str = "default"
    factor: float | None = None
    original_max_position_embeddings: int | None = None  # yarn / llama3: the training length (default: max_len)
    low_freq_factor: float | None = None  # llama3
    high_freq_factor: float | None = None  # llama3
    beta_fast: float | None = None  # yarn (default 32)
    beta_slow: float | None = None  # yarn (default 1)
    attention_factor: float | None = None  # yarn: the cos/sin scale (default from factor / mscale)
    mscale: float | None = None  # yarn (DeepSeek style)
    mscale_all_dim: float | None = None  # yarn (DeepSeek style)
    truncate: bool = True  # yarn: round the ramp's ends to whole dimensions

    def __post_init__(self) -> None:
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"rope_scaling type {self.rope_type!r} is not one of {ROPE_TYPES}")
        missing = [name for name in _NEEDS[self.rope_type] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"rope_scaling type {self.rope_type!r} needs {', '.join(missing)}")
        for name in (
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "beta_fast",
            "beta_slow",
            "attention_factor",
            "mscale",
            "mscale_all_dim",
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise ValueError(f"rope_scaling {name} must be a number, got {value!r}")
        if self.factor is not None and self.factor < 1:
            raise ValueError(f"rope_scaling factor must be >= 1 (it stretches the context), got {self.factor}")
        if self.original_max_position_embeddings is not None and (
            isinstance(self.original_max_position_embeddings, bool)
            or not isinstance(self.original_max_position_embeddings, int)
            or self.original_max_position_embeddings < 1
        ):
            raise ValueError(
                f"rope_scaling original_max_position_embeddings must be a positive integer, "
                f"got {self.original_max_position_embeddings!r}"
            )
        if self.rope_type == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError(
                f"rope_scaling high_freq_factor ({self.high_freq_factor}) must exceed "
                f"low_freq_factor ({self.low_freq_factor})"
            )
        if self.attention_factor is not None and self.attention_factor <= 0:
            raise ValueError(f"rope_scaling attention_factor must be > 0, got {self.attention_factor}")

    @classmethod
    def parse(cls, value: RopeScaling | dict[str, Any] | None) -> RopeScaling | None:
        """A ``rope_scaling`` dict (``rope_type`` or its old name ``type``) -> ``RopeScaling``;
        ``None`` and the ``default`` type mean no scaling. Unknown keys are an error listing the known."""
        if value is None or isinstance(value, RopeScaling):
            return None if value is None or value.rope_type == "default" else value
        if not isinstance(value, dict):
            raise ValueError(f"rope_scaling must be a dict like {{'rope_type': 'yarn', 'factor': 2.0}}, got {value!r}")
        data = dict(value)
        if "type" in data:
            kind = data.pop("type")
            if data.setdefault("rope_type", kind) != kind:
                raise ValueError(f"rope_scaling gives two types: type={kind!r} and rope_type={data['rope_type']!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown rope_scaling key(s) {unknown}; known: {known}")
        if "rope_type" not in data:
            raise ValueError(f"rope_scaling needs a rope_type (one of {ROPE_TYPES}), got {value!r}")
        scaling = cls(**data)
        return None if scaling.rope_type == "default" else scaling

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as Hugging Face writes them."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and not (k == "truncate" and v)}


def default_frequencies(dim: int, base: float) -> Tensor:
    """``base^(-2i/d)`` for ``i < d/2``: ``(Dr/2,)`` float32, computed as transformers does."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_frequencies(
    scaling: RopeScaling | None, dim: int, base: float, max_len: int, seq_len: int | None = None
) -> tuple[Tensor, float]:
    """``(inv_freq (Dr/2,), attention_factor)`` for one scheme.

    ``max_len`` is the model's context (HF ``max_position_embeddings``); ``seq_len`` the length a
    ``dynamic`` forward pass needs (ignored by the other types).
    """
    if scaling is None:
        return default_frequencies(dim, base), 1.0
    kind = scaling.rope_type
    if kind == "linear":
        return default_frequencies(dim, base) / scaling.factor, 1.0
    if kind == "dynamic":
        seq_len = max(seq_len or max_len, max_len)
        base = base * ((scaling.factor * seq_len / max_len) - (scaling.factor - 1)) ** (dim / (dim - 2))
        return default_frequencies(dim, base), 1.0
    original = scaling.original_max_position_embeddings or max_len
    if kind == "yarn":
        return _yarn(scaling, dim, base, original)
    return _llama3(scaling, dim, base, original), 1.0


def _yarn(s: RopeScaling, dim: int, base: float, original: int) -> tuple[Tensor, float]:
    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    factor = s.factor
    attention = s.attention_factor
    if attention is None:
        attention = (
            mscale(factor, s.mscale) / mscale(factor, s.mscale_all_dim)
            if s.mscale and s.mscale_all_dim
            else mscale(factor)
        )
    beta_fast, beta_slow = s.beta_fast or 32, s.beta_slow or 1

    def correction_dim(rotations: float) -> float:  # the pair that turns `rotations` times over `original`
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)  # (Dr/2,)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1 - ramp  # 1: keep the pair's frequency, 0: interpolate it
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention)


def _llama3(s: RopeScaling, dim: int, base: float, original: int) -> Tensor:
    inv_freq = default_frequencies(dim, base)
    low_wavelen, high_wavelen = original / s.low_freq_factor, original / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)

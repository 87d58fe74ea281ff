"""Positional information, all behind one interface.

Self-attention is blind to order; positions must come from somewhere. Two families:

* added to the embedding before the first layer: the paper's sinusoidal table (section 3.5)
  and learned absolute positions (BERT, GPT-2);
* applied inside attention: rotary embeddings rotate queries and keys (RoPE, Su et al. 2021),
  ALiBi (Press et al. 2022) and T5's relative buckets (Raffel et al. 2020) add a bias to the
  attention scores.

Every kind implements the same methods, and a stack calls them without asking which kind it
holds: ``add_to`` (identity for in-attention kinds), ``rotary`` (None unless RoPE) and
``attention_bias`` (None unless ALiBi / relative). A cache that moves keys to new positions (the
attention-sink cache) asks ``shift_keys``: a rotation for RoPE, identity for the others (ALiBi and
relative biases are computed from the positions the cache reports; added positions are part of
the hidden state and cannot be moved).

RoPE takes Hugging Face's ``rope_scaling`` (``rope_scaling.py``): linear interpolation, dynamic
NTK, YaRN, LLaMA 3.

Dimension names: B batch, T sequence, D model width, H heads, Dh head width,
Tq query length, Tk key length. ``positions`` are integer tensors ``(B, T)`` or ``(T,)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .rope_scaling import RopeScaling, rope_frequencies

POSITIONALS = ("sinusoidal", "learned", "rope", "alibi", "relative", "none")


class PositionalEncoding(nn.Module):
    """Base: no positional information at all (kind ``none``)."""

    def add_to(self, x: Tensor, positions: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        return x

    def rotary(self, positions: Tensor) -> tuple[Tensor, Tensor] | None:
        return None

    def attention_bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor | None:
        return None

    def shift_keys(self, k: Tensor, shift: Tensor) -> Tensor:
        """Keys ``(B, Hkv, Tk, Dh)`` as if they sat ``shift (Tk,)`` positions later (negative: earlier)."""
        return k


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """The paper's table: PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(same)."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (D/2,)
    angles = position * inv_freq  # (T, D/2)
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return table.float()  # (T, D)


class SinusoidalPositionalEncoding(PositionalEncoding):
    """Fixed sin/cos table added to the (scaled) embedding."""

    def __init__(self, d_model: int, max_len: int = 4096, base: float = 10000.0):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("table", sinusoidal_table(max_len, d_model, base), persistent=False)

    def add_to(self, x: Tensor, positions: Tensor) -> Tensor:
        _check_positions(positions, self.max_len)
        return x + self.table[positions].to(x.dtype)  # (B, T, D)


class LearnedPositionalEmbedding(PositionalEncoding):
    """A trained table of absolute positions (BERT, GPT-2)."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def add_to(self, x: Tensor, positions: Tensor) -> Tensor:
        _check_positions(positions, self.max_len)
        return x + self.weight[positions]  # (B, T, D)


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) over the last dim: the 'half-split' rotary layout used by LLaMA."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs of features of ``x (B, H, T, Dh)`` by position-dependent angles."""
    rot_dim = cos.shape[-1]
    if rot_dim == x.shape[-1]:
        return (x * cos + rotate_half(x) * sin).to(x.dtype)
    x_rot, x_pass = x[..., :rot_dim], x[..., rot_dim:]  # partial rotary (GPT-NeoX style)
    return torch.cat(((x_rot * cos + rotate_half(x_rot) * sin).to(x.dtype), x_pass), dim=-1)


class RotaryEmbedding(PositionalEncoding):
    """RoPE: rotate each query/key feature pair by ``pos * base^(-2i/d)``; relative by construction.

    ``scaling`` (a ``rope_scaling`` dict or ``RopeScaling``) stretches the frequencies for
    contexts past ``max_len``, the length the model was trained on; YaRN also scales cos/sin.
    """

    def __init__(
        self,
        head_dim: int,
        base: float = 10000.0,
        rotary_dim: int | None = None,
        scaling: RopeScaling | dict | None = None,
        max_len: int = 4096,
    ):
        super().__init__()
        self.rotary_dim = rotary_dim or head_dim
        if self.rotary_dim % 2:
            raise ValueError(f"rotary dimension must be even, got {self.rotary_dim}")
        self.base, self.max_len = base, max_len
        self.scaling = RopeScaling.parse(scaling)
        inv_freq, self.attention_factor = rope_frequencies(self.scaling, self.rotary_dim, base, max_len)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (Dr/2,)
        self._dynamic: tuple[int, Tensor] | None = None  # (sequence length, its frequencies)

    @property
    def dynamic(self) -> bool:
        return self.scaling is not None and self.scaling.rope_type == "dynamic"

    def frequencies(self, positions: Tensor | None = None) -> Tensor:
        """``(Dr/2,)`` float32 frequencies for a pass over ``positions``: fixed, or (``dynamic``)
        grown with the largest position once it passes ``max_len``, as transformers does per pass."""
        seq_len = int(positions.max()) + 1 if self.dynamic and positions is not None and positions.numel() else 0
        if seq_len <= self.max_len and self.inv_freq.dtype == torch.float32:
            return self.inv_freq
        # a dynamic pass past max_len, or a model cast to bf16/fp16 (whose angles must stay float32)
        seq_len = max(seq_len, self.max_len)
        if self._dynamic is None or self._dynamic[0] != seq_len or self._dynamic[1].device != self.inv_freq.device:
            inv_freq, _ = rope_frequencies(self.scaling, self.rotary_dim, self.base, self.max_len, seq_len)
            self._dynamic = (seq_len, inv_freq.to(self.inv_freq.device))
        return self._dynamic[1]

    def rotary(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        if positions.dim() == 1:
            positions = positions[None]
        angles = positions[..., None].float() * self.frequencies(positions)  # (B, T, Dr/2)
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, T, Dr)
        if self.attention_factor == 1.0:
            return angles.cos(), angles.sin()
        return angles.cos() * self.attention_factor, angles.sin() * self.attention_factor

    def shift_keys(self, k: Tensor, shift: Tensor) -> Tensor:
        """A key rotated at position p becomes the key rotated at p + shift: one more rotation by
        ``shift * theta`` (no YaRN scale: the key already carries it)."""
        angles = shift.to(k.device)[:, None].float() * self.frequencies()  # (Tk, Dr/2)
        angles = torch.cat((angles, angles), dim=-1)  # (Tk, Dr)
        return apply_rotary(k.float(), angles.cos(), angles.sin()).to(k.dtype)


def alibi_slopes(num_heads: int) -> Tensor:
    """Geometric slopes 2^(-8/n), 2^(-16/n), ... (with the paper's rule for non-powers of two)."""

    def powers_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = powers_of_two(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = powers_of_two(closest) + powers_of_two(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes)


class ALiBi(PositionalEncoding):
    """Linear bias ``-slope_h * |i - j|`` on the scores; no embedding, extrapolates to longer inputs."""

    def __init__(self, num_heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def attention_bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        distance = (q_positions[..., :, None] - k_positions[..., None, :]).abs()  # (B?, Tq, Tk)
        bias = -self.slopes[:, None, None] * distance.unsqueeze(-3).float()  # (B?, H, Tq, Tk)
        return bias if bias.dim() == 4 else bias[None]


class RelativePositionBias(PositionalEncoding):
    """T5's learned bias per head for bucketed relative distances (log-spaced beyond half the buckets)."""

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def bucket(self, relative: Tensor) -> Tensor:
        """Map ``key_pos - query_pos`` to a bucket index, as in T5."""
        num_buckets = self.num_buckets
        buckets = torch.zeros_like(relative)
        if self.bidirectional:
            num_buckets //= 2
            buckets = buckets + (relative > 0).long() * num_buckets
            distance = relative.abs()
        else:
            distance = -torch.clamp(relative, max=0)
        max_exact = num_buckets // 2
        is_small = distance < max_exact
        large = (
            max_exact
            + (
                torch.log(distance.float().clamp(min=1) / max_exact)
                / math.log(self.max_distance / max_exact)
                * (num_buckets - max_exact)
            ).long()
        )
        large = torch.clamp(large, max=num_buckets - 1)
        return buckets + torch.where(is_small, distance, large)

    def attention_bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        relative = k_positions[..., None, :] - q_positions[..., :, None]  # (B?, Tq, Tk)
        bias = self.embedding(self.bucket(relative))  # (B?, Tq, Tk, H)
        bias = bias.movedim(-1, -3)  # (B?, H, Tq, Tk)
        return bias if bias.dim() == 4 else bias[None]


def _check_positions(positions: Tensor, max_len: int) -> None:
    # Checked on CPU outside tracing only: on GPU it would force a device sync every step,
    # and a data-dependent check would break torch.compile graphs.
    if positions.device.type != "cpu" or torch.compiler.is_compiling():
        return
    if positions.numel() and int(positions.max()) >= max_len:
        raise ValueError(f"position {int(positions.max())} is beyond the table's maximum length {max_len}")


def make_positional(
    kind: str,
    d_model: int,
    num_heads: int,
    max_len: int = 4096,
    rope_base: float = 10000.0,
    head_dim: int | None = None,
    rotary_dim: int | None = None,
    relative_buckets: int = 32,
    relative_max_distance: int = 128,
    bidirectional: bool = True,
    rope_scaling: dict | None = None,
) -> PositionalEncoding:
    """Build a positional encoding by name; see ``POSITIONALS``. ``rope_scaling`` is RoPE's only."""
    if rope_scaling is not None and kind != "rope":
        raise ValueError(f"rope_scaling applies to positional='rope', not {kind!r}")
    head_dim = head_dim or d_model // num_heads
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    if kind == "learned":
        return LearnedPositionalEmbedding(d_model, max_len)
    if kind == "rope":
        return RotaryEmbedding(head_dim, rope_base, rotary_dim, rope_scaling, max_len)
    if kind == "alibi":
        return ALiBi(num_heads)
    if kind == "relative":
        return RelativePositionBias(num_heads, relative_buckets, relative_max_distance, bidirectional)
    if kind == "none":
        return PositionalEncoding()
    raise ValueError(f"unknown positional encoding {kind!r}; expected one of {POSITIONALS}")

"""Vision Transformer (Dosovitskiy et al., 2021): an image is a sequence of patches.

The image is cut into P x P patches, each flattened and linearly projected to D; a learned
class token is prepended, positions are added, a pre-LN encoder stack runs, and a linear
head reads the class token. Nothing here is specific to images beyond the patch embedding:
the stack is the same one that encodes sentences.

Dimension names: B batch, C channels, H x W image, P patch side, N = (H/P)(W/P) patches,
T = N + 1 tokens (class token first), D model width, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import TransformerConfig, register_model, register_preset
from ..nn import TransformerStack, make_positional
from ..nn.stack import StackOutput
from .init import init_xavier


@dataclass
class ViTConfig(TransformerConfig):
    """ViT hyper-parameters. Defaults: a small MNIST model (28x28 grey, 7x7 patches).

    ``pixel_mean`` / ``pixel_std`` normalise raw 0..1 pixels inside the model, so a checkpoint
    classifies an image file without knowing how its training data was scaled.
    """

    model_type = "vit"
    image_size: int = 28
    patch_size: int = 7
    in_channels: int = 1
    num_classes: int = 10
    num_layers: int = 4
    d_model: int = 128
    num_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0
    attention_dropout: float = 0.0
    ffn: str = "gelu"
    norm_first: bool = True
    norm_eps: float = 1e-6
    positional: str = "learned"
    max_len: int = 50  # position table rows; at least num_tokens (17 here, 50 for 4x4 patches)
    pixel_mean: float = 0.1307
    pixel_std: float = 0.3081

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1  # + class token

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        for field_name in ("image_size", "patch_size", "in_channels", "num_classes"):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"{name}.{field_name} must be positive, got {getattr(self, field_name)}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"{name}: image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.max_len < self.num_tokens:
            raise ValueError(
                f"{name}: max_len ({self.max_len}) is below the {self.num_tokens} tokens of a "
                f"{self.image_size}px image in {self.patch_size}px patches (+ class token)"
            )
        if self.pixel_std <= 0:
            raise ValueError(f"{name}.pixel_std must be positive, got {self.pixel_std}")


class PatchEmbedding(nn.Module):
    """Cut ``(B, C, H, W)`` into P x P patches, flatten each, project to D: ``(B, N, D)``.

    A linear map of flattened patches is the paper's formulation; it equals a strided
    convolution with kernel P, but keeps the weight a plain matrix ``(D, C*P*P)``.
    """

    def __init__(self, patch_size: int, in_channels: int, d_model: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)

    def patchify(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, C*P*P), patches in row-major order, each flattened (C, P, P)."""
        b, c, h, w = images.shape
        p = self.patch_size
        x = images.reshape(b, c, h // p, p, w // p, p)  # (B, C, H/P, P, W/P, P)
        x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(self.patchify(images))  # (B, N, D)


@register_model(ViTConfig)
class VisionTransformer(nn.Module):
    """``forward(images) -> logits (B, K)``; ``encode`` exposes the tokens and attention weights."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbedding(config.patch_size, config.in_channels, config.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        positional = make_positional(
            config.positional,
            config.d_model,
            config.num_heads,
            config.max_len,
            config.rope_base,
            config.head_dim,
            rope_scaling=config.rope_scaling,
        )
        self.encoder = TransformerStack(config.layer_spec(), config.num_layers, positional, causal=False)
        self.head = nn.Linear(config.d_model, config.num_classes)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """As the ViT reference code: Xavier-uniform matrices and zero biases, LeCun-normal patch
        projection, N(0, 0.02) positions, and a zero head so every class starts equally likely.
        (A plain N(0, 0.02) everywhere trains narrow models several times slower.)"""
        init_xavier(self)
        fan_in = self.patch_embed.proj.weight.shape[1]
        nn.init.trunc_normal_(self.patch_embed.proj.weight, std=fan_in**-0.5)
        nn.init.zeros_(self.head.weight)

    def _check_images(self, images: Tensor) -> Tensor:
        cfg = self.config
        if images.dim() == 3 and cfg.in_channels == 1:
            images = images.unsqueeze(1)  # (B, H, W) -> (B, 1, H, W)
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(f"images must have shape (batch, {', '.join(map(str, want))}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images must be float pixels in 0..1, got dtype {images.dtype}")
        return images

    def encode(self, images: Tensor, need_weights: bool = False) -> StackOutput:
        """Raw pixels ``(B, C, H, W)`` in 0..1 -> tokens ``(B, T, D)`` (class token at 0)."""
        images = self._check_images(images)
        x = (images - self.pixel_mean) / self.pixel_std
        patches = self.patch_embed(x)  # (B, N, D)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)  # (B, 1, D)
        return self.encoder(torch.cat([cls, patches], dim=1), need_weights=need_weights)  # hidden (B, T, D)

    def forward(self, images: Tensor) -> Tensor:
        """images ``(B, C, H, W)`` (or ``(B, H, W)`` when grey), pixels in 0..1 -> logits ``(B, K)``."""
        return self.head(self.encode(images).hidden[:, 0])


register_preset(
    "vit-tiny",
    ViTConfig(),
    "a 4-layer, 128-wide ViT for 28x28 grey images in 7x7 patches (CPU-sized; the vit-mnist recipe's model)",
)
register_preset(
    "vit-b16",
    ViTConfig(
        image_size=224,
        patch_size=16,
        in_channels=3,
        num_classes=1000,
        num_layers=12,
        d_model=768,
        num_heads=12,
        d_ff=3072,
        dropout=0.1,
        attention_dropout=0.0,
        max_len=197,
        pixel_mean=0.5,
        pixel_std=0.5,
    ),
    "ViT-B/16: 224px RGB in 16x16 patches, 12 layers, 768 wide, 12 heads, 1000 classes (~86M)",
)

"""ViT (``ViTForImageClassification``) <-> attentive's ``VisionTransformer``: pre-LN layers, learned
positions, a class token.

Where the HF parts land::

    layernorm_before / _after  -> encoder.layers.{i}.self_attn_residual / ffn_residual.norm

The patch projection is a convolution (D, C, P, P) in HF and the same numbers as a Linear
(D, C*P*P) here. HF's image processor normalises pixels before the model, attentive's ViT does
it itself: the statistics travel in ``preprocessor_config.json`` (read by ``load``, written by
``extra_files``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...checkpoint import unique_state_dict
from ...models.vit import ViTConfig
from ...text.files import read_json
from ..hf_maps import check, rename
from ..loading import HFFolder, build

NAME = "ViT"
EXPORTS = ("vit", None)

RULES: list[tuple[str, str]] = [
    ("vit.embeddings.cls_token", "cls_token"),
    ("vit.embeddings.position_embeddings", "encoder.positional.weight"),  # (1, T, D) <-> (max_len, D)
    ("vit.embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    ("vit.encoder.layer.{i}.attention.attention.query.{p}", "encoder.layers.{i}.self_attn.q_proj.{p}"),
    ("vit.encoder.layer.{i}.attention.attention.key.{p}", "encoder.layers.{i}.self_attn.k_proj.{p}"),
    ("vit.encoder.layer.{i}.attention.attention.value.{p}", "encoder.layers.{i}.self_attn.v_proj.{p}"),
    ("vit.encoder.layer.{i}.attention.output.dense.{p}", "encoder.layers.{i}.self_attn.out_proj.{p}"),
    ("vit.encoder.layer.{i}.layernorm_before.{p}", "encoder.layers.{i}.self_attn_residual.norm.{p}"),
    ("vit.encoder.layer.{i}.intermediate.dense.{p}", "encoder.layers.{i}.ffn.up.{p}"),
    ("vit.encoder.layer.{i}.output.dense.{p}", "encoder.layers.{i}.ffn.down.{p}"),
    ("vit.encoder.layer.{i}.layernorm_after.{p}", "encoder.layers.{i}.ffn_residual.norm.{p}"),
    ("vit.layernorm.{p}", "encoder.final_norm.{p}"),
    ("classifier.{p}", "head.{p}"),
]


# ----------------------------------------------------------------------------- read


def read_config(hf: dict[str, Any], preprocessor: dict[str, Any] | None = None) -> ViTConfig:
    """``ViTConfig`` fields (+ the image processor's mean and std) -> attentive's ``ViTConfig``."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"ViT hidden_act {hf['hidden_act']!r} is not supported; supported: gelu")
    if not hf.get("qkv_bias", True):
        raise ValueError("ViT with qkv_bias=False is not supported; supported: biases on every projection")
    pre = preprocessor or {}
    stats = []
    for key, default in (("image_mean", 0.5), ("image_std", 0.5)):
        values = pre.get(key, [default])
        values = values if isinstance(values, list) else [values]
        if len(set(values)) != 1:
            raise ValueError(f"ViT {key} {values} differs per channel; supported: one value for every channel")
        stats.append(float(values[0]))
    labels = hf.get("id2label") or {}
    image, patch = hf.get("image_size", 224), hf.get("patch_size", 16)
    return ViTConfig(
        image_size=image,
        patch_size=patch,
        in_channels=hf.get("num_channels", 3),
        num_classes=hf.get("num_labels") or len(labels) or 2,
        num_layers=hf["num_hidden_layers"],
        d_model=hf["hidden_size"],
        num_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        dropout=float(hf.get("hidden_dropout_prob", 0.0)),
        attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.0)),
        ffn="gelu",
        norm_first=True,
        norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        positional="learned",
        max_len=(image // patch) ** 2 + 1,
        pixel_mean=stats[0],
        pixel_std=stats[1],
    )


def read_state(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """``ViTForImageClassification`` weights -> ``VisionTransformer`` names (patch convolution
    (D, C, P, P) -> Linear (D, C*P*P), position table (1, T, D) -> (T, D))."""
    out = rename(state, RULES, (), NAME)
    out["patch_embed.proj.weight"] = out["patch_embed.proj.weight"].reshape(config.d_model, -1)  # (D, C*P*P)
    out["encoder.positional.weight"] = out["encoder.positional.weight"][0]  # (T, D)
    return out


def load(folder: HFFolder, language: str | None, overrides: dict[str, Any]) -> tuple[nn.Module, None]:
    """A ``VisionTransformer`` normalising pixels with the folder's image processor statistics; no tokenizer."""
    preprocessor = folder.path / "preprocessor_config.json"
    config = read_config(folder.config, read_json(preprocessor) if preprocessor.is_file() else None)
    return build(config, read_state(folder.state, config), str(folder.path)), None


# ----------------------------------------------------------------------------- export


def to_hf(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(``ViTConfig`` fields, ``ViTForImageClassification``-named tensors)."""
    c = model.config
    check(
        c,
        "a ViT (ViTForImageClassification) export",
        positional="learned",
        norm="layernorm",
        ffn="gelu",
        bias=True,
        norm_first=True,
        head_dim=None,
        num_kv_heads=(None, c.num_heads),
    )
    state = dict(unique_state_dict(model))
    state["encoder.positional.weight"] = state["encoder.positional.weight"][: c.num_tokens][None]  # (1, T, D)
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].reshape(
        c.d_model, c.in_channels, c.patch_size, c.patch_size
    )  # (D, C, P, P)
    config = {
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.in_channels,
        "hidden_size": c.d_model,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.d_ff,
        "hidden_act": "gelu",
        "layer_norm_eps": c.norm_eps,
        "qkv_bias": True,
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout,
        "num_labels": c.num_classes,
        "id2label": {str(i): str(i) for i in range(c.num_classes)},
        "label2id": {str(i): i for i in range(c.num_classes)},
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    return config, rename(state, RULES, family=NAME, reverse=True)


def extra_files(model: nn.Module) -> dict[str, Any]:
    """Our ViT normalises raw 0..1 pixels itself; HF's image processor does it before the model."""
    c = model.config
    return {
        "preprocessor_config.json": {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": c.image_size, "width": c.image_size},
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": [c.pixel_mean] * c.in_channels,
            "image_std": [c.pixel_std] * c.in_channels,
        }
    }

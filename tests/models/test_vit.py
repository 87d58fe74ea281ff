"""Vision Transformer: patches, shapes, presets, rollout, and a tiny MNIST run with the shared trainer."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import attentive
from attentive.cli.presets import count_parameters
from attentive.models.vit import PatchEmbedding, VisionTransformer, ViTConfig
from attentive.tasks.classification import ClassificationConfig, ImageClassificationTask
from attentive.recipes import get_recipe
from attentive.train.trainer import Trainer
from attentive.viz.rollout import (
    attention_rollout,
    class_token_map,
    save_attention_overlay,
)


def tiny_vit(**overrides) -> VisionTransformer:
    base = {"patch_size": 7, "num_layers": 2, "d_model": 32, "num_heads": 4, "d_ff": 64, "max_len": 17}
    return VisionTransformer(ViTConfig(**{**base, **overrides}))


def test_patch_embedding_is_a_strided_convolution():
    embed = PatchEmbedding(patch_size=4, in_channels=3, d_model=16)
    conv = torch.nn.Conv2d(3, 16, kernel_size=4, stride=4)
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.reshape(16, 3, 4, 4))
        conv.bias.copy_(embed.proj.bias)
    images = torch.randn(2, 3, 12, 8)
    expected = conv(images).flatten(2).transpose(1, 2)  # (B, N, D), row-major patches
    torch.testing.assert_close(embed(images), expected, rtol=1e-5, atol=1e-5)


def test_vit_b16_has_the_papers_parameter_count():
    # ViT-B/16 at 224px with a 1000-class head: 86.6M (Dosovitskiy et al., table 1: 86M)
    assert count_parameters("vit-b16") == 86_567_656


def test_forward_shapes_and_bad_inputs():
    model = tiny_vit().eval()
    assert model(torch.rand(3, 28, 28)).shape == (3, 10)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 28, 28\)"):
        model(torch.rand(3, 1, 32, 32))
    with pytest.raises(TypeError, match="float pixels"):
        model(torch.zeros(3, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"patch_size": 5}, "multiple of patch_size"),
        ({"patch_size": 4, "max_len": 17}, "max_len"),
        ({"patch_size": 7, "pixel_std": 0.0}, "pixel_std"),
    ],
)
def test_config_errors_name_the_bad_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**{"patch_size": 7, "max_len": 17, **overrides})


def test_checkpoint_round_trip(tmp_path):
    model = tiny_vit().eval()
    attentive.save(model, tmp_path)
    again = attentive.load(tmp_path).eval()
    x = torch.rand(2, 28, 28)
    torch.testing.assert_close(model(x), again(x))
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vit"


def test_rollout_of_identity_attention_is_identity_and_rows_sum_to_one():
    eye = torch.eye(5).expand(2, 3, 5, 5)
    torch.testing.assert_close(attention_rollout([eye, eye]), torch.eye(5).expand(2, 5, 5))
    weights = [torch.rand(2, 3, 5, 5).softmax(-1) for _ in range(4)]
    torch.testing.assert_close(attention_rollout(weights).sum(-1), torch.ones(2, 5))


def test_class_token_map_and_overlay(tmp_path):
    model = tiny_vit().eval()
    out = model.encode(torch.rand(2, 1, 28, 28), need_weights=True)
    assert len(out.self_attentions) == 2
    for method in ("rollout", "last"):
        heat = class_token_map(out.self_attentions, method)
        assert heat.shape == (2, 4, 4)
        assert heat.amax(dim=(1, 2)).tolist() == pytest.approx([1.0, 1.0])
    png = save_attention_overlay(torch.rand(28, 28), heat[0], tmp_path / "a.png", title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="method"):
        class_token_map(out.self_attentions, "mean")


def test_task_batches_are_deterministic_and_sharded():
    task = ImageClassificationTask(ClassificationConfig(batch_size=8, val_size=100, train_limit=400), seed=3)
    epoch = task.train_batches(0)
    assert len(epoch) == 300 // 8
    a, b = epoch[5], task.train_batches(0)[5]
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (8, 1, 28, 28) and a.images.dtype == torch.float32
    assert 0.0 <= float(a.images.min()) and float(a.images.max()) <= 1.0
    assert not torch.equal(task.train_batches(1)[5].labels, a.labels)
    shards = [task.train_batches(0, rank, 2)[0] for rank in range(2)]
    assert [len(s.labels) for s in shards] == [8, 8]


def test_tiny_vit_learns_mnist_with_the_shared_trainer(tmp_path):
    recipe = get_recipe("vit-mnist").build(
        {
            "out_dir": str(tmp_path),
            "max_steps": 300,
            "max_minutes": None,
            "device": "cpu",
            "progress": False,
            "eval_every": 0,
            "checkpoint_every": 0,
            "log_every": 10,
            "patch_size": 7,
            "num_layers": 1,
            "d_model": 32,
            "num_heads": 2,
            "d_ff": 64,
            "batch_size": 64,
            "train_limit": 4000,
            "val_size": 200,
            "test_limit": 500,
            "warmup_steps": 20,
            "lr": 3e-3,
        }
    )
    results = Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    assert results["step"] == 300
    assert results["test_accuracy"] > 0.35, results  # chance is 0.1
    reloaded = attentive.load(tmp_path)
    batch = recipe.task.train_batches(0)[0]
    assert F.cross_entropy(reloaded(batch.images), batch.labels).item() < 2.0


@pytest.mark.slow
def test_vit_mnist_recipe_reaches_98_percent(tmp_path):
    recipe = get_recipe("vit-mnist").build({"out_dir": str(tmp_path), "device": "cpu", "progress": False})
    results = Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    assert results["test_accuracy"] >= 0.98, results

"""Image-classification recipes: a Vision Transformer on the bundled MNIST digits."""

from __future__ import annotations

from ..config import preset_config
from ..tasks.classification import ClassificationConfig, ImageClassificationTask
from ..train.optim import OptimConfig
from ..train.trainer import TrainConfig
from .registry import Recipe, RecipeSpec, Settings, register_recipe


def build_vit(settings: Settings) -> Recipe:
    task = ImageClassificationTask(settings.data, seed=settings.train.seed)
    return Recipe(task, settings.new_model(settings.model), settings.train)


def _vit_recipe(
    name: str, description: str, model: dict, batch_size: int, lr: float, warmup: int, **train
) -> RecipeSpec:
    """The two ViT recipes differ in size, batch, peak learning rate and budget; the rest is shared."""
    return register_recipe(
        RecipeSpec(
            name,
            description,
            preset_config("vit-tiny", **model),
            ClassificationConfig(batch_size=batch_size, max_shift=2),
            OptimConfig(
                optimizer="adamw",
                lr=lr,
                betas=(0.9, 0.999),
                eps=1e-8,
                weight_decay=0.05,
                schedule="cosine",
                warmup_steps=warmup,
            ),
            TrainConfig(out_dir=f"runs/{name}", **train),
            build_vit,
        )
    )


VIT_MNIST = _vit_recipe(
    "vit-mnist",
    "ViT on MNIST for CPU: 7x7 patches, 4 layers x 128, AdamW + cosine, shifts, 8 min 30 s budget",
    {},
    batch_size=128,
    lr=2e-3,
    warmup=200,
    max_steps=20000,
    max_minutes=8.5,
    log_every=50,
    eval_every=1000,
    checkpoint_every=1000,
    device="auto",
)
VIT_MNIST_GPU = _vit_recipe(
    "vit-mnist-gpu",
    "ViT on MNIST for one GPU: 4x4 patches, 6 layers x 256, a 258-second budget",
    {"patch_size": 4, "num_layers": 6, "d_model": 256, "num_heads": 8, "d_ff": 1024, "dropout": 0.1},
    batch_size=512,
    lr=1.5e-3,
    warmup=500,
    max_steps=12000,
    max_minutes=4.3,
    log_every=100,
    eval_every=2000,
    checkpoint_every=0,
    device="cuda",
)

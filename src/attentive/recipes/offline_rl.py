"""Offline reinforcement-learning recipes: Decision Transformers on CartPole and Acrobot data.

The dataset is generated once into the run folder (or read from ``dataset=PATH``); the model's
state and action sizes and its episode length come from it.
"""

from __future__ import annotations

from ..config import preset_config
from ..tasks.offline_rl import OfflineRLConfig, OfflineRLTask, dataset_for
from ..train.optim import OptimConfig
from ..train.trainer import TrainConfig
from .registry import Recipe, RecipeSpec, Settings, register_recipe


def build_dt(settings: Settings) -> Recipe:
    dataset = dataset_for(settings.data, settings.train.out_dir)
    model = settings.model
    shaped = {
        "state_dim": dataset.obs_dim,
        "n_actions": dataset.n_actions,
        "max_timestep": int(dataset.max_episode_steps),
    }
    if "max_len" not in settings.explicit:
        shaped["max_len"] = 3 * model.context_len  # (return, state, action) tokens per step
    config = model.replace(**{k: v for k, v in shaped.items() if k not in settings.explicit})
    task = OfflineRLTask(dataset, config.context_len, settings.data, seed=settings.train.seed)
    return Recipe(task, settings.new_model(config), settings.train)


def _optim(lr: float, warmup: int) -> OptimConfig:
    return OptimConfig(
        optimizer="adamw",
        lr=lr,
        betas=(0.9, 0.95),
        eps=1e-8,
        weight_decay=1e-4,
        schedule="cosine",
        warmup_steps=warmup,
        min_lr_ratio=0.1,
    )


DT_CARTPOLE = register_recipe(
    RecipeSpec(
        "dt-cartpole",
        "Decision Transformer on offline CartPole-v1 data; target 500 -> mean return",
        preset_config("decision-transformer"),
        OfflineRLConfig(env_id="CartPole-v1", episodes_per_policy=500, targets=(100.0, 250.0, 500.0)),
        _optim(6e-4, 400),
        TrainConfig(
            out_dir="runs/dt-cartpole",
            max_steps=2500,
            log_every=50,
            eval_every=500,
            checkpoint_every=500,
            device="auto",
        ),
        build_dt,
    )
)
DT_ACROBOT = register_recipe(
    RecipeSpec(
        "dt-acrobot",
        "Decision Transformer on offline Acrobot-v1 data; target -70 -> mean return",
        preset_config("decision-transformer"),
        OfflineRLConfig(env_id="Acrobot-v1", episodes_per_policy=300, targets=(-200.0, -120.0, -70.0)),
        _optim(6e-4, 400),
        TrainConfig(
            out_dir="runs/dt-acrobot",
            max_steps=5000,
            log_every=50,
            eval_every=1000,
            checkpoint_every=1000,
            device="auto",
        ),
        build_dt,
    )
)

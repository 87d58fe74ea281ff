"""Offline reinforcement learning with a Decision Transformer (gymnasium classic control).

Training is supervised: windows of K steps from a fixed dataset of behaviour episodes,
cross-entropy on the actions taken. Evaluation plays the environment, asking the model for
a target return; the achieved return is the figure of merit, and sweeping the target shows
whether the model follows it.

What inference needs beyond the weights (state normalisation, return-to-go scale, env id,
the data's behaviour returns) is written as ``rl.json`` beside the weights.

Dimension legend: N parallel episodes, B batch, K context steps, S state size, A actions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.rl import (
    BehaviourPolicy,
    OfflineDataset,
    SegmentBatch,
    StateStats,
    behaviour_policies,
    generate_dataset,
    load_dataset,
    make_env,
    sample_segments,
)
from ..checkpoint import save_json
from ..viz.figure import save_figure
from ..train.task import Task

ARTIFACTS_NAME = "rl.json"


# ----------------------------------------------------------------------------- data

# Each heuristic of data.rl is a linear rule: action ``on`` if w . obs > 0, else ``off``.
# CartPole (x, v, theta, omega): push right if omega + 0.2 theta > 0; parameter noise adds gains
# on the cart's position and velocity, which the heuristic ignores. Acrobot (cos1, sin1, cos2,
# sin2, w1, w2): torque against link 1's angular velocity; noise adds a gain on link 2's.
PARAMETER_NOISE: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {
    "CartPole-v1": (np.array([0.0, 0.0, 0.2, 1.0]), np.array([0.05, 0.1, 0.0, 0.0]), (1, 0)),
    "Acrobot-v1": (np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.5]), (0, 2)),
}


class ParameterNoisePolicy(BehaviourPolicy):
    """A linear heuristic with noise in its parameters rather than its actions (Plappert et al., 2018).

    Each episode draws fresh gains for terms the heuristic leaves out. Some draws do worse
    than the heuristic, some better (CartPole: most drift off the track as the heuristic
    does, some keep the cart centred for all 500 steps); the policy's mean return stays
    below the best achievable. Unlike epsilon-noise, whose most likely action in every state
    is the heuristic's, its best episodes act differently from its worst ones, and a
    return-conditioned model can tell them apart.
    """

    def __init__(
        self,
        name: str,
        n_actions: int,
        weights: np.ndarray,
        sigma: np.ndarray,
        actions: tuple[int, int],
        rng: np.random.Generator,
    ):
        super().__init__(name, n_actions, heuristic=self._rule, rng=rng)
        self.base, self.sigma = np.asarray(weights, np.float64), np.asarray(sigma, np.float64)
        self.on, self.off = actions
        self.reset()

    def reset(self) -> None:
        self.weights = self.base + self.sigma * self.rng.standard_normal(self.base.shape)

    def _rule(self, observation: np.ndarray) -> int:
        return self.on if float(np.dot(self.weights, observation)) > 0 else self.off


def recipe_policies(env_id: str, n_actions: int, seed: int = 0, parameter_noise: bool = True) -> list[BehaviourPolicy]:
    """The data layer's mix (random, heuristic, epsilon-noisy heuristics), plus the parameter-noise
    heuristic where one is defined for ``env_id`` and ``parameter_noise`` is on."""
    policies = behaviour_policies(env_id, n_actions, seed)
    if parameter_noise and env_id in PARAMETER_NOISE:
        weights, sigma, actions = PARAMETER_NOISE[env_id]
        rng = np.random.default_rng([seed, len(policies)])
        policies.append(ParameterNoisePolicy("heuristic-param-noise", n_actions, weights, sigma, actions, rng))
    return policies


def make_dataset(
    env_id: str,
    episodes_per_policy: int = 200,
    seed: int = 0,
    parameter_noise: bool = True,
    path: str | Path | None = None,
) -> OfflineDataset:
    """Generate the Decision Transformer recipes' dataset (see :func:`recipe_policies`)."""
    env = make_env(env_id)  # a one-line error for an unknown id, before any work
    n_actions = int(env.action_space.n)
    env.close()
    policies = recipe_policies(env_id, n_actions, seed, parameter_noise)
    return generate_dataset(env_id, episodes_per_policy, seed, path=path, policies=policies)


# ----------------------------------------------------------------------------- inference state


@dataclass
class RLArtifacts:
    """Everything but the weights that a trained Decision Transformer needs to act."""

    env_id: str
    rtg_scale: float
    state_mean: list[float]
    state_std: list[float]
    max_episode_steps: int
    behaviour_returns: dict[str, float] = field(default_factory=dict)  # mean return per data policy
    targets: list[float] = field(default_factory=list)  # the recipe's evaluation targets

    @property
    def stats(self) -> StateStats:
        return StateStats(np.asarray(self.state_mean, np.float32), np.asarray(self.state_std, np.float32))

    @property
    def best_behaviour(self) -> tuple[str, float]:
        name = max(self.behaviour_returns, key=self.behaviour_returns.get)
        return name, self.behaviour_returns[name]

    def save(self, directory: str | Path) -> None:
        save_json(Path(directory) / ARTIFACTS_NAME, dataclasses.asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> RLArtifacts:
        path = Path(directory) / ARTIFACTS_NAME
        if not path.is_file():
            raise ValueError(f"{directory}: no {ARTIFACTS_NAME} (is this a Decision Transformer checkpoint?)")
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path}: not a valid {ARTIFACTS_NAME} ({err})") from None

    @classmethod
    def from_dataset(cls, dataset: OfflineDataset, rtg_scale: float, targets: list[float]) -> RLArtifacts:
        stats = dataset.state_stats()
        return cls(
            env_id=dataset.env_id,
            rtg_scale=float(rtg_scale),
            state_mean=stats.mean.tolist(),
            state_std=stats.std.tolist(),
            max_episode_steps=int(dataset.max_episode_steps),
            behaviour_returns={k: float(v.mean()) for k, v in dataset.returns_by_policy().items() if len(v)},
            targets=[float(t) for t in targets],
        )


class DecisionTransformerAgent:
    """Acts with a Decision Transformer for N episodes in lockstep (N = 1 for the Agent protocol).

    It keeps the last K steps of each episode as the model saw them in training: left-padded,
    states normalised, return-to-go scaled. The return-to-go starts at the target and drops
    by each reward earned. The action slot of the current step holds a placeholder, which the
    causal mask hides from the state token that predicts it.
    """

    def __init__(
        self,
        model: nn.Module,
        artifacts: RLArtifacts,
        target_return: float,
        device: str | torch.device = "cpu",
    ):
        self.model, self.artifacts = model.eval(), artifacts
        self.target_return = float(target_return)
        self.device = torch.device(device)
        self.stats = artifacts.stats
        self.reset()

    def reset(self, n: int = 1) -> None:
        cfg = self.model.config
        k, d = cfg.context_len, self.device
        self.step = 0
        self.states = torch.zeros(n, k, cfg.state_dim, device=d)  # (N, K, S)
        self.actions = torch.zeros(n, k, dtype=torch.long, device=d)  # (N, K)
        self.returns_to_go = torch.zeros(n, k, 1, device=d)  # (N, K, 1)
        self.timesteps = torch.zeros(n, k, dtype=torch.long, device=d)  # (N, K)
        self.mask = torch.zeros(n, k, dtype=torch.bool, device=d)  # (N, K)

    def act(self, observation: np.ndarray, reward: float) -> int:
        return int(self.act_batch(np.asarray(observation)[None], np.asarray([reward]))[0])

    @torch.no_grad()
    def act_batch(self, observations: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """observations ``(N, S)``, rewards ``(N,)`` earned by the previous actions -> actions ``(N,)``."""
        if self.step == 0:
            rtg = torch.full((len(observations),), self.target_return / self.artifacts.rtg_scale, device=self.device)
        else:
            reward = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
            rtg = self.returns_to_go[:, -1, 0] - reward / self.artifacts.rtg_scale
        obs = torch.as_tensor(np.asarray(observations, np.float32), device=self.device)
        for buf in (self.states, self.actions, self.returns_to_go, self.timesteps, self.mask):
            buf.copy_(buf.roll(-1, dims=1))  # oldest step out, newest slot at the end
        self.states[:, -1] = self.stats.apply(obs)
        self.actions[:, -1] = 0  # placeholder, hidden from the prediction by the causal mask
        self.returns_to_go[:, -1, 0] = rtg
        self.timesteps[:, -1] = self.step
        self.mask[:, -1] = True
        logits = self.model(self.states, self.actions, self.returns_to_go, self.timesteps, self.mask)  # (N, K, A)
        action = logits[:, -1].argmax(-1)  # (N,)
        self.actions[:, -1] = action
        self.step += 1
        return action.cpu().numpy()


def evaluate_returns(
    model: nn.Module,
    artifacts: RLArtifacts,
    target_return: float,
    episodes: int = 20,
    seed: int = 10_000,
    device: str | torch.device = "cpu",
) -> list[float]:
    """Returns of ``episodes`` episodes played in lockstep, episode ``i`` reset with ``seed + i``
    (the same seeds as ``data.rl.evaluate_policy``), greedy actions given ``target_return``."""
    if episodes <= 0:
        raise ValueError(f"episodes must be > 0, got {episodes}")
    envs = [make_env(artifacts.env_id) for _ in range(episodes)]
    agent = DecisionTransformerAgent(model, artifacts, target_return, device)
    agent.reset(episodes)
    try:
        obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
        rewards = np.zeros(episodes, np.float32)
        totals = np.zeros(episodes, np.float64)
        active = np.ones(episodes, bool)
        while active.any():
            actions = agent.act_batch(obs, rewards)
            for i in np.flatnonzero(active):
                o, r, terminated, truncated, _ = envs[i].step(int(actions[i]))
                obs[i], rewards[i] = o, r
                totals[i] += r
                active[i] = not (terminated or truncated)
    finally:
        for env in envs:
            env.close()
    return totals.tolist()


def sweep_targets(
    model: nn.Module,
    artifacts: RLArtifacts,
    targets: Sequence[float],
    episodes: int = 20,
    seed: int = 10_000,
    device: str | torch.device = "cpu",
) -> list[dict[str, float]]:
    """Mean and std of the achieved return for each target return."""
    rows = []
    for target in targets:
        returns = np.asarray(evaluate_returns(model, artifacts, target, episodes, seed, device))
        rows.append(
            {
                "target": float(target),
                "mean": float(returns.mean()),
                "std": float(returns.std()),
                "min": float(returns.min()),
                "max": float(returns.max()),
            }
        )
    return rows


def plot_target_sweep(rows: list[dict[str, float]], artifacts: RLArtifacts, png_path: str | Path) -> Path:
    """Achieved vs target return (mean +/- std), the diagonal, and the data's behaviour policies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [r["target"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    lo, hi = min(targets + [r["mean"] - r["std"] for r in rows]), max(targets + [r["mean"] + r["std"] for r in rows])
    ax.plot([lo, hi], [lo, hi], ":", color="grey", label="achieved = target")
    ax.errorbar(
        targets,
        [r["mean"] for r in rows],
        yerr=[r["std"] for r in rows],
        fmt="o-",
        capsize=4,
        label="Decision Transformer",
    )
    for (name, mean), style in zip(
        sorted(artifacts.behaviour_returns.items(), key=lambda kv: -kv[1])[:3], ("--", "-.", (0, (1, 3)))
    ):
        ax.axhline(mean, linestyle=style, color="tab:red", alpha=0.7, label=f"data: {name} ({mean:.0f})")
    ax.set_xlabel("target return")
    ax.set_ylabel("achieved return")
    ax.set_title(f"{artifacts.env_id}: return-conditioned control")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, png_path)


# ----------------------------------------------------------------------------- the task


@dataclass
class OfflineRLConfig:
    """Data and evaluation settings of a Decision Transformer run."""

    env_id: str = "CartPole-v1"
    dataset: str | None = None  # .npz from `attentive rl-data`; None: generate into the run folder
    episodes_per_policy: int = 200
    data_seed: int = 0
    parameter_noise: bool = True  # add the parameter-noise heuristic to the mix
    batch_size: int = 64
    batches_per_epoch: int = 500
    rtg_scale: float | None = None  # None: the largest |return| in the data
    targets: tuple[float, ...] = (100.0, 250.0, 500.0)  # final evaluation; the last one is also periodic
    eval_episodes: int = 20
    periodic_eval_episodes: int = 5
    eval_seed: int = 10_000  # far from the data's seeds (0 .. policies * episodes_per_policy)

    def __post_init__(self) -> None:
        self.targets = tuple(float(t) for t in self.targets)
        for name in ("episodes_per_policy", "batch_size", "batches_per_epoch", "eval_episodes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.targets:
            raise ValueError("targets must name at least one target return")
        if self.rtg_scale is not None and self.rtg_scale <= 0:
            raise ValueError(f"rtg_scale must be positive, got {self.rtg_scale}")


class _SegmentBatches(Sequence):
    """One epoch of sampled windows; batch ``i`` is drawn from its own seeded generator."""

    def __init__(self, task: OfflineRLTask, count: int, seed: int):
        self.task, self.count, self.seed = task, count, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> SegmentBatch:
        if not 0 <= i < self.count:
            raise IndexError(i)
        t = self.task
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return sample_segments(
            t.dataset,
            t.config.batch_size,
            t.context_len,
            generator=g,
            rtg_scale=t.artifacts.rtg_scale,
            state_stats=t.stats,
        )


class OfflineRLTask(Task):
    """Action cross-entropy on dataset windows; achieved returns at target returns."""

    unit = "step"

    def __init__(self, dataset: OfflineDataset, context_len: int, config: OfflineRLConfig | None = None, seed: int = 0):
        self.config = config or OfflineRLConfig(env_id=dataset.env_id)
        self.dataset, self.context_len, self.seed = dataset, context_len, seed
        self.name = f"dt-{dataset.env_id}"
        rtg_scale = self.config.rtg_scale or float(np.abs(dataset.episode_returns).max()) or 1.0
        self.artifacts = RLArtifacts.from_dataset(dataset, rtg_scale, list(self.config.targets))
        self.stats = self.artifacts.stats

    def train_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> Sequence[SegmentBatch]:
        count = max(1, self.config.batches_per_epoch // world_size)
        return _SegmentBatches(self, count, seed=(self.seed * 7919 + epoch) * 131 + rank)

    def count(self, batch: SegmentBatch) -> int:
        return int(batch.mask.sum())

    def loss(self, model: nn.Module, batch: SegmentBatch) -> tuple[Tensor, dict[str, float]]:
        logits = model(batch.states, batch.actions, batch.returns_to_go, batch.timesteps, batch.mask)  # (B, K, A)
        losses = F.cross_entropy(logits.float().flatten(0, 1), batch.actions.flatten(), reduction="none")  # (B*K,)
        return (losses * batch.mask.flatten()).sum(), {}

    def _device(self, model: nn.Module) -> torch.device:
        return next(model.parameters()).device

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        target = self.config.targets[-1]
        returns = evaluate_returns(
            model,
            self.artifacts,
            target,
            self.config.periodic_eval_episodes,
            self.config.eval_seed,
            self._device(model),
        )
        return {"target": target, "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns))}

    def final_evaluate(self, model: nn.Module) -> dict[str, Any]:
        rows = sweep_targets(
            model,
            self.artifacts,
            self.config.targets,
            self.config.eval_episodes,
            self.config.eval_seed,
            self._device(model),
        )
        best_name, best_mean = self.artifacts.best_behaviour
        return {
            "env_id": self.artifacts.env_id,
            "episodes": self.config.eval_episodes,
            "seed": self.config.eval_seed,
            "returns": rows,
            "best_behaviour_policy": best_name,
            "best_behaviour_mean": best_mean,
        }

    def save_artifacts(self, directory: Path) -> None:
        self.artifacts.save(directory)


def dataset_for(config: OfflineRLConfig, out_dir: str) -> OfflineDataset:
    """The given .npz, or one generated once into the run folder and reused after that."""
    if config.dataset:
        dataset = load_dataset(config.dataset)
        if dataset.env_id != config.env_id:
            raise ValueError(f"{config.dataset} holds {dataset.env_id} episodes, but the recipe is for {config.env_id}")
        return dataset
    mix = "pn" if config.parameter_noise and config.env_id in PARAMETER_NOISE else "stock"
    path = Path(out_dir) / f"dataset-{config.env_id}-{mix}-{config.episodes_per_policy}x-seed{config.data_seed}.npz"
    if path.is_file():
        return load_dataset(path)
    return make_dataset(config.env_id, config.episodes_per_policy, config.data_seed, config.parameter_noise, path)

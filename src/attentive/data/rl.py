"""Offline RL data for the Decision Transformer: behaviour policies, datasets, segments.

Dimension legend: T steps in the whole dataset, E episodes, B batch, K context length,
S observation size.

The environments are gymnasium's classic-control tasks (CartPole-v1, Acrobot-v1; any
registered id with discrete actions and flat observations also works, with the random
policy only). Behaviour policies are a random one, a scripted heuristic that is good but
deliberately imperfect, and the heuristic with epsilon-random actions, so the returns span
low to high and a return-conditioned model has something above the data's mean to reach.

Agent protocol (used to generate data and to evaluate a model): ``reset()`` at the start
of each episode, then ``act(observation, reward) -> int`` once per step, where ``reward``
is the reward the previous action earned (0.0 on the first step). A Decision Transformer
keeps its own history of states, actions and return-to-go between these calls. A plain
callable ``act_fn(observation) -> int`` is accepted wherever an agent is.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..fileio import atomic_write_bytes

SUPPORTED_ENVS = ("CartPole-v1", "Acrobot-v1")
EPSILONS = (0.1, 0.25, 0.5)
FORMAT_VERSION = 1

_ARRAY_KEYS = (
    "observations",
    "actions",
    "rewards",
    "terminals",
    "dones",
    "episode_starts",
    "episode_lengths",
    "episode_returns",
    "episode_policies",
    "episode_seeds",
)


# ---------------------------------------------------------------- environments


def _gym():
    try:
        import gymnasium
    except ImportError as exc:  # optional dependency
        raise ImportError("offline RL needs gymnasium: pip install 'attentive[rl]'") from exc
    return gymnasium


def make_env(env_id: str):
    """A gymnasium env with discrete actions and flat observations, or a one-line ValueError."""
    gym = _gym()
    supported = ", ".join(SUPPORTED_ENVS)
    try:
        gym.spec(env_id)
    except gym.error.Error:
        raise ValueError(
            f"unknown environment {env_id!r}; supported: {supported} (or another registered gymnasium id)"
        ) from None
    env = gym.make(env_id, disable_env_checker=True)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise ValueError(f"environment {env_id!r} has {env.action_space} actions; expected Discrete ({supported})")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise ValueError(f"environment {env_id!r} has {env.observation_space} observations; expected a flat Box")
    return env


# ---------------------------------------------------------------- agents and policies


@runtime_checkable
class Agent(Protocol):
    """Something that plays an episode; see the module docstring for the calling order."""

    def reset(self) -> None: ...

    def act(self, observation: np.ndarray, reward: float) -> int: ...


@dataclass
class _CallableAgent:
    """Adapts ``act_fn(observation) -> int`` to the :class:`Agent` protocol."""

    act_fn: Callable[[np.ndarray], int]

    def reset(self) -> None:
        pass

    def act(self, observation: np.ndarray, reward: float) -> int:
        return int(self.act_fn(observation))


def as_agent(agent: Agent | Callable[[np.ndarray], int]) -> Agent:
    if isinstance(agent, Agent):
        return agent
    if callable(agent):
        return _CallableAgent(agent)
    raise TypeError(f"expected an Agent (reset/act) or a callable act_fn(observation), got {type(agent).__name__}")


def cartpole_heuristic(obs: np.ndarray) -> int:
    """Push towards where the pole is swinging (plus a little angle).

    It balances the pole but ignores the cart's position, so the cart drifts off the track
    after roughly 150-450 steps: good, never perfect (mean return about 240 of 500).
    """
    return int(obs[3] + 0.2 * obs[2] > 0)


def acrobot_heuristic(obs: np.ndarray) -> int:
    """Energy pumping: torque against the first link's angular velocity.

    With gymnasium's sign convention the reaction on link 1 then pushes it along its swing,
    adding energy each half swing; it reaches the line in about 70-140 steps (return ~ -85).
    """
    return 0 if obs[4] > 0 else 2


HEURISTICS: dict[str, Callable[[np.ndarray], int]] = {
    "CartPole-v1": cartpole_heuristic,
    "Acrobot-v1": acrobot_heuristic,
}


@dataclass
class BehaviourPolicy:
    """Random (``heuristic=None``) or heuristic with probability ``epsilon`` of a random action."""

    name: str
    n_actions: int
    heuristic: Callable[[np.ndarray], int] | None = None
    epsilon: float = 0.0
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def reset(self) -> None:
        pass

    def act(self, observation: np.ndarray, reward: float) -> int:
        if self.heuristic is None or (self.epsilon > 0 and self.rng.random() < self.epsilon):
            return int(self.rng.integers(self.n_actions))
        return int(self.heuristic(observation))


def behaviour_policies(env_id: str, n_actions: int, seed: int = 0) -> list[BehaviourPolicy]:
    """The data's policies: random, heuristic, heuristic with each epsilon in ``EPSILONS``."""
    rngs = [np.random.default_rng([seed, i]) for i in range(2 + len(EPSILONS))]
    policies = [BehaviourPolicy("random", n_actions, rng=rngs[0])]
    heuristic = HEURISTICS.get(env_id)
    if heuristic is not None:
        policies.append(BehaviourPolicy("heuristic", n_actions, heuristic, rng=rngs[1]))
        for i, eps in enumerate(EPSILONS):
            policies.append(BehaviourPolicy(f"heuristic-eps{eps:.2f}", n_actions, heuristic, eps, rngs[2 + i]))
    return policies


@dataclass
class Episode:
    """One recorded episode; ``observations[t]`` is what the agent saw before ``actions[t]``."""

    observations: np.ndarray  # (L, S) float32
    actions: np.ndarray  # (L,) int64
    rewards: np.ndarray  # (L,) float32
    terminated: bool  # the task ended (pole fell / goal reached), not a time limit

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())


def run_episode(env, agent: Agent, seed: int, max_steps: int | None = None) -> Episode:
    """Play one seeded episode to its end (or ``max_steps``) and record it."""
    obs, _ = env.reset(seed=seed)
    agent.reset()
    observations, actions, rewards = [], [], []
    reward, terminated = 0.0, False
    while max_steps is None or len(actions) < max_steps:
        action = agent.act(obs, reward)
        observations.append(np.asarray(obs, dtype=np.float32))
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        reward = float(reward)
        rewards.append(reward)
        if terminated or truncated:
            break
    return Episode(
        observations=np.stack(observations),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=bool(terminated),
    )


def evaluate_policy(
    env_id: str,
    agent: Agent | Callable[[np.ndarray], int],
    episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
) -> list[float]:
    """Returns of ``episodes`` episodes, episode ``i`` reset with seed ``seed + i``."""
    if episodes <= 0:
        raise ValueError(f"episodes must be > 0, got {episodes}")
    env = make_env(env_id)
    agent = as_agent(agent)
    try:
        return [run_episode(env, agent, seed + i, max_steps).total_return for i in range(episodes)]
    finally:
        env.close()


# ---------------------------------------------------------------- dataset


@dataclass
class StateStats:
    """Per-feature mean and std of the dataset's observations; the model keeps these."""

    mean: np.ndarray  # (S,) float32
    std: np.ndarray  # (S,) float32

    def apply(self, observations: np.ndarray | torch.Tensor):
        if isinstance(observations, torch.Tensor):
            mean = torch.as_tensor(self.mean, device=observations.device)
            std = torch.as_tensor(self.std, device=observations.device)
            return (observations - mean) / std
        return (observations - self.mean) / self.std


@dataclass
class OfflineDataset:
    """Episodes laid end to end; ``episode_starts``/``episode_lengths`` cut them apart."""

    env_id: str
    max_episode_steps: int
    n_actions: int  # size of the discrete action space (not just the actions seen)
    policy_names: tuple[str, ...]
    observations: np.ndarray  # (T, S) float32
    actions: np.ndarray  # (T,) int64
    rewards: np.ndarray  # (T,) float32
    terminals: np.ndarray  # (T,) bool, the env terminated after this step
    dones: np.ndarray  # (T,) bool, last step of its episode (terminated or truncated)
    episode_starts: np.ndarray  # (E,) int64
    episode_lengths: np.ndarray  # (E,) int64
    episode_returns: np.ndarray  # (E,) float32
    episode_policies: np.ndarray  # (E,) int64, index into policy_names
    episode_seeds: np.ndarray  # (E,) int64, env.reset seed of each episode
    _rtg: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_lengths)

    @property
    def num_steps(self) -> int:
        return len(self.actions)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def returns_to_go(self) -> np.ndarray:
        """(T,) float32: undiscounted sum of this and later rewards within the episode."""
        if self._rtg is None:
            rtg = np.empty(self.num_steps, dtype=np.float64)
            for s, n in zip(self.episode_starts, self.episode_lengths):
                rtg[s : s + n] = np.cumsum(self.rewards[s : s + n][::-1].astype(np.float64))[::-1]
            self._rtg = rtg.astype(np.float32)
        return self._rtg

    @property
    def timesteps(self) -> np.ndarray:
        """(T,) int64: step index within the episode."""
        ep_of_step = np.repeat(np.arange(self.num_episodes), self.episode_lengths)
        return np.arange(self.num_steps) - self.episode_starts[ep_of_step]

    def state_stats(self, eps: float = 1e-6) -> StateStats:
        obs = self.observations.astype(np.float64)
        return StateStats(obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32))

    def returns_by_policy(self) -> dict[str, np.ndarray]:
        return {name: self.episode_returns[self.episode_policies == i] for i, name in enumerate(self.policy_names)}

    def summary(self, bins: int = 5) -> str:
        """A small table: per policy, episodes and return mean/std/min/max; then a histogram."""
        lines = [f"{self.env_id}: {self.num_episodes} episodes, {self.num_steps} steps"]
        lines.append(f"{'policy':<20} {'n':>5} {'mean':>8} {'std':>7} {'min':>7} {'max':>7}")
        for name, r in self.returns_by_policy().items():
            if len(r):
                lines.append(f"{name:<20} {len(r):>5} {r.mean():>8.1f} {r.std():>7.1f} {r.min():>7.0f} {r.max():>7.0f}")
        counts, edges = np.histogram(self.episode_returns, bins=bins)
        hist = ", ".join(f"[{lo:.0f},{hi:.0f}): {c}" for lo, hi, c in zip(edges[:-1], edges[1:], counts))
        lines.append(f"returns histogram: {hist}")
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        """Write an .npz (no pickled objects) atomically: a temp file, then a rename."""
        path = Path(path)
        arrays = {key: getattr(self, key) for key in _ARRAY_KEYS}
        arrays["env_id"] = np.array(self.env_id)
        arrays["policy_names"] = np.array(self.policy_names, dtype=str)
        arrays["max_episode_steps"] = np.array(self.max_episode_steps, dtype=np.int64)
        arrays["n_actions"] = np.array(self.n_actions, dtype=np.int64)
        arrays["format_version"] = np.array(FORMAT_VERSION, dtype=np.int64)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())  # ranks under torchrun may write it at once


def load_dataset(path: str | Path) -> OfflineDataset:
    """Read a dataset written by :func:`generate_dataset` / :meth:`OfflineDataset.save`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such dataset file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not an .npz RL dataset ({exc})") from exc
    scalars = ("env_id", "policy_names", "max_episode_steps", "n_actions")
    missing = [k for k in (*_ARRAY_KEYS, *scalars) if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not an RL dataset (missing {', '.join(missing)})")
    version = int(arrays.get("format_version", FORMAT_VERSION))
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: dataset format version {version}; expected {FORMAT_VERSION}")
    ds = OfflineDataset(
        env_id=str(arrays["env_id"]),
        max_episode_steps=int(arrays["max_episode_steps"]),
        n_actions=int(arrays["n_actions"]),
        policy_names=tuple(str(n) for n in arrays["policy_names"]),
        **{key: arrays[key] for key in _ARRAY_KEYS},
    )
    total = int(ds.episode_lengths.sum())
    if total != ds.num_steps or len(ds.observations) != ds.num_steps:
        raise ValueError(f"{path}: episode lengths sum to {total}, but it has {ds.num_steps} steps")
    return ds


def generate_dataset(
    env_id: str,
    episodes_per_policy: int = 200,
    seed: int = 0,
    path: str | Path | None = None,
    policies: list[BehaviourPolicy] | None = None,
) -> OfflineDataset:
    """Roll out every behaviour policy; save to ``path`` when given.

    ``policies`` replaces the default mix of :func:`behaviour_policies` (a recipe may add its own).

    Episode ``i`` of policy ``p`` is reset with seed ``seed + p * episodes_per_policy + i``,
    so the data is reproducible; evaluate on other seeds. CartPole runs about 180k steps/s
    and Acrobot about 40k steps/s on one core, so the default takes a few seconds.
    """
    if episodes_per_policy <= 0:
        raise ValueError(f"episodes_per_policy must be > 0, got {episodes_per_policy}")
    env = make_env(env_id)
    try:
        if policies is None:
            policies = behaviour_policies(env_id, int(env.action_space.n), seed)
        episodes: list[Episode] = []
        policy_index, seeds = [], []
        for p, policy in enumerate(policies):
            for i in range(episodes_per_policy):
                ep_seed = seed + p * episodes_per_policy + i
                episodes.append(run_episode(env, policy, ep_seed))
                policy_index.append(p)
                seeds.append(ep_seed)
        max_steps = env.spec.max_episode_steps if env.spec is not None else None
        n_actions = int(env.action_space.n)
    finally:
        env.close()
    lengths = np.array([len(e.actions) for e in episodes], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    terminals = np.zeros(int(lengths.sum()), dtype=bool)
    dones = np.zeros(int(lengths.sum()), dtype=bool)
    last = starts + lengths - 1
    dones[last] = True
    terminals[last] = [e.terminated for e in episodes]
    ds = OfflineDataset(
        env_id=env_id,
        max_episode_steps=int(max_steps or lengths.max()),
        n_actions=n_actions,
        policy_names=tuple(p.name for p in policies),
        observations=np.concatenate([e.observations for e in episodes]),
        actions=np.concatenate([e.actions for e in episodes]),
        rewards=np.concatenate([e.rewards for e in episodes]),
        terminals=terminals,
        dones=dones,
        episode_starts=starts,
        episode_lengths=lengths,
        episode_returns=np.array([e.total_return for e in episodes], dtype=np.float32),
        episode_policies=np.array(policy_index, dtype=np.int64),
        episode_seeds=np.array(seeds, dtype=np.int64),
    )
    if path is not None:
        ds.save(path)
    return ds


# ---------------------------------------------------------------- Decision Transformer segments


@dataclass
class SegmentBatch:
    """K-step windows of trajectories; ``mask`` is True on real steps, False on padding."""

    states: torch.Tensor  # (B, K, S) float32
    actions: torch.Tensor  # (B, K) int64, 0 on padding
    returns_to_go: torch.Tensor  # (B, K, 1) float32, divided by rtg_scale
    timesteps: torch.Tensor  # (B, K) int64, step within the episode, 0 on padding
    mask: torch.Tensor  # (B, K) bool

    def to(self, device: torch.device | str) -> SegmentBatch:
        fields = ("states", "actions", "returns_to_go", "timesteps", "mask")
        return SegmentBatch(*(getattr(self, f).to(device) for f in fields))


def sample_segments(
    dataset: OfflineDataset,
    batch_size: int,
    context_len: int,
    generator: torch.Generator | None = None,
    rtg_scale: float = 1.0,
    state_stats: StateStats | None = None,
    pad_side: str = "left",
) -> SegmentBatch:
    """Sample ``batch_size`` windows of ``context_len`` steps, as in the Decision Transformer.

    An episode is drawn with probability proportional to its length and a start uniformly
    among its steps; a window running past the episode's end is padded (zeros, mask False),
    on the left by default (the real steps end at the last position, where the model
    predicts during evaluation). States are normalised with ``state_stats`` when given
    (use ``dataset.state_stats()``). Deterministic given ``generator``.
    """
    if batch_size <= 0 or context_len <= 0:
        raise ValueError(f"batch_size and context_len must be > 0, got {batch_size} and {context_len}")
    if pad_side not in ("left", "right"):
        raise ValueError(f"pad_side must be 'left' or 'right', got {pad_side!r}")
    if rtg_scale <= 0:
        raise ValueError(f"rtg_scale must be > 0, got {rtg_scale}")
    lengths = torch.from_numpy(dataset.episode_lengths)
    episode = torch.multinomial(lengths.double(), batch_size, replacement=True, generator=generator)  # (B,)
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    ep_len = lengths[episode]  # (B,)
    start = (u * ep_len).long().clamp(max=ep_len - 1)  # (B,) start within the episode
    n_real = torch.minimum(ep_len - start, torch.tensor(context_len))  # (B,)
    pos = torch.arange(context_len)  # (K,)
    if pad_side == "left":
        offset = pos[None, :] - (context_len - n_real)[:, None]  # (B, K), negative on padding
        mask = offset >= 0
    else:
        offset = pos[None, :].expand(batch_size, -1)
        mask = offset < n_real[:, None]
    step = torch.from_numpy(dataset.episode_starts)[episode][:, None] + start[:, None] + offset.clamp(min=0)
    step = torch.where(mask, step, torch.zeros_like(step))  # (B, K) index into the flat arrays

    obs = torch.from_numpy(dataset.observations)[step]  # (B, K, S)
    if state_stats is not None:
        obs = state_stats.apply(obs)
    zero = torch.zeros((), dtype=obs.dtype)
    states = torch.where(mask[..., None], obs, zero)
    actions = torch.where(mask, torch.from_numpy(dataset.actions)[step], 0)
    rtg = torch.from_numpy(dataset.returns_to_go)[step] / rtg_scale
    returns_to_go = torch.where(mask, rtg, zero)[..., None]
    timesteps = torch.where(mask, start[:, None] + offset, 0)
    return SegmentBatch(states.float(), actions.long(), returns_to_go.float(), timesteps.long(), mask)


__all__ = [
    "EPSILONS",
    "HEURISTICS",
    "SUPPORTED_ENVS",
    "Agent",
    "BehaviourPolicy",
    "Episode",
    "OfflineDataset",
    "SegmentBatch",
    "StateStats",
    "acrobot_heuristic",
    "as_agent",
    "behaviour_policies",
    "cartpole_heuristic",
    "evaluate_policy",
    "generate_dataset",
    "load_dataset",
    "make_env",
    "run_episode",
    "sample_segments",
]

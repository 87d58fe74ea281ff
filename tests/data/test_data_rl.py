"""Offline RL data: behaviour policies, dataset files, Decision Transformer segments."""

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from attentive.data.rl import (  # noqa: E402
    OfflineDataset,
    SegmentBatch,
    cartpole_heuristic,
    evaluate_policy,
    generate_dataset,
    load_dataset,
    make_env,
    sample_segments,
)


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    path = tmp_path_factory.mktemp("rl") / "cartpole.npz"
    ds = generate_dataset("CartPole-v1", episodes_per_policy=8, seed=3, path=path)
    return ds, path


def toy_dataset() -> OfflineDataset:
    """Two episodes (lengths 3 and 5) with known observations and rewards."""
    lengths = np.array([3, 5])
    n = int(lengths.sum())
    rewards = np.array([1, 2, 3, 10, 20, 30, 40, 50], dtype=np.float32)
    dones = np.zeros(n, dtype=bool)
    dones[[2, 7]] = True
    return OfflineDataset(
        env_id="Toy-v0",
        max_episode_steps=5,
        n_actions=2,
        policy_names=("a", "b"),
        observations=np.arange(n * 2, dtype=np.float32).reshape(n, 2),
        actions=np.arange(n, dtype=np.int64) % 2,
        rewards=rewards,
        terminals=dones.copy(),
        dones=dones,
        episode_starts=np.array([0, 3]),
        episode_lengths=lengths,
        episode_returns=np.array([6, 150], dtype=np.float32),
        episode_policies=np.array([0, 1]),
        episode_seeds=np.array([0, 1]),
    )


def test_generate_roundtrip(cartpole):
    ds, path = cartpole
    assert ds.policy_names == ("random", "heuristic", "heuristic-eps0.10", "heuristic-eps0.25", "heuristic-eps0.50")
    assert ds.num_episodes == 40 and ds.obs_dim == 4 and ds.max_episode_steps == 500
    assert ds.episode_lengths.sum() == ds.num_steps == len(ds.observations)
    assert ds.dones.sum() == 40 and ds.dones[ds.episode_starts + ds.episode_lengths - 1].all()
    np.testing.assert_allclose(
        ds.episode_returns, [ds.rewards[s : s + n].sum() for s, n in zip(ds.episode_starts, ds.episode_lengths)]
    )
    back = load_dataset(path)
    assert back.env_id == "CartPole-v1" and back.policy_names == ds.policy_names
    assert back.n_actions == 2 and back.max_episode_steps == 500
    for key in ("observations", "actions", "rewards", "dones", "terminals", "episode_returns", "episode_policies"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key))
    again = generate_dataset("CartPole-v1", episodes_per_policy=8, seed=3)
    np.testing.assert_array_equal(again.observations, ds.observations)  # reproducible


def test_returns_spread(cartpole):
    ds, _ = cartpole
    by = ds.returns_by_policy()
    assert by["heuristic"].mean() > 5 * by["random"].mean()
    assert by["heuristic"].mean() > by["heuristic-eps0.50"].mean() > by["random"].mean()
    assert ds.episode_returns.min() < 50 and ds.episode_returns.max() > 150  # low to high
    assert "heuristic" in ds.summary()


def test_cartpole_heuristic_good_not_perfect():
    returns = evaluate_policy("CartPole-v1", cartpole_heuristic, episodes=20, seed=1000)
    assert len(returns) == 20
    assert 120 < np.mean(returns) < 450  # a return-conditioned model must be able to beat it


def test_acrobot_heuristic_beats_random():
    ds = generate_dataset("Acrobot-v1", episodes_per_policy=2, seed=0)
    by = ds.returns_by_policy()
    assert by["heuristic"].mean() > -200 > by["random"].mean()
    assert ds.n_actions == 3 and ds.obs_dim == 6


def test_evaluate_policy_seeds_and_agent_protocol():
    class Counting:
        def __init__(self):
            self.resets, self.rewards = 0, []

        def reset(self):
            self.resets += 1

        def act(self, observation, reward):
            self.rewards.append(reward)
            return cartpole_heuristic(observation)

    agent = Counting()
    returns = evaluate_policy("CartPole-v1", agent, episodes=3, seed=5)
    assert agent.resets == 3 and agent.rewards[0] == 0.0 and sum(agent.rewards) > 0
    assert returns == evaluate_policy("CartPole-v1", cartpole_heuristic, episodes=3, seed=5)
    with pytest.raises(TypeError, match="Agent"):
        evaluate_policy("CartPole-v1", 42, episodes=1)


def test_unknown_env():
    with pytest.raises(ValueError, match="CartPole-v1, Acrobot-v1"):
        make_env("NoSuchEnv-v9")
    with pytest.raises(ValueError, match="unknown environment"):
        generate_dataset("CartPole-v99", episodes_per_policy=1)


def test_other_registered_env_random_only():
    ds = generate_dataset("MountainCar-v0", episodes_per_policy=1, seed=0)
    assert ds.policy_names == ("random",)


def test_load_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_dataset(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        load_dataset(other)
    with pytest.raises(ValueError, match="no such"):
        load_dataset(tmp_path / "absent.npz")


def test_returns_to_go_direct():
    ds = toy_dataset()
    np.testing.assert_array_equal(ds.returns_to_go, [6, 5, 3, 150, 140, 120, 90, 50])
    np.testing.assert_array_equal(ds.timesteps, [0, 1, 2, 0, 1, 2, 3, 4])


def test_segment_shapes_and_determinism(cartpole):
    ds, _ = cartpole
    stats = ds.state_stats()
    a = sample_segments(ds, 16, 20, torch.Generator().manual_seed(0), rtg_scale=100.0, state_stats=stats)
    b = sample_segments(ds, 16, 20, torch.Generator().manual_seed(0), rtg_scale=100.0, state_stats=stats)
    c = sample_segments(ds, 16, 20, torch.Generator().manual_seed(1), rtg_scale=100.0, state_stats=stats)
    assert isinstance(a, SegmentBatch)
    assert a.states.shape == (16, 20, 4) and a.states.dtype == torch.float32
    assert a.actions.shape == (16, 20) and a.actions.dtype == torch.int64
    assert a.returns_to_go.shape == (16, 20, 1) and a.returns_to_go.dtype == torch.float32
    assert a.timesteps.shape == (16, 20) and a.timesteps.dtype == torch.int64
    assert a.mask.shape == (16, 20) and a.mask.dtype == torch.bool
    for f in ("states", "actions", "returns_to_go", "timesteps", "mask"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.timesteps, c.timesteps)
    assert abs(ds.state_stats().apply(ds.observations).mean()) < 1e-4


def test_segment_rtg_against_direct_computation(cartpole):
    ds, _ = cartpole
    batch = sample_segments(ds, 64, 10, torch.Generator().manual_seed(2), rtg_scale=10.0)
    starts = torch.from_numpy(ds.episode_starts)
    for b in range(64):
        for k in torch.nonzero(batch.mask[b]).flatten().tolist():
            obs = batch.states[b, k].numpy()
            t = int(batch.timesteps[b, k])
            hits = [
                e
                for e in range(ds.num_episodes)
                if t < ds.episode_lengths[e] and np.array_equal(ds.observations[starts[e] + t], obs)
            ]
            assert len(hits) == 1
            e = hits[0]
            s = int(starts[e]) + t
            direct = ds.rewards[s : ds.episode_starts[e] + ds.episode_lengths[e]].sum() / 10.0
            assert batch.returns_to_go[b, k, 0].item() == pytest.approx(direct, rel=1e-6)
            assert batch.actions[b, k].item() == ds.actions[s]


@pytest.mark.parametrize("pad_side", ["left", "right"])
def test_segment_padding_mask(pad_side):
    ds = toy_dataset()
    batch = sample_segments(ds, 200, 4, torch.Generator().manual_seed(0), pad_side=pad_side)
    n_real = batch.mask.sum(1)
    assert (n_real >= 1).all() and (n_real < 4).any()  # short windows at episode ends
    pad = ~batch.mask
    assert (batch.states[pad] == 0).all() and (batch.actions[pad] == 0).all()
    assert (batch.returns_to_go[pad] == 0).all() and (batch.timesteps[pad] == 0).all()
    if pad_side == "left":  # real steps are the last ones
        assert (batch.mask[:, -1]).all()
        assert (batch.mask.int().diff(dim=1) >= 0).all()
    else:
        assert (batch.mask[:, 0]).all()
        assert (batch.mask.int().diff(dim=1) <= 0).all()
    # consecutive real steps are consecutive in time, and every window ends inside its episode
    for b in range(200):
        t = batch.timesteps[b][batch.mask[b]]
        assert (t.diff() == 1).all()
        assert t.max() < 5


def test_segment_episode_proportional_to_length():
    ds = toy_dataset()
    batch = sample_segments(ds, 4000, 1, torch.Generator().manual_seed(0))
    long_share = (batch.returns_to_go[:, 0, 0] >= 50).float().mean().item()
    assert abs(long_share - 5 / 8) < 0.03


def test_segment_bad_args():
    with pytest.raises(ValueError, match="pad_side"):
        sample_segments(toy_dataset(), 2, 2, pad_side="middle")

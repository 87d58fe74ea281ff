"""Decision Transformer: token layout, causality, padding, the acting agent, and a tiny run with the shared trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attentive
from attentive.data.rl import HEURISTICS, Agent, evaluate_policy, generate_dataset, sample_segments
from attentive.models.decision import DecisionTransformer, DecisionTransformerConfig
from attentive.tasks.offline_rl import (
    PARAMETER_NOISE,
    DecisionTransformerAgent,
    OfflineRLConfig,
    OfflineRLTask,
    ParameterNoisePolicy,
    RLArtifacts,
    evaluate_returns,
    make_dataset,
)
from attentive.recipes import get_recipe
from attentive.train.trainer import Trainer

pytest.importorskip("gymnasium")


def tiny_dt(**overrides) -> DecisionTransformer:
    base = {
        "state_dim": 4,
        "n_actions": 2,
        "context_len": 5,
        "max_len": 15,
        "max_timestep": 500,
        "num_layers": 2,
        "d_model": 32,
        "num_heads": 2,
        "d_ff": 64,
        "dropout": 0.0,
        "attention_dropout": 0.0,
    }
    return DecisionTransformer(DecisionTransformerConfig(**{**base, **overrides})).eval()


def random_inputs(batch: int = 2, k: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, k, 4, generator=g),
        torch.randint(0, 2, (batch, k), generator=g),
        torch.rand(batch, k, 1, generator=g),
        torch.arange(k).repeat(batch, 1) + 7,
    )


@pytest.fixture(scope="module")
def small_dataset():
    return generate_dataset("CartPole-v1", episodes_per_policy=4, seed=0)


def test_tokens_interleave_return_state_action():
    model = tiny_dt()
    states, actions, rtg, steps = random_inputs()
    tokens = model.embed(states, actions, rtg, steps)  # (B, 3K, D)
    assert tokens.shape == (2, 15, 32)
    time = model.embed_timestep(steps)
    expected_state = model.embed_norm(model.embed_state(states) + time)
    torch.testing.assert_close(tokens[:, 1::3], expected_state)
    torch.testing.assert_close(tokens[:, 2::3], model.embed_norm(model.embed_action(actions) + time))


def test_action_prediction_never_sees_its_own_action_or_the_future():
    model = tiny_dt()
    states, actions, rtg, steps = random_inputs()
    logits = model(states, actions, rtg, steps)
    assert logits.shape == (2, 5, 2)
    changed = actions.clone()
    changed[:, 2] = 1 - changed[:, 2]  # a_2 may only influence predictions for steps 3 and 4
    states2 = states.clone()
    states2[:, 4] += 1.0  # s_4 may only influence the prediction at step 4
    again = model(states2, changed, rtg, steps)
    torch.testing.assert_close(again[:, :3], logits[:, :3])
    assert not torch.allclose(again[:, 3], logits[:, 3])


def test_left_padding_is_invisible_to_real_steps():
    model = tiny_dt()
    states, actions, rtg, steps = random_inputs(batch=1, k=3)
    short = model(states, actions, rtg, steps)  # (1, 3, A)
    pad = 2
    padded = model(
        torch.cat([torch.randn(1, pad, 4), states], 1),
        torch.cat([torch.ones(1, pad, dtype=torch.long), actions], 1),
        torch.cat([torch.rand(1, pad, 1), rtg], 1),
        torch.cat([torch.zeros(1, pad, dtype=torch.long), steps], 1),
        key_mask=torch.tensor([[False] * pad + [True] * 3]),
    )
    torch.testing.assert_close(padded[:, pad:], short, rtol=1e-5, atol=1e-5)


def test_shape_and_config_errors_name_the_bad_value():
    model = tiny_dt()
    states, actions, rtg, steps = random_inputs(k=6)
    with pytest.raises(ValueError, match="context_len 5"):
        model(states, actions, rtg, steps)
    states, actions, rtg, steps = random_inputs()
    with pytest.raises(ValueError, match="returns_to_go must have shape"):
        model(states, actions, rtg[..., 0], steps)
    with pytest.raises(ValueError, match="max_len"):
        DecisionTransformerConfig(context_len=30, max_len=60)
    with pytest.raises(ValueError, match="n_actions"):
        DecisionTransformerConfig(n_actions=1)


def test_lockstep_evaluation_matches_one_episode_at_a_time(small_dataset):
    model = tiny_dt()
    artifacts = RLArtifacts.from_dataset(small_dataset, rtg_scale=500.0, targets=[500.0])
    agent = DecisionTransformerAgent(model, artifacts, target_return=500.0)
    assert isinstance(agent, Agent)
    together = evaluate_returns(model, artifacts, 500.0, episodes=3, seed=123)
    one_by_one = evaluate_policy("CartPole-v1", agent, episodes=3, seed=123)
    assert together == one_by_one


def test_agent_conditions_on_the_return_still_to_come(small_dataset):
    model = tiny_dt()
    artifacts = RLArtifacts.from_dataset(small_dataset, rtg_scale=100.0, targets=[])
    agent = DecisionTransformerAgent(model, artifacts, target_return=50.0)
    obs = np.zeros(4, np.float32)
    agent.act(obs, 0.0)
    agent.act(obs, 1.0)
    agent.act(obs, 1.0)
    assert agent.returns_to_go[0, -3:, 0].tolist() == pytest.approx([0.5, 0.49, 0.48])
    assert agent.timesteps[0, -3:].tolist() == [0, 1, 2]
    assert agent.mask[0].tolist() == [False, False, True, True, True]


@pytest.mark.parametrize("env_id", sorted(PARAMETER_NOISE))
def test_parameter_noise_policy_is_the_heuristic_with_fresh_gains_each_episode(env_id):
    weights, sigma, actions = PARAMETER_NOISE[env_id]
    n_actions = 3 if env_id == "Acrobot-v1" else 2
    observations = np.random.default_rng(0).normal(size=(200, len(weights)))
    exact = ParameterNoisePolicy("p", n_actions, weights, 0 * sigma, actions, np.random.default_rng(0))
    assert [exact.act(o, 0.0) for o in observations] == [HEURISTICS[env_id](o) for o in observations]
    noisy = ParameterNoisePolicy("p", n_actions, weights, sigma, actions, np.random.default_rng(0))
    first = noisy.weights.copy()
    noisy.reset()
    assert not np.allclose(first, noisy.weights)
    np.testing.assert_array_equal(first[sigma == 0], weights[sigma == 0])  # only the added gains move


def test_recipe_mix_adds_the_parameter_noise_heuristic():
    cartpole = make_dataset("CartPole-v1", episodes_per_policy=2, seed=0)
    assert cartpole.policy_names[-1] == "heuristic-param-noise" and len(cartpole.policy_names) == 6
    stock = make_dataset("CartPole-v1", episodes_per_policy=2, seed=0, parameter_noise=False)
    assert stock.policy_names == generate_dataset("CartPole-v1", 2, 0).policy_names
    np.testing.assert_array_equal(stock.actions, cartpole.actions[: stock.num_steps])  # same episodes first
    with pytest.raises(ValueError, match="unknown environment"):
        make_dataset("NoSuchEnv-v0", 2)


def test_artifacts_round_trip(tmp_path, small_dataset):
    artifacts = RLArtifacts.from_dataset(small_dataset, rtg_scale=500.0, targets=[100.0, 500.0])
    artifacts.save(tmp_path)
    again = RLArtifacts.load(tmp_path)
    assert again == artifacts
    assert again.best_behaviour[0].startswith("heuristic")
    with pytest.raises(ValueError, match="no rl.json"):
        RLArtifacts.load(tmp_path / "missing")


def test_task_loss_counts_only_real_steps(small_dataset):
    task = OfflineRLTask(small_dataset, context_len=5, config=OfflineRLConfig(batch_size=8, batches_per_epoch=4))
    batches = task.train_batches(0)
    assert len(batches) == 4 and len(task.train_batches(0, rank=1, world_size=2)) == 2
    batch = batches[1]
    torch.testing.assert_close(batch.states, task.train_batches(0)[1].states)  # indexable, deterministic
    model = tiny_dt()
    loss, _ = task.loss(model, batch)
    logits = model(batch.states, batch.actions, batch.returns_to_go, batch.timesteps, batch.mask)
    manual = torch.nn.functional.cross_entropy(logits[batch.mask], batch.actions[batch.mask], reduction="sum")
    torch.testing.assert_close(loss, manual)
    assert task.count(batch) == int(batch.mask.sum())


def test_tiny_decision_transformer_trains_with_the_shared_trainer(tmp_path):
    recipe = get_recipe("dt-cartpole").build(
        {
            "out_dir": str(tmp_path),
            "max_steps": 40,
            "device": "cpu",
            "progress": False,
            "eval_every": 20,
            "checkpoint_every": 0,
            "log_every": 5,
            "episodes_per_policy": 4,
            "num_layers": 1,
            "d_model": 32,
            "d_ff": 64,
            "num_heads": 2,
            "context_len": 5,
            "batch_size": 16,
            "eval_episodes": 2,
            "periodic_eval_episodes": 1,
            "targets": (100.0, 500.0),
            "warmup_steps": 5,
        }
    )
    assert recipe.model.config.max_len == 15 and recipe.model.config.max_timestep == 500
    results = Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    losses = [
        r["loss"]
        for r in map(eval_json, (tmp_path / "metrics.jsonl").read_text().splitlines())
        if r["split"] == "train"
    ]
    assert losses[-1] < losses[0]
    assert [r["target"] for r in results["returns"]] == [100.0, 500.0]
    assert results["best_behaviour_policy"].startswith("heuristic")
    assert (tmp_path / "dataset-CartPole-v1-pn-4x-seed0.npz").is_file()
    model = attentive.load(tmp_path)
    artifacts = RLArtifacts.load(tmp_path)
    assert artifacts.env_id == "CartPole-v1" and artifacts.rtg_scale == 500.0
    assert len(evaluate_returns(model, artifacts, 500.0, episodes=2)) == 2


def eval_json(line: str) -> dict:
    import json

    return json.loads(line)


def test_segments_feed_the_model(small_dataset):
    stats = small_dataset.state_stats()
    batch = sample_segments(small_dataset, 4, 5, torch.Generator().manual_seed(0), 500.0, stats)
    model = tiny_dt()
    assert model(batch.states, batch.actions, batch.returns_to_go, batch.timesteps, batch.mask).shape == (4, 5, 2)


@pytest.mark.slow
def test_dt_cartpole_recipe_beats_its_data(tmp_path):
    recipe = get_recipe("dt-cartpole").build({"out_dir": str(tmp_path), "device": "cpu", "progress": False})
    results = Trainer(recipe.task, recipe.model, recipe.train_config).fit()
    by_target = {r["target"]: r["mean"] for r in results["returns"]}
    assert by_target[500.0] >= 475.0, results
    assert by_target[500.0] > results["best_behaviour_mean"]
    assert by_target[100.0] < by_target[250.0] < by_target[500.0]

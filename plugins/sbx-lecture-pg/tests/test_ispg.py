"""ISPG: on-policy it is REINFORCE; off-policy the untruncated weights are unbiased; ρ̄ caps the weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from pg_helpers import OneStepBandit, analytic_gradient, exact_moments, one_arm_batch
from sbx_lecture.testing import check_algorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from sbx_lecture_pg import ISPG, REINFORCE
from sbx_lecture_pg.buffers import EpisodeBatch
from sbx_lecture_pg.ispg import effective_sample_size

SMALL = {"net_arch": [8]}


def test_behaviour_equal_to_current_policy_is_reinforce():
    """Same seed, same samples: one ISPG update from its own fresh rollout equals REINFORCE's update."""
    kwargs = {"n_episodes": 2, "seed": 3, "policy_kwargs": SMALL, "learning_rate": 1e-2}
    ispg = ISPG("MlpPolicy", "CartPole-v1", history_size=1, gradient_steps=1, rho_bar=1.0, **kwargs)
    reinforce = REINFORCE("MlpPolicy", "CartPole-v1", **kwargs)
    for a, b in zip(ispg.policy.parameters(), reinforce.policy.parameters(), strict=True):
        assert th.equal(a, b)
    batch = ispg.collect_episodes()
    weights = ispg.importance_weights(batch)
    th.testing.assert_close(weights["per_decision"], th.ones(batch.n_steps, dtype=th.float64), atol=1e-5, rtol=0)
    th.testing.assert_close(ispg.policy_gradient(batch), reinforce.policy_gradient(batch), atol=1e-5, rtol=1e-4)

    # learning: with K = 1 and one step per rollout, every ISPG update is REINFORCE's
    ispg = ISPG("MlpPolicy", "CartPole-v1", history_size=1, gradient_steps=1, rho_bar=1.0, **kwargs).learn(300)
    reinforce = REINFORCE("MlpPolicy", "CartPole-v1", **kwargs).learn(300)
    assert ispg.num_timesteps == reinforce.num_timesteps
    for a, b in zip(ispg.policy.parameters(), reinforce.policy.parameters(), strict=True):
        th.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_untruncated_weights_are_unbiased_and_truncation_is_not():
    """Sampling the bandit's arms from another policy β: E_β[ĝ_IS] = ∇J(θ) exactly when ρ̄ = ∞."""
    model = ISPG(
        "MlpPolicy",
        DummyVecEnv([OneStepBandit]),
        gamma=1.0,
        baseline=False,
        rho_bar=math.inf,
        seed=0,
        policy_kwargs=SMALL,
    )
    behaviour = th.tensor([0.6, 0.3, 0.1])
    mean, variance = exact_moments(model, sampling_probs=behaviour)
    expected = analytic_gradient(model)
    th.testing.assert_close(mean, expected, rtol=1e-4, atol=1e-6)
    _, on_policy_variance = exact_moments(model)
    assert variance > on_policy_variance  # the lecture's "even larger variance?"

    model.rho_bar = 1.5
    model.rho_bar_schedule = lambda _: 1.5
    truncated_mean, truncated_variance = exact_moments(model, sampling_probs=behaviour)
    assert (truncated_mean - expected).norm() > 0.05 * expected.norm()  # biased ...
    assert truncated_variance < variance  # ... with less variance


def test_truncation_caps_the_weights():
    model = ISPG("MlpPolicy", "CartPole-v1", n_episodes=2, rho_bar=5.0, seed=0, policy_kwargs=SMALL)
    batch = model.collect_episodes()
    batch.behaviour_log_probs = batch.behaviour_log_probs - 0.5  # every ratio e^0.5: the products grow with t
    weights = model.importance_weights(batch)
    assert float(weights["per_decision"].max()) == pytest.approx(5.0)
    assert bool((weights["per_decision"] <= 5.0 + 1e-9).all())
    first = th.as_tensor(batch.starts)
    th.testing.assert_close(
        weights["per_decision"][first], th.full((batch.n_episodes,), math.exp(0.5), dtype=th.float64), rtol=1e-4, atol=0
    )
    assert float(weights["log_cumulative"].max()) > math.log(5.0)  # the untruncated products exceed ρ̄
    assert bool((weights["trajectory"] <= 5.0 + 1e-9).all())


def test_history_reuse_logs_effective_sample_size():
    model = ISPG(
        "MlpPolicy",
        "CartPole-v1",
        n_episodes=2,
        history_size=3,
        gradient_steps=2,
        learning_rate=3e-2,
        seed=0,
        policy_kwargs=SMALL,
    )
    model.learn(400)
    assert len(model.history) == 3
    logged = model.logger.name_to_value
    assert logged["train/history_episodes"] == 6
    assert 1.0 <= logged["train/ess"] < 6.0  # older rollouts count less once the policy has moved
    assert 0.0 < logged["train/ess_fraction"] < 1.0
    assert 0.0 <= logged["train/truncated_fraction"] <= 1.0


def test_effective_sample_size():
    assert effective_sample_size(th.zeros(8)) == pytest.approx(8.0)
    assert effective_sample_size(th.tensor([0.0, -50.0, -50.0])) == pytest.approx(1.0, abs=1e-6)


def test_concatenated_batches_keep_episodes_apart():
    model = ISPG("MlpPolicy", DummyVecEnv([OneStepBandit]), seed=0, policy_kwargs=SMALL)
    merged = EpisodeBatch.concatenate([one_arm_batch(model, 0), one_arm_batch(model, 2)])
    np.testing.assert_array_equal(merged.starts, [0, 1])
    np.testing.assert_array_equal(merged.episode_ids, [0, 1])


def test_whole_trajectory_weights():
    model = ISPG("MlpPolicy", "CartPole-v1", n_episodes=2, reward_to_go=False, seed=0, policy_kwargs=SMALL)
    model.learn(100)
    assert model._n_updates >= 1


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"rho_bar": 0.5}, "rho_bar"), ({"history_size": 0}, "history_size"), ({"gradient_steps": 0}, "gradient_steps")],
)
def test_invalid_hyperparameters_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ISPG("MlpPolicy", "CartPole-v1", **kwargs)


def test_rho_bar_schedule():
    model = ISPG(
        "MlpPolicy",
        "CartPole-v1",
        n_episodes=1,
        rho_bar=lambda progress: 1.0 + 4.0 * progress,
        seed=0,
        policy_kwargs=SMALL,
    )
    model.learn(100)
    assert 1.0 <= model.logger.name_to_value["train/rho_bar"] < 5.0


def test_conformance():
    report = check_algorithm(ISPG)
    assert report.env_id == "CartPole-v1" and report.declared

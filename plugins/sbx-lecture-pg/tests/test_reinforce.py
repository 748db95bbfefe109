"""REINFORCE: the estimator against the analytic gradient, the baseline's effect, returns, spaces, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from pg_helpers import ARM_REWARDS, OneStepBandit, analytic_gradient, arm_probabilities, exact_moments
from sbx_lecture.testing import check_algorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from sbx_lecture_pg import REINFORCE
from sbx_lecture_pg.returns import episode_return, reward_to_go

SMALL = {"net_arch": [8]}


def bandit(n_envs: int = 1) -> DummyVecEnv:
    return DummyVecEnv([OneStepBandit] * n_envs)


def test_returns_are_monte_carlo_and_stay_within_episodes():
    rewards = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    last = np.array([False, False, True, False, True])
    np.testing.assert_allclose(reward_to_go(rewards, last, 0.5), [1.75, 1.5, 1.0, 3.0, 2.0])
    episode_ids, starts = np.array([0, 0, 0, 1, 1]), np.array([0, 3])
    np.testing.assert_allclose(episode_return(rewards, episode_ids, starts, 0.5), [1.75] * 3 + [3.0] * 2)


def test_collected_returns_are_true_monte_carlo():
    """CartPole pays 1 per step: G_t of a collected episode is Σ_{k<T-t} γ^k, with nothing bootstrapped."""
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_episodes=3, gamma=0.9, seed=0, policy_kwargs=SMALL)
    batch = model.collect_episodes()
    weights = model._score_weights(batch, th.zeros(batch.n_steps))
    for start, end in zip(batch.starts, batch.ends, strict=True):
        remaining = np.arange(end - start, 0, -1)
        np.testing.assert_allclose(weights.returns[start:end], (1 - 0.9**remaining) / (1 - 0.9))
    assert not batch.truncated.any()  # short random-policy episodes terminate


def test_estimator_expectation_is_the_analytic_gradient():
    """E[ĝ] over the arms, enumerated exactly, is ∇ Σ_a π(a) R(a), with and without the baseline."""
    for use_baseline in (False, True):
        model = REINFORCE("MlpPolicy", bandit(), baseline=use_baseline, gamma=1.0, seed=1, policy_kwargs=SMALL)
        with th.no_grad():  # a baseline far from 0, so that it would show if it biased the estimate
            model.policy.value_net.bias.fill_(7.0)
        mean, _ = exact_moments(model)
        expected = analytic_gradient(model)
        assert expected.norm() > 1e-3
        th.testing.assert_close(mean, expected, rtol=1e-4, atol=1e-6)


def test_sampled_gradient_matches_the_analytic_gradient():
    """ĝ from episodes the algorithm collects itself converges to E[∇log π · R]."""
    model = REINFORCE("MlpPolicy", bandit(16), n_episodes=250, baseline=False, gamma=1.0, seed=0, policy_kwargs=SMALL)
    batch = model.collect_episodes()
    assert batch.n_episodes == 16 * 250
    estimate = model.policy_gradient(batch)
    expected = analytic_gradient(model)
    _, variance = exact_moments(model)
    standard_error = float(th.sqrt(variance / batch.n_episodes))
    assert float((estimate - expected).norm()) < 5 * standard_error


def test_baseline_reduces_variance_without_changing_expectation():
    """Over many seeds, ĝ with the learned baseline has the same mean and a much smaller variance."""
    model = REINFORCE(
        "MlpPolicy", bandit(4), n_episodes=1, gamma=1.0, seed=0, learning_rate=3e-3, vf_coef=1.0, policy_kwargs=SMALL
    )
    model.learn(3_000)  # fits b(s0) to E_π[R] (the policy moves too)
    with th.no_grad():
        expected_reward = float((arm_probabilities(model) * th.as_tensor(ARM_REWARDS, dtype=th.float32)).sum())
        learned = float(model.policy.predict_values(th.ones((1, 1))))
    assert abs(learned - expected_reward) < 0.2 * expected_reward

    estimates: dict[bool, list[th.Tensor]] = {False: [], True: []}
    for seed in range(60):
        model.set_random_seed(seed)
        batch = model.collect_episodes()
        for use_baseline in (False, True):
            model.baseline = use_baseline
            estimates[use_baseline].append(model.policy_gradient(batch).detach())
    plain, with_baseline = th.stack(estimates[False]), th.stack(estimates[True])
    plain_variance = plain.var(0).sum()
    baseline_variance = with_baseline.var(0).sum()
    assert baseline_variance < 0.5 * plain_variance
    # the same expectation: exactly, by enumeration; and the sample means agree within their standard error
    model.baseline = False
    mean_plain, _ = exact_moments(model)
    model.baseline = True
    mean_baseline, _ = exact_moments(model)
    th.testing.assert_close(mean_plain, mean_baseline, rtol=1e-4, atol=1e-6)
    difference = (plain.mean(0) - with_baseline.mean(0)).norm()
    assert difference < 4 * th.sqrt(plain_variance / len(plain))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_learns_on_discrete_and_box(env_id):
    model = REINFORCE("MlpPolicy", env_id, n_episodes=1, seed=0, policy_kwargs=SMALL)
    model.learn(250)
    assert model.num_timesteps >= 250 and model._n_updates >= 1
    action, _ = model.predict(model.env.reset(), deterministic=True)
    assert model.action_space.contains(action[0].astype(model.action_space.dtype))


def test_whole_episode_return_and_several_envs():
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 3)
    model = REINFORCE("MlpPolicy", env, n_episodes=2, reward_to_go=False, seed=0, policy_kwargs=SMALL)
    model.learn(100)
    batch = model.rollout_buffer.batch()
    assert batch.n_episodes == 6
    weights = model._score_weights(batch, th.zeros(batch.n_steps))
    for start, end in zip(batch.starts, batch.ends, strict=True):
        assert np.all(weights.returns[start:end] == weights.returns[start])  # G_0 on every step


def test_bootstrap_only_at_truncation():
    import sbx_lecture.testing  # noqa: F401  (registers the probe environments: 16-step truncated episodes)

    model = REINFORCE("MlpPolicy", "SbxLectureProbe/Box-v0", n_episodes=2, bootstrap_truncated=True, seed=0)
    batch = model.collect_episodes()
    assert batch.truncated.all() and batch.final_observations is not None
    with th.no_grad():
        final_values = model.policy.predict_values(batch.final_observations).flatten().numpy()
    rewards = model._rewards_with_bootstrap(batch)
    np.testing.assert_allclose(
        rewards[batch.ends - 1] - batch.rewards[batch.ends - 1], model.gamma * final_values, rtol=1e-5
    )
    np.testing.assert_array_equal(np.delete(rewards, batch.ends - 1), np.delete(batch.rewards, batch.ends - 1))
    model.bootstrap_truncated = False
    np.testing.assert_array_equal(model._rewards_with_bootstrap(batch), batch.rewards)


def test_schedules_are_accepted():
    model = REINFORCE(
        "MlpPolicy",
        "CartPole-v1",
        learning_rate=lambda p: 1e-3 * p,
        ent_coef=lambda p: 0.01 * p,
        n_episodes=1,
        seed=0,
        policy_kwargs=SMALL,
    )
    model.learn(50)
    assert model.policy.optimizer.param_groups[0]["lr"] < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_episodes": 0}, "n_episodes"),
        ({"gamma": 1.5}, "gamma"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"ent_coef": -0.1}, "ent_coef"),
        ({"vf_coef": -1.0}, "vf_coef"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
    ],
)
def test_invalid_hyperparameters_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        REINFORCE("MlpPolicy", "CartPole-v1", **kwargs)


def test_unsupported_spaces_are_refused_clearly():
    class TupleActions(OneStepBandit):
        def __init__(self) -> None:
            super().__init__()
            self.action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2)))

    with pytest.raises(ValueError, match=r"action space.*Box, Discrete, MultiDiscrete, MultiBinary"):
        REINFORCE("MlpPolicy", TupleActions())


def test_conformance():
    report = check_algorithm(REINFORCE)
    assert report.env_id == "CartPole-v1" and report.declared

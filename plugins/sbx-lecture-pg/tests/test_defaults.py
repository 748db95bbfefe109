"""What ``REINFORCE("MlpPolicy", env)`` and ``ISPG("MlpPolicy", env)`` give: with their constructor defaults, each
learns a small task (fixed seeds, short budget), so that a default cannot drift back to one that does not learn.
How far the defaults get on the ``defaults`` benchmark suite beside A2C is in sbx-lecture's docs/benchmarks.md."""

from __future__ import annotations

import gymnasium as gym
import pytest
from stable_baselines3.common.evaluation import evaluate_policy

from sbx_lecture_pg import ISPG, REINFORCE


@pytest.mark.parametrize("algorithm", [REINFORCE, ISPG])
def test_constructor_defaults_learn(algorithm: type) -> None:
    model = algorithm("MlpPolicy", "CartPole-v1", seed=0, device="cpu").learn(20_000)
    env = gym.make("CartPole-v1")
    env.reset(seed=100)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=10)
    assert mean >= 300.0, f"{algorithm.__name__} with its defaults reached {mean:.1f} on CartPole-v1"  # random: 22

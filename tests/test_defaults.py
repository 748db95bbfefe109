"""What ``Class("MlpPolicy", env)`` gives: each lecture class, with its constructor defaults, learns a small task.

Fixed seeds and short budgets, so that a default cannot drift back to one that does not learn; how far the defaults
get on the ``defaults`` benchmark suite, beside each SB3 sibling, is in docs/benchmarks.md.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
from stable_baselines3.common.evaluation import evaluate_policy

from sbx_lecture import get_algorithm

# (algorithm, task, budget, mean return over 10 deterministic episodes it must reach); a random policy scores about
# 22 on CartPole-v1 and -1200 on Pendulum-v1.
CASES = [
    ("npg", "CartPole-v1", 20_480, 200.0),
    ("tnpg", "CartPole-v1", 20_480, 300.0),
    ("ppo_kl", "CartPole-v1", 20_480, 300.0),
    ("dpg", "Pendulum-v1", 6_000, -400.0),
    ("sql", "CartPole-v1", 10_000, 150.0),
    ("sql", "Pendulum-v1", 6_000, -400.0),
]


@pytest.mark.parametrize(("algo", "env_id", "budget", "threshold"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_constructor_defaults_learn(algo: str, env_id: str, budget: int, threshold: float) -> None:
    model = get_algorithm(algo)("MlpPolicy", env_id, seed=0, device="cpu").learn(budget)
    env = gym.make(env_id)
    env.reset(seed=100)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=10)
    assert mean >= threshold, f"{algo} with its defaults reached {mean:.1f} on {env_id} after {budget} steps"

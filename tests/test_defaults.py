"""What ``Class("MlpPolicy", env)`` gives: each lecture class, with its constructor defaults, learns a small task.

Fixed seeds and short budgets, so that a default cannot drift back to one that does not learn; how far the defaults
get on the ``defaults`` benchmark suite, beside each SB3 sibling, is in docs/benchmarks.md.
"""

from __future__ import annotations

import warnings

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


def test_npg_default_step_warns(tmp_path) -> None:
    """NPG's fixed α has no meaning in KL independent of the task: a model built with the default says so (pointing
    to TNPG); a step size given explicitly, a load, and TNPG itself stay silent."""
    from sbx_lecture import NPG, TNPG

    with pytest.warns(UserWarning, match="fixed α = 0.4") as record:
        model = NPG("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64)
    assert [str(w.message) for w in record if "fixed α" in str(w.message)] and "TNPG" in str(record[0].message)
    model.save(tmp_path / "npg.zip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NPG("MlpPolicy", "CartPole-v1", step_size=float("0.4"), n_steps=64, batch_size=64)
        NPG.load(tmp_path / "npg.zip")
        TNPG("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64)

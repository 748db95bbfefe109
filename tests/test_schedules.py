"""The lecture's algorithms read schedules at a progress kept in [0, 1]: a last rollout past the budget never makes
a linear learning rate, KL bound or step size negative (SB3 itself lets the progress go below 0)."""

from __future__ import annotations

import pytest
from stable_baselines3 import PPO

from sbx_lecture import DPG, KLPPO, NPG, SQL, TNPG
from sbx_lecture.hyperparams import linear_schedule

# 100 steps with rollouts of 48: the last rollout ends at 144 steps, where SB3's progress would be 1 - 144/100.
ROLLOUT = {"n_steps": 48, "batch_size": 48}
CASES = [
    (TNPG, "CartPole-v1", {"target_kl": linear_schedule(0.01), "learning_rate": linear_schedule(1e-3), **ROLLOUT}),
    (NPG, "CartPole-v1", {"step_size": linear_schedule(0.1), **ROLLOUT}),
    (KLPPO, "CartPole-v1", {"target_kl": linear_schedule(0.01), "learning_rate": linear_schedule(1e-3), **ROLLOUT}),
    (SQL, "CartPole-v1", {"learning_rate": linear_schedule(1e-3), "learning_starts": 10, "train_freq": 48}),
    (DPG, "Pendulum-v1", {"learning_rate": linear_schedule(1e-3), "learning_starts": 10, "train_freq": 48}),
]


def test_sb3_alone_would_go_negative() -> None:
    model = PPO("MlpPolicy", "CartPole-v1", learning_rate=linear_schedule(1e-3), seed=0, **ROLLOUT).learn(100)
    assert model._current_progress_remaining < 0  # the situation the mixin guards against


@pytest.mark.parametrize(("cls", "env_id", "kwargs"), CASES, ids=[case[0].__name__ for case in CASES])
def test_progress_and_learning_rates_stay_non_negative(cls: type, env_id: str, kwargs: dict) -> None:
    model = cls("MlpPolicy", env_id, seed=0, **kwargs).learn(100)
    assert model.num_timesteps == 144
    assert model._current_progress_remaining == 0.0
    for optimizer in [module.optimizer for module in model.policy.modules() if hasattr(module, "optimizer")]:
        assert all(group["lr"] >= 0.0 for group in optimizer.param_groups)

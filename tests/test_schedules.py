"""Schedules are read at a progress clamped to [0, 1]: a last rollout past the budget never makes them negative."""

from __future__ import annotations

import pytest

from sbx_lecture import KLPPO, NPG, SQL, TNPG
from sbx_lecture.common.schedules import scheduled_value
from sbx_lecture.hyperparams import linear_schedule


def test_scheduled_value_clamps_the_progress() -> None:
    schedule = linear_schedule(0.01)
    assert scheduled_value(schedule, 0.5) == pytest.approx(0.005)
    assert scheduled_value(schedule, -0.02) == 0.0
    assert scheduled_value(schedule, 1.3) == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("cls", "env_id", "kwargs"),
    [
        (TNPG, "CartPole-v1", {"target_kl": linear_schedule(0.01), "n_steps": 48, "batch_size": 48}),
        (NPG, "CartPole-v1", {"step_size": linear_schedule(0.1), "n_steps": 48, "batch_size": 48}),
        (KLPPO, "CartPole-v1", {"target_kl": linear_schedule(0.01), "n_steps": 48, "batch_size": 48}),
        # α must stay > 0, so SQL's temperature schedule may not reach 0; its learning rate may.
        (SQL, "CartPole-v1", {"learning_rate": linear_schedule(1e-3), "learning_starts": 10, "train_freq": 48}),
    ],
)
def test_linear_schedules_survive_a_budget_overshoot(cls: type, env_id: str, kwargs: dict) -> None:
    # 100 steps with rollouts of 48: the last rollout ends at 144 steps, progress −0.44 before clamping.
    model = cls("MlpPolicy", env_id, seed=0, **kwargs).learn(100)
    assert model.num_timesteps == 144

"""NaN and infinity in REINFORCE and ISPG: a one-line NonFiniteError naming the quantity and the step, and parameters
that stay finite."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch as th
from sbx_lecture.infra.finite import NonFiniteError, assert_finite_parameters
from sbx_lecture.testing import NonFiniteAfter
from stable_baselines3.common.vec_env import DummyVecEnv

from sbx_lecture_pg import ISPG, REINFORCE

ALGORITHMS = {"reinforce": REINFORCE, "ispg": ISPG}


def _model(name: str, env_id: str, **kwargs) -> REINFORCE:
    env = DummyVecEnv([lambda: NonFiniteAfter(gym.make(env_id), after=30, **kwargs.pop("corrupt", {}))])
    return ALGORITHMS[name]("MlpPolicy", env, n_episodes=2, policy_kwargs={"net_arch": [8]}, seed=0, **kwargs)


def _learn_until_error(model: REINFORCE) -> NonFiniteError:
    with pytest.raises(NonFiniteError) as error:
        model.learn(2_000)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{type(model).__name__} found ")
    assert f" at step {model.num_timesteps} " in message
    assert_finite_parameters(model)
    assert all(th.isfinite(parameter).all() for parameter in model.policy.parameters())
    return error.value


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize(("reward", "kind"), [(math.nan, "NaN"), (math.inf, "inf")])
def test_non_finite_rewards(name: str, env_id: str, reward: float, kind: str) -> None:
    error = _learn_until_error(_model(name, env_id, corrupt={"reward": reward}))
    assert f"found {kind} in the sampled rewards" in str(error)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_nan_observations(name: str) -> None:
    error = _learn_until_error(_model(name, "Pendulum-v1", corrupt={"observation": math.nan}))
    assert "NaN in the observations" in str(error)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_huge_learning_rate(name: str) -> None:
    error = _learn_until_error(_model(name, "CartPole-v1", learning_rate=1e30))
    assert "lower the learning rate" in str(error)

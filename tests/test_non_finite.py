"""NaN and infinity: every algorithm of ours stops with one clear NonFiniteError before its parameters turn NaN."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from sbx_lecture.cli import main
from sbx_lecture.dpg import DPG
from sbx_lecture.infra.finite import (
    NonFiniteError,
    all_finite,
    assert_finite_parameters,
    batch_causes,
    check_finite,
)
from sbx_lecture.npg import NPG, TNPG
from sbx_lecture.ppo_kl import KLPPO
from sbx_lecture.sql import SQL
from sbx_lecture.testing import NonFiniteAfter

ON_POLICY = dict(n_steps=64, batch_size=32, seed=0)
NPG_KW = dict(**ON_POLICY, n_critic_updates=1, cg_max_steps=10)
OFF_POLICY = dict(learning_starts=20, batch_size=16, seed=0)


def _net(*sizes: int) -> dict[str, Any]:  # a fresh dict each time: an algorithm may add its own keys to it
    return dict(net_arch=list(sizes or [16]))


#: name → (constructor taking an environment and extra keywords, environment id)
ALGORITHMS: dict[str, tuple[Callable[..., BaseAlgorithm], str]] = {
    "npg": (lambda env, **kw: NPG("MlpPolicy", env, policy_kwargs=_net(), **{**NPG_KW, **kw}), "CartPole-v1"),
    "npg_pendulum": (lambda env, **kw: NPG("MlpPolicy", env, policy_kwargs=_net(), **{**NPG_KW, **kw}), "Pendulum-v1"),
    "tnpg": (lambda env, **kw: TNPG("MlpPolicy", env, policy_kwargs=_net(), **{**NPG_KW, **kw}), "Pendulum-v1"),
    "tnpg_line_search": (
        lambda env, **kw: TNPG("MlpPolicy", env, line_search_max_iter=5, policy_kwargs=_net(), **{**NPG_KW, **kw}),
        "CartPole-v1",
    ),
    "klppo": (
        lambda env, **kw: KLPPO("MlpPolicy", env, n_epochs=2, policy_kwargs=_net(), **{**ON_POLICY, **kw}),
        "Pendulum-v1",
    ),
    "klppo_discrete": (
        lambda env, **kw: KLPPO("MlpPolicy", env, n_epochs=2, policy_kwargs=_net(), **{**ON_POLICY, **kw}),
        "CartPole-v1",
    ),
    "dpg": (lambda env, **kw: DPG("MlpPolicy", env, policy_kwargs=_net(), **{**OFF_POLICY, **kw}), "Pendulum-v1"),
    "dpg_mlp_critic": (
        lambda env, **kw: DPG("MlpPolicy", env, critic="mlp", policy_kwargs=_net(), **{**OFF_POLICY, **kw}),
        "Pendulum-v1",
    ),
    "sql_discrete": (
        lambda env, **kw: SQL("MlpPolicy", env, policy_kwargs=_net(16, 16), **{**OFF_POLICY, **kw}),
        "CartPole-v1",
    ),
    "sql_continuous": (
        lambda env, **kw: SQL("MlpPolicy", env, policy_kwargs=_net(16, 16), **{**OFF_POLICY, **kw}),
        "Pendulum-v1",
    ),
}


def _build(name: str, **corruption: Any) -> BaseAlgorithm:
    make, env_id = ALGORITHMS[name]
    env = DummyVecEnv([lambda: NonFiniteAfter(gym.make(env_id), after=30, **corruption)])
    return make(env)


def _assert_parameters_finite(model: BaseAlgorithm) -> None:
    assert_finite_parameters(model)
    for parameter in model.policy.parameters():
        assert th.isfinite(parameter).all()


def _learn_until_error(model: BaseAlgorithm, timesteps: int = 400) -> NonFiniteError:
    with pytest.raises(NonFiniteError) as error:
        model.learn(timesteps)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{type(model).__name__} found ")
    assert f" at step {model.num_timesteps} " in message and error.value.step == model.num_timesteps
    _assert_parameters_finite(model)
    return error.value


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize(("reward", "kind"), [(math.nan, "NaN"), (math.inf, "inf"), (-math.inf, "inf")])
def test_non_finite_rewards_stop_training_with_one_line(name: str, reward: float, kind: str) -> None:
    model = _build(name, reward=reward)
    error = _learn_until_error(model)
    assert f"found {kind} in the " in str(error) and "rewards" in error.quantity
    assert "check the environment's rewards" in str(error)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_nan_observations_are_named(name: str) -> None:
    model = _build(name, observation=math.nan)
    error = _learn_until_error(model)
    assert "observations" in error.quantity and "NaN" in str(error)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("npg", {"step_size": 1e6}),
        ("npg_pendulum", {"step_size": 1e6}),
        ("tnpg", {"target_kl": 1e30}),
        ("klppo", {"learning_rate": 1e6}),
        ("klppo_discrete", {"learning_rate": 1e6}),
        ("dpg", {"learning_rate": 1e30}),
        ("dpg_mlp_critic", {"learning_rate": 1e30}),
        ("sql_discrete", {"learning_rate": 1e30}),
        ("sql_continuous", {"learning_rate": 1e30}),
    ],
)
def test_huge_steps_stop_cleanly(name: str, kwargs: dict[str, Any]) -> None:
    make, env_id = ALGORITHMS[name]
    model = make(env_id, **kwargs)
    error = _learn_until_error(model, 2_000)
    assert "lower the learning rate or step size" in str(error)


def test_healthy_training_is_untouched() -> None:
    make, env_id = ALGORITHMS["npg"]
    model = make(env_id).learn(128)
    assert model.num_timesteps == 128
    _assert_parameters_finite(model)


def test_check_finite_message_counts_and_kinds() -> None:
    check_finite("fine", th.ones(3), np.zeros(2), 1.0, th.arange(3), algorithm="X", step=5)
    values = th.tensor([1.0, math.nan, math.inf, 2.0])
    with pytest.raises(NonFiniteError) as error:
        check_finite("the loss", values, th.ones(4), algorithm="X", step=7)
    assert str(error.value).startswith("X found NaN and inf in the loss at step 7 (2 of 8 values); training stopped: ")
    assert isinstance(error.value, FloatingPointError)
    assert (error.value.algorithm, error.value.quantity, error.value.step) == ("X", "the loss", 7)

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16)
    with pytest.raises(NonFiniteError, match=r"^PPO found inf in the step at step 0 \(1 of 1 values\)"):
        check_finite("the step", -math.inf, algorithm=model)


def test_causes_are_looked_at_only_on_failure_and_the_first_bad_one_is_named() -> None:
    class Batch:
        rewards = th.tensor([[1.0], [math.nan]])
        observations = {"a": th.ones(2, 3), "b": th.tensor([[math.inf]])}
        next_observations = None

    causes = batch_causes(Batch())
    assert len(causes["the sampled observations"]) == 2
    check_finite("the loss", th.tensor(0.5), algorithm="X", causes=causes)  # finite: causes are not looked at
    with pytest.raises(NonFiniteError, match=r"inf in the sampled observations .*\(1 of 7 values\); .*observations"):
        check_finite("the loss", th.tensor(math.nan), algorithm="X", causes=causes)
    Batch.observations = {"a": th.ones(2, 3), "b": th.ones(2, 1)}
    with pytest.raises(NonFiniteError, match=r"NaN in the sampled rewards .*\(1 of 2 values\); .*environment's reward"):
        check_finite("the loss", th.tensor(math.nan), algorithm="X", causes=batch_causes(Batch()))
    Batch.rewards = th.zeros(2, 1)
    with pytest.raises(NonFiniteError, match=r"^X found NaN in the loss \(1 of 1 values\); training stopped: lower"):
        check_finite("the loss", th.tensor(math.nan), algorithm="X", causes=batch_causes(Batch()))
    assert not all_finite(th.ones(2), np.array([math.nan]))
    assert all_finite()


def test_assert_finite_parameters_names_the_first_bad_tensor() -> None:
    model = NPG("MlpPolicy", "CartPole-v1", policy_kwargs=_net(), **NPG_KW)
    assert_finite_parameters(model)
    with th.no_grad():
        model.policy.action_net.weight[0, 0] = math.nan
        model.policy.value_net.bias.fill_(math.inf)
    with pytest.raises(NonFiniteError) as error:
        assert_finite_parameters(model)
    message = str(error.value)
    assert message.startswith("the NPG model has non-finite weights: NaN in policy.action_net.weight (1 of ")
    assert "\n" not in message
    with pytest.raises(
        NonFiniteError, match=r"^the Linear module has non-finite weights: inf in bias \(1 of 1 values\); x$"
    ):
        assert_finite_parameters(model.policy.value_net, hint="x")


def test_train_command_reports_one_line_with_exit_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env_id = "SbxLectureTest/NaNRewardCartPole-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=lambda: NonFiniteAfter(gym.make("CartPole-v1"), reward=math.nan, after=30))
    monkeypatch.chdir(tmp_path)
    tiny = [
        "-p",
        "n_steps=64",
        "-p",
        "batch_size=32",
        "-p",
        "n_critic_updates=1",
        "-p",
        "policy_kwargs=dict(net_arch=[8])",
    ]
    status = main(["train", "npg", env_id, "--timesteps", "256", "--out", "run", "--no-progress", *tiny])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("sbx-lecture: error: training of npg stopped: NPG found NaN in the rollout rewards at step")
    assert "keeps its checkpoint step_000000000064" in err  # saved before the update that met the NaN


def test_all_finite_handles_dtypes_and_shapes() -> None:
    assert all_finite(th.tensor(1.0), th.ones(3, 2), th.arange(4), np.arange(3), 2, 0.5)
    for bad in (
        th.tensor(math.nan),
        th.tensor([1.0, -math.inf]),
        th.tensor([1.0, math.nan], dtype=th.bfloat16),
        th.tensor([1 + 1j, complex(math.nan, 0)]),
        np.array([[0.0], [math.inf]], dtype=np.float32),
        math.nan,
    ):
        assert not all_finite(th.ones(2), bad), bad
    with pytest.raises(NonFiniteError, match=r"NaN in q \(1 of 2 values\)"):
        check_finite("q", th.tensor([1.0, math.nan], dtype=th.bfloat16), algorithm="X")


@pytest.mark.parametrize("name", ["npg", "klppo"])
def test_nan_observation_at_the_end_of_a_rollout_is_named(name: str) -> None:
    """The rollout's last observation only feeds the bootstrap value: the NaN advantages are traced back to it."""
    make, env_id = ALGORITHMS[name]
    model = make(DummyVecEnv([lambda: NonFiniteAfter(gym.make(env_id), observation=math.nan, after=63)]))
    with pytest.raises(NonFiniteError, match=r"found NaN in the observations at step 64 "):
        model.learn(128)
    _assert_parameters_finite(model)


def test_a_diverging_zoo_trial_is_pruned_not_fatal() -> None:
    """rl_zoo3's objective prunes a trial whose ``learn`` raises ``AssertionError`` or ``ValueError`` (its rule for
    sampled settings that produce NaN): our error must be one, so that a sweep goes on past a diverging trial."""
    import inspect

    from rl_zoo3.exp_manager import ExperimentManager

    assert "except (AssertionError, ValueError)" in inspect.getsource(ExperimentManager.objective)
    error = NonFiniteError("NPG found NaN in the rollout rewards at step 2048", "NPG", "the rollout rewards", 2048)
    assert isinstance(error, ValueError) and isinstance(error, FloatingPointError)

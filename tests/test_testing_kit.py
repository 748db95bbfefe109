"""The conformance kit passes on a correct algorithm and catches planted faults, saying what to fix."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from gymnasium import spaces
from stable_baselines3 import DQN, PPO, SAC

from sbx_lecture.testing import (
    CHECKS,
    ConformanceError,
    ProbeEnv,
    check_algorithm,
    suitable_env_id,
    supported_action_spaces,
    tiny_hyperparams,
)


class DropsWeightsOnSave(PPO):
    """Fault: the policy's weights are not saved, so a loaded model starts from fresh weights."""

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy.optimizer"], []


class DropsHyperparameterOnSave(PPO):
    """Fault: gamma is left out of the saved data, so a loaded model has the default gamma."""

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "gamma"]


class IgnoresDeterministic(PPO):
    """Fault: predict always samples."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> Any:
        return super().predict(observation, state, episode_start, deterministic=False)


class DeclaresBoxItCannotHandle(DQN):
    """Fault: declares Box, but DQN only handles Discrete."""

    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)


class AcceptsUndeclaredSpaces(PPO):
    """Fault: declares only Discrete but (through PPO's constructor) accepts Box and the rest too."""

    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete,)


def _failures(cls: type, **kwargs: Any) -> ConformanceError:
    with pytest.raises(ConformanceError) as caught:
        check_algorithm(cls, **kwargs)
    return caught.value


def test_passes_on_sb3_ppo():
    report = check_algorithm(PPO)
    assert report.env_id == "CartPole-v1"
    assert report.passed == list(CHECKS)
    assert not report.declared  # SB3 classes do not declare: their spaces are probed
    assert set(report.action_spaces) == {spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary}


def test_catches_save_that_drops_the_weights():
    error = _failures(DropsWeightsOnSave, checks=["save_load"])
    assert [failure.check for failure in error.failures] == ["save_load", "save_load"]
    message = str(error)
    assert "DropsWeightsOnSave failed" in message and "policy." in message and "differs after load" in message
    assert "_get_torch_save_params" in message  # says what to fix


def test_catches_save_that_drops_a_hyperparameter():
    error = _failures(DropsHyperparameterOnSave, checks=["save_load"])
    message = str(error)
    assert "gamma is 0.99 after load, was 0.97" in message
    assert "_excluded_save_params" in message


def test_catches_predict_that_ignores_deterministic():
    error = _failures(IgnoresDeterministic, checks=["predict"])
    assert error.failures[0].check == "predict"
    assert "deterministic=True" in error.failures[0].problem
    assert "mode" in error.failures[0].fix


def test_catches_a_declared_space_it_cannot_handle():
    error = _failures(DeclaresBoxItCannotHandle, checks=["action_spaces"], probe_spaces=[spaces.Box])
    (failure,) = error.failures
    assert failure.check == "action_spaces"
    assert "declares spaces.Box but fails" in failure.problem
    assert "remove it from supported_action_spaces" in failure.fix


def test_catches_an_undeclared_space_it_accepts():
    error = _failures(AcceptsUndeclaredSpaces, checks=["action_spaces"], probe_spaces=[spaces.Box, spaces.Discrete])
    (failure,) = error.failures
    assert "accepts a spaces.Box action space" in failure.problem


def test_supported_spaces_and_suitable_envs_of_sb3_classes():
    assert supported_action_spaces(SAC) == (spaces.Box,)
    assert supported_action_spaces(DQN) == (spaces.Discrete,)
    assert suitable_env_id(SAC) == "Pendulum-v1"
    assert suitable_env_id(DQN) == "CartPole-v1"
    assert suitable_env_id(PPO) == "CartPole-v1"
    assert supported_action_spaces(DeclaresBoxItCannotHandle) == (spaces.Discrete, spaces.Box)


def test_tiny_hyperparams_only_what_the_constructor_takes():
    assert tiny_hyperparams(PPO)["n_steps"] == 32
    assert "learning_starts" not in tiny_hyperparams(PPO)
    assert tiny_hyperparams(DQN, {"buffer_size": 500})["buffer_size"] == 500


def test_bad_input():
    error = _failures(dict)  # type: ignore[arg-type]
    assert "not a subclass of stable_baselines3's BaseAlgorithm" in str(error)
    assert isinstance(error, AssertionError)
    with pytest.raises(ValueError, match="unknown checks"):
        check_algorithm(PPO, checks=["fly"])
    with pytest.raises(ValueError, match="probe_spaces"):
        check_algorithm(PPO, probe_spaces=[spaces.Tuple])


@pytest.mark.parametrize("kind", ["box", "discrete", "multi_discrete", "multi_binary"])
def test_probe_environments_follow_the_gymnasium_api(kind):
    from gymnasium.utils.env_checker import check_env

    check_env(ProbeEnv(kind), skip_render_check=True)
    with pytest.raises(ValueError, match="kind"):
        ProbeEnv("tuple")

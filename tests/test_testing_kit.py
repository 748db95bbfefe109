"""The conformance kit passes on a correct algorithm and catches planted faults, saying what to fix."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import pytest
from gymnasium import spaces
from sb3_contrib import ARS
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.policies import ActorCriticPolicy, MultiInputActorCriticPolicy

from sbx_lecture.testing import (
    CHECKS,
    PROBE_ENV_IDS,
    ConformanceError,
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

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> Any:
        return super().predict(observation, state, episode_start, deterministic=False)


class DeclaresBoxItCannotHandle(DQN):
    """Fault: declares Box, but DQN only handles Discrete."""

    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)


class AcceptsUndeclaredSpaces(PPO):
    """Fault: declares only Discrete but (through PPO's constructor) accepts Box and the rest too."""

    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete,)


class RefusesUnclearly(PPO):
    """Fault: declares only Discrete and refuses the other kinds, but with an error that does not say why."""

    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete,)

    def _setup_model(self) -> None:
        if not isinstance(self.action_space, spaces.Discrete):
            raise RuntimeError("boom")
        super()._setup_model()


class DeclaresAList(PPO):
    """Fault: ``supported_action_spaces`` is a list, not a tuple of space classes."""

    supported_action_spaces = [spaces.Discrete]  # type: ignore[assignment]


class SlicesObservationsAsOneArray(PPO):
    """Fault: claims Dict observations (MultiInputPolicy) but slices the rollout's observations as one array."""

    def train(self) -> None:
        for rollout_data in self.rollout_buffer.get(batch_size=None):
            rollout_data.observations[::2]  # a dict of tensors cannot be sliced like this
        super().train()


class FlattensBoxActions(PPO):
    """Fault: returns the network's flat actions instead of actions shaped like the action space."""

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> Any:
        actions, state = super().predict(observation, state, episode_start, deterministic)
        return actions.reshape(actions.shape[0], -1) if actions.ndim > 2 else actions, state


class ForgetsExtractorPolicy(ActorCriticPolicy):
    """Fault: the features extractor is left out of the constructor parameters that ``policy.save`` stores."""

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        del data["features_extractor_class"], data["features_extractor_kwargs"]
        return data


class ForgetsOptimizerPolicy(ActorCriticPolicy):
    """Fault: the optimizer settings are left out of the constructor parameters."""

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        del data["optimizer_class"], data["optimizer_kwargs"]
        return data


class ForgetsExtractor(PPO):
    policy_aliases: ClassVar[dict[str, type]] = {
        "MlpPolicy": ForgetsExtractorPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }


class ForgetsOptimizer(PPO):
    policy_aliases: ClassVar[dict[str, type]] = {
        "MlpPolicy": ForgetsOptimizerPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }


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


def test_catches_an_unclear_refusal_and_an_invalid_declaration():
    error = _failures(RefusesUnclearly, checks=["action_spaces"], probe_spaces=[spaces.Box, spaces.Discrete])
    (failure,) = error.failures
    assert "refuses the undeclared spaces.Box with an unclear error: RuntimeError: boom" in failure.problem
    assert "does not support the action space" in failure.fix
    error = _failures(DeclaresAList)  # no env_id: none can be chosen from the declaration
    assert [failure.check for failure in error.failures] == ["action_spaces"]
    assert "must be a non-empty tuple of gymnasium.spaces classes" in error.failures[0].problem
    error = _failures(DeclaresAList, env_id="CartPole-v1", checks=["action_spaces"])
    assert "ClassVar" in error.failures[0].fix


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
    with pytest.raises(ValueError, match=r"checks must be one of 'learn', .*, got 'fly'"):
        check_algorithm(PPO, checks=["fly"])
    with pytest.raises(ValueError, match=r"probe_spaces must be one of .*, got <class '.*Tuple'>"):
        check_algorithm(PPO, probe_spaces=[spaces.Tuple])
    with pytest.raises(ValueError, match="timesteps must be a positive integer, got 0"):
        check_algorithm(PPO, timesteps=0)


@pytest.mark.parametrize("kind", list(PROBE_ENV_IDS))
def test_probe_environments_are_sb3_identity_envs_with_box_observations_and_short_episodes(kind):
    from stable_baselines3.common.envs import IdentityEnv

    env = gym.make(PROBE_ENV_IDS[kind])
    assert isinstance(env.unwrapped, IdentityEnv) and isinstance(env.action_space, kind)
    assert isinstance(env.observation_space, spaces.Box)  # flattened: the probes differ in their actions only
    env.reset(seed=0)
    steps = [env.step(env.action_space.sample())[2:4] for _ in range(16)]
    assert steps[-1] == (False, True) and all(step == (False, False) for step in steps[:-1])  # truncated at 16


def test_catches_dict_observations_it_claims_but_cannot_handle():
    error = _failures(SlicesObservationsAsOneArray, checks=["dict_observations"])
    (failure,) = error.failures
    assert failure.check == "dict_observations"
    assert "MultiInputPolicy alias promises Dict observations" in failure.problem
    assert "'img'" in failure.problem and "'vec'" in failure.problem  # SB3's SimpleMultiObsEnv: image and vector
    assert "unhashable" in failure.problem  # the exception, as raised
    assert "dict of tensors" in failure.fix


def test_catches_flat_actions_for_a_matrix_box():
    error = _failures(FlattensBoxActions, checks=["box_actions"], env_id="Pendulum-v1")
    (failure,) = error.failures
    assert failure.check == "box_actions"
    assert "shape (4, 4), expected (4, 2, 2)" in failure.problem


def test_catches_a_policy_that_forgets_its_extractor_on_save():
    error = _failures(ForgetsExtractor, checks=["policy_save_load"])
    (failure,) = error.failures
    assert failure.check == "policy_save_load"
    assert "custom features extractor fails" in failure.problem and "size mismatch" in failure.problem
    assert "_get_constructor_parameters" in failure.fix


def test_catches_a_policy_that_forgets_its_optimizer_on_save():
    error = _failures(ForgetsOptimizer, checks=["policy_save_load"])
    (failure,) = error.failures
    assert "optimizer_class is <class 'torch.optim.adam.Adam'> after load, was <class 'torch.optim.adamw.AdamW'>" in (
        failure.problem
    )
    assert "optimizer_kwargs.weight_decay is missing after load" in failure.problem


def test_new_checks_skip_what_the_class_does_not_claim():
    report = check_algorithm(DQN, checks=["box_actions", "dict_observations"])
    assert report.passed == ["dict_observations"]
    assert report.skipped == ["box_actions: Box action spaces are not supported"]
    report = check_algorithm(ARS, checks=["dict_observations", "policy_save_load"])
    assert report.passed == []
    assert "dict_observations: no MultiInput policy alias" in report.skipped
    assert any(skip.startswith("policy_save_load: ARSPolicy") for skip in report.skipped)

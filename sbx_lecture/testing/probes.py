"""The probe environments and small-model helpers of the conformance kit (:mod:`sbx_lecture.testing`).

The probe environments are SB3's own test environments (:mod:`stable_baselines3.common.envs`): the identity
environments, one per kind of action space, registered with gymnasium under :data:`PROBE_ENV_IDS`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common import envs as sb3_envs
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv

import sbx_lecture.envs  # noqa: F401  (registers the lecture's environments, which check_algorithm may be given)
from sbx_lecture.factory import default_policy
from sbx_lecture.hyperparams import accepted_hyperparameters

#: The arguments of :func:`identity_env` behind each probe environment: SB3's identity environments (reward 1 for
#: repeating the observation) with 16-step truncated episodes and Box observations.
_PROBE_ENV_KWARGS: dict[type[spaces.Space], dict[str, Any]] = {
    spaces.Discrete: {"name": "IdentityEnv", "dim": 3, "ep_length": 16},
    spaces.Box: {"name": "IdentityEnvBox", "ep_length": 16},
    spaces.MultiDiscrete: {"name": "IdentityEnvMultiDiscrete", "dim": 3, "ep_length": 16},
    spaces.MultiBinary: {"name": "IdentityEnvMultiBinary", "dim": 3, "ep_length": 16},
}
#: Probe environments, one per kind of action space, registered with gymnasium under these ids.
PROBE_ENV_IDS = {kind: f"SbxLectureProbe/{kind.__name__}-v0" for kind in _PROBE_ENV_KWARGS}
#: The environment :func:`suitable_env_id` picks for each kind of action space, in order of preference: the classic
#: control tasks for Discrete and Box, the probe environments for the other kinds.
SUITABLE_ENV_IDS = PROBE_ENV_IDS | {spaces.Discrete: "CartPole-v1", spaces.Box: "Pendulum-v1"}
#: Constructor arguments that keep the checks small, passed only to constructors that take them.
TINY_HYPERPARAMS: dict[str, Any] = {
    "n_steps": 32,  # on-policy rollout length (off-policy classes use it for n-step returns: not passed to them)
    "batch_size": 32,
    "n_epochs": 2,
    "learning_starts": 96,  # off-policy: train only in the last steps of the budget
    "buffer_size": 2_000,
    "n_episodes": 1,  # Monte-Carlo methods: episodes per update
    "n_delta": 2,  # ARS: perturbations per update
    "gamma": 0.97,  # not the usual default, so that save/load must really restore it
}

# --- probe environments ----------------------------------------------------------------------------------------


def identity_env(name: str = "IdentityEnv", **kwargs: Any) -> gym.Env:
    """SB3's identity environment ``name`` with its observations flattened into a Box (one-hot for the discrete
    kinds), so that the probes differ in their action space only.

    :param name: ``IdentityEnv``, ``IdentityEnvBox``, ``IdentityEnvMultiDiscrete`` or ``IdentityEnvMultiBinary``
        (``stable_baselines3.common.envs``)
    :param kwargs: the environment's arguments (``dim``, ``space``, ``ep_length``, ...)
    """
    return gym.wrappers.FlattenObservation(getattr(sb3_envs, name)(**kwargs))


for _kind, _kwargs in _PROBE_ENV_KWARGS.items():
    if PROBE_ENV_IDS[_kind] not in gym.registry:
        gym.register(PROBE_ENV_IDS[_kind], "sbx_lecture.testing.probes:identity_env", kwargs=_kwargs)


# --- helpers ---------------------------------------------------------------------------------------------------


def make_env(env: str | Callable[..., gym.Env], seed: int, **env_kwargs: Any) -> VecEnv:
    """One seeded copy of ``env`` (a gymnasium id or an environment class) in a vectorized environment."""
    # an id goes through gym.make itself: make_vec_env would first try render_mode="rgb_array", which no check
    # needs and SB3's test environments do not take (gymnasium warns about it)
    maker = partial(gym.make, env) if isinstance(env, str) else env
    return make_vec_env(maker, n_envs=1, seed=seed, env_kwargs=env_kwargs or None)


def tiny_hyperparams(cls: type, hyperparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """:data:`TINY_HYPERPARAMS` that ``cls``'s constructor takes, updated with ``hyperparams``."""
    accepted = set(accepted_hyperparameters(cls) or ())  # None: it takes **kwargs, so none is known to be taken
    if issubclass(cls, OffPolicyAlgorithm):
        accepted.discard("n_steps")
    return {key: value for key, value in TINY_HYPERPARAMS.items() if key in accepted} | (hyperparams or {})


def build_model(cls: type[BaseAlgorithm], env: VecEnv, hyperparams: dict[str, Any] | None, seed: int) -> BaseAlgorithm:
    kwargs = tiny_hyperparams(cls, hyperparams)
    policy = kwargs.pop("policy", None) or default_policy(cls, env.observation_space)
    return cls(policy, env, seed=seed, device="cpu", verbose=0, **kwargs)


def kind_name(kind: type[spaces.Space]) -> str:
    return f"spaces.{kind.__name__}"


@cache
def probe_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space], ...]:
    supported = []
    for kind, env_id in PROBE_ENV_IDS.items():
        with contextlib.closing(make_env(env_id, seed=0)) as env, contextlib.suppress(Exception):
            build_model(cls, env, None, seed=0)
            supported.append(kind)
    return tuple(supported)


def supported_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space], ...]:
    """The kinds of action space ``cls`` supports.

    Its ``supported_action_spaces`` class attribute when it has one; otherwise (SB3's own classes pass theirs to
    the base constructor only) the kinds of the probe environments it can be constructed on.

    :raises TypeError: when the attribute is not a non-empty tuple of ``gymnasium.spaces`` classes
    """
    declared = getattr(cls, "supported_action_spaces", None)
    if declared is None:
        return probe_action_spaces(cls)
    if not (
        isinstance(declared, tuple)
        and len(declared) > 0
        and all(inspect.isclass(space) and issubclass(space, spaces.Space) for space in declared)
    ):
        raise TypeError(
            f"{cls.__name__}.supported_action_spaces must be a non-empty tuple of gymnasium.spaces classes, "
            f"got {declared!r}"
        )
    return tuple(declared)


def suitable_env_id(cls: type[BaseAlgorithm]) -> str:
    """A small environment whose action space ``cls`` supports: CartPole-v1 (Discrete), Pendulum-v1 (Box), else
    a probe environment (MultiDiscrete, MultiBinary).

    :raises ValueError: when ``cls`` supports none of these kinds of action space
    """
    supported = supported_action_spaces(cls)
    for kind, env_id in SUITABLE_ENV_IDS.items():
        if issubclass(kind, supported):  # a subclass of a supported kind is supported
            return env_id
    known = ", ".join(kind_name(kind) for kind in SUITABLE_ENV_IDS)
    raise ValueError(
        f"{cls.__name__} supports the action spaces {supported or 'none that could be probed'}; check_algorithm "
        f"knows environments for {known}: pass env_id explicitly"
    )


def sample_observations(env: VecEnv, n: int = 8) -> Any:
    """``n`` observations from a short random rollout of ``env`` (in distribution, unlike space.sample()); a dict
    of arrays for Dict observation spaces."""
    env.action_space.seed(0)
    observations: list[Any] = [env.reset()]
    for _ in range(n - 1):
        observations.append(env.step(np.array([env.action_space.sample()]))[0])
    if isinstance(observations[0], dict):
        return {key: np.concatenate([obs[key] for obs in observations]) for key in observations[0]}
    return np.concatenate(observations)


def first_observation(observations: Any) -> Any:
    """The first observation of a batch (key by key for dicts)."""
    if isinstance(observations, dict):
        return {key: value[0] for key, value in observations.items()}
    return observations[0]


class ProbeFeaturesExtractor(BaseFeaturesExtractor):
    """A custom features extractor for the ``policy_save_load`` check: flatten, one linear layer, ReLU.

    :param observation_space: a Box observation space (images included)
    :param features_dim: number of features
    """

    def __init__(self, observation_space: spaces.Space, features_dim: int = 7) -> None:
        super().__init__(observation_space, features_dim)
        self.net = th.nn.Sequential(
            th.nn.Flatten(), th.nn.Linear(get_flattened_obs_dim(observation_space), features_dim), th.nn.ReLU()
        )

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations)  # type: ignore[no-any-return]


class NonFiniteAfter(gym.Wrapper):
    """Corrupts an environment after ``after`` steps: its reward, or every observation entry, becomes ``value``.

    For tests that an algorithm stops with :class:`sbx_lecture.infra.finite.NonFiniteError` instead of training
    into NaN parameters: ``NonFiniteAfter(gym.make("CartPole-v1"), reward=math.nan, after=50)``.

    :param env: the environment to corrupt
    :param reward: the reward returned from step ``after + 1`` on (``None``: rewards stay)
    :param observation: the value of every observation entry from step ``after + 1`` on (``None``: they stay)
    :param after: the number of environment steps (over all episodes) that stay intact
    """

    def __init__(self, env: gym.Env, reward: float | None = None, observation: float | None = None, after: int = 0):
        super().__init__(env)
        self.corrupt_reward = reward
        self.corrupt_observation = observation
        self.after = after
        self.steps = 0

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps > self.after:
            if self.corrupt_reward is not None:
                reward = self.corrupt_reward
            if self.corrupt_observation is not None:
                observation = np.full_like(observation, self.corrupt_observation)
        return observation, reward, terminated, truncated, info

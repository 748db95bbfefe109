"""The conformance kit's probe environments (:mod:`sbx_lecture.testing`), built on SB3's own test environments.

- ``SbxLectureProbe/<Kind>-v0``, one per kind of action space (``Discrete``, ``Box``, ``MultiDiscrete``,
  ``MultiBinary``): SB3's identity environments (:mod:`stable_baselines3.common.envs`, reward 1 for repeating the
  observation) with 16-step truncated episodes and Box observations, so that the probes differ in their action
  space only.
- :class:`NonFiniteAfter`, a wrapper that corrupts any environment after a number of steps, for tests of the NaN
  guard (:mod:`sbx_lecture.infra.finite`).

As in SB3, test environments live beside the other environments; registering them imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: The arguments of :func:`identity_env` behind each probe environment.
_PROBE_ENV_KWARGS: dict[type[spaces.Space], dict[str, Any]] = {
    spaces.Discrete: {"name": "IdentityEnv", "dim": 3, "ep_length": 16},
    spaces.Box: {"name": "IdentityEnvBox", "ep_length": 16},
    spaces.MultiDiscrete: {"name": "IdentityEnvMultiDiscrete", "dim": 3, "ep_length": 16},
    spaces.MultiBinary: {"name": "IdentityEnvMultiBinary", "dim": 3, "ep_length": 16},
}
#: Probe environments, one per kind of action space, registered with gymnasium under these ids.
PROBE_ENV_IDS = {kind: f"SbxLectureProbe/{kind.__name__}-v0" for kind in _PROBE_ENV_KWARGS}


def identity_env(name: str = "IdentityEnv", **kwargs: Any) -> gym.Env:
    """SB3's identity environment ``name`` with its observations flattened into a Box (one-hot for the discrete
    kinds), so that the probes differ in their action space only.

    :param name: ``IdentityEnv``, ``IdentityEnvBox``, ``IdentityEnvMultiDiscrete`` or ``IdentityEnvMultiBinary``
        (``stable_baselines3.common.envs``)
    :param kwargs: the environment's arguments (``dim``, ``space``, ``ep_length``, ...)
    """
    from stable_baselines3.common import envs as sb3_envs

    return gym.wrappers.FlattenObservation(getattr(sb3_envs, name)(**kwargs))


for _kind, _kwargs in _PROBE_ENV_KWARGS.items():
    if PROBE_ENV_IDS[_kind] not in gym.registry:
        gym.register(PROBE_ENV_IDS[_kind], "sbx_lecture.envs.probes:identity_env", kwargs=_kwargs)


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

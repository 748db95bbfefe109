"""Small environments the lecture's experiments use, registered with gymnasium when this package is imported.

- ``sbx_lecture/ContinuousBandit-v0``: the one-step quadratic-cost bandit of Silver et al. (2014), figure 1
  (``gym.make("sbx_lecture/ContinuousBandit-v0", action_dim=25)``).
- ``sbx_lecture/MultiGoal-v0``: the 2-D point mass with four goals of Haarnoja et al. (2017).
- ``SbxLectureProbe/<Kind>-v0``: the conformance kit's probe environments (:mod:`sbx_lecture.envs.probes`).

Registration uses ``"module:Class"`` entry points, so nothing heavy is imported until an environment is made.
"""

import gymnasium as gym

import sbx_lecture.envs.probes  # noqa: F401  (registers the probe environments)

_ENVIRONMENTS = {
    "sbx_lecture/ContinuousBandit-v0": "sbx_lecture.envs.continuous_bandit:ContinuousBandit",
    "sbx_lecture/MultiGoal-v0": "sbx_lecture.envs.multigoal:MultiGoalEnv",
}

for _env_id, _entry_point in _ENVIRONMENTS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point)

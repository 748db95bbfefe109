"""The two-dimensional multi-goal environment of Haarnoja et al. (2017), figure 1.

A point starts near the origin and moves by its (bounded) action each step. Four goals sit at (±5, 0) and (0, ±5);
reaching any of them ends the episode with a bonus. The cost penalises large actions and the distance to the
nearest goal, so every goal is equally good: a maximum-entropy policy keeps all four modes, a greedy one commits
to one of them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

DEFAULT_GOALS = ((5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0))


class MultiGoalEnv(gym.Env[np.ndarray, np.ndarray]):
    """Point mass in the plane with four equally rewarding goals.

    Reward: ``-action_cost * |a|^2 - distance_cost * min_g |s - g|``, plus ``goal_reward`` when the point comes
    within ``goal_radius`` of a goal (the episode then terminates). Episodes are truncated after
    ``max_episode_steps`` steps.

    :param goals: goal positions
    :param action_cost: weight of the squared action norm
    :param distance_cost: weight of the distance to the nearest goal
    :param goal_reward: bonus for reaching a goal
    :param goal_radius: distance at which a goal counts as reached
    :param init_sigma: standard deviation of the initial position around the origin
    :param dynamics_noise: standard deviation of the Gaussian noise added to every move
    :param bound: the position stays in ``[-bound, bound]²``
    :param max_episode_steps: episode length limit (truncation)
    :param render_mode: unused, kept for the gymnasium signature
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        goals: tuple[tuple[float, float], ...] = DEFAULT_GOALS,
        action_cost: float = 30.0,
        distance_cost: float = 1.0,
        goal_reward: float = 10.0,
        goal_radius: float = 1.0,
        init_sigma: float = 0.1,
        dynamics_noise: float = 0.0,
        bound: float = 7.0,
        max_episode_steps: int = 30,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.goals = np.asarray(goals, dtype=np.float64)
        self.action_cost = action_cost
        self.distance_cost = distance_cost
        self.goal_reward = goal_reward
        self.goal_radius = goal_radius
        self.init_sigma = init_sigma
        self.dynamics_noise = dynamics_noise
        self.bound = bound
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-bound, bound, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2)
        self._steps = 0

    def _distances(self) -> np.ndarray:
        return np.linalg.norm(self.goals - self._position, axis=1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._position = self.np_random.normal(0.0, self.init_sigma, size=2)
        self._steps = 0
        return self._position.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        noise = self.np_random.normal(0.0, self.dynamics_noise, size=2) if self.dynamics_noise > 0 else 0.0
        self._position = np.clip(self._position + action + noise, -self.bound, self.bound)
        self._steps += 1
        distances = self._distances()
        reached = bool(distances.min() < self.goal_radius)
        reward = -self.action_cost * float(action @ action) - self.distance_cost * float(distances.min())
        if reached:
            reward += self.goal_reward
        truncated = self._steps >= self.max_episode_steps and not reached
        info = {"goal": int(distances.argmin()) if reached else -1}
        return self._position.astype(np.float32), reward, reached, truncated, info

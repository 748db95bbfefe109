"""The continuous bandit of Silver et al. (2014), section 5.1: a quadratic cost in a high-dimensional action.

Reward r(a) = −(a − a*)ᵀ C (a − a*) with C positive definite (eigenvalues drawn from {0.1, 1}, random eigenbasis)
and a* = (4, …, 4). Every episode is one step; the single observation is a constant, so a policy is just an action.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ContinuousBandit(gym.Env[np.ndarray, np.ndarray]):
    """One-step bandit with quadratic cost (the paper's figure 1 task).

    :param action_dim: m, the action dimension (the paper uses 10, 25 and 50)
    :param optimum: the value of every coordinate of a*
    :param action_bound: the action space is the box [−bound, bound]^m
    :param eigenvalues: the eigenvalues of C are drawn uniformly from this set
    :param matrix_seed: seed of C (fixed for the env's lifetime, independent of ``reset(seed=...)``)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        action_dim: int = 10,
        optimum: float = 4.0,
        action_bound: float = 10.0,
        eigenvalues: tuple[float, ...] = (0.1, 1.0),
        matrix_seed: int = 0,
    ):
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if not 0 <= optimum < action_bound:
            raise ValueError(f"optimum must lie in [0, action_bound={action_bound}), got {optimum}")
        self.action_dim = action_dim
        self.action_bound = action_bound
        rng = np.random.default_rng(matrix_seed)
        basis, _ = np.linalg.qr(rng.standard_normal((action_dim, action_dim)))
        spectrum = rng.choice(np.asarray(eigenvalues, dtype=np.float64), size=action_dim)
        self.cost_matrix = (basis * spectrum) @ basis.T
        self.optimal_action = np.full(action_dim, optimum, dtype=np.float64)
        self.observation_space = spaces.Box(low=0.0, high=1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(low=-action_bound, high=action_bound, shape=(action_dim,), dtype=np.float32)

    def cost(self, action: np.ndarray) -> float:
        """(a − a*)ᵀ C (a − a*) for one action."""
        error = np.asarray(action, dtype=np.float64) - self.optimal_action
        return float(error @ self.cost_matrix @ error)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(action, -self.action_bound, self.action_bound)
        cost = self.cost(action)
        return np.zeros(1, dtype=np.float32), -cost, True, False, {"cost": cost}

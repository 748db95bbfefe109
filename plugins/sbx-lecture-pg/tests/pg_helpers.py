"""Small environments and exact expectations for the estimator tests."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces

from sbx_lecture_pg.buffers import Episode, EpisodeBatch

#: Rewards of the bandit's arms; the offset makes a baseline matter.
ARM_REWARDS = np.array([1.0, 2.0, 4.0]) + 10.0


class OneStepBandit(gym.Env[np.ndarray, int]):
    """Three arms, one step per episode, a constant observation."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(ARM_REWARDS))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.ones(1, dtype=np.float32), float(ARM_REWARDS[int(action)]), True, False, {}


def arm_probabilities(model: Any) -> th.Tensor:
    """π_θ(a | s0) of every arm, differentiable in θ."""
    obs = th.ones((1, 1))
    return model.policy.get_distribution(obs).distribution.probs[0]  # type: ignore[no-any-return]


def analytic_gradient(model: Any) -> th.Tensor:
    """∇_θ J = ∇_θ Σ_a π_θ(a|s0) R(a) = E[∇log π · R], flattened over the policy's parameters."""
    parameters = list(model.policy.parameters())
    objective = (arm_probabilities(model) * th.as_tensor(ARM_REWARDS, dtype=th.float32)).sum()
    grads = th.autograd.grad(objective, parameters, allow_unused=True)
    flat = [(g if g is not None else th.zeros_like(p)).flatten() for g, p in zip(grads, parameters, strict=True)]
    return th.cat(flat)


def one_arm_batch(model: Any, arm: int, behaviour_log_prob: float = 0.0) -> EpisodeBatch:
    """A one-episode batch in which ``arm`` was pulled."""
    episode = Episode(
        observations=np.ones((1, 1), dtype=np.float32),
        actions=np.array([arm]),
        rewards=np.array([ARM_REWARDS[arm]]),
        log_probs=np.array([behaviour_log_prob]),
        truncated=False,
        final_observation=None,
    )
    return EpisodeBatch.from_episodes([episode], model.action_space, model.device)


def exact_moments(model: Any, sampling_probs: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
    """Exact mean and total variance of the one-episode estimator ĝ, enumerating the arms.

    :param sampling_probs: probabilities with which the arms are sampled (default: the current policy)
    """
    with th.no_grad():
        probs = arm_probabilities(model) if sampling_probs is None else sampling_probs
    grads = []
    for arm in range(len(ARM_REWARDS)):
        behaviour = float(th.log(probs[arm]))
        grads.append(model.policy_gradient(one_arm_batch(model, arm, behaviour)).detach())
    stacked = th.stack(grads)
    weights = probs.detach()[:, None]
    mean = (weights * stacked).sum(0)
    variance = (weights * (stacked - mean) ** 2).sum()
    return mean, variance

"""A replay buffer that also serves the latest transitions in order and the executed next action a′.

DPG's defaults are online: each update uses the transitions collected since the previous update (the buffer then
holds only those), and the on-policy (SARSA) target needs the action a′ that the behaviour policy actually took in
s′. SB3's buffers store transitions row by row (one row per time step, one column per env), so a′ is the action of
the next row in the same column, provided the episode did not end in between:

- terminated: the target does not bootstrap, a′ is irrelevant;
- truncated (time limit): the target bootstraps but a′ was never executed (the env was reset); the algorithm then
  uses the target policy's action μθ(s′), flagged here by ``next_action_known = 0``;
- the newest row has no successor yet, so SARSA batches lag one step behind the newest transition.

With ``optimize_memory_usage`` (SB3's memory-saving layout) s′ is the observation of the next row, so the row at
the write position is not a valid transition once the buffer is full. :class:`DictTransitionBuffer` offers the same
access for Dict observation spaces.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecNormalize

from sbx_lecture.common.replay import Rows, TorchSampledReplayBuffer


class TransitionBatch(NamedTuple):
    """A batch of transitions (s, a, r, s′, done) with, for SARSA targets, the executed next action a′.

    ``dones`` is 1 only for terminations (time-limit truncations bootstrap). ``next_actions`` and
    ``next_action_known`` are ``None`` unless requested. ``discounts`` is the per-sample discount of the bootstrap
    term when the buffer computes it (SB3's n-step buffer), else ``None`` (the algorithm's γ). Observations are
    tensors, or dicts of tensors for Dict observation spaces.
    """

    observations: PyTorchObs
    actions: th.Tensor
    next_observations: PyTorchObs
    dones: th.Tensor
    rewards: th.Tensor
    next_actions: th.Tensor | None
    next_action_known: th.Tensor | None
    discounts: th.Tensor | None = None


class TransitionBuffer(TorchSampledReplayBuffer):
    """SB3 :class:`~stable_baselines3.common.buffers.ReplayBuffer` with in-order access to the newest rows and
    next actions for SARSA targets. Observation spaces: Box, Discrete, MultiDiscrete, MultiBinary (Dict:
    :class:`DictTransitionBuffer`)."""

    def _usable_rows(self, with_next_actions: bool) -> int:
        filled = self.buffer_size if self.full else self.pos
        if self.full and self.optimize_memory_usage:
            filled -= 1  # the row at the write position holds only the newest s′
        return filled - (1 if with_next_actions else 0)

    def latest(
        self, n_rows: int, with_next_actions: bool = False, env: VecNormalize | None = None
    ) -> TransitionBatch | None:
        """The ``n_rows`` newest rows (every env), oldest first; one row older when next actions are requested.

        :param n_rows: number of time steps to return (each holds ``n_envs`` transitions)
        :param with_next_actions: also return a′ (needs the row after each returned one)
        :param env: VecNormalize wrapper to normalize observations and rewards, if any
        :return: the batch, or ``None`` when the buffer holds no usable row yet
        """
        rows = min(n_rows, self._usable_rows(with_next_actions))
        if rows <= 0:
            return None
        newest = self.pos - (1 if with_next_actions else 0)
        time_indices = np.repeat((newest - rows + np.arange(rows)) % self.buffer_size, self.n_envs)
        env_indices = np.tile(np.arange(self.n_envs), rows)
        return self._gather(time_indices, env_indices, with_next_actions, env)

    def sample_transitions(
        self, batch_size: int, with_next_actions: bool = False, env: VecNormalize | None = None
    ) -> TransitionBatch | None:
        """``batch_size`` transitions drawn uniformly (with replacement) from the usable rows and envs.

        :param batch_size: number of transitions
        :param with_next_actions: also return a′ (the newest row is then excluded: its successor is unknown)
        :param env: VecNormalize wrapper to normalize observations and rewards, if any
        :return: the batch, or ``None`` when the buffer holds no usable row yet
        """
        usable = self._usable_rows(with_next_actions)
        if usable <= 0:
            return None
        oldest = (self.pos + (1 if self.optimize_memory_usage else 0)) if self.full else 0
        time_indices = (oldest + np.random.randint(0, usable, size=batch_size)) % self.buffer_size
        env_indices = np.random.randint(0, self.n_envs, size=batch_size)
        return self._gather(time_indices, env_indices, with_next_actions, env)

    def _gather(
        self,
        time_indices: np.ndarray,
        env_indices: np.ndarray,
        with_next_actions: bool,
        env: VecNormalize | None,
    ) -> TransitionBatch:
        rows = self._rows(time_indices, env_indices)
        ended, terminated = self._episode_ends(rows)
        next_actions = next_action_known = None
        if with_next_actions:
            next_actions = self._take("actions", self._following(rows))
            # after any episode end, the following row belongs to a new episode
            next_action_known = (1.0 - ended).reshape(-1, 1)
        next_observations = self._observations(*self._next_observation_rows(rows), env)
        if env is None:
            rewards = self._take("rewards", rows)
        else:
            rewards = self.to_torch(self._normalize_reward(self.rewards[time_indices, env_indices], env))
        return TransitionBatch(
            observations=self._observations("observations", rows, env),
            actions=self._take("actions", rows),
            next_observations=next_observations,
            dones=terminated.reshape(-1, 1),
            rewards=rewards.reshape(-1, 1),
            next_actions=next_actions,
            next_action_known=next_action_known,
        )

    def _observations(self, name: str, rows: Rows, env: VecNormalize | None) -> PyTorchObs:
        """The rows ``rows`` of the observation storage ``name``, normalised by ``env``'s statistics if given."""
        storage: np.ndarray | dict[str, np.ndarray] = getattr(self, name)
        if isinstance(storage, dict):
            selected = {key: value[rows.time, rows.env] for key, value in storage.items()}
            normalized_rows = self._normalize_obs(selected, env)
            assert isinstance(normalized_rows, dict)
            return {key: self.to_torch(value) for key, value in normalized_rows.items()}
        if env is None:
            return self._take(name, rows)
        normalized = self._normalize_obs(storage[rows.time, rows.env], env)
        assert isinstance(normalized, np.ndarray)
        return self.to_torch(normalized)


class DictTransitionBuffer(TransitionBuffer, DictReplayBuffer):  # type: ignore[misc]  # Dict storage: SB3's samples
    """:class:`TransitionBuffer` for Dict observation spaces (storage, ``add`` and ``sample`` of SB3's
    :class:`~stable_baselines3.common.buffers.DictReplayBuffer`)."""

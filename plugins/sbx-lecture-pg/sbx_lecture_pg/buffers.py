"""Complete episodes: collected per environment, then stacked into one batch for a Monte-Carlo update.

A Monte-Carlo policy gradient needs the return of every step, so it can only use episodes that have ended. The
:class:`EpisodeBuffer` takes the **first** ``n_episodes`` episodes that each environment completes and ignores the
steps an environment takes after reaching its quota. Taking a fixed number of episodes per environment keeps the
estimate unbiased: stopping "when enough steps are collected" would favour short episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.type_aliases import PyTorchObs

#: Observations as stored: an array, or a dict of arrays for ``Dict`` observation spaces.
NumpyObs = np.ndarray | dict[str, np.ndarray]

#: An episode longer than this is taken as an environment that never ends (no ``TimeLimit`` wrapper).
MAX_EPISODE_STEPS = 1_000_000


@dataclass
class Episode:
    """One complete episode, as sampled by the behaviour policy.

    :param observations: ``(T, *obs_shape)`` observations s_0 ... s_{T-1} (a dict of such arrays for ``Dict``
        observation spaces)
    :param actions: ``(T, *action_shape)`` actions as sampled (before clipping to the bounds)
    :param rewards: ``(T,)`` rewards r_0 ... r_{T-1}
    :param log_probs: ``(T,)`` log β(a_t | s_t) under the policy that sampled the episode
    :param truncated: whether a time limit cut the episode (it did not terminate)
    :param final_observation: the observation after the last step (``None`` if the environment did not give it)
    """

    observations: NumpyObs
    actions: np.ndarray
    rewards: np.ndarray
    log_probs: np.ndarray
    truncated: bool
    final_observation: NumpyObs | None

    def __len__(self) -> int:
        return len(self.rewards)


@dataclass
class EpisodeBatch:
    """Several episodes stacked along the time axis; ``starts[i]:ends[i]`` is episode ``i``.

    :param observations: ``(N, *obs_shape)`` observations of all steps (a dict of tensors for ``Dict`` spaces)
    :param actions: ``(N, action_dim)`` flat actions (``(N,)`` integers for ``Discrete``)
    :param rewards: ``(N,)`` rewards
    :param behaviour_log_probs: ``(N,)`` log-probabilities of the actions under the policy that sampled them
    :param episode_ids: ``(N,)`` index of the episode of each step
    :param starts: ``(E,)`` first step of each episode
    :param ends: ``(E,)`` one past the last step of each episode
    :param truncated: ``(E,)`` whether each episode was cut by a time limit
    :param final_observations: ``(E_truncated, *obs_shape)`` observation after the last step of each truncated
        episode that has one, in episode order
    :param final_episode_ids: ``(E_truncated,)`` the episodes of ``final_observations``
    """

    observations: PyTorchObs
    actions: th.Tensor
    rewards: np.ndarray
    behaviour_log_probs: th.Tensor
    episode_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    truncated: np.ndarray
    final_observations: PyTorchObs | None
    final_episode_ids: np.ndarray

    @property
    def n_episodes(self) -> int:
        """Number of episodes E."""
        return len(self.starts)

    @property
    def n_steps(self) -> int:
        """Number of steps N over all episodes."""
        return len(self.rewards)

    @property
    def last_step_mask(self) -> np.ndarray:
        """``(N,)`` booleans, true on the last step of each episode."""
        mask = np.zeros(self.n_steps, dtype=bool)
        mask[self.ends - 1] = True
        return mask

    @classmethod
    def from_episodes(cls, episodes: list[Episode], action_space: spaces.Space, device: th.device) -> EpisodeBatch:
        """Stack ``episodes`` (at least one) into a batch on ``device``."""
        if not episodes:
            raise ValueError("an EpisodeBatch needs at least one complete episode")
        lengths = np.array([len(episode) for episode in episodes], dtype=np.int64)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        actions = np.concatenate([episode.actions for episode in episodes])
        actions_tensor = th.as_tensor(actions, device=device)
        if isinstance(action_space, spaces.Discrete):
            actions_tensor = actions_tensor.long().flatten()
        else:  # one flat row per step, as SB3's rollout buffer stores them (Box actions may be matrices)
            actions_tensor = actions_tensor.float().reshape(len(actions), -1)
        finals = [
            (i, e.final_observation) for i, e in enumerate(episodes) if e.truncated and e.final_observation is not None
        ]
        return cls(
            observations=_as_tensor(_joined(np.concatenate, [episode.observations for episode in episodes]), device),
            actions=actions_tensor,
            rewards=np.concatenate([episode.rewards for episode in episodes]).astype(np.float64),
            behaviour_log_probs=th.as_tensor(
                np.concatenate([episode.log_probs for episode in episodes]), dtype=th.float32, device=device
            ),
            episode_ids=np.repeat(np.arange(len(episodes)), lengths),
            starts=starts,
            ends=ends,
            truncated=np.array([episode.truncated for episode in episodes], dtype=bool),
            final_observations=_as_tensor(_joined(np.stack, [obs for _, obs in finals]), device) if finals else None,
            final_episode_ids=np.array([i for i, _ in finals], dtype=np.int64),
        )

    @classmethod
    def concatenate(cls, batches: list[EpisodeBatch]) -> EpisodeBatch:
        """One batch holding the episodes of ``batches`` in order."""
        if len(batches) == 1:
            return batches[0]
        offsets = np.cumsum([0] + [batch.n_steps for batch in batches[:-1]])
        episode_offsets = np.cumsum([0] + [batch.n_episodes for batch in batches[:-1]])
        finals = [batch.final_observations for batch in batches if batch.final_observations is not None]
        return cls(
            observations=_joined(th.cat, [batch.observations for batch in batches]),
            actions=th.cat([batch.actions for batch in batches]),
            rewards=np.concatenate([batch.rewards for batch in batches]),
            behaviour_log_probs=th.cat([batch.behaviour_log_probs for batch in batches]),
            episode_ids=np.concatenate([b.episode_ids + o for b, o in zip(batches, episode_offsets, strict=True)]),
            starts=np.concatenate([b.starts + o for b, o in zip(batches, offsets, strict=True)]),
            ends=np.concatenate([b.ends + o for b, o in zip(batches, offsets, strict=True)]),
            truncated=np.concatenate([batch.truncated for batch in batches]),
            final_observations=_joined(th.cat, finals) if finals else None,
            final_episode_ids=np.concatenate(
                [b.final_episode_ids + o for b, o in zip(batches, episode_offsets, strict=True)]
            ),
        )


class EpisodeBuffer:
    """Collects the first ``n_episodes`` complete episodes of each of ``n_envs`` environments.

    :param n_episodes: episodes to keep per environment
    :param n_envs: number of environments stepped together
    :param observation_space: observation space
    :param action_space: action space
    :param device: where :meth:`batch` puts the tensors
    """

    def __init__(
        self,
        n_episodes: int,
        n_envs: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "cpu",
    ) -> None:
        self.n_episodes = n_episodes
        self.n_envs = n_envs
        self.observation_space = observation_space
        self.action_space = action_space
        self.device = th.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget every episode, complete or not."""
        self.episodes: list[Episode] = []
        self.completed = np.zeros(self.n_envs, dtype=np.int64)
        self._partial: list[list[tuple[NumpyObs, np.ndarray, float, float]]] = [[] for _ in range(self.n_envs)]

    @property
    def full(self) -> bool:
        """Whether every environment has completed its ``n_episodes`` episodes."""
        return bool(np.all(self.completed >= self.n_episodes))

    def add(
        self,
        observations: NumpyObs,
        actions: np.ndarray,
        rewards: np.ndarray,
        log_probs: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Add one vectorised step ``(s_t, a_t, r_t, log β(a_t|s_t))`` of every environment.

        :raises RuntimeError: when an episode runs for more than :data:`MAX_EPISODE_STEPS` steps
        """
        for idx in range(self.n_envs):
            if self.completed[idx] >= self.n_episodes:
                continue  # quota reached: later episodes of this environment are not used
            partial = self._partial[idx]
            partial.append(
                (_row(observations, idx), np.array(actions[idx]), float(rewards[idx]), float(log_probs[idx]))
            )
            if len(partial) > MAX_EPISODE_STEPS:
                raise RuntimeError(
                    f"an episode ran for more than {MAX_EPISODE_STEPS} steps: Monte-Carlo policy gradients need "
                    "episodes that end; wrap the environment in gymnasium.wrappers.TimeLimit"
                )
            if dones[idx]:
                info = infos[idx]
                final = info.get("terminal_observation")
                self.episodes.append(
                    Episode(
                        observations=_joined(np.stack, [step[0] for step in partial]),
                        actions=np.stack([step[1] for step in partial]),
                        rewards=np.array([step[2] for step in partial], dtype=np.float64),
                        log_probs=np.array([step[3] for step in partial], dtype=np.float64),
                        truncated=bool(info.get("TimeLimit.truncated", False)),
                        final_observation=None if final is None else _row(final, None),
                    )
                )
                self._partial[idx] = []
                self.completed[idx] += 1

    def batch(self) -> EpisodeBatch:
        """The complete episodes as one :class:`EpisodeBatch`."""
        return EpisodeBatch.from_episodes(self.episodes, self.action_space, self.device)


def _row(observations: NumpyObs, index: int | None) -> NumpyObs:
    """A copy of one environment's observation (``index``) or of a whole observation (``None``), key by key for dicts.

    :param observations: an observation batch, or one observation
    :param index: the environment, or ``None`` to copy ``observations`` itself
    :return: the copy
    """
    if isinstance(observations, dict):
        return {key: np.array(value if index is None else value[index]) for key, value in observations.items()}
    return np.array(observations if index is None else observations[index])


def _joined(join: Any, parts: list[Any]) -> Any:
    """``join`` (``np.stack``, ``np.concatenate``, ``th.cat``) applied to observations, key by key for dicts."""
    if isinstance(parts[0], dict):
        return {key: join([part[key] for part in parts]) for key in parts[0]}
    return join(parts)


def _as_tensor(observations: NumpyObs, device: th.device) -> PyTorchObs:
    """Observations as tensors on ``device`` (a dict of tensors for dicts)."""
    if isinstance(observations, dict):
        return {key: th.as_tensor(value, device=device) for key, value in observations.items()}
    return th.as_tensor(observations, device=device)

"""SB3-style tests (issue 16): Dict observations and matrix-shaped Box actions for REINFORCE and ISPG."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import SimpleMultiObsEnv

from sbx_lecture_pg import ISPG, REINFORCE
from sbx_lecture_pg.buffers import Episode, EpisodeBatch


class MatrixActionEnv(gym.Env):
    """3-d observations, actions in Box(-1, 1, (2, 2)); the env checks the shape of every action it receives."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2, 2), np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert np.shape(action) == (2, 2), f"the env received an action of shape {np.shape(action)}"
        self._t += 1
        return self.observation_space.sample(), -float(np.sum(np.square(action))), False, self._t >= 10, {}


@pytest.mark.parametrize("algorithm", [REINFORCE, ISPG])
@pytest.mark.parametrize("discrete_actions", [True, False])
@pytest.mark.parametrize("bootstrap_truncated", [False, True])
def test_learns_on_dict_observations(algorithm: type, discrete_actions: bool, bootstrap_truncated: bool) -> None:
    env = SimpleMultiObsEnv(random_start=False, discrete_actions=discrete_actions)
    model = algorithm("MultiInputPolicy", env, n_episodes=1, bootstrap_truncated=bootstrap_truncated, seed=0)
    model.learn(200)
    assert model._n_updates > 0
    batch = model.collect_episodes()
    assert isinstance(batch.observations, dict) and set(batch.observations) == {"vec", "img"}
    assert all(len(value) == batch.n_steps for value in batch.observations.values())
    action, _ = model.predict(model.env.reset(), deterministic=True)
    assert action.shape == ((1,) if discrete_actions else (1, 4))


@pytest.mark.parametrize("algorithm", [REINFORCE, ISPG])
def test_learns_with_a_matrix_action_space(algorithm: type) -> None:
    model = algorithm("MlpPolicy", MatrixActionEnv(), n_episodes=2, seed=0)
    model.learn(60)
    assert model._n_updates > 0
    assert model.collect_episodes().actions.shape[1:] == (4,)  # flat rows, as SB3's rollout buffer stores them
    actions, _ = model.predict(np.zeros((3, 3), dtype=np.float32))
    assert actions.shape == (3, 2, 2)


def test_episode_batches_stack_dict_observations_key_by_key() -> None:
    def episode(length: int, truncated: bool) -> Episode:
        return Episode(
            observations={"a": np.arange(length, dtype=np.float32).reshape(length, 1), "b": np.zeros((length, 2))},
            actions=np.zeros((length, 1)),
            rewards=np.ones(length),
            log_probs=np.zeros(length),
            truncated=truncated,
            final_observation={"a": np.array([9.0], dtype=np.float32), "b": np.ones(2)} if truncated else None,
        )

    box = spaces.Box(-1, 1, (1,))
    first = EpisodeBatch.from_episodes([episode(2, False), episode(3, True)], box, th.device("cpu"))
    second = EpisodeBatch.from_episodes([episode(1, True)], box, th.device("cpu"))
    joined = EpisodeBatch.concatenate([first, second])
    assert isinstance(joined.observations, dict)
    np.testing.assert_array_equal(joined.observations["a"].flatten().numpy(), [0, 1, 0, 1, 2, 0])
    assert joined.observations["b"].shape == (6, 2)
    assert isinstance(joined.final_observations, dict)
    np.testing.assert_array_equal(joined.final_observations["a"].flatten().numpy(), [9.0, 9.0])
    np.testing.assert_array_equal(joined.final_episode_ids, [1, 2])

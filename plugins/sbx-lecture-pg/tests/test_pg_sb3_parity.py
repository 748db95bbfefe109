"""SB3-style tests (issue 16): Dict observations and matrix-shaped Box actions for REINFORCE and ISPG."""

from __future__ import annotations

import warnings

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


class EndlessEnv(gym.Env):
    """Episodes that never end (no termination, no time limit), as in some of SB3's test environments."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.full(2, float(action), np.float32), float(action), False, False, {}


@pytest.mark.parametrize("algorithm", [REINFORCE, ISPG])
def test_learn_returns_on_episodes_that_never_end(algorithm: type) -> None:
    """learn(N) returns as SB3's algorithms do: an episode as long as the budget is cut there, truncated."""
    model = algorithm("MlpPolicy", EndlessEnv(), n_episodes=2, seed=0)
    before = [param.detach().clone() for param in model.policy.parameters()]
    with pytest.warns(UserWarning, match="whole learn budget \\(50 steps per environment\\)"):
        model.learn(total_timesteps=50)
    assert model.num_timesteps == 100  # two episodes of 50 steps each, both cut
    assert any(not th.equal(old, new) for old, new in zip(before, model.policy.parameters(), strict=True))
    assert model.rollout_buffer.batch().truncated.all()


def test_episodes_shorter_than_the_budget_are_never_cut() -> None:
    env = MatrixActionEnv()  # episodes of 10 steps
    model = REINFORCE("MlpPolicy", env, n_episodes=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.learn(total_timesteps=10)  # an episode as long as the budget ends on its own: nothing is cut
    batch = model.rollout_buffer.batch()
    assert model.num_timesteps == 20 and batch.truncated.all() and (batch.ends - batch.starts == 10).all()

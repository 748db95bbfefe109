"""The torch-gathered replay buffer draws the same minibatches, with the same values, as SB3's."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sbx_lecture.common.replay import TorchSampledReplayBuffer
from sbx_lecture.dpg.buffers import TransitionBuffer
from sbx_lecture.loading import load_replay_buffer, save_replay_buffer
from sbx_lecture.sql import SQL

SPACES = {
    "box": spaces.Box(-5.0, 5.0, (3,), np.float32),
    "image": spaces.Box(0, 255, (2, 3, 3), np.uint8),
    "discrete": spaces.Discrete(7),
    "float64": spaces.Box(-5.0, 5.0, (2,), np.float64),
}


def _filled(cls: type[ReplayBuffer], observation_space: spaces.Space, n_envs: int, **kwargs: object) -> ReplayBuffer:
    """A buffer of 50 rows filled past its end with the same pseudo-random transitions for every class."""
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    buffer = cls(50, observation_space, action_space, device="cpu", n_envs=n_envs, **kwargs)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    observation_space.seed(0)
    for _ in range(70):
        obs = np.stack([observation_space.sample() for _ in range(n_envs)])
        next_obs = np.stack([observation_space.sample() for _ in range(n_envs)])
        dones = rng.random(n_envs) < 0.2
        infos = [{"TimeLimit.truncated": bool(rng.random() < 0.5)} for _ in range(n_envs)]
        buffer.add(obs, next_obs, rng.uniform(-1, 1, (n_envs, 2)), rng.normal(size=n_envs), dones, infos)
    return buffer


def _assert_same_samples(expected: tuple, actual: tuple) -> None:
    for want, got in zip(expected, actual, strict=True):
        if want is None:
            assert got is None
            continue
        assert got.dtype == want.dtype and got.shape == want.shape
        assert th.equal(got, want)


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("optimize_memory_usage", [False, True])
def test_the_same_minibatches_as_sb3(space: str, n_envs: int, optimize_memory_usage: bool) -> None:
    kwargs = dict(optimize_memory_usage=optimize_memory_usage, handle_timeout_termination=not optimize_memory_usage)
    sb3 = _filled(ReplayBuffer, SPACES[space], n_envs, **kwargs)
    ours = _filled(TorchSampledReplayBuffer, SPACES[space], n_envs, **kwargs)
    for seed in range(3):
        np.random.seed(seed)
        expected = sb3.sample(32)
        np.random.seed(seed)
        _assert_same_samples(expected, ours.sample(32))


def test_vec_normalize_statistics_apply_as_in_sb3() -> None:
    normalizer = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    normalizer.obs_rms.mean, normalizer.obs_rms.var = np.array([0.5, -0.5, 1.0]), np.array([2.0, 3.0, 4.0])
    normalizer.ret_rms.var = np.array(9.0)
    sb3, ours = (_filled(cls, SPACES["box"], 2) for cls in (ReplayBuffer, TorchSampledReplayBuffer))
    np.random.seed(1)
    expected = sb3.sample(16, env=normalizer)
    np.random.seed(1)
    _assert_same_samples(expected, ours.sample(16, env=normalizer))


def test_samples_follow_arrays_replaced_by_loading_and_pickling(tmp_path: Path) -> None:
    """The cached tensor views never outlive the arrays they view: loading assigns new arrays, pickles drop views."""
    ours = _filled(TorchSampledReplayBuffer, SPACES["box"], 1)
    ours.sample(8)  # views of the current arrays are cached now
    other = _filled(TorchSampledReplayBuffer, SPACES["box"], 1)
    other.observations = other.observations + 1.0
    path = tmp_path / "buffer.npz"
    save_replay_buffer(other, path)
    model = SQL("MlpPolicy", "Pendulum-v1", buffer_size=50)
    model.replay_buffer = ours
    load_replay_buffer(model, path)
    np.random.seed(2)
    loaded_batch = ours.sample(8)
    np.random.seed(2)
    _assert_same_samples(other.sample(8), loaded_batch)

    copy = pickle.loads(pickle.dumps(ours))
    assert "_flat_views" not in vars(copy)
    copy.observations[...] = 7.0  # the copy's arrays are its own, and so are its views
    np.random.seed(3)
    assert th.all(copy.sample(8).observations == 7.0)
    np.random.seed(3)
    assert not th.all(ours.sample(8).observations == 7.0)


@pytest.mark.parametrize("with_next_actions", [False, True])
@pytest.mark.parametrize("optimize_memory_usage", [False, True])
def test_transition_rows_are_the_stored_rows(with_next_actions: bool, optimize_memory_usage: bool) -> None:
    """DPG's transition buffer gathers by torch what direct indexing of its arrays gives."""
    kwargs = dict(optimize_memory_usage=optimize_memory_usage, handle_timeout_termination=not optimize_memory_usage)
    buffer = _filled(TransitionBuffer, SPACES["box"], 2, **kwargs)
    assert isinstance(buffer, TransitionBuffer)
    time_indices, env_indices = np.array([0, 5, buffer.buffer_size - 1, 12]), np.array([1, 0, 1, 1])
    batch = buffer._gather(time_indices, env_indices, with_next_actions, env=None)
    following = (time_indices + 1) % buffer.buffer_size
    ended = buffer.dones[time_indices, env_indices]
    next_storage, next_time = (
        (buffer.observations, following) if optimize_memory_usage else (buffer.next_observations, time_indices)
    )
    expected = {
        "observations": buffer.observations[time_indices, env_indices],
        "actions": buffer.actions[time_indices, env_indices],
        "next_observations": next_storage[next_time, env_indices],
        "dones": (ended * (1.0 - buffer.timeouts[time_indices, env_indices])).reshape(-1, 1),
        "rewards": buffer.rewards[time_indices, env_indices].reshape(-1, 1),
    }
    if with_next_actions:
        expected["next_actions"] = buffer.actions[following, env_indices]
        expected["next_action_known"] = (1.0 - ended).reshape(-1, 1)
    else:
        assert batch.next_actions is None and batch.next_action_known is None
    for name, array in expected.items():
        assert th.equal(getattr(batch, name), th.as_tensor(array)), name


def test_sql_learns_exactly_as_with_sb3s_buffer() -> None:
    """Same seed, same updates: SQL's default buffer only changes how minibatches are gathered."""
    kwargs = dict(buffer_size=500, batch_size=32, learning_starts=50, policy_kwargs=dict(net_arch=[16, 16]), seed=3)
    ours = SQL("MlpPolicy", "Pendulum-v1", **kwargs).learn(120)
    sb3 = SQL("MlpPolicy", "Pendulum-v1", replay_buffer_class=ReplayBuffer, **kwargs).learn(120)
    assert type(ours.replay_buffer) is TorchSampledReplayBuffer and type(sb3.replay_buffer) is ReplayBuffer
    sb3_parameters = sb3.policy.state_dict()
    for name, parameter in ours.policy.state_dict().items():
        assert th.equal(parameter, sb3_parameters[name]), name


@pytest.mark.parametrize(
    ("env", "kwargs", "buffer_class"),
    [
        ("CartPole-v1", {}, TorchSampledReplayBuffer),
        ("Pendulum-v1", dict(n_steps=3), NStepReplayBuffer),
        (SimpleMultiObsEnv(), {}, DictReplayBuffer),
    ],
)
def test_sql_chooses_the_torch_gathered_buffer_where_sb3_would_use_its_plain_one(
    env: object, kwargs: dict, buffer_class: type
) -> None:
    policy = "MultiInputPolicy" if isinstance(env, SimpleMultiObsEnv) else "MlpPolicy"
    model = SQL(policy, env, buffer_size=10, **kwargs)
    assert type(model.replay_buffer) is buffer_class

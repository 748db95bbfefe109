"""SB3-style tests for what an SB3 user expects of our algorithms (issue 16): Dict observations, multi-dimensional
Box actions, policy-level save/load with custom extractors, batch-norm statistics in target networks, replay
buffer options (HER) for DPG and PPO's truncated mini-batch warning in KL-PPO. Budgets are tiny."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.envs import BitFlippingEnv, FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sbx_lecture.common.targets import PolyakTarget, check_tau
from sbx_lecture.dpg import DPG
from sbx_lecture.dpg.buffers import TransitionBatch, TransitionBuffer
from sbx_lecture.dpg.policies import DPGPolicy
from sbx_lecture.npg import NPG, TNPG
from sbx_lecture.ppo_kl import KLPPO
from sbx_lecture.sql import SQL
from sbx_lecture.sql.policies import SQLPolicy


class FlattenBatchNormExtractor(BaseFeaturesExtractor):
    """Flatten, then batch normalization: the extractor SB3's tests use to watch running statistics."""

    def __init__(self, observation_space: spaces.Box) -> None:
        n_features = int(np.prod(observation_space.shape))
        super().__init__(observation_space, n_features)
        self.flatten = nn.Flatten()
        self.batch_norm = nn.BatchNorm1d(n_features)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.batch_norm(self.flatten(observations))


class CustomExtractor(BaseFeaturesExtractor):
    """A custom extractor with a features size of its own."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 5) -> None:
        super().__init__(observation_space, features_dim)
        self.linear = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(observation_space.shape)), features_dim))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(observations)


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
        return self.observation_space.sample(), -float(np.sum(np.square(action))), False, self._t >= 20, {}


def multi_obs_env(discrete_actions: bool) -> SimpleMultiObsEnv:
    return SimpleMultiObsEnv(random_start=False, discrete_actions=discrete_actions)


# --- defect 1: Dict observations -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [NPG, TNPG])
@pytest.mark.parametrize("fisher_sub_sampling_factor", [1, 2])
def test_natural_gradient_learns_on_dict_observations(algorithm: type, fisher_sub_sampling_factor: int) -> None:
    model = algorithm(
        "MultiInputPolicy",
        multi_obs_env(discrete_actions=True),
        n_steps=64,
        fisher_sub_sampling_factor=fisher_sub_sampling_factor,
        seed=0,
    )
    model.learn(128)
    assert model._n_updates == 2
    obs = model.env.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1,)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),  # online, compatible critic
        dict(on_policy=True),  # online SARSA: next actions from the Dict transition buffer
        dict(critic="mlp", buffer_size=500, batch_size=16),
        dict(critic="mlp", buffer_size=500, batch_size=16, target_networks=True),
    ],
)
def test_dpg_learns_on_dict_observations(kwargs: dict) -> None:
    model = DPG("MultiInputPolicy", multi_obs_env(discrete_actions=False), learning_starts=20, seed=0, **kwargs)
    model.learn(60)
    assert model._n_updates > 0
    action, _ = model.predict(model.env.reset(), deterministic=True)
    assert action.shape == (1, 4)


def test_dpg_with_mlp_policy_on_dict_observations_is_an_sb3_error() -> None:
    with pytest.raises(ValueError, match="MultiInputPolicy"):
        DPG("MlpPolicy", multi_obs_env(discrete_actions=False))


# --- defect 2: multi-dimensional Box actions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(critic="mlp", buffer_size=200, batch_size=8, target_networks=True), dict(on_policy=True)],
)
def test_dpg_learns_with_a_matrix_action_space(kwargs: dict) -> None:
    model = DPG("MlpPolicy", MatrixActionEnv(), learning_starts=10, seed=0, **kwargs)
    model.learn(50)  # the env asserts the shape of every action after learning_starts
    assert model._n_updates > 0
    actions, _ = model.predict(np.zeros((3, 3), dtype=np.float32), deterministic=True)
    assert actions.shape == (3, 2, 2)
    assert np.all(np.abs(actions) <= 1.0)
    single, _ = model.predict(np.zeros(3, dtype=np.float32))
    assert single.shape == (2, 2)


# --- defect 3: policy save/load keeps the features extractor and optimizer settings ----------------------------


def test_sql_cnn_policy_with_features_dim_round_trips(tmp_path: Path) -> None:
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True)
    model = SQL("CnnPolicy", env, buffer_size=100, policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16)))
    model.policy.save(tmp_path / "policy.pth")
    loaded = SQLPolicy.load(tmp_path / "policy.pth")
    assert loaded.q_net.features_extractor.features_dim == 16
    obs = np.stack([env.observation_space.sample() for _ in range(3)])
    np.testing.assert_array_equal(
        model.policy.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )


@pytest.mark.parametrize(
    ("algorithm", "env_id", "policy_class"),
    [(SQL, "CartPole-v1", SQLPolicy), (SQL, "Pendulum-v1", SQLPolicy), (DPG, "Pendulum-v1", DPGPolicy)],
)
def test_policy_save_load_keeps_a_custom_extractor_and_optimizer(
    algorithm: type, env_id: str, policy_class: type, tmp_path: Path
) -> None:
    policy_kwargs = dict(
        features_extractor_class=CustomExtractor,
        features_extractor_kwargs=dict(features_dim=5),
        optimizer_class=th.optim.RMSprop,
        optimizer_kwargs=dict(alpha=0.9),
    )
    model = algorithm("MlpPolicy", env_id, buffer_size=100, policy_kwargs=policy_kwargs, seed=0)
    model.policy.save(tmp_path / "policy.pth")
    loaded = policy_class.load(tmp_path / "policy.pth")
    extractors = [module for module in loaded.modules() if isinstance(module, BaseFeaturesExtractor)]
    assert extractors and all(isinstance(module, CustomExtractor) for module in extractors)
    assert loaded.optimizer_class is th.optim.RMSprop
    assert loaded.optimizer_kwargs["alpha"] == 0.9
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    np.testing.assert_array_equal(
        model.policy.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )


# --- defect 4: target networks and batch normalization ---------------------------------------------------------


def _running_statistics(module: nn.Module) -> list[th.Tensor]:
    return [buffer.clone() for name, buffer in module.named_buffers() if "running_" in name]


def _parameters(module: nn.Module) -> list[th.Tensor]:
    return [parameter.detach().clone() for parameter in module.parameters()]


def _target_pairs(model: SQL | DPG) -> list[tuple[nn.Module, nn.Module]]:
    if isinstance(model, SQL):
        return [(model.q_net, model.q_net_target)]
    assert model.policy.actor_target is not None and model.policy.critic_target is not None
    return [(model.actor, model.policy.actor_target), (model.critic, model.policy.critic_target)]


def _batch_norm_model(name: str, tau: float) -> SQL | DPG:
    policy_kwargs = dict(features_extractor_class=FlattenBatchNormExtractor, net_arch=[16])
    if name == "sql":
        return SQL(
            "MlpPolicy",
            "CartPole-v1",
            tau=tau,
            learning_starts=20,
            batch_size=16,
            buffer_size=200,
            policy_kwargs=policy_kwargs,
            seed=0,
        )
    critic = "mlp" if name == "dpg_mlp" else "compatible"
    return DPG(
        "MlpPolicy",
        "Pendulum-v1",
        critic=critic,
        target_networks=True,
        tau=tau,
        buffer_size=200,
        batch_size=16,
        learning_starts=20,
        policy_kwargs=policy_kwargs,
        seed=0,
    )


@pytest.mark.parametrize("name", ["sql", "dpg_mlp", "dpg_compatible"])
@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_targets_receive_batch_norm_statistics(name: str, tau: float) -> None:
    model = _batch_norm_model(name, tau)
    initial_targets = [_parameters(target) for _, target in _target_pairs(model)]
    initial_statistics = [_running_statistics(target) for _, target in _target_pairs(model)]
    model.learn(50)
    assert model._n_updates > 0
    for (online, target), parameters, statistics in zip(
        _target_pairs(model), initial_targets, initial_statistics, strict=True
    ):
        # the running statistics are copied whatever tau is
        assert statistics, "the extractor has batch-norm statistics"
        for online_stat, target_stat, initial in zip(
            _running_statistics(online), _running_statistics(target), statistics, strict=True
        ):
            assert th.equal(online_stat, target_stat)
            assert not th.equal(target_stat, initial)
        expected = parameters if tau == 0.0 else _parameters(online)  # tau=0: frozen; tau=1: hard copy
        for target_parameter, wanted in zip(_parameters(target), expected, strict=True):
            assert th.equal(target_parameter, wanted)


def test_polyak_target_averages_parameters_and_copies_statistics() -> None:
    online, target = (
        nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)),
        nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)),
    )
    online(th.randn(8, 2))  # moves the online running statistics
    before = _parameters(target)
    PolyakTarget(online, target).update(0.25)
    for after, old, new in zip(_parameters(target), before, _parameters(online), strict=True):
        th.testing.assert_close(after, 0.75 * old + 0.25 * new)
    for online_stat, target_stat in zip(_running_statistics(online), _running_statistics(target), strict=True):
        assert th.equal(online_stat, target_stat)
    with pytest.raises(ValueError, match="same architecture"):
        PolyakTarget(online, nn.Linear(2, 2))


@pytest.mark.parametrize("tau", [-0.1, 1.5])
def test_tau_outside_the_unit_interval_is_rejected(tau: float) -> None:
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\]"):
        check_tau(tau)
    with pytest.raises(ValueError, match="tau"):
        SQL("MlpPolicy", "CartPole-v1", tau=tau)
    with pytest.raises(ValueError, match="tau"):
        DPG("MlpPolicy", "Pendulum-v1", tau=tau)


# --- defect 5: DPG's replay buffer options ---------------------------------------------------------------------


def test_dpg_with_her_on_a_goal_env() -> None:
    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
    model = DPG(
        "MultiInputPolicy",
        env,
        critic="mlp",
        buffer_size=1_000,
        batch_size=16,
        learning_starts=20,
        target_networks=True,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy="future"),
        seed=0,
    )
    model.learn(80)
    assert isinstance(model.replay_buffer, HerReplayBuffer)
    assert model._n_updates > 0


def test_dpg_with_sb3_buffers_and_n_step_discounts() -> None:
    model = DPG(
        "MlpPolicy",
        "Pendulum-v1",
        critic="mlp",
        buffer_size=200,
        batch_size=8,
        learning_starts=20,
        replay_buffer_class=NStepReplayBuffer,
        replay_buffer_kwargs=dict(n_steps=3, gamma=0.9),
        seed=0,
    )
    model.learn(40)
    assert type(model.replay_buffer) is NStepReplayBuffer
    batch = model._sample_batch(8)
    assert batch is not None and batch.discounts is not None
    next_q = th.ones(8, 1)
    expected = batch.rewards + (1.0 - batch.dones) * batch.discounts
    th.testing.assert_close(model._bootstrap(batch, next_q), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(replay_buffer_class=ReplayBuffer, buffer_size=None), "pass buffer_size"),
        (dict(replay_buffer_class=ReplayBuffer, buffer_size=100, on_policy=True), "on_policy=True"),
    ],
)
def test_dpg_replay_buffer_misuse_is_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DPG("MlpPolicy", "Pendulum-v1", **kwargs)


@pytest.mark.parametrize("kwargs", [dict(buffer_size=100, batch_size=8), dict(on_policy=True, train_freq=4)])
def test_dpg_optimize_memory_usage_learns(kwargs: dict) -> None:
    model = DPG(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=10,
        optimize_memory_usage=True,
        replay_buffer_kwargs=dict(handle_timeout_termination=False),
        seed=0,
        **kwargs,
    )
    model.learn(40)
    assert model.replay_buffer is not None and model.replay_buffer.optimize_memory_usage
    assert model._n_updates > 0


@pytest.mark.parametrize("with_next_actions", [False, True])
def test_transition_buffer_with_optimized_memory_pairs_each_state_with_its_successor(with_next_actions: bool) -> None:
    observation_space = spaces.Box(-100.0, 100.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    buffer = TransitionBuffer(
        5, observation_space, action_space, device="cpu", optimize_memory_usage=True, handle_timeout_termination=False
    )
    for step in range(7):  # wraps around: the row at the write position now holds only the newest s′
        obs = np.array([[step]], dtype=np.float32)
        buffer.add(obs, obs + 1, np.array([[0.0]]), np.array([step]), np.array([False]), [{}])

    def check(batch: TransitionBatch | None) -> None:
        assert batch is not None
        assert isinstance(batch.observations, th.Tensor) and isinstance(batch.next_observations, th.Tensor)
        th.testing.assert_close(batch.observations.flatten(), batch.rewards.flatten())  # s and r of one row
        th.testing.assert_close(batch.next_observations, batch.observations + 1)

    latest = buffer.latest(10, with_next_actions)
    check(latest)
    assert latest is not None and len(latest.rewards) == (3 if with_next_actions else 4)
    check(buffer.sample_transitions(200, with_next_actions))


# --- KL-PPO: the truncated mini-batch warning ------------------------------------------------------------------


def test_kl_ppo_warns_about_a_truncated_mini_batch() -> None:
    with pytest.warns(UserWarning, match="truncated mini-batch of size 1"):
        KLPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=63)


@pytest.mark.parametrize("batch_size", [32, 64, 128])
def test_kl_ppo_does_not_warn_when_the_rollout_splits_evenly(batch_size: int) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        KLPPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=batch_size)
    assert not [warning for warning in caught if "mini-batch" in str(warning.message)]


def test_target_updates_follow_the_loaded_networks(tmp_path: Path) -> None:
    """The target-update pairing is rebuilt with the networks on load, never pickled with the model."""
    model = _batch_norm_model("dpg_mlp", 0.5)
    model.save(tmp_path / "dpg.zip")
    loaded = DPG.load(tmp_path / "dpg.zip", trusted=True)  # its features extractor is a class of this test module
    assert loaded.policy.critic_target is not None
    pairing = loaded._target_updates[0]
    assert pairing.target_parameters[0] is next(loaded.policy.critic_target.parameters())
    assert pairing.parameters[0] is next(loaded.critic.parameters())


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("algo", ["npg", "tnpg", "ppo_kl", "dpg", "sql"])
def test_trains_and_round_trips_on_the_device(algo: str, device: str, tmp_path: Path) -> None:
    """As SB3's tests do: the CUDA case runs where a GPU is present (no GPU machine was lent to check it here)."""
    from sbx_lecture import get_algorithm
    from sbx_lecture.testing import suitable_env_id, tiny_hyperparams

    cls = get_algorithm(algo)
    model = cls("MlpPolicy", suitable_env_id(cls), device=device, seed=0, **tiny_hyperparams(cls))
    model.learn(64)
    assert all(parameter.device.type == device for parameter in model.policy.parameters())
    model.save(tmp_path / "model.zip")
    loaded = cls.load(tmp_path / "model.zip", device=device)
    assert all(parameter.device.type == device for parameter in loaded.policy.parameters())
    observations = np.stack([model.observation_space.sample() for _ in range(8)])
    np.testing.assert_allclose(
        model.predict(observations, deterministic=True)[0],
        loaded.predict(observations, deterministic=True)[0],
        rtol=1e-5,
        atol=1e-6,
    )
    loaded.set_env(model.get_env())
    loaded.learn(64, reset_num_timesteps=False)

"""Safe loading: payload files never run, plain SB3 zips and our own saves load untrusted and predict the same."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sb3_contrib import TRPO
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import sbx_lecture
from sbx_lecture.cli import main
from sbx_lecture.dpg import DPG
from sbx_lecture.hyperparams import linear_schedule
from sbx_lecture.loading import (
    ModelFileError,
    UntrustedContentError,
    inspect_model_file,
    load,
    load_normalization,
    load_replay_buffer,
    save,
    save_normalization,
    save_replay_buffer,
)
from sbx_lecture.loading.model import METADATA_NAME
from sbx_lecture.npg import NPG, TNPG
from sbx_lecture.ppo_kl import KLPPO
from sbx_lecture.sql import SQL

#: Model zips saved by an earlier sbx-lecture, whose sbx_lecture.json also described the pickled fields in JSON.
OLDER_SAVES = Path(__file__).parent / "data"


def _serialized(obj: Any, type_name: str = "<class 'abc.ABCMeta'>") -> dict[str, str]:
    return {":type:": type_name, ":serialized:": base64.b64encode(pickle.dumps(obj)).decode()}


def _replace_data_field(path: Path, field: str, value: Any) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data[field] = value
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def _assert_refused(exc: pytest.ExceptionInfo[UntrustedContentError], *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert "trusted=True" in message
    for word in words:
        assert word in message


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ppo") / "ppo.zip"
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(32)
    model.save(path)
    return path


def _observations(model: BaseAlgorithm, n: int = 16) -> Any:
    model.observation_space.seed(1)
    samples = [model.observation_space.sample() for _ in range(n)]
    if isinstance(samples[0], dict):
        return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
    return np.stack(samples)


def _same_predictions(a: BaseAlgorithm, b: BaseAlgorithm) -> None:
    obs = _observations(a)
    np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])


# ----------------------------------------------------------------------------------------------- payload files


def test_model_payload_never_runs(payload_type: type, ppo_zip: Path, tmp_path: Path) -> None:
    """SB3 would unpickle the field and so run the payload: the safe load refuses it in one line instead of leaving
    the field out with a warning, since a file that carries code is not one to load at all without trust."""
    path = tmp_path / "evil.zip"
    path.write_bytes(ppo_zip.read_bytes())
    marker = tmp_path / "marker"
    _replace_data_field(path, "policy_class", _serialized(payload_type(marker)))
    with pytest.raises(UntrustedContentError) as exc:
        load(path, algo="ppo")
    _assert_refused(exc, "policy_class", str(path))
    with pytest.raises(UntrustedContentError):
        sbx_lecture.load(path)  # no metadata, no algo: still refused before anything else
    with pytest.raises(UntrustedContentError):
        KLPPO.load(path)  # our classes' own load is the safe one
    assert not marker.exists()
    report = inspect_model_file(path)
    assert not marker.exists()
    assert report["needs_trust"] == ["policy_class"] and not report["safe_load"]
    assert "pathlib:Path.touch" in report["fields"]["policy_class"]["references"]
    # trusted=True is SB3's own loader: the payload runs (which proves that this test can see it)
    with pytest.raises(Exception):  # noqa: B017 - SB3 then fails on the missing policy class
        load(path, algo="ppo", trusted=True)
    assert marker.exists()


def test_payload_in_a_schedule_field_is_left_out_not_run(payload_type: type, ppo_zip: Path, tmp_path: Path) -> None:
    """A function field that cannot be rebuilt is left out with SB3's warning, as SB3 leaves out a field it cannot
    deserialize; the payload never runs (SB3 would run it: that is why it is not unpickled)."""
    path = tmp_path / "evil_schedule.zip"
    path.write_bytes(ppo_zip.read_bytes())
    marker = tmp_path / "marker"
    _replace_data_field(path, "clip_range", _serialized(payload_type(marker), "<class 'function'>"))
    with pytest.warns(UserWarning, match=r"Could not deserialize object clip_range.*`custom_objects`") as record:
        model = load(path, algo="ppo")
    assert "pathlib:Path.touch" in str(record[0].message) and "trusted=True" in str(record[0].message)
    assert not marker.exists()
    assert model.clip_range(1.0) == 0.2  # PPO's constructor default, as SB3 leaves it


def test_normalization_payload_never_runs(payload_type: type, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(pickle.dumps(payload_type(marker)))
    venv = make_vec_env("Pendulum-v1", 1)
    with pytest.raises(UntrustedContentError) as exc:
        load_normalization(path, venv)
    _assert_refused(exc, str(path))
    # a real VecNormalize pickle with a payload hidden in its statistics
    normalizer = VecNormalize(make_vec_env("Pendulum-v1", 1))
    normalizer.obs_rms.mean = payload_type(marker)  # type: ignore[assignment]
    normalizer.save(str(path))
    with pytest.raises(UntrustedContentError) as exc:
        load_normalization(path, venv)
    _assert_refused(exc, "pathlib:Path.touch")
    assert not marker.exists()


def test_replay_buffer_payload_never_runs(payload_type: type, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, learning_starts=1000)
    pickled = tmp_path / "replay_buffer.pkl"
    pickled.write_bytes(pickle.dumps(payload_type(marker)))
    with pytest.raises(UntrustedContentError) as exc:
        load_replay_buffer(model, pickled)
    _assert_refused(exc, str(pickled))
    npz = tmp_path / "replay_buffer.npz"
    with open(npz, "wb") as file:
        np.savez(
            file, **{"array/rewards": np.array([payload_type(marker)], dtype=object), "settings.json": np.array("{}")}
        )
    with pytest.raises(UntrustedContentError) as exc:
        load_replay_buffer(model, npz)
    _assert_refused(exc, "array/rewards")
    assert not marker.exists()


def test_corrupted_field_is_a_one_line_model_file_error(ppo_zip: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(ppo_zip.read_bytes())
    _replace_data_field(path, "_last_obs", {":type:": "x", ":serialized:": "bm90IGEgcGlja2xl"})
    with pytest.raises(ModelFileError, match="_last_obs") as exc:
        load(path, algo="ppo")
    assert "\n" not in str(exc.value)


def test_deeply_nested_field_is_refused(ppo_zip: Path, tmp_path: Path) -> None:
    path = tmp_path / "nested.zip"
    path.write_bytes(ppo_zip.read_bytes())
    depth = 100_000  # lists in lists: EMPTY_LIST × depth, then APPEND × (depth − 1)
    raw = b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b"."
    _replace_data_field(path, "_last_obs", {":serialized:": base64.b64encode(raw).decode()})
    with pytest.raises(UntrustedContentError, match="nested too deeply"):
        load(path, algo="ppo")


# ----------------------------------------------------------------------------------------------- plain SB3 zips


@pytest.mark.parametrize(
    ("cls", "algo", "env_id", "kwargs"),
    [
        (PPO, "ppo", "CartPole-v1", {"n_steps": 32, "batch_size": 32, "n_epochs": 1}),
        (SAC, "sac", "Pendulum-v1", {"learning_starts": 16, "batch_size": 16}),
        (DQN, "dqn", "CartPole-v1", {"learning_starts": 16, "batch_size": 16, "train_freq": 2}),
        (TD3, "td3", "Pendulum-v1", {"learning_starts": 16, "batch_size": 16}),
        (TRPO, "trpo", "CartPole-v1", {"n_steps": 32, "batch_size": 32, "n_critic_updates": 1}),
    ],
)
def test_plain_sb3_zip_loads_untrusted(cls: Any, algo: str, env_id: str, kwargs: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    model = cls("MlpPolicy", env_id, seed=0, **kwargs)
    model.learn(48)
    model.save(path)
    trusted = cls.load(path)
    safe = sbx_lecture.load(path, algo=algo)
    assert type(safe) is cls
    _same_predictions(trusted, safe)
    assert safe.num_timesteps == trusted.num_timesteps
    assert safe.observation_space == trusted.observation_space and safe.action_space == trusted.action_space
    assert safe.lr_schedule(0.5) == trusted.lr_schedule(0.5)
    assert repr(getattr(safe, "train_freq", None)) == repr(getattr(trusted, "train_freq", None))
    assert list(safe.ep_info_buffer) == list(trusted.ep_info_buffer)
    assert inspect_model_file(path)["safe_load"]
    # with an environment, the model trains on
    safe = sbx_lecture.load(path, env=make_vec_env(env_id, 1), algo=algo)
    safe.learn(16, reset_num_timesteps=False)


def test_dict_observation_model_loads_untrusted(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    model = DQN("MultiInputPolicy", SimpleMultiObsEnv(), learning_starts=8, batch_size=8, seed=0)
    model.learn(16)
    model.save(path)
    safe = load(path, algo="dqn")
    _same_predictions(model, safe)
    for key, value in model._last_obs.items():  # type: ignore[union-attr]
        np.testing.assert_array_equal(safe._last_obs[key], value)  # type: ignore[index]


def test_algorithm_inferred_from_the_policy_class_when_unambiguous(tmp_path: Path, ppo_zip: Path) -> None:
    path = tmp_path / "sac.zip"
    SAC("MlpPolicy", "Pendulum-v1", learning_starts=1000).save(path)
    assert type(load(path)) is SAC
    with pytest.raises(ModelFileError, match="pass algo=") as exc:
        load(ppo_zip)  # an ActorCriticPolicy fits PPO, A2C, TRPO, ...
    assert "\n" not in str(exc.value)
    save(SAC("MlpPolicy", "Pendulum-v1"), path, {"algo": "sac"})
    with pytest.raises(ModelFileError, match="saved by SAC, not by DQN"):
        load(path, algo="dqn")


def test_algorithm_of_our_save_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    save(TD3("MlpPolicy", "Pendulum-v1"), path)  # TD3's policy alone would fit DDPG too
    assert type(load(path)) is TD3


def test_activation_and_optimizer_classes_in_policy_kwargs(tmp_path: Path) -> None:
    import torch as th

    path = tmp_path / "model.zip"
    policy_kwargs = {"activation_fn": th.nn.ReLU, "net_arch": [8], "optimizer_class": th.optim.RMSprop}
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, policy_kwargs=policy_kwargs)
    model.save(path)
    safe = load(path, algo="ppo")
    assert safe.policy_kwargs["activation_fn"] is th.nn.ReLU
    assert isinstance(safe.policy.optimizer, th.optim.RMSprop)
    _same_predictions(model, safe)


def test_class_outside_the_allow_list_is_refused(ppo_zip: Path, tmp_path: Path) -> None:
    """SB3 would import and use any class the file names: only allow-listed classes are imported here."""
    path = tmp_path / "model.zip"
    path.write_bytes(ppo_zip.read_bytes())
    _replace_data_field(path, "policy_class", _serialized(zipfile.ZipFile))
    with pytest.raises(UntrustedContentError) as exc:
        load(path, algo="ppo")
    _assert_refused(exc, "zipfile:ZipFile")


# ----------------------------------------------------------------------------------------------- our saves


@pytest.mark.parametrize(("name", "cls"), [("klppo_lin_schedules.zip", KLPPO), ("dpg_lin_schedules.zip", DPG)])
def test_saves_of_an_earlier_version_load_safely(name: str, cls: Any) -> None:
    path = OLDER_SAVES / name
    model = load(path)
    assert type(model) is cls and cls.load(path).num_timesteps == model.num_timesteps == 32
    for progress in (1.0, 0.6, 0.2, 0.0):  # lin_0.001 schedules, pickled by value, come back as linear_schedule
        assert model.learning_rate(progress) == linear_schedule(1e-3)(progress)
        assert model.lr_schedule(progress) == pytest.approx(progress * 1e-3)
    assert model.policy_kwargs["net_arch"] == [8]
    assert inspect_model_file(path)["needs_trust"] == []


def test_description_of_an_earlier_save_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(OLDER_SAVES / "klppo_lin_schedules.zip") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    metadata = json.loads(members[METADATA_NAME])
    metadata["safe_load"]["fields"]["policy_class"] = {"$type": "class", "path": "os:system"}
    members[METADATA_NAME] = json.dumps(metadata).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    assert load(path).policy_class is load(OLDER_SAVES / "klppo_lin_schedules.zip").policy_class


@pytest.mark.parametrize(
    ("cls", "env_id", "kwargs"),
    [
        (NPG, "CartPole-v1", {"n_steps": 32}),
        (TNPG, "CartPole-v1", {"n_steps": 32}),
        (KLPPO, "CartPole-v1", {"n_steps": 32, "batch_size": 32, "n_epochs": 1}),
        (DPG, "Pendulum-v1", {"learning_starts": 16, "batch_size": 16}),
        (SQL, "Pendulum-v1", {"learning_starts": 16, "batch_size": 16}),
    ],
)
def test_our_algorithms_round_trip_safely(cls: Any, env_id: str, kwargs: Any, tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    model = cls("MlpPolicy", env_id, seed=0, **kwargs)
    model.learn(48)
    save(model, path, {"algo": cls.__name__.lower()})
    loaded = cls.load(path)
    assert type(loaded) is cls
    assert loaded.num_timesteps == model.num_timesteps
    _same_predictions(model, loaded)
    # the zip stays readable by SB3's own loader
    _same_predictions(model, cls.load(path, trusted=True))


def test_schedules_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    model = KLPPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, learning_rate=linear_schedule(1e-3))
    model.exploration = LinearSchedule(1.0, 0.1, 0.5)  # any schedule attribute is described
    model.constant = FloatSchedule(ConstantSchedule(0.25))
    save(model, path)
    loaded = load(path, algo="ppo_kl")
    for progress in (1.0, 0.6, 0.2, 0.0):
        assert loaded.lr_schedule(progress) == pytest.approx(progress * 1e-3)
        assert loaded.learning_rate(progress) == model.learning_rate(progress)
        assert loaded.exploration(progress) == model.exploration(progress)
        assert loaded.constant(progress) == 0.25


def test_schedules_of_plain_sb3_zips(tmp_path: Path) -> None:
    from rl_zoo3.utils import linear_schedule as zoo_linear_schedule

    path = tmp_path / "model.zip"
    zoo = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, learning_rate=zoo_linear_schedule(3e-4))
    zoo.save(path)
    assert load(path, algo="ppo").learning_rate(0.5) == pytest.approx(1.5e-4)
    ours = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, clip_range=linear_schedule(0.2))
    ours.save(path)  # plain SB3 pickles our closure by value: it is recognised by its name
    assert load(path, algo="ppo").clip_range(0.5) == pytest.approx(0.1)


# ----------------------------------------------------------------------------------------------- normalisation


def _stepped_normalizer(venv: Any, **kwargs: Any) -> VecNormalize:
    normalizer = VecNormalize(venv, **kwargs)
    normalizer.reset()
    for _ in range(10):
        normalizer.step(np.stack([normalizer.action_space.sample() for _ in range(venv.num_envs)]))
    return normalizer


def _assert_same_statistics(a: VecNormalize, b: VecNormalize) -> None:
    pairs = (
        [(a.obs_rms[k], b.obs_rms[k]) for k in a.obs_rms] if isinstance(a.obs_rms, dict) else [(a.obs_rms, b.obs_rms)]
    )
    for x, y in [*pairs, (a.ret_rms, b.ret_rms)]:
        np.testing.assert_array_equal(x.mean, y.mean)
        np.testing.assert_array_equal(x.var, y.var)
        assert x.count == y.count
    for name in ("training", "norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs_keys"):
        assert getattr(a, name) == getattr(b, name)


def test_unreadable_normalization_files(tmp_path: Path) -> None:
    venv = make_vec_env("Pendulum-v1", 1)
    for name, content in [("garbage.pkl", b"not a pickle at all"), ("missing.npz", None)]:
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ModelFileError) as exc:
            load_normalization(path, venv)
        assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_normalization_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "vecnormalize.npz"
    normalizer = _stepped_normalizer(make_vec_env("Pendulum-v1", 2), clip_obs=5.0, gamma=0.9)
    save_normalization(normalizer, path)
    _assert_same_statistics(normalizer, load_normalization(path, make_vec_env("Pendulum-v1", 2)))
    with pytest.raises(ModelFileError, match="shape"):
        load_normalization(path, make_vec_env("CartPole-v1", 1))


def test_normalization_npz_round_trip_dict_observations(tmp_path: Path) -> None:
    path = tmp_path / "vecnormalize.npz"
    normalizer = _stepped_normalizer(DummyVecEnv([SimpleMultiObsEnv]), norm_obs_keys=["vec"])
    save_normalization(normalizer, path)
    loaded = load_normalization(path, DummyVecEnv([SimpleMultiObsEnv]))
    assert set(loaded.obs_rms) == {"vec"}
    _assert_same_statistics(normalizer, loaded)


def test_restricted_unpickling_of_a_real_vecnormalize_pickle(tmp_path: Path) -> None:
    path = tmp_path / "vecnormalize.pkl"
    normalizer = _stepped_normalizer(make_vec_env("Pendulum-v1", 2), norm_reward=False)
    normalizer.save(str(path))
    _assert_same_statistics(normalizer, load_normalization(path, make_vec_env("Pendulum-v1", 2)))
    _assert_same_statistics(normalizer, load_normalization(path, make_vec_env("Pendulum-v1", 2), trusted=True))
    dict_path = tmp_path / "dict.pkl"
    dict_normalizer = _stepped_normalizer(DummyVecEnv([SimpleMultiObsEnv]), norm_obs_keys=["vec"])
    dict_normalizer.save(str(dict_path))
    _assert_same_statistics(dict_normalizer, load_normalization(dict_path, DummyVecEnv([SimpleMultiObsEnv])))


# ----------------------------------------------------------------------------------------------- replay buffer


def test_replay_buffer_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "replay_buffer.npz"
    model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=64, learning_starts=1000, seed=0)
    model.learn(80)  # wraps around: pos and full matter
    save_replay_buffer(model.replay_buffer, path)
    fresh = SAC("MlpPolicy", "Pendulum-v1", buffer_size=64, learning_starts=1000)
    load_replay_buffer(fresh, path)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(fresh.replay_buffer, name), getattr(model.replay_buffer, name))
    assert (fresh.replay_buffer.pos, fresh.replay_buffer.full) == (model.replay_buffer.pos, model.replay_buffer.full)
    assert fresh.replay_buffer.device == fresh.device
    with pytest.raises(ModelFileError, match="DictReplayBuffer"):
        load_replay_buffer(DQN("MultiInputPolicy", SimpleMultiObsEnv(), buffer_size=64), path)


def test_dict_replay_buffer_npz_round_trip_and_trusted_pickle(tmp_path: Path) -> None:
    path = tmp_path / "replay_buffer.npz"
    model = DQN("MultiInputPolicy", SimpleMultiObsEnv(), buffer_size=64, learning_starts=1000, seed=0)
    model.learn(40)
    save_replay_buffer(model.replay_buffer, path)
    fresh = DQN("MultiInputPolicy", SimpleMultiObsEnv(), buffer_size=64, learning_starts=1000)
    load_replay_buffer(fresh, path)
    for key in model.replay_buffer.observations:
        np.testing.assert_array_equal(fresh.replay_buffer.observations[key], model.replay_buffer.observations[key])
    assert fresh.replay_buffer.pos == model.replay_buffer.pos == 40
    pickled = tmp_path / "replay_buffer.pkl"
    model.save_replay_buffer(pickled)
    load_replay_buffer(fresh, pickled, trusted=True)
    assert fresh.replay_buffer.pos == 40


# ----------------------------------------------------------------------------------------------- inspect


def test_inspect_command(payload_type: type, ppo_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.zip"
    path.write_bytes(ppo_zip.read_bytes())
    marker = tmp_path / "marker"
    _replace_data_field(path, "ep_info_buffer", _serialized(payload_type(marker), "<class 'collections.deque'>"))
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ep_info_buffer" in out and "NEEDS TRUST" in out and "needs --trusted" in out
    assert main(["inspect", str(ppo_zip), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["safe_load"] and report["fields"]["n_steps"] == {"value": 32}
    assert not marker.exists()

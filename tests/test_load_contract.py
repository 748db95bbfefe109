"""Safe loading keeps SB3's load contract, and ``inspect`` tells what a trusted load would run.

The tests re-target ideas of SB3's own ``tests/test_save_load.py`` (``test_load_bad_zip``, ``test_no_resource_warning``,
``test_exclude_include_saved_params``, ``test_load_invalid_object``, ``test_cast_lr_schedule``,
``test_save_load_env_cnn``) at our classes.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

import sbx_lecture
from sbx_lecture.cli import main
from sbx_lecture.loading import ModelFileError, UntrustedContentError, inspect_model_file, save
from sbx_lecture.npg import NPG, TNPG
from sbx_lecture.ppo_kl import KLPPO

TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 1, "policy_kwargs": {"net_arch": [8]}}


@pytest.fixture(scope="module")
def klppo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("klppo") / "klppo.zip"
    KLPPO("MlpPolicy", "CartPole-v1", seed=0, **TINY).save(path)
    return path


def _copy_with(source: Path, target: Path, members: dict[str, bytes]) -> Path:
    """``source`` copied to ``target`` with ``members`` (name → content) replaced."""
    with zipfile.ZipFile(source) as archive:
        content = {**{name: archive.read(name) for name in archive.namelist()}, **members}
    with zipfile.ZipFile(target, "w") as archive:
        for name, value in content.items():
            archive.writestr(name, value)
    return target


def _with_fields(source: Path, target: Path, **fields: Any) -> Path:
    with zipfile.ZipFile(source) as archive:
        data = {**json.loads(archive.read("data")), **fields}
    return _copy_with(source, target, {"data": json.dumps(data).encode()})


def _serialized(raw: bytes, type_name: str = "<class 'abc.ABCMeta'>") -> dict[str, str]:
    return {":type:": type_name, ":serialized:": base64.b64encode(raw).decode()}


def _one_line(exc: pytest.ExceptionInfo[Exception], *words: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    return message


def _deserialize_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if "Could not deserialize" in str(w.message)]


# ------------------------------------------------------------------------------------------- errors and sources


def test_load_bad_zip_raises_what_sb3_raises(klppo_zip: Path, tmp_path: Path) -> None:
    """A non-zip is SB3's ``ValueError``, a missing file its ``FileNotFoundError``, a zip without ``data`` its
    ``AssertionError`` (SB3 asserts "No data found"): ours subclass them, in one line."""
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    for source in (garbage, io.BytesIO(garbage.read_bytes())):
        with pytest.raises(ValueError) as exc:
            KLPPO.load(source)
        assert isinstance(exc.value, ModelFileError)
        _one_line(exc, "not a readable zip")
    with pytest.raises(FileNotFoundError) as missing:
        NPG.load(tmp_path / "missing.zip")
    _one_line(missing, "does not exist")
    no_data = tmp_path / "no_data.zip"
    with zipfile.ZipFile(no_data, "w") as archive:
        archive.writestr("policy.pth", b"")
    with pytest.raises(AssertionError) as exc:
        KLPPO.load(no_data)
    assert isinstance(exc.value, ModelFileError)
    _one_line(exc, "no 'data' member")
    with pytest.raises(ModelFileError) as exc:
        KLPPO.load(_copy_with(klppo_zip, tmp_path / "empty_weights.zip", {"policy.pth": b""}))
    _one_line(exc, "'policy.pth' is corrupted")
    KLPPO("MlpPolicy", "CartPole-v1", **{**TINY, "policy_kwargs": {"net_arch": [16]}}).save(tmp_path / "wider.zip")
    with zipfile.ZipFile(tmp_path / "wider.zip") as archive:
        weights = archive.read("policy.pth")
    with pytest.raises(RuntimeError) as exc:  # torch's load_state_dict, in SB3's set_parameters
        KLPPO.load(_copy_with(klppo_zip, tmp_path / "other_weights.zip", {"policy.pth": weights}))
    assert isinstance(exc.value, ModelFileError)
    _one_line(exc, "size mismatch")


def test_load_from_a_file_object(tmp_path: Path) -> None:
    """SB3 loads from ``io.BytesIO`` and open files (left open); so does the safe load, without ``trusted``."""
    model = NPG("MlpPolicy", "CartPole-v1", seed=0, n_steps=32, policy_kwargs={"net_arch": [8]})
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    buffer = io.BytesIO()
    model.save(buffer)
    with tempfile.TemporaryFile() as file:
        model.save(file)  # SB3's test_no_resource_warning: loaded right after saving, without seeking
        for source in (io.BytesIO(buffer.getvalue()), file):
            loaded = NPG.load(source)
            np.testing.assert_array_equal(
                loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
            )
        assert not file.closed
    assert type(sbx_lecture.load(io.BytesIO(buffer.getvalue()), algo="npg")) is NPG


# ------------------------------------------------------------------------------------------- custom_objects


def test_custom_objects_replace_saved_fields(payload_type: type, klppo_zip: Path, tmp_path: Path) -> None:
    """As in SB3: a custom object replaces the stored field, which is never read (so a payload there never runs),
    and a name the file does not hold is not set."""
    model = KLPPO.load(klppo_zip, custom_objects={"learning_rate": 2e-5, "dummy": 1.0})
    assert model.learning_rate == 2e-5 and model.lr_schedule(1.0) == 2e-5
    assert not hasattr(model, "dummy")
    marker = tmp_path / "marker"
    evil = _with_fields(klppo_zip, tmp_path / "evil.zip", policy_class=_serialized(pickle.dumps(payload_type(marker))))
    with pytest.raises(UntrustedContentError):
        KLPPO.load(evil)
    assert type(KLPPO.load(evil, custom_objects={"policy_class": ActorCriticPolicy})) is KLPPO
    assert not marker.exists()


def test_load_invalid_object_warns_and_leaves_it_out(tmp_path: Path) -> None:
    """SB3's test_load_invalid_object: a field that cannot be deserialized gives a ``UserWarning`` naming
    ``custom_objects`` and is left out (the model keeps its constructor's value, no silent stand-in); with the
    fields in ``custom_objects`` nothing warns. A lambda is code pickled by value: SB3 unpickles it, the safe load
    cannot without ``trusted=True``."""
    path = tmp_path / "lambda.zip"
    KLPPO("MlpPolicy", "CartPole-v1", learning_rate=lambda progress: 1e-3 * progress, **TINY).save(path)
    with pytest.warns(UserWarning, match="custom_objects") as record:
        model = KLPPO.load(path, env=make_vec_env("CartPole-v1", 1))
    # lr_schedule, rebuilt from learning_rate by _setup_model on every load, is left out without a warning of its own
    assert [m.split(" without")[0] for m in _deserialize_warnings(record)] == [
        "Could not deserialize object learning_rate"
    ]
    default = KLPPO("MlpPolicy", "CartPole-v1", **TINY).learning_rate
    assert model.learning_rate == default and model.lr_schedule(0.3) == default
    model.learn(32)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert KLPPO.load(path, custom_objects={"learning_rate": lambda _: 1.0}).lr_schedule(0.5) == 1.0
    assert _deserialize_warnings(record) == []
    assert KLPPO.load(path, trusted=True).lr_schedule(0.5) == pytest.approx(5e-4)


def test_sb3_schedules_restored_exactly(tmp_path: Path) -> None:
    """SB3's test_cast_lr_schedule: the schedule classes come back from their data, and ``lr_schedule`` gives
    floats."""
    path = tmp_path / "schedules.zip"
    schedules = {"learning_rate": LinearSchedule(1e-3, 1e-4, 0.5), "clip_range": ConstantSchedule(0.1)}
    model = KLPPO(
        "MlpPolicy", "CartPole-v1", target_kl=FloatSchedule(LinearSchedule(0.02, 0.01, 1.0)), **schedules, **TINY
    )
    model.save(path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        loaded = KLPPO.load(path)
    assert _deserialize_warnings(record) == []
    for name in ("learning_rate", "lr_schedule", "clip_range", "target_kl"):
        assert repr(getattr(loaded, name)) == repr(getattr(model, name))
    assert type(loaded.lr_schedule(1.0)) is float
    for progress in (1.0, 0.7, 0.2):
        assert loaded.lr_schedule(progress) == model.lr_schedule(progress)
        assert loaded.target_kl(progress) == model.target_kl(progress)


def test_other_policy_kwargs_raise_as_in_sb3(klppo_zip: Path) -> None:
    """SB3's load raises ``ValueError`` ("The specified policy kwargs do not equal the stored policy kwargs")
    when the given ``policy_kwargs`` differ from the saved ones (it does not warn); the same ones load."""
    env = make_vec_env("CartPole-v1", 1)
    KLPPO.load(klppo_zip, env=env, policy_kwargs={"net_arch": [8]}).learn(32)
    with pytest.raises(ValueError, match="The specified policy kwargs do not equal the stored policy kwargs") as exc:
        KLPPO.load(klppo_zip, env=env, policy_kwargs={"net_arch": [16]})
    _one_line(exc, "KLPPO")


def test_the_stored_policy_kwargs_are_the_users(tmp_path: Path) -> None:
    """As in SB3, a model stores the ``policy_kwargs`` it was given (DPG passes its critic settings to the policy
    without adding them), so ``load`` with the same ``policy_kwargs`` succeeds and other ones are refused."""
    from sbx_lecture.dpg import DPG

    path = tmp_path / "dpg.zip"
    kwargs = {"net_arch": [32]}
    model = DPG("MlpPolicy", "Pendulum-v1", policy_kwargs=kwargs, learning_starts=16, buffer_size=64, seed=0)
    model.learn(32)
    assert model.policy_kwargs == {"net_arch": [32]} and model.policy.critic_type == model.critic_type
    model.save(path)
    loaded = DPG.load(path, env=make_vec_env("Pendulum-v1", 1), policy_kwargs={"net_arch": [32]})
    assert loaded.policy_kwargs == kwargs and type(loaded.critic) is type(model.critic)
    observations = np.stack([model.observation_space.sample() for _ in range(4)])
    np.testing.assert_array_equal(loaded.predict(observations)[0], model.predict(observations)[0])
    with pytest.raises(ValueError, match="The specified policy kwargs do not equal the stored policy kwargs"):
        DPG.load(path, policy_kwargs={"net_arch": [16]})


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: KLPPO("MlpPolicy", "CartPole-v1", clip_range_vf=-0.2), "clip_range_vf"),
        (lambda: KLPPO("MlpPolicy", "CartPole-v1", n_steps=1, batch_size=2), "n_steps"),
        (lambda: KLPPO("MlpPolicy", "CartPole-v1", batch_size=1), "batch_size"),
        (lambda: NPG("MlpPolicy", "CartPole-v1", n_steps=1), "n_steps"),
        (lambda: sbx_lecture.DPG("MlpPolicy", "CartPole-v1"), "action space"),
    ],
    ids=["klppo-clip_range_vf", "klppo-n_steps", "klppo-batch_size", "npg-n_steps", "dpg-discrete"],
)
def test_inputs_sb3_asserts_on_raise_an_assertion_error(make: Any, name: str) -> None:
    """Where SB3 (PPO, sb3-contrib's TRPO, ``BaseAlgorithm``'s action-space check) refuses an input with
    ``assert``, ours raise an ``AssertionError`` too (still a ``ValueError`` with the one-line message)."""
    with pytest.raises(AssertionError, match=name) as exc:
        make()
    assert isinstance(exc.value, ValueError)


def test_older_klppo_file_with_float_schedules_loads(klppo_zip: Path, tmp_path: Path) -> None:
    """Older files hold ``clip_range`` (and ``target_kl``) as plain floats: ``_setup_model`` makes them schedules, as
    SB3's PPO does with ``FloatSchedule``."""
    path = _with_fields(klppo_zip, tmp_path / "old.zip", clip_range=0.2, clip_range_vf=0.5, target_kl=0.01)
    model = KLPPO.load(path, env=make_vec_env("CartPole-v1", 1))
    assert isinstance(model.clip_range, FloatSchedule) and model.clip_range(0.5) == 0.2
    assert model.clip_range_vf(0.5) == 0.5 and model.target_kl(0.5) == 0.01
    model.learn(32)


@pytest.mark.parametrize("with_metadata", [False, True])
def test_another_algorithms_file_is_refused(with_metadata: bool, tmp_path: Path) -> None:
    """SB3's data names no algorithm: a file is another algorithm's when our metadata names another class, or its
    fields hold constructor arguments that the loading class does not take."""
    path = tmp_path / "tnpg.zip"
    model = TNPG("MlpPolicy", "CartPole-v1", n_steps=32, policy_kwargs={"net_arch": [8]})
    if with_metadata:
        save(model, path, {"env": "CartPole-v1"})
    else:
        model.save(path)
    with pytest.raises(ModelFileError) as exc:
        NPG.load(path)
    _one_line(exc, "saved by TNPG, not by NPG")
    with pytest.raises(ModelFileError) as exc:
        sbx_lecture.load(path, algo="ppo_kl")
    _one_line(exc, "TNPG", "KLPPO")
    assert type(TNPG.load(path)) is TNPG


# ------------------------------------------------------------------------------------------- inspect


def test_inspect_names_every_global_a_trusted_load_would_run(
    klppo_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pickle can call a global and drop the result before giving a harmless class: the safe load refuses it
    (a trusted load would run the call, as this test shows), and ``inspect`` names it."""
    marker = tmp_path / "marker"
    raw = (
        b"\x80\x04cpathlib\nPath.touch\n(cpathlib\nPath\n(V" + str(marker).encode() + b"\ntRtR0"
        b"cstable_baselines3.common.policies\nActorCriticPolicy\n."
    )
    path = _with_fields(klppo_zip, tmp_path / "dropped.zip", policy_class=_serialized(raw))
    with pytest.raises(UntrustedContentError) as exc:
        KLPPO.load(path)
    _one_line(exc, "policy_class", "pathlib:Path.touch", "trusted=True", "train --resume never unpickles")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "policy_class                 NEEDS TRUST" in out and "safe load: needs --trusted" in out
    assert "imports pathlib:Path.touch, pathlib:Path, stable_baselines3.common.policies:ActorCriticPolicy" in out
    assert not marker.exists()
    KLPPO.load(path, trusted=True)
    assert marker.exists()
    assert main(["inspect", str(klppo_zip)]) == 0
    out = capsys.readouterr().out
    assert "imports stable_baselines3.common.policies:ActorCriticPolicy" in out
    assert "safe load: loads without unpickling" in out


def test_inspect_marks_left_out_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lambda.zip"
    NPG("MlpPolicy", "CartPole-v1", n_steps=32, step_size=lambda progress: 0.1 * progress).save(path)
    report = inspect_model_file(path)
    assert report["safe_load"] and report["needs_trust"] == ["step_size", "step_size_schedule"]
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "step_size                    NEEDS TRUST (left out without it)" in out
    assert "needs --trusted: step_size, step_size_schedule need unpickling; without it load leaves them out" in out


def test_pickle_payload_in_a_pth_member(
    payload_type: type, workdir: Path, klppo_zip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch's ``weights_only`` load (SB3's, trusted or not) refuses a ``.pth`` member that is not plain tensors:
    ``inspect`` says the file needs trust, and ``load`` and ``eval`` refuse it in one line."""
    marker = workdir / "marker"
    path = workdir / "model.zip"
    save(KLPPO.load(klppo_zip), path, {"algo": "ppo_kl", "env": "CartPole-v1"})
    tensors = io.BytesIO()
    th.save({"weights": th.zeros(2), "payload": payload_type(marker)}, tensors)
    _copy_with(path, path, {"policy.pth": tensors.getvalue()})
    report = inspect_model_file(path)
    assert report["needs_trust"] == ["policy.pth"] and not report["safe_load"]
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "policy.pth" in out and "NEEDS TRUST: torch refuses it" in out and "safe load: needs --trusted" in out
    with pytest.raises(UntrustedContentError) as exc:
        KLPPO.load(path)
    _one_line(exc, "'policy.pth'", "torch refuses it")
    assert main(["eval", str(path), "--episodes", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "policy.pth" in error[0] and "Traceback" not in error[0]
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["bare pickle", "garbage"])
def test_pth_member_outside_torchs_format(
    kind: str, payload_type: type, workdir: Path, klppo_zip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``.pth`` member that is not torch's zip format (a bare pickle with a payload, or garbage) is refused as the
    others are, in one line, by ``inspect``, ``load`` and ``eval``: torch has no list of its globals to give, and its
    warning about the pickle protocol stays out of the user's terminal."""
    marker = workdir / "marker"
    path = workdir / "model.zip"
    save(KLPPO.load(klppo_zip), path, {"algo": "ppo_kl", "env": "CartPole-v1"})
    content = pickle.dumps(payload_type(marker)) if kind == "bare pickle" else b"garbage" * 100
    _copy_with(path, path, {"policy.pth": content})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = inspect_model_file(path)
    assert not [w for w in record if "pickle protocol" in str(w.message)]
    assert report["needs_trust"] == ["policy.pth"] and not report["safe_load"]
    assert main(["inspect", str(path)]) == 0
    assert "NEEDS TRUST: torch refuses it: not a torch checkpoint" in capsys.readouterr().out
    with pytest.raises(UntrustedContentError) as exc:
        KLPPO.load(path)
    _one_line(exc, "'policy.pth'", "not a torch checkpoint")
    assert main(["eval", str(path), "--episodes", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "policy.pth" in error[0] and "Traceback" not in error[0]
    assert not marker.exists()

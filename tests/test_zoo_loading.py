"""``sbx-lecture zoo enjoy`` loads a run's files as ``eval`` does: nothing a run folder holds runs code, unless the
user says ``--trusted``."""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import pytest

from sbx_lecture.cli import main

ZOO_RUN = [
    "zoo",
    "train",
    "--algo",
    "ppo",
    "--env",
    "Acrobot-v1",
    "-n",
    "256",
    "-f",
    "logs",
    "--seed",
    "0",
    "--eval-freq",
    "-1",
    "-params",
    "n_envs:1",
    "n_steps:128",
    "batch_size:64",
    "n_epochs:1",
    "normalize:True",
]
ENJOY = ["zoo", "enjoy", "--algo", "ppo", "--env", "Acrobot-v1", "-f", "logs", "--no-render", "-n", "50"]


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    folder = tmp_path_factory.mktemp("zoo")
    previous = Path.cwd()
    os.chdir(folder)
    try:
        assert main(ZOO_RUN) == 0
    finally:
        os.chdir(previous)
    return folder


@pytest.fixture
def run_copy(zoo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import shutil

    shutil.copytree(zoo_run / "logs", tmp_path / "logs")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "logs" / "ppo" / "Acrobot-v1_1"


def test_enjoy_reads_the_runs_statistics_and_says_which(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(ENJOY) == 0
    assert "normalisation statistics: logs/ppo/Acrobot-v1_1/Acrobot-v1/vecnormalize.pkl" in capsys.readouterr().err


def test_a_statistics_payload_never_runs(
    payload_type: type, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = run_copy.parent.parent.parent / "marker"
    (run_copy / "Acrobot-v1" / "vecnormalize.pkl").write_bytes(pickle.dumps(payload_type(marker)))
    assert main(ENJOY) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sbx-lecture zoo: error:") or err[-1].startswith("sbx-lecture: error:")
    assert "--trusted" in err[-1] and "Traceback" not in "\n".join(err)
    assert not marker.exists()
    with contextlib.suppress(Exception):  # the zoo's own loading: SB3 unpickles it (and then fails on it)
        main([*ENJOY, "--trusted"])
    assert marker.exists()


def test_a_yaml_payload_in_the_runs_config_never_runs(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = run_copy.parent.parent.parent / "marker"
    config = run_copy / "Acrobot-v1" / "config.yml"
    config.write_text(f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n")
    assert main(ENJOY) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "config.yml" in line and "--trusted" in line
    assert not marker.exists()


def test_a_model_payload_never_runs(payload_type: type, run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import base64
    import json
    import zipfile

    marker = run_copy.parent.parent.parent / "marker"
    model = run_copy / "Acrobot-v1.zip"
    with zipfile.ZipFile(model) as source:
        members = {item.filename: source.read(item) for item in source.infolist()}
    data = json.loads(members["data"])
    data["policy_class"] = {
        ":type:": "<class 'abc.ABCMeta'>",
        ":serialized:": base64.b64encode(pickle.dumps(payload_type(marker))).decode(),
    }
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(model, "w") as crafted:
        for name, content in members.items():
            crafted.writestr(name, content)
    assert main(ENJOY) == 2
    assert "policy_class" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not marker.exists()

"""The plugin as users get it: installed with pip, found through its entry point, trained from the command line.

These tests need the real distribution (``pip install plugins/sbx-lecture-pg``); without it they fail and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

INSTALL_HINT = "sbx-lecture-pg is not installed: run `pip install plugins/sbx-lecture-pg` from the sbx-lecture checkout"


def _distribution() -> metadata.Distribution:
    try:
        return metadata.distribution("sbx-lecture-pg")
    except metadata.PackageNotFoundError:
        pytest.fail(INSTALL_HINT)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SBX_LECTURE_STRICT": "1"}
    env.pop("SBX_LECTURE_LOAD_PLUGINS", None)
    env.pop("SBX_LECTURE_DISABLE_PLUGINS", None)
    return subprocess.run([*_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _command() -> list[str]:
    """The installed ``sbx-lecture`` console script of this interpreter's environment (else its entry function)."""
    folder = Path(sys.executable).parent
    for name in ("sbx-lecture", "sbx-lecture.exe"):
        if (folder / name).is_file():
            return [str(folder / name)]
    return [sys.executable, "-c", "import sys; from sbx_lecture.cli import main; sys.exit(main(sys.argv[1:]))"]


def test_entry_point_is_declared():
    distribution = _distribution()
    entry_points = [ep for ep in distribution.entry_points if ep.group == "sbx_lecture"]
    assert [(ep.name, ep.value) for ep in entry_points] == [("pg", "sbx_lecture_pg.plugin")]


def test_list_shows_the_algorithms_with_distribution_and_version(tmp_path):
    version = _distribution().version
    result = _run("list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    rows = {row["name"]: row for row in listing["algorithms"]}
    for name in ("reinforce", "ispg"):
        assert name in rows, f"{name} missing from `sbx-lecture list`; {INSTALL_HINT}"
        assert rows[name]["plugin"] == "pg"
        assert rows[name]["distribution"] == f"sbx-lecture-pg=={version}"
    assert listing["failed_plugins"] == []
    text = _run("list", cwd=tmp_path).stdout
    assert "reinforce" in text and f"sbx-lecture-pg=={version}" in text


def test_registry_resolves_the_classes_and_zoo_files():
    from sbx_lecture import get_algorithm, list_algorithms

    from sbx_lecture_pg import ISPG, REINFORCE

    assert get_algorithm("reinforce") is REINFORCE
    assert get_algorithm("ispg") is ISPG
    specs = {spec.name: spec for spec in list_algorithms()}
    for name in ("reinforce", "ispg"):
        assert Path(specs[name].resolve_zoo_hyperparams()).is_file()  # shipped as package data
        assert callable(specs[name].load_zoo_sampler())


def test_cli_train_reinforce(tmp_path):
    out = tmp_path / "run"
    result = _run(
        "train",
        "reinforce",
        "CartPole-v1",
        "--timesteps",
        "300",
        "--out",
        str(out),
        "--no-progress",
        "-p",
        "n_episodes=2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "model.zip").is_file()
    evaluation = _run("eval", str(out / "model.zip"), "--episodes", "2", cwd=tmp_path)
    assert evaluation.returncode == 0, evaluation.stderr
    assert "reinforce on CartPole-v1" in evaluation.stdout


def test_zoo_train_reinforce(tmp_path):
    logs = str(tmp_path / "logs")
    result = _run(
        "zoo",
        "train",
        "--algo",
        "reinforce",
        "--env",
        "CartPole-v1",
        "-n",
        "300",
        "-f",
        logs,
        "--seed",
        "0",
        "--eval-freq",
        "-1",
        "-params",
        "n_episodes:2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    saved = list((tmp_path / "logs" / "reinforce").glob("CartPole-v1_*/CartPole-v1.zip"))
    assert saved, f"no model saved under {tmp_path / 'logs'}: {result.stdout[-2000:]}"

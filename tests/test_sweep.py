"""``sbx-lecture sweep`` on the real servers and real Dask clusters, with tiny budgets (SB3's A2C on CartPole-v1,
300 steps, one hidden layer of 16 units, two evaluations of one episode).

- Two sweep processes started at once on a freshly created PostgreSQL database share one 2-worker Dask cluster
  (``--scheduler``): every trial ends complete (or pruned), each complete one with K per-seed scores, each trained by
  one process only; the password of the storage URL is in no line printed and no file written.
- A learning rate pinned at 1e30 makes every seed diverge: each trial is pruned with the reason and the sweep goes on.
- Ctrl-C stops a sweep without leaving a trial RUNNING; the same command then continues the study, and the best
  setting it writes (``best.yml``) trains with ``sbx-lecture train ALGO ENV -conf best.yml``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sbx_lecture import cli
from sbx_lecture.bench.harness import connect
from sbx_lecture.hyperparams import parse_value
from sbx_lecture.infra.studies import mask_url, open_study_storage
from sbx_lecture.infra.validation import INTERRUPTED_STATUS
from sbx_lecture.sweep import NOTHING_COMPLETE_STATUS, main, sample, zoo_text
from sbx_lecture.zoo import register_with_zoo, zoo_sampler
from sbx_lecture.zoo_config import split_hyperparams

PASSWORD = "pw-" + secrets.token_hex(6)
STUDY = "a2c_CartPole-v1_t300"
TINY = ["a2c", "CartPole-v1", "--timesteps", "300", "--evaluations", "2", "--eval-episodes", "1",
        "-p", "n_envs=1", "-p", "n_steps=16", "-p", "policy_kwargs=dict(net_arch=[16])"]  # fmt: skip
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _sweep_process(*arguments: str) -> subprocess.Popen[str]:
    environment = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    command = [sys.executable, "-m", "sbx_lecture.cli", "sweep", *arguments]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _load(storage: str, name: str = STUDY) -> Any:
    return optuna.load_study(study_name=name, storage=open_study_storage(storage))


def test_samplers_of_ours_plugins_and_sb3_give_zoo_sections_that_read_back() -> None:
    for algo, n_actions in (("tnpg", 0), ("dpg", 2), ("reinforce", 0), ("ppo", 0), ("td3", 2)):
        trial = optuna.create_study(direction="maximize").ask()
        args = argparse.Namespace(sample=zoo_sampler(algo, register_with_zoo()), n_actions=n_actions, n_envs=1)
        sampled = sample(trial, args)
        section = yaml.safe_load(yaml.safe_dump({key: zoo_text(value) for key, value in sampled.items()}))
        zoo, kwargs = split_hyperparams(section)  # what `train -conf` does with a section
        assert "action_noise" not in kwargs and set(zoo) <= {"noise_type", "noise_std"}, algo
        if "policy_kwargs" in sampled:
            net_arch = sampled["policy_kwargs"]["net_arch"]
            assert kwargs["policy_kwargs"]["net_arch"] == (list(net_arch) if isinstance(net_arch, list) else net_arch)
    text = zoo_text({"net_arch": {"pi": [64], "vf": [64]}, "activation_fn": parse_value("nn.Tanh"), "ortho": False})
    assert text == "dict(net_arch=dict(pi=[64], vf=[64]), activation_fn=nn.Tanh, ortho=False)"
    assert parse_value(text)["activation_fn"] is parse_value("nn.Tanh")
    with pytest.raises(Exception, match="no zoo sampler"):
        zoo_sampler("crossq", register_with_zoo())


@pytest.mark.parametrize(
    "storage", ["not a url", f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/none"], ids=["not-a-url", "refused"]
)
def test_a_storage_that_cannot_be_opened_is_one_line_and_leaves_no_folder(
    storage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweeps" / "mine"
    assert cli.main(["sweep", *TINY, "--trials", "1", "--storage", storage, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "cannot open the Optuna storage" in error[0] and PASSWORD not in error[0]
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_scheduler_is_one_line_and_leaves_no_folder_nor_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from sbx_lecture.bench import harness

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(harness, "CONNECT_TIMEOUT", 2)
    out = tmp_path / "sweeps" / "mine"
    assert cli.main(["sweep", *TINY, "--scheduler", f"tcp://127.0.0.1:{port}", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "cannot reach the Dask scheduler" in error[0]
    assert list(tmp_path.iterdir()) == []  # the default journal file (the study) is not created either


def test_two_sweeps_at_once_share_a_fresh_postgresql_study(postgres_database: str, tmp_path: Path) -> None:
    storage = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/{postgres_database}"
    outs = [tmp_path / "machine0", tmp_path / "machine1"]
    with connect(2) as client:  # one 2-worker cluster on 127.0.0.1 that both sweeps use
        common = [*TINY, "--trials", "4", "--seeds", "2", "--confirm-seeds", "1", "--storage", storage]
        processes = [
            _sweep_process(*common, "--scheduler", client.scheduler.address, "--out", str(out)) for out in outs
        ]
        outputs = [process.communicate(timeout=900) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        assert PASSWORD not in stdout + stderr
        assert mask_url(storage) in stdout
    trials = _load(storage).trials
    assert 4 <= len(trials) <= 5 and all(trial.state in FINISHED for trial in trials)  # 5: both asked at once
    for trial in trials:
        assert len(trial.user_attrs["seed_scores"]) == 2 or "pruned" in trial.user_attrs
    trained = [{int(path.name.split("_")[1]) for path in (out / STUDY).glob("trial_*")} for out in outs]
    assert not trained[0] & trained[1] and trained[0] | trained[1] == {trial.number for trial in trials}
    for out in outs:
        assert all(PASSWORD.encode() not in path.read_bytes() for path in out.rglob("*") if path.is_file())
        assert f"`{mask_url(storage)}`" in (out / "report.md").read_text()


def test_a_diverging_search_space_prunes_each_trial_and_goes_on(tmp_path: Path) -> None:
    arguments = [*TINY, "-p", "learning_rate=1e30", "--trials", "2", "--seeds", "2", "--jobs", "2"]
    assert main([*arguments, "--out", str(tmp_path)]) == NOTHING_COMPLETE_STATUS
    trials = _load(str(tmp_path / "study.log")).trials
    assert [trial.state for trial in trials] == [TrialState.PRUNED, TrialState.PRUNED]
    for trial in trials:
        assert "nan" in trial.user_attrs["pruned"] and trial.user_attrs["hyperparams"]["learning_rate"] == 1e30
    assert "## Pruned and stopped trials" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "best.yml").exists()


@pytest.fixture(scope="module")
def stopped_then_continued(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any], list[Any]]:
    """A sweep stopped by Ctrl-C while its second trial trains, then the same command again; the output folder and
    the study's trials after each."""
    out = tmp_path_factory.mktemp("sweep")
    arguments = [*TINY, "--trials", "3", "--seeds", "1", "--jobs", "1", "--confirm-seeds", "2", "--out", str(out)]
    process, deadline = _sweep_process(*arguments), time.monotonic() + 600
    assert process.stdout is not None
    while "trial 1: started" not in process.stdout.readline():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == INTERRUPTED_STATUS, stderr[-3000:]
    stopped = _load(str(out / "study.log")).trials
    assert main(arguments) == 0
    return out, stopped, _load(str(out / "study.log")).trials


def test_a_stopped_sweep_leaves_no_trial_running_and_a_rerun_continues_it(
    stopped_then_continued: tuple[Path, list[Any], list[Any]],
) -> None:
    out, stopped, continued = stopped_then_continued
    assert [trial.state for trial in stopped] == [TrialState.COMPLETE, TrialState.FAIL]
    assert "interrupted" in stopped[1].user_attrs["stopped"]
    assert continued[0].value == stopped[0].value and continued[1].state == TrialState.FAIL
    assert [trial.state for trial in continued[2:]] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert not (out / STUDY / "trial_4").exists()
    report = (out / "report.md").read_text()
    assert "1 fail" in report and "confirmation" in report and "held-out seeds 1000-1001" in report
    assert "](report.png)" in report and (out / "report.png").read_bytes().startswith(b"\x89PNG")


def test_the_best_setting_trains_from_its_zoo_file(
    stopped_then_continued: tuple[Path, list[Any], list[Any]], tmp_path: Path
) -> None:
    out, _, continued = stopped_then_continued
    best = max((trial for trial in continued if trial.state == TrialState.COMPLETE), key=lambda trial: trial.value)
    section = yaml.safe_load((out / "best.yml").read_text())["CartPole-v1"]
    assert section == best.user_attrs["hyperparams"] and section["n_timesteps"] == 300
    run = tmp_path / "run"
    arguments = ["a2c", "CartPole-v1", "-conf", str(out / "best.yml"), "--out", str(run), "--no-progress"]
    assert cli.main(["train", *arguments]) == 0
    assert (run / "model.zip").is_file()

"""Distributed ``-optimize`` on the real servers: PostgreSQL and Redis on 127.0.0.1 (trust authentication).

K worker processes of ``sbx-lecture zoo train -optimize`` are started at once on a fresh database (a fresh key
prefix for Redis); all must survive, share one study, and never print the password of the storage URL (the servers
trust local connections, so any password in the URL is accepted, and must still be masked).
"""

from __future__ import annotations

import os
import pickle
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from sbx_lecture.infra.studies import mask_url, open_study_storage

REDIS = "redis://127.0.0.1:6379/0"
PASSWORD = "pw-" + secrets.token_hex(6)

#: The tiny trial of one worker: tnpg on CartPole-v1, 128 steps, one evaluation.
WORKER = ["train", "--algo", "tnpg", "--env", "CartPole-v1", "-n", "128", "--eval-freq", "-1", "-optimize",
          "--n-trials", "1", "--n-startup-trials", "1", "--n-evaluations", "1", "--eval-episodes", "1",
          "--sampler", "random", "--pruner", "none", "--no-optim-plots", "--num-threads", "1",
          "-params", "n_envs:1", "n_steps:64", "batch_size:64", "n_critic_updates:1", "cg_max_steps:5"]  # fmt: skip


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    import redis

    prefix = f"sbx_test_{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def _start_workers(storage: str, count: int, cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Start ``count`` processes of ``sbx-lecture zoo train`` at once (seeds 0, 1, ...) and wait for all."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    processes = []
    for index in range(count):
        command = [sys.executable, "-m", "sbx_lecture.zoo", *WORKER, "-f", f"logs{index}", "--seed", str(index)]
        processes.append(
            subprocess.Popen(
                [*command, "--storage", storage],
                cwd=cwd,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for process in processes:
        stdout, stderr = process.communicate()
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return results


def _check_shared_study(results: list[subprocess.CompletedProcess[str]], storage: str, study_name: str) -> None:
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
        assert PASSWORD not in result.stdout + result.stderr, "the storage password was printed"
    announcements = [
        line for result in results for line in result.stdout.splitlines() if line.startswith("sbx-lecture zoo:")
    ]
    created = [line for line in announcements if "created the study" in line]
    joined = [line for line in announcements if "joining the existing study" in line]
    assert len(created) == 1 and len(joined) == len(results) - 1, announcements
    assert f"'{study_name}' at {mask_url(storage)}" in created[0]
    study = optuna.load_study(study_name=study_name, storage=open_study_storage(storage))
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert len(study.trials) == len(results)
    assert all(trial.state in finished for trial in study.trials)


def test_three_workers_started_at_once_on_a_fresh_postgresql_database(postgres_database: str, tmp_path: Path) -> None:
    storage = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/{postgres_database}"
    results = _start_workers(storage, 3, tmp_path)
    _check_shared_study(results, storage, "tnpg_CartPole-v1_n128")


def test_two_workers_started_at_once_on_a_redis_journal(redis_prefix: str, tmp_path: Path) -> None:
    storage = f"redis://:{PASSWORD}@127.0.0.1:6379/0?prefix={redis_prefix}"
    results = _start_workers(storage, 2, tmp_path)
    _check_shared_study(results, storage, "tnpg_CartPole-v1_n128")


#: An environment module for ``--gym-packages``: CartPole whose first reward in a process is NaN, so that the first
#: trial of each worker diverges (NonFiniteError) and the next ones do not.
FIRST_REWARD_NAN = """
import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class FirstRewardNaN(CartPoleEnv):
    diverged = False

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        if not FirstRewardNaN.diverged:
            FirstRewardNaN.diverged = True
            reward = float("nan")
        return observation, reward, terminated, truncated, info


gym.register("FirstRewardNaN-v0", entry_point=FirstRewardNaN, max_episode_steps=500)
"""


def test_two_workers_prune_a_diverging_trial_go_on_and_keep_their_reports(
    postgres_database: str, tmp_path: Path
) -> None:
    """Two workers in one log folder: a trial that diverges is pruned with its reason in one line and each worker goes
    on to its next trial; each writes a report of its own (the zoo names them by the second), and no report holds the
    password of the storage URL."""
    (tmp_path / "first_reward_nan.py").write_text(FIRST_REWARD_NAN)
    storage = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/{postgres_database}"
    worker = [*WORKER, "--gym-packages", "first_reward_nan", "-f", "logs", "--storage", storage]
    worker[worker.index("CartPole-v1")] = "FirstRewardNaN-v0"
    worker[worker.index("--n-trials") + 1] = "2"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "sbx_lecture.zoo", *worker, "--seed", str(seed)],
            cwd=tmp_path,
            env=dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [process.communicate() for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        pruned = [line for line in stderr.splitlines() if " pruned. " in line]
        assert len(pruned) == 1 and "NaN" in pruned[0] and "rollout rewards" in pruned[0], stderr[-3000:]
    study = optuna.load_study(study_name="tnpg_FirstRewardNaN-v0_n128", storage=storage)
    states = sorted(trial.state.name for trial in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert all("NaN" in trial.user_attrs["pruned"] for trial in study.trials if trial.state.name == "PRUNED")
    reports = sorted(path.name for path in (tmp_path / "logs" / "tnpg").glob("report_*"))
    assert len(reports) == 4 and len({name.rsplit(".", 1)[0] for name in reports}) == 2, reports
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), f"{path} holds the password"
    with open(tmp_path / "logs" / "tnpg" / reports[-1], "rb") as report:  # our own report: trusted
        assert len(pickle.load(report).trials) >= 2


def test_urls_are_masked() -> None:
    assert mask_url("postgresql://user:secret@db:5432/optuna") == "postgresql://user:***@db:5432/optuna"
    assert mask_url("at redis://:secret@host:6379/0?prefix=x.") == "at redis://:***@host:6379/0?prefix=x."
    assert mask_url("postgresql://user@db/optuna and logs/a.log") == "postgresql://user@db/optuna and logs/a.log"
    assert mask_url("mysql+pymysql://u:p%40ss@h/d") == "mysql+pymysql://u:***@h/d"

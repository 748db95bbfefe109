"""Distributed ``-optimize`` on the real servers: PostgreSQL and Redis on 127.0.0.1 (trust authentication).

K worker processes of ``sbx-lecture zoo train -optimize`` are started at once on a fresh database (a fresh key
prefix for Redis); all must survive, share one study, and never print the password of the storage URL (the servers
trust local connections, so any password in the URL is accepted, and must still be masked).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from sbx_lecture.zoo import mask_url, open_study_storage

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


def test_urls_are_masked() -> None:
    assert mask_url("postgresql://user:secret@db:5432/optuna") == "postgresql://user:***@db:5432/optuna"
    assert mask_url("at redis://:secret@host:6379/0?prefix=x.") == "at redis://:***@host:6379/0?prefix=x."
    assert mask_url("postgresql://user@db/optuna and logs/a.log") == "postgresql://user@db/optuna and logs/a.log"
    assert mask_url("mysql+pymysql://u:p%40ss@h/d") == "mysql+pymysql://u:***@h/d"

"""One torch thread by default in ``train``, ``eval`` and ``zoo`` (``--threads N``), and the plain progress lines
``train`` prints instead of the bar when stdout is not a terminal."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch as th

from sbx_lecture import training, zoo
from sbx_lecture.cli import _build_parser, main

TINY_PPO = ["-p", "n_envs=1", "-p", "n_steps=64", "-p", "batch_size=32", "-p", "n_epochs=1"]


@pytest.fixture(autouse=True)
def _threads_restored() -> Iterator[None]:
    before = th.get_num_threads()
    yield
    th.set_num_threads(before)


def test_train_and_eval_default_to_one_thread() -> None:
    assert _build_parser().parse_args(["train"]).threads == 1
    assert _build_parser().parse_args(["eval", "model.zip"]).threads == 1


def test_train_uses_one_thread_records_it_and_prints_plain_progress(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "PLAIN_PROGRESS_SECONDS", 0.0)
    seen: list[int] = []
    learn = training._learn

    def probe(*args: Any) -> training.TrainResult:
        seen.append(th.get_num_threads())
        return learn(*args)

    monkeypatch.setattr(training, "_learn", probe)
    th.set_num_threads(2)
    assert main(["train", "ppo", "CartPole-v1", "--timesteps", "256", "--out", "run", *TINY_PPO]) == 0
    assert seen == [1]
    assert json.loads((workdir / "run" / "run.json").read_text())["segments"][-1]["threads"] == 1
    lines = capsys.readouterr().out.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("trained 256 steps"))
    progress = [line for line in lines[:summary] if re.fullmatch(r"steps \d+/256, \d+ steps/s.*", line)]
    assert progress and progress[-1].startswith("steps 256/256")
    assert any("recent mean return" in line for line in progress)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
@pytest.mark.parametrize("command", [["train", "--timesteps", "10"], ["eval", "missing.zip"], ["zoo", "enjoy"]])
def test_a_bad_thread_count_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], command: list[str], value: str
) -> None:
    assert main([*command, "--threads", value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threads" in err and value in err, err
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize("command", [["train", "--timesteps", "10"], ["eval", "missing.zip"]])
def test_a_thread_count_beyond_the_bound_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main([*command, "--threads", "100000"]) == 2  # torch itself would crash
    assert capsys.readouterr().err.strip() == "sbx-lecture: error: --threads must be at most 1024, got 100000"
    assert not any(workdir.iterdir())


def test_zoo_consumes_threads_before_rl_zoo3(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[str], int]] = []
    monkeypatch.setattr(zoo, "run_script", lambda name, rest, trusted=False: calls.append((rest, th.get_num_threads())))
    th.set_num_threads(2)
    main(["zoo", "enjoy", "--algo", "ppo", "--env", "CartPole-v1"])
    main(["zoo", "enjoy", "--threads=3", "--algo", "ppo", "--env", "CartPole-v1"])
    rest = ["--algo", "ppo", "--env", "CartPole-v1"]
    assert calls == [(rest, 1), (rest, 3)]

"""The run engine as a hostile-but-realistic user meets it: crashes at every write point of a checkpoint, damaged
bundles, two writers, repeated resumes, Ctrl-C, and every bad input as one line with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sbx_lecture.checkpoints import committed_bundles, interrupts_deferred, newest_valid_bundle, stop_signals_handled
from sbx_lecture.cli import main
from sbx_lecture.runs import curve_points

TINY_SAC = [
    "-p",
    "learning_starts=20",
    "-p",
    "buffer_size=2000",
    "-p",
    "batch_size=16",
    "-p",
    "policy_kwargs=dict(net_arch=[8])",
]
TINY_A2C = ["-p", "n_envs=1", "-p", "n_steps=8", "-p", "policy_kwargs=dict(net_arch=[8])"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sbx-lecture: error: ")
    return lines[0]


def _python(script: str, cwd: Path, **kwargs: object) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=environment,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[call-overload]
    )


# -- fault injection at every write point of a checkpoint ----------------------------------------------------------

#: Where a bundle write can die: before each file, after the manifest (before the commit), after the commit.
WRITE_POINTS = [
    ("sbx_lecture.loading", "save"),
    ("sbx_lecture.loading", "save_replay_buffer"),
    ("sbx_lecture.loading", "save_normalization"),
    ("sbx_lecture.checkpoints", "_save_rng_states"),
    ("sbx_lecture.checkpoints", "fsync_folder"),
    ("sbx_lecture.checkpoints", "prune_bundles"),
]

_CLI_SCRIPT = """
from sbx_lecture.cli import run
run({arguments!r})
"""

_KILLED_TRAINING = """
import importlib, os, sys
module = importlib.import_module({module!r})
original = getattr(module, {name!r})
calls = []

def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == {die_at_call}:
        os._exit(9)  # as if killed: no clean-up code runs
    return original(*args, **kwargs)

setattr(module, {name!r}, dying)
from sbx_lecture.cli import main
sys.exit(main({arguments!r}))
"""


@pytest.mark.parametrize(("module", "name"), WRITE_POINTS, ids=[name for _, name in WRITE_POINTS])
def test_a_kill_at_any_write_point_resumes_a_consistent_bundle(workdir: Path, module: str, name: str) -> None:
    arguments = [
        "train",
        "sac",
        "Pendulum-v1",
        "--timesteps",
        "90",
        "--checkpoint-freq",
        "30",
        "--out",
        "run",
        "--no-progress",
        "-p",
        "normalize=True",
        *TINY_SAC,
    ]
    # fsync_folder runs twice per bundle (staging folder, then the commit): die before the second commit.
    die_at_call = 3 if name == "fsync_folder" else 2
    process = _python(
        _KILLED_TRAINING.format(module=module, name=name, die_at_call=die_at_call, arguments=arguments), workdir
    )
    process.communicate(timeout=300)
    assert process.returncode == 9
    bundle, passed_over = newest_valid_bundle(workdir / "run")
    assert passed_over == []
    assert bundle.steps == (60 if name == "prune_bundles" else 30)

    assert main(["train", "sac", "Pendulum-v1", "--timesteps", "120", "--out", "run", "--resume", "--no-progress"]) == 0
    from sbx_lecture import loading

    final, _ = newest_valid_bundle(workdir / "run")
    model = loading.load(final.path / "model.zip")
    loading.load_replay_buffer(model, final.path / "replay_buffer.npz")
    assert model.num_timesteps == final.steps == 120 == model.replay_buffer.size()  # model and buffer in step
    leftovers = [p.name for p in (workdir / "run" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == [], "temporary folders of the killed write are removed on resume"


def test_a_damaged_newest_bundle_falls_back_to_the_previous_one(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "train",
                "a2c",
                "CartPole-v1",
                "--timesteps",
                "64",
                "--checkpoint-freq",
                "16",
                "--out",
                "run",
                "--no-progress",
                *TINY_A2C,
            ]
        )
        == 0
    )
    newest, older = committed_bundles(workdir / "run")[:2]
    model = newest / "model.zip"
    model.write_bytes(model.read_bytes()[:-100])  # truncated, as by a full disk
    capsys.readouterr()
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "96", "--out", "run", "--resume", "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1
    assert newest.name in notes[0] and "model.zip" in notes[0] and f"resuming from the older {older.name}" in notes[0]
    run = json.loads((workdir / "run" / "run.json").read_text())
    assert run["segments"][-1]["resumed_from"] == older.name


def test_no_usable_bundle_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "train",
                "a2c",
                "CartPole-v1",
                "--timesteps",
                "32",
                "--checkpoint-freq",
                "16",
                "--out",
                "run",
                "--no-progress",
                *TINY_A2C,
            ]
        )
        == 0
    )
    for bundle in committed_bundles(workdir / "run"):
        (bundle / "manifest.json").write_text("{not json")
    capsys.readouterr()
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "64", "--out", "run", "--resume", "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "no usable checkpoint" in line and "unreadable manifest" in line


# -- one writer per run ----------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_first_trains(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = _python(
        """
        import sys, time
        from pathlib import Path
        from sbx_lecture.runs import run_lock
        Path("run").mkdir()
        with run_lock(Path("run")):
            print("locked", flush=True)
            time.sleep(60)
        """,
        workdir,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"]):
            assert (
                main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--out", "run", "--no-progress", *extra]) == 2
            )
            assert "being written by another process" in _error_line(capsys)
        assert (workdir / "run").is_dir(), "the first writer's folder is left alone"
    finally:
        holder.kill()
        holder.communicate()


def test_two_trainings_started_together_have_one_winner(workdir: Path) -> None:
    arguments = ["train", "a2c", "CartPole-v1", "--timesteps", "400", "--out", "run", "--no-progress", *TINY_A2C]
    script = _CLI_SCRIPT.format(arguments=arguments)
    processes = [_python(script, workdir) for _ in range(2)]
    outcomes = [(process.wait(timeout=300), process.communicate()[1]) for process in processes]
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    loser = next(err for code, err in outcomes if code == 2)
    assert "Traceback" not in loser and ("another process" in loser or "not empty" in loser)
    run = json.loads((workdir / "run" / "run.json").read_text())
    assert len(run["segments"]) == 1
    assert newest_valid_bundle(workdir / "run")[0].steps == 400
    assert not (workdir / "run" / ".lock").exists(), "the lock file goes with the last writer"


# -- logs ------------------------------------------------------------------------------------------------------------


def test_resuming_twice_keeps_every_log_segment(workdir: Path) -> None:
    common = ["train", "ppo", "CartPole-v1", "--out", "run", "--no-progress"]
    tiny_ppo = [
        "-p",
        "n_envs=1",
        "-p",
        "n_steps=64",
        "-p",
        "batch_size=32",
        "-p",
        "n_epochs=1",
        "-p",
        "policy_kwargs=dict(net_arch=[8])",
    ]
    assert main([*common, "--timesteps", "192", *tiny_ppo]) == 0
    assert main([*common, "--timesteps", "384", "--resume"]) == 0
    assert main([*common, "--timesteps", "576", "--resume"]) == 0
    run_dir = workdir / "run"
    for progress in ("progress.csv", "progress_1.csv", "progress_2.csv"):
        assert len((run_dir / progress).read_text().splitlines()) > 1, progress
    segments = json.loads((run_dir / "run.json").read_text())["segments"]
    assert [s["start"] for s in segments] == [0, 192, 384]
    assert [s["monitor"] for s in segments] == [f"monitor/segment_{k}" for k in range(3)]
    bundle, _ = newest_valid_bundle(run_dir)
    points = curve_points(run_dir, bundle.manifest["monitor"])
    assert np.all(np.diff(points[:, 0]) > 0), "the curve runs on cumulative steps"
    assert points[-1, 0] <= 576


def test_episodes_past_the_resumed_checkpoint_leave_the_curve(tmp_path: Path) -> None:
    first = tmp_path / "monitor" / "segment_0"
    first.mkdir(parents=True)
    header = '#{"t_start": 0}\nr,l,t\n'
    (first / "0.monitor.csv").write_text(header + "10,50,1\n20,50,2\n30,50,3\n40,50,4\n")
    second = tmp_path / "monitor" / "segment_1"
    second.mkdir()
    (second / "0.monitor.csv").write_text(header + "50,50,1\n")
    resumed = {"start": 0, "episodes": {"monitor/segment_0/0.monitor.csv": 2}}  # the bundle was at step 100
    current = {"start": 100, "episodes": {"monitor/segment_1/0.monitor.csv": 1}}
    points = curve_points(tmp_path, [resumed, current])
    assert points.tolist() == [[50, 10], [100, 20], [150, 50]]


# -- Ctrl-C ------------------------------------------------------------------------------------------------------------


def test_sigterm_stops_like_ctrl_c_and_an_ignored_ctrl_c_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup, or in a shell's background
    try:
        with stop_signals_handled(signal.default_int_handler):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
            with interrupts_deferred() as received:  # a checkpoint being written holds the signal back
                signal.raise_signal(signal.SIGTERM)
            assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt, on purpose
def test_a_ctrl_c_whose_interrupt_a_finaliser_swallowed_still_stops_with_a_checkpoint(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sbx_lecture.checkpoints import CheckpointCallback

    saved_rollout_end = CheckpointCallback._on_rollout_end

    def ctrl_c_inside_a_finaliser(callback: CheckpointCallback) -> None:
        saved_rollout_end(callback)
        if callback.model.num_timesteps >= 500 and not hasattr(callback, "signalled"):
            callback.signalled = True  # type: ignore[attr-defined]
            target = type("Target", (), {})()
            weakref.finalize(target, signal.raise_signal, signal.SIGINT)
            del target  # the finaliser runs here: Python prints the KeyboardInterrupt raised in it and drops it

    monkeypatch.setattr(CheckpointCallback, "_on_rollout_end", ctrl_c_inside_a_finaliser)
    handlers = [signal.getsignal(each) for each in (signal.SIGINT, signal.SIGTERM)]
    status = main(["train", "a2c", "CartPole-v1", "--timesteps", "20000", "--out", "run", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 130, err
    # Called in-process, the command gives the caller its signal handlers back (a later subprocess inherits them).
    assert [signal.getsignal(each) for each in (signal.SIGINT, signal.SIGTERM)] == handlers
    bundle, _ = newest_valid_bundle(workdir / "run")
    assert 500 <= bundle.steps < 1_000 and f"checkpoint {bundle.path.name} saved" in err


def test_ctrl_c_during_start_up_saves_nothing_and_leaves_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sbx_lecture.training as training

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "build_model", interrupted)
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "nothing was saved" in err and "checkpoint" not in err.replace("nothing was saved", "")
    assert not (workdir / "runs").exists()  # not even the runs/ folder it made
    (workdir / "mine").mkdir()
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--no-progress", "--out", "mine"]) == 130
    assert (workdir / "mine").is_dir() and not any((workdir / "mine").iterdir()), "the user's own folder stays"


@pytest.mark.parametrize(
    "signals", [[signal.SIGINT], [signal.SIGINT, signal.SIGINT], [signal.SIGTERM]], ids=["ctrl-c", "twice", "kill"]
)
def test_ctrl_c_while_training_commits_a_checkpoint(workdir: Path, signals: list[int]) -> None:
    arguments = [
        "train",
        "sac",
        "Pendulum-v1",
        "--timesteps",
        "100000",
        "--checkpoint-freq",
        "40",
        "--out",
        "run",
        "--no-progress",
        *TINY_SAC,
    ]
    script = _CLI_SCRIPT.format(arguments=arguments)
    process = _python(script, workdir)
    deadline = time.monotonic() + 240
    while not committed_bundles(workdir / "run") and time.monotonic() < deadline:
        time.sleep(0.2)
    for each in signals:  # SIGTERM (kill, a batch system's end of job) saves as Ctrl-C does
        process.send_signal(each)
        time.sleep(0.03)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    bundle, passed_over = newest_valid_bundle(workdir / "run")
    assert passed_over == []
    assert f"checkpoint {bundle.path.name} saved" in err
    assert bundle.manifest["replay_buffer_rows"] == bundle.steps


# -- bad input: one line, exit 2, nothing left -------------------------------------------------------------------------

BAD_TRAIN_INPUT = [
    (["a2c", "CartPole-v1", "-p", "policy_kwargs={[1]: 2}"], "cannot parse"),
    (["a2c", "CartPole-v1", "-p", "policy_kwargs=dict(1, 2)"], "cannot parse"),
    (["a2c", "CartPole-v1", "-p", "policy_kwargs=tuple(1)"], "cannot parse"),
    (["a2c", "CartPole-v1", "-p", "policy_kwargs=dict([1])"], "cannot parse"),
    (["a2c", "CartPole-v1", "-p", "n_steps=" + "9" * 5000], "cannot parse"),
    (["sql", "CartPole-v1", "-p", "buffer_size=1000000000000"], "not enough memory"),
    (["a2c", "CartPole-v1", "--n-envs", "-1"], "--n-envs must be a positive integer"),
    (["a2c", "CartPole-v1", "--n-envs", "0"], "--n-envs must be a positive integer"),
    (["a2c", "CartPole-v1", "--seed", "-1"], "--seed must be an integer of at least 0"),
    (["a2c", "CartPole-v1", "--checkpoint-freq", "-5"], "--checkpoint-freq must be a positive integer"),
    (["a2c", "CartPole-v1", "--checkpoint-freq", "0"], "--checkpoint-freq must be a positive integer"),
    (["a2c", "CartPole-v1", "--device", "foo"], "--device must be"),
    (["a2c", "CartPole-v1", "--device", "cuda:99"], "--device cuda:99: this machine has"),
    (["a2c", "CartPole-v1", "--device", "mps"], "--device mps: SB3 trains on cpu or cuda"),
    (["a2c", "CartPole-v1", "-p", "n_envs=abc"], "n_envs must be an integer"),
    (["a2c", "CartPole-v1", "-p", "n_envs=-1"], "n_envs must be a positive integer"),
    (["td3", "Pendulum-v1", "-p", "noise_type=normal", "-p", "noise_std=abc"], "noise_std must be a number"),
    (["ppo", "CartPole-v1", "-p", "learning_rate=1e999"], "learning_rate must be a finite number"),
    (["ppo", "CartPole-v1", "-p", "gamma=nan"], "gamma must be a number, got 'nan'"),
    (["ppo", "CartPole-v1", "-p", "gamma=1.5"], "gamma must be in [0, 1]"),
    (["a2c", "CartPole-v1", "-p", "n_steps=0"], "n_steps must be a positive integer"),
    (["a2c", "CartPole-v1", "--timesteps", "0"], "--timesteps must be a positive integer"),
    (["a2c", "CartPole-v1", "--timesteps", "-5"], "--timesteps must be a positive integer"),
    (
        ["a2c", "CartPole-v1", "--timesteps", str(10**30)],
        "--timesteps must be at most 9007199254740991, got 1" + "0" * 30,
    ),
    (["a2c", "CartPole-v1", "--checkpoint-freq", str(2**53)], "--checkpoint-freq must be at most 9007199254740991"),
    (["a2c", "CartPole-v1", "--eval-freq", str(2**53)], "--eval-freq must be at most 9007199254740991"),
    (["a2c", "CartPole-v1", "--n-envs", "100000"], "--n-envs must be at most 1024, got 100000"),
    (["a2c", "CartPole-v1", "--eval-episodes", "1000000"], "--eval-episodes must be at most 100000"),
    (["TNPG", "Pendulum-v1"], "unknown algorithm 'TNPG'; did you mean 'tnpg'?"),
    (["Ppo-Kl", "CartPole-v1"], "unknown algorithm 'Ppo-Kl'; did you mean 'ppo_kl'?"),
    (["a2c", "CartPole-v1", "-p", "n_steps=1.5"], "n_steps must be an integer, got 1.5"),
    (["sac", "Pendulum-v1", "-p", "train_freq=2.5"], "train_freq must be an integer, got 2.5"),
    (["tnpg", "Pendulum-v1", "-p", "policy_kwargs=dict(net_arch=[-1])"], "with policy_kwargs={'net_arch': [-1]} from"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_TRAIN_INPUT, ids=lambda value: str(value)[:40])
def test_bad_train_input_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    timesteps = [] if "--timesteps" in args else ["--timesteps", "16"]
    assert main(["train", *args, *timesteps, "--no-progress"]) == 2
    assert expected in _error_line(capsys)
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir()), "a failed start leaves a folder"


@pytest.mark.parametrize("out", ["a_file", "a_file/below", "/dev/null", "/proc/sbx_lecture_run"])
def test_unusable_out_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str], out: str) -> None:
    (workdir / "a_file").write_text("mine")
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--no-progress", "--out", out]) == 2
    assert "--out" in _error_line(capsys)
    assert (workdir / "a_file").read_text() == "mine"


def test_a_failed_start_keeps_the_users_empty_folder(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "mine").mkdir()
    assert main(["train", "a2c", "CartPole-v1", "-p", "n_steps=0", "--out", "mine", "--no-progress"]) == 2
    _error_line(capsys)
    assert (workdir / "mine").is_dir() and not any((workdir / "mine").iterdir())


def test_an_error_inside_learn_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stable_baselines3 import A2C

    def broken(self: A2C) -> None:
        raise RuntimeError("the update broke\non two lines")

    monkeypatch.setattr(A2C, "train", broken)
    assert (
        main(
            [
                "train",
                "a2c",
                "CartPole-v1",
                "--timesteps",
                "64",
                "--checkpoint-freq",
                "1000",
                "--no-progress",
                *TINY_A2C,
            ]
        )
        == 2
    )
    line = _error_line(capsys)
    assert "training of a2c stopped at step 8: RuntimeError: the update broke on two lines" in line
    assert "nothing was saved" in line
    assert not (workdir / "runs").exists()  # not even the runs/ folder it made


def test_an_error_after_checkpoints_keeps_them(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stable_baselines3 import A2C

    original = A2C.train

    def broken_later(self: A2C) -> None:
        if self.num_timesteps > 32:
            raise FloatingPointError("NaN in the loss")
        original(self)

    monkeypatch.setattr(A2C, "train", broken_later)
    assert (
        main(
            [
                "train",
                "a2c",
                "CartPole-v1",
                "--timesteps",
                "64",
                "--checkpoint-freq",
                "16",
                "--out",
                "run",
                "--no-progress",
                *TINY_A2C,
            ]
        )
        == 2
    )
    line = _error_line(capsys)
    assert "keeps its checkpoint step_000000000032" in line and "--resume --out run" in line
    assert newest_valid_bundle(workdir / "run")[0].steps == 32


#: Damaged JSON records (the run file, a model's metadata: one reader) and what their one-line error says.
DAMAGED_RECORDS = [
    ("{not json", "is not JSON"),
    ("[1, 2]", "holds a JSON list, not a JSON object"),
    ('{"algo": 5}', "'algo' that is not text"),
]


@pytest.mark.parametrize(("content", "expected"), DAMAGED_RECORDS)
def test_damaged_run_file_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--out", "run", "--no-progress", *TINY_A2C]) == 0
    (workdir / "run" / "run.json").write_text(content)
    capsys.readouterr()
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "32", "--out", "run", "--resume", "--no-progress"]) == 2
    assert expected in _error_line(capsys)


@pytest.mark.parametrize(("content", "expected"), DAMAGED_RECORDS)
def test_damaged_model_metadata_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--out", "run", "--no-progress", *TINY_A2C]) == 0
    with zipfile.ZipFile(workdir / "run" / "model.zip") as source, zipfile.ZipFile(workdir / "odd.zip", "w") as copy:
        for item in source.infolist():
            data = content.encode() if item.filename == "sbx_lecture.json" else source.read(item)
            copy.writestr(item, data)
    capsys.readouterr()
    assert main(["eval", "odd.zip", "--episodes", "1"]) == 2
    assert expected in _error_line(capsys)


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--episodes", "0"], ["--device", "foo"]])
def test_bad_eval_input_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--out", "run", "--no-progress", *TINY_A2C]) == 0
    capsys.readouterr()
    assert main(["eval", "run/model.zip", *args]) == 2
    assert args[0] in _error_line(capsys)


def test_resume_of_a_finished_run_asks_for_more_steps(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--out", "run", "--no-progress", *TINY_A2C]) == 0
    capsys.readouterr()
    assert main(["train", "a2c", "CartPole-v1", "--out", "run", "--resume", "--no-progress"]) == 2
    assert "pass --timesteps N with N > 16" in _error_line(capsys)


def test_files_get_the_users_umask(workdir: Path) -> None:
    previous = os.umask(0o027)
    try:
        assert (
            main(["train", "a2c", "CartPole-v1", "--timesteps", "200", "--out", "run", "--no-progress", *TINY_A2C]) == 0
        )
    finally:
        os.umask(previous)
    for name in ("model.zip", "run.json", "learning_curve.png"):
        assert (workdir / "run" / name).stat().st_mode & 0o777 == 0o640, name


# -- files handed to us: payloads never run, truncated files are one line ---------------------------------------------


def _reseal(bundle: Path) -> None:
    """Recompute the manifest's checksums, as someone handing us a crafted run folder would."""
    import hashlib

    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in manifest["files"]:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_crafted_bundle_never_runs_its_payload(
    payload_type: type, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64
    import pickle

    assert main(["train", "sac", "Pendulum-v1", "--timesteps", "40", "--out", "run", "--no-progress", *TINY_SAC]) == 0
    (bundle,) = committed_bundles(workdir / "run")[:1]
    marker = workdir / "marker"
    with zipfile.ZipFile(bundle / "model.zip") as source:
        members = {item.filename: source.read(item) for item in source.infolist()}
    data = json.loads(members["data"])
    payload = base64.b64encode(pickle.dumps(payload_type(marker))).decode()
    data["policy_class"] = {":type:": "<class 'abc.ABCMeta'>", ":serialized:": payload}
    members["data"] = json.dumps(data).encode()
    members.pop("sbx_lecture.json")  # a plain SB3 zip: nothing but the pickled field to go by
    with zipfile.ZipFile(bundle / "model.zip", "w") as crafted:
        for name, content in members.items():
            crafted.writestr(name, content)
    _reseal(bundle)
    capsys.readouterr()
    assert main(["train", "sac", "Pendulum-v1", "--timesteps", "80", "--out", "run", "--resume", "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "policy_class" in line and "trusted=True" in line
    assert not marker.exists()


def test_a_crafted_replay_buffer_in_a_bundle_never_runs(
    payload_type: type, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "sac", "Pendulum-v1", "--timesteps", "40", "--out", "run", "--no-progress", *TINY_SAC]) == 0
    (bundle,) = committed_bundles(workdir / "run")[:1]
    marker = workdir / "marker"
    with open(bundle / "replay_buffer.npz", "wb") as handle:
        np.savez(handle, **{"array/rewards": np.array([payload_type(marker)], dtype=object)})
    _reseal(bundle)
    capsys.readouterr()
    assert main(["train", "sac", "Pendulum-v1", "--timesteps", "80", "--out", "run", "--resume", "--no-progress"]) == 2
    _error_line(capsys)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["object array", "pickle"])
def test_crafted_random_states_in_a_bundle_are_one_line(
    payload_type: type, workdir: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    import pickle

    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "16", "--out", "run", "--no-progress", *TINY_A2C]) == 0
    (bundle,) = committed_bundles(workdir / "run")[:1]
    marker = workdir / "marker"
    if kind == "pickle":
        (bundle / "rng.npz").write_bytes(pickle.dumps(payload_type(marker)))
    else:
        states = dict(np.load(bundle / "rng.npz"))
        np.savez(bundle / "rng.npz", **{**states, "torch": np.array([payload_type(marker)], dtype=object)})
    _reseal(bundle)
    capsys.readouterr()
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "32", "--out", "run", "--resume", "--no-progress"]) == 2
    assert "rng.npz is not the plain arrays sbx-lecture writes" in _error_line(capsys)
    assert not marker.exists()
    assert [path.name for path in (workdir / "run" / "monitor").iterdir()] == ["segment_0"], "nothing left behind"
    assert not (workdir / "run" / ".lock").exists()


@pytest.mark.parametrize("name", ["vecnormalize.pkl", "vecnormalize.npz"])
def test_truncated_statistics_beside_a_model_are_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert (
        main(
            [
                "train",
                "a2c",
                "CartPole-v1",
                "--timesteps",
                "16",
                "--out",
                "run",
                "--no-progress",
                *TINY_A2C,
                "-p",
                "normalize=True",
            ]
        )
        == 0
    )
    if name.endswith(".pkl"):
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize

        VecNormalize(make_vec_env("CartPole-v1")).save(str(workdir / "run" / name))
        (workdir / "run" / "vecnormalize.npz").unlink()
    statistics = workdir / "run" / name
    statistics.write_bytes(statistics.read_bytes()[:40])
    capsys.readouterr()
    assert main(["eval", "run/model.zip", "--episodes", "1"]) == 2
    assert name in _error_line(capsys)


def test_a_step_counted_but_not_stored_is_dropped_before_the_interrupt_checkpoint() -> None:
    from stable_baselines3 import A2C, SAC

    from sbx_lecture.checkpoints import drop_unstored_step, replay_buffer_rows

    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=20, buffer_size=1000, seed=0, device="cpu").learn(30)
    assert replay_buffer_rows(model) == model.num_timesteps == 30
    drop_unstored_step(model)  # count and buffer agree: nothing to drop
    assert model.num_timesteps == 30
    model.num_timesteps += 1  # what a Ctrl-C between SB3's step count and its store leaves
    drop_unstored_step(model)
    assert model.num_timesteps == replay_buffer_rows(model) == 30
    on_policy = A2C("MlpPolicy", "CartPole-v1", n_steps=5, seed=0, device="cpu").learn(10)
    drop_unstored_step(on_policy)
    assert on_policy.num_timesteps == 10

"""The bench engine on Dask: a two-worker local cluster runs a tiny suite while one of its workers is killed, every
socket of the cluster listens on 127.0.0.1, an existing cluster is used with ``--scheduler`` (with and without a
filesystem shared with its workers), two benches on one output folder never train a run twice, and Ctrl-C has the
running runs save a checkpoint.

Training runs use SB3's A2C and PPO on CartPole-v1 with budgets of a few thousand steps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from rich.progress import Progress, TaskID

from sbx_lecture.bench import harness, main
from sbx_lecture.bench.runner import ERROR_FILE, RESULT_FILE
from sbx_lecture.bench.speed import speed_steps, warmup_length
from sbx_lecture.bench.suites import RunJob, Selection, expand, load_suite_file
from sbx_lecture.checkpoints import committed_bundles, newest_valid_bundle
from sbx_lecture.runs import LOCK_FILE

KILL_AT = 1_000
#: The A2C run's budget: long enough that it is still running when its steps (reported about once a second) pass
#: ``KILL_AT``, even on a fast machine.
A2C_BUDGET = 20_000
SUITE = {
    "name": "dask",
    "description": "A2C and PPO on CartPole-v1, and one speed pair",
    "seeds": 1,
    "eval_points": 3,
    "eval_episodes": 2,
    "final_eval_episodes": 2,
    "repeats": 1,
    "runs": [
        {"algo": "a2c", "env": "CartPole-v1", "timesteps": A2C_BUDGET},
        {
            "algo": "ppo",
            "env": "CartPole-v1",
            "timesteps": 2_000,
            "hyperparams": {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 2},
        },
    ],
    "speed": [
        {
            "ours": "ppo",
            "sibling": "a2c",
            "env": "CartPole-v1",
            "timesteps": 256,
            "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
        }
    ],
}


def write_suite(folder: Path, content: dict[str, Any]) -> Path:
    path = folder / f"{content['name']}.yml"
    path.write_text(yaml.safe_dump(content))
    return path


def listening(processes: list[psutil.Process]) -> dict[int, list[str]]:
    """The addresses each process listens on (IPv4 and IPv6)."""
    found: dict[int, list[str]] = {}
    for process in processes:
        sockets = process.net_connections(kind="inet")
        found[process.pid] = [conn.laddr.ip for conn in sockets if conn.status == psutil.CONN_LISTEN]
    return found


class WatchingDisplay(Progress):
    """The bench's progress display, which hands each job's step count to :meth:`advanced` (the tests' hook): the
    harness adds a task per running job, with the job's folder as its field ``folder``."""

    def update(self, task_id: TaskID, **changes: Any) -> None:
        super().update(task_id, **changes)
        task = next(task for task in self.tasks if task.id == task_id)
        if "folder" in task.fields and changes.get("completed") is not None:
            self.advanced(task.fields["folder"], int(changes["completed"]))

    def advanced(self, key: str, steps: int) -> None:
        """The job in folder ``key`` reached ``steps`` environment steps."""

    @property
    def done(self) -> int:
        """Jobs ended so far (the count of the harness's first task)."""
        return int(self.tasks[0].completed)


class KillingDisplay(WatchingDisplay):
    """Plain lines; records the sockets of the cluster once, and kills the worker training the A2C run once it
    has a checkpoint and ``KILL_AT`` steps."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sockets: dict[int, list[str]] = {}
        self.workers: list[int] = []
        self.environments: list[dict[str, str]] = []
        self.killed: tuple[str, int] | None = None

    def advanced(self, key: str, steps: int) -> None:
        if not self.sockets:  # the cluster is up: this process (scheduler, nannies) and the worker processes
            children = psutil.Process().children(recursive=True)
            self.sockets = listening([psutil.Process(), *children])
            self.workers = [child.pid for child in children if self.sockets[child.pid]]
            self.environments = [psutil.Process(pid).environ() for pid in self.workers]
        run_dir = Path(key)
        if self.killed is None and "a2c" in key and steps >= KILL_AT and committed_bundles(run_dir):
            for child in psutil.Process().children(recursive=True):  # the worker holding the run's lock
                if any(Path(file.path) == run_dir / LOCK_FILE for file in child.open_files()):
                    os.kill(child.pid, signal.SIGKILL)
                    self.killed = (key, child.pid)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """The suite through ``sbx-lecture bench --jobs 2``, one worker killed mid-run; (display, output, status)."""
    folder = tmp_path_factory.mktemp("dask")
    out = folder / "out"
    display, status = bench_with(KillingDisplay, write_suite(folder, SUITE), out, jobs=2)
    return display, out, status


def bench_with(display_class: type[WatchingDisplay], suite_file: Path, out: Path, jobs: int) -> tuple[Any, int]:
    """``sbx-lecture bench SUITE --jobs N`` in this process, shown through ``display_class``; (display, status)."""
    displays: list[WatchingDisplay] = []

    def make_display(*args: Any, **kwargs: Any) -> WatchingDisplay:
        displays.append(display_class(*args, **kwargs))
        return displays[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "Progress", make_display)
        status = main([str(suite_file), "--jobs", str(jobs), "--out", str(out), "--plain", "--no-plots"])
    (display,) = displays
    return display, status


def test_a_killed_worker_does_not_stop_the_suite(killed_run):
    display, out, status = killed_run
    assert display.killed is not None, "the A2C run finished before it could be killed"
    killed_key, killed_pid = display.killed
    assert not psutil.pid_exists(killed_pid) or psutil.Process(killed_pid).status() == psutil.STATUS_ZOMBIE
    assert status == 0 and display.done == 3
    results = json.loads((out / "dask" / "results.json").read_text())
    assert sorted(r.get("algo", "speed") for r in results) == ["a2c", "ppo", "speed"]
    assert all(r["status"] == "done" for r in results)
    (killed,) = [r for r in results if r.get("algo") == "a2c"]
    assert (out / "dask" / killed["folder"]).resolve() == Path(killed_key).resolve()
    # With the shared filesystem of a local cluster, the retried run continued from its checkpoint bundle.
    assert len(killed["resumed_from"]) == 1 and 0 < killed["resumed_from"][0] < A2C_BUDGET
    assert killed["curve"][-1][0] >= A2C_BUDGET
    segments = json.loads((Path(killed_key) / "run.json").read_text())["segments"]
    assert [segment["start"] for segment in segments] == [0, killed["resumed_from"][0]]
    for job in expand(load_suite_file(out.parent / "dask.yml"), Selection()):
        assert (out / job.folder / RESULT_FILE).exists()


class InterruptingDisplay(WatchingDisplay):
    """Kills the worker of the first job to take a step, then sends the command Ctrl-C (SIGINT): the job is run
    again on the nanny's new worker while the command waits for its jobs to stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.killed = False

    def advanced(self, key: str, steps: int) -> None:
        if self.killed or steps == 0:
            return
        for child in psutil.Process().children(recursive=True):  # the worker holding the run's lock
            if any(Path(file.path) == Path(key) / LOCK_FILE for file in child.open_files()):
                os.kill(child.pid, signal.SIGKILL)
                self.killed = True
                os.kill(os.getpid(), signal.SIGINT)  # steps arrive in the client's thread; Ctrl-C reaches the main one


def test_a_job_run_again_after_ctrl_c_sees_the_stop_request(tmp_path, capsys):
    """The stop request is held by the scheduler: a worker started after Ctrl-C (the nanny replacing a dead one)
    does not train the job to its end while the command waits."""
    content = {**SUITE, "name": "stop-retried", "speed": [], "runs": [{**SUITE["runs"][0], "timesteps": 20_000}]}
    suite_file = write_suite(tmp_path, content)
    out = tmp_path / "out"
    (job,) = expand(load_suite_file(suite_file), Selection())
    display, status = bench_with(InterruptingDisplay, suite_file, out, jobs=1)
    text = capsys.readouterr().out
    assert display.killed and status == 130, text
    assert f"{job.label}: not started (interrupted); run the command again" in text, text
    assert not (out / job.folder / RESULT_FILE).exists()


def test_the_local_cluster_listens_on_loopback_only(killed_run):
    display, _, _ = killed_run
    assert len(display.workers) == 2  # the two worker processes were up, and listening, when the sockets were read
    addresses = {address for found in display.sockets.values() for address in found}
    assert addresses == {"127.0.0.1"}, display.sockets


def test_local_workers_keep_the_commands_allocator_settings(killed_run):
    """Dask's nannies would set MALLOC_TRIM_THRESHOLD_=65536: freed memory handed back at every gradient step."""
    display, _, _ = killed_run
    assert len(display.environments) == 2
    for environment in display.environments:
        assert environment.get("MALLOC_TRIM_THRESHOLD_") == os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_scheduler_runs_the_suite_on_an_existing_cluster(tmp_path, capsys):
    from distributed import LocalCluster

    content = {
        **SUITE,
        "name": "remote",
        "speed": [],
        "runs": [{"algo": "a2c", "env": "CartPole-v1", "timesteps": 500}],
    }
    suite_file = write_suite(tmp_path, content)
    out = tmp_path / "out"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        status = main(
            [str(suite_file), "--scheduler", cluster.scheduler_address, "--out", str(out), "--plain", "--no-plots"]
        )
        worker_pids = set(cluster.workers)  # still up: the command left the cluster alone
    assert status == 0 and worker_pids
    (job,) = expand(load_suite_file(suite_file), Selection())
    result = json.loads((out / job.folder / RESULT_FILE).read_text())
    assert result["status"] == "done" and result["curve"][-1][0] >= 500
    assert "a2c CartPole-v1 seed 0: done" in capsys.readouterr().out


def test_an_unreachable_scheduler_is_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(harness, "CONNECT_TIMEOUT", 2)
    suite_file = write_suite(tmp_path, {**SUITE, "speed": []})
    assert main([str(suite_file), "--scheduler", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("sbx-lecture bench: error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert len(error.splitlines()) == 1 and "dask scheduler" in error


def test_jobs_that_share_a_label_each_get_their_own_result(tmp_path):
    """Dask hands one result to every task of a key: jobs with the same label (the same pair or algorithm, env and
    seed, other settings) must still be told apart."""
    speed = SUITE["speed"][0]
    content = {
        **SUITE,
        "name": "labels",
        "runs": [{"algo": "a2c", "env": "CartPole-v1", "timesteps": budget} for budget in (500, 700)],
        "speed": [{**speed, "hyperparams": {**speed["hyperparams"], "n_steps": n_steps}} for n_steps in (64, 128)],
    }
    out = tmp_path / "out"
    assert main([str(write_suite(tmp_path, content)), "--jobs", "1", "--out", str(out), "--plain", "--no-plots"]) == 0
    runs = [json.loads(path.read_text()) for path in sorted(out.glob("runs/**/result.json"))]
    assert sorted(run["timesteps"] for run in runs) == [500, 700]
    pairs = [json.loads(path.read_text()) for path in sorted(out.glob("speed/**/result.json"))]
    assert sorted(str(pair["hyperparams"]["n_steps"]) for pair in pairs) == ["128", "64"]


def test_two_benches_on_one_folder_never_train_a_run_twice(tmp_path):
    content = {
        **SUITE,
        "name": "twice",
        "speed": [],
        "seeds": 2,
        "runs": [{"algo": "a2c", "env": "CartPole-v1", "timesteps": 2_000}],
    }
    suite_file = write_suite(tmp_path, content)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        "import sys; from sbx_lecture.bench import main; sys.exit(main(sys.argv[1:]))",
        str(suite_file),
        "--jobs",
        "1",
        "--out",
        str(out),
        "--plain",
        "--no-plots",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    benches = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [bench.communicate()[0] for bench in benches]
    jobs = [job for job in expand(load_suite_file(suite_file), Selection()) if isinstance(job, RunJob)]
    assert len(jobs) == 2
    for job in jobs:
        trained = [text for text in outputs if re.search(rf"\] {re.escape(job.label)}: done:", text)]
        assert len(trained) == 1, outputs  # one bench trained it; the other found it busy or finished
        result = json.loads((out / job.folder / RESULT_FILE).read_text())
        assert result["status"] == "done" and result["resumed_from"] == []
        segments = json.loads((out / job.folder / "run.json").read_text())["segments"]
        assert [segment["start"] for segment in segments] == [0]
    for bench, text in zip(benches, outputs, strict=True):
        # A bench that met a run the other was training says so and exits 1; otherwise it finished everything.
        assert bench.returncode == (1 if "busy: another bench is running it" in text else 0), text
    again = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0 and "2 of 2 jobs already finished" in again.stdout


@pytest.mark.parametrize("stop", ["ctrl-c", "kill"])
def test_ctrl_c_has_the_running_runs_save_a_checkpoint(tmp_path, stop):
    content = {
        **SUITE,
        "name": "stop",
        "speed": [],
        "runs": [{"algo": "a2c", "env": "CartPole-v1", "timesteps": 1_000_000}],
    }
    suite_file = write_suite(tmp_path, content)
    out = tmp_path / "out"
    (job,) = expand(load_suite_file(suite_file), Selection())
    run_dir = out / job.folder
    bench, first = _start_bench(suite_file, out, job.label)
    # Interrupt only once the run takes steps (an episode is in its monitor file): a fixed pause after the folder is
    # set up can still fall into the start-up of a loaded machine.
    deadline = time.monotonic() + 120
    while not _episodes_logged(run_dir) and bench.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bench.poll() is None, first + bench.communicate()[0] + _error_text(run_dir)
    assert _episodes_logged(run_dir), "no episode finished within 120 s"
    if stop == "ctrl-c":  # the terminal sends it to the whole process group, the local cluster included
        os.killpg(bench.pid, signal.SIGINT)
    else:  # `kill PID`, or a batch system ending the job: SIGTERM to the command alone
        bench.send_signal(signal.SIGTERM)
    rest = bench.communicate()[0]
    assert bench.returncode == 130, f"exit status {bench.returncode}\n{first}{rest}{_error_text(run_dir)}"
    assert not (run_dir / RESULT_FILE).exists()
    bundle, _ = newest_valid_bundle(run_dir)
    assert 0 < bundle.steps < 100_000  # saved at the interruption: the first periodic checkpoint is at 100,000 steps
    assert f"{job.label}: interrupted at step {bundle.steps} (checkpoint saved; run the command again" in rest, rest


def test_stopping_the_bench_stops_a_running_speed_pair(tmp_path):
    """SIGTERM while a pair is being timed: the pair stops within its learn call and the command ends (it used to
    wait for the whole timing, which has no checkpoint to save)."""
    content = {**SUITE, "name": "stop-speed", "runs": []}
    content["speed"] = [{**SUITE["speed"][0], "timesteps": 50_000}]  # a few minutes, were it not stopped
    suite_file = write_suite(tmp_path, content)
    out = tmp_path / "out"
    (job,) = expand(load_suite_file(suite_file), Selection())
    bench, first = _start_bench(suite_file, out, job.label)  # the first progress event: the warm-up is stepping
    bench.send_signal(signal.SIGTERM)
    rest = bench.communicate()[0]
    assert bench.returncode == 130, f"exit status {bench.returncode}\n{first}{rest}"
    stopped = re.search(rf"{re.escape(job.label)}: interrupted after (\d+) of (\d+) steps: nothing was saved", rest)
    assert stopped is not None, rest
    assert int(stopped[1]) < warmup_length(job) and int(stopped[2]) == speed_steps(job)  # within the first learn
    assert not (out / job.folder / RESULT_FILE).exists()


def _start_bench(suite_file: Path, out: Path, label: str) -> tuple[subprocess.Popen[str], str]:
    """``sbx-lecture bench SUITE --jobs 1`` in its own session, once its job has started; (process, first line)."""
    command = [
        sys.executable,
        "-c",
        "import sys; from sbx_lecture.bench import main; sys.exit(main(sys.argv[1:]))",
        str(suite_file),
        "--jobs",
        "1",
        "--out",
        str(out),
        "--plain",
        "--no-plots",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # Its own session: Ctrl-C on a terminal reaches the whole process group, the cluster's processes included.
    bench = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    assert bench.stdout is not None
    first = bench.stdout.readline()
    assert f"start {label}" in first, first
    return bench, first


def _episodes_logged(run_dir: Path) -> bool:
    """Whether a monitor file of the run holds a finished episode (its third line)."""
    return any(len(path.read_text().splitlines()) > 2 for path in run_dir.glob("monitor/*/*.monitor.csv"))


def _error_text(run_dir: Path) -> str:
    error = run_dir / ERROR_FILE
    return error.read_text() if error.exists() else ""


def test_the_run_lock_is_reentrant_in_its_thread_only(tmp_path):
    """The bench runner holds a run's lock from its check of result.json until it writes it, around train(), which
    takes the lock again; another thread, like another process, is refused."""
    import threading

    from sbx_lecture.runs import RunFolderError, run_lock

    outcome: list[str] = []

    def other_thread() -> None:
        try:
            with run_lock(tmp_path):
                outcome.append("acquired")
        except RunFolderError:
            outcome.append("refused")

    with run_lock(tmp_path), run_lock(Path(os.path.relpath(tmp_path))):  # the same folder, spelled differently
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert outcome == ["refused"]
    other_thread()
    assert outcome == ["refused", "acquired"]


def test_workers_without_our_filesystem_send_results_the_command_writes(tmp_path):
    from distributed import LocalCluster

    content = {**SUITE, "name": "apart", "speed": [], "runs": [{"algo": "a2c", "env": "CartPole-v1", "timesteps": 500}]}
    suite_file = write_suite(tmp_path, content)
    out, elsewhere = tmp_path / "out", tmp_path / "worker-disk"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        env={harness.WORKER_OUT_ENV: str(elsewhere)},  # the worker's run folders go to its "own disk"
    ) as cluster:
        status = main(
            [str(suite_file), "--scheduler", cluster.scheduler_address, "--out", str(out), "--plain", "--no-plots"]
        )
    assert status == 0
    (job,) = expand(load_suite_file(suite_file), Selection())
    assert (elsewhere / job.folder / "run.json").exists()  # trained there
    assert not (out / job.folder / "run.json").exists()  # not here
    result = json.loads((out / job.folder / RESULT_FILE).read_text())  # written here from what came back
    assert result == json.loads((elsewhere / job.folder / RESULT_FILE).read_text())
    assert result["status"] == "done" and result["curve"][-1][0] >= 500
    assert "| CartPole-v1 | actor-critic | a2c | 500 (520 taken) | 1 |" in (out / "apart" / "report.md").read_text()

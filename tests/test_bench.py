"""The benchmark harness: suites as data, settings, published figures, an end-to-end tiny suite, skipping finished
runs, resuming an interrupted run from its checkpoint, failures.

Training runs use SB3's PPO and A2C on CartPole-v1 with budgets of a few thousand steps, so that these tests do not
depend on the lecture's algorithms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch as th
import yaml

from sbx_lecture.bench import harness, main, report_folder
from sbx_lecture.bench.baselines import published_for, same_task
from sbx_lecture.bench.harness import STOP_EVENT, _work, describe, run_jobs
from sbx_lecture.bench.report import failures, markdown_report, speed_table
from sbx_lecture.bench.runner import ERROR_FILE, LOCK_FILE, RESULT_FILE, execute_run, read_result, stored_result
from sbx_lecture.bench.speed import sibling_arguments
from sbx_lecture.bench.stats import MIN_SPEED_REPEATS, ratio_interval, run_score
from sbx_lecture.bench.suites import (
    HELD_OUT,
    SIBLINGS,
    SUITES,
    RunJob,
    Selection,
    SpeedJob,
    SuiteError,
    expand,
    family_of,
    get_suite,
    load_suite_file,
    seed_range,
)
from sbx_lecture.checkpoints import committed_bundles, newest_valid_bundle
from sbx_lecture.evaluation import Evaluations
from sbx_lecture.runs import run_lock
from sbx_lecture.training import TrainingInterrupted
from sbx_lecture.zoo_config import zoo_settings

BUDGET = 3_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_SUITE = {
    "name": "tiny",
    "description": "two SB3 algorithms on CartPole-v1 and one speed pair",
    "seeds": 2,
    "eval_points": 3,
    "eval_episodes": 2,
    "final_eval_episodes": 3,
    "repeats": 1,
    "runs": [
        {
            "algo": "ppo",
            "env": "CartPole-v1",
            "timesteps": BUDGET,
            "hyperparams": {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 2},
        },
        {"algo": "a2c", "env": "CartPole-v1", "timesteps": BUDGET},
    ],
    "speed": [
        {
            "ours": "ppo",
            "sibling": "a2c",
            "env": "CartPole-v1",
            "timesteps": 512,
            "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
        }
    ],
}


def write_suite(folder: Path, content: dict) -> Path:
    path = folder / "tiny.yml"
    path.write_text(yaml.safe_dump(content))
    return path


def run_jobs_of(suite_file: Path) -> list[RunJob]:
    return [job for job in expand(load_suite_file(suite_file), Selection()) if isinstance(job, RunJob)]


# --- suites, settings and published figures: no training -------------------------------------------------------


def test_builtin_suites_hold_every_lecture_algorithm_beside_its_siblings():
    classic = {(entry.algo, entry.env_id) for entry in SUITES["classic"].entries}
    for ours, siblings in SIBLINGS.items():
        for env_id in {env for algo, env in classic if algo == ours}:
            assert any((sibling, env_id) in classic for sibling in siblings), (ours, env_id)
    assert {env for _, env in classic} == {"CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"}
    mujoco = SUITES["mujoco"].entries
    assert {entry.env_id for entry in mujoco} == {"HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "InvertedPendulum-v5"}
    assert all(entry.timesteps == 1_000_000 for entry in mujoco if entry.env_id != "InvertedPendulum-v5")
    assert {entry.algo for entry in mujoco if entry.env_id == "InvertedPendulum-v5"} == {"dpg", "td3"}
    pairs = {(entry.ours, entry.sibling) for entry in SUITES["speed"].speed_entries}
    assert pairs == {
        ("npg", "trpo"),
        ("tnpg", "trpo"),
        ("ppo_kl", "ppo"),
        ("dpg", "td3"),
        ("dpg", "ddpg"),
        ("sql", "sac"),
        ("sql", "dqn"),
    }
    # Every speed pair gets enough interleaved rounds for its ratio's bootstrap interval.
    assert all(suite.repeats >= MIN_SPEED_REPEATS for suite in SUITES.values() if suite.speed_entries)
    # The algorithms of a family are compared at one budget per environment.
    for name in ("classic", "lecture", "mujoco"):
        budgets: dict[tuple[str, str], set[int | None]] = {}
        for entry in SUITES[name].entries:
            budgets.setdefault((entry.env_id, family_of(entry.algo)), set()).add(entry.timesteps)
        assert all(len(found) == 1 for found in budgets.values()), (name, budgets)


def test_the_compiled_suite_trains_classics_runs_with_the_update_compiled_in_their_own_folders():
    classic = {(entry.algo, entry.env_id): entry for entry in SUITES["classic"].entries}
    compiled = SUITES["compiled"].entries
    assert {(entry.algo, entry.env_id) for entry in compiled} == {
        ("dpg", "Pendulum-v1"),
        ("sql", "Pendulum-v1"),
        ("sql", "CartPole-v1"),
    }
    for entry in compiled:
        eager = classic[entry.algo, entry.env_id]
        assert entry.timesteps == eager.timesteps and entry.hyperparams == {"compile_update": True}
    jobs = expand(SUITES["compiled"], Selection(seeds=range(1))) + expand(SUITES["classic"], Selection(seeds=range(1)))
    folders = [job.folder for job in jobs if isinstance(job, RunJob)]
    assert len(folders) == len(set(folders))  # never mistaken for classic's finished eager runs


def test_expand_filters_scales_and_orders_seed_major():
    suite = SUITES["classic"]
    jobs = expand(
        suite,
        Selection(
            seeds=range(2), timesteps_scale=0.1, algos=frozenset({"ppo", "trpo"}), envs=frozenset({"CartPole-v1"})
        ),
    )
    assert [(job.algo, job.seed) for job in jobs] == [("trpo", 0), ("ppo", 0), ("trpo", 1), ("ppo", 1)]
    assert all(isinstance(job, RunJob) and job.timesteps == 10_000 for job in jobs)
    assert jobs[0].folder == Path("runs/trpo/CartPole-v1/t10000/seed_0")
    speed = expand(SUITES["speed"], Selection(algos=frozenset({"ppo_kl"})))
    assert {job.env_id for job in speed} == {"CartPole-v1", "Pendulum-v1"}
    assert all(isinstance(job, SpeedJob) and job.sibling == "ppo" for job in speed)


def test_a_run_row_of_lists_stands_for_every_algorithm_on_every_environment(tmp_path):
    rows = [{"algo": ["a2c", "ppo"], "env": ["CartPole-v1", "Acrobot-v1"], "timesteps": BUDGET}]
    suite = load_suite_file(write_suite(tmp_path, {"runs": rows}))
    assert suite.name == "tiny"  # the file's stem
    assert [(entry.algo, entry.env_id) for entry in suite.entries] == [
        ("a2c", "CartPole-v1"),
        ("ppo", "CartPole-v1"),
        ("a2c", "Acrobot-v1"),
        ("ppo", "Acrobot-v1"),
    ]


def test_overrides_get_their_own_run_folder():
    plain = RunJob("ppo", "CartPole-v1", 1000, 0)
    tuned = RunJob("ppo", "CartPole-v1", 1000, 0, {"n_steps": 64})
    assert plain.folder != tuned.folder
    assert tuned.folder == RunJob("ppo", "CartPole-v1", 1000, 0, {"n_steps": 64}).folder


def test_sibling_settings_come_from_the_rl_zoo_files():
    settings = zoo_settings("ppo", "CartPole-v1")
    assert settings.source == "rl_zoo3/hyperparams/ppo.yml[CartPole-v1]"
    assert settings.n_envs == 8 and settings.n_timesteps == 100_000
    assert settings.kwargs["n_epochs"] == 20
    mujoco = zoo_settings("ppo", "Hopper-v5", {"n_epochs": 3})
    assert mujoco.source.startswith("rl_zoo3/hyperparams/ppo.yml[Hopper-v4]")
    assert mujoco.normalize and mujoco.kwargs["n_epochs"] == 3


def test_published_figures_match_algorithm_task_and_budget_only():
    assert [f.mean for f in published_for("trpo", "Pendulum-v1", 100_000)] == [-174.6]
    assert published_for("trpo", "Pendulum-v1", 50_000) == []
    sources = {f.source_key for f in published_for("trpo", "HalfCheetah-v5", 1_000_000)}
    assert sources == {"rl-zoo", "tianshou", "openai"}
    assert same_task("HalfCheetah", "HalfCheetah-v5") and not same_task("CartPole-v1", "CartPole-v0")


@pytest.mark.parametrize(
    "name, content",
    [
        ("tag.yml", b"runs: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path [MARK]]\n"),
        ("bad.json", b'{"runs": [{"algo": "ppo"'),
        ("binary.yml", b"\xff\xfe runs"),
    ],
)
def test_an_unreadable_suite_file_is_one_line(name, content, tmp_path, monkeypatch, capsys):
    """A suite file with a Python tag, broken JSON or bytes that are not text: one line and status 2, nothing
    constructed (the tag's payload would create MARK)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(content)
    assert main([name, "--dry-run", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"cannot read the suite file {name}" in error[0]
    assert not (tmp_path / "MARK").exists() and not (tmp_path / "out").exists()


def test_command_line_errors_exit_with_status_2(tmp_path, capsys):
    assert main(["no-such-suite", "--out", str(tmp_path)]) == 2
    assert main(["classic", "--algos", "nope", "--out", str(tmp_path)]) == 2
    assert "has no algorithm nope" in capsys.readouterr().err
    assert main(["--list"]) == 0
    assert "classic" in capsys.readouterr().out


# --- a tiny suite, end to end -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the tiny suite once with two worker processes; return (suite file, output folder, exit status)."""
    folder = tmp_path_factory.mktemp("bench")
    suite_file = write_suite(folder, TINY_SUITE)
    out = folder / "out"
    status = main([str(suite_file), "--jobs", "2", "--out", str(out), "--plain"])
    return suite_file, out, status


def test_tiny_suite_writes_results_tables_and_plots(tiny_run):
    suite_file, out, status = tiny_run
    assert status == 0
    folder = report_folder(out, get_suite(str(suite_file)), Selection())
    rows = (folder / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # header, 2 algorithms x 2 seeds
    results = json.loads((folder / "results.json").read_text())
    runs = [r for r in results if r["kind"] == "run"]
    assert {(r["algo"], r["seed"]) for r in runs} == {("ppo", 0), ("ppo", 1), ("a2c", 0), ("a2c", 1)}
    for run in runs:
        steps = [point[0] for point in run["curve"]]
        assert steps[0] == 0 and steps[-1] >= BUDGET and steps == sorted(steps)
        assert len(steps) >= 3
        assert run["final_episodes"] == 3 and run["steps_per_second"] > 0
        assert run["curve"][-1][1] == pytest.approx(run["final_mean"])
        assert not Path(run["folder"]).is_absolute() and (folder / run["folder"] / RESULT_FILE).exists()
    assert "rl_zoo3/hyperparams/ppo.yml[CartPole-v1] + overrides" in {r["settings_source"] for r in runs}
    speed = [r for r in results if r["kind"] == "speed"]
    assert len(speed) == 1 and speed[0]["status"] == "done"
    assert speed[0]["ratio"] == pytest.approx(speed[0]["ours_steps_per_second"] / speed[0]["sibling_steps_per_second"])
    assert "n_epochs" in speed[0]["dropped_for_sibling"]  # A2C takes no epochs: dropped for it, and said so
    report = (folder / "report.md").read_text()
    # PPO ends its last rollout past the budget: the table says how many steps the runs took
    assert re.search(r"\| CartPole-v1 \| proximal \| ppo \| 3,000 \(3,\d{3} taken\) \| 2 \|", report)
    ours = report.split("## Published figures")[0]  # our figures are intervals; only published ones carry ± std
    assert "| seeds | IQM [95% CI] | median [95% CI] |" in ours and "±" not in ours
    assert "| CartPole-v1 | " in report.split("## Normalised scores")[1]  # random policy and published best
    assert "| ppo | proximal | CartPole-v1 | 2 |" in report.split("## Across environments")[1]
    assert (folder / "random_policy.json").exists() and (folder / "stats_per_env.csv").exists()
    assert (folder / "zoo_logs" / "ppo" / "CartPole-v1_2" / "evaluations.npz").exists()
    assert "| ppo | a2c | CartPole-v1 |" in report
    summary = (folder / "summary.md").read_text().splitlines()
    assert summary[0] == "| environment | ppo | a2c |" and summary[2].startswith("| CartPole-v1 (3e3) | ")
    assert "[" in summary[2]  # IQM [95% CI]
    curves = (folder / "curves.csv").read_text().splitlines()
    assert curves[0] == "algo,env,seed,steps,mean_return,std_return" and len(curves) > 12
    for name in (
        "tiny_curves_CartPole-v1.png",
        "tiny_steps_per_second.png",
        "tiny_performance_profiles.png",
        "tiny_aggregate.png",
    ):
        assert (folder / name).read_bytes().startswith(PNG_SIGNATURE)
        assert f"]({name})" in report


def test_second_invocation_skips_finished_runs(tiny_run, capsys):
    suite_file, out, _ = tiny_run
    results = sorted(out.glob("runs/**/result.json")) + sorted(out.glob("speed/**/result.json"))
    assert len(results) == 5
    # results get published: none holds this machine's path (reading one puts back the folder it was read from)
    assert not any("folder" in json.loads(path.read_text()) for path in results)
    assert all(read_result(path.parent)["folder"] == str(path.parent) for path in results)  # type: ignore[index]
    stamps = {path: path.stat().st_mtime_ns for path in results}
    capsys.readouterr()
    assert main([str(suite_file), "--jobs", "2", "--out", str(out), "--plain"]) == 0
    assert "5 of 5 jobs already finished" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in results} == stamps
    table = (report_folder(out, get_suite(str(suite_file)), Selection()) / "results.csv").read_text()
    assert ",done," in table and ",skipped," not in table  # the report says done, whichever command finished it


def test_plain_progress_is_one_line_per_start_and_end_as_written(tmp_path, monkeypatch, capsys):
    """``--plain`` (and any output that is not a terminal): the lines benchmark logs are read by, unwrapped and
    without markup."""
    from distributed import Client

    failed = {"status": "failed", "error": "ValueError: [bold]" + "x" * 200}

    @contextlib.contextmanager
    def in_process(n_workers: int, scheduler: str | None) -> Iterator[Client]:  # no sockets, no processes
        with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
            yield client

    def execute(job: RunJob, out: Path, report: Any) -> dict[str, Any]:
        report(1500)
        time.sleep(1)  # the step counts reach the command before the result does
        return failed

    monkeypatch.setattr(harness, "connect", in_process)
    monkeypatch.setattr(harness, "execute", execute)
    assert run_jobs([RunJob("ppo", "CartPole-v1", 3000, 0)], tmp_path, live=False) == [failed]
    assert capsys.readouterr().out.splitlines() == [
        "[0/1] start ppo CartPole-v1 seed 0 (3000 steps)",
        f"[1/1] ppo CartPole-v1 seed 0: {describe(failed)}",
    ]


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    content = {**TINY_SUITE, "name": "resume", "seeds": 1, "speed": [], "runs": TINY_SUITE["runs"][:1]}
    suite_file = write_suite(tmp_path, content)
    out = tmp_path / "out"
    (job,) = run_jobs_of(suite_file)
    run_dir = out / job.folder
    interrupted = execute_run(job, run_dir, stop_after=1_500)  # stops for real after 1500 steps, as Ctrl-C would
    assert interrupted["status"] == "interrupted"
    assert not (run_dir / RESULT_FILE).exists()
    checkpoint_steps = newest_valid_bundle(run_dir)[0].steps
    assert describe(interrupted) == (
        f"stopped at step {checkpoint_steps} (checkpoint saved; run the command again to resume)"
    )
    assert 1_500 <= checkpoint_steps < BUDGET
    before = [point for point in Evaluations.load(run_dir / "evaluations.npz").curve() if point[0] <= checkpoint_steps]
    assert before and before[0][0] == 0

    assert main([str(suite_file), "--jobs", "1", "--out", str(out), "--plain"]) == 0
    result = json.loads((run_dir / RESULT_FILE).read_text())
    assert result["resumed_from"] == [checkpoint_steps]
    assert result["status"] == "done" and result["timesteps"] == BUDGET
    after = [tuple(point) for point in result["curve"]]
    assert after[: len(before)] == before  # the points measured before the interruption are kept
    assert after[-1][0] >= BUDGET
    assert committed_bundles(run_dir) == []  # a finished run drops its checkpoints
    segments = json.loads((run_dir / "run.json").read_text())["segments"]
    assert [segment["start"] for segment in segments] == [0, checkpoint_steps]


def test_an_interrupted_line_claims_a_checkpoint_only_where_one_was_saved(tmp_path, monkeypatch):
    job = RunJob("a2c", "CartPole-v1", 1_000, 0)
    from distributed import Client, Event

    # the command's stop event was set before the job started (an in-process cluster: no sockets, no processes)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        Event(STOP_EVENT + "ctrl-c", client=client).set()
        queued = client.submit(_work, job, tmp_path, 1, "progress", "ctrl-c").result()
    assert describe(queued) == "not started (interrupted); run the command again"
    assert not (tmp_path / job.folder).exists()

    def stopped_in_start_up(config, callbacks):
        raise TrainingInterrupted("interrupted during start-up, before any training: nothing was saved")

    monkeypatch.setattr("sbx_lecture.training.train", stopped_in_start_up)
    line = describe(execute_run(job, tmp_path / job.folder))
    assert line == "interrupted during start-up, before any training: nothing was saved; run the command again"
    speed = {"kind": "speed", "status": "interrupted", "ours": "dpg", "sibling": "td3", "env": "Pendulum-v1"}
    assert "checkpoint" not in describe(speed) and "nothing was saved" in describe(speed)


def test_a_failing_run_is_reported_and_not_marked_finished(tmp_path):
    job = RunJob("a2c", "CartPole-v1", 1_000, 0, {"not_a_hyperparameter": 1})
    run_dir = tmp_path / job.folder
    run_dir.mkdir(parents=True)
    (run_dir / LOCK_FILE).write_text("999999999")  # left by a process that died: nobody holds it
    result = execute_run(job, run_dir)
    assert result["status"] == "failed" and "not_a_hyperparameter" in result["error"]
    assert (run_dir / ERROR_FILE).exists() and not (run_dir / RESULT_FILE).exists()
    with run_lock(run_dir):  # released again
        pass
    assert failures([result]) == [f"- a2c on CartPole-v1 seed 0: failed {result['error']}"]


def test_a_run_found_busy_is_reported_as_the_other_bench_finished_it(tmp_path, monkeypatch):
    """Two benches on one --out: a job one found busy and the other finished is in the first's report, not failed."""
    suite_file = write_suite(tmp_path, {**TINY_SUITE, "speed": [], "runs": [TINY_SUITE["runs"][1]], "seeds": 1})
    out = tmp_path / "out"

    def the_other_bench_runs_them(jobs, out, *args, **kwargs):
        for job in jobs:  # finished by "the other bench" while this one was told the job was busy
            assert execute_run(job, out / job.folder)["status"] == "done"
        return [job.outcome("busy", out / job.folder, error="another process is running it") for job in jobs]

    monkeypatch.setattr(harness, "run_jobs", the_other_bench_runs_them)
    assert main([str(suite_file), "--out", str(out), "--plain", "--no-plots"]) == 1  # this bench did not finish it
    report = (report_folder(out, get_suite(str(suite_file)), Selection()) / "report.md").read_text()
    assert re.search(r"\| CartPole-v1 \| actor-critic \| a2c \| 3,000 \| 1 \|", report), report
    assert "failed" not in report


def test_results_made_with_other_settings_are_stale_not_reused(tmp_path, monkeypatch, capsys):
    """Editing a zoo entry after a bench does not pass the old results (or checkpoints) off as the new settings'."""
    import sbx_lecture.zoo_config as zoo_config

    job = RunJob("a2c", "CartPole-v1", 1_000, 0)
    run_dir = tmp_path / job.folder
    finished = execute_run(job, run_dir)
    assert finished["status"] == "done" and stored_result(job, tmp_path / job.folder)["status"] == "done"  # type: ignore[index]
    written = (run_dir / RESULT_FILE).stat().st_mtime_ns
    entry_then = zoo_config.zoo_entry

    def edited(algo: str, env_id: str, conf_file: Path | None = None) -> tuple[dict[str, object], str]:
        entry, source = entry_then(algo, env_id, conf_file)
        return {**entry, "n_timesteps": 12_345, **changes}, source

    monkeypatch.setattr(zoo_config, "zoo_entry", edited)
    changes: dict[str, object] = {}  # only the budget, which the run's folder names: still the same run
    assert stored_result(job, tmp_path / job.folder)["status"] == "done"  # type: ignore[index]

    changes["ent_coef"] = 0.01  # a setting the run was not trained with
    stale = stored_result(job, tmp_path / job.folder)
    assert stale is not None and stale["status"] == "stale"
    assert describe(stale) == (
        f"stale: made with other settings than {finished['settings_source']} gives now: move its folder away to "
        "run it again"
    )
    (result,) = run_jobs([job], tmp_path, live=False)  # neither trained again nor reported as finished
    assert result["status"] == "stale" and (run_dir / RESULT_FILE).stat().st_mtime_ns == written
    assert f"a2c CartPole-v1 seed 0: {describe(stale)} ({run_dir})" in capsys.readouterr().out
    assert failures([result]) == [f"- a2c on CartPole-v1 seed 0: stale {stale['error']}"]

    # a run that was started (checkpoints, no result yet) is not continued under the new settings either
    (run_dir / RESULT_FILE).unlink()
    started = execute_run(job, run_dir)
    assert started["status"] == "stale" and started["error"].startswith("started with other settings: made with")
    assert not (run_dir / RESULT_FILE).exists()

    def unreadable(algo: str, env_id: str, conf_file: Path | None = None) -> tuple[dict[str, object], str]:
        raise zoo_config.ZooConfigError("the hyperparameter file is not valid YAML")

    monkeypatch.setattr(zoo_config, "zoo_entry", unreadable)  # a broken file now: the record is not judged by it
    (run_dir / RESULT_FILE).write_text(json.dumps(finished))
    assert stored_result(job, tmp_path / job.folder)["status"] == "done"  # type: ignore[index]
    monkeypatch.setattr(zoo_config, "zoo_entry", edited)

    del finished["settings_digest"]  # results written before digests were recorded are trusted
    (run_dir / RESULT_FILE).write_text(json.dumps(finished))
    assert stored_result(job, tmp_path / job.folder)["status"] == "done"  # type: ignore[index]


def test_a_run_whose_algorithm_adds_to_its_policy_kwargs_is_not_stale(tmp_path):
    """SB3 writes its own keys (``use_sde``) into the policy_kwargs it is given: the record stays the settings'."""
    job = RunJob("sac", "Pendulum-v1", 200, 0, {"policy_kwargs": {"net_arch": [8]}, "learning_starts": 100})
    result = execute_run(job, tmp_path / job.folder)
    assert result["status"] == "done", result.get("error")
    assert result["hyperparams"]["policy_kwargs"] == {"net_arch": [8]} and job.hyperparams["policy_kwargs"] == {
        "net_arch": [8]
    }
    assert stored_result(job, tmp_path / job.folder)["status"] == "done"  # type: ignore[index]


def test_a_run_that_another_process_trains_is_left_alone(tmp_path):
    job = RunJob("a2c", "CartPole-v1", 1_000, 0)
    run_dir = tmp_path / job.folder
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sbx_lecture.runs import run_lock\n"
            f"with run_lock(Path({str(run_dir)!r})):\n    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert execute_run(job, run_dir)["status"] == "busy"
        assert not (run_dir / RESULT_FILE).exists() and not (run_dir / "run.json").exists()
    finally:
        holder.kill()
        holder.communicate()


def test_the_sibling_gets_only_the_settings_it_takes_with_the_same_meaning():
    from stable_baselines3 import A2C, TD3

    kwargs = {"learning_rate": 1e-3, "n_epochs": 4, "policy_kwargs": {"net_arch": [64, 64], "critic_type": "mlp"}}
    kept, dropped = sibling_arguments(kwargs, TD3)
    assert kept == {"learning_rate": 1e-3, "policy_kwargs": {"net_arch": [64, 64]}}
    assert dropped == ["n_epochs", "policy_kwargs.critic_type"]
    assert sibling_arguments({"n_steps": 8}, A2C) == ({"n_steps": 8}, [])
    ppo_pairs = [entry for entry in SUITES["speed"].speed_entries if entry.sibling == "ppo"]
    assert ppo_pairs and all("target_kl" in entry.not_shared for entry in ppo_pairs)


# --- the SBX sibling of the speed suite ---------------------------------------------------------------------------

SBX_JOB = SpeedJob("ppo", "a2c", "CartPole-v1", 256, 2, {"n_steps": 64, "batch_size": 64, "n_epochs": 1}, (), "A2C")


def test_speed_times_the_sbx_sibling_in_the_same_rounds(tmp_path, monkeypatch):
    from stable_baselines3 import A2C

    import sbx_lecture.bench.speed as speed

    monkeypatch.setattr(speed, "sbx_algorithm", lambda name: A2C)  # a stand-in for sbx.A2C: no JAX needed
    reported: list[int] = []
    result = speed.execute_speed(SBX_JOB, tmp_path / "speed", reported.append)
    assert result["status"] == "done", result.get("error")
    # The progress bar counts every step the job takes: three warm-ups, then two timed runs of each contestant.
    assert reported == sorted(reported) and reported[-1] == speed.speed_steps(SBX_JOB) == 3 * (51 + 2 * 256)
    assert result["sbx"] == "sbx.A2C" and len(result["sbx_samples"]) == 2
    assert len(result["ours_samples"]) == len(result["sibling_samples"]) == 2  # every round's rate of each is kept
    assert result["ratio_vs_sbx"] == pytest.approx(result["ours_steps_per_second"] / result["sbx_steps_per_second"])
    assert "n_epochs" in result["sbx_dropped"] and "sbx_note" not in result
    assert set(result["warmup_seconds"]) == {"ppo", "a2c", "sbx.A2C"} and min(result["warmup_seconds"].values()) > 0
    assert result["settings_digest"] == zoo_settings("ppo", "CartPole-v1", SBX_JOB.hyperparams).digest
    row = next(line for line in speed_table([result]).splitlines() if line.startswith("| ppo | a2c |"))
    assert f"| {result['ratio_vs_sbx']:.2f} (no interval: timed 2×) |" in row
    # rates measured on different days are not comparable: each row says its day
    assert result["measured_on"] == datetime.date.today().isoformat() and f"| {result['measured_on']} |" in row
    older = {key: value for key, value in result.items() if key != "measured_on"}  # measured before the column
    assert "| – |" in next(line for line in speed_table([older]).splitlines() if line.startswith("| ppo | a2c |"))


def test_speed_ratios_show_their_bootstrap_interval_and_say_where_it_shows_no_difference():
    """Five rounds or more: ``ratio [low, high]``, marked and noted where the interval contains 1.0; results timed
    fewer times, or before each round's rate was kept, show the ratio alone and say why."""
    ours, sibling, sbx = [110.0, 104, 121, 98, 115], [100.0, 95, 110, 90, 104], [108.0, 112, 95, 103, 99]
    result = {
        "kind": "speed",
        "status": "done",
        **{"ours": "dpg", "sibling": "td3", "env": "Pendulum-v1", "env_steps_per_second": 9000.0},
        **{"ours_steps_per_second": 110.0, "sibling_steps_per_second": 100.0, "ratio": 1.1},
        **{"sbx_steps_per_second": 103.0, "ratio_vs_sbx": 110 / 103},
        **{"ours_samples": ours, "sibling_samples": sibling, "sbx_samples": sbx},
    }
    (low, high), (sbx_low, sbx_high) = ratio_interval(ours, sibling), ratio_interval(ours, sbx)
    assert 1.0 < low <= 1.1 <= high and sbx_low < 1.0 < sbx_high
    table = speed_table([result])
    assert f"| 1.10 [{low:.2f}, {high:.2f}] | 103 | 1.07 [{sbx_low:.2f}, {sbx_high:.2f}] ≈ |" in table
    assert "≈: the ratio's 95 % interval contains 1.0: no difference in speed was shown." in table
    older = {key: value[:3] if key.endswith("_samples") else value for key, value in result.items()}
    oldest = {key: value for key, value in result.items() if not key.endswith("_samples")}
    assert "| 1.10 (no interval: timed 3×) |" in speed_table([older])
    assert "| 1.10 (no interval: rates per repeat not kept) |" in speed_table([oldest])
    assert "no difference" not in speed_table([older, oldest])


def test_a_stop_request_interrupts_a_speed_job_within_its_learn_call(tmp_path):
    """A stop request reaches a speed job as it reaches a training run: through the progress report, raised from a
    callback inside ``learn`` (a timed pair can run for an hour; waiting for its end is not stopping it)."""
    import sbx_lecture.bench.speed as speed

    job = SpeedJob("ppo", "a2c", "CartPole-v1", 20_000, 1, {"n_steps": 64, "batch_size": 64, "n_epochs": 1})
    seen: list[int] = []

    def stop_requested(steps: int) -> None:
        seen.append(steps)
        if steps > 0:  # the first report of a step taken: the stop request is already there
            raise KeyboardInterrupt

    folder = tmp_path / "speed"
    result = speed.execute_speed(job, folder, stop_requested)
    assert result["status"] == "interrupted"
    assert 0 < seen[-1] < speed.warmup_length(job)  # stopped inside the first warm-up call, not after it
    assert describe(result) == (
        f"interrupted after {seen[-1]} of {speed.speed_steps(job)} steps: nothing was saved; run the command again"
    )
    assert not (folder / RESULT_FILE).exists()
    with run_lock(folder):  # the lock was released
        pass


def test_speed_without_sbx_says_so_in_one_line_and_times_the_rest(tmp_path, monkeypatch):
    import sbx_lecture.bench.speed as speed

    monkeypatch.setattr(speed, "sbx_algorithm", lambda name: None)
    result = speed.execute_speed(SBX_JOB, tmp_path / "speed")
    assert result["status"] == "done", result.get("error")
    assert result["sbx_note"] == speed.SBX_NOT_INSTALLED and "sbx_steps_per_second" not in result
    assert len(result["ours_samples"]) == len(result["sibling_samples"]) == 2
    assert speed.SBX_NOT_INSTALLED in speed_table([result])
    chart = tmp_path / "speed_steps_per_second.png"
    report = markdown_report("speed", "a pair", [result], [chart], tmp_path)
    assert "![speed_steps_per_second](speed_steps_per_second.png)" in report
    assert "Evaluation curves" not in report  # a report without runs has no curves to describe


def test_a_pair_timed_before_sbx_was_installed_is_timed_again_once_it_is(tmp_path, monkeypatch, capsys):
    from stable_baselines3 import A2C

    import sbx_lecture.bench.speed as speed
    import sbx_lecture.bench.suites as suites
    from sbx_lecture.bench import _dry_run

    monkeypatch.setattr(speed, "sbx_algorithm", lambda name: None)
    monkeypatch.setattr(suites, "_sbx_installed", lambda: False)
    folder = tmp_path / SBX_JOB.folder
    first = speed.execute_speed(SBX_JOB, folder)
    assert first["status"] == "done" and first["sbx_note"] == speed.SBX_NOT_INSTALLED
    stored = stored_result(SBX_JOB, folder)
    assert stored is not None and stored["status"] == "done"
    assert speed.execute_speed(SBX_JOB, folder)["status"] == "skipped"

    monkeypatch.setattr(speed, "sbx_algorithm", lambda name: A2C)  # now "installed": a stand-in for sbx.A2C
    monkeypatch.setattr(suites, "_sbx_installed", lambda: True)
    assert stored_result(SBX_JOB, folder) is None  # the client submits it again...
    stored = stored_result(SBX_JOB, folder, report=True)  # (its result stays in the reports until then)
    assert stored is not None and "sbx_steps_per_second" not in stored
    _dry_run([SBX_JOB], tmp_path)
    assert capsys.readouterr().out.startswith("to run ")
    again = speed.execute_speed(SBX_JOB, folder)  # ...and the worker times all three contestants anew
    assert again["status"] == "done" and again["sbx"] == "sbx.A2C" and "sbx_note" not in again
    assert again["ours_samples"] != first["ours_samples"]
    stored = stored_result(SBX_JOB, folder)
    assert stored is not None and stored["sbx_steps_per_second"] == again["sbx_steps_per_second"]
    no_sbx = dataclasses.replace(SBX_JOB, sbx=None)  # a pair that names no SBX sibling is finished without one
    assert not no_sbx.lacks_sbx(first) and SBX_JOB.lacks_sbx(first)


def test_speed_reports_the_seconds_our_update_spent_compiling(tmp_path, monkeypatch):
    import sbx_lecture.bench.speed as speed
    import sbx_lecture.infra.compilation as compilation

    monkeypatch.setattr(compilation, "MIN_COMPILED_UPDATES", 0)
    job = SpeedJob("dpg", "td3", "Pendulum-v1", 200, 2, {"compile_update": True, "batch_size": 32}, ("compile_update",))
    result = speed.execute_speed(job, tmp_path / "speed")
    assert result["status"] == "done", result.get("error")
    assert result["compile_seconds"] > 0
    assert "compile_update" in result["dropped_for_sibling"]
    row = next(line for line in speed_table([result]).splitlines() if line.startswith("| dpg | td3 |"))
    assert f"| {result['compile_seconds']:.1f} |" in row


def test_a_pair_of_own_defaults_gives_every_contestant_its_own_constructor_defaults(tmp_path, monkeypatch):
    """``own_defaults``: each contestant with its own constructor defaults (and the job's overrides), not our zoo
    entry; each keeps its own learning start, capped so that the timed steps include learning."""
    from stable_baselines3 import DQN

    import sbx_lecture.bench.speed as speed

    class LateDQN(DQN):  # a stand-in for sbx.DQN whose own default learning start differs
        def __init__(self, policy: Any, env: Any, learning_starts: int = 30, **kwargs: Any) -> None:
            super().__init__(policy, env, learning_starts=learning_starts, **kwargs)

    given: dict[str, list[dict[str, Any]]] = {}

    def time_learning(contestant: speed.Contestant, *args: Any) -> float:
        given.setdefault(contestant.name, []).append(dict(contestant.kwargs))
        return 100.0

    monkeypatch.setattr(speed, "time_learning", time_learning)
    monkeypatch.setattr(speed, "random_rollout", lambda *args: ([], 1000.0))
    monkeypatch.setattr(speed, "sbx_algorithm", lambda name: LateDQN)
    job = SpeedJob("sql", "dqn", "CartPole-v1", 500, 2, {"gamma": 0.95}, sbx="DQN", own_defaults=True)
    result = speed.execute_speed(job, tmp_path / job.folder)
    assert result["status"] == "done", result.get("error")
    stored = stored_result(job, tmp_path / job.folder)  # finished, not "stale" against SQL's zoo entry
    assert stored is not None and stored["status"] == "done"
    # the warm-up and both timed runs: SQL's and DQN's default start (100) capped at 10 % of 500; LateDQN's is 30
    assert given["sql"] == given["dqn"] == [{"gamma": 0.95, "learning_starts": 50}] * 3
    assert given["sbx.DQN"] == [{"gamma": 0.95, "learning_starts": 30}] * 3
    assert result["own_defaults"] and result["dropped_for_sibling"] == [] and result["sbx_dropped"] == []
    assert result["settings_source"] == "each contestant's constructor defaults + overrides"
    row = next(line for line in speed_table([result]).splitlines() if line.startswith("| sql | dqn |"))
    assert "| each its own defaults, gamma=0.95 |" in row
    # the same pair with our zoo entry is another measurement, in another folder, with the entry's settings
    zoo_job = dataclasses.replace(job, own_defaults=False)
    assert zoo_job.folder != job.folder
    given.clear()
    assert speed.execute_speed(zoo_job, tmp_path / "zoo")["status"] == "done"
    assert given["sql"][0]["batch_size"] == given["dqn"][0]["batch_size"] == 64  # zoo_configs/sql.yml's CartPole
    # a suite file asks for it per speed row
    rows = [{**TINY_SUITE["speed"][0], "own_defaults": True}]
    (entry,) = load_suite_file(write_suite(tmp_path, {**TINY_SUITE, "speed": rows})).speed_entries
    assert entry.own_defaults and not load_suite_file(write_suite(tmp_path, TINY_SUITE)).speed_entries[0].own_defaults


def test_speed_pairs_timed_on_a_gpu_are_another_measurement_and_sbx_stays_where_jax_puts_it(tmp_path, monkeypatch):
    """``--device cuda``: our algorithm and its SB3 sibling are built on that device, SBX is left to JAX; the pair gets
    its own folder and report, and the CPU pairs keep theirs."""
    from stable_baselines3 import A2C

    import sbx_lecture.bench.speed as speed

    on_cpu = expand(SUITES["speed"], Selection(algos=frozenset({"sql"})))
    on_gpu = expand(SUITES["speed"], Selection(algos=frozenset({"sql"}), device="cuda:0"))
    assert all(isinstance(job, SpeedJob) and job.device == "cuda:0" for job in on_gpu)
    # the CPU folders are named as those published in docs/results (no device in their name; those were timed 3×)
    assert Path(f"speed/sql_vs_sac/Pendulum-v1/t5000x{SUITES['speed'].repeats}-1984e47b") in {j.folder for j in on_cpu}
    assert not {job.folder for job in on_cpu} & {job.folder for job in on_gpu}
    assert on_gpu[0].label.endswith(" on cuda:0")
    assert report_folder(tmp_path, SUITES["speed"], Selection(device="cuda:0")) == tmp_path / "speed-cuda0"

    devices: dict[str, set[str]] = {}

    def time_learning(contestant: speed.Contestant, *args: Any) -> float:
        devices.setdefault(contestant.name, set()).add(contestant.device)
        return 100.0

    monkeypatch.setattr(speed, "time_learning", time_learning)
    monkeypatch.setattr(speed, "random_rollout", lambda *args: ([], 1000.0))
    monkeypatch.setattr(speed, "sbx_algorithm", lambda name: A2C)  # a stand-in for sbx.A2C
    monkeypatch.setattr(speed, "jax_backend", lambda: "gpu")
    job = dataclasses.replace(SBX_JOB, device="cuda:0")
    result = speed.execute_speed(job, tmp_path / job.folder)
    assert result["status"] == "done", result.get("error")
    assert devices == {"ppo": {"cuda:0"}, "a2c": {"cuda:0"}, "sbx.A2C": {"cpu"}}
    assert result["device"] == "cuda:0" and result["sbx_backend"] == "gpu"
    row = next(line for line in speed_table([result]).splitlines() if line.startswith("| ppo | a2c |"))
    assert "device=cuda:0, SBX on gpu |" in row


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["speed", "--device", "tpu9"], "--device 'tpu9' is not a torch device: use cpu, cuda or cuda:N"),
        (["classic", "--device", "cuda"], "--device cuda times speed pairs only; suite 'classic' trains runs"),
        (["speed", "--device", "cuda"], "--device cuda: this machine has no CUDA device torch can use"),
    ],
)
def test_a_device_the_bench_cannot_time_on_is_refused_in_one_line(arguments, message, tmp_path, monkeypatch, capsys):
    import torch as th

    monkeypatch.setattr(th.cuda, "is_available", lambda: False)
    assert main([*arguments, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")
def test_a_speed_pair_is_timed_on_cuda(tmp_path):
    import sbx_lecture.bench.speed as speed

    job = dataclasses.replace(SBX_JOB, sbx=None, device="cuda")
    result = speed.execute_speed(job, tmp_path / job.folder)
    assert result["status"] == "done", result.get("error")
    assert result["device"] == "cuda" and result["ours_steps_per_second"] > 0


def test_builtin_speed_suite_names_sbx_siblings_that_exist():
    import sbx_lecture.infra.compilation as compilation

    names = {entry.sbx for entry in SUITES["speed"].speed_entries if entry.sbx}
    assert names == {"TD3", "DDPG", "SAC", "DQN"}
    table = [entry for entry in SUITES["speed"].speed_entries if entry.hyperparams.get("batch_size") == 256]
    assert {(e.ours, e.hyperparams["policy_kwargs"]) for e in table} == {
        (ours, f"dict(net_arch=[{w}, {w}])") for ours in ("dpg", "sql") for w in (64, 256)
    }
    own = {(entry.ours, entry.sibling, entry.sbx) for entry in SUITES["speed"].speed_entries if entry.own_defaults}
    assert own == {("dpg", "td3", "TD3"), ("sql", "sac", "SAC"), ("sql", "dqn", "DQN")}
    compiled = [entry for entry in table if entry.hyperparams.get("compile_update")]
    assert {entry.ours for entry in compiled} == {"dpg", "sql"}
    # long enough for the update to be compiled: 10 000 gradient steps after a learning start of at most 10 %
    assert all(entry.timesteps * 0.9 >= compilation.MIN_COMPILED_UPDATES for entry in compiled)


def test_a_result_moved_to_another_checkout_leads_to_its_own_folder(tmp_path: Path) -> None:
    """Published results (docs/results) are read on machines other than the one that wrote them."""
    run_dir = tmp_path / "runs" / "ppo" / "CartPole-v1" / "t5000" / "seed_0"
    run_dir.mkdir(parents=True)
    (run_dir / RESULT_FILE).write_text(json.dumps({"status": "done", "folder": "/elsewhere/runs/ppo/seed_0"}))
    result = read_result(run_dir)
    assert result is not None and result["folder"] == str(run_dir) and result["status"] == "done"
    (run_dir / RESULT_FILE).write_text("[1, 2]")  # not a result
    assert read_result(run_dir) is None


# --- the defaults suite: every class with its own constructor defaults --------------------------------------------


def test_the_defaults_suite_sets_every_lecture_class_beside_its_sibling_on_ten_tasks():
    entries = SUITES["defaults"].entries
    assert all(entry.own_defaults and not entry.hyperparams for entry in entries)
    tasks = {entry.env_id for entry in entries}
    assert len(tasks) >= 10 and {"CartPole-v1", "Pendulum-v1", "InvertedDoublePendulum-v5", "Reacher-v5"} <= tasks
    budgets = {(entry.algo, entry.env_id): entry.timesteps for entry in entries}
    for ours in ("npg", "tnpg", "ppo_kl", "dpg", "sql", "reinforce", "ispg"):
        ran = [env for algo, env in budgets if algo == ours]
        assert ran, ours
        for env_id in ran:  # a sibling beside it on every task, at the same budget
            assert any(budgets.get((sibling, env_id)) == budgets[ours, env_id] for sibling in SIBLINGS[ours])
    assert {budgets[algo, "Hopper-v5"] for algo in ("npg", "trpo", "ppo_kl", "ppo")} == {100_000}
    assert {budgets[algo, "Hopper-v5"] for algo in ("dpg", "td3", "sql", "sac")} == {50_000}
    # never the folder of a zoo-settings run of the same algorithm, environment and budget
    (job,) = [j for j in expand(SUITES["defaults"], Selection(seeds=range(5, 6))) if j.label == "dpg Hopper-v5 seed 5"]
    assert isinstance(job, RunJob) and job.folder == Path("runs/dpg/Hopper-v5/t50000-defaults/seed_5")
    assert job.folder != dataclasses.replace(job, own_defaults=False).folder


def test_held_out_seeds_are_5_to_9_where_we_chose_the_settings_and_0_to_4_for_a_zoo_entry_used_as_it_is():
    jobs = expand(SUITES["classic"], Selection(seeds=HELD_OUT, envs=frozenset({"Pendulum-v1"})))
    seeds = {
        algo: {job.seed for job in jobs if isinstance(job, RunJob) and job.algo == algo} for algo in ("npg", "trpo")
    }
    assert seeds == {"npg": set(range(5, 10)), "trpo": set(range(5))}  # our zoo entry; the RL Zoo's own entry
    assert [job.seed for job in jobs] == sorted(job.seed for job in jobs)  # still seed-major
    tuned = RunJob("td3", "Pendulum-v1", 1000, 0, {"batch_size": 64})  # a suite's override is a setting chosen here
    defaults = RunJob("td3", "Pendulum-v1", 1000, 0, own_defaults=True)  # the defaults suite: 5-9 for every class
    assert tuned.held_out_seeds == defaults.held_out_seeds == range(5, 10)
    assert RunJob("td3", "Pendulum-v1", 1000, 0).held_out_seeds == range(5)


def test_seeds_are_a_count_an_inclusive_range_or_held_out_and_nothing_else():
    assert seed_range("3") == range(3) and seed_range("5-9") == range(5, 10) and seed_range("held-out") == HELD_OUT
    for text in ("0", "-1", "9-5", "a", "1-b", "", "heldout"):
        with pytest.raises(SuiteError):
            seed_range(text)
    with pytest.raises(SystemExit) as exit_info:
        main(["smoke", "--seeds", "0", "--dry-run"])
    assert exit_info.value.code == 2


def test_a_run_with_its_own_defaults_reads_no_zoo_entry(tmp_path):
    job = RunJob("a2c", "CartPole-v1", 600, 0, eval_freq=300, eval_episodes=2, final_eval_episodes=2, own_defaults=True)
    result = execute_run(job, tmp_path / "run")
    assert result["status"] == "done" and result["own_defaults"] is True
    assert result["settings_source"] == "sbx_lecture/bench/constructor_defaults.yml[default]" and result["n_envs"] == 1
    assert result["hyperparams"] == {"policy": "MlpPolicy"}  # A2C's zoo entry for CartPole has n_envs 8


def test_a_score_is_the_mean_of_the_evaluations_in_the_last_tenth_of_training():
    curve = [[0, -100.0, 1.0], [800, 40.0, 1.0], [900, 50.0, 1.0], [950, 70.0, 1.0], [1024, 90.0, 1.0]]
    assert run_score({"timesteps": 1000, "curve": curve, "final_mean": 90.0}) == pytest.approx(70.0)
    assert run_score({"timesteps": 1000, "final_mean": 12.0}) == 12.0


def test_the_defaults_report_gives_each_class_a_fraction_of_its_siblings_gain(tmp_path):
    def run(algo: str, seed: int, score: float) -> dict[str, Any]:
        curve = [[0, 20.0, 0.0], [50_000, score, 0.0]]
        return {"kind": "run", "status": "done", "algo": algo, "env": "CartPole-v1", "seed": seed,
                "family": family_of(algo), "timesteps": 50_000, "final_mean": score, "final_std": 0.0,
                "final_episodes": 10, "steps_per_second": 100.0, "curve": curve, "own_defaults": True}  # fmt: skip

    results = [run("sql", seed, 250.0) for seed in range(4)] + [run("dqn", seed, 500.0) for seed in range(4)]
    report = markdown_report("defaults", "test", results, [], tmp_path)
    section = report.split("## Defaults: gain over random as a fraction of the sibling's")[1]
    row = next(line for line in section.splitlines() if line.startswith("| CartPole-v1 | sql | dqn |"))
    returns = json.loads((tmp_path / "random_policy.json").read_text())["CartPole-v1"]["returns"]
    random_mean = sum(returns) / len(returns)
    expected = (250.0 - random_mean) / (500.0 - random_mean)
    assert f"| {expected:.2f} [{expected:.2f}, {expected:.2f}] |" in row
    flat = [run("sql", 0, 30.0), run("dqn", 0, 22.0)]  # the sibling did not learn: nothing to compare with
    assert "| n/a |" in markdown_report("defaults", "test", flat, [], tmp_path)
    # a sibling that learned on one seed of three: resamples of its two flat seeds widen the interval, never void it
    mixed = [run("sql", seed, 250.0) for seed in range(3)] + [
        run("dqn", 0, 500.0),
        run("dqn", 1, 22.0),
        run("dqn", 2, 22.0),
    ]
    row = (
        markdown_report("defaults", "test", mixed, [], tmp_path).split("| CartPole-v1 | sql | dqn |")[1].splitlines()[0]
    )
    point, low, high = map(float, row.split("|")[-2].replace("[", "").replace("]", "").replace(",", "").split())
    assert "nan" not in row and low < point < high


def test_a_budget_that_runs_took_more_steps_of_states_the_steps_taken(tmp_path):
    def run(algo: str, seed: int, last_step: int) -> dict[str, Any]:
        curve = [[0, 20.0, 0.0], [last_step, 100.0, 0.0]]
        return {"kind": "run", "status": "done", "algo": algo, "env": "CartPole-v1", "seed": seed,
                "family": family_of(algo), "timesteps": 50_000, "final_mean": 100.0, "final_std": 0.0,
                "final_episodes": 10, "steps_per_second": 100.0, "curve": curve}  # fmt: skip

    results = [run("ppo", seed, 51_200) for seed in range(2)] + [run("dqn", seed, 50_000) for seed in range(2)]
    report = markdown_report("classic", "test", results, [], tmp_path)
    assert "| CartPole-v1 | proximal | ppo | 50,000 (51,200 taken) | 2 |" in report  # a rollout of 2048 past it
    assert "| dqn | 50,000 | 2 |" in report  # exactly the budget: nothing added


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["smoke", "--timesteps-scale", "nan"], "--timesteps-scale must be a positive number, got nan"),
        (["smoke", "--timesteps-scale", "inf"], "--timesteps-scale must be a positive number, got inf"),
        (["smoke", "--scheduler", "http://127.0.0.1:8786"], "is not a Dask scheduler address: give tcp://HOST:PORT"),
        (["smoke", "--scheduler", "not a url"], "is not a Dask scheduler address"),
        (["smoke", "--scheduler", "tcp://127.0.0.1:port"], "is not a Dask scheduler address"),
    ],
)
def test_a_bad_scale_or_scheduler_address_is_refused_at_once_in_one_line(arguments, message, tmp_path, capsys):
    assert main([*arguments, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "results").write_text("not a folder")
    assert main(["smoke", "--dry-run", "--out", str(tmp_path / "results")]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err
    assert (tmp_path / "results").read_text() == "not a folder"

"""One benchmark run: ``sbx-lecture train``'s engine with periodic evaluation, then the run's ``result.json``.

A run folder (``<out>/runs/<algo>/<env>/t<budget>/seed_<k>/``) is a :mod:`train <sbx_lecture.training>` run folder
(``run.json``, Monitor segments, checkpoint bundles, the lock) plus::

    evaluations.npz  the deterministic evaluations, in the RL Zoo's layout (``plot_from_file`` reads it)
    result.json      written last, atomically: its presence means the run is finished
    error.txt        the traceback of the last failed attempt

A folder with a verified checkpoint bundle but no ``result.json`` is continued from that bundle; one without is
started again. Finished runs drop their checkpoints (a replay buffer can take hundreds of megabytes).
"""

from __future__ import annotations

import json
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbx_lecture.bench.suites import FigureJob, Job, RunJob, SpeedJob
from sbx_lecture.checkpoints import interrupt_once, stop_signals_handled
from sbx_lecture.evaluation import ProgressCallback, ProgressReport
from sbx_lecture.infra.files import write_json
from sbx_lecture.infra.validation import one_line
from sbx_lecture.runs import CHECKPOINT_DIR, LOCK_FILE, RUN_FILE, RunFolderError, read_run_file, run_lock
from sbx_lecture.zoo_config import ZooSettings

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
#: Checkpoints per run (at most; the final one is removed when the run finishes).
CHECKPOINTS_PER_RUN = 10
#: What an interrupted run that committed a checkpoint tells the user.
RESUMES = "checkpoint saved; run the command again to resume"


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The finished run's result, or ``None`` when it has not finished (or the file is unreadable).

    Its ``folder`` is ``run_dir``, wherever the result was written: results copied to another machine or checkout
    (the published ones under ``docs/results/``) still lead to their evaluations and figures.
    """
    try:
        result = json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):  # no such file (not finished), or not readable
        return None
    return {**result, "folder": str(run_dir)} if isinstance(result, dict) else None


def changed_settings(recorded: dict[str, Any], current: Callable[[], ZooSettings]) -> str | None:
    """Why a job's stored result (or started run) no longer stands for it, or ``None`` when it still does.

    It does not once ``current()`` (the job's settings now: its algorithm's zoo entry for the environment with the
    job's overrides) differs from the settings ``recorded`` was trained or timed with (its ``settings_digest``;
    records without one are trusted). Nothing is trained or deleted in its place: the user moves the folder away,
    or restores the entry.
    """
    digest = recorded.get("settings_digest")
    if digest is None:
        return None
    try:
        if digest == current().digest:
            return None
    except ValueError:  # the entry cannot be read now: training says why; what was made with it stands
        return None
    source = recorded.get("settings_source") or recorded.get("hyperparams_source") or "its zoo entry"
    return f"made with other settings than {source} gives now: move its folder away to run it again"


def stored_result(job: Job, folder: Path, report: bool = False) -> dict[str, Any] | None:
    """The result of ``job``, finished in ``folder``, or ``None`` when it is to run: not finished, or a speed pair
    measured before the SBX sibling it names was installed (unless the result is wanted for a ``report``: it stays
    in the reports until the pair is measured again). Status ``"stale"`` when the job's zoo entry now gives other
    settings than those it was made with (:func:`changed_settings`; a speed pair of each contestant's own defaults,
    when its overrides changed)."""
    result = read_result(folder)
    if result is None or isinstance(job, FigureJob):
        return result
    stale = changed_settings(result, job.settings)
    if stale is not None:
        return {**result, "status": "stale", "error": stale}
    return None if not report and isinstance(job, SpeedJob) and job.lacks_sbx(result) else result


def write_result(folder: Path, result: dict[str, Any]) -> None:
    """Write a finished job's ``result.json`` into ``folder``, atomically and without its ``folder``: that path is
    this machine's (:func:`read_result` puts the folder it reads from back), and results get published."""
    write_json(folder / RESULT_FILE, {key: value for key, value in result.items() if key != "folder"})


#: What a job stopped before it saved anything tells the user.
NOTHING_SAVED = "interrupted: nothing was saved; run the command again"


def run_once(
    job: Job,
    folder: Path,
    work: Callable[[], dict[str, Any]],
    stopped: Callable[[], str] = lambda: NOTHING_SAVED,
) -> dict[str, Any]:
    """Run ``work`` unless the job has a :func:`stored_result` already (then that, ``"skipped"`` unless it is stale);
    return its result.

    ``work`` returns either a result that is not finished (with its ``status``) or the measurements of a finished
    job: then the result is the job's head (its ``outcome``) with them, written here as ``result.json`` into ``folder``,
    and the folder's checkpoints (a replay buffer can take hundreds of megabytes) and ``error.txt`` go.

    The folder's lock is held from the check of ``result.json`` until it is written, so that a second bench on the
    same folder can neither run the job beside us nor start it again after we finished (``train`` takes the lock
    again). Errors do not propagate: they come back as ``{"status": "failed", "error": ...}`` and their traceback is
    kept in ``error.txt``. A ``KeyboardInterrupt`` comes back as ``{"status": "interrupted", "detail": stopped()}``;
    in a main thread (not a Dask worker's) a first Ctrl-C or SIGTERM raises it. A job another process is running
    comes back as ``{"status": "busy"}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with stop_signals_handled(interrupt_once), run_lock(folder):
            stored = stored_result(job, folder)
            if stored is not None:  # finished before, perhaps by another process
                return {**stored, "status": "skipped"} if stored["status"] == "done" else stored
            result = work()
            if "status" not in result:  # measurements: the job finished
                result = {**job.outcome("done", folder), **result}
                write_result(folder, result)
                shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)
                (folder / ERROR_FILE).unlink(missing_ok=True)
            return result
    except KeyboardInterrupt:
        return job.outcome("interrupted", folder, detail=stopped())
    except Exception as exc:
        if isinstance(exc, RunFolderError) and "another process" in str(exc):
            return job.outcome("busy", folder, error=f"another process is running it ({LOCK_FILE})")
        (folder / ERROR_FILE).write_text(traceback.format_exc())  # the traceback of the last failed attempt
        return job.outcome("failed", folder, error=one_line(exc, typed=True))


def execute_run(
    job: RunJob, run_dir: Path, report: ProgressReport | None = None, stop_after: int | None = None
) -> dict[str, Any]:
    """Train ``job`` in ``run_dir`` (resuming from its newest checkpoint bundle if it has one) and return its result
    (see :func:`run_once`).

    A ``KeyboardInterrupt`` during training commits a checkpoint and returns ``{"status": "interrupted"}``, as does
    ``stop_after`` (used by the tests to interrupt a run for real). A run started with other settings than its zoo
    entry gives now is ``"stale"``: its checkpoints would continue the old settings.
    """
    before = "interrupted before training: nothing was saved; run the command again"
    return run_once(job, run_dir, lambda: _train(job, run_dir, report, stop_after), lambda: before)


def _train(job: RunJob, run_dir: Path, report: ProgressReport | None, stop_after: int | None) -> dict[str, Any]:
    from sbx_lecture.training import RESUME_IF_POSSIBLE, TrainConfig, TrainingInterrupted, train
    from sbx_lecture.zoo_config import zoo_budget

    started = read_run_file(run_dir) if (run_dir / RUN_FILE).exists() else {}
    stale = changed_settings(started, job.settings)
    if stale is not None:  # its checkpoints would continue the old settings
        return job.outcome("stale", run_dir, error=f"started with other settings: {stale}")
    target = job.timesteps or zoo_budget(job.algo, job.env_id)
    config = TrainConfig(
        algo=job.algo,
        env_id=job.env_id,
        timesteps=target,
        seed=job.seed,
        hyperparams=dict(job.hyperparams),
        conf_file=job.conf_file,
        out=run_dir,
        resume=RESUME_IF_POSSIBLE,
        checkpoint_freq=max(target // CHECKPOINTS_PER_RUN, 1),
        progress_bar=False,
        device="cpu",
        eval_freq=job.eval_freq or max(target // 20, 1),
        eval_episodes=job.eval_episodes,
        final_eval_episodes=job.final_eval_episodes,
        tensorboard=False,
        keep_checkpoints=2,
    )
    try:
        trained = train(config, callbacks=[ProgressCallback(report, stop_after)])
    except TrainingInterrupted as exc:
        if exc.saved_at is None:  # nothing new was saved: the message says why (and which older checkpoint is kept)
            return job.outcome("interrupted", run_dir, detail=f"{exc}; run the command again")
        return job.outcome("interrupted", run_dir, detail=f"interrupted at step {exc.saved_at} ({RESUMES})")
    run = read_run_file(run_dir)
    segments = run.get("segments", [])
    if not trained.finished or trained.final is None:  # stopped early: the checkpoint written at its end resumes it
        return job.outcome("interrupted", run_dir, detail=f"stopped at step {trained.num_timesteps} ({RESUMES})")
    return {
        "timesteps": target,
        "final_mean": trained.final[0],
        "final_std": trained.final[1],
        "final_episodes": job.final_eval_episodes,
        "steps_per_second": trained.steps_trained / trained.learn_seconds,
        "wall_seconds": sum(float(segment.get("seconds", 0.0)) for segment in segments),
        "resumed_from": [int(segment["start"]) for segment in segments[1:]],
        "n_envs": run["n_envs"],
        "settings_source": run.get("hyperparams_source", ""),
        "settings_digest": run.get("settings_digest"),
        "hyperparams": run["hyperparams"],
        "curve": [list(point) for point in trained.evaluations],
    }

"""One benchmark run, start to finish or resumed: train with periodic evaluation, checkpoint, write the result.

A run folder (``<out>/runs/<algo>/<env>/t<budget>/seed_<k>/``) holds::

    run.json        what was asked (algorithm, env, seed, budget, hyperparameters and where they came from)
    monitor/        Monitor CSVs of the training environments
    curve.csv       (steps, mean return, std) of the deterministic evaluations
    checkpoints/    checkpoint bundles (see :mod:`sbx_lecture.checkpoints`) while the run is unfinished
    result.json     written last, atomically: its presence means the run is finished
    model.zip       the final model (+ vecnormalize.npz when normalised)
    error.txt       the traceback of the last failed attempt
    .lock           file lock held by the process training it (two commands never train the same run at once)

A folder with a verified checkpoint bundle but no ``result.json`` is continued from that bundle; one without is
started again. Finished runs drop their checkpoints (a replay buffer can take hundreds of megabytes).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from sbx_lecture.bench.evaluation import CURVE_FILE, PeriodicEvaluation, ProgressReport, read_curve, write_curve
from sbx_lecture.bench.files import write_json
from sbx_lecture.bench.settings import run_settings
from sbx_lecture.bench.suites import RunJob
from sbx_lecture.checkpoints import (
    MODEL_MEMBER,
    NORMALIZATION_MEMBER,
    REPLAY_BUFFER_MEMBER,
    RNG_MEMBER,
    CheckpointCallback,
    CheckpointError,
    MonitorLog,
    newest_valid_bundle,
    remove_stale_bundles,
    restore_rng_states,
)
from sbx_lecture.runs import (
    CHECKPOINT_DIR,
    LOCK_FILE,
    MODEL_FILE,
    RunFolderError,
    atomic_write,
    clear_folder,
    read_run_file,
    remove_stale,
    run_lock,
    segment_folder,
    write_run_file,
)

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
#: Checkpoints per run (at most; the final one is removed when the run finishes).
CHECKPOINTS_PER_RUN = 10
#: Seed offset of the evaluation environment, so that it never replays the training episodes.
EVAL_SEED_OFFSET = 10_000


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The finished run's result, or ``None`` when it has not finished (or the file is unreadable)."""
    path = run_dir / RESULT_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def execute_run(
    job: RunJob, run_dir: Path, report: ProgressReport | None = None, stop_after: int | None = None
) -> dict[str, Any]:
    """Train ``job`` in ``run_dir`` (resuming from its checkpoint if it has one) and return its result.

    Errors do not propagate: they come back as ``{"status": "failed", "error": ...}`` and their traceback is kept
    in ``error.txt``. A ``KeyboardInterrupt`` during training saves a checkpoint and returns
    ``{"status": "interrupted"}``, as does ``stop_after`` (used by the tests to interrupt a run for real).
    """
    finished = read_result(run_dir)
    if finished is not None:
        return {**finished, "status": "skipped"}
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(run_dir):
            return _execute_locked(job, run_dir, report, stop_after)
    except RunFolderError:
        return {**_summary(job, run_dir, "busy"), "error": f"another process is training it ({LOCK_FILE})"}


def _execute_locked(
    job: RunJob, run_dir: Path, report: ProgressReport | None, stop_after: int | None
) -> dict[str, Any]:
    finished = read_result(run_dir)  # another process may have finished it meanwhile
    if finished is not None:
        return {**finished, "status": "skipped"}
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, interrupt_once)
    except ValueError:  # not the main thread: leave the handler alone
        previous = None
    try:
        return _train_and_evaluate(job, run_dir, report, stop_after)
    except KeyboardInterrupt:
        return _summary(job, run_dir, "interrupted")
    except Exception as exc:
        (run_dir / ERROR_FILE).write_text(traceback.format_exc())
        message = " ".join(str(exc).split()) or type(exc).__name__
        return {**_summary(job, run_dir, "failed"), "error": f"{type(exc).__name__}: {message}"}
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def interrupt_once(signum: int, frame: Any) -> None:
    """SIGINT handler: raise ``KeyboardInterrupt`` once; later signals are ignored so the checkpoint gets written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _summary(job: RunJob, run_dir: Path, status: str) -> dict[str, Any]:
    return {
        "kind": "run",
        "status": status,
        "algo": job.algo,
        "env": job.env_id,
        "seed": job.seed,
        "family": job.family,
        "timesteps": job.timesteps,
        "folder": str(run_dir),
    }


def _train_and_evaluate(
    job: RunJob, run_dir: Path, report: ProgressReport | None, stop_after: int | None
) -> dict[str, Any]:
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecNormalize

    from sbx_lecture import serialization
    from sbx_lecture.training import build_model, make_environment, resolve_algorithm

    started = time.perf_counter()
    spec, cls = resolve_algorithm(job.algo)
    settings = run_settings(spec.name, job.env_id, job.hyperparams)
    target = job.timesteps or settings.n_timesteps
    remove_stale(run_dir)
    remove_stale_bundles(run_dir)
    try:
        bundle = newest_valid_bundle(run_dir)[0] if (run_dir / CHECKPOINT_DIR).is_dir() else None
    except CheckpointError:
        bundle = None
    run = read_run_file(run_dir)
    segments: list[int] = list(run.get("segments", []))
    folder = segment_folder(run_dir)
    if bundle is not None and run:
        resumed_at = bundle.steps
        monitor = MonitorLog(list(bundle.manifest.get("monitor", [])), resumed_at, str(folder.relative_to(run_dir)))
        env = make_environment(
            job.env_id,
            int(run.get("n_envs", settings.n_envs)),
            job.seed + len(segments) + 1,
            folder,
            normalize_stats=bundle.member(NORMALIZATION_MEMBER),
        )
        model = serialization.load(bundle.path / MODEL_MEMBER, env=env, device="cpu", algo=spec.name)
        buffer_path = bundle.member(REPLAY_BUFFER_MEMBER)
        if buffer_path is not None:
            serialization.load_replay_buffer(model, buffer_path)
        restore_rng_states(bundle.path / RNG_MEMBER)
        write_curve(run_dir / CURVE_FILE, [p for p in read_curve(run_dir / CURVE_FILE) if p[0] <= resumed_at])
        segments.append(resumed_at)
    else:
        clear_folder(run_dir)
        segments = []
        folder = segment_folder(run_dir)
        monitor = MonitorLog(folder=str(folder.relative_to(run_dir)))
        env = make_environment(job.env_id, settings.n_envs, job.seed, folder, settings.normalize, settings.gamma)
        model = build_model(spec.name, cls, env, settings.zoo, settings.kwargs, job.seed, device="cpu")
        run = {
            "algo": spec.name,
            "env": job.env_id,
            "seed": job.seed,
            "timesteps": target,
            "n_envs": settings.n_envs,
            "family": job.family,
            "plugin": spec.origin,
            "settings_source": settings.source,
            "hyperparams": {key: repr(value) for key, value in settings.raw.items()},
        }
    run["segments"] = segments
    write_run_file(run_dir, run)

    normalizer = model.get_vec_normalize_env()
    eval_env = make_environment(job.env_id, 1, job.seed + EVAL_SEED_OFFSET)
    if isinstance(normalizer, VecNormalize):
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=settings.gamma)
    eval_freq = job.eval_freq or max(target // 20, 1)
    evaluation = PeriodicEvaluation(
        eval_env, eval_freq, job.eval_episodes, run_dir / CURVE_FILE, target, report, stop_after
    )
    metadata = {"algo": spec.name, "env": job.env_id, "plugin": spec.origin}
    checkpoints = CheckpointCallback(run_dir, max(target // CHECKPOINTS_PER_RUN, 1), metadata, monitor, keep=2)
    model.set_logger(configure(str(run_dir), ["csv"]))
    resumed = bool(segments)
    steps_before = model.num_timesteps
    learn_started = time.perf_counter()
    try:
        model.learn(
            max(target - model.num_timesteps, 0),
            callback=CallbackList([checkpoints, evaluation]),
            reset_num_timesteps=not resumed,
        )
    except KeyboardInterrupt:
        checkpoints.save_checkpoint()
        _add_elapsed(run_dir, run, time.perf_counter() - started)
        raise
    train_seconds = max(time.perf_counter() - learn_started - evaluation.eval_seconds, 1e-9)
    if model.num_timesteps < target:  # stopped early: the checkpoint written at the end of learn() resumes it
        eval_env.close()
        _add_elapsed(run_dir, run, time.perf_counter() - started)
        return _summary(job, run_dir, "interrupted")

    final_mean, final_std = evaluation.evaluate_now(job.final_eval_episodes)[1:]
    eval_env.close()
    atomic_write(run_dir / MODEL_FILE, lambda temporary: serialization.save(model, temporary, metadata), suffix=".zip")
    if isinstance(normalizer, VecNormalize):
        atomic_write(
            run_dir / NORMALIZATION_MEMBER,
            lambda temporary: serialization.save_normalization(normalizer, temporary),  # type: ignore[arg-type]
        )
    result = {
        **_summary(job, run_dir, "done"),
        "timesteps": target,
        "final_mean": final_mean,
        "final_std": final_std,
        "final_episodes": job.final_eval_episodes,
        "steps_per_second": (model.num_timesteps - steps_before) / train_seconds,
        "wall_seconds": time.perf_counter() - started + float(run.get("earlier_seconds", 0.0)),
        "resumed_from": segments,
        "n_envs": run["n_envs"],
        "settings_source": run["settings_source"],
        "hyperparams": run["hyperparams"],
        "curve": [list(point) for point in read_curve(run_dir / CURVE_FILE)],
    }
    write_json(run_dir / RESULT_FILE, result)
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    env.close()
    return result


def _add_elapsed(run_dir: Path, run: dict[str, Any], seconds: float) -> None:
    """Remember the wall time of an interrupted segment, so that the finished run reports the total."""
    run["earlier_seconds"] = float(run.get("earlier_seconds", 0.0)) + seconds
    write_run_file(run_dir, run)

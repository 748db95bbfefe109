"""The run engine behind ``sbx-lecture train``: start or resume a run, learn, save.

One way through: :func:`train` checks what it was asked, takes the run folder and its lock (:mod:`sbx_lecture.runs`),
starts a new model (:mod:`sbx_lecture.factory`) or resumes the newest verified checkpoint bundle
(:mod:`sbx_lecture.checkpoints`), learns with checkpoints and evaluations (:mod:`sbx_lecture.evaluation`), and saves
the model and the learning curve. Each start or resume is a segment of the run, recorded in ``run.json``.

Every problem a user can cause raises a :class:`UsageError` (or another of :data:`USER_ERRORS`) with a one-line
message that names the problem and the fix; the command line prints it and exits with status 2.
"""

from __future__ import annotations

import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sbx_lecture import checkpoints, loading, runs
from sbx_lecture.checkpoints import CheckpointCallback, CheckpointError, MonitorLog
from sbx_lecture.evaluation import PeriodicEvaluation
from sbx_lecture.evaluation import evaluate as evaluate  # the command line's ``eval`` imports it from here
from sbx_lecture.factory import (  # the bench, the sweep and the zoo bridge import these from here too
    UsageError,
    build_model,
    check_device,
    check_environment,
    make_environment,
    require_count,
    resolve_algorithm,
    with_integers,
)
from sbx_lecture.factory import default_policy as default_policy  # imported from here by the testing kit
from sbx_lecture.hyperparams import HyperparameterError, to_json_value
from sbx_lecture.infra.finite import NonFiniteError
from sbx_lecture.infra.validation import InvalidValueError, require_integer
from sbx_lecture.registry import RegistryError
from sbx_lecture.runs import RunFolderError
from sbx_lecture.zoo_config import DEFAULT_TIMESTEPS, ZooConfigError, zoo_settings

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback

DEFAULT_ALGORITHM = "tnpg"
DEFAULT_ENVIRONMENT = "Pendulum-v1"
#: Seconds between the plain progress lines ``train`` prints instead of the bar when stdout is not a terminal.
PLAIN_PROGRESS_SECONDS = 30.0
#: ``TrainConfig.resume`` value that resumes when the run folder has a verified checkpoint and starts afresh otherwise.
RESUME_IF_POSSIBLE = "auto"


class TrainingInterrupted(Exception):
    """Ctrl-C stopped ``train``; the message says whether (and where) a checkpoint was saved.

    :param saved_at: the step of the checkpoint committed on the way out, ``None`` when none was
    """

    def __init__(self, message: str, saved_at: int | None = None) -> None:
        super().__init__(message)
        self.saved_at = saved_at


#: Exceptions the command line reports as one line with exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (
    UsageError,
    RegistryError,
    HyperparameterError,
    InvalidValueError,
    loading.ModelFileError,
    RunFolderError,
    CheckpointError,
    ZooConfigError,
    NonFiniteError,
)


@dataclass
class TrainConfig:
    """What ``sbx-lecture train`` was asked to do; ``None`` fields come from the zoo file or the defaults."""

    algo: str = DEFAULT_ALGORITHM
    env_id: str = DEFAULT_ENVIRONMENT
    timesteps: int | None = None
    seed: int = 0
    n_envs: int | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    resume: bool | str = False
    checkpoint_freq: int | None = None
    progress_bar: bool = True
    device: str = "auto"
    verbose: int = 0
    conf_file: Path | None = None
    eval_freq: int | None = None
    eval_episodes: int = 5
    final_eval_episodes: int | None = None
    vec_env: str = "dummy"
    tensorboard: bool = True
    keep_checkpoints: int = 3


@dataclass
class TrainResult:
    """Where a run was written and how far it got.

    :param finished: whether the run reached its budget (a callback may stop it earlier)
    :param evaluations: (steps, mean return, standard deviation) of the periodic evaluations
    :param final: (mean return, standard deviation) of the final evaluation, when one was asked for
    :param learn_seconds: wall time of this segment's ``learn``, evaluations excluded
    :param steps_trained: environment steps this segment trained
    """

    run_dir: Path
    model_path: Path | None
    num_timesteps: int
    learning_curve: Path | None
    finished: bool = True
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)
    final: tuple[float, float] | None = None
    learn_seconds: float = 0.0
    steps_trained: int = 0


def check_train_config(config: TrainConfig) -> None:
    """Refuse values ``train`` would otherwise reinterpret or crash on (one line each)."""
    require_integer("--seed", config.seed, 0)
    if config.seed >= 2**32:
        raise InvalidValueError(f"--seed must be below 2**32, got {config.seed}")
    for option, value in (
        ("--timesteps", config.timesteps),
        ("--n-envs", config.n_envs),
        ("--checkpoint-freq", config.checkpoint_freq),
        ("--eval-freq", config.eval_freq),
        ("--eval-episodes", config.eval_episodes),
    ):
        if value is not None:
            require_count(option, value)
    check_device(config.device)
    if config.resume is True and config.hyperparams:
        raise UsageError("--resume continues the saved run with its own hyperparameters: drop the -p options")


# -- the run: a folder with one writer, then start or resume, learn, save ----------------------------------------------


def train(
    config: TrainConfig,
    notify: Callable[[str], None] | None = None,
    callbacks: list[BaseCallback] | None = None,
) -> TrainResult:
    """Train (or resume) a run as described by ``config``; see :mod:`sbx_lecture.runs` for the run folder.

    The run folder is locked for the whole call. A new run that ends before its first checkpoint (an error, a bad
    setting, Ctrl-C during start-up) leaves no folder behind; a run with checkpoints keeps every one of them.

    :param notify: called with one line for each thing the user should know (a damaged checkpoint passed over)
    :param callbacks: more SB3 callbacks for ``learn`` (one returning ``False`` ends the segment early)
    :raises TrainingInterrupted: on Ctrl-C, saying whether a checkpoint was saved
    """
    check_train_config(config)
    spec, cls = resolve_algorithm(config.algo)
    check_environment(config.env_id)
    metadata = {"algo": spec.name, "env": config.env_id, "plugin": spec.origin}
    run_dir, created = _choose_run_dir(config, spec.name)
    with runs.run_lock(run_dir):
        verified = (checkpoints.verify_bundle(path) for path in checkpoints.committed_bundles(run_dir))
        auto = config.resume == RESUME_IF_POSSIBLE
        resuming = config.resume is True or (auto and any(isinstance(b, checkpoints.Bundle) for b in verified))
        if auto and not resuming:
            runs.clear_folder(run_dir)  # what a run that never committed a checkpoint left
        elif not resuming:
            _require_empty(run_dir)  # again, now that the folder is ours
        try:
            runs.remove_stale(run_dir)
            monitor = MonitorLog(folder=str(runs.segment_folder(run_dir).relative_to(run_dir)))
            try:
                if resuming:
                    run, model = _resume(config, run_dir, monitor, metadata, notify or warnings.warn)
                else:
                    run, model = _start(config, cls, run_dir, monitor, metadata)
            except BaseException as exc:
                shutil.rmtree(run_dir / monitor.folder, ignore_errors=True)  # no log of a segment that never ran
                if isinstance(exc, KeyboardInterrupt):
                    raise TrainingInterrupted(
                        "interrupted during start-up, before any training: nothing was saved"
                    ) from None
                raise
            return _learn(config, run_dir, run, model, monitor, callbacks or [])
        except BaseException:
            if not resuming and not checkpoints.committed_bundles(run_dir):  # a new run that saved nothing leaves none
                runs.discard_folder(run_dir, created)
            raise


def _require_empty(run_dir: Path) -> None:
    """Refuse a run folder that holds anything but (perhaps) its lock file: a new run never mixes with old files."""
    if run_dir.is_dir() and not runs.is_empty_run_folder(run_dir):
        raise UsageError(f"run folder {run_dir} is not empty: pass --resume to continue it, or another --out")


def _choose_run_dir(config: TrainConfig, algo: str) -> tuple[Path, bool]:
    """The run folder, and whether this call created it."""
    root = Path("runs")
    if config.resume is True:
        run_dir = config.out or runs.latest_run_dir(root, algo, config.env_id)
        if run_dir is None or not run_dir.is_dir():
            raise UsageError(
                f"no run folder to resume for {algo} on {config.env_id} (looked for {run_dir or root / (algo + '_*')});"
                " pass --out RUN_DIR or drop --resume"
            )
        return run_dir, False
    if config.out is None:
        if config.resume == RESUME_IF_POSSIBLE:
            raise UsageError("resuming if possible needs the run folder: pass --out")
        return runs.new_run_dir(root, algo, config.env_id), True
    if config.resume != RESUME_IF_POSSIBLE:
        _require_empty(config.out)
    return config.out, runs.prepare_folder(config.out)


def _start(
    config: TrainConfig, cls: type[BaseAlgorithm], run_dir: Path, monitor: MonitorLog, metadata: dict[str, Any]
) -> tuple[dict[str, Any], BaseAlgorithm]:
    """A fresh model on a new environment, and the new run's ``run.json`` content."""
    settings = zoo_settings(metadata["algo"], config.env_id, config.hyperparams, config.conf_file)
    n_envs = config.n_envs or settings.n_envs
    env = make_environment(
        config.env_id,
        n_envs,
        config.seed,
        run_dir / monitor.folder,
        settings.normalize,
        settings.gamma,
        vec_env=config.vec_env,
        env_kwargs=settings.zoo.get("env_kwargs"),
    )
    kwargs = with_integers(cls, settings.kwargs)
    # recorded before construction: SB3 adds its own keys to the policy_kwargs it is given (use_sde, n_critics)
    hyperparams = {key: to_json_value(value) for key, value in {**settings.zoo, **kwargs}.items()}
    where = f"the hyperparameters ({settings.source})"
    model = build_model(
        metadata["algo"], cls, env, settings.zoo, kwargs, config.seed, config.device, config.verbose, where
    )
    run = {
        **metadata,
        "seed": config.seed,
        "n_envs": n_envs,
        "vec_env": config.vec_env,
        "timesteps": config.timesteps or settings.n_timesteps,
        "hyperparams_source": settings.source,
        "hyperparams": hyperparams,
        "settings_digest": settings.digest,
        "segments": [{"start": 0, "monitor": monitor.folder}],
    }
    return run, model


def _resume(
    config: TrainConfig,
    run_dir: Path,
    monitor: MonitorLog,
    metadata: dict[str, Any],
    notify: Callable[[str], None],
) -> tuple[dict[str, Any], BaseAlgorithm]:
    """The model, replay buffer, statistics and random states of the newest verified bundle of ``run_dir``, and
    its ``run.json`` content with the new segment."""
    run = runs.read_run_file(run_dir)
    if run.get("algo") not in (None, metadata["algo"]) or run.get("env") not in (None, config.env_id):
        raise UsageError(
            f"run folder {run_dir} holds {run.get('algo')} on {run.get('env')}, "
            f"not {metadata['algo']} on {config.env_id}"
        )
    try:
        bundle, passed_over = checkpoints.newest_valid_bundle(run_dir)
    except CheckpointError as exc:
        raise UsageError(f"{exc}; start a new run instead") from None
    for line in passed_over:
        notify(f"{line}: resuming from the older {bundle.path.name}")
    target = config.timesteps or int(run.get("timesteps", DEFAULT_TIMESTEPS))
    if target <= bundle.steps:
        raise UsageError(
            f"run folder {run_dir} has trained {bundle.steps} of its {target} steps already: "
            f"pass --timesteps N with N > {bundle.steps} to train further"
        )
    monitor.history = list(bundle.manifest.get("monitor", []))
    monitor.start = bundle.steps
    env = make_environment(
        config.env_id,
        int(run.get("n_envs", 1)),
        int(run.get("seed", config.seed)) + 1_000 * monitor.segment,
        run_dir / monitor.folder,
        normalize_stats=bundle.member(checkpoints.NORMALIZATION_MEMBER),
        vec_env=str(run.get("vec_env", "dummy")),
        env_kwargs=run.get("hyperparams", {}).get("env_kwargs"),
    )
    model = checkpoints.load_bundle(bundle, env, config.device, metadata["algo"])
    entry = {"start": bundle.steps, "monitor": monitor.folder, "resumed_from": bundle.path.name}
    return {**run, **metadata, "timesteps": target, "segments": [*run.get("segments", []), entry]}, model


class _PlainProgress(CheckpointCallback):
    """The checkpoints, and the progress bar's stand-in where stdout is a log file (a bar shows there only at the
    end): a plain line at each checkpoint and at most every :data:`PLAIN_PROGRESS_SECONDS` between them."""

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self.first, self.started = self.model.num_timesteps, time.monotonic()
        self.printed = self.started

    def _on_step(self) -> bool:
        if time.monotonic() - self.printed >= PLAIN_PROGRESS_SECONDS:
            self.report()
        return super()._on_step()

    def save_checkpoint(self) -> checkpoints.Bundle:
        bundle = super().save_checkpoint()
        self.report()
        return bundle

    def report(self) -> None:
        """Print steps done of the budget, steps per second and the recent mean episode return."""
        self.printed, steps, episodes = time.monotonic(), self.model.num_timesteps, self.model.ep_info_buffer
        rate = (steps - self.first) / max(self.printed - self.started, 1e-9)
        ret = f", recent mean return {np.mean([e['r'] for e in episodes]):.2f}" if episodes else ""
        print(f"steps {steps}/{self.model._total_timesteps}, {rate:.0f} steps/s{ret}", flush=True)


def _learn(
    config: TrainConfig,
    run_dir: Path,
    run: dict[str, Any],
    model: BaseAlgorithm,
    monitor: MonitorLog,
    callbacks: list[BaseCallback],
) -> TrainResult:
    """Train the model to the run's budget with checkpoints (and evaluations); save the model, plot the curve."""
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger, TensorBoardOutputFormat

    metadata, target = {key: run[key] for key in ("algo", "env", "plugin")}, int(run["timesteps"])
    progress = f"progress_{monitor.segment}.csv" if monitor.segment else "progress.csv"
    run["segments"][-1]["progress"] = progress
    runs.write_run_file(run_dir, run)
    formats: list[KVWriter] = [CSVOutputFormat(str(run_dir / progress))]
    if config.tensorboard:
        formats.append(TensorBoardOutputFormat(str(run_dir)))
    model.set_logger(Logger(str(run_dir), formats))
    plain = config.progress_bar and not sys.stdout.isatty()
    checkpoint_freq = config.checkpoint_freq or max(target // 10, 1)
    saver = (_PlainProgress if plain else CheckpointCallback)(
        run_dir, checkpoint_freq, metadata, monitor, config.keep_checkpoints
    )
    evaluation = None
    if config.eval_freq or config.final_eval_episodes:
        evaluation = PeriodicEvaluation(
            metadata,
            run["seed"],
            config.eval_freq or target,
            config.eval_episodes,
            run_dir,
            target,
            config.final_eval_episodes,
        )
    steps_before, started = model.num_timesteps, time.perf_counter()
    try:
        model.learn(
            target - model.num_timesteps,
            callback=CallbackList([saver, *([evaluation] if evaluation else []), *callbacks]),
            progress_bar=config.progress_bar and not plain,
            reset_num_timesteps=monitor.start == 0,
        )
    except KeyboardInterrupt:
        if monitor.start == model.num_timesteps == 0:
            raise TrainingInterrupted("interrupted before the first environment step: nothing was saved") from None
        _record_segment(run_dir, run, model.num_timesteps, time.perf_counter() - started)
        with checkpoints.interrupts_deferred():  # a second Ctrl-C waits for the checkpoint, then is dropped
            try:
                bundle = checkpoints.write_bundle(model, run_dir, metadata, monitor, config.keep_checkpoints)
            except Exception as exc:
                failed = f"saving a checkpoint failed ({type(exc).__name__}: {exc})"
                raise TrainingInterrupted(f"interrupted; {failed}; {_what_is_kept(run_dir)}") from None
        saved = f"checkpoint {bundle.path.name} saved; continue with --resume --out {run_dir}"
        raise TrainingInterrupted(f"interrupted at step {bundle.steps}: {saved}", saved_at=bundle.steps) from None
    except Exception as exc:
        # a NonFiniteError's message names the quantity and the step already
        where = "" if isinstance(exc, NonFiniteError) else f" at step {model.num_timesteps}: {type(exc).__name__}"
        stopped = f"training of {metadata['algo']} stopped{where}: {str(exc) or type(exc).__name__}"
        raise UsageError(f"{stopped}; {_what_is_kept(run_dir)}") from exc
    else:
        # SB3 writes its table every few episodes or rollouts: values recorded since its last row would be lost
        if model.logger.name_to_value:
            model.logger.record("time/total_timesteps", model.num_timesteps)
            model.logger.dump(step=model.num_timesteps)
    finally:
        model.logger.close()
    seconds = time.perf_counter() - started
    _record_segment(run_dir, run, model.num_timesteps, seconds)
    finished = model.num_timesteps >= target
    if finished:  # the final model (and its statistics), atomically
        loading.save(model, run_dir / runs.MODEL_FILE, metadata)
        normalizer = model.get_vec_normalize_env()
        if normalizer is not None:
            loading.save_normalization(normalizer, run_dir / checkpoints.NORMALIZATION_MEMBER)
    curve = evaluation.evaluations.curve() if evaluation else []
    points = runs.curve_points(run_dir, monitor.snapshot(run_dir))
    model.get_env().close()  # type: ignore[union-attr]
    return TrainResult(
        run_dir,
        run_dir / runs.MODEL_FILE if finished else None,
        model.num_timesteps,
        runs.plot_learning_curve(run_dir, points, f"{metadata['algo']} on {metadata['env']}", curve),
        finished,
        curve,
        evaluation.final if evaluation else None,
        max(seconds - (evaluation.eval_seconds if evaluation else 0.0), 1e-9),
        model.num_timesteps - steps_before,
    )


def _what_is_kept(run_dir: Path) -> str:
    """How a stopped run goes on: from its newest committed checkpoint, when it has one."""
    kept = checkpoints.committed_bundles(run_dir)
    if not kept:
        return "nothing was saved"
    return f"the run keeps its checkpoint {kept[0].name}: continue with --resume --out {run_dir}"


def _record_segment(run_dir: Path, run: dict[str, Any], steps: int, seconds: float) -> None:
    """Note in ``run.json`` where the current segment ended, how long it took and with how many torch threads."""
    import torch as th

    run["segments"][-1].update({"end": steps, "seconds": round(seconds, 3), "threads": th.get_num_threads()})
    runs.write_run_file(run_dir, run)

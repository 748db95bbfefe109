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
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.vec_env import VecEnv

from sbx_lecture import checkpoints, factory, loading, runs
from sbx_lecture.checkpoints import CheckpointCallback, Segment
from sbx_lecture.evaluation import PeriodicEvaluation
from sbx_lecture.factory import UsageError, build_model, make_environment, resolve_algorithm  # imported from here too
from sbx_lecture.hyperparams import HyperparameterError, to_json_value
from sbx_lecture.infra.files import write_json
from sbx_lecture.infra.finite import NonFiniteError
from sbx_lecture.infra.validation import InvalidValueError, one_line
from sbx_lecture.registry import RegistryError
from sbx_lecture.zoo_config import DEFAULT_TIMESTEPS, ZooConfigError, zoo_settings

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
    runs.RunFolderError,
    checkpoints.CheckpointError,
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
    counts = ("timesteps", "n_envs", "checkpoint_freq", "eval_freq", "eval_episodes")
    factory.check_run_options(config.seed, config.device, **{name: getattr(config, name) for name in counts})
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
    factory.check_environment(config.env_id)
    metadata = {"algo": spec.name, "env": config.env_id, "plugin": spec.origin}
    if config.resume == RESUME_IF_POSSIBLE and config.out is None:
        raise UsageError("resuming if possible needs the run folder: pass --out")
    run_dir, created = runs.choose_run_dir(config.out, spec.name, config.env_id, config.resume is True)
    with runs.run_lock(run_dir):
        verified = (checkpoints.verify_bundle(path) for path in checkpoints.committed_bundles(run_dir))
        auto = config.resume == RESUME_IF_POSSIBLE
        resuming = config.resume is True or (auto and any(isinstance(b, checkpoints.Bundle) for b in verified))
        if auto and not resuming:
            runs.clear_folder(run_dir)  # what a run that never committed a checkpoint left
        elif not resuming:
            runs.require_empty(run_dir)  # a new run never mixes with old files
        segment = Segment(run_dir, metadata, keep=config.keep_checkpoints)
        run: dict[str, Any] | None = None  # the run's record, once start-up is over
        try:
            runs.remove_stale(run_dir)
            run, model = _resume(config, segment, notify or warnings.warn) if resuming else _start(config, cls, segment)
            return _learn(config, segment, run, model, callbacks or [])
        except BaseException as exc:
            if run is None:  # no log of a segment that never ran
                shutil.rmtree(run_dir / segment.folder, ignore_errors=True)
            if not resuming and not checkpoints.committed_bundles(run_dir):  # a new run that saved nothing leaves none
                runs.discard_folder(run_dir, created)
            if run is None and isinstance(exc, KeyboardInterrupt):
                raise TrainingInterrupted("interrupted during start-up, before training: nothing was saved") from None
            raise


def _start(config: TrainConfig, cls: type[BaseAlgorithm], segment: Segment) -> tuple[dict[str, Any], BaseAlgorithm]:
    """A fresh model on a new environment, and the new run's ``run.json`` content."""
    settings = zoo_settings(segment.metadata["algo"], config.env_id, config.hyperparams, config.conf_file)
    kwargs = factory.with_integers(cls, settings.kwargs)
    run = {
        **segment.metadata,
        "seed": config.seed,
        "n_envs": config.n_envs or settings.n_envs,
        "vec_env": config.vec_env,
        "timesteps": config.timesteps or settings.n_timesteps,
        "hyperparams_source": settings.source,
        # recorded before construction: SB3 adds its own keys to the policy_kwargs it is given (use_sde, n_critics)
        "hyperparams": {key: to_json_value(value) for key, value in {**settings.zoo, **kwargs}.items()},
        "settings_digest": settings.digest,
        "segments": [{"start": 0, "monitor": segment.folder}],
    }
    zoo = settings.zoo
    env = _environment(run, segment, zoo.get("env_kwargs"), normalize=settings.normalize, gamma=settings.gamma)
    where = f"the hyperparameters ({settings.source})"
    return run, build_model(run["algo"], cls, env, zoo, kwargs, config.seed, config.device, config.verbose, where)


def _resume(
    config: TrainConfig, segment: Segment, notify: Callable[[str], None]
) -> tuple[dict[str, Any], BaseAlgorithm]:
    """The model, replay buffer, statistics and random states of the newest verified bundle of the run, and its
    ``run.json`` content with the new segment."""
    run_dir, algo = segment.run_dir, segment.metadata["algo"]
    run = {"seed": config.seed, "n_envs": 1, "vec_env": "dummy", "hyperparams": {}, **runs.read_run_file(run_dir)}
    if run.get("algo") not in (None, algo) or run.get("env") not in (None, config.env_id):
        raise UsageError(
            f"run folder {run_dir} holds {run.get('algo')} on {run.get('env')}, not {algo} on {config.env_id}"
        )
    bundle, passed_over = checkpoints.newest_valid_bundle(run_dir)
    for line in passed_over:
        notify(f"{line}: resuming from the older {bundle.path.name}")
    target = config.timesteps or int(run.get("timesteps", DEFAULT_TIMESTEPS))
    if target <= bundle.steps:
        raise UsageError(
            f"run folder {run_dir} has trained {bundle.steps} of its {target} steps already: "
            f"pass --timesteps N with N > {bundle.steps} to train further"
        )
    segment.history = list(bundle.manifest.get("monitor", []))
    segment.start = bundle.steps
    env = _environment(run, segment, run["hyperparams"].get("env_kwargs"))
    entry = {"start": bundle.steps, "monitor": segment.folder, "resumed_from": bundle.path.name}
    run = {**run, **segment.metadata, "timesteps": target, "segments": [*run.get("segments", []), entry]}
    return run, checkpoints.load_bundle(bundle, env, config.device, algo)


def _environment(run: dict[str, Any], segment: Segment, env_kwargs: Any, **normalization: Any) -> VecEnv:
    """The run's training environments, logging into the segment's Monitor folder; each segment draws new seeds
    (a resumed segment does not replay the episodes of the one before)."""
    seed = int(run["seed"]) + 1_000 * segment.number
    folder = segment.run_dir / segment.folder
    return make_environment(
        run["env"], int(run["n_envs"]), seed, folder, vec_env=run["vec_env"], env_kwargs=env_kwargs, **normalization
    )


class _PlainProgress(CheckpointCallback):
    """The checkpoints, and the progress bar's stand-in where stdout is a log file (a bar shows there only at the
    end): a plain line at each checkpoint and at most every :data:`PLAIN_PROGRESS_SECONDS` between them."""

    def _on_training_start(self) -> None:
        self.printed = time.monotonic()

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
        seconds = (time.time_ns() - self.model.start_time) / 1e9  # since ``learn`` started
        rate = (steps - self.segment.start) / max(seconds, 1e-9)
        ret = f", recent mean return {np.mean([e['r'] for e in episodes]):.2f}" if episodes else ""
        print(f"steps {steps}/{self.model._total_timesteps}, {rate:.0f} steps/s{ret}", flush=True)


def _learn(
    config: TrainConfig, segment: Segment, run: dict[str, Any], model: BaseAlgorithm, callbacks: list[BaseCallback]
) -> TrainResult:
    """Train the model to the run's budget with checkpoints (and evaluations); save the model, plot the curve."""
    run_dir, metadata, target = segment.run_dir, segment.metadata, int(run["timesteps"])
    suffix = f"_{segment.number}" if segment.number else ""  # progress.csv, then progress_1.csv, ...
    run["segments"][-1]["progress"] = f"progress{suffix}.csv"
    write_json(run_dir / runs.RUN_FILE, run)
    formats = ["csv", "tensorboard"] if config.tensorboard else ["csv"]
    model.set_logger(Logger(str(run_dir), [make_output_format(name, str(run_dir), suffix) for name in formats]))
    plain = config.progress_bar and not sys.stdout.isatty()
    saver = (_PlainProgress if plain else CheckpointCallback)(segment, config.checkpoint_freq or max(target // 10, 1))
    evaluation = PeriodicEvaluation(
        segment, run, config.eval_freq or target, config.eval_episodes, config.final_eval_episodes
    )
    steps_before, started = model.num_timesteps, time.perf_counter()
    try:
        model.learn(
            target - model.num_timesteps,
            callback=[saver, *([evaluation] if config.eval_freq or config.final_eval_episodes else []), *callbacks],
            progress_bar=config.progress_bar and not plain,
            reset_num_timesteps=segment.start == 0,
        )
    except KeyboardInterrupt:
        if segment.start == model.num_timesteps == 0:
            raise TrainingInterrupted("interrupted before the first environment step: nothing was saved") from None
        checkpoints.drop_unstored_step(model)
        try:  # a second Ctrl-C waits for the checkpoint (then the command ignores it)
            bundle = saver.save_checkpoint()
        except Exception as exc:
            failed = f"saving a checkpoint failed ({type(exc).__name__}: {exc})"
            raise TrainingInterrupted(f"interrupted; {failed}; {_what_is_kept(run_dir)}") from None
        saved = f"checkpoint {bundle.path.name} saved; continue with --resume --out {run_dir}"
        raise TrainingInterrupted(f"interrupted at step {bundle.steps}: {saved}", saved_at=bundle.steps) from None
    except Exception as exc:
        # a NonFiniteError's message names the quantity and the step already
        where = "" if isinstance(exc, NonFiniteError) else f" at step {model.num_timesteps}: {type(exc).__name__}"
        stopped = f"training of {metadata['algo']} stopped{where}: {one_line(exc)}"
        raise UsageError(f"{stopped}; {_what_is_kept(run_dir)}") from exc
    else:
        # SB3 writes its table every few episodes or rollouts: values recorded since its last row would be lost
        if model.logger.name_to_value:
            model.logger.record("time/total_timesteps", model.num_timesteps)
            model.logger.dump(step=model.num_timesteps)
    finally:  # in run.json: where the segment ended, how long it took, with how many torch threads
        model.logger.close()
        seconds = time.perf_counter() - started
        run["segments"][-1].update(end=model.num_timesteps, seconds=round(seconds, 3), threads=th.get_num_threads())
        write_json(run_dir / runs.RUN_FILE, run)
    finished = model.num_timesteps >= target  # then the final model (and its statistics), atomically
    model_path = checkpoints.save_model(model, run_dir, metadata) if finished else None
    curve = evaluation.evaluations.curve()
    points = runs.curve_points(run_dir, segment.snapshot())
    model.get_env().close()  # type: ignore[union-attr]
    return TrainResult(
        run_dir,
        model_path,
        model.num_timesteps,
        runs.plot_learning_curve(run_dir, points, f"{metadata['algo']} on {metadata['env']}", curve),
        finished,
        curve,
        evaluation.final,
        max(seconds - evaluation.eval_seconds, 1e-9),
        model.num_timesteps - steps_before,
    )


def _what_is_kept(run_dir: Path) -> str:
    """How a stopped run goes on: from its newest committed checkpoint, when it has one."""
    kept = checkpoints.committed_bundles(run_dir)
    if not kept:
        return "nothing was saved"
    return f"the run keeps its checkpoint {kept[0].name}: continue with --resume --out {run_dir}"

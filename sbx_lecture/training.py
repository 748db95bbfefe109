"""Training and evaluation behind ``sbx-lecture train`` / ``eval``: environments, hyperparameters, run folders.

Every problem a user can cause raises a subclass of :class:`UsageError` with a one-line message that names the
problem and the fix; the command line prints it and exits with status 2.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sbx_lecture.checkpoints import (
    MODEL_MEMBER,
    NORMALIZATION_MEMBER,
    REPLAY_BUFFER_MEMBER,
    RNG_MEMBER,
    Bundle,
    CheckpointCallback,
    CheckpointError,
    MonitorLog,
    committed_bundles,
    interrupts_deferred,
    newest_valid_bundle,
    remove_stale_bundles,
    replay_buffer_rows,
    restore_rng_states,
    verify_bundle,
    write_bundle,
)
from sbx_lecture.evaluation import PeriodicEvaluation
from sbx_lecture.hyperparams import HyperparameterError, to_json_value
from sbx_lecture.infra.finite import NonFiniteError, assert_finite_parameters
from sbx_lecture.infra.validation import InvalidValueError, is_action_space_error, require_integer
from sbx_lecture.loading import ModelFileError, check_model_file, read_model_metadata
from sbx_lecture.plugins import get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec, RegistryError
from sbx_lecture.runs import (
    CHECKPOINT_DIR,
    LOCK_FILE,
    MODEL_FILE,
    RunFolderError,
    clear_folder,
    curve_points,
    is_empty_run_folder,
    plot_learning_curve,
    prepare_folder,
    read_run_file,
    remove_stale,
    run_lock,
    segment_folder,
    write_run_file,
)
from sbx_lecture.zoo_config import DEFAULT_TIMESTEPS, ZooConfigError, zoo_settings

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecEnv

DEFAULT_ALGORITHM = "tnpg"
DEFAULT_ENVIRONMENT = "Pendulum-v1"
#: Seconds between the plain progress lines ``train`` prints instead of the bar when stdout is not a terminal.
PLAIN_PROGRESS_SECONDS = 30.0


class UsageError(Exception):
    """A problem in what the user asked for; the message says what is wrong and how to fix it."""


class UnknownEnvironmentError(UsageError):
    """The environment id is not registered in gymnasium."""


class UnsupportedActionSpaceError(UsageError):
    """The algorithm cannot act in the environment's action space."""


class AlgorithmSetupError(UsageError):
    """The algorithm refused its hyperparameters or the environment."""


class NothingToResumeError(UsageError):
    """``--resume`` found no run folder or no checkpoint."""


class TrainingFailedError(UsageError):
    """Training stopped with an error; the run folder keeps its last checkpoint (if it had one)."""


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
    ModelFileError,
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


#: ``TrainConfig.resume`` value that resumes when the run folder has a verified checkpoint and starts afresh otherwise.
RESUME_IF_POSSIBLE = "auto"
#: Seed offset of the evaluation environment, so that it never replays the training episodes.
EVAL_SEED_OFFSET = 10_000
VEC_ENV_CLASSES = ("dummy", "subproc")


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


def resolve_algorithm(name: str) -> tuple[AlgorithmSpec, type[BaseAlgorithm]]:
    """The registry spec and the class of ``name`` (unknown names suggest close ones)."""
    spec = get_plugin_manager().registry.spec(name)
    return spec, spec.load()


def check_environment(env_id: str) -> None:
    """Raise :class:`UnknownEnvironmentError` unless gymnasium knows ``env_id``."""
    import gymnasium as gym

    import sbx_lecture.envs  # noqa: F401  (registers the lecture's environments)

    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        known = list(gym.registry)
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownEnvironmentError(f"unknown environment {env_id!r} ({exc}){hint}") from None


def constructor_arguments(cls: type) -> set[str] | None:
    """Keyword arguments ``cls(...)`` accepts (``None`` if it takes ``**kwargs`` and so accepts anything)."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {name for name in parameters if name != "env"}


def check_hyperparameters(algo: str, cls: type, hyperparams: dict[str, Any]) -> None:
    """Raise :class:`HyperparameterError` for a key the constructor does not take, suggesting close names."""
    accepted = constructor_arguments(cls)
    if accepted is None:
        return
    for key in hyperparams:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise HyperparameterError(f"algorithm {algo!r} ({cls.__name__}) does not take hyperparameter {key!r}{hint}")


def default_policy(cls: type[BaseAlgorithm], observation_space: Any) -> str:
    """The policy alias to use: MultiInput for dict observations, Cnn for images, Mlp otherwise."""
    from gymnasium import spaces
    from stable_baselines3.common.preprocessing import is_image_space

    aliases = list(getattr(cls, "policy_aliases", {}))
    if isinstance(observation_space, spaces.Dict):
        wanted = "MultiInput"
    elif is_image_space(observation_space):
        wanted = "Cnn"
    else:
        wanted = "Mlp"
    for alias in aliases:
        if alias.startswith(wanted):
            return alias
    return aliases[0] if aliases else "MlpPolicy"


def make_environment(
    env_id: str,
    n_envs: int,
    seed: int,
    monitor_dir: Path | None = None,
    normalize: Any = False,
    gamma: float = 0.99,
    normalize_stats: Path | None = None,
    training: bool = True,
    trusted: bool = False,
    vec_env: str = "dummy",
    env_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """A vectorised ``env_id`` with Monitor files, optionally wrapped in VecNormalize (statistics loaded if given).

    :param monitor_dir: a new folder for the Monitor CSVs (``<rank>.monitor.csv``); each segment of a run gets its
        own (:func:`sbx_lecture.runs.segment_folder`), so no log is ever overwritten
    :param normalize_stats: statistics to load (our ``.npz``, or a pickled ``.pkl`` read without running code)
    :param trusted: let SB3 unpickle ``normalize_stats`` as it is
    :param vec_env: ``dummy`` (environments stepped in this process) or ``subproc`` (one process each)
    :param env_kwargs: keyword arguments of the environment's constructor (the zoo's ``env_kwargs``)
    """
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from sbx_lecture import loading

    check_environment(env_id)
    if vec_env not in VEC_ENV_CLASSES:
        raise InvalidValueError(f"--vec-env must be one of {', '.join(VEC_ENV_CLASSES)}, got {vec_env!r}")
    try:
        env = make_vec_env(
            env_id,
            n_envs=n_envs,
            seed=seed,
            monitor_dir=str(monitor_dir) if monitor_dir is not None else None,
            vec_env_cls=SubprocVecEnv if vec_env == "subproc" else DummyVecEnv,
            env_kwargs=env_kwargs,
        )
    except gym.error.DependencyNotInstalled as exc:
        raise UnknownEnvironmentError(f"environment {env_id!r} needs a missing dependency: {exc}") from None
    except TypeError as exc:
        if not env_kwargs:
            raise
        raise InvalidValueError(f"env_kwargs {env_kwargs!r} do not fit {env_id}: {exc}") from None
    if normalize_stats is not None:
        env = loading.load_normalization(normalize_stats, env, trusted=trusted)
        env.training = training
        if not training:
            env.norm_reward = False
    elif normalize:
        from stable_baselines3.common.vec_env import VecNormalize

        options = normalize if isinstance(normalize, dict) else {}
        env = VecNormalize(env, gamma=gamma, **options)
    return env


def action_noise_from_zoo(zoo: dict[str, Any], env: VecEnv) -> Any:
    """The zoo's ``noise_type``/``noise_std`` as an SB3 action-noise object (``None`` without them)."""
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    noise_type = zoo.get("noise_type")
    if noise_type is None:
        return None
    n_actions = int(np.prod(env.action_space.shape or (1,)))
    std = float(zoo.get("noise_std", 0.1)) * np.ones(n_actions)
    if "normal" in noise_type:
        return NormalActionNoise(mean=np.zeros(n_actions), sigma=std)
    if "ornstein-uhlenbeck" in noise_type:
        return OrnsteinUhlenbeckActionNoise(mean=np.zeros(n_actions), sigma=std)
    raise HyperparameterError(f"unknown noise_type {noise_type!r}: use 'normal' or 'ornstein-uhlenbeck'")


def build_model(
    algo: str,
    cls: type[BaseAlgorithm],
    env: VecEnv,
    zoo: dict[str, Any],
    kwargs: dict[str, Any],
    seed: int,
    device: str = "auto",
    verbose: int = 0,
) -> BaseAlgorithm:
    """Construct the algorithm, turning a refused action space or hyperparameter into a :class:`UsageError`."""
    policy = zoo.get("policy") or default_policy(cls, env.observation_space)
    noise = action_noise_from_zoo(zoo, env)
    if noise is not None:
        kwargs = {"action_noise": noise, **kwargs}
    check_hyperparameters(algo, cls, kwargs)
    try:
        return cls(policy, env, seed=seed, device=device, verbose=verbose, **kwargs)
    except MemoryError:
        raise AlgorithmSetupError(
            f"not enough memory to create {algo!r} with these settings: lower buffer_size (or the network sizes)"
        ) from None
    except (AssertionError, ValueError, TypeError, KeyError, ArithmeticError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if is_action_space_error(exc):
            raise UnsupportedActionSpaceError(
                f"algorithm {algo!r} does not support the action space {env.action_space} of this environment: "
                f"{message}"
            ) from exc
        raise AlgorithmSetupError(f"cannot create {algo!r} ({cls.__name__}) with these settings: {message}") from exc


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def new_run_dir(root: Path, algo: str, env_id: str) -> Path:
    """``root/<algo>_<env>_<k>`` with the next free ``k``, created now (two commands never get the same one)."""
    stem = f"{algo}_{_sanitize(env_id)}"
    prepare_folder(root)
    while True:
        taken = [int(p.name.rsplit("_", 1)[1]) for p in root.glob(f"{stem}_*") if p.name.rsplit("_", 1)[1].isdigit()]
        candidate = root / f"{stem}_{max(taken, default=0) + 1}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunFolderError(f"cannot create a run folder in {root} ({exc.strerror}): pass --out DIR") from None
        return candidate


def latest_run_dir(root: Path, algo: str, env_id: str) -> Path | None:
    """The most recent ``root/<algo>_<env>_<k>``."""
    stem = f"{algo}_{_sanitize(env_id)}"
    runs = [(int(p.name.rsplit("_", 1)[1]), p) for p in root.glob(f"{stem}_*") if p.name.rsplit("_", 1)[1].isdigit()]
    return max(runs)[1] if runs else None


def check_train_config(config: TrainConfig) -> None:
    """Refuse values ``train`` would otherwise reinterpret or crash on (one line each)."""
    if config.timesteps is not None:
        require_integer("--timesteps", config.timesteps, 1)
    require_integer("--seed", config.seed, 0)
    if config.seed >= 2**32:
        raise InvalidValueError(f"--seed must be below 2**32, got {config.seed}")
    if config.n_envs is not None:
        require_integer("--n-envs", config.n_envs, 1)
    if config.checkpoint_freq is not None:
        require_integer("--checkpoint-freq", config.checkpoint_freq, 1)
    check_device(config.device)
    require_integer("--eval-episodes", config.eval_episodes, 1)
    if config.eval_freq is not None:
        require_integer("--eval-freq", config.eval_freq, 1)
    if config.vec_env not in VEC_ENV_CLASSES:
        raise InvalidValueError(f"--vec-env must be one of {', '.join(VEC_ENV_CLASSES)}, got {config.vec_env!r}")
    if config.resume is True and config.hyperparams:
        raise UsageError("--resume continues the saved run with its own hyperparameters: drop the -p options")


def check_device(device: str) -> None:
    """Refuse a torch device name torch does not know (``auto`` is SB3's choice of CUDA when present)."""
    import torch as th

    if device == "auto":
        return
    try:
        chosen = th.device(device)
    except (RuntimeError, ValueError):
        raise InvalidValueError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if chosen.type == "cuda" and (chosen.index or 0) >= th.cuda.device_count():
        found = f"{th.cuda.device_count()} CUDA devices" if th.cuda.is_available() else "no CUDA device"
        raise InvalidValueError(f"--device {device}: this machine has {found}; use --device cpu or auto")
    if chosen.type not in ("cpu", "cuda"):
        raise InvalidValueError(f"--device {device}: SB3 trains on cpu or cuda; use --device cpu, cuda or auto")


@dataclass
class _Session:
    """One segment of a run being trained: its model, budget and where its logs go."""

    run_dir: Path
    model: BaseAlgorithm
    target: int
    monitor: MonitorLog
    progress: str
    metadata: dict[str, Any]
    notices: list[str] = field(default_factory=list)


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
    run_dir, created = _choose_run_dir(config, spec.name)
    discarded = False
    try:
        with run_lock(run_dir):
            resuming = config.resume is True or (config.resume == RESUME_IF_POSSIBLE and _has_bundle(run_dir))
            try:
                return _train_locked(config, resuming, spec, cls, run_dir, notify, callbacks or [])
            except BaseException:
                if not resuming and not committed_bundles(run_dir):
                    clear_folder(run_dir)  # a new run that saved nothing leaves nothing
                    discarded = True
                raise
    finally:
        if discarded:
            with suppress(OSError):
                (run_dir / LOCK_FILE).unlink()
                if created:
                    run_dir.rmdir()


def _has_bundle(run_dir: Path) -> bool:
    try:
        newest_valid_bundle(run_dir)
    except CheckpointError:
        return False
    return True


def _train_locked(
    config: TrainConfig,
    resuming: bool,
    spec: AlgorithmSpec,
    cls: type[BaseAlgorithm],
    run_dir: Path,
    notify: Callable[[str], None] | None,
    callbacks: list[BaseCallback],
) -> TrainResult:
    if config.resume == RESUME_IF_POSSIBLE and not resuming:
        clear_folder(run_dir)  # what a run that never committed a checkpoint left
    elif not resuming and not is_empty_run_folder(run_dir):  # checked again now that the folder is ours
        raise UsageError(f"run folder {run_dir} is not empty: pass --resume to continue it, or another --out")
    remove_stale(run_dir)
    remove_stale_bundles(run_dir)
    try:
        session = _resume(config, spec, cls, run_dir) if resuming else _start(config, spec, cls, run_dir)
    except KeyboardInterrupt:
        raise TrainingInterrupted("interrupted during start-up, before any training: nothing was saved") from None
    for line in session.notices:
        (notify or warnings.warn)(line)
    return _learn(config, session, callbacks)


def _choose_run_dir(config: TrainConfig, algo: str) -> tuple[Path, bool]:
    """The run folder, and whether this call created it."""
    root = Path("runs")
    if config.resume == RESUME_IF_POSSIBLE:
        if config.out is None:
            raise UsageError("resuming if possible needs the run folder: pass --out")
        return config.out, prepare_folder(config.out)
    if config.resume:
        run_dir = config.out or latest_run_dir(root, algo, config.env_id)
        if run_dir is None or not run_dir.is_dir():
            raise NothingToResumeError(
                f"no run folder to resume for {algo} on {config.env_id} (looked for {run_dir or root / (algo + '_*')});"
                " pass --out RUN_DIR or drop --resume"
            )
        return run_dir, False
    if config.out is None:
        return new_run_dir(root, algo, config.env_id), True
    if config.out.is_dir() and not is_empty_run_folder(config.out):
        raise UsageError(f"run folder {config.out} is not empty: pass --resume to continue it, or another --out")
    return config.out, prepare_folder(config.out)


def _progress_name(run_dir: Path, segment: int) -> str:
    """``progress.csv`` for the first segment, ``progress_<k>.csv`` after; never the name of an existing file."""
    name = "progress.csv" if segment == 0 else f"progress_{segment}.csv"
    while (run_dir / name).exists():
        segment += 1
        name = f"progress_{segment}.csv"
    return name


def _logger(run_dir: Path, progress: str, tensorboard: bool) -> Any:
    """The SB3 logger of a segment: its own progress CSV and (optionally) TensorBoard events."""
    from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger, TensorBoardOutputFormat

    formats: list[KVWriter] = [CSVOutputFormat(str(run_dir / progress))]
    if tensorboard:
        formats.append(TensorBoardOutputFormat(str(run_dir)))
    return Logger(str(run_dir), formats)


def _start(config: TrainConfig, spec: AlgorithmSpec, cls: type[BaseAlgorithm], run_dir: Path) -> _Session:
    """Build the environment and a fresh model for a new run; write ``run.json``."""
    settings = zoo_settings(spec.name, config.env_id, config.hyperparams, config.conf_file)
    zoo, kwargs = settings.zoo, settings.kwargs
    n_envs = config.n_envs or int(zoo.get("n_envs", 1))
    target = config.timesteps or int(zoo.get("n_timesteps", DEFAULT_TIMESTEPS))
    monitor = MonitorLog(folder=str(segment_folder(run_dir).relative_to(run_dir)))
    progress = _progress_name(run_dir, 0)
    env = make_environment(
        config.env_id,
        n_envs,
        config.seed,
        run_dir / monitor.folder,
        zoo.get("normalize", False),
        float(kwargs.get("gamma", 0.99)),
        vec_env=config.vec_env,
        env_kwargs=zoo.get("env_kwargs"),
    )
    # recorded before construction: SB3 adds its own keys to the policy_kwargs it is given (use_sde, n_critics)
    hyperparams = {key: to_json_value(value) for key, value in {**zoo, **kwargs}.items()}
    digest = settings.digest
    model = build_model(spec.name, cls, env, zoo, kwargs, config.seed, config.device, config.verbose)
    run = {
        "algo": spec.name,
        "env": config.env_id,
        "seed": config.seed,
        "n_envs": n_envs,
        "vec_env": config.vec_env,
        "timesteps": target,
        "plugin": spec.origin,
        "hyperparams_source": settings.source,
        "hyperparams": hyperparams,
        "settings_digest": digest,
        "segments": [{"start": 0, "monitor": monitor.folder, "progress": progress}],
    }
    write_run_file(run_dir, run)
    metadata = {"algo": spec.name, "env": config.env_id, "plugin": spec.origin}
    return _Session(run_dir, model, target, monitor, progress, metadata)


def _resume(config: TrainConfig, spec: AlgorithmSpec, cls: type[BaseAlgorithm], run_dir: Path) -> _Session:
    """Load the newest verified checkpoint bundle of ``run_dir`` into a new segment of the run."""
    from sbx_lecture import loading

    run = read_run_file(run_dir)
    if run.get("algo") not in (None, spec.name) or run.get("env") not in (None, config.env_id):
        raise UsageError(
            f"run folder {run_dir} holds {run.get('algo')} on {run.get('env')}, not {spec.name} on {config.env_id}"
        )
    try:
        bundle, notices = newest_valid_bundle(run_dir)
    except CheckpointError as exc:
        raise NothingToResumeError(f"{exc}; start a new run instead") from None
    if notices:
        notices = [f"{line}: resuming from the older {bundle.path.name}" for line in notices]
    target = config.timesteps or int(run.get("timesteps", DEFAULT_TIMESTEPS))
    if target <= bundle.steps:
        raise UsageError(
            f"run folder {run_dir} has trained {bundle.steps} of its {target} steps already: "
            f"pass --timesteps N with N > {bundle.steps} to train further"
        )
    segments = list(run.get("segments", []))
    folder = segment_folder(run_dir)
    segment = int(folder.name.split("_")[1])
    monitor = MonitorLog(list(bundle.manifest.get("monitor", [])), bundle.steps, str(folder.relative_to(run_dir)))
    progress = _progress_name(run_dir, segment)
    n_envs = int(run.get("n_envs", 1))
    env = make_environment(
        config.env_id,
        n_envs,
        int(run.get("seed", config.seed)) + 1_000 * segment,
        run_dir / monitor.folder,
        normalize_stats=bundle.member(NORMALIZATION_MEMBER),
        vec_env=str(run.get("vec_env", "dummy")),
        env_kwargs=run.get("hyperparams", {}).get("env_kwargs"),
    )
    metadata = {"algo": spec.name, "env": config.env_id, "plugin": spec.origin}
    model = loading.load(bundle.path / MODEL_MEMBER, env=env, device=config.device, algo=spec.name)
    if model.num_timesteps != bundle.steps:
        raise CheckpointError(
            f"checkpoint {bundle.path} holds a model of {model.num_timesteps} steps, not {bundle.steps}"
        )
    buffer_path = bundle.member(REPLAY_BUFFER_MEMBER)
    if buffer_path is not None:
        loading.load_replay_buffer(model, buffer_path)
        if replay_buffer_rows(model) != bundle.manifest.get("replay_buffer_rows"):
            raise CheckpointError(f"checkpoint {bundle.path}: the replay buffer does not match its manifest")
    restore_rng_states(bundle.path / RNG_MEMBER)
    segments.append(
        {"start": bundle.steps, "monitor": monitor.folder, "progress": progress, "resumed_from": bundle.path.name}
    )
    write_run_file(run_dir, {**run, "timesteps": target, "segments": segments})
    return _Session(run_dir, model, target, monitor, progress, metadata, notices)


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

    def save_checkpoint(self) -> Bundle:
        bundle = super().save_checkpoint()
        self.report()
        return bundle

    def report(self) -> None:
        """Print steps done of the budget, steps per second and the recent mean episode return."""
        self.printed, steps, episodes = time.monotonic(), self.model.num_timesteps, self.model.ep_info_buffer
        rate = (steps - self.first) / max(self.printed - self.started, 1e-9)
        ret = f", recent mean return {np.mean([e['r'] for e in episodes]):.2f}" if episodes else ""
        print(f"steps {steps}/{self.model._total_timesteps}, {rate:.0f} steps/s{ret}", flush=True)


def _learn(config: TrainConfig, session: _Session, callbacks: list[BaseCallback]) -> TrainResult:
    """Train the session's model to its budget with checkpoints (and evaluations); save the model, plot the curve."""
    from stable_baselines3.common.callbacks import CallbackList

    model, run_dir = session.model, session.run_dir
    model.set_logger(_logger(run_dir, session.progress, config.tensorboard))
    plain = config.progress_bar and not sys.stdout.isatty()
    checkpoints = (_PlainProgress if plain else CheckpointCallback)(
        run_dir,
        config.checkpoint_freq or max(session.target // 10, 1),
        session.metadata,
        session.monitor,
        config.keep_checkpoints,
    )
    evaluation = _evaluation(config, session) if config.eval_freq or config.final_eval_episodes else None
    resumed = session.monitor.start > 0 or bool(session.monitor.history)
    steps_before, started = model.num_timesteps, time.perf_counter()
    try:
        model.learn(
            session.target - model.num_timesteps,
            callback=CallbackList([checkpoints, *([evaluation] if evaluation else []), *callbacks]),
            progress_bar=config.progress_bar and not plain,
            reset_num_timesteps=not resumed,
        )
    except KeyboardInterrupt:
        if not resumed and model.num_timesteps == 0:
            raise TrainingInterrupted("interrupted before the first environment step: nothing was saved") from None
        interrupted = _save_after_interrupt(checkpoints, run_dir)
        _record_segment(run_dir, model.num_timesteps, time.perf_counter() - started)
        raise interrupted from None
    except Exception as exc:
        kept = committed_bundles(run_dir)
        where = (
            f"; the run keeps its checkpoint {kept[0].name}: continue with --resume --out {run_dir}"
            if kept
            else "; nothing was saved"
        )
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, NonFiniteError):  # its message names the quantity and the step already
            message = f" at step {model.num_timesteps}: {type(exc).__name__}: {message}"
        else:
            message = f": {message}"
        raise TrainingFailedError(f"training of {session.metadata['algo']} stopped{message}{where}") from exc
    else:
        # SB3 writes its table every few episodes or rollouts: a short run would leave empty logs without this row
        model.logger.record("time/total_timesteps", model.num_timesteps)
        model.logger.dump(step=model.num_timesteps)
    finally:
        model.logger.close()
    eval_seconds = evaluation.eval_seconds if evaluation else 0.0
    learn_seconds = max(time.perf_counter() - started - eval_seconds, 1e-9)
    _record_segment(run_dir, model.num_timesteps, time.perf_counter() - started)
    finished = model.num_timesteps >= session.target
    result = TrainResult(
        run_dir, None, model.num_timesteps, None, finished, [], None, learn_seconds, model.num_timesteps - steps_before
    )
    if evaluation is not None:
        if finished and config.final_eval_episodes:
            result.final = evaluation.evaluate_now(config.final_eval_episodes)[1:]
        result.evaluations = evaluation.evaluations.curve()
        evaluation.eval_env.close()
    if finished:
        result.model_path = _save_final_model(model, run_dir, session.metadata)
    points = curve_points(
        run_dir, session.monitor.history, {"start": session.monitor.start, "folder": session.monitor.folder}
    )
    result.learning_curve = plot_learning_curve(
        run_dir,
        points,
        f"{session.metadata['algo']} on {session.metadata['env']}",
        np.array([(steps, mean) for steps, mean, _ in result.evaluations], dtype=float).reshape(-1, 2),
    )
    final_env = model.get_env()
    if final_env is not None:
        final_env.close()
    return result


def _record_segment(run_dir: Path, steps: int, seconds: float) -> None:
    """Note in ``run.json`` where the current segment ended, how long it took and with how many torch threads."""
    import torch as th

    run = read_run_file(run_dir)
    if run.get("segments"):
        run["segments"][-1].update({"end": steps, "seconds": round(seconds, 3), "threads": th.get_num_threads()})
        write_run_file(run_dir, run)


def _evaluation(config: TrainConfig, session: _Session) -> PeriodicEvaluation:
    """The periodic evaluation of ``--eval-freq``: its own environment, normalised like the training one."""
    from stable_baselines3.common.vec_env import VecNormalize

    from sbx_lecture import loading

    normalizer = session.model.get_vec_normalize_env()
    seed = int(read_run_file(session.run_dir).get("seed", 0)) + EVAL_SEED_OFFSET
    eval_env = make_environment(session.metadata["env"], 1, seed)
    if isinstance(normalizer, VecNormalize):
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=normalizer.gamma)

    def save_best(model: BaseAlgorithm, path: Path) -> None:
        loading.save(model, path, session.metadata)

    return PeriodicEvaluation(
        eval_env,
        config.eval_freq or session.target,
        config.eval_episodes,
        session.run_dir,
        save_best,
        final_at=session.target if config.final_eval_episodes else None,
    )


def _save_final_model(model: BaseAlgorithm, run_dir: Path, metadata: dict[str, Any]) -> Path:
    """``model.zip`` (and ``vecnormalize.npz`` for a normalised environment) in the run folder, atomically."""
    from stable_baselines3.common.vec_env import VecNormalize

    from sbx_lecture import loading

    model_path = run_dir / MODEL_FILE
    loading.save(model, model_path, metadata)
    normalizer = model.get_vec_normalize_env()
    if isinstance(normalizer, VecNormalize):
        loading.save_normalization(normalizer, run_dir / NORMALIZATION_MEMBER)
    return model_path


def _save_after_interrupt(checkpoints: CheckpointCallback, run_dir: Path) -> TrainingInterrupted:
    """Commit a checkpoint after Ctrl-C (a second Ctrl-C waits for it); the exception says what happened."""
    with interrupts_deferred():
        try:
            bundle = write_bundle(
                checkpoints.model, run_dir, checkpoints.metadata, checkpoints.monitor, checkpoints.keep
            )
        except Exception as exc:
            kept = committed_bundles(run_dir)
            older = f"; the older checkpoint {kept[0].name} is intact" if kept else ""
            return TrainingInterrupted(f"interrupted; saving a checkpoint failed ({type(exc).__name__}: {exc}){older}")
    return TrainingInterrupted(
        f"interrupted at step {bundle.steps}: checkpoint {bundle.path.name} saved; "
        f"continue with --resume --out {run_dir}",
        saved_at=bundle.steps,
    )


@dataclass
class EvaluationResult:
    """Mean and standard deviation of the episode return."""

    mean: float
    std: float
    episodes: int
    algo: str
    env_id: str
    normalization: Path | None = None


def find_normalization(model_path: Path, env_id: str) -> Path | None:
    """The normalisation statistics that belong to ``model_path``, wherever our ``train`` or the RL Zoo put them.

    Looked for in order: beside the model (``vecnormalize.npz``, then the zoo's ``vecnormalize.pkl``), in the zoo's
    ``<env_id>/`` folder beside it, inside a checkpoint bundle the model belongs to, and in the run folder's newest
    verified bundle.
    """
    folder = model_path.parent
    candidates = [
        folder / NORMALIZATION_MEMBER,
        folder / "vecnormalize.pkl",
        folder / env_id / "vecnormalize.pkl",
    ]
    found = next((path for path in candidates if path.is_file()), None)
    if found is not None:
        return found
    if folder.parent.name == CHECKPOINT_DIR or model_path.name == MODEL_MEMBER:
        checked = verify_bundle(folder)
        if isinstance(checked, Bundle):
            return checked.member(NORMALIZATION_MEMBER)
    if (folder / CHECKPOINT_DIR).is_dir():
        with suppress(CheckpointError):
            return newest_valid_bundle(folder)[0].member(NORMALIZATION_MEMBER)
    return None


def evaluate(
    model_path: Path,
    env_id: str | None = None,
    episodes: int = 10,
    algo: str | None = None,
    deterministic: bool = True,
    seed: int = 0,
    *,
    trusted: bool = False,
    device: str = "auto",
) -> EvaluationResult:
    """Load ``model_path`` safely and run it for ``episodes`` episodes (algorithm and env from the model if not given).

    Normalisation statistics saved with the model (see :func:`find_normalization`) are applied; a model whose
    weights hold NaN or infinities is refused.

    :param trusted: allow unpickling what the model file (or its statistics) would need
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    from sbx_lecture import loading

    require_integer("--episodes", episodes, 1)
    require_integer("--seed", seed, 0)
    check_device(device)
    check_model_file(model_path)
    metadata = read_model_metadata(model_path)
    run: dict[str, Any] = {}
    for folder in (model_path.parent, model_path.parent.parent, model_path.parent.parent.parent):
        with suppress(RunFolderError):
            run = run or read_run_file(folder)
    algo = algo or metadata.get("algo") or run.get("algo")
    env_id = env_id or metadata.get("env") or run.get("env")
    if algo is None:
        raise UsageError(f"cannot tell which algorithm saved {model_path}: pass --algo NAME")
    if env_id is None:
        raise UsageError(f"cannot tell which environment {model_path} was trained on: pass the ENV argument")
    spec, _ = resolve_algorithm(algo)
    stats = find_normalization(model_path, env_id)
    env = make_environment(env_id, 1, seed, normalize_stats=stats, training=False, trusted=trusted)
    try:
        model = loading.load(model_path, env=env, trusted=trusted, device=device, algo=spec.name)
        assert_finite_parameters(
            model, hint=f"{model_path} cannot act; use an earlier checkpoint from its run folder's checkpoints/"
        )
        mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic)
    finally:
        env.close()
    return EvaluationResult(float(mean), float(std), episodes, spec.name, env_id, stats)  # type: ignore[arg-type]

"""Training and evaluation behind ``sbx-lecture train`` / ``eval``: environments, hyperparameters, run folders.

Every problem a user can cause raises a subclass of :class:`UsageError` with a one-line message that names the
problem and the fix; the command line prints it and exits with status 2.
"""

from __future__ import annotations

import difflib
import inspect
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbx_lecture.hyperparams import HyperparameterError, parse_value
from sbx_lecture.plugins import get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec, UnknownAlgorithmError
from sbx_lecture.runs import (
    CHECKPOINT_DIR,
    MODEL_FILE,
    VECNORMALIZE_FILE,
    AtomicCheckpointCallback,
    ModelFileError,
    check_model_file,
    latest_checkpoint,
    load_model,
    plot_learning_curve,
    read_model_metadata,
    read_run_file,
    restore_training_state,
    save_model,
    write_run_file,
)

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

DEFAULT_ALGORITHM = "tnpg"
DEFAULT_ENVIRONMENT = "Pendulum-v1"
DEFAULT_TIMESTEPS = 100_000
#: rl-zoo keys that ``train`` understands itself; they are not constructor arguments.
ZOO_KEYS = ("policy", "n_timesteps", "n_envs", "normalize", "noise_type", "noise_std")
#: rl-zoo keys that only the zoo itself applies.
#: Keys whose values are names, kept as text rather than parsed (``noise_type: ornstein-uhlenbeck``).
TEXT_KEYS = ("policy", "noise_type")
ZOO_ONLY_KEYS = ("frame_stack", "env_wrapper", "callback", "vec_env_wrapper", "normalize_kwargs", "monitor_kwargs")


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


#: Exceptions the command line reports as one line with exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (
    UsageError,
    UnknownAlgorithmError,
    HyperparameterError,
    ModelFileError,
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
    resume: bool = False
    checkpoint_freq: int | None = None
    progress_bar: bool = True
    device: str = "auto"
    verbose: int = 0


@dataclass
class TrainResult:
    """Where a run was written and how far it got."""

    run_dir: Path
    model_path: Path
    num_timesteps: int
    learning_curve: Path | None


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


def zoo_defaults(spec: AlgorithmSpec, env_id: str) -> dict[str, Any]:
    """The algorithm's registered rl-zoo entry for ``env_id`` (else its ``default`` entry), or ``{}``."""
    location = spec.resolve_zoo_hyperparams()
    if location is None or not Path(location).exists():
        return {}
    import yaml

    with open(location) as handle:
        entries = yaml.safe_load(handle) or {}
    return dict(entries.get(env_id) or entries.get("default") or {})


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


def prepare_hyperparams(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split zoo-style ``raw`` values into (zoo keys, constructor keyword arguments), parsing text values."""
    zoo: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key not in TEXT_KEYS:
            value = parse_value(value)
        if key in ZOO_KEYS:
            zoo[key] = value
        elif key in ZOO_ONLY_KEYS:
            warnings.warn(f"hyperparameter {key!r} is applied by the RL Zoo only: use `sbx-lecture zoo train`")
        else:
            kwargs[key] = value
    return zoo, kwargs


def make_environment(
    env_id: str,
    n_envs: int,
    seed: int,
    monitor_dir: Path | None = None,
    normalize: Any = False,
    gamma: float = 0.99,
    normalize_stats: Path | None = None,
    training: bool = True,
    append_monitor: bool = False,
) -> VecEnv:
    """A vectorised ``env_id`` with Monitor files, optionally wrapped in VecNormalize (stats loaded if given).

    ``append_monitor`` keeps the Monitor files of an earlier segment of the run and appends to them.
    """
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    check_environment(env_id)
    try:
        env = make_vec_env(
            env_id,
            n_envs=n_envs,
            seed=seed,
            monitor_dir=str(monitor_dir) if monitor_dir is not None else None,
            monitor_kwargs={"override_existing": not append_monitor},
        )
    except gym.error.DependencyNotInstalled as exc:
        raise UnknownEnvironmentError(f"environment {env_id!r} needs a missing dependency: {exc}") from None
    if normalize_stats is not None and normalize_stats.exists():
        env = VecNormalize.load(str(normalize_stats), env)
        env.training = training
        if not training:
            env.norm_reward = False
    elif normalize:
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


def _is_action_space_error(exc: Exception) -> bool:
    return bool(re.search(r"action[ _]space", str(exc), flags=re.IGNORECASE))


def build_model(
    algo: str, cls: type[BaseAlgorithm], env: VecEnv, zoo: dict[str, Any], kwargs: dict[str, Any], seed: int,
    device: str = "auto", verbose: int = 0,
) -> BaseAlgorithm:
    """Construct the algorithm, turning a refused action space or hyperparameter into a :class:`UsageError`."""
    policy = zoo.get("policy") or default_policy(cls, env.observation_space)
    noise = action_noise_from_zoo(zoo, env)
    if noise is not None:
        kwargs = {"action_noise": noise, **kwargs}
    check_hyperparameters(algo, cls, kwargs)
    try:
        return cls(policy, env, seed=seed, device=device, verbose=verbose, **kwargs)
    except (AssertionError, ValueError, TypeError, KeyError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if _is_action_space_error(exc):
            raise UnsupportedActionSpaceError(
                f"algorithm {algo!r} does not support the action space {env.action_space} of this environment: "
                f"{message}"
            ) from exc
        raise AlgorithmSetupError(f"cannot create {algo!r} ({cls.__name__}) with these settings: {message}") from exc


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def new_run_dir(root: Path, algo: str, env_id: str) -> Path:
    """``root/<algo>_<env>_<k>`` with the next free ``k``."""
    stem = f"{algo}_{_sanitize(env_id)}"
    taken = [int(p.name.rsplit("_", 1)[1]) for p in root.glob(f"{stem}_*") if p.name.rsplit("_", 1)[1].isdigit()]
    return root / f"{stem}_{max(taken, default=0) + 1}"


def latest_run_dir(root: Path, algo: str, env_id: str) -> Path | None:
    """The most recent ``root/<algo>_<env>_<k>``."""
    stem = f"{algo}_{_sanitize(env_id)}"
    runs = [(int(p.name.rsplit("_", 1)[1]), p) for p in root.glob(f"{stem}_*") if p.name.rsplit("_", 1)[1].isdigit()]
    return max(runs)[1] if runs else None


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a run as described by ``config``; see :mod:`sbx_lecture.runs` for the run folder."""
    from stable_baselines3.common.logger import configure

    spec, cls = resolve_algorithm(config.algo)
    algo = spec.name
    check_environment(config.env_id)
    run_dir = _choose_run_dir(config, algo)
    if config.resume:
        model, target = _resume(config, cls, run_dir)
    else:
        try:
            model, target = _start(config, spec, cls, run_dir)
        except Exception:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was trained: leave no half-made run folder
            raise
    metadata = {"algo": algo, "env": config.env_id, "plugin": spec.origin}
    model.set_logger(configure(str(run_dir), ["csv", "tensorboard"]))
    remaining = target - model.num_timesteps
    checkpoints = AtomicCheckpointCallback(
        run_dir, config.checkpoint_freq or max(target // 10, 1), metadata
    )
    if remaining > 0:
        try:
            model.learn(
                remaining, callback=checkpoints, progress_bar=config.progress_bar,
                reset_num_timesteps=not config.resume,
            )
        except KeyboardInterrupt:
            checkpoints.save_checkpoint()
            raise
    model_path = run_dir / MODEL_FILE
    save_model(model, model_path, metadata)
    curve = plot_learning_curve(run_dir, f"{algo} on {config.env_id}")
    final_env = model.get_env()
    if final_env is not None:
        final_env.close()
    return TrainResult(run_dir, model_path, model.num_timesteps, curve)


def _start(
    config: TrainConfig, spec: AlgorithmSpec, cls: type[BaseAlgorithm], run_dir: Path
) -> tuple[BaseAlgorithm, int]:
    """Build the environment and a fresh model for a new run; write ``run.json``."""
    raw = {**zoo_defaults(spec, config.env_id), **config.hyperparams}
    zoo, kwargs = prepare_hyperparams(raw)
    n_envs = config.n_envs or int(zoo.get("n_envs", 1))
    target = config.timesteps or int(zoo.get("n_timesteps", DEFAULT_TIMESTEPS))
    env = make_environment(
        config.env_id, n_envs, config.seed, run_dir / "monitor", zoo.get("normalize", False),
        float(kwargs.get("gamma", 0.99)),
    )
    model = build_model(spec.name, cls, env, zoo, kwargs, config.seed, config.device, config.verbose)
    run = {
        "algo": spec.name, "env": config.env_id, "seed": config.seed, "n_envs": n_envs, "timesteps": target,
        "hyperparams": {key: repr(value) for key, value in raw.items()},
    }
    write_run_file(run_dir, run)
    return model, target


def _choose_run_dir(config: TrainConfig, algo: str) -> Path:
    root = Path("runs")
    if config.resume:
        run_dir = config.out or latest_run_dir(root, algo, config.env_id)
        if run_dir is None or not run_dir.exists():
            raise NothingToResumeError(
                f"no run folder to resume for {algo} on {config.env_id} (looked for {run_dir or root / (algo + '_*')});"
                " pass --out RUN_DIR or drop --resume"
            )
        return run_dir
    if config.out is not None:
        if config.out.exists() and any(config.out.iterdir()):
            raise UsageError(f"run folder {config.out} is not empty: pass --resume to continue it, or another --out")
        config.out.mkdir(parents=True, exist_ok=True)
        return config.out
    run_dir = new_run_dir(root, algo, config.env_id)
    run_dir.mkdir(parents=True)
    return run_dir


def _resume(config: TrainConfig, cls: type[BaseAlgorithm], run_dir: Path) -> tuple[BaseAlgorithm, int]:
    if config.hyperparams:
        raise UsageError("--resume continues the saved run with its own hyperparameters: drop the -p options")
    run = read_run_file(run_dir)
    found = latest_checkpoint(run_dir)
    if found is None:
        raise NothingToResumeError(f"run folder {run_dir} has no checkpoint in {CHECKPOINT_DIR}/ to resume from")
    path, _ = found
    if run.get("algo") not in (None, config.algo) or run.get("env") not in (None, config.env_id):
        raise UsageError(
            f"run folder {run_dir} holds {run.get('algo')} on {run.get('env')}, not {config.algo} on {config.env_id}"
        )
    n_envs = int(run.get("n_envs", config.n_envs or 1))
    env = make_environment(
        config.env_id, n_envs, config.seed + 1_000, run_dir / "monitor",
        normalize_stats=run_dir / CHECKPOINT_DIR / VECNORMALIZE_FILE, append_monitor=True,
    )
    model = load_model(path, cls, env=env, device=config.device)
    restore_training_state(model, run_dir / CHECKPOINT_DIR)
    progress = run_dir / "progress.csv"
    if progress.exists():
        progress.rename(run_dir / f"progress-{model.num_timesteps}.csv")
    target = config.timesteps or int(run.get("timesteps", DEFAULT_TIMESTEPS))
    return model, target


@dataclass
class EvaluationResult:
    """Mean and standard deviation of the episode return."""

    mean: float
    std: float
    episodes: int
    algo: str
    env_id: str


def evaluate(
    model_path: Path, env_id: str | None = None, episodes: int = 10, algo: str | None = None,
    deterministic: bool = True, seed: int = 0,
) -> EvaluationResult:
    """Load ``model_path`` and run it for ``episodes`` episodes (algorithm and env from the model if not given)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    check_model_file(model_path)
    metadata = read_model_metadata(model_path)
    run = read_run_file(model_path.parent) or read_run_file(model_path.parent.parent)
    algo = algo or metadata.get("algo") or run.get("algo")
    env_id = env_id or metadata.get("env") or run.get("env")
    if algo is None:
        raise UsageError(f"cannot tell which algorithm saved {model_path}: pass --algo NAME")
    if env_id is None:
        raise UsageError(f"cannot tell which environment {model_path} was trained on: pass the ENV argument")
    if episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {episodes}")
    _, cls = resolve_algorithm(algo)
    stats = model_path.parent / VECNORMALIZE_FILE
    if not stats.exists():
        stats = model_path.parent / CHECKPOINT_DIR / VECNORMALIZE_FILE
    env = make_environment(env_id, 1, seed, normalize_stats=stats, training=False)
    model = load_model(model_path, cls, env=env)
    mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic)
    env.close()
    return EvaluationResult(float(mean), float(std), episodes, algo, env_id)  # type: ignore[arg-type]

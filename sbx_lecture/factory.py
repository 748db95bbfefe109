"""What a run is made of: the algorithm class by its registry name, the vectorised environment, the model.

Shared by ``train``, ``eval``, the bench and the sweep. Every problem a user can cause here is a one-line
:class:`UsageError` (or another error the command line reports the same way) that names the problem and the fix.
"""

from __future__ import annotations

import inspect
import re
import traceback
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from sbx_lecture.hyperparams import HyperparameterError, check_hyperparameters, to_json_value
from sbx_lecture.infra.validation import InvalidValueError, is_action_space_error, require_integer
from sbx_lecture.plugins import get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec, UnknownAlgorithmError, did_you_mean


class UsageError(Exception):
    """A problem in what the user asked for; the message says what is wrong and how to fix it."""


#: Upper bounds of the counts the command line takes, far above any real run: a larger value is a slip of the keyboard
#: that would fail deep inside SB3, numpy or the operating system. Step counts stay below 2**53, where the floats that
#: SB3 computes its progress with stop being exact; every environment is an object in this process or a process of
#: its own; 100 000 episodes pin a mean return far more closely than its noise; torch crashes at 100 000 threads.
COUNT_LIMITS = {
    **dict.fromkeys(("--timesteps", "--checkpoint-freq", "--eval-freq"), 2**53 - 1),
    **dict.fromkeys(("--n-envs", "--threads", "--workers"), 1024),
    **dict.fromkeys(("--eval-episodes", "--episodes"), 100_000),
}


def require_count(option: str, value: Any) -> int:
    """``value`` as a positive ``int`` no larger than the bound :data:`COUNT_LIMITS` gives ``option``."""
    number = int(require_integer(option, value, 1))
    if number > COUNT_LIMITS[option]:
        raise InvalidValueError(f"{option} must be at most {COUNT_LIMITS[option]}, got {number}")
    return number


def use_threads(count: Any) -> None:
    """Give torch ``--threads`` CPU threads: a positive integer (text of digits too) up to its bound, anything else is
    a one-line :class:`InvalidValueError`."""
    th.set_num_threads(require_count("--threads", int(count) if str(count).isdecimal() else count))


def resolve_algorithm(name: str) -> tuple[AlgorithmSpec, type[BaseAlgorithm]]:
    """The registry spec and the class of ``name``, spelled exactly as registered (others suggest close names)."""
    spec = get_plugin_manager().registry.spec(name)
    if spec.name != name:  # ``TNPG`` is not silently ``tnpg``: the command line, like the zoo's, takes the exact name
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}; did you mean {spec.name!r}?")
    return spec, spec.load()


def check_environment(env_id: str) -> None:
    """Raise :class:`UsageError` unless gymnasium knows ``env_id``."""
    import sbx_lecture.envs  # noqa: F401  (registers the lecture's environments)

    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        hint = did_you_mean(env_id, gym.registry)
        raise UsageError(f"unknown environment {env_id!r} ({exc}){hint and f'; {hint}'}") from None


def check_run_options(seed: Any, device: str, **counts: Any) -> None:
    """Refuse the options ``train`` and ``eval`` share when they would be reinterpreted or crash later (one line
    each): a seed outside [0, 2**32), a count out of its :data:`COUNT_LIMITS` (``eval_freq=`` for ``--eval-freq``;
    ``None`` is not given), and a device :func:`check_device` refuses."""
    require_integer("--seed", seed, 0)
    if seed >= 2**32:
        raise InvalidValueError(f"--seed must be below 2**32, got {seed}")
    for name, value in counts.items():
        if value is not None:
            require_count("--" + name.replace("_", "-"), value)
    check_device(device)


def check_device(device: str) -> None:
    """Refuse a ``--device`` torch does not know, one SB3 does not train on, or a CUDA device this machine does not
    have (SB3 would take the CPU without a word); ``auto`` is SB3's choice of CUDA when present."""
    if device == "auto":
        return
    try:
        chosen = th.device(device)
    except (RuntimeError, ValueError):
        raise InvalidValueError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if chosen.type not in ("cpu", "cuda"):
        raise InvalidValueError(f"--device {device}: SB3 trains on cpu or cuda; use --device cpu, cuda or auto")
    if chosen.type == "cuda" and (chosen.index or 0) >= th.cuda.device_count():
        found = f"{th.cuda.device_count()} CUDA devices"
        raise InvalidValueError(f"--device {device}: this machine has {found}; use --device cpu or auto")


def default_policy(cls: type[BaseAlgorithm], observation_space: Any) -> str:
    """The policy alias to use: MultiInput for dict observations, Cnn for images, Mlp otherwise."""
    aliases = list(getattr(cls, "policy_aliases", {}))
    image = is_image_space(observation_space)
    wanted = "MultiInput" if isinstance(observation_space, gym.spaces.Dict) else "Cnn" if image else "Mlp"
    return next((alias for alias in aliases if alias.startswith(wanted)), aliases[0] if aliases else "MlpPolicy")


def make_environment(
    env_id: str,
    n_envs: int,
    seed: int,
    monitor_dir: Path | None = None,
    normalize: Any = False,
    gamma: float = 0.99,
    vec_env: str = "dummy",
    env_kwargs: dict[str, Any] | None = None,
    wrapper_class: Any = None,
) -> VecEnv:
    """A vectorised ``env_id`` with Monitor files, optionally wrapped in a fresh VecNormalize (saved statistics:
    :func:`sbx_lecture.loading.load_normalization` on the result).

    :param monitor_dir: a new folder for the Monitor CSVs (``<rank>.monitor.csv``); each segment of a run gets its
        own (:class:`sbx_lecture.checkpoints.Segment`), so no log is ever overwritten
    :param normalize: VecNormalize for a fresh environment: ``True`` or its keyword arguments (the zoo's
        ``normalize``)
    :param vec_env: ``dummy`` (environments stepped in this process) or ``subproc`` (one process each)
    :param env_kwargs: keyword arguments of the environment's constructor (the zoo's ``env_kwargs``)
    :param wrapper_class: a gymnasium wrapper for each environment, inside its Monitor (the zoo's ``env_wrapper``)
    """
    check_environment(env_id)
    try:
        env = make_vec_env(
            env_id,
            n_envs=n_envs,
            seed=seed,
            monitor_dir=str(monitor_dir) if monitor_dir is not None else None,
            vec_env_cls=SubprocVecEnv if vec_env == "subproc" else DummyVecEnv,
            env_kwargs=env_kwargs,
            wrapper_class=wrapper_class,
        )
    except gym.error.DependencyNotInstalled as exc:
        raise UsageError(f"environment {env_id!r} needs a missing dependency: {exc}") from None
    except TypeError as exc:
        if not env_kwargs:
            raise
        raise InvalidValueError(f"env_kwargs {env_kwargs!r} do not fit {env_id}: {exc}") from None
    if normalize:
        env = VecNormalize(env, gamma=gamma, **(normalize if isinstance(normalize, dict) else {}))
    return env


def action_noise_from_zoo(zoo: dict[str, Any], env: VecEnv) -> Any:
    """The zoo's ``noise_type``/``noise_std`` as an SB3 action-noise object (``None`` without them)."""
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
    where: str = "the hyperparameters",
) -> BaseAlgorithm:
    """Construct the algorithm, turning a refused hyperparameter or action space into a one-line error.

    :param zoo: the zoo keys ``train`` applies itself (``policy``, action noise)
    :param kwargs: the constructor's keyword arguments
    :param where: where the hyperparameters came from, for the message of a refused key
    """
    check_hyperparameters(cls, {**zoo, **kwargs}, where)
    policy = zoo.get("policy") or default_policy(cls, env.observation_space)
    noise = action_noise_from_zoo(zoo, env)
    if noise is not None:
        kwargs = {"action_noise": noise, **kwargs}
    try:
        return cls(policy, env, seed=seed, device=device, verbose=verbose, **kwargs)
    except MemoryError:
        raise UsageError(
            f"not enough memory to create {algo!r} with these settings: lower buffer_size (or the network sizes)"
        ) from None
    except Exception as exc:  # whatever a setting makes SB3 or torch raise (a net_arch of -1: torch's RuntimeError)
        if is_action_space_error(exc):
            space = f"the action space {env.action_space} of this environment"
            raise UsageError(f"algorithm {algo!r} does not support {space}: {exc}") from exc
        message = f"{type(exc).__name__}: {str(exc) or 'no message'}"
        suspects = [key for key in kwargs if key in message] or _policy_settings(exc, kwargs) or list(kwargs)
        named = ", ".join(f"{key}={to_json_value(kwargs[key])}" for key in suspects) or "the defaults"
        raise UsageError(f"cannot create {algo!r} ({cls.__name__}) with {named} from {where} ({message})") from exc


def _policy_settings(error: Exception, kwargs: dict[str, Any]) -> list[str]:
    """``["policy_kwargs"]`` when ``error`` was raised while the policy was built from them, else none."""
    frames = traceback.walk_tb(error.__traceback__)
    in_policy = any(isinstance(frame.f_locals.get("self"), BasePolicy) for frame, _ in frames)
    return ["policy_kwargs"] if in_policy and "policy_kwargs" in kwargs else []


def with_integers(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with a whole float (``n_steps=1e3``) for an argument of ``cls`` typed ``int`` as an ``int``; a
    fractional one is refused in one line. The type is the constructor's annotation (else its default's type)."""
    typed = dict(kwargs)
    for name, parameter in inspect.signature(cls).parameters.items():
        if isinstance(kwargs.get(name), float) and _takes_integers(parameter):
            typed[name] = require_integer(name, kwargs[name])
    return typed


def _takes_integers(parameter: inspect.Parameter) -> bool:
    """Whether the annotation names ``int`` and not ``float`` (``int | None``, ``Optional[int]``, ``<class 'int'>``)."""
    if parameter.annotation is inspect.Parameter.empty:
        return type(parameter.default) is int
    words = set(re.findall(r"\w+", str(parameter.annotation)))
    return "int" in words and "float" not in words

"""Conformance checks for algorithm classes, for plugin authors and for our own tests.

:func:`check_algorithm` builds an algorithm on a small environment and checks what users of the SB3 interface rely
on: ``learn`` (returns the model, runs the budget), ``predict`` (shapes, bounds, ``deterministic`` respected,
recurrent state carried), ``save``/``load`` (every parameter, optimizer state and hyperparameter round-trips and
predictions are identical), ``set_env`` (accepts a matching environment, refuses a mismatched one),
``evaluate_policy``, reproducibility under a seed, and the ``supported_action_spaces`` declaration (every declared
kind of space works, an undeclared kind is refused with an error that names the action space). Three checks cover
what SB3 users meet beyond the defaults: Dict observations when the class has a ``MultiInput`` policy alias,
multi-dimensional Box actions (shape ``(2, 2)``) when it supports Box, and ``policy.save`` / ``Policy.load`` with a
custom features extractor and optimizer settings (the constructor parameters must round-trip). It raises one
:class:`ConformanceError` listing every failed check with what to fix::

    from sbx_lecture.testing import check_algorithm
    from my_plugin import MyAlgo

    def test_conformance():
        check_algorithm(MyAlgo)                          # environment chosen from the declared action spaces
        check_algorithm(MyAlgo, "Pendulum-v1", hyperparams={"n_steps": 64})

Budgets are tiny (a few hundred steps): the checks test the interface, not learning. Hyperparameters that keep
them tiny (``n_steps``, ``batch_size``, ``learning_starts``, ...) are passed when the constructor takes them; see
:data:`TINY_HYPERPARAMS`, and override or add to them with ``hyperparams``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import tempfile
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

#: Probe environments: one tiny environment per kind of action space (16-step episodes, 3-d observations).
PROBE_ENV_IDS: dict[type[spaces.Space], str] = {
    spaces.Box: "SbxLectureProbe/Box-v0",
    spaces.Discrete: "SbxLectureProbe/Discrete-v0",
    spaces.MultiDiscrete: "SbxLectureProbe/MultiDiscrete-v0",
    spaces.MultiBinary: "SbxLectureProbe/MultiBinary-v0",
}
#: The environment :func:`suitable_env_id` picks for each kind of action space, in order of preference.
SUITABLE_ENV_IDS: dict[type[spaces.Space], str] = {
    spaces.Discrete: "CartPole-v1",
    spaces.Box: "Pendulum-v1",
    spaces.MultiDiscrete: PROBE_ENV_IDS[spaces.MultiDiscrete],
    spaces.MultiBinary: PROBE_ENV_IDS[spaces.MultiBinary],
}
#: Constructor arguments that keep the checks small, passed only to constructors that take them.
TINY_HYPERPARAMS: dict[str, Any] = {
    "n_steps": 32,  # on-policy rollout length (off-policy classes use it for n-step returns: not passed to them)
    "batch_size": 32,
    "n_epochs": 2,
    "learning_starts": 96,  # off-policy: train only in the last steps of the budget
    "buffer_size": 2_000,
    "n_episodes": 1,  # Monte-Carlo methods: episodes per update
    "n_delta": 2,  # ARS: perturbations per update
    "gamma": 0.97,  # not the usual default, so that save/load must really restore it
}
#: Upstream bugs the ``action_spaces`` check steps around: (``module:Class``, kind of space) → what goes wrong.
#: Only the class itself is exempt, not subclasses, which may fix the bug.
KNOWN_UPSTREAM_ISSUES: dict[tuple[str, type[spaces.Space]], str] = {
    ("sb3_contrib.ppo_recurrent.ppo_recurrent:RecurrentPPO", spaces.MultiBinary): (
        "sb3-contrib's RecurrentPPO constructs on MultiBinary action spaces but its learn() crashes "
        "(binary cross-entropy with an int8 target)"
    ),
}
#: The names of the checks, in the order they run.
CHECKS = (
    "learn",
    "seeding",
    "predict",
    "save_load",
    "evaluate_policy",
    "set_env",
    "action_spaces",
    "dict_observations",
    "box_actions",
    "policy_save_load",
)
#: The checks that build their own models (on other environments) instead of using the one ``learn`` trained.
_STANDALONE_CHECKS = ("action_spaces", "dict_observations", "box_actions", "policy_save_load")
#: The Box action shape of the ``box_actions`` check.
MULTI_DIMENSIONAL_BOX_SHAPE = (2, 2)


class ConformanceError(AssertionError):
    """An algorithm class failed conformance checks; :attr:`failures` says which and what to fix."""

    def __init__(self, algorithm: str, env_id: str, failures: list[CheckFailure], n_checks: int) -> None:
        self.algorithm = algorithm
        self.env_id = env_id
        self.failures = failures
        failed = len(dict.fromkeys(failure.check for failure in failures))
        problems = f" ({len(failures)} problems)" if len(failures) > failed else ""
        lines = [f"{algorithm} failed {failed} of {n_checks} conformance checks on {env_id}{problems}:"]
        for failure in failures:
            lines.append(f"  - [{failure.check}] {failure.problem}")
            if failure.fix:
                lines.append(f"    fix: {failure.fix}")
        super().__init__("\n".join(lines))


@dataclass
class CheckFailure:
    """One failed check: which, what went wrong, and how to fix it."""

    check: str
    problem: str
    fix: str = ""


@dataclass
class ConformanceReport:
    """What :func:`check_algorithm` ran (it raises :class:`ConformanceError` instead of returning on failure)."""

    algorithm: str
    env_id: str
    action_spaces: tuple[type[spaces.Space], ...]
    declared: bool
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# --- probe environments ----------------------------------------------------------------------------------------


class ProbeEnv(gym.Env[Any, Any]):
    """A tiny environment with any kind of action space: 3-d observations, 16-step episodes (truncated).

    The reward prefers actions close to a target that depends on the observation, so that every algorithm has
    something to learn; the checks only use it to exercise the interface.

    :param kind: ``"box"``, ``"discrete"``, ``"multi_discrete"`` or ``"multi_binary"``
    :param obs_dim: size of the observation vector
    :param episode_length: steps before the episode is truncated
    :param render_mode: accepted for ``make_vec_env``; ``render()`` returns a blank image
    :param box_shape: shape of the Box action space (``kind="box"``)
    :param dict_observations: observe a Dict ``{"state": the observation vector, "extra": 2 more numbers}``
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        kind: str = "box",
        obs_dim: int = 3,
        episode_length: int = 16,
        render_mode: str | None = None,
        box_shape: tuple[int, ...] = (2,),
        dict_observations: bool = False,
    ) -> None:
        makers: dict[str, Callable[[], spaces.Space]] = {
            "box": lambda: spaces.Box(-1.0, 1.0, tuple(box_shape), dtype=np.float32),
            "discrete": lambda: spaces.Discrete(3),
            "multi_discrete": lambda: spaces.MultiDiscrete([3, 2]),
            "multi_binary": lambda: spaces.MultiBinary(3),
        }
        if kind not in makers:
            raise ValueError(f"kind must be one of {sorted(makers)}, got {kind!r}")
        self.kind = kind
        self.action_space = makers[kind]()
        self._state_space = spaces.Box(-1.0, 1.0, (obs_dim,), dtype=np.float32)
        self.dict_observations = dict_observations
        self.observation_space: spaces.Space = self._state_space
        if dict_observations:
            extra = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
            self.observation_space = spaces.Dict({"state": self._state_space, "extra": extra})
        self.episode_length = episode_length
        self.render_mode = render_mode
        self._t = 0
        self._obs = np.zeros(obs_dim, dtype=np.float32)

    def _observe(self) -> Any:
        self._obs = self.np_random.uniform(-1.0, 1.0, self._state_space.shape).astype(np.float32)
        if self.dict_observations:
            return {"state": self._obs, "extra": self.np_random.uniform(-1.0, 1.0, (2,)).astype(np.float32)}
        return self._obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        flat = np.asarray(action, dtype=np.float64).ravel()
        target = float(self._obs[0])
        reward = -float(np.mean((flat - target) ** 2))
        self._t += 1
        return self._observe(), reward, False, self._t >= self.episode_length, {}

    def render(self) -> np.ndarray:
        return np.zeros((8, 8, 3), dtype=np.uint8)


def _register_probe_envs() -> None:
    kinds = {
        spaces.Box: "box",
        spaces.Discrete: "discrete",
        spaces.MultiDiscrete: "multi_discrete",
        spaces.MultiBinary: "multi_binary",
    }
    for space, env_id in PROBE_ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="sbx_lecture.testing:ProbeEnv", kwargs={"kind": kinds[space]})


_register_probe_envs()


# --- helpers ---------------------------------------------------------------------------------------------------


def _make_env(env_id: str, seed: int, **env_kwargs: Any) -> VecEnv:
    from stable_baselines3.common.env_util import make_vec_env

    import sbx_lecture.envs  # noqa: F401  (registers the lecture's environments)

    return make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs or None)


def tiny_hyperparams(cls: type, hyperparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """:data:`TINY_HYPERPARAMS` that ``cls``'s constructor takes, updated with ``hyperparams``."""
    parameters = inspect.signature(cls).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    off_policy = issubclass(cls, OffPolicyAlgorithm)
    chosen = {
        key: value
        for key, value in TINY_HYPERPARAMS.items()
        if key in parameters and not takes_kwargs and not (off_policy and key == "n_steps")
    }
    chosen.update(hyperparams or {})
    return chosen


def _build(cls: type[BaseAlgorithm], env: VecEnv, hyperparams: dict[str, Any] | None, seed: int) -> BaseAlgorithm:
    from sbx_lecture.training import default_policy

    kwargs = tiny_hyperparams(cls, hyperparams)
    policy = kwargs.pop("policy", None) or default_policy(cls, env.observation_space)
    return cls(policy, env, seed=seed, device="cpu", verbose=0, **kwargs)


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line in function)`` for the innermost frame of ``exc``."""
    text = " ".join(str(exc).split()) or "(no message)"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {text}{where}"


def _kind_name(kind: type[spaces.Space]) -> str:
    return f"spaces.{kind.__name__}"


def _declared_spaces(cls: type) -> tuple[type[spaces.Space], ...] | None:
    declared = cls.__dict__.get("supported_action_spaces")
    if declared is None:
        for base in cls.__mro__[1:]:
            if "supported_action_spaces" in base.__dict__:
                declared = base.__dict__["supported_action_spaces"]
                break
    return declared  # type: ignore[no-any-return]


def _is_valid_declaration(declared: object) -> bool:
    return (
        isinstance(declared, tuple)
        and len(declared) > 0
        and all(inspect.isclass(space) and issubclass(space, spaces.Space) for space in declared)
    )


def _covers(declared: Iterable[type[spaces.Space]], kind: type[spaces.Space]) -> bool:
    return any(issubclass(kind, space) for space in declared)


@cache
def _probe_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space], ...]:
    supported = []
    for kind, env_id in PROBE_ENV_IDS.items():
        env = _make_env(env_id, seed=0)
        try:
            _build(cls, env, None, seed=0)
        except Exception:
            continue
        finally:
            env.close()
        supported.append(kind)
    return tuple(supported)


def supported_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space], ...]:
    """The kinds of action space ``cls`` supports.

    Its ``supported_action_spaces`` class attribute when it has one; otherwise (SB3's own classes pass theirs to
    the base constructor only) the kinds of the probe environments it can be constructed on.
    """
    declared = _declared_spaces(cls)
    if declared is not None:
        if not _is_valid_declaration(declared):
            raise TypeError(
                f"{cls.__name__}.supported_action_spaces must be a non-empty tuple of gymnasium.spaces classes, "
                f"got {declared!r}"
            )
        return tuple(declared)
    return _probe_action_spaces(cls)


def suitable_env_id(cls: type[BaseAlgorithm]) -> str:
    """A small environment whose action space ``cls`` supports: CartPole-v1 (Discrete), Pendulum-v1 (Box), else
    a probe environment (MultiDiscrete, MultiBinary).

    :raises ValueError: when ``cls`` supports none of these kinds of action space
    """
    supported = supported_action_spaces(cls)
    for kind, env_id in SUITABLE_ENV_IDS.items():
        if _covers(supported, kind):
            return env_id
    known = ", ".join(_kind_name(kind) for kind in SUITABLE_ENV_IDS)
    raise ValueError(
        f"{cls.__name__} supports the action spaces {supported or 'none that could be probed'}; check_algorithm "
        f"knows environments for {known}: pass env_id explicitly"
    )


def _observations(env: VecEnv, n: int = 8) -> Any:
    """``n`` observations from a short random rollout of ``env`` (in distribution, unlike space.sample()); a dict
    of arrays for Dict observation spaces."""
    env.action_space.seed(0)
    observations: list[Any] = [env.reset()]
    for _ in range(n - 1):
        obs, _, _, _ = env.step(np.array([env.action_space.sample() for _ in range(env.num_envs)]))
        observations.append(obs)
    if isinstance(observations[0], dict):
        return {key: np.concatenate([obs[key] for obs in observations])[:n] for key in observations[0]}
    return np.concatenate(observations)[:n]  # type: ignore[arg-type]


def _first(observations: Any) -> Any:
    """The first observation of a batch (key by key for dicts)."""
    if isinstance(observations, dict):
        return {key: value[0] for key, value in observations.items()}
    return observations[0]


class ProbeFeaturesExtractor(BaseFeaturesExtractor):
    """A custom features extractor for the ``policy_save_load`` check: flatten, one linear layer, ReLU.

    :param observation_space: a Box observation space (images included)
    :param features_dim: number of features
    """

    def __init__(self, observation_space: spaces.Space, features_dim: int = 7) -> None:
        super().__init__(observation_space, features_dim)
        self.net = th.nn.Sequential(
            th.nn.Flatten(), th.nn.Linear(get_flattened_obs_dim(observation_space), features_dim), th.nn.ReLU()
        )

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations)  # type: ignore[no-any-return]


def _predict(model: BaseAlgorithm, obs: Any, deterministic: bool) -> tuple[np.ndarray, Any]:
    n_observations = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
    episode_start = np.ones(n_observations, dtype=bool)
    return model.predict(obs, state=None, episode_start=episode_start, deterministic=deterministic)


def _diff(a: Any, b: Any, path: str, out: list[str], where: str = "after load") -> None:
    """Append to ``out`` where nested state dicts ``a`` and ``b`` (``b`` is ``a`` ``where``) differ."""
    import torch as th

    if len(out) >= 5:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            if key not in b:
                out.append(f"{path}{key} is missing {where}")
            else:
                _diff(a[key], b[key], f"{path}{key}.", out, where)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{path.rstrip('.')} has {len(b)} entries {where}, {len(a)} before")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{path}{i}.", out, where)
    elif isinstance(a, th.Tensor):
        if not isinstance(b, th.Tensor) or a.shape != b.shape or not th.equal(a.cpu(), b.cpu()):
            out.append(f"{path.rstrip('.')} differs {where}")
    elif not _same(a, b):
        out.append(f"{path.rstrip('.')} is {b!r} {where}, was {a!r}")


def _state(model: BaseAlgorithm) -> dict[str, Any]:
    """Every tensor of ``model``: its torch modules' state dicts, tensor attributes and ``get_parameters()``.

    The modules are read directly, not only through ``get_parameters()``, which sees just what
    ``_get_torch_save_params`` lists (the very list that may be incomplete).
    """
    import torch as th

    state: dict[str, Any] = {}
    for key, value in vars(model).items():
        if isinstance(value, th.nn.Module):
            state[key] = value.state_dict()
        elif isinstance(value, th.Tensor):
            state[key] = value.detach()
    state["get_parameters()"] = model.get_parameters()
    return state


def _scalar_attributes(model: BaseAlgorithm) -> dict[str, Any]:
    simple = (bool, int, float, str, type(None), np.integer, np.floating)
    return {key: value for key, value in vars(model).items() if isinstance(value, simple) and not key.startswith("__")}


def _has_stochastic_policy(model: BaseAlgorithm) -> bool:
    return hasattr(model.policy, "action_dist")


# --- the checks ------------------------------------------------------------------------------------------------


class _Checker:
    def __init__(
        self,
        cls: type[BaseAlgorithm],
        env_id: str,
        hyperparams: dict[str, Any] | None,
        timesteps: int,
        seed: int,
        probe_spaces: tuple[type[spaces.Space], ...],
    ) -> None:
        self.cls = cls
        self.probe_spaces = probe_spaces
        self.env_id = env_id
        self.hyperparams = hyperparams
        self.timesteps = timesteps
        self.seed = seed
        self.failures: list[CheckFailure] = []
        self.skipped: list[str] = []
        self.model: BaseAlgorithm | None = None
        self.observations: np.ndarray | None = None

    def fail(self, check: str, problem: str, fix: str = "") -> None:
        self.failures.append(CheckFailure(check, problem, fix))

    def build_and_learn(self, seed: int) -> BaseAlgorithm:
        model = _build(self.cls, _make_env(self.env_id, seed), self.hyperparams, seed)
        returned = model.learn(total_timesteps=self.timesteps)
        if returned is not model:
            self.fail("learn", f"learn() returned {returned!r}, not the model", "end learn() with `return self`")
        return model

    def learn(self) -> None:
        model = self.build_and_learn(self.seed)
        if model.num_timesteps < self.timesteps:
            self.fail(
                "learn",
                f"learn(total_timesteps={self.timesteps}) stopped after {model.num_timesteps} steps",
                "count every environment step in self.num_timesteps and loop until total_timesteps is reached",
            )
        self.model = model
        assert model.env is not None
        self.observations = _observations(_make_env(self.env_id, self.seed + 7))

    def seeding(self) -> None:
        assert self.model is not None and self.observations is not None
        twin = self.build_and_learn(self.seed)
        differences: list[str] = []
        _diff(_state(self.model), _state(twin), "", differences, where="in the second model")
        if differences:
            self.fail(
                "seeding",
                f"two models built and trained with seed={self.seed} differ: {'; '.join(differences[:3])}",
                "draw every random number from generators seeded by set_random_seed (torch, numpy, "
                "self.action_space) and seed the environments from self.seed",
            )
            return
        a, _ = _predict(self.model, self.observations, deterministic=True)
        b, _ = _predict(twin, self.observations, deterministic=True)
        if not np.array_equal(a, b):
            self.fail(
                "seeding",
                f"two models trained with seed={self.seed} predict differently",
                "make predict depend only on the parameters and the observation",
            )

    def predict(self) -> None:
        model, obs = self.model, self.observations
        assert model is not None and obs is not None
        action_space = model.action_space
        actions, state = _predict(model, obs, deterministic=True)
        expected_shape = (len(obs), *action_space.shape) if action_space.shape else (len(obs),)
        if np.shape(actions) != expected_shape:
            self.fail(
                "predict",
                f"predict() on {len(obs)} observations returned actions of shape "
                f"{np.shape(actions)}, expected {expected_shape}",
                "return one action per observation, shaped like the action space",
            )
            return
        outside = [
            i
            for i, action in enumerate(actions)
            if not action_space.contains(np.asarray(action, dtype=action_space.dtype))
        ]
        if outside:
            self.fail(
                "predict",
                f"predicted actions {[actions[i] for i in outside[:2]]} are outside the action space {action_space}",
                "clip or unscale actions to the action space's bounds in predict()",
            )
        single, _ = model.predict(obs[0], deterministic=True)
        if np.shape(single) != action_space.shape:
            self.fail(
                "predict",
                f"predict() on one unbatched observation returned shape {np.shape(single)}, "
                f"expected {action_space.shape}",
                "accept unbatched observations as SB3's predict does",
            )
        if state is not None:
            # recurrent policies: the returned state must be accepted back
            model.predict(obs, state=state, episode_start=np.zeros(len(obs), dtype=bool), deterministic=True)
        for _ in range(4):
            again, _ = _predict(model, obs, deterministic=True)
            if not np.array_equal(actions, again):
                self.fail(
                    "predict",
                    "predict(deterministic=True) returned different actions for the same observations",
                    "with deterministic=True return the policy's mode (pass `deterministic` down to the policy) "
                    "and use no randomness",
                )
                break
        if _has_stochastic_policy(model):
            samples = [_predict(model, obs, deterministic=False)[0] for _ in range(10)]
            if all(np.array_equal(sample, actions) for sample in samples):
                self.fail(
                    "predict",
                    "predict(deterministic=False) always returned the deterministic actions of a stochastic policy",
                    "with deterministic=False sample from the policy's distribution",
                )

    def save_load(self) -> None:
        model, obs = self.model, self.observations
        assert model is not None and obs is not None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.zip"
            model.save(path)
            loaded = self.cls.load(path, env=_make_env(self.env_id, self.seed + 3), device="cpu")
        if type(loaded) is not self.cls:
            self.fail(
                "save_load",
                f"{self.cls.__name__}.load returned a {type(loaded).__name__}",
                "do not override load(), or return an instance of the class",
            )
        problems: list[str] = []
        _diff(_state(model), _state(loaded), "", problems)
        if problems:
            self.fail(
                "save_load",
                f"parameters do not round-trip: {'; '.join(problems[:3])}",
                "list every torch module and optimizer in _get_torch_save_params() and build them in _setup_model()",
            )
        before, after = _scalar_attributes(model), _scalar_attributes(loaded)
        changed = [
            f"{key} is {after.get(key, '<missing>')!r} after load, was {value!r}"
            for key, value in before.items()
            if key not in after or not _same(value, after[key])
        ]
        if changed:
            self.fail(
                "save_load",
                f"attributes do not round-trip: {'; '.join(changed[:3])}",
                "do not list hyperparameters in _excluded_save_params(), and do not reset them in _setup_model()",
            )
        a, _ = _predict(model, obs, deterministic=True)
        b, _ = _predict(loaded, obs, deterministic=True)
        if not np.array_equal(a, b):
            self.fail(
                "save_load",
                "the loaded model predicts different actions from the saved one",
                "save every tensor that predict() uses (_get_torch_save_params)",
            )

    def evaluate_policy(self) -> None:
        from stable_baselines3.common.evaluation import evaluate_policy

        assert self.model is not None
        env = _make_env(self.env_id, self.seed + 5)
        mean, std = evaluate_policy(self.model, env, n_eval_episodes=2, deterministic=True, warn=False)
        if not (np.isfinite(mean) and np.isfinite(std)):
            self.fail(
                "evaluate_policy",
                f"evaluate_policy returned {mean} ± {std}",
                "predict() must return valid actions for evaluate_policy's single environment",
            )

    def set_env(self) -> None:
        model = self.model
        assert model is not None
        steps_before = model.num_timesteps
        model.set_env(_make_env(self.env_id, self.seed + 11))
        model.learn(total_timesteps=min(32, self.timesteps), reset_num_timesteps=False)
        if model.num_timesteps <= steps_before:
            self.fail(
                "set_env",
                "learn() after set_env() took no environment step",
                "use self.env (set by set_env) in learn()",
            )
        other = _make_env(PROBE_ENV_IDS[spaces.Box], 0, obs_dim=5)
        try:
            model.set_env(other)
        except ValueError:
            pass
        else:
            self.fail(
                "set_env",
                "set_env() accepted an environment with a different observation space",
                "do not override set_env(), or call check_for_correct_spaces() in it",
            )

    def action_spaces(self) -> bool:
        """Check the declaration; returns whether the class declares its spaces (else they were probed)."""
        declared = _declared_spaces(self.cls)
        if declared is not None and not _is_valid_declaration(declared):
            self.fail(
                "action_spaces",
                f"supported_action_spaces is {declared!r}",
                "declare `supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Box, ...)`",
            )
            return True
        supported = declared if declared is not None else _probe_action_spaces(self.cls)
        for kind, env_id in PROBE_ENV_IDS.items():
            if kind not in self.probe_spaces:
                continue
            known = KNOWN_UPSTREAM_ISSUES.get((f"{self.cls.__module__}:{self.cls.__qualname__}", kind))
            if known is not None:
                self.skipped.append(f"action_spaces on {_kind_name(kind)}: {known}")
                continue
            env = _make_env(env_id, self.seed)
            if _covers(supported, kind):
                try:
                    model = _build(self.cls, env, self.hyperparams, self.seed)
                    model.learn(total_timesteps=self.timesteps)
                    _predict(model, _observations(env, 4), deterministic=False)
                except Exception as exc:
                    how = "declares" if declared is not None else "accepts (when constructed; it declares nothing)"
                    self.fail(
                        "action_spaces",
                        f"{how} {_kind_name(kind)} but fails on a {_kind_name(kind)} environment "
                        f"({env.action_space}): {_describe(exc)}",
                        f"support {_kind_name(kind)} or remove it from supported_action_spaces "
                        "(refuse it in __init__ with a ValueError naming the supported spaces)",
                    )
                continue
            try:
                _build(self.cls, env, self.hyperparams, self.seed)
            except Exception as exc:
                if "action space" not in str(exc).lower():
                    self.fail(
                        "action_spaces",
                        f"refuses the undeclared {_kind_name(kind)} with an unclear error: {_describe(exc)}",
                        "raise ValueError('... does not support the action space ...: it supports ...') when "
                        "constructed on an unsupported action space",
                    )
            else:
                self.fail(
                    "action_spaces",
                    f"accepts a {_kind_name(kind)} action space ({env.action_space}) that it does not declare",
                    f"declare {_kind_name(kind)} in supported_action_spaces if it works, or refuse it in __init__ "
                    "(pass supported_action_spaces to the base constructor)",
                )
        return declared is not None

    def _supported(self) -> tuple[type[spaces.Space], ...]:
        declared = _declared_spaces(self.cls)
        if declared is not None and _is_valid_declaration(declared):
            return tuple(declared)
        return _probe_action_spaces(self.cls)

    def _check_predictions(self, check: str, model: BaseAlgorithm, env: VecEnv, what: str) -> None:
        """Batched and single predictions have the action space's shape and lie in it."""
        action_space = env.action_space
        expected = (4, *(action_space.shape or ()))
        obs = _observations(env, 4)
        for deterministic in (True, False):
            actions, _ = _predict(model, obs, deterministic=deterministic)
            if np.shape(actions) != expected:
                self.fail(
                    check,
                    f"predict() on 4 {what} returned actions of shape {np.shape(actions)}, expected {expected}",
                    "reshape actions to (n_envs, *action_space.shape) wherever they leave the network",
                )
                return
            if not all(action_space.contains(np.asarray(action, dtype=action_space.dtype)) for action in actions):
                self.fail(check, f"predict() on {what} returned actions outside {action_space}", "")
                return
        single, _ = model.predict(_first(obs), deterministic=True)
        if np.shape(single) != action_space.shape:
            self.fail(
                check,
                f"predict() on one unbatched {what[:-1]} returned shape {np.shape(single)}, expected "
                f"{action_space.shape}",
                "accept unbatched observations as SB3's predict does",
            )

    def dict_observations(self) -> None:
        """A class with a MultiInput policy alias learns and predicts on Dict observations."""
        aliases = [alias for alias in getattr(self.cls, "policy_aliases", {}) if alias.startswith("MultiInput")]
        if not aliases:
            self.skipped.append("dict_observations: no MultiInput policy alias")
            return
        supported = self._supported()
        kinds = [kind for kind in PROBE_ENV_IDS if kind in self.probe_spaces and _covers(supported, kind)]
        if not kinds:
            self.skipped.append("dict_observations: no probe environment for the supported action spaces")
            return
        env = _make_env(PROBE_ENV_IDS[kinds[0]], self.seed, dict_observations=True)
        try:
            model = _build(self.cls, env, {**(self.hyperparams or {}), "policy": aliases[0]}, self.seed)
            model.learn(total_timesteps=self.timesteps)
        except Exception as exc:
            self.fail(
                "dict_observations",
                f"the {aliases[0]} alias promises Dict observations, but learning on {env.observation_space} fails: "
                f"{_describe(exc)}",
                "treat observations as a dict of tensors wherever they are stored, sliced or concatenated (SB3's "
                "DictReplayBuffer / DictRolloutBuffer show how), or drop the MultiInput alias",
            )
            return
        self._check_predictions("dict_observations", model, env, "Dict observations")

    def box_actions(self) -> None:
        """A class that supports Box learns and predicts with a multi-dimensional Box action space."""
        if spaces.Box not in self.probe_spaces or not _covers(self._supported(), spaces.Box):
            self.skipped.append("box_actions: Box action spaces are not supported")
            return
        env = _make_env(PROBE_ENV_IDS[spaces.Box], self.seed, box_shape=MULTI_DIMENSIONAL_BOX_SHAPE)
        try:
            model = _build(self.cls, env, self.hyperparams, self.seed)
            model.learn(total_timesteps=self.timesteps)
        except Exception as exc:
            self.fail(
                "box_actions",
                f"learning with the action space {env.action_space} fails: {_describe(exc)}",
                "networks output flat actions of size prod(shape): reshape them to (n_envs, *action_space.shape) "
                "before unscaling or stepping the environment",
            )
            return
        self._check_predictions("box_actions", model, env, "observations")

    def policy_save_load(self) -> None:
        """``policy.save`` then ``PolicyClass.load`` keep a custom features extractor and the optimizer settings."""
        env = _make_env(self.env_id, self.seed)
        probe = self.model if self.model is not None else _build(self.cls, env, self.hyperparams, self.seed)
        policy_class = type(probe.policy)
        parameters = inspect.signature(policy_class).parameters
        if "features_extractor_class" not in parameters:
            self.skipped.append(f"policy_save_load: {policy_class.__name__} takes no features_extractor_class")
            return
        if isinstance(env.observation_space, spaces.Dict):
            self.skipped.append(f"policy_save_load: the probe extractor needs Box observations, not {self.env_id}'s")
            return
        policy_kwargs = dict((self.hyperparams or {}).get("policy_kwargs") or {})
        policy_kwargs.update(
            features_extractor_class=ProbeFeaturesExtractor, features_extractor_kwargs={"features_dim": 7}
        )
        if "optimizer_class" in parameters and "optimizer_kwargs" in parameters:
            policy_kwargs.update(optimizer_class=th.optim.AdamW, optimizer_kwargs={"weight_decay": 0.0123})
        model = _build(self.cls, env, {**(self.hyperparams or {}), "policy_kwargs": policy_kwargs}, self.seed)
        policy = model.policy
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "policy.pth"
            policy.save(str(path))
            try:
                loaded = policy_class.load(str(path), device="cpu")
            except Exception as exc:
                self.fail(
                    "policy_save_load",
                    f"{policy_class.__name__}.load of a policy with a custom features extractor fails: "
                    f"{_describe(exc)}",
                    "return features_extractor_class/kwargs and optimizer_class/kwargs from "
                    "_get_constructor_parameters()",
                )
                return
        fix = "return every constructor argument (features_extractor_class/kwargs, optimizer_class/kwargs, ...) from "
        fix += "_get_constructor_parameters()"

        def extractors(module: th.nn.Module) -> int:
            return sum(isinstance(sub, ProbeFeaturesExtractor) for sub in module.modules())

        if extractors(loaded) != extractors(policy):
            self.fail(
                "policy_save_load",
                f"the loaded policy has {extractors(loaded)} ProbeFeaturesExtractor modules, the saved one "
                f"{extractors(policy)}: the custom features extractor was replaced",
                fix,
            )
        if getattr(policy, "optimizer_class", None) is th.optim.AdamW:
            kwargs = getattr(loaded, "optimizer_kwargs", None) or {}
            if getattr(loaded, "optimizer_class", None) is not th.optim.AdamW or kwargs.get("weight_decay") != 0.0123:
                self.fail(
                    "policy_save_load",
                    f"optimizer settings are lost: the loaded policy has {getattr(loaded, 'optimizer_class', None)} "
                    f"with {kwargs}, the saved one AdamW with weight_decay=0.0123",
                    fix,
                )
        problems: list[str] = []
        _diff(policy.state_dict(), loaded.state_dict(), "", problems)
        if problems:
            self.fail("policy_save_load", f"the policy's tensors do not round-trip: {'; '.join(problems[:3])}", fix)
            return
        obs = _observations(env, 4)
        episode_start = np.ones(4, dtype=bool)
        a, _ = policy.predict(obs, state=None, episode_start=episode_start, deterministic=True)
        b, _ = loaded.predict(obs, state=None, episode_start=episode_start, deterministic=True)
        if not np.array_equal(a, b):
            self.fail("policy_save_load", "the loaded policy predicts different actions from the saved one", fix)


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and compares arrays element-wise."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True)
    try:
        return bool(a == b)
    except Exception:
        return a is b


def check_algorithm(
    cls: type[BaseAlgorithm],
    env_id: str | None = None,
    *,
    hyperparams: dict[str, Any] | None = None,
    timesteps: int = 128,
    seed: int = 0,
    checks: Iterable[str] | None = None,
    probe_spaces: Iterable[type[spaces.Space]] | None = None,
) -> ConformanceReport:
    """Run the conformance checks on ``cls`` and raise :class:`ConformanceError` listing every failure.

    :param cls: the algorithm class (a ``BaseAlgorithm`` subclass)
    :param env_id: gymnasium id of the environment for learn/predict/save/load; ``None`` picks one with
        :func:`suitable_env_id` from the supported action spaces
    :param hyperparams: constructor arguments, on top of :data:`TINY_HYPERPARAMS` (which are passed only when the
        constructor takes them); ``"policy"`` chooses the policy (default: the ``Mlp`` alias)
    :param timesteps: budget of the ``learn`` calls
    :param seed: seed of the models and environments
    :param checks: names from :data:`CHECKS` to run (default: all; ``learn`` always runs when another check needs it)
    :param probe_spaces: kinds of action space whose probe environments the ``action_spaces`` check tries
        (default: every key of :data:`PROBE_ENV_IDS`); leave a kind out to step around a known upstream bug, e.g.
        sb3-contrib's RecurrentPPO, which declares ``MultiBinary`` but crashes in ``learn`` on it
    :return: what ran, when everything passed
    :raises ConformanceError: listing each failed check, what went wrong and what to fix
    """
    from stable_baselines3.common.base_class import BaseAlgorithm

    name = getattr(cls, "__qualname__", repr(cls))
    if not (inspect.isclass(cls) and issubclass(cls, BaseAlgorithm)):
        raise ConformanceError(
            name,
            env_id or "-",
            [
                CheckFailure(
                    "class",
                    f"{cls!r} is not a subclass of stable_baselines3's BaseAlgorithm",
                    "derive the algorithm from BaseAlgorithm, OnPolicyAlgorithm or OffPolicyAlgorithm",
                )
            ],
            1,
        )
    selected = list(CHECKS) if checks is None else list(checks)
    unknown = [check for check in selected if check not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}: choose from {', '.join(CHECKS)}")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    try:
        env_id = env_id or suitable_env_id(cls)
    except (TypeError, ValueError) as exc:
        raise ConformanceError(
            name,
            env_id or "-",
            [CheckFailure("action_spaces", str(exc), "declare the supported action spaces or pass env_id")],
            1,
        ) from None

    kinds = tuple(PROBE_ENV_IDS) if probe_spaces is None else tuple(probe_spaces)
    unknown_kinds = [kind for kind in kinds if kind not in PROBE_ENV_IDS]
    if unknown_kinds:
        raise ValueError(f"probe_spaces {unknown_kinds}: choose from {', '.join(map(_kind_name, PROBE_ENV_IDS))}")
    checker = _Checker(cls, env_id, hyperparams, timesteps, seed, kinds)
    report = ConformanceReport(name, env_id, (), declared=False)
    needs_model = [check for check in selected if check not in ("learn", *_STANDALONE_CHECKS)]
    ran = 0
    if "learn" in selected or needs_model:
        ran += 1
        try:
            checker.learn()
            report.passed.append("learn")
        except Exception as exc:
            checker.fail(
                "learn",
                f"constructing or learning on {env_id} failed: {_describe(exc)}",
                "make the class construct and learn with SB3's arguments (policy, env, seed, device, ...)",
            )
            report.skipped.extend(needs_model)
            needs_model = []
    for check in needs_model:
        ran += 1
        count = len(checker.failures)
        try:
            getattr(checker, check)()
        except Exception as exc:
            checker.fail(check, f"raised {_describe(exc)}", "")
        if len(checker.failures) == count:
            report.passed.append(check)
    if "action_spaces" in selected:
        ran += 1
        count = len(checker.failures)
        try:
            report.declared = checker.action_spaces()
        except Exception as exc:
            checker.fail("action_spaces", f"raised {_describe(exc)}", "")
        if len(checker.failures) == count:
            report.passed.append("action_spaces")
    for check in _STANDALONE_CHECKS[1:]:
        if check not in selected:
            continue
        ran += 1
        count, skipped = len(checker.failures), len(checker.skipped)
        try:
            getattr(checker, check)()
        except Exception as exc:
            checker.fail(check, f"raised {_describe(exc)}", "")
        if len(checker.failures) == count and len(checker.skipped) == skipped:
            report.passed.append(check)
    report.skipped.extend(checker.skipped)
    with contextlib.suppress(TypeError):
        report.action_spaces = supported_action_spaces(cls)
    if checker.failures:
        raise ConformanceError(name, env_id, checker.failures, ran)
    return report


class NonFiniteAfter(gym.Wrapper):
    """Corrupts an environment after ``after`` steps: its reward, or every observation entry, becomes ``value``.

    For tests that an algorithm stops with :class:`sbx_lecture.common.finite.NonFiniteError` instead of training
    into NaN parameters: ``NonFiniteAfter(gym.make("CartPole-v1"), reward=math.nan, after=50)``.

    :param env: the environment to corrupt
    :param reward: the reward returned from step ``after + 1`` on (``None``: rewards stay)
    :param observation: the value of every observation entry from step ``after + 1`` on (``None``: they stay)
    :param after: the number of environment steps (over all episodes) that stay intact
    """

    def __init__(self, env: gym.Env, reward: float | None = None, observation: float | None = None, after: int = 0):
        super().__init__(env)
        self.corrupt_reward = reward
        self.corrupt_observation = observation
        self.after = after
        self.steps = 0

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps > self.after:
            if self.corrupt_reward is not None:
                reward = self.corrupt_reward
            if self.corrupt_observation is not None:
                observation = np.full_like(observation, self.corrupt_observation)
        return observation, reward, terminated, truncated, info


__all__ = [
    "CHECKS",
    "KNOWN_UPSTREAM_ISSUES",
    "PROBE_ENV_IDS",
    "SUITABLE_ENV_IDS",
    "TINY_HYPERPARAMS",
    "CheckFailure",
    "ConformanceError",
    "ConformanceReport",
    "NonFiniteAfter",
    "ProbeEnv",
    "check_algorithm",
    "suitable_env_id",
    "supported_action_spaces",
    "tiny_hyperparams",
]

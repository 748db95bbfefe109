"""Conformance checks for algorithm classes, for plugin authors and for our own tests.

:func:`check_algorithm` builds an algorithm on a small environment and checks what users of the SB3 interface rely
on: ``learn`` (returns the model, runs the budget), ``predict`` (shapes, bounds, ``deterministic`` respected,
recurrent state carried), ``save``/``load`` (every parameter, optimizer state and hyperparameter round-trips and
predictions are identical), ``set_env`` (accepts a matching environment, refuses a mismatched one),
``evaluate_policy``, reproducibility under a seed, and the ``supported_action_spaces`` declaration (every declared
kind of space works, an undeclared kind is refused with an error that names the action space). Three checks cover
what SB3 users meet beyond the defaults: Dict observations (an image and a vector) when the class has a
``MultiInput`` policy alias, multi-dimensional Box actions (shape ``(2, 2)``) when it supports Box, and
``policy.save`` / ``Policy.load`` with a custom features extractor and optimizer settings (the constructor
parameters must round-trip). It raises one :class:`ConformanceError` listing every failed check with what to fix::

    from sbx_lecture.testing import check_algorithm
    from my_plugin import MyAlgo

    def test_conformance():
        check_algorithm(MyAlgo)                          # environment chosen from the declared action spaces
        check_algorithm(MyAlgo, "Pendulum-v1", hyperparams={"n_steps": 64})

The probe environments are SB3's own test environments (:mod:`stable_baselines3.common.envs`): the identity
environments, one per kind of action space, registered with gymnasium under :data:`PROBE_ENV_IDS`, and
``SimpleMultiObsEnv`` for Dict observations.

Budgets are tiny (a few hundred steps): the checks test the interface, not learning. Hyperparameters that keep
them tiny (``n_steps``, ``batch_size``, ``learning_starts``, ...) are passed when the constructor takes them; see
:data:`TINY_HYPERPARAMS`, and override or add to them with ``hyperparams``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common import envs as sb3_envs
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv

# importing the probes registers every environment of sbx_lecture.envs, which check_algorithm may be given
from sbx_lecture.envs.probes import PROBE_ENV_IDS, identity_env
from sbx_lecture.envs.probes import NonFiniteAfter as NonFiniteAfter  # public: tests of the NaN guard use it
from sbx_lecture.factory import default_policy
from sbx_lecture.hyperparams import accepted_hyperparameters
from sbx_lecture.infra.comparisons import (
    describe_error,
    list_differences,
    model_tensors,
    policy_settings,
    same_predictions,
    save_and_load,
    scalar_attributes,
)
from sbx_lecture.infra.validation import is_action_space_error, require_choice, require_integer

#: The environment :func:`suitable_env_id` picks for each kind of action space, in order of preference: the classic
#: control tasks for Discrete and Box, the probe environments for the other kinds.
SUITABLE_ENV_IDS = PROBE_ENV_IDS | {spaces.Discrete: "CartPole-v1", spaces.Box: "Pendulum-v1"}
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
#: The checks of the model that the ``learn`` check trains, in the order they run.
_MODEL_CHECKS = ("seeding", "predict", "save_load", "evaluate_policy", "set_env")
#: The names of the checks, in the order they run: ``learn``, the checks of its model, then the checks that build
#: their own models (on other environments).
CHECKS = ("learn", *_MODEL_CHECKS, "action_spaces", "dict_observations", "box_actions", "policy_save_load")
#: The Box action shape of the ``box_actions`` check.
MULTI_DIMENSIONAL_BOX_SHAPE = (2, 2)


# --- probe environments and small models -----------------------------------------------------------------------


def _make_env(env: str | Callable[..., gym.Env], seed: int, **env_kwargs: Any) -> VecEnv:
    """One seeded copy of ``env`` (a gymnasium id or an environment class) in a vectorized environment."""
    # an id goes through gym.make itself: make_vec_env would first try render_mode="rgb_array", which no check
    # needs and SB3's test environments do not take (gymnasium warns about it)
    maker = partial(gym.make, env) if isinstance(env, str) else env
    return make_vec_env(maker, n_envs=1, seed=seed, env_kwargs=env_kwargs or None)


def _sample_observations(env: VecEnv, n: int = 8) -> Any:
    """``n`` observations from a short random rollout of ``env`` (in distribution, unlike space.sample()); a dict
    of arrays for Dict observation spaces."""
    env.action_space.seed(0)
    observations: list[Any] = [env.reset()] + [env.step(np.array([env.action_space.sample()]))[0] for _ in range(n - 1)]
    if isinstance(observations[0], dict):
        return {key: np.concatenate([obs[key] for obs in observations]) for key in observations[0]}
    return np.concatenate(observations)


def tiny_hyperparams(cls: type, hyperparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """:data:`TINY_HYPERPARAMS` that ``cls``'s constructor takes, updated with ``hyperparams``."""
    accepted = set(accepted_hyperparameters(cls) or ())  # None: it takes **kwargs, so none is known to be taken
    if issubclass(cls, OffPolicyAlgorithm):
        accepted.discard("n_steps")
    return {key: value for key, value in TINY_HYPERPARAMS.items() if key in accepted} | (hyperparams or {})


def _build_model(cls: type[BaseAlgorithm], env: VecEnv, hyperparams: dict[str, Any] | None, seed: int) -> Any:
    """``cls`` on ``env`` with :func:`tiny_hyperparams`, on the CPU; ``hyperparams["policy"]`` chooses the policy."""
    kwargs = tiny_hyperparams(cls, hyperparams)
    policy = kwargs.pop("policy", None) or default_policy(cls, env.observation_space)
    return cls(policy, env, seed=seed, device="cpu", verbose=0, **kwargs)


@cache
def _probe_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space], ...]:
    """The kinds of the probe environments ``cls`` can be constructed on."""
    supported = []
    for kind, env_id in PROBE_ENV_IDS.items():
        with contextlib.closing(_make_env(env_id, seed=0)) as env, contextlib.suppress(Exception):
            _build_model(cls, env, None, seed=0)
            supported.append(kind)
    return tuple(supported)


def supported_action_spaces(cls: type[BaseAlgorithm]) -> tuple[type[spaces.Space], ...]:
    """The kinds of action space ``cls`` supports.

    Its ``supported_action_spaces`` class attribute when it has one; otherwise (SB3's own classes pass theirs to
    the base constructor only) the kinds of the probe environments it can be constructed on.

    :raises TypeError: when the attribute is not a non-empty tuple of ``gymnasium.spaces`` classes
    """
    declared = getattr(cls, "supported_action_spaces", None)
    if declared is None:
        return _probe_action_spaces(cls)
    kinds = declared if isinstance(declared, tuple) else ()
    if not kinds or not all(inspect.isclass(kind) and issubclass(kind, spaces.Space) for kind in kinds):
        raise TypeError(
            f"{cls.__name__}.supported_action_spaces must be a non-empty tuple of gymnasium.spaces classes, "
            f"got {declared!r}"
        )
    return kinds


def suitable_env_id(cls: type[BaseAlgorithm]) -> str:
    """A small environment whose action space ``cls`` supports: CartPole-v1 (Discrete), Pendulum-v1 (Box), else
    a probe environment (MultiDiscrete, MultiBinary).

    :raises ValueError: when ``cls`` supports none of these kinds of action space
    """
    supported = supported_action_spaces(cls)
    for kind, env_id in SUITABLE_ENV_IDS.items():
        if issubclass(kind, supported):  # a subclass of a supported kind is supported
            return env_id
    known = ", ".join(f"spaces.{kind.__name__}" for kind in SUITABLE_ENV_IDS)
    raise ValueError(
        f"{cls.__name__} supports the action spaces {supported or 'none that could be probed'}; check_algorithm "
        f"knows environments for {known}: pass env_id explicitly"
    )


class ProbeFeaturesExtractor(BaseFeaturesExtractor):
    """A custom features extractor for the ``policy_save_load`` check: flatten, one linear layer, ReLU.

    :param observation_space: a Box observation space (images included)
    :param features_dim: number of features
    """

    def __init__(self, observation_space: spaces.Space, features_dim: int = 7) -> None:
        super().__init__(observation_space, features_dim)
        self.linear = th.nn.Linear(get_flattened_obs_dim(observation_space), features_dim)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.relu(self.linear(observations.flatten(1)))


# --- the report ------------------------------------------------------------------------------------------------


class ConformanceError(AssertionError):
    """An algorithm class failed conformance checks; :attr:`failures` says which and what to fix.

    :param n_passed: the number of checks that passed (the failed ones are counted from ``failures``)
    """

    def __init__(self, algorithm: str, env_id: str, failures: list[CheckFailure], n_passed: int = 0) -> None:
        self.algorithm = algorithm
        self.env_id = env_id
        self.failures = failures
        failed = len(dict.fromkeys(failure.check for failure in failures))
        problems = f" ({len(failures)} problems)" if len(failures) > failed else ""
        header = f"{algorithm} failed {failed} of {failed + n_passed} conformance checks on {env_id}{problems}:"
        super().__init__("\n".join([header, *map(str, failures)]))


@dataclass
class CheckFailure:
    """One failed check: which, what went wrong, and how to fix it."""

    check: str
    problem: str
    fix: str = ""

    def __str__(self) -> str:
        """The failure as :class:`ConformanceError` lists it: the check and the problem, then the fix."""
        fix = f"\n    fix: {self.fix}" if self.fix else ""
        return f"  - [{self.check}] {self.problem}{fix}"


@dataclass
class ConformanceReport:
    """What :func:`check_algorithm` ran (it raises :class:`ConformanceError` instead of returning on failure).

    :param action_spaces: the kinds of action space the class supports: its declaration, else (also when the
        declaration is invalid, which the ``action_spaces`` check reports) the probe environments it constructs on
    :param declared: whether the class has a ``supported_action_spaces`` attribute
    """

    algorithm: str
    env_id: str
    action_spaces: tuple[type[spaces.Space], ...]
    declared: bool
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _Skip(Exception):
    """Raised by a check that does not apply to the class; the message says why."""


# --- the checks ------------------------------------------------------------------------------------------------


@dataclass
class _Checker:
    """The checks, one method each (named as in :data:`CHECKS`); :meth:`fail` records problems of the running one.

    The checks of :data:`_MODEL_CHECKS` check :attr:`model`, which the ``learn`` check trains.

    :param cls: the algorithm class
    :param report: what runs, where: the environment of the trained model, the declaration, the skipped checks
    :param hyperparams: constructor arguments on top of :data:`TINY_HYPERPARAMS`
    :param timesteps: budget of each ``learn`` call
    :param seed: seed of the models and environments
    :param probe_spaces: the kinds of action space whose probe environments may be used
    :param check: the check running now, under whose name :meth:`fail` records problems
    """

    cls: type[BaseAlgorithm]
    report: ConformanceReport
    hyperparams: dict[str, Any]
    timesteps: int
    seed: int
    probe_spaces: tuple[type[spaces.Space], ...]
    check: str = "learn"
    failures: list[CheckFailure] = field(default_factory=list)
    model: Any = None
    observations: Any = None

    def fail(self, problem: str, fix: str = "") -> None:
        """Record ``problem`` and how to ``fix`` it under the running check."""
        self.failures.append(CheckFailure(self.check, problem, fix))

    def env(self, offset: int = 0) -> VecEnv:
        """The checks' environment, seeded with ``seed + offset``."""
        return _make_env(self.report.env_id, self.seed + offset)

    def build(self, env: VecEnv, **hyperparams: Any) -> Any:
        """A model of the class on ``env``, with the checks' hyperparameters updated with ``hyperparams``."""
        return _build_model(self.cls, env, {**self.hyperparams, **hyperparams}, self.seed)

    def expect_same(self, before: Any, after: Any, problem: str, fix: str, where: str = "after load") -> bool:
        """Whether ``before`` and ``after`` (nested dicts of tensors and values) are equal; if not, record
        ``problem`` followed by the first differences."""
        differences = list_differences(before, after, where)
        if differences:
            self.fail(f"{problem}: {'; '.join(differences[:3])}", fix)
        return not differences

    def learn_on(self, env: VecEnv, problem: str, fix: str, **hyperparams: Any) -> None:
        """Build a model on ``env``, learn, and check its predictions (:meth:`check_predictions`); record ``problem``
        (followed by the exception) when one of these raises."""
        try:
            model = self.build(env, **hyperparams)
            model.learn(total_timesteps=self.timesteps)
            self.check_predictions(model, _sample_observations(env, 4))
        except Exception as exc:
            self.fail(f"{problem}: {describe_error(exc)}", fix)

    def check_predictions(self, model: BaseAlgorithm, obs: Any) -> None:
        """What SB3's ``predict`` promises, on the batch ``obs``: one action per observation, shaped like the action
        space and inside it (deterministic and not); one unbatched observation gives one action; a recurrent state is
        accepted back; ``deterministic=True`` repeats itself, and a stochastic policy samples with
        ``deterministic=False``."""
        space = model.action_space
        n = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        expected = (n, *(space.shape or ()))
        for deterministic in (False, True):  # deterministic last: its actions are compared below
            actions, state = model.predict(obs, deterministic=deterministic)
            if np.shape(actions) != expected:
                self.fail(
                    f"predict() on {n} observations returned actions of shape {np.shape(actions)}, expected {expected}",
                    "return one action per observation, shaped like the action space: reshape actions to "
                    "(n_envs, *action_space.shape) wherever they leave the network",
                )
                return
            outside = [action for action in actions if not space.contains(np.asarray(action, dtype=space.dtype))]
            if outside:
                self.fail(
                    f"predicted actions {outside[:2]} are outside the action space {space}",
                    "clip or unscale actions to the action space's bounds in predict()",
                )
        first = {key: value[0] for key, value in obs.items()} if isinstance(obs, dict) else obs[0]
        single, _ = model.predict(first, deterministic=True)
        if np.shape(single) != space.shape:
            self.fail(
                f"predict() on one unbatched observation returned shape {np.shape(single)}, expected {space.shape}",
                "accept unbatched observations as SB3's predict does",
            )
        if state is not None:
            # recurrent policies: the returned state must be accepted back
            model.predict(obs, state=state, episode_start=np.zeros(n, dtype=bool), deterministic=True)
        if any(not np.array_equal(actions, model.predict(obs, deterministic=True)[0]) for _ in range(4)):
            self.fail(
                "predict(deterministic=True) returned different actions for the same observations",
                "with deterministic=True return the policy's mode (pass `deterministic` down to the policy) "
                "and use no randomness",
            )
        stochastic = hasattr(model.policy, "action_dist")
        if stochastic and all(np.array_equal(model.predict(obs, deterministic=False)[0], actions) for _ in range(10)):
            self.fail(
                "predict(deterministic=False) always returned the deterministic actions of a stochastic policy",
                "with deterministic=False sample from the policy's distribution",
            )

    def _probes(self, kind: type[spaces.Space]) -> bool:
        """Whether the class supports ``kind`` and its probes may be used."""
        return kind in self.probe_spaces and issubclass(kind, self.report.action_spaces)

    def learn(self) -> None:
        try:
            model = self.build(self.env())
            returned = model.learn(total_timesteps=self.timesteps)
        except Exception as exc:
            self.fail(
                f"constructing or learning on {self.report.env_id} failed: {describe_error(exc)}",
                "make the class construct and learn with SB3's arguments (policy, env, seed, device, ...)",
            )
            return
        if returned is not model:
            self.fail(f"learn() returned {returned!r}, not the model", "end learn() with `return self`")
        if model.num_timesteps < self.timesteps:
            self.fail(
                f"learn(total_timesteps={self.timesteps}) stopped after {model.num_timesteps} steps",
                "count every environment step in self.num_timesteps and loop until total_timesteps is reached",
            )
        self.model = model
        self.observations = _sample_observations(self.env(7))

    def seeding(self) -> None:
        twin = self.build(self.env())
        twin.learn(total_timesteps=self.timesteps)
        fix = "draw every random number from generators seeded by set_random_seed (torch, numpy, self.action_space) "
        fix += "and seed the environments from self.seed"
        problem = f"two models built and trained with seed={self.seed} differ"
        same = self.expect_same(model_tensors(self.model), model_tensors(twin), problem, fix, "in the second model")
        if same and not same_predictions(self.model, twin, self.observations):
            self.fail(
                f"two models trained with seed={self.seed} predict differently",
                "make predict depend only on the parameters and the observation",
            )

    def predict(self) -> None:
        self.check_predictions(self.model, self.observations)

    def save_load(self) -> None:
        model = self.model
        loaded = save_and_load(model, partial(self.cls.load, env=self.env(3)))
        if type(loaded) is not self.cls:
            self.fail(
                f"{self.cls.__name__}.load returned a {type(loaded).__name__}",
                "do not override load(), or return an instance of the class",
            )
        self.expect_same(
            model_tensors(model),
            model_tensors(loaded),
            "parameters do not round-trip",
            "list every torch module and optimizer in _get_torch_save_params() and build them in _setup_model()",
        )
        self.expect_same(
            scalar_attributes(model),
            scalar_attributes(loaded),
            "attributes do not round-trip",
            "do not list hyperparameters in _excluded_save_params(), and do not reset them in _setup_model()",
        )
        if not same_predictions(model, loaded, self.observations):
            self.fail(
                "the loaded model predicts different actions from the saved one",
                "save every tensor that predict() uses (_get_torch_save_params)",
            )

    def evaluate_policy(self) -> None:
        mean, std = evaluate_policy(self.model, self.env(5), n_eval_episodes=2, deterministic=True, warn=False)
        if not (np.isfinite(mean) and np.isfinite(std)):
            self.fail(
                f"evaluate_policy returned {mean} ± {std}",
                "predict() must return valid actions for evaluate_policy's single environment",
            )

    def set_env(self) -> None:
        model = self.model
        steps_before = model.num_timesteps
        model.set_env(self.env(11))
        model.learn(total_timesteps=min(32, self.timesteps), reset_num_timesteps=False)
        if model.num_timesteps <= steps_before:
            self.fail("learn() after set_env() took no environment step", "use self.env (set by set_env) in learn()")
        with contextlib.suppress(ValueError):  # the refusal expected (SB3's check_for_correct_spaces)
            model.set_env(_make_env(identity_env, 0, space=spaces.Box(-1.0, 1.0, (5,), dtype=np.float32)))
            self.fail(
                "set_env() accepted an environment with a different observation space",
                "do not override set_env(), or call check_for_correct_spaces() in it",
            )

    def action_spaces(self) -> None:
        """Every declared (or, without a declaration, constructible) kind of probe works; the others are refused."""
        try:
            supported_action_spaces(self.cls)
        except TypeError as exc:
            fix = "declare `supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Box, ...)`"
            self.fail(str(exc), fix)
            return
        for kind in self.probe_spaces:
            name = f"spaces.{kind.__name__}"
            known = KNOWN_UPSTREAM_ISSUES.get((f"{self.cls.__module__}:{self.cls.__qualname__}", kind))
            if known is not None:
                self.report.skipped.append(f"action_spaces on {name}: {known}")
                continue
            env = _make_env(PROBE_ENV_IDS[kind], self.seed)
            if issubclass(kind, self.report.action_spaces):
                how = "declares" if self.report.declared else "accepts (when constructed; it declares nothing)"
                self.learn_on(
                    env,
                    f"{how} {name} but fails on a {name} environment ({env.action_space})",
                    f"support {name} or remove it from supported_action_spaces "
                    "(refuse it in __init__ with a ValueError naming the supported spaces)",
                )
                continue
            try:
                self.build(env)
            except Exception as exc:
                if not is_action_space_error(exc):
                    self.fail(
                        f"refuses the undeclared {name} with an unclear error: {describe_error(exc)}",
                        "raise ValueError('... does not support the action space ...: it supports ...') when "
                        "constructed on an unsupported action space",
                    )
            else:
                self.fail(
                    f"accepts a {name} action space ({env.action_space}) that it does not declare",
                    f"declare {name} in supported_action_spaces if it works, or refuse it in __init__ "
                    "(pass supported_action_spaces to the base constructor)",
                )

    def dict_observations(self) -> None:
        """A class with a MultiInput policy alias learns and predicts on Dict observations: SB3's
        ``SimpleMultiObsEnv`` (an image and a vector) with Box actions, or Discrete ones when Box is not supported."""
        aliases = [alias for alias in getattr(self.cls, "policy_aliases", {}) if alias.startswith("MultiInput")]
        if not aliases:
            raise _Skip("no MultiInput policy alias")
        kinds = [kind for kind in (spaces.Box, spaces.Discrete) if self._probes(kind)]
        if not kinds:
            raise _Skip("SimpleMultiObsEnv has Box or Discrete actions, and neither is supported (or probed)")
        env = _make_env(sb3_envs.SimpleMultiObsEnv, self.seed, discrete_actions=kinds[0] is spaces.Discrete)
        self.learn_on(
            env,
            f"the {aliases[0]} alias promises Dict observations, but learning on {env.observation_space} fails",
            "treat observations as a dict of tensors wherever they are stored, sliced or concatenated (SB3's "
            "DictReplayBuffer / DictRolloutBuffer show how), or drop the MultiInput alias",
            policy=aliases[0],
        )

    def box_actions(self) -> None:
        """A class that supports Box learns and predicts with a multi-dimensional Box action space."""
        if not self._probes(spaces.Box):
            raise _Skip("Box action spaces are not supported")
        space = spaces.Box(-1.0, 1.0, MULTI_DIMENSIONAL_BOX_SHAPE, dtype=np.float32)
        env = _make_env(identity_env, self.seed, space=space, ep_length=16)
        self.learn_on(
            env,
            f"learning with the action space {env.action_space} fails",
            "networks output flat actions of size prod(shape): reshape them to (n_envs, *action_space.shape) "
            "before unscaling or stepping the environment",
        )

    def policy_save_load(self) -> None:
        """``policy.save`` then ``PolicyClass.load`` keep a custom features extractor and the optimizer settings."""
        env = self.env()
        policy_class = type(self.build(env).policy)
        parameters = inspect.signature(policy_class).parameters
        if "features_extractor_class" not in parameters:
            raise _Skip(f"{policy_class.__name__} takes no features_extractor_class")
        if isinstance(env.observation_space, spaces.Dict):
            raise _Skip(f"the probe extractor needs Box observations, not {self.report.env_id}'s")
        policy_kwargs = {
            **(self.hyperparams.get("policy_kwargs") or {}),
            "features_extractor_class": ProbeFeaturesExtractor,
            "features_extractor_kwargs": {"features_dim": 7},
        }
        if "optimizer_class" in parameters and "optimizer_kwargs" in parameters:
            policy_kwargs.update(optimizer_class=th.optim.AdamW, optimizer_kwargs={"weight_decay": 0.0123})
        saved = self.build(env, policy_kwargs=policy_kwargs).policy
        fix = "return every constructor argument (features_extractor_class/kwargs, optimizer_class/kwargs, ...) from "
        fix += "_get_constructor_parameters()"
        try:
            loaded = save_and_load(saved, type(saved).load)
        except Exception as exc:
            what = f"{type(saved).__name__}.load of a policy with a custom features extractor fails"
            self.fail(f"{what}: {describe_error(exc)}", fix)
            return
        problem = "the features extractor, the optimizer settings or the tensors do not round-trip"
        same = self.expect_same(policy_settings(saved), policy_settings(loaded), problem, fix)
        if same and not same_predictions(saved, loaded, _sample_observations(env, 4)):
            self.fail("the loaded policy predicts different actions from the saved one", fix)


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
    name = getattr(cls, "__qualname__", repr(cls))
    if not (inspect.isclass(cls) and issubclass(cls, BaseAlgorithm)):
        problem = f"{cls!r} is not a subclass of stable_baselines3's BaseAlgorithm"
        fix = "derive the algorithm from BaseAlgorithm, OnPolicyAlgorithm or OffPolicyAlgorithm"
        raise ConformanceError(name, env_id or "-", [CheckFailure("class", problem, fix)])
    selected = {require_choice("checks", check, CHECKS) for check in (CHECKS if checks is None else checks)}
    require_integer("timesteps", timesteps, 1)
    chosen = PROBE_ENV_IDS if probe_spaces is None else probe_spaces
    probes = tuple(require_choice("probe_spaces", kind, PROBE_ENV_IDS) for kind in chosen)
    try:
        env_id = env_id or suitable_env_id(cls)
    except (TypeError, ValueError) as exc:
        fix = "declare the supported action spaces or pass env_id"
        raise ConformanceError(name, "-", [CheckFailure("action_spaces", str(exc), fix)]) from None

    try:
        supported = supported_action_spaces(cls)
    except TypeError:  # an invalid declaration, which the action_spaces check reports: the probes tell instead
        supported = _probe_action_spaces(cls)
    report = ConformanceReport(
        name, env_id, supported, declared=getattr(cls, "supported_action_spaces", None) is not None
    )
    checker = _Checker(cls, report, hyperparams or {}, timesteps, seed, probes)
    if selected & set(_MODEL_CHECKS):
        selected.add("learn")  # the checks of the trained model need it
    for check in [check for check in CHECKS if check in selected]:
        if check in _MODEL_CHECKS and checker.model is None:
            report.skipped.append(check)  # learning failed: there is no model to check
            continue
        checker.check = check
        count = len(checker.failures)
        try:
            getattr(checker, check)()
        except _Skip as skip:
            report.skipped.append(f"{check}: {skip}")
            continue
        except Exception as exc:
            checker.fail(f"raised {describe_error(exc)}")
        if len(checker.failures) == count:
            report.passed.append(check)
    if checker.failures:
        raise ConformanceError(name, env_id, checker.failures, len(report.passed))
    return report

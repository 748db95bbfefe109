"""The RL Baselines3 Zoo bridge: every registered algorithm in rl_zoo3's train, enjoy, optimize and plots.

The zoo has no plugin mechanism. Its scripts read three shared tables: ``rl_zoo3.utils.ALGOS`` (``--algo`` name →
class, turned into the ``--algo`` choices when the argument parser is built), and
``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER`` (Optuna samplers for ``--optimize`` and
the converters that turn a stored trial back into hyperparameters). :func:`register_with_zoo` fills them from the
sbx-lecture registry, built-in and third-party algorithms alike, before any zoo parser runs.

``sbx-lecture zoo SCRIPT ARGS...`` (:func:`main`) registers, then runs the zoo's script in this process with
``sys.argv`` set to ``ARGS``. For ``train`` it first

- uses the algorithm's registered zoo file (``zoo_configs/<algo>.yml`` for the lecture's algorithms) when no
  ``-conf``/``--conf-file`` is given; the zoo's own files stay in force for SB3's and sb3-contrib's algorithms;
- checks that every hyperparameter of the chosen section is accepted by the algorithm's constructor, and says which
  one is not (with the closest accepted names) before anything is trained;
- with ``--optimize``, defaults to the zoo's journal-file storage ``<log-folder>/<algo>/<env>_optuna.log`` and the
  study ``<algo>_<env>_n<budget>``, so that runs (and worker processes) with one budget add to one study; creates
  the study before any trial and says in one line whether it joins an existing one; ``--workers K`` starts K worker
  processes on that study (or on any ``--storage`` URL shared by several machines: a database, a Redis journal).

:func:`register_with_zoo` also wraps rl_zoo3's ``ExperimentManager`` (registered zoo files, one-line errors, Redis
storages, studies created once), for the bridge and for the plain zoo alike: with sbx-lecture installed, the start-up
hook ``_sbx_lecture_zoo_hook`` calls :func:`autoregister` when ``rl_zoo3`` is first imported.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import random
import re
import runpy
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sbx_lecture import zoo_config
from sbx_lecture.infra.validation import is_action_space_error
from sbx_lecture.loading.zoo_run import LOADING_SCRIPTS, pop_trusted
from sbx_lecture.plugins import PluginManager, get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec, RegistryError, normalize_name, unknown_name_message

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

PROGRAM = "sbx-lecture zoo"
USAGE_ERROR_STATUS = 2

#: Keys of a zoo hyperparameter section that the zoo consumes itself; they never reach the constructor.
ZOO_ONLY_KEYS = zoo_config.SECTION_ONLY_KEYS

#: Constructor arguments the zoo passes from its own command line; a hyperparameter file must not set them.
ZOO_COMMAND_LINE_KEYS = frozenset({"env", "seed", "verbose", "device", "tensorboard_log"})

#: Keys whose ``lin_<value>`` strings the zoo turns into linear schedules (any other key receives the string).
ZOO_SCHEDULE_KEYS = frozenset({"learning_rate", "clip_range", "clip_range_vf", "delta_std"})

#: Flag of ``sbx-lecture zoo train`` (not of rl_zoo3) that starts several optimization workers.
WORKERS_FLAG = "--workers"
#: Flag of every ``sbx-lecture zoo`` script (not of rl_zoo3): torch CPU threads, 1 unless given.
THREADS_FLAG = "--threads"


class ZooScript(NamedTuple):
    """One rl_zoo3 script that ``sbx-lecture zoo`` can run.

    :param module: the rl_zoo3 module
    :param function: the function that parses ``sys.argv`` and runs; ``None``: run the module as ``__main__``
    :param summary: one line for ``sbx-lecture zoo --help``
    """

    module: str
    function: str | None
    summary: str


ZOO_SCRIPTS: dict[str, ZooScript] = {
    "train": ZooScript("rl_zoo3.train", "train", "train an agent, or --optimize its hyperparameters with Optuna"),
    "enjoy": ZooScript("rl_zoo3.enjoy", "enjoy", "run a trained agent (--no-render for no window)"),
    "record_video": ZooScript("rl_zoo3.record_video", None, "record a video of a trained agent"),
    "record_training": ZooScript("rl_zoo3.record_training", None, "record videos of a run's checkpoints"),
    "plot_train": ZooScript("rl_zoo3.plots.plot_train", "plot_train", "training curves from the monitor files"),
    "all_plots": ZooScript("rl_zoo3.plots.all_plots", "all_plots", "evaluation curves of algorithms × environments"),
    "plot_from_file": ZooScript("rl_zoo3.plots.plot_from_file", "plot_from_file", "plots from an all_plots file"),
    "load_from_hub": ZooScript("rl_zoo3.load_from_hub", None, "download a trained agent from the Hugging Face hub"),
}

#: Zoo scripts that are not offered, with the reason (said in one line when one is asked for).
UNAVAILABLE_SCRIPTS: dict[str, str] = {
    "push_to_hub": (
        "rl_zoo3's push_to_hub is not offered: it imports generate_metadata from huggingface_sb3, which the only "
        "published sb3-team-hf-integration (3.2) no longer has; upload with huggingface_hub's upload_folder instead"
    ),
    "benchmark": "rl_zoo3's benchmark is not offered: it runs a script that rl_zoo3 no longer ships",
}


class ZooBridgeError(Exception):
    """A zoo command line that cannot work, explained before rl_zoo3 starts."""


class ZooConfigError(ZooBridgeError, zoo_config.ZooConfigError):
    """A zoo hyperparameter file that is missing, has no section for the environment, or names a refused key."""


# --------------------------------------------------------------------------------------------------------------
# The ALGOS table and the Optuna tables
# --------------------------------------------------------------------------------------------------------------


class LazyAlgorithms(MutableMapping[str, "type[BaseAlgorithm]"]):
    """rl_zoo3's ``ALGOS`` with the registry's algorithms added; a registered class is imported on first lookup.

    The zoo only reads ``ALGOS.keys()`` (its ``--algo`` choices), ``ALGOS[name]`` and the class's ``__name__``, so
    listing the names never imports an algorithm module.

    :param zoo_algorithms: the zoo's own table, kept for the names no plugin registers
    """

    def __init__(self, zoo_algorithms: Mapping[str, type[BaseAlgorithm]]) -> None:
        self.zoo_algorithms: Mapping[str, type[BaseAlgorithm]] = zoo_algorithms
        self._entries: dict[str, type[BaseAlgorithm] | AlgorithmSpec] = dict(zoo_algorithms)

    def sync(self, specs: Sequence[AlgorithmSpec]) -> None:
        """Make the table the zoo's algorithms plus ``specs`` (which win on a shared name), and nothing older."""
        for name, entry in list(self._entries.items()):
            if isinstance(entry, AlgorithmSpec):
                if name in self.zoo_algorithms:
                    self._entries[name] = self.zoo_algorithms[name]
                else:
                    del self._entries[name]
        for spec in specs:
            self._entries[spec.name] = spec

    def spec(self, name: str) -> AlgorithmSpec | None:
        """The registry entry behind ``name``, or ``None`` for one of the zoo's own or a hand-added class."""
        entry = self._entries.get(name)
        return entry if isinstance(entry, AlgorithmSpec) else None

    def is_loaded(self, name: str) -> bool:
        """Whether looking ``name`` up would not import anything any more."""
        entry = self._entries[name]
        return entry.is_loaded if isinstance(entry, AlgorithmSpec) else True

    def __contains__(self, name: object) -> bool:  # without importing the algorithm, as Mapping's would
        return name in self._entries

    def __getitem__(self, name: str) -> type[BaseAlgorithm]:
        entry = self._entries[name]
        return entry.load() if isinstance(entry, AlgorithmSpec) else entry

    def __setitem__(self, name: str, algorithm: type[BaseAlgorithm]) -> None:
        self._entries[name] = algorithm

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self._entries)})"


@dataclass(frozen=True, eq=False)
class LazySampler:
    """The registered Optuna sampler of an algorithm, imported on first call (the zoo's sampler signature)."""

    spec: AlgorithmSpec

    def __call__(self, trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
        sampler = self.spec.load_zoo_sampler()
        if sampler is None:
            raise ZooBridgeError(f"algorithm {self.spec.name!r} ({self.spec.origin}) registers no Optuna sampler")
        return sampler(trial, n_actions, n_envs, additional_args)


@dataclass(frozen=True, eq=False)
class LazyConverter:
    """Turns a stored trial's parameters back into hyperparameters (the zoo's ``--trial-id``), imported on use.

    It is the plugin's ``zoo_converter`` when it registered one, else the ``convert`` attribute of its sampler
    (as the samplers of :mod:`sbx_lecture.zoo_samplers` carry).
    """

    spec: AlgorithmSpec

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        converter = self.spec.extra.get("zoo_converter")
        if isinstance(converter, str):
            converter = _import_object(converter)
        if converter is None:
            converter = getattr(self.spec.load_zoo_sampler(), "convert", None)
        if converter is None:
            raise ZooBridgeError(
                f"algorithm {self.spec.name!r} ({self.spec.origin}) registers no converter for stored trials: "
                "register it with zoo_converter=..., or give the sampler a 'convert' attribute"
            )
        return dict(converter(params))


def _import_object(location: str) -> Any:
    module_name, _, attribute_path = location.partition(":")
    obj: Any = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        obj = getattr(obj, attribute)
    return obj


def register_with_zoo(manager: PluginManager | None = None) -> LazyAlgorithms:
    """Put every registered algorithm into rl_zoo3's ``ALGOS``, samplers and converters; safe to call again.

    ``ALGOS`` becomes a :class:`LazyAlgorithms` (rebound in every loaded ``rl_zoo3`` module that held the zoo's
    dict, so the modules imported later get it too); the Optuna tables are the zoo's dicts, updated in place. A
    registered name wins over the zoo's own entry of the same name. A sampler is set only where the plugin gave one,
    so SB3's algorithms keep the zoo's samplers.

    :param manager: the plugin manager to read (default: the process-wide one)
    :return: the zoo's ``ALGOS`` table
    """
    try:
        import rl_zoo3  # noqa: F401  (imports rl_zoo3.utils and with it the zoo's ALGOS)
        import rl_zoo3.hyperparams_opt as zoo_optimization
        import rl_zoo3.utils as zoo_utils
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith(("rl_zoo3", "optuna")):
            raise
        raise ZooBridgeError(f"the zoo bridge needs {error.name}: pip install 'sbx-lecture[zoo]'") from None

    manager = manager or get_plugin_manager()
    current = zoo_utils.ALGOS
    table = current if isinstance(current, LazyAlgorithms) else LazyAlgorithms(dict(current))
    specs = list(manager.registry)
    table.sync(specs)
    for module_name, module in list(sys.modules.items()):
        if (module_name == "rl_zoo3" or module_name.startswith("rl_zoo3.")) and (
            getattr(module, "ALGOS", None) is current
        ):
            module.ALGOS = table  # type: ignore[attr-defined]

    for spec in specs:
        if spec.zoo_sampler is not None:
            zoo_optimization.HYPERPARAMS_SAMPLER[spec.name] = LazySampler(spec)
        if spec.zoo_sampler is not None or spec.extra.get("zoo_converter") is not None:
            zoo_optimization.HYPERPARAMS_CONVERTER[spec.name] = LazyConverter(spec)  # type: ignore[assignment]
    _patch_experiment_manager()
    return table


#: Value of ``SBX_LECTURE_ZOO_AUTOREGISTER`` that switches the plain zoo's automatic registration off.
AUTOREGISTER_VARIABLE = "SBX_LECTURE_ZOO_AUTOREGISTER"


def autoregister() -> None:
    """Called by the start-up hook (``_sbx_lecture_zoo_hook``) when a plain zoo script first imports ``rl_zoo3``.

    It registers every algorithm (:func:`register_with_zoo`) and makes the bridge's errors (:class:`ZooBridgeError`)
    and the zoo's own "missing package" errors (an ``ImportError`` that names the ``pip install``) one line on
    stderr instead of a traceback. A registration that fails (a broken plugin) leaves the zoo with its
    own algorithms and says so in one line (``SBX_LECTURE_DEBUG=1``: the traceback).
    """
    try:
        register_with_zoo()
    except Exception as error:  # a broken plugin must not break the zoo itself
        if os.environ.get("SBX_LECTURE_DEBUG"):
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        print(
            f"sbx-lecture: the RL Zoo sees only its own algorithms ({reason}); "
            f"{AUTOREGISTER_VARIABLE}=0 stops this registration",
            file=sys.stderr,
        )
        return
    previous = sys.excepthook
    if getattr(previous, "_sbx_lecture_zoo", False):
        return

    def excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        # the bridge's errors, and the zoo's "install this package" ones (--track without wandb, ...)
        one_line = isinstance(error, ZooBridgeError) or (isinstance(error, ImportError) and "pip install" in str(error))
        if one_line and not os.environ.get("SBX_LECTURE_DEBUG"):
            message = " ".join(str(error).split())
            print(f"{Path(sys.argv[0]).name or 'rl_zoo3'}: error: {message}", file=sys.stderr)
        else:
            previous(kind, error, traceback)

    excepthook._sbx_lecture_zoo = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


# --------------------------------------------------------------------------------------------------------------
# The zoo's ExperimentManager: registered zoo files, one-line errors, storages that are not a journal file
# --------------------------------------------------------------------------------------------------------------


def _registered_table() -> LazyAlgorithms | None:
    import rl_zoo3.utils as zoo_utils

    table = zoo_utils.ALGOS
    return table if isinstance(table, LazyAlgorithms) else None


def _refusal(algo: str, env: Any, hyperparams: Mapping[str, Any]) -> ZooBridgeError:
    """The error for action noise (``noise_type``) on an action space that is not a Box.

    When the algorithm itself refuses the space, the error is the one ``sbx-lecture train`` gives (the algorithm is
    built without the noise to learn it); else it names the noise settings.
    """
    from sbx_lecture.training import UsageError, build_model

    table = _registered_table()
    noise_keys = ("noise_type", "noise_std", "policy")
    try:
        algorithm = table[algo] if table is not None else None
        if algorithm is not None:
            kwargs = {key: value for key, value in hyperparams.items() if key not in noise_keys}
            build_model(algo, algorithm, env, {"policy": hyperparams.get("policy")}, kwargs, seed=0)
    except UsageError as error:
        return ZooBridgeError(str(error))
    return ZooConfigError(
        f"noise_type {hyperparams['noise_type']!r} is action noise, which needs a Box action space, not "
        f"{env.action_space}: remove noise_type and noise_std from the hyperparameters (-params noise_type:None)"
    )


def _patch_experiment_manager() -> None:
    """Wrap four methods of rl_zoo3's ``ExperimentManager``, once (the plain zoo and the bridge both get them).

    - ``__init__``: without ``-conf``, an algorithm that registers a zoo file uses it (the zoo would look for
      ``rl_zoo3/hyperparams/<algo>.yml``);
    - ``_preprocess_action_noise`` and ``setup_experiment``: an action space the algorithm (or the zoo's action
      noise) cannot use is a :class:`ZooBridgeError`, worded as ``sbx-lecture train`` words it;
    - ``hyperparameters_optimization`` and ``load_trial``: the study is created before any trial (with retries, so
      that workers started at once on a fresh database do not race on its tables), and ``--storage`` may be a
      Redis URL as well (see :func:`open_study_storage`).
    """
    from gymnasium import spaces
    from rl_zoo3.exp_manager import ExperimentManager

    if getattr(ExperimentManager, "_sbx_lecture_patched", False):
        return
    original_init = ExperimentManager.__init__
    original_noise = ExperimentManager._preprocess_action_noise
    original_setup = ExperimentManager.setup_experiment
    original_optimization = ExperimentManager.hyperparameters_optimization
    original_load_trial = ExperimentManager.load_trial
    config_index = list(inspect.signature(original_init).parameters).index("config")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        config = kwargs.get("config", args[config_index - 1] if len(args) >= config_index else None)
        table = _registered_table()
        spec = table.spec(self.algo) if table is not None and not config else None
        registered = zoo_config.registered_zoo_file(spec) if spec is not None else None
        if registered is not None:
            self.config = str(registered)

    def _preprocess_action_noise(
        self: Any, hyperparams: dict[str, Any], saved_hyperparams: dict[str, Any], env: Any
    ) -> dict[str, Any]:
        self._sbx_lecture_action_space = env.action_space
        if hyperparams.get("noise_type") is not None and not isinstance(env.action_space, spaces.Box):
            raise _refusal(self.algo, env, hyperparams)
        return original_noise(self, hyperparams, saved_hyperparams, env)

    def setup_experiment(self: Any) -> Any:
        try:
            return original_setup(self)
        except (AssertionError, ValueError, TypeError, KeyError) as error:
            space = getattr(self, "_sbx_lecture_action_space", None)
            if space is None or not is_action_space_error(error):
                raise
            message = " ".join(str(error).split())
            raise ZooBridgeError(
                f"algorithm {self.algo!r} does not support the action space {space} of this environment: {message}"
            ) from error

    def hyperparameters_optimization(self: Any) -> None:
        if self.storage is not None and self.study_name is not None:
            ensure_study(self.storage, self.study_name)
        with _storages_from_urls():
            original_optimization(self)

    def load_trial(self: Any, storage: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with _storages_from_urls():
            return original_load_trial(self, storage, *args, **kwargs)

    ExperimentManager.__init__ = __init__  # type: ignore[method-assign]
    ExperimentManager._preprocess_action_noise = _preprocess_action_noise  # type: ignore[method-assign]
    ExperimentManager.setup_experiment = setup_experiment  # type: ignore[method-assign]
    ExperimentManager.hyperparameters_optimization = hyperparameters_optimization  # type: ignore[method-assign]
    ExperimentManager.load_trial = load_trial  # type: ignore[method-assign]
    ExperimentManager._sbx_lecture_patched = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------------------------
# Hyperparameter files
# --------------------------------------------------------------------------------------------------------------


def select_section(config: Mapping[str, Any], env_id: str, algo: str, source: str | Path) -> tuple[str, dict[str, Any]]:
    """The section rl_zoo3 will use for ``env_id``: its own, ``atari`` for Atari games, else ``default``.

    :return: the section's name and a copy of its hyperparameters
    :raises ZooConfigError: when there is none, with the closest section names
    """
    name = zoo_config.select_section(config, env_id, newest_version=False)
    if name is None:
        close = difflib.get_close_matches(env_id, list(config), n=3, cutoff=0.6)
        hint = f"; did you mean {_either(close)}?" if close else f"; sections: {', '.join(config)}"
        raise ZooConfigError(f"Hyperparameters not found for {algo}-{env_id} in {source}{hint}")
    return name, dict(config[name] or {})


def accepted_hyperparameters(algorithm: type[BaseAlgorithm]) -> frozenset[str] | None:
    """The keyword arguments of ``algorithm``'s constructor, or ``None`` when it takes ``**kwargs``."""
    names = set()
    for parameter in inspect.signature(algorithm.__init__).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(parameter.name)
    names.discard("self")
    return frozenset(names)


def refused_hyperparameters(algorithm: type[BaseAlgorithm], hyperparams: Mapping[str, Any]) -> dict[str, str]:
    """The keys of a zoo section that ``algorithm`` would refuse, each with the reason.

    Zoo-only keys (:data:`ZOO_ONLY_KEYS`) are accepted; ``noise_type`` only when the constructor takes
    ``action_noise``; the arguments the zoo sets from its command line (:data:`ZOO_COMMAND_LINE_KEYS`) are refused,
    and so is a ``lin_<value>`` string for a key the zoo does not turn into a schedule (:data:`ZOO_SCHEDULE_KEYS`).
    """
    accepted = accepted_hyperparameters(algorithm)
    refused: dict[str, str] = {}
    for key in hyperparams:
        if key in ZOO_COMMAND_LINE_KEYS:
            refused[key] = "is set by the zoo's command line, not by the hyperparameter file"
        elif (
            key == "noise_type"
            and hyperparams[key] is not None
            and accepted is not None
            and ("action_noise" not in accepted)
        ):
            refused[key] = f"becomes action_noise, which {algorithm.__name__} does not take"
        elif (
            isinstance(hyperparams[key], str) and hyperparams[key].startswith("lin_") and (key not in ZOO_SCHEDULE_KEYS)
        ):
            refused[key] = f"is a lin_ schedule, which the zoo builds only for {', '.join(sorted(ZOO_SCHEDULE_KEYS))}"
        elif key in ZOO_ONLY_KEYS or accepted is None or key in accepted:
            continue
        else:
            close = difflib.get_close_matches(key, sorted(accepted), n=3, cutoff=0.6)
            refused[key] = f"is not an argument of {algorithm.__name__}" + (
                f" (did you mean {_either(close)}?)" if close else ""
            )
    return refused


def _either(names: Sequence[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def check_hyperparameters(algorithm: type[BaseAlgorithm], hyperparams: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ZooConfigError` naming every key of ``hyperparams`` that ``algorithm`` refuses.

    :param where: what the keys come from, for the message (``"section 'CartPole-v1' of npg.yml"``)
    """
    refused = refused_hyperparameters(algorithm, hyperparams)
    if refused:
        reasons = "; ".join(f"{key!r} {reason}" for key, reason in refused.items())
        accepted = accepted_hyperparameters(algorithm) or frozenset()
        valid = sorted((accepted - ZOO_COMMAND_LINE_KEYS) | ZOO_ONLY_KEYS)
        raise ZooConfigError(
            f"Invalid hyperparameters for {algorithm.__module__}.{algorithm.__qualname__} in {where}: {reasons}. "
            f"Valid keys: {', '.join(key for key in valid if not key.startswith('_'))}"
        )


# --------------------------------------------------------------------------------------------------------------
# ``train``: the hyperparameter file, its check and the optimization defaults, before rl_zoo3 parses
# --------------------------------------------------------------------------------------------------------------


class _PreParseError(Exception):
    """The pre-parser could not read the command line; rl_zoo3's own parser will report it."""


class _PreParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _PreParseError(message)


def _train_pre_parser() -> argparse.ArgumentParser:
    """The few options of rl_zoo3's train that the bridge needs, spelt (and abbreviated) as the zoo spells them."""
    parser = _PreParser(add_help=False)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-f", "--log-folder", default="logs")
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    parser.add_argument("-optimize", "--optimize-hyperparameters", action="store_true")
    parser.add_argument("--storage")
    parser.add_argument("--study-name")
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("-n", "--n-timesteps", type=int, default=0)
    parser.add_argument("--track", action="store_true")
    return parser


@dataclass
class TrainPlan:
    """What ``sbx-lecture zoo train`` will run.

    :param argv: the arguments for rl_zoo3's train (the user's, with the bridge's additions at the end)
    :param algo: the ``--algo`` name
    :param env_id: the ``--env`` id
    :param config: the hyperparameter file in force (``None``: left to the zoo)
    :param workers: optimization worker processes to start (1: run in this process)
    :param storage: Optuna storage of ``--optimize`` (``None`` when not optimizing)
    :param study_name: Optuna study name of ``--optimize``
    :param seed: ``--seed`` (negative: random)
    """

    argv: list[str]
    algo: str
    env_id: str
    config: str | None
    workers: int = 1
    storage: str | None = None
    study_name: str | None = None
    seed: int = -1


def _pop_count(argv: list[str], flag: str) -> tuple[list[str], int]:
    """The arguments without ``flag N`` (or ``flag=N``), and ``N`` (1 when not given); ``N`` must be at least 1."""
    rest: list[str] = []
    count = 1
    arguments = iter(argv)
    for argument in arguments:
        if argument == flag or argument.startswith(flag + "="):
            value = argument.partition("=")[2] if "=" in argument else next(arguments, "")
            try:
                count = int(value)
            except ValueError:
                raise ZooBridgeError(f"{flag} needs a whole number, got {value!r}") from None
            if count < 1:
                raise ZooBridgeError(f"{flag} must be at least 1, got {count}")
        else:
            rest.append(argument)
    return rest, count


def _file_safe(env_id: str) -> str:
    return env_id.replace("/", "-").replace(":", "-")


def plan_train(argv: Sequence[str], table: LazyAlgorithms) -> TrainPlan:
    """Read ``sbx-lecture zoo train`` arguments and decide what rl_zoo3 gets (see the module docstring).

    :raises ZooBridgeError: for an unknown algorithm, a missing sampler, a bad ``--workers``
    :raises ZooConfigError: for a missing hyperparameter file or section, or a key the constructor refuses
    """
    arguments, workers = _pop_count(list(argv), WORKERS_FLAG)
    if {"-h", "--help"} & set(arguments):
        return TrainPlan(arguments, "", "", None)
    try:
        options, _ = _train_pre_parser().parse_known_args(arguments)
    except _PreParseError:
        return TrainPlan(arguments, "", "", None)  # rl_zoo3's parser explains the mistake

    arguments = _check_algo_choice(arguments, table)
    algo = normalize_name(options.algo) if options.algo not in table else options.algo

    config = options.conf_file
    spec = table.spec(algo)
    if config is None:
        registered = zoo_config.registered_zoo_file(spec) if spec is not None else None
        if registered is not None:
            config = str(registered)
            arguments += ["--conf-file", config]
        elif zoo_config.rl_zoo_file(algo) is None:
            origin = f"plugin {spec.origin}" if spec is not None else "its provider"
            raise ZooConfigError(
                f"no zoo hyperparameters for {algo!r}: {origin} registers no zoo file and rl_zoo3 ships none; "
                f"pass -conf FILE.yml with a section {options.env!r} (or 'default')"
            )
    if config is not None and config.endswith((".yml", ".yaml")):
        _check_config(table, algo, options.env, config, options.hyperparams)

    if options.track and importlib.util.find_spec("wandb") is None:
        raise ZooBridgeError("--track logs to Weights & Biases, which needs the package 'wandb': pip install wandb")
    plan = TrainPlan(arguments, algo, options.env, config, workers, seed=options.seed)
    if options.optimize_hyperparameters:
        _plan_optimization(plan, options, table)
    elif workers > 1:
        raise ZooBridgeError(f"{WORKERS_FLAG} starts optimization workers: it needs -optimize")
    return plan


def _check_config(table: LazyAlgorithms, algo: str, env_id: str, config: str, overrides: Sequence[str]) -> None:
    if not Path(config).is_file():
        raise ZooConfigError(f"hyperparameter file {config} does not exist")
    section_name, section = select_section(zoo_config.read_sections(Path(config)), env_id, algo, config)
    check_hyperparameters(table[algo], section, f"section {section_name!r} of {config}")
    override_keys = {item.split(":", 1)[0]: None for item in overrides if ":" in item}
    check_hyperparameters(table[algo], override_keys, "-params/--hyperparams")


def _plan_optimization(plan: TrainPlan, options: argparse.Namespace, table: LazyAlgorithms) -> None:
    import rl_zoo3.hyperparams_opt as zoo_optimization

    if plan.algo not in zoo_optimization.HYPERPARAMS_SAMPLER:
        spec = table.spec(plan.algo)
        origin = f" (plugin {spec.origin})" if spec is not None else ""
        raise ZooBridgeError(
            f"algorithm {plan.algo!r}{origin} has no Optuna sampler for -optimize: register it with zoo_sampler=..."
        )
    plan.storage = options.storage
    if plan.storage is None:
        plan.storage = os.path.join(options.log_folder, plan.algo, f"{_file_safe(plan.env_id)}_optuna.log")
        plan.argv += ["--storage", plan.storage]
    else:
        check_storage_driver(plan.storage)
    plan.study_name = options.study_name
    if plan.study_name is None:
        budget = options.n_timesteps or _file_budget(plan)
        suffix = f"_n{budget}" if budget else ""
        plan.study_name = f"{plan.algo}_{_file_safe(plan.env_id)}{suffix}"
        plan.argv += ["--study-name", plan.study_name]


def _file_budget(plan: TrainPlan) -> int | None:
    """The ``n_timesteps`` of the hyperparameter section in force, or ``None`` when it cannot be read."""
    path = plan.config or zoo_config.rl_zoo_file(plan.algo)
    if path is None or not str(path).endswith((".yml", ".yaml")):
        return None
    try:
        _, section = select_section(zoo_config.read_sections(Path(path)), plan.env_id, plan.algo, path)
        return int(float(section["n_timesteps"]))
    except (ZooConfigError, KeyError, TypeError, ValueError, OSError):
        return None


#: Set in the environment of the processes that ``--workers`` starts (their parent announced the study).
WORKER_VARIABLE = "SBX_LECTURE_ZOO_WORKER"


def announce_study(plan: TrainPlan) -> None:
    """Create ``plan``'s study unless it exists, and say in one line which it is (and whether it is joined)."""
    assert plan.storage is not None and plan.study_name is not None
    where = mask_url(plan.storage)
    try:
        trials, existed = ensure_study(plan.storage, plan.study_name)
    except ZooBridgeError:
        raise
    except Exception as error:
        reason = mask_url(" ".join(str(error).split("\n")[0].split())) or type(error).__name__
        raise ZooBridgeError(f"cannot open the Optuna storage {where}: {reason}") from None
    if os.environ.get(WORKER_VARIABLE):
        return
    if existed:
        print(
            f"{PROGRAM}: joining the existing study {plan.study_name!r} at {where} ({trials} trials so far); "
            "--study-name NAME starts another"
        )
    else:
        print(f"{PROGRAM}: created the study {plan.study_name!r} at {where}")


#: URL schemes of Optuna's Redis journal backend.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

#: Attempts at creating a study's tables and the study itself before giving up (see :func:`ensure_study`).
STUDY_CREATION_ATTEMPTS = 8


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``postgresql://user:***@host/db``)."""
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^@/\s]*@", r"\1***@", text)


#: The package each storage scheme needs, and the ``pip install`` that brings it.
STORAGE_DRIVERS = {
    "postgresql": ("psycopg", "pip install 'sbx-lecture[zoo]' (or: pip install 'psycopg[binary]')"),
    "postgresql+psycopg": ("psycopg", "pip install 'psycopg[binary]'"),
    "postgresql+psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
    "redis": ("redis", "pip install 'sbx-lecture[zoo]' (or: pip install redis)"),
    "rediss": ("redis", "pip install 'sbx-lecture[zoo]' (or: pip install redis)"),
    "unix": ("redis", "pip install 'sbx-lecture[zoo]' (or: pip install redis)"),
}


def check_storage_driver(storage: str) -> None:
    """Raise :class:`ZooBridgeError` when the driver of the storage URL ``storage`` is not installed."""
    scheme = storage.partition("://")[0].lower() if "://" in storage else ""
    driver = STORAGE_DRIVERS.get(scheme)
    if driver is not None and importlib.util.find_spec(driver[0]) is None:
        raise ZooBridgeError(f"the storage {mask_url(storage)} needs the package {driver[0]!r}: {driver[1]}")


def open_study_storage(storage: str) -> Any:
    """An Optuna storage from the zoo's ``--storage``.

    A path ending in ``.log`` is a journal file, a ``redis://`` (``rediss://``, ``unix://``) URL a Redis journal
    (with an optional ``?prefix=NAME``, see :func:`split_redis_prefix`), any other string a database URL
    (SQLAlchemy's; ``postgresql://`` uses psycopg 3).
    """
    import optuna
    from optuna.storages import JournalStorage

    if storage.endswith(".log") and "://" not in storage:
        from optuna.storages.journal import JournalFileBackend

        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage))
    check_storage_driver(storage)
    if storage.startswith(REDIS_SCHEMES):
        from optuna.storages.journal import JournalRedisBackend

        url, prefix = split_redis_prefix(storage)
        with warnings.catch_warnings():  # "JournalRedisBackend is experimental", at every start of every worker
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            return JournalStorage(JournalRedisBackend(url, prefix=prefix))
    return storage


def split_redis_prefix(url: str) -> tuple[str, str]:
    """A Redis URL without its ``prefix`` query parameter, and that prefix (``""`` without one).

    ``redis://host:6379/0?prefix=lecture`` keeps the journal under keys ``lecture:...``, so that several journals can
    share one Redis database (Optuna's ``JournalRedisBackend(url, prefix=...)``).
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "".join(value for key, value in query if key == "prefix")
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


@contextlib.contextmanager
def _storages_from_urls() -> Iterator[None]:
    """Within the block, ``optuna.create_study``/``load_study`` accept a Redis URL as ``storage`` (the zoo passes
    ``--storage`` on as it is)."""
    import optuna

    originals = optuna.create_study, optuna.load_study

    def converting(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            storage = kwargs.get("storage")
            if isinstance(storage, str) and storage.startswith(REDIS_SCHEMES):
                kwargs["storage"] = open_study_storage(storage)
            return function(*args, **kwargs)

        return call

    optuna.create_study, optuna.load_study = converting(originals[0]), converting(originals[1])
    try:
        yield
    finally:
        optuna.create_study, optuna.load_study = originals


def ensure_study(storage: str, study_name: str) -> tuple[int, bool]:
    """Create the study ``study_name`` in ``storage`` (and a database's tables) unless it exists.

    Several processes started at once on a fresh database race to create Optuna's tables; the losers' attempts fail
    (a unique violation) and are retried after a short random pause, when the tables exist.

    :return: the number of trials the study holds and whether it existed already
    """
    import optuna

    check_storage_driver(storage)
    attempt = 0
    while True:
        attempt += 1
        try:
            opened = open_study_storage(storage)
            try:
                optuna.create_study(study_name=study_name, storage=opened, direction="maximize")
                return 0, False
            except optuna.exceptions.DuplicatedStudyError:
                return len(optuna.load_study(study_name=study_name, storage=opened).trials), True
        except Exception as error:
            if attempt >= STUDY_CREATION_ATTEMPTS or not _is_creation_race(error):
                raise
            time.sleep(random.uniform(0.1, 0.5) * attempt)


def _is_creation_race(error: Exception) -> bool:
    """Whether ``error`` is another process creating the same tables, type or study at the same time."""
    try:
        from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
    except ModuleNotFoundError:
        return False
    if isinstance(error, IntegrityError):
        return True
    text = str(error).lower()
    return isinstance(error, (ProgrammingError, OperationalError)) and (
        "already exists" in text or "duplicate" in text or "deadlock" in text
    )


def run_workers(plan: TrainPlan) -> int:
    """Start ``plan.workers`` processes of ``sbx-lecture zoo train`` that fill one Optuna study; wait for them.

    The study is created first (so that the workers do not race to create it); each worker gets its own seed when
    ``--seed`` was given, so that their samplers do not propose the same trials.

    :return: the highest exit status of the workers
    """
    assert plan.storage is not None and plan.study_name is not None
    environment = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    environment[WORKER_VARIABLE] = "1"
    processes = []
    for worker in range(plan.workers):
        seed = ["--seed", str(plan.seed + worker)] if plan.seed >= 0 else []
        command = [sys.executable, "-m", "sbx_lecture.zoo", "train", *plan.argv, *seed]
        print(f"{PROGRAM}: worker {worker + 1}/{plan.workers} on study {plan.study_name!r} at {mask_url(plan.storage)}")
        processes.append(subprocess.Popen(command, env=environment))
    try:
        return max(process.wait() for process in processes)
    except KeyboardInterrupt:  # the workers got the interrupt too: let them write their reports
        for process in processes:
            process.wait()
        return 130


# --------------------------------------------------------------------------------------------------------------
# Running a script
# --------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _command_line(program: str, arguments: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = [program, *arguments]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _zoo_subprocesses_through_bridge() -> Iterator[None]:
    """record_training starts ``python -m rl_zoo3.record_video``: run it through the bridge (and this Python)."""
    original = subprocess.call

    def call(command: Any, *args: Any, **kwargs: Any) -> int:
        if isinstance(command, list) and command[:3] == ["python", "-m", "rl_zoo3.record_video"]:
            command = [sys.executable, "-m", "sbx_lecture.zoo", "record_video", *command[3:]]
        return original(command, *args, **kwargs)

    subprocess.call = call  # type: ignore[assignment]
    try:
        yield
    finally:
        subprocess.call = original


class TrialsTable:
    """The part of ``study.trials_dataframe()`` that rl_zoo3 uses (``.to_csv(path)``), written without pandas.

    :param trials: the study's trials
    """

    def __init__(self, trials: Sequence[Any]) -> None:
        self.trials = list(trials)

    def rows(self) -> list[dict[str, Any]]:
        """One row per trial: number, value, state, times, then ``params_*`` and ``user_attrs_*`` columns."""
        rows = []
        for trial in self.trials:
            row: dict[str, Any] = {
                "number": trial.number,
                "value": trial.value,
                "datetime_start": trial.datetime_start,
                "datetime_complete": trial.datetime_complete,
                "duration": (
                    trial.datetime_complete - trial.datetime_start
                    if trial.datetime_complete and trial.datetime_start
                    else None
                ),
                "state": trial.state.name,
            }
            row.update({f"params_{key}": value for key, value in sorted(trial.params.items())})
            row.update({f"user_attrs_{key}": value for key, value in sorted(trial.user_attrs.items())})
            rows.append(row)
        return rows

    def to_csv(self, path: str | Path) -> None:
        """Write the table as CSV, the columns in first-seen order."""
        import csv

        rows = self.rows()
        columns = list(dict.fromkeys(column for row in rows for column in row))
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


@contextlib.contextmanager
def _optimization_report_without_pandas() -> Iterator[None]:
    """rl_zoo3 writes its optimization report with ``study.trials_dataframe()``, which needs pandas (only in the
    zoo's ``plots`` extra); when pandas is missing, the report is written with :class:`TrialsTable` instead."""
    if importlib.util.find_spec("pandas") is not None:
        yield
        return
    from optuna.study import Study

    original = Study.trials_dataframe

    def trials_table(study: Study, *args: Any, **kwargs: Any) -> Any:
        return TrialsTable(study.trials)

    Study.trials_dataframe = trials_table  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        Study.trials_dataframe = original  # type: ignore[method-assign]


def one_run_last_evals(results: Any) -> Any:
    """An ``all_plots`` results file with every single-run entry's ``last_evals`` made a one-element array.

    ``all_plots`` squeezes the runs' axis away, so one run per algorithm stores a scalar, which the zoo's
    ``plot_from_file`` skips ("Skipping ...") and then fails on (``min()`` of no runs); the one run's score is what
    the array should hold.
    """
    import numpy as np

    for per_environment in results.values() if isinstance(results, dict) else ():
        for entry in per_environment.values() if isinstance(per_environment, dict) else ():
            if isinstance(entry, dict) and "last_evals" in entry and np.ndim(entry["last_evals"]) == 0:
                entry["last_evals"] = np.atleast_1d(entry["last_evals"])
    return results


@contextlib.contextmanager
def _plots_of_single_runs() -> Iterator[None]:
    """Within the block, results files read with ``pickle.load`` go through :func:`one_run_last_evals`."""
    import pickle

    original = pickle.load

    def load(*args: Any, **kwargs: Any) -> Any:
        return one_run_last_evals(original(*args, **kwargs))

    pickle.load = load
    try:
        yield
    finally:
        pickle.load = original


@contextlib.contextmanager
def _ffmpeg_on_path() -> Iterator[None]:
    """record_training runs the program ``ffmpeg``: without one on ``PATH``, imageio-ffmpeg's (a dependency of
    moviepy, which the zoo's video recorder needs) is put there for the block."""
    import shutil
    import tempfile

    if shutil.which("ffmpeg") is not None:
        yield
        return
    try:
        import imageio_ffmpeg

        executable = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise ZooBridgeError(
            "record_training runs the program ffmpeg, which is not installed: pip install imageio-ffmpeg "
            "(sbx-lecture[zoo] installs it), or install ffmpeg with the system's package manager"
        ) from None
    saved = os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory(prefix="sbx-lecture-ffmpeg-") as folder:
        os.symlink(executable, os.path.join(folder, "ffmpeg"))
        os.environ["PATH"] = os.pathsep.join([folder, saved])
        try:
            yield
        finally:
            os.environ["PATH"] = saved


def absolute_output_folder(arguments: Sequence[str]) -> list[str]:
    """record_training's arguments with ``-o``/``--output-folder`` made absolute: the zoo lists the videos for
    ffmpeg relative to the current folder in a file that ffmpeg reads relative to that file's own folder."""
    result = list(arguments)
    for index, argument in enumerate(result):
        if argument in ("-o", "--output-folder") and index + 1 < len(result):
            result[index + 1] = os.path.abspath(result[index + 1])
        elif argument.startswith("--output-folder="):
            result[index] = "--output-folder=" + os.path.abspath(argument.partition("=")[2])
    return result


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_script(name: str, arguments: Sequence[str], trusted: bool = False) -> int:
    """Run the zoo script ``name`` in this process with ``sys.argv`` set to ``arguments``; return its status.

    :param trusted: let the scripts that load a run unpickle its files as rl_zoo3 does (see
        :mod:`sbx_lecture.loading.zoo_run`)
    """
    from sbx_lecture.loading.zoo_run import LOADING_SCRIPTS, loading_without_unpickling

    script = ZOO_SCRIPTS[name]
    with contextlib.ExitStack() as stack:
        if name in LOADING_SCRIPTS:
            stack.enter_context(loading_without_unpickling(trusted))
        stack.enter_context(_command_line(f"{PROGRAM} {name}", arguments))
        stack.enter_context(_zoo_subprocesses_through_bridge())
        stack.enter_context(_optimization_report_without_pandas())
        if name == "plot_from_file":
            stack.enter_context(_plots_of_single_runs())
        if name == "record_training":
            stack.enter_context(_ffmpeg_on_path())
        try:
            if script.function is None:
                runpy.run_module(script.module, run_name="__main__", alter_sys=False)
            else:
                function: Callable[[], object] = getattr(importlib.import_module(script.module), script.function)
                function()
        except SystemExit as exit_:
            return _exit_status(exit_.code)
        except ModuleNotFoundError as error:
            if error.name is None or error.name.split(".")[0] in ("rl_zoo3", "sbx_lecture"):
                raise
            # An optional dependency of the zoo: the plots need its ``plots`` extra (seaborn, pandas, scipy, ...).
            hint = "pip install 'rl_zoo3[plots]'" if "plots" in script.module else f"pip install {error.name}"
            missing = f"rl_zoo3's {name} needs the module {error.name!r}, which is not installed"
            raise ZooBridgeError(f"{missing}: {hint}") from None
    return 0


def _check_algo_choice(arguments: list[str], table: LazyAlgorithms) -> list[str]:
    """An unknown ``--algo`` is refused with the closest names; a spelling such as ``PPO-KL`` becomes ``ppo_kl``.

    :return: the arguments, with every ``--algo`` value in the zoo's spelling
    """
    checked = list(arguments)
    for index, argument in enumerate(arguments):
        if argument == "--algo" and index + 1 < len(arguments):
            position, value, prefix = index + 1, arguments[index + 1], ""
        elif argument.startswith("--algo="):
            position, value, prefix = index, argument.partition("=")[2], "--algo="
        else:
            continue
        if value not in table:
            if normalize_name(value) not in table:
                raise ZooBridgeError(unknown_name_message("algorithm", value, sorted(table)))
            checked[position] = prefix + normalize_name(value)
    return checked


def usage() -> str:
    """The text of ``sbx-lecture zoo --help``."""
    width = max(map(len, ZOO_SCRIPTS))
    scripts = "\n".join(f"  {name.ljust(width)}  {script.summary}" for name, script in ZOO_SCRIPTS.items())
    names = ", ".join(get_plugin_manager().registry.names())
    return f"""usage: {PROGRAM} SCRIPT [ARGUMENTS...]

The RL Baselines3 Zoo (rl_zoo3) with every algorithm registered in sbx-lecture, built-in and plugins.
ARGUMENTS are the zoo script's own; `{PROGRAM} SCRIPT --help` lists them.

scripts:
{scripts}

every script, in addition to the zoo:
  {THREADS_FLAG} N     torch CPU threads (default 1; the zoo's --num-threads, where it has one, overrides it)

train, in addition to the zoo:
  without -conf, an algorithm that registers a zoo file (the lecture's: zoo_configs/<algo>.yml) uses it
  -optimize stores the study in <log-folder>/<algo>/<env>_optuna.log as <algo>_<env>_n<budget>
            unless --storage (a .log file, a database or redis:// URL) / --study-name
  {WORKERS_FLAG} K     start K worker processes that fill the one study (with -optimize)

algorithms: {names}
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``sbx-lecture zoo SCRIPT ARGUMENTS...``: register every algorithm with the zoo and run its script.

    :param argv: the script's name and its arguments (default: ``sys.argv[1:]``)
    :return: the exit status
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if arguments else USAGE_ERROR_STATUS
    name, rest = arguments[0], arguments[1:]
    trusted = False
    if name in LOADING_SCRIPTS:
        rest, trusted = pop_trusted(rest)
    if name in UNAVAILABLE_SCRIPTS:
        print(f"{PROGRAM}: error: {UNAVAILABLE_SCRIPTS[name]}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    if name not in ZOO_SCRIPTS:
        close = difflib.get_close_matches(name.replace("-", "_"), list(ZOO_SCRIPTS), n=3, cutoff=0.5)
        hint = f"did you mean {_either(close)}?" if close else f"use one of {', '.join(ZOO_SCRIPTS)}"
        print(f"{PROGRAM}: error: unknown zoo script {name!r}; {hint}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    try:
        import torch as th

        rest, threads = _pop_count(rest, THREADS_FLAG)
        th.set_num_threads(threads)
        table = register_with_zoo()
        if name == "train":
            plan = plan_train(rest, table)
            if plan.storage is not None:
                announce_study(plan)
            if plan.workers > 1:
                plan.argv += [THREADS_FLAG, str(threads)]
                return run_workers(plan)
            rest = plan.argv
        else:
            rest = _check_algo_choice(rest, table)
            if name == "record_training":
                rest = absolute_output_folder(rest)
    except (ZooBridgeError, RegistryError) as error:
        if os.environ.get("SBX_LECTURE_DEBUG"):
            raise
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    from sbx_lecture.loading import ModelFileError

    try:
        return run_script(name, rest, trusted)
    except (ZooBridgeError, ModelFileError) as error:  # ModelFileError: a run's file that is damaged or needs trust
        if os.environ.get("SBX_LECTURE_DEBUG"):
            raise
        print(f"{PROGRAM}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return USAGE_ERROR_STATUS


if __name__ == "__main__":
    # Run the imported module's main, not this copy's: the start-up hook imports sbx_lecture.zoo when rl_zoo3 is
    # imported, and its classes (LazyAlgorithms) must be the ones this run checks against.
    from sbx_lecture.zoo import main as imported_main

    sys.exit(imported_main())

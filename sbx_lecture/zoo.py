"""The RL Baselines3 Zoo bridge: every registered algorithm in rl_zoo3's train, enjoy, optimize and plots.

The zoo has no plugin mechanism. Its scripts read three shared tables, which :func:`register_with_zoo` fills from the
sbx-lecture registry (built-in and third-party algorithms alike) before any zoo parser runs, as SBX does:
``rl_zoo3.utils.ALGOS`` (``--algo`` name → class) and ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` /
``HYPERPARAMS_CONVERTER`` (Optuna samplers for ``-optimize``, converters of a stored trial for ``--trial-id``). What no
table can say is done by a few small adapters of rl_zoo3 and Optuna (:func:`_adapt_the_zoo`), which the plain zoo gets
too: with sbx-lecture installed, the start-up hook ``_sbx_lecture_zoo_hook`` calls :func:`autoregister` when
``rl_zoo3`` is first imported. Each adapter is a function that gets the original first; ``tests/test_zoo.py`` fails
when an adapted signature changes. The Optuna storages of ``--storage`` are those of
:mod:`sbx_lecture.infra.studies` (:func:`open_study_storage`, also for a study's reader, and :func:`ensure_study`),
which ``sbx-lecture sweep`` uses too.

``sbx-lecture zoo SCRIPT ARGS...`` (:func:`main`) runs the zoo's script in this process with ``sys.argv`` set to
``ARGS``, with a few more adapters for that script only (:func:`run_script`):

- no code runs from a command line or a hyperparameter section: the values that rl_zoo3 evaluates with ``eval``
  (``-params``, ``--env-kwargs``, a section's ``policy_kwargs``, ...) are parsed by
  :func:`sbx_lecture.hyperparams.parse_value` instead (:func:`~sbx_lecture.zoo_config.zoo_value`);
- ``train`` refuses an unknown environment, and every key of the section in force and of ``-params`` that the
  algorithm's constructor refuses, naming the closest accepted names, before anything is built (:func:`_check_train`);
- ``train -optimize`` defaults to the zoo's journal file ``<log-folder>/<algo>/<env>_optuna.log`` and the study
  ``<algo>_<env>_n<budget>``, so that runs (and workers) with one budget add to one study; it creates the study before
  any trial and says in one line whether it joins an existing one; ``--workers K`` starts K worker processes on it
  (or on any ``--storage`` URL shared by several machines: a database, a Redis journal);
- the scripts take whole option names, as ``sbx-lecture``'s commands do (``--n-timestep`` is not ``--n-timesteps``:
  :func:`_whole_option_names`);
- ``enjoy``, ``record_video`` and ``record_training`` load a run without unpickling
  (:mod:`sbx_lecture.loading.zoo_run`), and record_training's videos are recorded through the bridge too.

A mistake is said in one line with exit status 2, before anything is built where it can be known then.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import pickle
import pkgutil
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import UserDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NoReturn
from unittest import mock

from sbx_lecture import factory, zoo_config
from sbx_lecture.factory import UsageError
from sbx_lecture.hyperparams import check_hyperparameters
from sbx_lecture.infra.studies import StudyStorageError, ensure_study, mask_url, open_study_storage
from sbx_lecture.infra.validation import USAGE_ERROR_STATUS, is_action_space_error, one_line, run_command
from sbx_lecture.loading.zoo_run import LOADING_SCRIPTS, TRUSTED_FLAG, load_without_unpickling
from sbx_lecture.plugins import PluginManager, get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec, RegistryError, unknown_name_message
from sbx_lecture.zoo_config import EVALUATED_KEYS, zoo_value

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm


class ZooBridgeError(Exception):
    """A zoo command line that cannot work, explained in one line."""


# --------------------------------------------------------------------------------------------------------------
# The zoo's tables
# --------------------------------------------------------------------------------------------------------------


class LazyAlgorithms(UserDict[str, Any]):
    """rl_zoo3's ``ALGOS`` with the registry's algorithms added; a registered class is imported on first lookup.

    The zoo only reads ``ALGOS.keys()`` (its ``--algo`` choices), ``ALGOS[name]`` and the class's ``__name__``, so
    listing the names never imports an algorithm module.

    :param zoo_algorithms: the zoo's own table, kept for the names no plugin registers
    """

    def __init__(self, zoo_algorithms: Mapping[str, type[BaseAlgorithm]]) -> None:
        super().__init__(zoo_algorithms)
        self.zoo_algorithms = dict(zoo_algorithms)

    def sync(self, specs: Sequence[AlgorithmSpec]) -> None:
        """Make the table the zoo's algorithms, the classes added by hand (``ALGOS[name] = cls``, as SBX does) and
        ``specs``, which win on a shared name; the specs of an earlier sync are dropped."""
        added = {name: entry for name, entry in self.data.items() if not isinstance(entry, AlgorithmSpec)}
        self.data = {**self.zoo_algorithms, **added, **{spec.name: spec for spec in specs}}

    def spec(self, name: str) -> AlgorithmSpec | None:
        """The registry entry behind ``name``, or ``None`` for one of the zoo's own or a hand-added class."""
        entry = self.data.get(name)
        return entry if isinstance(entry, AlgorithmSpec) else None

    def __getitem__(self, name: str) -> type[BaseAlgorithm]:
        entry = self.data[name]
        return entry.load() if isinstance(entry, AlgorithmSpec) else entry


def _sample(spec: AlgorithmSpec, trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> Any:
    """The zoo's ``HYPERPARAMS_SAMPLER`` entry of ``spec``: its registered sampler, imported on first call."""
    return spec.load_zoo_sampler()(trial, n_actions, n_envs, additional_args)  # type: ignore[misc]


def _convert(spec: AlgorithmSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The zoo's ``HYPERPARAMS_CONVERTER`` entry of ``spec``: a stored trial's parameters as hyperparameters
    (``--trial-id``), by the plugin's ``zoo_converter``, else by the ``convert`` attribute of its sampler (which the
    samplers of :mod:`sbx_lecture.zoo_samplers` carry)."""
    converter = spec.extra.get("zoo_converter") or getattr(spec.load_zoo_sampler(), "convert", None)
    if converter is None:
        raise ZooBridgeError(
            f"algorithm {spec.name!r} ({spec.origin}) registers no converter for stored trials: register it with "
            "zoo_converter=..., or give the sampler a 'convert' attribute"
        )
    return dict((pkgutil.resolve_name(converter) if isinstance(converter, str) else converter)(params))


def register_with_zoo(manager: PluginManager | None = None) -> LazyAlgorithms:
    """Put every registered algorithm into rl_zoo3's ``ALGOS``, samplers and converters; safe to call again.

    ``ALGOS`` becomes a :class:`LazyAlgorithms` (rebound in every loaded ``rl_zoo3`` module that held the zoo's
    dict, so the modules imported later get it too); the Optuna tables are the zoo's dicts, updated in place. A
    registered name wins over the zoo's own entry of the same name. A sampler is set only where the plugin gave one,
    so SB3's algorithms keep the zoo's samplers. The adapters of :func:`_adapt_the_zoo` are installed once.

    :param manager: the plugin manager to read (default: the process-wide one)
    :return: the zoo's ``ALGOS`` table
    """
    try:
        import rl_zoo3.hyperparams_opt as zoo_optimization  # imports rl_zoo3, and with it rl_zoo3.utils's ALGOS
        import rl_zoo3.utils as zoo_utils
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith(("rl_zoo3", "optuna")):
            raise
        raise ZooBridgeError(f"the zoo bridge needs {error.name}: pip install 'sbx-lecture[zoo]'") from None

    current = zoo_utils.ALGOS
    table = current if isinstance(current, LazyAlgorithms) else LazyAlgorithms(current)
    specs = list((manager or get_plugin_manager()).registry)
    table.sync(specs)
    for module_name, module in list(sys.modules.items()):
        if module_name.partition(".")[0] == "rl_zoo3" and getattr(module, "ALGOS", None) is current:
            module.ALGOS = table  # type: ignore[attr-defined]
    for spec in specs:
        if spec.zoo_sampler is not None:
            zoo_optimization.HYPERPARAMS_SAMPLER[spec.name] = functools.partial(_sample, spec)
        if spec.zoo_sampler is not None or spec.extra.get("zoo_converter") is not None:
            zoo_optimization.HYPERPARAMS_CONVERTER[spec.name] = functools.partial(_convert, spec)
    _adapt_the_zoo()
    return table


def zoo_sampler(algo: str, table: Mapping[str, Any]) -> Any:
    """The Optuna sampler the zoo holds for ``algo`` (``(trial, n_actions, n_envs, additional_args) ->
    hyperparameters``): the registered one (ours, plugins') or the zoo's own (SB3's), for ``-optimize`` and sweeps."""
    import rl_zoo3.hyperparams_opt as zoo_optimization

    if algo not in zoo_optimization.HYPERPARAMS_SAMPLER:
        spec = table.spec(algo) if isinstance(table, LazyAlgorithms) else None
        origin = f" (plugin {spec.origin})" if spec is not None else ""
        raise ZooBridgeError(f"{algo!r}{origin} has no zoo sampler to search with: register one with zoo_sampler=...")
    return zoo_optimization.HYPERPARAMS_SAMPLER[algo]


def autoregister() -> None:
    """Called by the start-up hook (``_sbx_lecture_zoo_hook``) when a plain zoo script first imports ``rl_zoo3``.

    It registers every algorithm (:func:`register_with_zoo`) and makes the adapters' errors (:class:`ZooBridgeError`,
    :class:`~sbx_lecture.zoo_config.ZooConfigError`, a storage's :class:`StudyStorageError`, a broken plugin's
    :class:`~sbx_lecture.registry.RegistryError`) and the zoo's own "missing package" errors (an ``ImportError``
    that names the ``pip install``) one line on stderr instead of a traceback. A registration that fails (a broken
    plugin) is said in one line by the hook, which leaves the zoo with its own algorithms.
    """
    register_with_zoo()
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        said = isinstance(error, (ZooBridgeError, zoo_config.ZooConfigError, StudyStorageError, RegistryError)) or (
            isinstance(error, ImportError) and "pip install" in str(error)
        )
        if said and not os.environ.get("SBX_LECTURE_DEBUG"):
            print(f"{Path(sys.argv[0]).name or 'rl_zoo3'}: error: {one_line(error)}", file=sys.stderr)
        else:
            previous(kind, error, traceback)

    sys.excepthook = excepthook


# --------------------------------------------------------------------------------------------------------------
# The adapters: what no table of the zoo can say. Each gets the function it adapts first.
# --------------------------------------------------------------------------------------------------------------


def adapted(original: Callable[..., Any], adapter: Callable[..., Any]) -> Any:
    """``adapter`` with ``original`` as its first argument, looking like ``original`` (``functools.wraps``: its name,
    signature and ``__wrapped__``, which ``tests/test_zoo.py`` compares with the signature the adapter was written
    for)."""
    return functools.wraps(original)(lambda *args, **kwargs: adapter(original, *args, **kwargs))


def _adapt_the_zoo() -> None:
    """Install, once, the adapters the plain zoo gets too: :func:`read_hyperparameters_adapter`,
    :func:`_setup_experiment`, :func:`_objective` and :func:`_hyperparameters_optimization` of rl_zoo3's
    ``ExperimentManager``, and :func:`_get_storage` of ``optuna.storages``."""
    import optuna
    from rl_zoo3.exp_manager import ExperimentManager

    if getattr(ExperimentManager, "_sbx_lecture_patched", False):
        return
    adapters: dict[str, Callable[..., Any]] = {
        "read_hyperparameters": read_hyperparameters_adapter,
        "setup_experiment": _setup_experiment,
        "objective": _objective,
        "hyperparameters_optimization": _hyperparameters_optimization,
    }
    for name, adapter in adapters.items():
        setattr(ExperimentManager, name, adapted(getattr(ExperimentManager, name), adapter))
    optuna.storages.get_storage = adapted(optuna.storages.get_storage, _get_storage)
    ExperimentManager._sbx_lecture_patched = True  # type: ignore[attr-defined]


def read_hyperparameters_adapter(read: Callable[..., Any], manager: Any, then: Callable[..., Any] | None = None) -> Any:
    """``ExperimentManager.read_hyperparameters``: without ``-conf``, an algorithm that registers a zoo file reads it
    (the zoo would read ``rl_zoo3/hyperparams/<algo>.yml``); a yml's section is chosen by
    :func:`sbx_lecture.zoo_config.select_section`, the one rule of ``train`` and ``bench`` (``Hopper-v5`` reads
    ``Hopper-v4``), said in one line when it is not the environment's own.

    :param then: what ``sbx-lecture zoo`` does next with ``(manager, hyperparameters, where)``
        (:func:`_check_train`)
    """
    import yaml
    from rl_zoo3.utils import ALGOS

    algo, env_id = manager.algo, manager.env_name.gym_id
    spec = ALGOS.spec(algo) if isinstance(ALGOS, LazyAlgorithms) else None  # None for the zoo's own algorithms
    registered = spec.resolve_zoo_hyperparams() if spec is not None else None
    if registered is not None and not getattr(manager.args, "conf_file", None):
        manager.config = str(registered)
    where = manager.config
    if not where.endswith((".yml", ".yaml")):
        hyperparams, saved = read(manager)  # a Python file or package named by -conf: the zoo's own reading
    else:
        name, section = zoo_config.section_for(zoo_config.read_sections(Path(where)), env_id, algo, where)
        if name != env_id:
            print(f"Using the section {name!r} of {where} for {env_id}")
        with mock.patch.object(yaml, "safe_load", lambda stream: {env_id: section}):  # the zoo reads the file
            hyperparams, saved = read(manager)
        where = f"section {name!r} of {where}"
    return (hyperparams if then is None else then(manager, hyperparams, where)), saved


def _setup_experiment(setup: Callable[..., Any], manager: Any) -> Any:
    """``ExperimentManager.setup_experiment``: an action space the algorithm (or the zoo's action noise) cannot use is a
    one-line :class:`ZooBridgeError`. When the algorithm, built with its defaults, refuses the space, it is the error of
    ``sbx-lecture train``; else the zoo's action noise refused it, and the message says what to remove."""
    from rl_zoo3.utils import ALGOS

    try:
        return setup(manager)
    except (AssertionError, ValueError, TypeError, KeyError) as error:
        if not is_action_space_error(error):
            raise
        env = manager.create_envs(1, no_log=True)
        try:
            factory.build_model(manager.algo, ALGOS[manager.algo], env, {}, {}, seed=0)
        except UsageError as refusal:
            if is_action_space_error(refusal):
                raise ZooBridgeError(str(refusal)) from error
        finally:
            env.close()
        message = one_line(error)
        if "noise" in message.lower():
            message += ": remove noise_type and noise_std from the hyperparameters (-params noise_type:None)"
        raise ZooBridgeError(message) from error


def _objective(objective: Callable[..., float], manager: Any, trial: Any) -> float:
    """``ExperimentManager.objective``: a trial pruned because training failed (a ``ValueError`` such as
    :class:`~sbx_lecture.infra.finite.NonFiniteError`) is pruned with the reason, which Optuna's "Trial N pruned." line
    shows and the trial keeps as its user attribute ``pruned`` (as in ``sbx-lecture sweep``)."""
    import optuna

    try:
        return objective(manager, trial)
    except optuna.TrialPruned as pruned:
        if pruned.args or pruned.__cause__ is None:
            raise
        reason = one_line(pruned.__cause__)
        trial.set_user_attr("pruned", reason)
        raise optuna.TrialPruned(reason) from pruned.__cause__


def _hyperparameters_optimization(optimize: Callable[..., None], manager: Any) -> None:
    """``ExperimentManager.hyperparameters_optimization``: the report files ``report_..._<time>.csv/.pkl`` get a name of
    their own, the zoo's ``int(time.time())`` followed by this process's id (the zoo's second alone let workers that
    finish together overwrite each other's), and the pickled study is an in-memory copy (:func:`_pickle_report`),
    which holds no storage URL (nor its password)."""
    from rl_zoo3 import exp_manager

    report_time = SimpleNamespace(time=lambda: int(time.time()) * 10**7 + os.getpid() % 10**7)
    with mock.patch.object(exp_manager, "time", report_time), mock.patch.object(exp_manager, "pkl", _PICKLED_REPORT):
        optimize(manager)


def _pickle_report(study: Any, file: Any) -> None:
    """The zoo's ``pkl.dump(study, file)`` of its report, with an in-memory copy of ``study``: the trials and the
    study's attributes (URLs masked), but not its storage, whose URL may hold a password."""
    import optuna

    memory = optuna.storages.InMemoryStorage()  # made by hand: no "A new study created in memory" after the search
    memory.create_new_study(study.directions, study.study_name)
    copy = optuna.Study(study.study_name, memory, sampler=study.sampler, pruner=study.pruner)
    copy.add_trials(study.trials)
    for key, value in study.user_attrs.items():
        copy.set_user_attr(key, mask_url(value) if isinstance(value, str) else value)
    pickle.dump(copy, file)


#: The zoo's ``pkl`` in :func:`_hyperparameters_optimization`.
_PICKLED_REPORT = SimpleNamespace(dump=_pickle_report)


def _get_storage(get_storage: Callable[[Any], Any], storage: Any) -> Any:
    """``optuna.storages.get_storage``, which ``create_study``/``load_study`` call on the zoo's ``--storage`` text: the
    storage of :func:`open_study_storage` (a Redis URL is Optuna's Redis journal, a database's tables are created
    safely when several workers start at once on a fresh database)."""
    return get_storage(open_study_storage(storage) if isinstance(storage, str) else storage)


PROGRAM = "sbx-lecture zoo"
#: The command whose options a refused hyperparameter names (``--seed N`` rather than ``seed:N``).
TRAIN_COMMAND = f"{PROGRAM} train"
#: Flag of ``sbx-lecture zoo train`` (not of rl_zoo3) that starts several optimization workers.
WORKERS_FLAG = "--workers"
#: Flag of every ``sbx-lecture zoo`` script (not of rl_zoo3): torch CPU threads, 1 unless given.
THREADS_FLAG = "--threads"
#: Set in the environment of the processes that ``--workers`` starts (their parent announced the study).
WORKER_VARIABLE = "SBX_LECTURE_ZOO_WORKER"

#: The rl_zoo3 scripts that ``sbx-lecture zoo`` runs (each module run as ``__main__``), with a line for ``--help``.
ZOO_SCRIPTS: dict[str, tuple[str, str]] = {
    "train": ("rl_zoo3.train", "train an agent, or --optimize its hyperparameters with Optuna"),
    "enjoy": ("rl_zoo3.enjoy", "run a trained agent (--no-render for no window)"),
    "record_video": ("rl_zoo3.record_video", "record a video of a trained agent"),
    "record_training": ("rl_zoo3.record_training", "record videos of a run's checkpoints"),
    "plot_train": ("rl_zoo3.plots.plot_train", "training curves from the monitor files"),
    "all_plots": ("rl_zoo3.plots.all_plots", "evaluation curves of algorithms × environments"),
    "plot_from_file": ("rl_zoo3.plots.plot_from_file", "plots from an all_plots file"),
    "load_from_hub": ("rl_zoo3.load_from_hub", "download a trained agent from the Hugging Face hub"),
}
#: Zoo scripts that are not offered, with the reason (said in one line when one is asked for).
UNAVAILABLE_SCRIPTS: dict[str, str] = {
    "push_to_hub": (
        "rl_zoo3's push_to_hub is not offered: it imports generate_metadata from huggingface_sb3, which the only "
        "published sb3-team-hf-integration (3.2) no longer has; upload with huggingface_hub's upload_folder instead"
    ),
    "benchmark": "rl_zoo3's benchmark is not offered: it runs a script that rl_zoo3 no longer ships",
}


# --------------------------------------------------------------------------------------------------------------
# What sbx-lecture zoo adds for the script it runs
# --------------------------------------------------------------------------------------------------------------


def _store_pairs(action: Any, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
    """The bridge's ``rl_zoo3.utils.StoreDict.__call__`` (``-params``, ``--env-kwargs``): ``key:value`` pairs whose
    values :func:`~sbx_lecture.zoo_config.zoo_value` parses; the zoo's own runs them with ``eval``."""
    pairs = (value.partition(":") for value in values)
    setattr(namespace, action.dest, {key: zoo_value(key, text) for key, _, text in pairs})


def _check_train(manager: Any, hyperparams: dict[str, Any], where: str, workers: int = 1) -> dict[str, Any]:
    """What ``sbx-lecture zoo train`` does once the zoo has read the hyperparameters (``where``: their section), before
    anything is built: parse the section's values that the zoo would ``eval`` (:func:`zoo_value`), check its keys and
    those of ``-params``, and for ``-optimize`` check the sampler, choose the default storage and study name, create
    the study (unless it exists) and say in one line which it is and whether it is joined.

    :param workers: more than 1: stop with :class:`_Checked` here, for :func:`run_workers`
    :return: the hyperparameters, parsed
    """
    from rl_zoo3.utils import ALGOS

    algo, custom = manager.algo, manager.custom_hyperparams or {}
    hyperparams = {key: zoo_value(key, value) if key in EVALUATED_KEYS else value for key, value in hyperparams.items()}
    read = {key: value for key, value in hyperparams.items() if key not in custom}
    check_hyperparameters(ALGOS[algo], read, where, TRAIN_COMMAND)
    check_hyperparameters(ALGOS[algo], custom, "-params/--hyperparams", TRAIN_COMMAND)
    if manager.optimize_hyperparameters:
        zoo_sampler(algo, ALGOS)
        env_id = re.sub(r"[/:]", "-", manager.env_name.gym_id)
        manager.storage = manager.storage or os.path.join(manager.log_folder, algo, f"{env_id}_optuna.log")
        budget = manager.n_timesteps if manager.n_timesteps > 0 else hyperparams.get("n_timesteps")
        manager.study_name = manager.study_name or f"{algo}_{env_id}" + (f"_n{int(float(budget))}" if budget else "")
        study, existed = ensure_study(manager.storage, manager.study_name)
        said = f"{manager.study_name!r} at {mask_url(manager.storage)}"
        if not existed:
            print(f"{PROGRAM}: created the study {said}")
        elif not os.environ.get(WORKER_VARIABLE):  # a worker of --workers joins the study its parent announced
            print(f"{PROGRAM}: joining the existing study {said} ({len(study.trials)} trials so far); "
                  "--study-name NAME starts another")  # fmt: skip
    elif workers > 1:
        raise ZooBridgeError(f"{WORKERS_FLAG} starts optimization workers: it needs -optimize")
    if workers > 1:
        raise _Checked(manager)
    return hyperparams


class _Checked(Exception):
    """The parent of ``--workers`` checked the zoo's train and created the study: the workers may start (the
    argument is the zoo's ``ExperimentManager``)."""


def _model_path(get_model_path: Callable[..., Any], exp_id: int, folder: str, *args: Any, **kwargs: Any) -> Any:
    """The bridge's ``rl_zoo3.utils.get_model_path`` (of enjoy and record_video): its "folder not found" / "no model
    found" is one line (but in the zoo's ``rl-trained-agents``, from which enjoy downloads)."""
    try:
        return get_model_path(exp_id, folder, *args, **kwargs)
    except (AssertionError, ValueError) as error:
        if "rl-trained-agents" in folder:
            raise
        raise ZooBridgeError(
            f"{error}: pass -f the log folder of `{PROGRAM} train` (its -f, default logs) and the run's --algo, "
            "--env and --exp-id"
        ) from None


def _one_run_per_algorithm(load: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The bridge's ``pickle.load`` in ``plot_from_file``: an ``all_plots`` file whose single-run entries hold a scalar
    ``last_evals`` (``all_plots`` squeezes the runs' axis away; the zoo's ``plot_from_file`` skips them, then fails on
    ``min()`` of no runs) gets the one run's score as a one-element array."""
    import numpy as np

    results = load(*args, **kwargs)
    for per_environment in results.values() if isinstance(results, dict) else ():
        for entry in per_environment.values() if isinstance(per_environment, dict) else ():
            if isinstance(entry, dict) and np.ndim(entry.get("last_evals", ())) == 0:
                entry["last_evals"] = np.atleast_1d(entry["last_evals"])
    return results


def _record_video_through_the_bridge(call: Callable[..., int], command: Any, *args: Any, **kwargs: Any) -> int:
    """The bridge's ``subprocess.call`` in ``record_training``: the ``python -m rl_zoo3.record_video`` it starts runs
    through the bridge, in this Python, loading safely."""
    if isinstance(command, list) and command[:3] == ["python", "-m", "rl_zoo3.record_video"]:
        command = [sys.executable, "-m", "sbx_lecture.zoo", "record_video", *command[3:]]
    return call(command, *args, **kwargs)


def _lend_ffmpeg(stack: contextlib.ExitStack) -> None:
    """Without an ``ffmpeg`` on ``PATH``, put imageio-ffmpeg's there (a dependency of moviepy, which the zoo's video
    recorder needs; the zoo extra installs it) for the block of ``stack``: record_training runs the program."""
    if shutil.which("ffmpeg") is None:
        import imageio_ffmpeg

        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="sbx-lecture-ffmpeg-"))
        os.symlink(imageio_ffmpeg.get_ffmpeg_exe(), os.path.join(folder, "ffmpeg"))
        stack.enter_context(mock.patch.dict(os.environ, PATH=os.pathsep.join([folder, os.environ.get("PATH", "")])))


# --------------------------------------------------------------------------------------------------------------
# The command: sbx-lecture zoo SCRIPT ARGUMENTS...
# --------------------------------------------------------------------------------------------------------------


def _bridge_options(name: str, arguments: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The options of ``sbx-lecture zoo`` itself (not of rl_zoo3) given to the script ``name``, and the script's own
    arguments: ``--threads N`` (every script), ``--workers K`` (train), ``--trusted`` (the scripts that load a run)
    and, for record_training, its ``-o``/``--output-folder`` made absolute (the zoo lists the videos for ffmpeg
    relative to the current folder, in a file that ffmpeg reads relative to the file's own folder)."""
    parser = argparse.ArgumentParser(prog=f"{PROGRAM} {name}", add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.set_defaults(workers=1, trusted=False, output_folder=None)
    parser.add_argument(THREADS_FLAG, type=int, default=1)
    if name == "train":
        parser.add_argument(WORKERS_FLAG, type=int)
    if name in LOADING_SCRIPTS:
        parser.add_argument(TRUSTED_FLAG, action="store_true")
    if name == "record_training":
        parser.add_argument("-o", "--output-folder", type=os.path.abspath)
    options, rest = parser.parse_known_args(arguments)
    factory.require_count(WORKERS_FLAG, options.workers)
    if options.output_folder is not None:
        rest += ["--output-folder", options.output_folder]
    return options, rest


def _check_command_line(script: str, arguments: list[str], table: LazyAlgorithms) -> None:
    """Refuse, before the zoo starts, an unknown ``--algo`` with the closest names (and another spelling of a
    registered one, ``TNPG`` or ``PPO-KL``: the zoo takes the exact name, as ``train`` does), a ``--device`` that
    ``train`` refuses and, for ``train``, an unknown ``--env`` (once the zoo's environments and ``--gym-packages``
    are registered)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--algo")
    parser.add_argument("--env")
    parser.add_argument("--gym-packages", nargs="+", default=[])
    parser.add_argument("--device", default="auto")
    options = parser.parse_known_args(arguments)[0]
    if options.algo is not None and options.algo not in table:
        factory.resolve_algorithm(options.algo)  # refuses it with the closest registered names (or its exact spelling)
    factory.check_device(options.device)  # the zoo's --device (train, enjoy, record_video), as train's
    if script == "train" and options.env is not None:
        for module in ["rl_zoo3.import_envs", *options.gym_packages]:
            importlib.import_module(module)
        factory.check_environment(options.env)


def _whole_option_names(parse_args: Callable[..., Any], parser: argparse.ArgumentParser, *args: Any) -> Any:
    """A zoo script's command line, parsed without matching prefixes of option names, and a mistake in it refused in
    one line (:class:`UsageError`) instead of argparse's usage text."""

    def refuse(message: str) -> NoReturn:
        raise UsageError(message)

    parser.allow_abbrev = False
    parser.error = refuse  # type: ignore[method-assign]
    return parse_args(parser, *args)


def run_script(name: str, arguments: Sequence[str], trusted: bool = False, workers: int = 1) -> int:
    """Run the zoo script ``name`` in this process with ``sys.argv`` set to ``arguments``, with the bridge's adapters
    for that script only (see the module docstring); return its exit status.

    :param trusted: let the scripts that load a run unpickle its files as rl_zoo3 does
        (:mod:`sbx_lecture.loading.zoo_run`)
    :param workers: ``train`` with more than 1 stops with :class:`_Checked` once it is checked (:func:`run_workers`)
    """
    import rl_zoo3.utils as zoo_utils
    from rl_zoo3.exp_manager import ExperimentManager

    checks = functools.partial(read_hyperparameters_adapter, then=functools.partial(_check_train, workers=workers))
    read = ExperimentManager.read_hyperparameters.__wrapped__  # type: ignore[attr-defined]  # the zoo's own
    try:
        with contextlib.ExitStack() as stack:
            enter = stack.enter_context
            enter(mock.patch.object(zoo_utils.StoreDict, "__call__", _store_pairs))
            enter(mock.patch.object(ExperimentManager, "read_hyperparameters", adapted(read, checks)))
            if name in LOADING_SCRIPTS:
                load_without_unpickling(stack, trusted)
                enter(mock.patch.object(zoo_utils, "get_model_path", adapted(zoo_utils.get_model_path, _model_path)))
            if name == "plot_from_file":
                enter(mock.patch.object(pickle, "load", adapted(pickle.load, _one_run_per_algorithm)))
            if name == "record_training":
                enter(mock.patch.object(subprocess, "call", adapted(subprocess.call, _record_video_through_the_bridge)))
                _lend_ffmpeg(stack)
            parse_args = adapted(argparse.ArgumentParser.parse_args, _whole_option_names)
            enter(mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args))
            enter(mock.patch.object(sys, "argv", [f"{PROGRAM} {name}", *arguments]))
            enter(warnings.catch_warnings())
            # runpy's "found in sys.modules": the zoo's package imports some scripts, which define functions only
            warnings.filterwarnings("ignore", r".* found in sys\.modules", RuntimeWarning, "runpy")
            runpy.run_module(ZOO_SCRIPTS[name][0], run_name="__main__", alter_sys=False)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except ImportError as error:  # an optional dependency: wandb for --track, seaborn for the plots, imageio-ffmpeg
        if "pip install" in str(error):
            raise ZooBridgeError(str(error)) from None
        missing = (error.name or "").split(".")[0]
        if not isinstance(error, ModuleNotFoundError) or missing in ("", "rl_zoo3", "sbx_lecture"):
            raise
        needs = f"rl_zoo3's {name} needs the module {error.name!r}, which is not installed"
        raise ZooBridgeError(f"{needs}: pip install 'sbx-lecture[zoo]'") from None
    return 0


def run_workers(arguments: list[str], workers: int, threads: int) -> int:
    """Start ``workers`` processes of ``sbx-lecture zoo train`` that fill one Optuna study; wait for them.

    This process first runs the zoo's train up to its hyperparameters (:func:`_check_train`), so that a mistake is
    said once and the study is created (and said) before the workers start, and do not race to create it; each worker
    gets its own seed, so that their samplers do not propose the same trials.

    :return: the highest exit status of the workers (the zoo's when it stopped before: ``--help``, a usage error)
    """
    try:
        return run_script("train", arguments, workers=workers)
    except _Checked as checked:
        manager = checked.args[0]
    environment = dict(os.environ, **{WORKER_VARIABLE: "1"})  # the workers share this folder and environment
    command = [sys.executable, "-m", "sbx_lecture.zoo", "train", *arguments, THREADS_FLAG, str(threads)]
    study = f"study {manager.study_name!r} at {mask_url(manager.storage)}"
    processes = []
    for worker in range(workers):
        print(f"{PROGRAM}: worker {worker + 1}/{workers} on {study}")
        processes.append(subprocess.Popen([*command, "--seed", str((manager.seed + worker) % 2**32)], env=environment))
    try:
        return max(process.wait() for process in processes)
    finally:  # after Ctrl-C, which the workers got too: let them write their reports
        for process in processes:
            process.wait()


def usage() -> str:
    """The text of ``sbx-lecture zoo --help``."""
    width = max(map(len, ZOO_SCRIPTS))
    scripts = "\n".join(f"  {name.ljust(width)}  {summary}" for name, (_, summary) in ZOO_SCRIPTS.items())
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

enjoy, record_video and record_training, in addition to the zoo:
  {TRUSTED_FLAG}       load the run's files as rl_zoo3 does, unpickling them (only for runs you trust)

algorithms: {names}
"""


def _run(name: str, arguments: list[str]) -> int:
    """``sbx-lecture zoo NAME ARGUMENTS...`` once the script's name is known (see :func:`main`)."""
    if name not in ZOO_SCRIPTS:  # a script that is not offered says why
        unknown = unknown_name_message("zoo script", name, list(ZOO_SCRIPTS))
        raise ZooBridgeError(UNAVAILABLE_SCRIPTS.get(name, unknown))
    options, arguments = _bridge_options(name, arguments)
    factory.use_threads(options.threads)
    table = register_with_zoo()
    if not {"-h", "--help"} & set(arguments):
        _check_command_line(name, arguments, table)
    if options.workers > 1:
        return run_workers(arguments, options.workers, options.threads)
    return run_script(name, arguments, options.trusted)


def main(argv: Sequence[str] | None = None) -> int:
    """``sbx-lecture zoo SCRIPT ARGUMENTS...``: register every algorithm with the zoo and run its script.

    :param argv: the script's name and its arguments (default: ``sys.argv[1:]``)
    :return: the exit status (2: a mistake, said in one line)
    """
    from sbx_lecture.training import USER_ERRORS  # here: the plain zoo, which imports this module, needs none of it

    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if arguments else USAGE_ERROR_STATUS
    # Said in one line (exit status 2): the errors of ``sbx-lecture train``, and a refusal of the parsers that read
    # the bridge's own options and peek at ``--algo`` and ``--env``.
    reported = (*USER_ERRORS, ZooBridgeError, argparse.ArgumentError)
    return run_command(PROGRAM, lambda: _run(arguments[0], arguments[1:]), reported, "stopped", mask_url)


if __name__ == "__main__":
    sys.exit(main())

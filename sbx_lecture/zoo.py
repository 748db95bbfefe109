"""The RL Baselines3 Zoo bridge: every registered algorithm in rl_zoo3's train, enjoy, optimize and plots.

``sbx-lecture zoo SCRIPT ARGS...`` (:func:`main`) fills the zoo's tables (:func:`register_with_zoo`, in
:mod:`sbx_lecture.zoo_adapters`, with the adapters that the plain ``python -m rl_zoo3.train`` gets too), then runs
the zoo's script in this process with ``sys.argv`` set to ``ARGS``. Unlike the plain zoo, it runs no code from a
command line or a hyperparameter file: the values that rl_zoo3 evaluates with ``eval`` (``-params``, ``--env-kwargs``,
a section's ``policy_kwargs``, ...) are parsed by :func:`sbx_lecture.hyperparams.parse_value` (:func:`zoo_value`).
For ``train`` it first

- checks that the environment exists and that every hyperparameter of the section in force (the algorithm's
  registered zoo file, ``zoo_configs/<algo>.yml`` for the lecture's algorithms, else the zoo's own, unless ``-conf``
  names another) and of ``-params`` parses and is accepted by the algorithm's constructor, and says which one is
  not (with the closest accepted names) before anything is trained;
- with ``--optimize``, defaults to the zoo's journal-file storage ``<log-folder>/<algo>/<env>_optuna.log`` and the
  study ``<algo>_<env>_n<budget>``, so that runs (and worker processes) with one budget add to one study; creates
  the study before any trial and says in one line whether it joins an existing one; ``--workers K`` starts K worker
  processes on that study (or on any ``--storage`` URL shared by several machines: a database, a Redis journal).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import importlib.util
import os
import runpy
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from sbx_lecture import zoo_config
from sbx_lecture.factory import UsageError, check_environment, require_count
from sbx_lecture.hyperparams import HyperparameterError, check_hyperparameters, either, parse_value
from sbx_lecture.infra.validation import InvalidValueError
from sbx_lecture.loading import ModelFileError
from sbx_lecture.loading.zoo_run import LOADING_SCRIPTS, pop_trusted
from sbx_lecture.plugins import get_plugin_manager
from sbx_lecture.registry import RegistryError, normalize_name, unknown_name_message
from sbx_lecture.zoo_adapters import (  # noqa: F401  (ensure_study, open_study_storage: for sweep and users)
    LazyAlgorithms,
    ZooBridgeError,
    check_storage_driver,
    ensure_study,
    mask_url,
    open_study_storage,
    register_with_zoo,
)
from sbx_lecture.zoo_config import ZooConfigError

PROGRAM = "sbx-lecture zoo"
USAGE_ERROR_STATUS = 2
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


#: What the bridge reports in one line (exit status 2) instead of a traceback (``ModelFileError``: a run's file that
#: is damaged or needs trust).
USER_ERRORS = (ZooBridgeError, ZooConfigError, RegistryError, HyperparameterError, ModelFileError, UsageError)
#: Keys of a section whose text rl_zoo3 runs with ``eval`` (``policy_kwargs: "dict(net_arch=[64])"``).
EVALUATED_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "monitor_kwargs", "normalize")


def zoo_value(key: str, value: Any) -> Any:
    """The value of the hyperparameter ``key`` as the bridge gives it to rl_zoo3 instead of the zoo's ``eval``:
    text parsed by :func:`~sbx_lecture.hyperparams.parse_value`, which runs no code; ``lin_0.001`` stays text (the
    zoo builds the schedule), and so do names (``MlpPolicy``), except where the zoo would run them as Python."""
    if not isinstance(value, str) or value.strip().startswith("lin_"):
        return value
    try:
        parsed = parse_value(value)
    except HyperparameterError as error:
        raise HyperparameterError(f"hyperparameter {key!r}: {error}") from None
    if key == "replay_buffer_class" and isinstance(parsed, str):
        parsed = getattr(importlib.import_module("stable_baselines3"), parsed, parsed)  # HerReplayBuffer
    if key in EVALUATED_KEYS and isinstance(parsed, str):
        raise HyperparameterError(f"hyperparameter {key!r}: {value!r} is not a value; write it as dict(...)")
    return parsed


def section_values(section: Mapping[str, Any]) -> dict[str, Any]:
    """``section`` with the values that rl_zoo3 would run with ``eval`` (:data:`EVALUATED_KEYS`) parsed instead."""
    return {key: zoo_value(key, value) if key in EVALUATED_KEYS else value for key, value in section.items()}


# --------------------------------------------------------------------------------------------------------------
# ``train``: the hyperparameter check and the optimization defaults, before rl_zoo3 parses
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
    parser.add_argument("--gym-packages", nargs="+", default=[])
    return parser


@dataclass
class TrainPlan:
    """What ``sbx-lecture zoo train`` will run.

    :param argv: the arguments for rl_zoo3's train (the user's, with the bridge's additions at the end)
    :param algo: the ``--algo`` name
    :param env_id: the ``--env`` id
    :param config: the hyperparameter file in force (``None``: left to the zoo, for ``--help``)
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
                count = require_count(flag, int(value))
            except ValueError as error:
                reason = str(error) if isinstance(error, InvalidValueError) else f"needs a whole number, got {value!r}"
                raise ZooBridgeError(reason if reason.startswith(flag) else f"{flag} {reason}") from None
        else:
            rest.append(argument)
    return rest, count


def _file_safe(env_id: str) -> str:
    return env_id.replace("/", "-").replace(":", "-")


def plan_train(argv: Sequence[str], table: LazyAlgorithms) -> TrainPlan:
    """Read ``sbx-lecture zoo train`` arguments and decide what rl_zoo3 gets (see the module docstring).

    :raises ZooBridgeError: for an unknown algorithm, a missing sampler, a bad ``--workers``
    :raises UsageError: for an unknown environment
    :raises ZooConfigError: for a missing hyperparameter file or section
    :raises HyperparameterError: for a value that does not parse, a key the constructor refuses
    """
    arguments, workers = _pop_count(list(argv), WORKERS_FLAG)
    if {"-h", "--help"} & set(arguments):
        return TrainPlan(arguments, "", "", None)
    try:
        options, _ = _train_pre_parser().parse_known_args(arguments)
    except _PreParseError:
        return TrainPlan(arguments, "", "", None)  # rl_zoo3's parser explains the mistake

    _check_algo_choice(arguments, table)
    algo = options.algo
    for module in ["rl_zoo3.import_envs", *options.gym_packages]:  # the environments the zoo's train registers
        importlib.import_module(module)
    check_environment(options.env)
    spec = table.spec(algo)
    registered = zoo_config.registered_zoo_file(spec) if spec is not None else None
    config = options.conf_file or str(registered or zoo_config.rl_zoo_file(algo) or "")
    if not config:
        origin = f"plugin {spec.origin}" if spec is not None else "its provider"
        raise ZooConfigError(
            f"no zoo hyperparameters for {algo!r}: {origin} registers no zoo file and rl_zoo3 ships none; "
            f"pass -conf FILE.yml with a section {options.env!r} (or 'default')"
        )
    command = f"{PROGRAM} train"
    if config.endswith((".yml", ".yaml")):
        name, section = _section(config, algo, options.env)
        check_hyperparameters(table[algo], section_values(section), f"section {name!r} of {config}", command)
    overrides = {key: zoo_value(key, text) for key, _, text in (item.partition(":") for item in options.hyperparams)}
    check_hyperparameters(table[algo], overrides, "-params/--hyperparams", command)

    if options.track and importlib.util.find_spec("wandb") is None:
        raise ZooBridgeError("--track logs to Weights & Biases, which needs the package 'wandb': pip install wandb")
    plan = TrainPlan(arguments, algo, options.env, config, workers, seed=options.seed)
    if options.optimize_hyperparameters:
        _plan_optimization(plan, options, table)
    elif workers > 1:
        raise ZooBridgeError(f"{WORKERS_FLAG} starts optimization workers: it needs -optimize")
    return plan


def _section(config: str | Path, algo: str, env_id: str) -> tuple[str, dict[str, Any]]:
    """The section of the zoo file ``config`` that rl_zoo3 will use for ``algo`` on ``env_id``: name and values."""
    if not Path(config).is_file():
        raise ZooConfigError(f"hyperparameter file {config} does not exist")
    return zoo_config.section_for(zoo_config.read_sections(Path(config)), env_id, algo, config)


def zoo_sampler(algo: str, table: LazyAlgorithms) -> Any:
    """The Optuna sampler the zoo holds for ``algo`` (``(trial, n_actions, n_envs, additional_args) ->
    hyperparameters``): the registered one (ours, plugins') or the zoo's own (SB3's), for ``-optimize`` and sweeps."""
    import rl_zoo3.hyperparams_opt as zoo_optimization

    if algo not in zoo_optimization.HYPERPARAMS_SAMPLER:
        spec = table.spec(algo)
        origin = f" (plugin {spec.origin})" if spec is not None else ""
        raise ZooBridgeError(f"{algo!r}{origin} has no zoo sampler to search with: register one with zoo_sampler=...")
    return zoo_optimization.HYPERPARAMS_SAMPLER[algo]


def _plan_optimization(plan: TrainPlan, options: argparse.Namespace, table: LazyAlgorithms) -> None:
    zoo_sampler(plan.algo, table)
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
    if plan.config is None or not plan.config.endswith((".yml", ".yaml")):
        return None
    try:
        return int(float(_section(plan.config, plan.algo, plan.env_id)[1]["n_timesteps"]))
    except (ZooConfigError, KeyError, TypeError, ValueError, OSError):
        return None


def _check_algo_choice(arguments: list[str], table: LazyAlgorithms) -> None:
    """An unknown ``--algo`` is refused with the closest names, and so is another spelling of a registered one
    (``TNPG`` or ``PPO-KL``: the zoo takes the exact name, as ``train`` does)."""
    for index, argument in enumerate(arguments):
        if argument == "--algo" and index + 1 < len(arguments):
            value = arguments[index + 1]
        elif argument.startswith("--algo="):
            value = argument.partition("=")[2]
        else:
            continue
        if value not in table:
            if normalize_name(value) in table:
                raise ZooBridgeError(f"unknown algorithm {value!r}; did you mean {normalize_name(value)!r}?")
            raise ZooBridgeError(unknown_name_message("algorithm", value, sorted(table)))


def announce_study(plan: TrainPlan) -> None:
    """Create ``plan``'s study unless it exists, and say in one line which it is (and whether it is joined)."""
    assert plan.storage is not None and plan.study_name is not None
    where = mask_url(plan.storage)
    study, existed = ensure_study(plan.storage, plan.study_name)
    trials = len(study.trials)
    if os.environ.get(WORKER_VARIABLE):
        return
    if existed:
        print(
            f"{PROGRAM}: joining the existing study {plan.study_name!r} at {where} ({trials} trials so far); "
            "--study-name NAME starts another"
        )
    else:
        print(f"{PROGRAM}: created the study {plan.study_name!r} at {where}")


def run_workers(plan: TrainPlan) -> int:
    """Start ``plan.workers`` processes of ``sbx-lecture zoo train`` that fill one Optuna study; wait for them.

    The study is created first (so that the workers do not race to create it); each worker gets its own seed when
    ``--seed`` was given, so that their samplers do not propose the same trials.

    :return: the highest exit status of the workers
    """
    assert plan.storage is not None and plan.study_name is not None
    environment = dict(os.environ, **{WORKER_VARIABLE: "1"})
    package_root = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
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
    """plot_from_file's adapter: within the block, its ``pickle.load`` goes through :func:`one_run_last_evals`."""
    import pickle

    load = pickle.load
    with mock.patch.object(pickle, "load", lambda *args, **kwargs: one_run_last_evals(load(*args, **kwargs))):
        yield


@contextlib.contextmanager
def _record_training_programs() -> Iterator[None]:
    """record_training's adapters: the ``python -m rl_zoo3.record_video`` it starts with ``subprocess.call`` runs
    through the bridge (and this Python, loading safely); without an ``ffmpeg`` on ``PATH``, imageio-ffmpeg's (a
    dependency of moviepy, which the zoo's video recorder needs) is put there for the block."""
    import shutil
    import tempfile

    call = subprocess.call

    def through_the_bridge(command: Any, *args: Any, **kwargs: Any) -> int:
        if isinstance(command, list) and command[:3] == ["python", "-m", "rl_zoo3.record_video"]:
            command = [sys.executable, "-m", "sbx_lecture.zoo", "record_video", *command[3:]]
        return call(command, *args, **kwargs)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(subprocess, "call", through_the_bridge))
        if shutil.which("ffmpeg") is None:
            try:
                import imageio_ffmpeg

                executable = imageio_ffmpeg.get_ffmpeg_exe()
            except (ImportError, RuntimeError):
                raise ZooBridgeError(
                    "record_training runs the program ffmpeg, which is not installed: pip install imageio-ffmpeg "
                    "(sbx-lecture[zoo] installs it), or install ffmpeg with the system's package manager"
                ) from None
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="sbx-lecture-ffmpeg-"))
            os.symlink(executable, os.path.join(folder, "ffmpeg"))
            stack.enter_context(mock.patch.dict(os.environ, PATH=os.pathsep.join([folder, os.environ.get("PATH", "")])))
        yield


@contextlib.contextmanager
def _values_without_eval() -> Iterator[None]:
    """Within the block, rl_zoo3 runs no code from a command line or a section: its ``StoreDict`` (``-params``,
    ``--env-kwargs``) and its preprocessing of :data:`EVALUATED_KEYS` get the values through :func:`zoo_value`."""
    import rl_zoo3.utils as zoo_utils
    from rl_zoo3.exp_manager import ExperimentManager

    preprocess = ExperimentManager._preprocess_hyperparams

    def storing(action: Any, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        pairs = (value.partition(":") for value in values)
        setattr(namespace, action.dest, {key: zoo_value(key, text) for key, _, text in pairs})

    def preprocessing(self: Any, hyperparams: dict[str, Any]) -> Any:
        return preprocess(self, section_values(hyperparams))

    with (
        mock.patch.object(zoo_utils.StoreDict, "__call__", storing),
        mock.patch.object(ExperimentManager, "_preprocess_hyperparams", preprocessing),
    ):
        yield


def _model_path_in_one_line(get_model_path: Any) -> Any:
    """rl_zoo3's ``get_model_path`` (of enjoy and record_video), whose "folder not found" / "no model found" becomes
    a one-line :class:`ZooBridgeError` (but in the zoo's ``rl-trained-agents``, from which enjoy downloads)."""

    def finding(exp_id: int, folder: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return get_model_path(exp_id, folder, *args, **kwargs)
        except (AssertionError, ValueError) as error:
            if "rl-trained-agents" in folder:
                raise
            raise ZooBridgeError(
                f"{error}: pass -f the log folder of `{PROGRAM} train` (its -f, default logs) and the run's --algo, "
                "--env and --exp-id"
            ) from None

    return finding


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


def run_script(name: str, arguments: Sequence[str], trusted: bool = False) -> int:
    """Run the zoo script ``name`` in this process with ``sys.argv`` set to ``arguments``; return its status.

    :param trusted: let the scripts that load a run unpickle its files as rl_zoo3 does (see
        :mod:`sbx_lecture.loading.zoo_run`)
    """
    import rl_zoo3.utils as zoo_utils

    from sbx_lecture.loading.zoo_run import loading_without_unpickling

    module = ZOO_SCRIPTS[name][0]
    with contextlib.ExitStack() as stack:
        stack.enter_context(_values_without_eval())
        if name in LOADING_SCRIPTS:
            stack.enter_context(loading_without_unpickling(trusted))
            model_path = _model_path_in_one_line(zoo_utils.get_model_path)
            stack.enter_context(mock.patch.object(zoo_utils, "get_model_path", model_path))
        stack.enter_context(mock.patch.object(sys, "argv", [f"{PROGRAM} {name}", *arguments]))
        stack.enter_context(warnings.catch_warnings())
        # runpy's "found in sys.modules" warning: the zoo's package imports some scripts, which define functions only
        warnings.filterwarnings("ignore", r".* found in sys\.modules", RuntimeWarning, "runpy")
        if name == "plot_from_file":
            stack.enter_context(_plots_of_single_runs())
        if name == "record_training":
            stack.enter_context(_record_training_programs())
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=False)
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                return exit_.code or 0
            print(exit_.code, file=sys.stderr)
            return 1
        except ModuleNotFoundError as error:
            if error.name is None or error.name.split(".")[0] in ("rl_zoo3", "sbx_lecture"):
                raise
            # An optional dependency of the zoo: the plots need its ``plots`` extra (seaborn, pandas, scipy, ...).
            hint = "pip install 'rl_zoo3[plots]'" if "plots" in module else f"pip install {error.name}"
            missing = f"rl_zoo3's {name} needs the module {error.name!r}, which is not installed"
            raise ZooBridgeError(f"{missing}: {hint}") from None
    return 0


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

algorithms: {names}
"""


def _refuse(message: str) -> int:
    """Say ``message`` as the bridge's one-line error (``SBX_LECTURE_DEBUG=1``: raise) and return status 2."""
    if os.environ.get("SBX_LECTURE_DEBUG") and sys.exc_info()[1] is not None:
        raise
    print(f"{PROGRAM}: error: {' '.join(message.split())}", file=sys.stderr)
    return USAGE_ERROR_STATUS


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
    if name in UNAVAILABLE_SCRIPTS:
        return _refuse(UNAVAILABLE_SCRIPTS[name])
    if name not in ZOO_SCRIPTS:
        close = difflib.get_close_matches(name.replace("-", "_"), list(ZOO_SCRIPTS), n=3, cutoff=0.5)
        hint = f"did you mean {either(close)}?" if close else f"use one of {', '.join(ZOO_SCRIPTS)}"
        return _refuse(f"unknown zoo script {name!r}; {hint}")
    rest, trusted = pop_trusted(rest) if name in LOADING_SCRIPTS else (rest, False)
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
            _check_algo_choice(rest, table)
            if name == "record_training":
                rest = absolute_output_folder(rest)
        return run_script(name, rest, trusted)
    except USER_ERRORS as error:
        return _refuse(str(error))


if __name__ == "__main__":
    sys.exit(main())

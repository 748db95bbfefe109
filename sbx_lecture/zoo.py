"""The RL Baselines3 Zoo bridge: every registered algorithm in rl_zoo3's train, enjoy, optimize and plots.

The zoo's tables are filled, and the adapters that the plain ``python -m rl_zoo3.train`` gets too are installed, by
:func:`~sbx_lecture.zoo_adapters.register_with_zoo` (see :mod:`sbx_lecture.zoo_adapters`, which also holds the
Optuna storages of ``--storage``; this module offers them to the sweep and to users).

``sbx-lecture zoo SCRIPT ARGS...`` (:func:`main`) runs the zoo's script in this process with ``sys.argv`` set to
``ARGS``, with a few more adapters for that script only (:func:`run_script`):

- no code runs from a command line or a hyperparameter section: the values that rl_zoo3 evaluates with ``eval``
  (``-params``, ``--env-kwargs``, a section's ``policy_kwargs``, ...) are parsed by
  :func:`sbx_lecture.hyperparams.parse_value` instead (:func:`zoo_value`);
- ``train`` refuses an unknown environment, and every key of the section in force and of ``-params`` that the
  algorithm's constructor refuses, naming the closest accepted names, before anything is built (:func:`_check_train`);
- ``train -optimize`` defaults to the zoo's journal file ``<log-folder>/<algo>/<env>_optuna.log`` and the study
  ``<algo>_<env>_n<budget>``, so that runs (and workers) with one budget add to one study; it creates the study before
  any trial and says in one line whether it joins an existing one; ``--workers K`` starts K worker processes on it
  (or on any ``--storage`` URL shared by several machines: a database, a Redis journal);
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
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from typing import Any
from unittest import mock

from sbx_lecture.factory import check_environment, require_count, resolve_algorithm
from sbx_lecture.hyperparams import HyperparameterError, check_hyperparameters, parse_value
from sbx_lecture.infra.validation import USAGE_ERROR_STATUS, run_command
from sbx_lecture.loading.zoo_run import LOADING_SCRIPTS, TRUSTED_FLAG, load_without_unpickling
from sbx_lecture.plugins import get_plugin_manager
from sbx_lecture.registry import unknown_name_message
from sbx_lecture.training import USER_ERRORS
from sbx_lecture.zoo_adapters import (  # noqa: F401  (the sweep and users import the storages from here)
    LazyAlgorithms,
    ZooBridgeError,
    adapted,
    ensure_study,
    mask_url,
    open_study_storage,
    read_hyperparameters_adapter,
    register_with_zoo,
    zoo_sampler,
)

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
#: Keys of a section whose text rl_zoo3 runs with ``eval`` (``policy_kwargs: "dict(net_arch=[64])"``).
EVALUATED_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs", "monitor_kwargs", "normalize")


#: What the bridge reports in one line (exit status 2) instead of a traceback: the errors of ``sbx-lecture train``,
#: and a refusal of the parsers that read the bridge's own options and peek at ``--algo`` and ``--env``.
REPORTED_ERRORS = (*USER_ERRORS, ZooBridgeError, argparse.ArgumentError)


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


# --------------------------------------------------------------------------------------------------------------
# What sbx-lecture zoo adds for the script it runs
# --------------------------------------------------------------------------------------------------------------


def _store_pairs(action: Any, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
    """The bridge's ``rl_zoo3.utils.StoreDict.__call__`` (``-params``, ``--env-kwargs``): ``key:value`` pairs whose
    values :func:`zoo_value` parses; the zoo's own runs them with ``eval``."""
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
    require_count(THREADS_FLAG, options.threads)
    require_count(WORKERS_FLAG, options.workers)
    if options.output_folder is not None:
        rest += ["--output-folder", options.output_folder]
    return options, rest


def _check_command_line(script: str, arguments: list[str], table: LazyAlgorithms) -> None:
    """Refuse, before the zoo starts, an unknown ``--algo`` with the closest names (and another spelling of a
    registered one, ``TNPG`` or ``PPO-KL``: the zoo takes the exact name, as ``train`` does) and, for ``train``, an
    unknown ``--env`` (once the zoo's environments and ``--gym-packages`` are registered)."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--algo")
    parser.add_argument("--env")
    parser.add_argument("--gym-packages", nargs="+", default=[])
    options = parser.parse_known_args(arguments)[0]
    if options.algo is not None and options.algo not in table:
        resolve_algorithm(options.algo)  # refuses it with the closest registered names (or its exact spelling)
    if script == "train" and options.env is not None:
        for module in ["rl_zoo3.import_envs", *options.gym_packages]:
            importlib.import_module(module)
        check_environment(options.env)


def run_script(name: str, arguments: Sequence[str], trusted: bool = False, workers: int = 1) -> int:
    """Run the zoo script ``name`` in this process with ``sys.argv`` set to ``arguments``, with the bridge's adapters
    for that script only (see the module docstring); return its exit status.

    :param trusted: let the scripts that load a run unpickle its files as rl_zoo3 does
        (:mod:`sbx_lecture.loading.zoo_run`)
    :param workers: ``train`` with more than 1 stops with :class:`_Checked` once it is checked (:func:`run_workers`)
    """
    import rl_zoo3.utils as zoo_utils
    from rl_zoo3.exp_manager import ExperimentManager

    module = ZOO_SCRIPTS[name][0]
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
            enter(mock.patch.object(sys, "argv", [f"{PROGRAM} {name}", *arguments]))
            enter(warnings.catch_warnings())
            # runpy's "found in sys.modules": the zoo's package imports some scripts, which define functions only
            warnings.filterwarnings("ignore", r".* found in sys\.modules", RuntimeWarning, "runpy")
            runpy.run_module(module, run_name="__main__", alter_sys=False)
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
    if name in UNAVAILABLE_SCRIPTS:
        raise ZooBridgeError(UNAVAILABLE_SCRIPTS[name])
    if name not in ZOO_SCRIPTS:
        raise ZooBridgeError(unknown_name_message("zoo script", name, list(ZOO_SCRIPTS)))
    import torch as th

    options, arguments = _bridge_options(name, arguments)
    th.set_num_threads(options.threads)
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
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if arguments else USAGE_ERROR_STATUS
    return run_command(PROGRAM, lambda: _run(arguments[0], arguments[1:]), REPORTED_ERRORS, "stopped", mask_url)


if __name__ == "__main__":
    sys.exit(main())

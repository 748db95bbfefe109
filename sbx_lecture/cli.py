"""The ``sbx-lecture`` command: list, train, eval, inspect, zoo, bench, sweep."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

PROGRAM = "sbx-lecture"
USAGE_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130
#: Exit status of ``list --check`` when a registered target does not resolve (2 stays for usage errors).
CHECK_FAILED_STATUS = 1
THREADS_HELP = "torch CPU threads (default 1: small networks train several times faster on one thread)"


def _build_parser() -> argparse.ArgumentParser:
    from sbx_lecture import training

    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Policy-optimization algorithms of the lecture, on Stable-Baselines3.",
        allow_abbrev=False,  # --timestep is a mistake, not --timesteps
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = commands.add_parser("list", allow_abbrev=False, help="registered algorithms and failed plugins")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument(
        "--check",
        action="store_true",
        help=f"import every algorithm class and zoo sampler now and report each failure in one line "
        f"(exit status {CHECK_FAILED_STATUS} when any fails)",
    )

    trainer = commands.add_parser("train", allow_abbrev=False, help="train an algorithm into a run folder")
    trainer.add_argument("algo", nargs="?", default=training.DEFAULT_ALGORITHM, help="registry name (see `list`)")
    trainer.add_argument("env", nargs="?", default=training.DEFAULT_ENVIRONMENT, help="gymnasium environment id")
    trainer.add_argument(
        "--timesteps", type=int, help="total environment steps of the run (default: the zoo budget, else 1e5)"
    )
    trainer.add_argument("--seed", type=int, default=0, help="random seed of the run (default: 0)")
    trainer.add_argument("--n-envs", type=int, help="parallel environments (default: the zoo's, or 1)")
    trainer.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hyperparameter, typed as in the RL Zoo: 256, 3e-4, True, lin_0.001, dict(net_arch=[64, 64])",
    )
    trainer.add_argument("--out", type=Path, help="run folder (default: runs/<algo>_<env>_<k>)")
    trainer.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    trainer.add_argument(
        "--checkpoint-freq", type=int, help="environment steps between checkpoints (default: a tenth of the budget)"
    )
    trainer.add_argument(
        "--eval-freq",
        type=int,
        help="evaluate the deterministic policy every N steps on a separate environment; keeps evaluations.npz "
        "(the RL Zoo's layout) and the best model as best_model.zip",
    )
    trainer.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default: 5)")
    trainer.add_argument(
        "--vec-env",
        choices=("dummy", "subproc"),
        default="dummy",
        help="step the parallel environments in this process (dummy) or one process each (subproc)",
    )
    trainer.add_argument(
        "-conf",
        "--conf-file",
        type=Path,
        metavar="FILE",
        help="RL Zoo hyperparameter file to read instead of the algorithm's own (its section for ENV, else default)",
    )
    trainer.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    trainer.add_argument("--threads", default=1, metavar="N", help=THREADS_HELP)
    trainer.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar (the plain lines that replace it in a log)"
    )
    trainer.add_argument("-v", "--verbose", type=int, default=0, help="SB3 verbosity")

    describer = commands.add_parser(
        "hyperparams", allow_abbrev=False, help="every constructor argument of an algorithm, with its meaning"
    )
    describer.add_argument("algo", help="registry name (see `list`)")
    describer.add_argument("--json", action="store_true", help="machine-readable output")

    evaluator = commands.add_parser("eval", allow_abbrev=False, help="evaluate a saved model")
    evaluator.add_argument("model", type=Path, help="model .zip file")
    evaluator.add_argument("env", nargs="?", help="environment id (default: the one it was trained on)")
    evaluator.add_argument("--episodes", type=int, default=10, help="episodes to run (default: 10)")
    evaluator.add_argument("--algo", help="algorithm name, for models not saved by sbx-lecture")
    evaluator.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    evaluator.add_argument("--seed", type=int, default=0, help="seed of the evaluation environment (default: 0)")
    evaluator.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    evaluator.add_argument("--threads", default=1, metavar="N", help=THREADS_HELP)
    evaluator.add_argument(
        "--trusted",
        action="store_true",
        help="allow unpickling the model file and its statistics: only for files from a source you trust",
    )

    inspector = commands.add_parser(
        "inspect", allow_abbrev=False, help="what a model file holds and which fields would need trust"
    )
    inspector.add_argument("model", type=Path, help="model .zip file")
    inspector.add_argument("--json", action="store_true", help="machine-readable output")

    zoo = commands.add_parser("zoo", help="the RL Baselines3 Zoo with every registered algorithm", add_help=False)
    zoo.add_argument("zoo_args", nargs=argparse.REMAINDER)
    bench = commands.add_parser("bench", help="benchmark suites with tables and plots", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    sweep = commands.add_parser("sweep", help="hyperparameter search, K seeds per trial, on Dask", add_help=False)
    sweep.add_argument("sweep_args", nargs=argparse.REMAINDER)
    return parser


_SPACE_ABBREVIATIONS = {"Discrete": "Disc", "MultiDiscrete": "MDisc", "MultiBinary": "MBin"}


def _spaces(names: list[str] | None) -> str:
    """``Box,Disc,MDisc,MBin,Dict`` for a list of space names; ``?`` when the plugin did not declare them."""
    if names is None:
        return "?"
    return ",".join(_SPACE_ABBREVIATIONS.get(name, name) for name in names)


def _list(as_json: bool, check: bool = False) -> int:
    from sbx_lecture.plugins import get_plugin_manager

    manager = get_plugin_manager()
    problems = manager.registry.check() if check else {}
    algorithms: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "target": spec.target_path,
            "plugin": spec.plugin,
            "distribution": f"{spec.distribution}=={spec.version}" if spec.distribution else None,
            "description": spec.description,
            "action_spaces": list(spec.action_spaces) if spec.action_spaces is not None else None,
            "observation_spaces": list(spec.observation_spaces) if spec.observation_spaces is not None else None,
            **({"check": problems.get(spec.name, [])} if check else {}),
        }
        for spec in manager.registry
    ]
    failures = [
        {"plugin": f.name, "distribution": f.distribution, "version": f.version, "reason": f.reason}
        for f in manager.failures
    ]
    status = CHECK_FAILED_STATUS if problems else 0
    if as_json:
        report: dict[str, Any] = {"algorithms": algorithms, "failed_plugins": failures}
        if check:
            report["check"] = {"ok": not problems, "failed": sorted(problems)}
        print(json.dumps(report, indent=2))
        return status
    rows = [
        (
            a["name"],
            a["target"],
            a["plugin"],
            a["distribution"] or "-",
            _spaces(a["action_spaces"]),
            _spaces(a["observation_spaces"]),
            a["description"],
        )
        for a in algorithms
    ]
    header = ("name", "class", "plugin", "distribution", "actions", "observations", "description")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) + f"  {row[-1]}")
    if failures:
        print("\nfailed plugins (skipped):")
        for failure in manager.failures:
            print(f"  {failure.origin}: {failure.reason}")
    if check:
        failed = sum(len(messages) for messages in problems.values())
        print(f"\ncheck: {len(algorithms) - len(problems)} of {len(algorithms)} algorithms resolve", end="")
        print(f"; {failed} problem{'s' if failed != 1 else ''}:" if failed else "")
        for messages in problems.values():
            for message in messages:
                print(f"  {message}")
    return status


def _train(args: argparse.Namespace) -> int:
    from sbx_lecture.checkpoints import interrupt_once, stop_signals_handled
    from sbx_lecture.hyperparams import parse_assignments
    from sbx_lecture.training import TrainConfig, TrainingInterrupted, train

    config = TrainConfig(
        algo=args.algo,
        env_id=args.env,
        timesteps=args.timesteps,
        seed=args.seed,
        n_envs=args.n_envs,
        hyperparams=parse_assignments(args.param),
        out=args.out,
        resume=args.resume,
        checkpoint_freq=args.checkpoint_freq,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        vec_env=args.vec_env,
        conf_file=args.conf_file,
        progress_bar=not args.no_progress,
        device=args.device,
        verbose=args.verbose,
    )
    try:  # Ctrl-C or SIGTERM commits a checkpoint; a second one waits for it
        with stop_signals_handled(interrupt_once):
            result = train(config, notify=lambda line: print(f"{PROGRAM}: note: {line}", file=sys.stderr))
    except TrainingInterrupted as interrupted:
        print(f"{PROGRAM}: {interrupted}", file=sys.stderr)
        return INTERRUPTED_STATUS
    print(f"trained {result.num_timesteps} steps; run folder: {result.run_dir}")
    print(f"model: {result.model_path}")
    if result.learning_curve is not None:
        print(f"learning curve: {result.learning_curve}")
    return 0


def _hyperparams(algo: str, as_json: bool) -> int:
    import textwrap

    from sbx_lecture.hyperparams import describe_arguments
    from sbx_lecture.training import resolve_algorithm

    spec, cls = resolve_algorithm(algo)
    rows = describe_arguments(cls)
    if as_json:
        print(json.dumps([{"name": n, "default": d, "meaning": m} for n, d, m in rows], indent=2))
        return 0
    print(f"{spec.name} ({spec.target_path}): constructor arguments, settable with -p NAME=VALUE")
    width = max(len(name) for name, _, _ in rows)
    for name, default, meaning in rows:
        print(f"  {name.ljust(width)}  default {default}")
        for line in textwrap.wrap(meaning, 100):
            print(f"  {' ' * width}    {line}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from sbx_lecture.training import evaluate

    result = evaluate(
        args.model,
        args.env,
        args.episodes,
        args.algo,
        not args.stochastic,
        args.seed,
        trusted=args.trusted,
        device=args.device,
    )
    if result.normalization is not None:
        print(f"normalisation statistics: {result.normalization}")
    print(f"{result.algo} on {result.env_id}: {result.mean:.2f} ± {result.std:.2f} over {result.episodes} episodes")
    return 0


def _inspect(path: Path, as_json: bool) -> int:
    from sbx_lecture.loading import inspect_model_file

    report = inspect_model_file(path)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"{report['path']} (Stable-Baselines3 {report['sb3_version'] or 'unknown'})")
    for key, value in report["metadata"].items():
        print(f"  {key}: {value}")
    print("members:")
    for member in report["members"]:
        print(f"  {member['name']:<28} {member['size']:>10} bytes")
    print("pickled fields:")
    for name, entry in report["fields"].items():
        if "value" not in entry:
            state = "safe" if entry["safe"] else f"NEEDS TRUST: {entry['refused']}"
            print(f"  {name:<28} {state}")
    verdict = "loads without unpickling" if report["safe_load"] else f"needs --trusted: {report['reason']}"
    print(f"safe load: {verdict}")
    return 0


def _use_threads(value: int | str) -> None:
    """Give torch ``--threads`` CPU threads; anything but a positive integer is one line (exit status 2)."""
    import torch as th

    from sbx_lecture.infra.validation import InvalidValueError

    if not str(value).isdecimal() or int(value) < 1:
        raise InvalidValueError(f"--threads must be a positive integer (1 suits small networks), got {value!r}")
    th.set_num_threads(int(value))


def _delegate(module_name: str, argv: list[str]) -> int:
    import importlib

    module: Any = importlib.import_module(module_name)
    return int(module.main(argv) or 0)


def _one_line_plugin_warnings(original: Callable[..., str]) -> Callable[..., str]:
    """A ``warnings.formatwarning`` that prints a skipped plugin as its one-line message (not file, line and code)."""
    from sbx_lecture.plugins import PluginWarning

    def formatwarning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
        if issubclass(category, PluginWarning):
            return f"{message}\n"
        return original(message, category, *args, **kwargs)

    return formatwarning


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``sbx-lecture`` command: :func:`main` in a process of its own, which then ends. After a stop signal it
    ignores the next ones while Python shuts down (a second Ctrl-C there would print a traceback, and the checkpoint
    is already committed); :func:`main` itself gives an in-process caller its signal handlers back."""
    status = main(argv)
    if status == INTERRUPTED_STATUS:
        from sbx_lecture.checkpoints import ignore_stop_signals

        ignore_stop_signals()
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sbx-lecture`` console script; returns the exit status."""
    original_format = warnings.formatwarning
    warnings.formatwarning = _one_line_plugin_warnings(original_format)
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = original_format


def _main(argv: Sequence[str] | None) -> int:
    from sbx_lecture.training import USER_ERRORS

    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] in (["zoo"], ["bench"], ["sweep"]):  # pass-through commands parse their own options
            return _delegate(f"sbx_lecture.{arguments[0]}", arguments[1:])
        args = _build_parser().parse_args(arguments)
        if args.command in ("train", "eval"):
            _use_threads(args.threads)
        if args.command == "list":
            return _list(args.json, args.check)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "hyperparams":
            return _hyperparams(args.algo, args.json)
        if args.command == "inspect":
            return _inspect(args.model, args.json)
    except USER_ERRORS as exc:
        if os.environ.get("SBX_LECTURE_DEBUG"):
            raise
        print(f"{PROGRAM}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    _build_parser().print_help()
    return USAGE_ERROR_STATUS


if __name__ == "__main__":
    sys.exit(main())

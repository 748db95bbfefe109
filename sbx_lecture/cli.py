"""The ``sbx-lecture`` command: list, train, eval, inspect, hyperparams, zoo, bench, sweep."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from unittest import mock

from sbx_lecture.infra.validation import INTERRUPTED_STATUS, CommandLineParser, run_command

if TYPE_CHECKING:
    from sbx_lecture.registry import AlgorithmSpec

PROGRAM = "sbx-lecture"
#: Exit status of ``list --check`` when a registered target does not resolve (2 stays for usage errors).
CHECK_FAILED_STATUS = 1
THREADS_HELP = "torch CPU threads (default 1: small networks train several times faster on one thread)"
#: Commands that parse their own options: ``sbx-lecture zoo ...`` runs ``sbx_lecture.zoo.main([...])``.
PASS_THROUGH_COMMANDS = {
    "zoo": "the RL Baselines3 Zoo with every registered algorithm",
    "bench": "benchmark suites with tables and plots",
    "sweep": "hyperparameter search, K seeds per trial, on Dask",
}


def _build_parser() -> argparse.ArgumentParser:
    from sbx_lecture import training

    parser = CommandLineParser(
        prog=PROGRAM, description="Policy-optimization algorithms of the lecture, on Stable-Baselines3."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument("--json", action="store_true", help="machine-readable output")
    torch_options = argparse.ArgumentParser(add_help=False)
    torch_options.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    torch_options.add_argument("--threads", default=1, metavar="N", help=THREADS_HELP)

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str, *parents: Any) -> Any:
        sub = commands.add_parser(name, help=help, parents=list(parents))  # a CommandLineParser too
        sub.set_defaults(handler=handler)
        return sub

    listing = command("list", _list, "registered algorithms and failed plugins", json_option)
    listing.add_argument(
        "--check",
        action="store_true",
        help=f"import every algorithm class and zoo sampler now and report each failure in one line "
        f"(exit status {CHECK_FAILED_STATUS} when any fails)",
    )

    trainer = command("train", _train, "train an algorithm into a run folder", torch_options)
    trainer.add_argument("algo", nargs="?", default=training.DEFAULT_ALGORITHM, help="registry name (see `list`)")
    trainer.add_argument(
        "env_id", metavar="env", nargs="?", default=training.DEFAULT_ENVIRONMENT, help="gymnasium environment id"
    )
    trainer.add_argument(
        "--timesteps", type=int, help="total environment steps of the run (default: the zoo budget, else 1e5)"
    )
    trainer.add_argument("--seed", type=int, default=0, help="random seed of the run (default: 0)")
    trainer.add_argument("--n-envs", type=int, help="parallel environments (default: the zoo's, or 1)")
    trainer.add_argument(
        "-p",
        "--param",
        dest="hyperparams",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="hyperparameter, typed as in the RL Zoo: 256, 3e-4, True, lin_0.001, dict(net_arch=[64, 64])",
    )
    trainer.add_argument("--out", type=_path, help="run folder (default: runs/<algo>_<env>_<k>)")
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
        type=_path,
        metavar="FILE",
        help="RL Zoo hyperparameter file to read instead of the algorithm's own (its section for ENV, else default)",
    )
    trainer.add_argument(
        "--no-progress",
        dest="progress_bar",
        action="store_false",
        help="hide the progress bar (the plain lines that replace it in a log)",
    )
    trainer.add_argument("-v", "--verbose", type=int, default=0, help="SB3 verbosity")

    describer = command(
        "hyperparams", _hyperparams, "every constructor argument of an algorithm, with its meaning", json_option
    )
    describer.add_argument("algo", help="registry name (see `list`)")

    evaluator = command("eval", _eval, "evaluate a saved model", torch_options)
    evaluator.add_argument("model_path", metavar="model", type=_path, help="model .zip file")
    evaluator.add_argument(
        "env_id", metavar="env", nargs="?", help="environment id (default: the one it was trained on)"
    )
    evaluator.add_argument("--episodes", type=int, default=10, help="episodes to run (default: 10)")
    evaluator.add_argument("--algo", help="algorithm name, for models not saved by sbx-lecture")
    evaluator.add_argument(
        "--stochastic", dest="deterministic", action="store_false", help="sample actions instead of the mode"
    )
    evaluator.add_argument("--seed", type=int, default=0, help="seed of the evaluation environment (default: 0)")
    evaluator.add_argument(
        "--trusted",
        action="store_true",
        help="allow unpickling the model file and its statistics: only for files from a source you trust",
    )

    inspector = command("inspect", _inspect, "what a model file holds and which fields would need trust", json_option)
    inspector.add_argument("model", type=_path, help="model .zip file")

    for name, help_text in PASS_THROUGH_COMMANDS.items():  # listed in the help; _run hands them their arguments
        commands.add_parser(name, help=help_text, add_help=False).add_argument("arguments", nargs=argparse.REMAINDER)
    return parser


def _path(text: str) -> Path:
    """A path option's value; an empty one (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file or folder: give one, e.g. runs/mine")
    return Path(text)


_SPACE_ABBREVIATIONS = {"Discrete": "Disc", "MultiDiscrete": "MDisc", "MultiBinary": "MBin"}


def _listing(spec: AlgorithmSpec, problems: dict[str, list[str]] | None) -> dict[str, Any]:
    """One algorithm of ``list``. With ``--check`` (``problems`` given: every target was imported) also the spaces its
    class supports (``None`` where it did not load, or where neither class nor plugin says) and its problems; a plain
    ``list`` imports no algorithm."""
    row: dict[str, Any] = {
        "name": spec.name,
        "target": spec.target_path,
        "plugin": spec.plugin,
        "distribution": f"{spec.distribution}=={spec.version}" if spec.distribution else None,
        "description": spec.description,
    }
    if problems is not None:
        actions = spec.action_spaces if spec.is_loaded else None
        row["action_spaces"] = None if actions is None else list(actions)
        row["observation_spaces"] = list(spec.observation_spaces) if spec.is_loaded else None
        row["check"] = problems.get(spec.name, [])
    return row


def _abbreviated(names: list[str] | None) -> str:
    """``Box,Disc,MBin,MDisc,Dict`` for a list of space names; ``?`` when they are unknown."""
    return "?" if names is None else ",".join(_SPACE_ABBREVIATIONS.get(name, name) for name in names)


def _list(args: argparse.Namespace) -> int:
    from sbx_lecture.plugins import get_plugin_manager

    manager = get_plugin_manager()
    problems = manager.registry.check() if args.check else None
    algorithms = [_listing(spec, problems) for spec in manager.registry]
    status = CHECK_FAILED_STATUS if problems else 0
    if args.json:
        failures = [
            {"plugin": f.name, "distribution": f.distribution, "version": f.version, "reason": f.reason}
            for f in manager.failures
        ]
        report: dict[str, Any] = {"algorithms": algorithms, "failed_plugins": failures}
        if problems is not None:
            report["check"] = {"ok": not problems, "failed": sorted(problems)}
        print(json.dumps(report, indent=2))
        return status
    spaces_header = ("actions", "observations") if args.check else ()
    header = ("name", "class", "plugin", "distribution", *spaces_header, "description")
    rows = [header]
    for a in algorithms:
        spaces = (_abbreviated(a["action_spaces"]), _abbreviated(a["observation_spaces"])) if args.check else ()
        rows.append((a["name"], a["target"], a["plugin"], a["distribution"] or "-", *spaces, a["description"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + f"  {row[-1]}")
    if manager.failures:
        print("\nfailed plugins (skipped):")
        for failure in manager.failures:
            print(f"  {failure.origin}: {failure.reason}")
    if problems is not None:
        failed = [message for messages in problems.values() for message in messages]
        print(f"\ncheck: {len(algorithms) - len(problems)} of {len(algorithms)} algorithms resolve", end="")
        print(f"; {len(failed)} problem{'s' if len(failed) != 1 else ''}:" if failed else "")
        for message in failed:
            print(f"  {message}")
    return status


def _train(args: argparse.Namespace) -> int:
    from sbx_lecture.checkpoints import interrupt_once, stop_signals_handled
    from sbx_lecture.hyperparams import parse_assignments
    from sbx_lecture.training import TrainConfig, TrainingInterrupted, train

    args.hyperparams = parse_assignments(args.hyperparams)
    config = TrainConfig(**_arguments_of(TrainConfig, args))
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


def _arguments_of(function: Callable[..., Any], args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options that ``function`` takes, by name (the parser's ``dest`` names are its parameters')."""
    parameters = inspect.signature(function).parameters
    return {name: value for name, value in vars(args).items() if name in parameters}


def _hyperparams(args: argparse.Namespace) -> int:
    from sbx_lecture.factory import resolve_algorithm
    from sbx_lecture.hyperparams import describe_arguments

    spec, cls = resolve_algorithm(args.algo)
    rows = describe_arguments(cls)
    if args.json:
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
    from sbx_lecture.evaluation import evaluate

    result = evaluate(**_arguments_of(evaluate, args))
    if result.normalization is not None:
        print(f"normalisation statistics: {result.normalization}")
    print(f"{result.algo} on {result.env_id}: {result.mean:.2f} ± {result.std:.2f} over {result.episodes} episodes")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from sbx_lecture.loading import inspect_model_file

    report = inspect_model_file(args.model)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"{report['path']} (Stable-Baselines3 {report['sb3_version'] or 'unknown'})")
    for key, value in report["metadata"].items():
        print(f"  {key}: {value}")
    print("members:")
    for member in report["members"]:
        refused = f"  NEEDS TRUST: {member['refused']}" if "refused" in member else ""
        print(f"  {member['name']:<28} {member['size']:>10} bytes{refused}")
    print("pickled fields, with every global a trusted load would import:")
    for name, entry in report["fields"].items():
        if "value" not in entry:
            left_out = " (left out without it)" if entry.get("left_out") else ""
            state = "safe" if entry["safe"] else f"NEEDS TRUST{left_out}: {entry['refused']}"
            print(f"  {name:<28} {state}")
            print(f"  {'':<28} imports {', '.join(entry['references']) or 'nothing'}")
    verdict = f"needs --trusted: {report['reason']}" if report["needs_trust"] else "loads without unpickling"
    print(f"safe load: {verdict}")
    return 0


def _one_line_plugin_warnings(original: Callable[..., str]) -> Callable[..., str]:
    """A ``warnings.formatwarning`` that prints a skipped plugin as its one-line message (not file, line and code)."""
    from sbx_lecture.plugins import PluginWarning

    def formatwarning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
        return f"{message}\n" if issubclass(category, PluginWarning) else original(message, category, *args, **kwargs)

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
    from sbx_lecture.training import USER_ERRORS

    arguments = list(sys.argv[1:] if argv is None else argv)
    with mock.patch.object(warnings, "formatwarning", _one_line_plugin_warnings(warnings.formatwarning)):
        return run_command(PROGRAM, lambda: _run(arguments), USER_ERRORS, "interrupted")


def _run(arguments: list[str]) -> int:
    if arguments and arguments[0] in PASS_THROUGH_COMMANDS:
        module: Any = importlib.import_module(f"sbx_lecture.{arguments[0]}")
        return int(module.main(arguments[1:]) or 0)
    args = _build_parser().parse_args(arguments)
    if "threads" in args:
        from sbx_lecture.factory import use_threads

        use_threads(args.threads)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

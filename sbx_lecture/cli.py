"""The ``sbx-lecture`` command: list, train, eval, zoo, bench."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROGRAM = "sbx-lecture"
USAGE_ERROR_STATUS = 2
#: Exit status of ``list --check`` when a registered target does not resolve (2 stays for usage errors).
CHECK_FAILED_STATUS = 1


def _build_parser() -> argparse.ArgumentParser:
    from sbx_lecture import training

    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Policy-optimization algorithms of the lecture, on Stable-Baselines3."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = commands.add_parser("list", help="registered algorithms and failed plugins")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument(
        "--check", action="store_true",
        help=f"import every algorithm class and zoo sampler now and report each failure in one line "
        f"(exit status {CHECK_FAILED_STATUS} when any fails)",
    )

    trainer = commands.add_parser("train", help="train an algorithm into a run folder")
    trainer.add_argument("algo", nargs="?", default=training.DEFAULT_ALGORITHM, help="registry name (see `list`)")
    trainer.add_argument("env", nargs="?", default=training.DEFAULT_ENVIRONMENT, help="gymnasium environment id")
    trainer.add_argument("--timesteps", type=int, help="total environment steps (default: the zoo budget or 1e5)")
    trainer.add_argument("--seed", type=int, default=0)
    trainer.add_argument("--n-envs", type=int, help="parallel environments (default: the zoo's, or 1)")
    trainer.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE",
        help="hyperparameter, typed as in the RL Zoo: 256, 3e-4, True, lin_0.001, dict(net_arch=[64, 64])",
    )
    trainer.add_argument("--out", type=Path, help="run folder (default: runs/<algo>_<env>_<k>)")
    trainer.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    trainer.add_argument("--checkpoint-freq", type=int, help="environment steps between checkpoints")
    trainer.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    trainer.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    trainer.add_argument("-v", "--verbose", type=int, default=0, help="SB3 verbosity")

    evaluator = commands.add_parser("eval", help="evaluate a saved model")
    evaluator.add_argument("model", type=Path, help="model .zip file")
    evaluator.add_argument("env", nargs="?", help="environment id (default: the one it was trained on)")
    evaluator.add_argument("--episodes", type=int, default=10)
    evaluator.add_argument("--algo", help="algorithm name, for models not saved by sbx-lecture")
    evaluator.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    evaluator.add_argument("--seed", type=int, default=0)

    zoo = commands.add_parser("zoo", help="the RL Baselines3 Zoo with every registered algorithm", add_help=False)
    zoo.add_argument("zoo_args", nargs=argparse.REMAINDER)
    bench = commands.add_parser("bench", help="benchmark suites with tables and plots", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    return parser


def _list(as_json: bool, check: bool = False) -> int:
    from sbx_lecture.plugins import get_plugin_manager

    manager = get_plugin_manager()
    problems = manager.registry.check() if check else {}
    algorithms = [
        {
            "name": spec.name,
            "target": spec.target_path,
            "plugin": spec.plugin,
            "distribution": f"{spec.distribution}=={spec.version}" if spec.distribution else None,
            "description": spec.description,
            **({"check": problems.get(spec.name, [])} if check else {}),
        }
        for spec in manager.registry
    ]
    failures = [{"plugin": f.name, "distribution": f.distribution, "version": f.version, "reason": f.reason}
                for f in manager.failures]
    status = CHECK_FAILED_STATUS if problems else 0
    if as_json:
        report: dict[str, Any] = {"algorithms": algorithms, "failed_plugins": failures}
        if check:
            report["check"] = {"ok": not problems, "failed": sorted(problems)}
        print(json.dumps(report, indent=2))
        return status
    rows = [(a["name"], a["target"], a["plugin"], a["distribution"] or "-", a["description"]) for a in algorithms]
    header = ("name", "class", "plugin", "distribution", "description")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + str(row[4]))
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
    from sbx_lecture.hyperparams import parse_assignments
    from sbx_lecture.training import TrainConfig, train

    config = TrainConfig(
        algo=args.algo, env_id=args.env, timesteps=args.timesteps, seed=args.seed, n_envs=args.n_envs,
        hyperparams=parse_assignments(args.param), out=args.out, resume=args.resume,
        checkpoint_freq=args.checkpoint_freq, progress_bar=not args.no_progress, device=args.device,
        verbose=args.verbose,
    )
    try:
        result = train(config)
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted; a checkpoint was saved, continue with --resume", file=sys.stderr)
        return 130
    print(f"trained {result.num_timesteps} steps; run folder: {result.run_dir}")
    print(f"model: {result.model_path}")
    if result.learning_curve is not None:
        print(f"learning curve: {result.learning_curve}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from sbx_lecture.training import evaluate

    result = evaluate(args.model, args.env, args.episodes, args.algo, not args.stochastic, args.seed)
    print(f"{result.algo} on {result.env_id}: {result.mean:.2f} ± {result.std:.2f} over {result.episodes} episodes")
    return 0


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sbx-lecture`` console script; returns the exit status."""
    original_format = warnings.formatwarning
    warnings.formatwarning = _one_line_plugin_warnings(original_format)
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = original_format


def _main(argv: Sequence[str] | None) -> int:
    from sbx_lecture.common.finite import NonFiniteError
    from sbx_lecture.registry import RegistryError
    from sbx_lecture.training import USER_ERRORS

    # RegistryError covers InvalidAlgorithmError (a lazy target that does not resolve) and PluginLoadError (strict
    # mode); NonFiniteError is training that met NaN or infinity
    errors: tuple[type[Exception], ...] = (*USER_ERRORS, RegistryError, NonFiniteError)
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] in (["zoo"], ["bench"]):  # pass-through commands parse (and explain) their own options
            return _delegate(f"sbx_lecture.{arguments[0]}", arguments[1:])
        args = _build_parser().parse_args(arguments)
        if args.command == "list":
            return _list(args.json, args.check)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
    except errors as exc:
        if os.environ.get("SBX_LECTURE_DEBUG"):
            raise
        print(f"{PROGRAM}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    _build_parser().print_help()
    return USAGE_ERROR_STATUS


if __name__ == "__main__":
    sys.exit(main())

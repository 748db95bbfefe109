"""``sbx-lecture bench``: benchmark suites, run in parallel and resumably, with tables and plots.

::

    sbx-lecture bench --list                                  # the suites and what they hold
    sbx-lecture bench classic --jobs 2 --seeds 3              # train, evaluate, write the report
    sbx-lecture bench classic --scheduler tcp://node1:8786    # the same on an existing Dask cluster
    sbx-lecture bench classic --timesteps-scale 0.1 --algos ppo,trpo --envs CartPole-v1   # a quick look
    sbx-lecture bench speed                                   # steps/s: ours against the SB3 sibling
    sbx-lecture bench figures --algos dpg                     # a figure that is not a training run (DPG's bandit)
    sbx-lecture bench my_suite.yml                            # a suite from a file (see suites.load_suite_file)
    sbx-lecture bench classic --report-only                   # tables and plots from the finished runs only
    sbx-lecture bench classic --seeds held-out                # the published runs (docs/benchmarks.md, Protocol)

Runs live in ``<out>/runs/...`` (shared by every suite that holds the same run); a suite's report, tables and plots
in ``<out>/<suite>/`` (``<out>/<suite>-x<scale>/`` for a scaled budget). Running the same command again skips the
finished runs and continues interrupted ones from their last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path
from typing import Any

from sbx_lecture.bench.suites import (
    FINISHED,
    HELD_OUT,
    SUITES,
    FigureJob,
    Job,
    Selection,
    Suite,
    SuiteError,
    expand,
    get_suite,
    seed_range,
)
from sbx_lecture.infra.validation import CommandLineParser, positive_integer, run_command

DEFAULT_SUITE = "classic"
DEFAULT_OUT = Path("bench_results")
__all__ = ["add_dask_options", "check_dask_options", "main", "report_folder"]


def add_dask_options(parser: argparse.ArgumentParser, jobs_default: str) -> None:
    """Add ``--jobs J | --scheduler tcp://HOST:PORT`` and ``--threads N`` (where a command's runs go, and the torch
    threads of each) to ``parser`` (the bench's and the sweep's); :func:`check_dask_options` checks them."""
    where = parser.add_mutually_exclusive_group()
    jobs_help = f"worker processes of a local Dask cluster (default {jobs_default})"
    where.add_argument("--jobs", "-j", type=positive_integer, help=jobs_help)
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on the Dask cluster of this scheduler")
    parser.add_argument("--threads", type=positive_integer, default=1, help="torch threads per run (default 1)")


def check_dask_options(args: argparse.Namespace) -> None:
    """Refuse a scheduler address Dask would spend a minute failing to reach: anything but ``tcp://`` or
    ``tls://HOST:PORT``."""
    from urllib.parse import urlsplit

    if args.scheduler is None:
        return
    try:
        parts = urlsplit(args.scheduler)
        reachable = parts.scheme in ("tcp", "tls") and bool(parts.hostname) and parts.port is not None
    except ValueError:  # a port that is not a number
        reachable = False
    if not reachable:
        raise SuiteError(f"--scheduler {args.scheduler!r} is not a Dask scheduler address: give tcp://HOST:PORT")


def _names(text: str) -> frozenset[str]:
    """The names of a comma-separated list (``--algos``, ``--envs``)."""
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="sbx-lecture bench", description="Benchmark suites: learning curves, final returns, speed."
    )
    parser.add_argument(
        "suite",
        nargs="?",
        default=DEFAULT_SUITE,
        help=f"one of {', '.join(SUITES)}, or a .yml/.json suite file (default {DEFAULT_SUITE})",
    )
    add_dask_options(parser, jobs_default="1")
    parser.add_argument(
        "--seeds",
        type=seed_range,
        metavar="K|A-B|held-out",
        help="seeds 0..K-1, seeds A to B inclusive, or held-out: each run's held-out seeds (5-9 where we chose the "
        "settings, 0-4 for an RL Zoo entry used as it is); default: the suite's count",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--timesteps-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="multiply every budget by F (e.g. 0.1 for a quick look; reported separately)",
    )
    parser.add_argument(
        "--algos", type=_names, help="comma-separated algorithms to keep (a speed row is kept if either is)"
    )
    parser.add_argument("--envs", type=_names, help="comma-separated environment ids to keep")
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device the speed pairs are timed on: cpu (default), cuda or cuda:N; training runs and figures "
        "always use the CPU",
    )
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--dry-run", action="store_true", help="show the jobs and whether they are finished; run none")
    parser.add_argument("--report-only", action="store_true", help="write tables and plots from finished runs only")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--bootstrap-reps",
        type=positive_integer,
        metavar="N",
        help="bootstrap replications of the report's confidence intervals (default 2000)",
    )
    parser.add_argument("--plain", action="store_true", help="plain progress lines instead of live bars")
    return parser


def report_folder(out: Path, suite: Suite, selection: Selection) -> Path:
    """Where the suite's report goes: ``<out>/<suite>``, with ``-x<scale>`` for a scaled budget and ``-<device>``
    for speed pairs timed on another device than the CPU."""
    name = suite.name
    if selection.timesteps_scale != 1.0:
        name += f"-x{selection.timesteps_scale:g}"
    if selection.device != "cpu":
        name += f"-{selection.device.replace(':', '')}"
    return out / name


def _list_suites() -> None:
    for suite in SUITES.values():
        count = len(suite.entries) or len(suite.speed_entries) or len(suite.figures)
        unit = "runs per seed" if suite.entries else "speed pairs" if suite.speed_entries else "figures"
        print(f"{suite.name:<8} {count:>3} {unit:<14} {suite.description}")


def _dry_run(jobs: list[Any], out: Path) -> None:
    from sbx_lecture.bench.harness import job_steps
    from sbx_lecture.bench.runner import stored_result

    total = 0
    for job in jobs:
        stored = stored_result(job, out / job.folder)
        state = "to run" if stored is None else "stale" if stored["status"] == "stale" else "finished"
        print(f"{state:<9} {job.label:<48} {job_steps(job):>10} steps  {out / job.folder}")
        total += job_steps(job) if stored is None else 0
    print(f"{len(jobs)} jobs, {total:,} environment steps still to run")


def _check_suite(suite: Suite, selection: Selection) -> None:
    """Refuse a figure that :mod:`.figures` does not draw, and filters that name nothing of the suite."""
    if suite.figures:
        from sbx_lecture.bench.figures import FIGURES

        unknown = sorted({figure.name for figure in suite.figures} - set(FIGURES))
        if unknown:
            raise SuiteError(
                f"suite {suite.name!r}: unknown figure {', '.join(unknown)}; choose from {', '.join(FIGURES)}"
            )
    rows: list[Job] = [*suite.entries, *suite.speed_entries, *suite.figures]
    algos = {algo for row in rows for algo in row.algos}
    envs = {row.env_id for row in rows} - {""}
    for wanted, known, what in ((selection.algos, algos, "algorithm"), (selection.envs, envs, "environment")):
        unknown = sorted((wanted or set()) - known)
        if unknown:
            raise SuiteError(
                f"suite {suite.name!r} has no {what} {', '.join(unknown)}; it has {', '.join(sorted(known))}"
            )


def _check_device(suite: Suite, device: str, local: bool) -> None:
    """Refuse ``--device`` values that cannot stand: not a torch device, a suite with training runs or figures (they
    stay on the CPU, so that their results compare), or CUDA on a machine without it (when the jobs run here)."""
    if device == "cpu":
        return
    import torch as th

    try:
        kind = th.device(device).type
    except RuntimeError:
        raise SuiteError(f"--device {device!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if suite.entries or suite.figures:
        raise SuiteError(
            f"--device {device} times speed pairs only; suite {suite.name!r} trains runs or draws figures, which "
            "use the CPU so that their results compare: drop --device, or choose a speed suite"
        )
    if kind == "cuda" and local and not th.cuda.is_available():
        raise SuiteError(f"--device {device}: this machine has no CUDA device torch can use; time on --device cpu")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sbx-lecture bench``; returns the exit status (1 when a job failed or was interrupted)."""
    args = _parser().parse_args(argv)
    if args.list:
        _list_suites()
        return 0
    stopped = "interrupted; run the same command again to resume"
    return run_command("sbx-lecture bench", lambda: _bench(args), (SuiteError,), stopped)


def _bench(args: argparse.Namespace) -> int:
    check_dask_options(args)
    if not 0 < args.timesteps_scale < float("inf"):  # NaN fails this too
        raise SuiteError(f"--timesteps-scale must be a positive number, got {args.timesteps_scale}")
    if args.out.exists() and not args.out.is_dir():
        raise SuiteError(f"--out {args.out} is a file: give a folder for the runs and the report")
    suite = get_suite(args.suite)
    selection = Selection(args.seeds, args.timesteps_scale, args.algos, args.envs, args.device)
    _check_suite(suite, selection)
    _check_device(suite, args.device, local=args.scheduler is None and not args.report_only)
    if suite.entries and not args.dry_run:
        from sbx_lecture.bench.stats import check_packages

        check_packages()  # before hours of training, not after
    from sbx_lecture.bench.harness import describe, execute, run_jobs
    from sbx_lecture.bench.report import write_report
    from sbx_lecture.bench.runner import stored_result
    from sbx_lecture.checkpoints import stop_signals_handled
    from sbx_lecture.runs import run_lock
    from sbx_lecture.zoo_config import zoo_budget

    jobs = expand(suite, selection, zoo_budget)
    if args.dry_run:
        _dry_run(jobs, args.out)
        return 0
    benchmark = [job for job in jobs if not isinstance(job, FigureJob)]
    figures = [job for job in jobs if isinstance(job, FigureJob)]
    results: list[dict[str, Any]] = []
    # SIGTERM (kill, a batch system's end of job) stops the suite as Ctrl-C does: each running run saves.
    with stop_signals_handled(signal.default_int_handler):
        if not args.report_only:  # training runs and speed pairs on Dask, then the figures here, one by one
            live = False if args.plain else None
            results = run_jobs(benchmark, args.out, args.jobs or 1, args.threads, live, args.scheduler)
            for figure in figures:  # Ctrl-C stops at the figure being drawn (nothing of it is kept)
                results.append(execute(figure, args.out))
                print(f"{figure.label}: {describe(results[-1])}", flush=True)
                if results[-1]["status"] == "interrupted":
                    raise KeyboardInterrupt
    # The report covers every job of the suite at this scale and seed count that has a result, so a suite run in
    # filtered parts (--algos, --envs) still gets one report: a result read from its folder is done, whichever
    # command finished it (a job found busy may have been finished by the other bench since).
    fresh = {args.out / job.folder: result for job, result in zip([*benchmark, *figures], results, strict=False)}
    reported = []
    for job in expand(suite, dataclasses.replace(selection, algos=None, envs=None), zoo_budget):
        result = fresh.get(args.out / job.folder)
        if result is None or result["status"] == "busy":
            result = stored_result(job, args.out / job.folder, report=True) or result
        if result is not None:
            reported.append({**result, "status": "done"} if result["status"] == "skipped" else result)
    folder = report_folder(args.out, suite, selection)
    folder.mkdir(parents=True, exist_ok=True)
    notes = f" (budgets scaled by {selection.timesteps_scale:g})" if selection.timesteps_scale != 1.0 else ""
    if selection.seeds == HELD_OUT:
        notes += "; held-out seeds: 5-9 where we chose the settings, 0-4 for an RL Zoo entry used as it is"
    with run_lock(folder, wait=True):  # two benches on one --out write their reports one after the other
        report = write_report(
            suite.name, suite.description + notes, reported, folder, not args.no_plots, args.bootstrap_reps
        )
    print(f"report: {report}")
    unfinished = [r for r in results if r.get("status") not in FINISHED]
    if unfinished:
        print(f"{len(unfinished)} of {len(results)} jobs did not finish (see the report)", file=sys.stderr)
        return 1
    return 0

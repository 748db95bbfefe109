"""``sbx-lecture sweep ALGO ENV``: hyperparameter search with several seeds per trial on Dask, a held-out
confirmation of the best setting, and that setting as an RL Zoo section.

::

    sbx-lecture sweep ppo CartPole-v1 --trials 20 --seeds 3 --jobs 3
    sbx-lecture sweep tnpg Pendulum-v1 --storage postgresql://user:pw@db/optuna --scheduler tcp://node1:8786

- **Sampler**: the algorithm's zoo sampler (the registry's ``zoo_sampler`` for ours and the plugins', the RL Zoo's
  ``HYPERPARAMS_SAMPLER`` for SB3's). What it returns lies over the algorithm's zoo entry for ENV, and the ``-p``
  values over both (pinned), as in the zoo's ``-optimize``.
- **Trial**: asked from the study (``study.ask``); its K seeds (0..K-1, the same for every trial) train at once as
  Dask tasks with the bench's run engine (:func:`.bench.runner.execute_run`); its value is the IQM over seeds of each
  seed's score (:func:`.bench.stats.run_score`: the mean evaluation return in the last 10 % of training). A process
  starts a trial whenever a worker would otherwise idle, so several trials may run at once (one at least).
- **Pruning**: the IQM over seeds at each evaluation point is reported to the pruner while the seeds train. When it
  prunes, or a seed fails (NaN or infinity stop training with ``NonFiniteError``; any other error too), the trial's
  other seeds are stopped and the trial is told PRUNED with the reason in its user attribute ``pruned``. Its user
  attributes ``seed_scores`` and ``hyperparams`` hold the finished seeds' scores and the zoo section it trained.
- **Sharing**: ``--trials N`` is the study's size. A process asks for trials while the study holds fewer than N
  complete, pruned or running ones; several processes, on several machines, share a study through its storage, and
  each trial is asked once and trained by the process that asked it (two processes that look at the same moment may
  add one trial beyond N).
- **Stopping**: Ctrl-C or SIGTERM tells the running trials FAIL, with the user attribute ``stopped``: nothing was
  learnt about their setting, so the sampler takes no evidence from them and they do not count towards N; the same
  command continues the study. A process killed without a signal leaves its trials RUNNING, and counted.
- **Confirmation**: the best complete trial trains again on M seeds no trial uses (1000..1000+M-1); the report puts
  its selection IQM (biased upwards: it won a selection on those seeds) beside the confirmation IQM with rliable's
  95 % bootstrap interval. Confirmation runs have their own folders, so a re-run reuses the finished ones.

The output folder holds ``report.md`` with its ``report.png``, ``best.yml`` (a zoo file with the best setting for ENV,
for ``-conf``), the default storage ``study.log`` (an Optuna journal file), and the run folders
``<study>/trial_<n>/seed_<k>`` and ``<study>/confirm_<n>/seed_<s>``. Storage passwords are masked in every line
printed and every file written.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.spaces import Box

try:
    import optuna
    from optuna.trial import TrialState
except ModuleNotFoundError:  # pragma: no cover - the zoo extra brings it
    raise SystemExit("sbx-lecture sweep: error: the sweep needs optuna: pip install 'sbx-lecture[zoo,bench]'") from None

from sbx_lecture.bench import add_dask_options, check_dask_options
from sbx_lecture.bench.harness import WORKER_OUT_ENV, connect
from sbx_lecture.bench.plots import sweep_chart
from sbx_lecture.bench.report import interval_cell, markdown_table
from sbx_lecture.bench.runner import execute_run
from sbx_lecture.bench.stats import Group, check_packages, column_iqm, per_environment, run_score
from sbx_lecture.bench.suites import FINISHED, RunJob, SuiteError
from sbx_lecture.checkpoints import stop_signals_handled
from sbx_lecture.evaluation import EVALUATIONS_FILE, Evaluations
from sbx_lecture.hyperparams import parse_assignments, to_json_value
from sbx_lecture.infra.validation import CommandLineParser, one_line, positive_integer, run_command
from sbx_lecture.training import USER_ERRORS, UsageError, make_environment, resolve_algorithm
from sbx_lecture.zoo import ZooBridgeError, ensure_study, mask_url, register_with_zoo, zoo_sampler
from sbx_lecture.zoo_config import zoo_budget, zoo_settings

PROGRAM = "sbx-lecture sweep"
DEFAULT_OUT = Path("sweeps")
#: The first held-out seed of the confirmation (trials use 0..K-1).
CONFIRM_SEED = 1000
#: Trials before the TPE sampler and the median pruner start to act; trials in the report's table.
STARTUP_TRIALS, TOP_TRIALS = 5, 10
#: The trials that count towards ``--trials``.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
#: Exit status when no trial completed (2: a usage error, 130: stopped by Ctrl-C or SIGTERM).
NOTHING_COMPLETE_STATUS = 1
#: Errors reported as one line with exit status 2.
REPORTED_ERRORS: tuple[type[Exception], ...] = (*USER_ERRORS, ZooBridgeError, SuiteError)


def _say(text: str) -> None:
    print(mask_url(text), flush=True)


def zoo_text(value: Any) -> Any:
    """``value`` as a zoo file holds it: plain YAML values, ``lin_X`` schedules, ``nn.Tanh``, and dicts as
    ``dict(key=value, ...)`` text (what :func:`sbx_lecture.hyperparams.parse_value` reads back)."""
    if not isinstance(value, dict):
        return to_json_value(value)
    inner = {k: zoo_text(v) if isinstance(v, (dict, type)) else repr(to_json_value(v)) for k, v in value.items()}
    return "dict(" + ", ".join(f"{key}={text}" for key, text in inner.items()) + ")"


def sample(trial: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The zoo sampler's setting for ``trial``, with the zoo keys ``noise_type``/``noise_std`` (which the sampler drew)
    in place of the ``action_noise`` object it built from them."""
    sampled = dict(
        args.sample(trial, args.n_actions, args.n_envs, {"using_her_replay_buffer": False, "her_kwargs": {}})
    )
    if sampled.pop("action_noise", None) is not None:
        sampled.update({key: trial.params[key] for key in ("noise_type", "noise_std")})
    return sampled


def zoo_section(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    """The zoo entry of the sweep's algorithm on its environment with ``overrides`` on top, as zoo-file text, with the
    sweep's budget as ``n_timesteps`` (checked as ``train`` checks it)."""
    raw = zoo_settings(args.algo, args.env, overrides).raw
    return {**{key: zoo_text(value) for key, value in raw.items()}, "n_timesteps": args.timesteps}


def open_study(args: argparse.Namespace) -> Any:
    """The study ``args.study_name`` in ``args.storage``, created unless it exists (safely when several processes
    start at once on a fresh database), with the sampler and pruner asked for."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    random = args.sampler == "random"
    sampler = optuna.samplers.RandomSampler() if random else optuna.samplers.TPESampler(n_startup_trials=STARTUP_TRIALS)
    median = optuna.pruners.MedianPruner(STARTUP_TRIALS, n_warmup_steps=args.timesteps // 3)
    pruner = median if args.pruner == "median" else optuna.pruners.NopPruner()
    study, _ = ensure_study(args.storage, args.study_name, sampler=sampler, pruner=pruner)
    _say(f"{PROGRAM}: study {args.study_name!r} at {args.storage}: {len(study.trials)} trials so far")
    return study


def _train_seed(job: RunJob, out: Path, folder: Path, topic: str, number: int, stop: str, threads: int) -> Any:
    """One seed of a trial, in a Dask worker: its new evaluation points go to ``topic``; the event ``stop`` (the
    trial was pruned, or the command stopped) ends it with a checkpoint."""
    import torch as th
    from distributed import Event, get_worker

    th.set_num_threads(threads)
    worker, event, run_dir, sent = get_worker(), Event(stop), Path(os.environ.get(WORKER_OUT_ENV) or out) / folder, [0]

    def report(steps: int) -> None:  # about once a second
        curve = Evaluations.load(run_dir / EVALUATIONS_FILE).curve()
        if len(curve) > sent[0]:
            sent[0] = len(curve)
            worker.log_event(topic, [number, job.seed, curve])
        if event.is_set():
            raise KeyboardInterrupt

    return execute_run(job, run_dir, report)


def _submit(client: Any, args: argparse.Namespace, section: dict[str, Any], seed: int, number: int, stop: str) -> Any:
    """Start one seed of trial ``number`` (of the confirmation of trial ``-number - 1`` when negative)."""
    overrides = {key: value for key, value in section.items() if key != "n_timesteps"}
    every = max(args.timesteps // args.evaluations, 1)
    job = RunJob(args.algo, args.env, args.timesteps, seed, overrides, every, args.eval_episodes, args.eval_episodes)
    name = Path(args.study_dir, f"trial_{number}" if number >= 0 else f"confirm_{-number - 1}", f"seed_{seed}")
    task = (_train_seed, job, args.out, name, args.topic, number, stop, args.threads)
    return client.submit(*task, key=f"sweep-{name}-{uuid.uuid4().hex[:8]}", pure=False)


def _result(future: Any) -> dict[str, Any]:
    try:
        return future.result()  # type: ignore[no-any-return]
    except Exception as error:  # its workers kept dying
        return {"status": "failed", "error": f"worker died: {type(error).__name__}: {one_line(error)}"}


@dataclass
class _Running:
    """A trial whose seeds are training: their futures, evaluation curves and results so far."""

    trial: Any
    futures: dict[Any, int]
    curves: dict[int, list[list[float]]] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    reported: int = 0


def _launch(study: Any, client: Any, args: argparse.Namespace, running: dict[int, _Running]) -> None:
    """Ask the study for a trial, sample its setting and start its seeds."""
    trial = study.ask()
    try:
        section = zoo_section(args, {**sample(trial, args), **args.pins})
        trial.set_user_attr("hyperparams", section)
        stop = f"{args.topic}-stop-{trial.number}"
        seeds = {_submit(client, args, section, seed, trial.number, stop): seed for seed in range(args.seeds)}
        running[trial.number] = _Running(trial, seeds)  # from here on, Ctrl-C in search() tells it FAIL
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    _say(f"trial {trial.number}: started seeds 0-{args.seeds - 1}")


def _settle(study: Any, state: _Running, args: argparse.Namespace) -> bool:
    """Report the new evaluation points of ``state`` to the pruner; tell the study the trial's end once it has one
    (every seed finished, one failed, or the pruner prunes). Whether it was told."""
    trial, ended = state.trial, sorted(state.results.items())
    bad = {k: r for k, r in ended if r["status"] not in FINISHED}
    reason = next((f"seed {k} {r['status']}: {r.get('error', r.get('detail'))}" for k, r in bad.items()), "")
    state.curves.update({seed: [p[:2] for p in r["curve"]] for seed, r in ended if seed not in bad})
    if not reason and len(state.curves) == args.seeds:  # the IQM over seeds at each point all seeds have reached
        count = min(len(curve) for curve in state.curves.values())
        for index in range(state.reported, count):
            iqm = column_iqm(np.array([curve[index][1] for curve in state.curves.values()]))
            trial.report(float(iqm), int(state.curves[0][index][0]))
        state.reported = count
        if count and len(ended) < args.seeds and trial.should_prune():
            reason = f"{args.pruner} pruner at step {int(state.curves[0][count - 1][0])}"
    if not reason and len(ended) < args.seeds:
        return False
    scores = {seed: run_score(r) for seed, r in ended if r["status"] in FINISHED}
    trial.set_user_attr("seed_scores", {str(seed): score for seed, score in scores.items()})
    if reason:
        trial.set_user_attr("pruned", reason)
    value = None if reason else float(column_iqm(np.array(list(scores.values()))))
    study.tell(trial, value, state=TrialState.PRUNED if reason else None)
    said = f"pruned ({reason})" if reason else f"IQM {value:.2f} (seeds: {_text(scores.values())})"
    _say(f"trial {trial.number}: {said}")
    return True


def _wanted(study: Any, args: argparse.Namespace, client: Any, running: dict[int, _Running]) -> bool:
    """Whether to start a trial: the study holds fewer than ``--trials`` (complete, pruned or running) and the
    cluster has a worker to spare (or none of ours runs): with K seeds on fewer workers, the next trial starts when
    a worker would otherwise wait for this trial's last seeds."""
    unfinished = sum(len(state.futures) for state in running.values())
    if running and unfinished >= sum(client.nthreads().values()):
        return False
    return len(study.get_trials(deepcopy=False, states=COUNTED)) < args.trials


def search(study: Any, client: Any, args: argparse.Namespace) -> None:
    """Run trials until the study holds ``args.trials``; Ctrl-C tells the running ones FAIL (``stopped``)."""
    from distributed import Event

    events: collections.deque[Any] = collections.deque()
    client.subscribe_topic(args.topic, events.append)
    running: dict[int, _Running] = {}
    try:
        while True:
            while _wanted(study, args, client, running):
                _launch(study, client, args, running)
            if not running:
                return
            time.sleep(0.3)
            while events:  # evaluation points from the workers
                _, (number, seed, curve) = events.popleft()
                if number in running and len(curve) > len(running[number].curves.get(seed, [])):
                    running[number].curves[seed] = curve
            for number, state in list(running.items()):
                for future in [future for future in state.futures if future.done()]:
                    state.results[state.futures.pop(future)] = _result(future)
                if _settle(study, state, args):
                    del running[number]
                    Event(f"{args.topic}-stop-{number}", client=client).set()
                    client.cancel(list(state.futures))
    except KeyboardInterrupt:
        for number, state in running.items():
            state.trial.set_user_attr("stopped", "interrupted (Ctrl-C or SIGTERM): told FAIL, not run again")
            study.tell(state.trial, state=TrialState.FAIL)
            Event(f"{args.topic}-stop-{number}", client=client).set()
        raise
    finally:
        client.unsubscribe_topic(args.topic)


def confirm(client: Any, args: argparse.Namespace, best: Any) -> list[dict[str, Any]]:
    """Train the best trial's setting on the held-out seeds ``CONFIRM_SEED...``; their results. A stopped
    confirmation continues from the runs' checkpoints (or finished results) when the command runs again."""
    seeds = range(CONFIRM_SEED, CONFIRM_SEED + args.confirm_seeds)
    _say(f"confirmation: trial {best.number}'s setting on the held-out seeds {seeds[0]}-{seeds[-1]}")
    stop = f"{args.topic}-stop-confirmation"  # never set
    futures = [_submit(client, args, best.user_attrs["hyperparams"], seed, -best.number - 1, stop) for seed in seeds]
    return [_result(future) for future in futures]


def _text(values: Any) -> str:
    """Scores, or a trial's sampled parameters, in a table cell."""
    if isinstance(values, dict):
        return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    return ", ".join(f"{value:.1f}" for value in values)


def write_report(study: Any, args: argparse.Namespace, best: Any, confirmation: list[dict[str, Any]]) -> str:
    """Write ``report.md`` and ``best.yml`` (with a best trial) into ``args.out``; return the summary line."""
    import yaml

    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:TOP_TRIALS]
    confirmed = [run_score(result) for result in confirmation if result.get("status") in FINISHED]
    held_out, seeds = f"{CONFIRM_SEED}-{CONFIRM_SEED + args.confirm_seeds - 1}", f"0-{args.seeds - 1}"
    runs = [("confirmation", held_out, confirmed, {"setting": f"trial {best.number}"})] if confirmed else []
    runs += [(f"trial {t.number}", seeds, list(t.user_attrs["seed_scores"].values()), t.params) for t in complete]
    groups = [Group(args.algo, label, "", 0, finals=scores, speeds=[0.0]) for label, _, scores, _ in runs]
    table: Any = per_environment(groups).set_index("env") if runs else None

    def iqm(label: str) -> str:
        return interval_cell(table.loc[label], "iqm", 2)

    def section(title: str, header: str, rows: list[str]) -> list[str]:
        return ["", f"## {title}", "", markdown_table(header, rows, slice(0, 0)).rstrip()] if rows else []

    counts = collections.Counter(t.state.name.lower() for t in trials)
    lines = [f"# Sweep: {args.algo} on {args.env}", "", f"Study `{args.study_name}` at `{args.storage}`: "]
    lines[-1] += ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + f"; sampler {args.sampler}, "
    lines[-1] += f"pruner {args.pruner}; {args.timesteps} steps a run; score: mean return, last 10 %; IQM [95 % CI]."
    summary = "no complete trial"
    if best is not None:
        summary = f"best: trial {best.number}, selection IQM {iqm(f'trial {best.number}')} (seeds {seeds})"
        summary += f"; confirmation IQM {iqm('confirmation')} (held-out seeds {held_out})" if confirmed else ""
        if len(confirmed) < args.confirm_seeds:
            summary += f"; {args.confirm_seeds - len(confirmed)} confirmation seeds failed"
        best_yaml = yaml.safe_dump({args.env: best.user_attrs["hyperparams"]}, sort_keys=False)
        (args.out / "best.yml").write_text(mask_url(f"# {args.algo} on {args.env}: {summary}\n{best_yaml}"))
        use = f"`best.yml`, for `sbx-lecture train {args.algo} {args.env} -conf best.yml`"
        lines += ["", f"**{summary}**", "", f"## Best setting: {use}", "", "```yaml", best_yaml.rstrip(), "```"]
    rows = [
        f"{label} | {used} | {iqm(label)} | {_text(scores)} | {_text(sampled)}" for label, used, scores, sampled in runs
    ]
    lines += section("Top trials and confirmation", "run | seeds | IQM [95 %] | scores | sampled", rows)
    ended = [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    reasons = [str(t.user_attrs.get("pruned") or t.user_attrs.get("stopped", "")).replace("|", "/") for t in ended]
    rows = [f"{t.number} | {t.state.name.lower()} | {why}" for t, why in zip(ended, reasons, strict=True)]
    lines += section("Pruned and stopped trials", "trial | state | reason", rows)
    importances: dict[str, float] = {}
    if len(complete) >= 2:
        try:
            free = [name for name in complete[0].params if name not in args.pins]
            importances = optuna.importance.get_param_importances(study, params=free)
            rows = [f"{name} | {value:.3f}" for name, value in importances.items()]
        except Exception as error:  # e.g. a search space that differs between trials
            rows = [f"not available: {one_line(error)} | "]
        lines += section("Parameter importances (fANOVA, complete trials)", "parameter | importance", rows)
    if runs:
        drawn = [(label, scores, *table.loc[label, ["iqm", "iqm_low", "iqm_high"]]) for label, _, scores, _ in runs]
        sweep_chart(drawn, importances, args.out / "report.png")
        lines[3:3] = ["", "![top trials, confirmation and parameter importances](report.png)"]
    (args.out / "report.md").write_text(mask_url("\n".join(lines) + "\n"))
    return summary


def _parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    parser.add_argument("algo", help="registry name with a zoo sampler (see `sbx-lecture list`)")
    parser.add_argument("env", help="gymnasium environment id")
    parser.add_argument("--trials", type=positive_integer, default=20, help="trials the study is to hold (default 20)")
    parser.add_argument("--seeds", type=positive_integer, default=3, help="seeds per trial, 0..K-1 (default 3)")
    parser.add_argument("--timesteps", type=positive_integer, help="steps per run (default: the zoo entry's budget)")
    parser.add_argument("--storage", help="a .log journal file, a database or redis:// URL (default <out>/study.log)")
    parser.add_argument("--study-name", help="default: <algo>_<env>_t<timesteps>")
    add_dask_options(parser, jobs_default="K")
    parser.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT}/<study name>)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="pin a value")
    parser.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    parser.add_argument("--pruner", choices=("median", "none"), default="median")
    parser.add_argument("--confirm-seeds", type=int, default=5, help=f"held-out seeds {CONFIRM_SEED}.. (default 5)")
    parser.add_argument("--evaluations", type=positive_integer, default=10, help="evaluations per run (default 10)")
    parser.add_argument("--eval-episodes", type=positive_integer, default=5, help="episodes per evaluation (default 5)")
    return parser


def sweep(args: argparse.Namespace) -> int:
    """The sweep ``args`` asks for: search, confirmation, report; the exit status."""
    check_dask_options(args)
    if args.confirm_seeds < 0 or args.seeds > CONFIRM_SEED:
        raise UsageError(f"--confirm-seeds must be at least 0 and --seeds at most {CONFIRM_SEED}")
    args.algo, args.pins = resolve_algorithm(args.algo)[0].name, parse_assignments(args.param)
    check_packages()
    args.sample = zoo_sampler(args.algo, register_with_zoo())
    args.timesteps = args.timesteps or zoo_budget(args.algo, args.env)
    args.n_envs = zoo_settings(args.algo, args.env, args.pins).n_envs  # the pins are checked before any trial
    env = make_environment(args.env, 1, 0)
    args.n_actions = env.action_space.shape[0] if isinstance(env.action_space, Box) else 0  # for the zoo's noise
    env.close()
    args.study_name = args.study_name or f"{args.algo}_{args.env}_t{args.timesteps}"
    args.out = (args.out or DEFAULT_OUT / args.study_name).absolute()
    args.storage = args.storage or str(args.out / "study.log")
    args.study_dir = re.sub(r"[^\w.-]+", "_", args.study_name)
    args.topic = f"sbx-lecture-sweep-{uuid.uuid4().hex[:8]}"
    args.out.mkdir(parents=True, exist_ok=True)
    study = open_study(args)
    with connect(args.jobs or args.seeds, args.scheduler) as client:
        search(study, client, args)
        best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value, default=None)
        confirmation = confirm(client, args, best) if best is not None and args.confirm_seeds else []
    _say(f"{PROGRAM}: {write_report(study, args, best, confirmation)}; report: {args.out / 'report.md'}")
    return 0 if best is not None else NOTHING_COMPLETE_STATUS


def main(argv: Sequence[str] | None = None) -> int:
    """``sbx-lecture sweep``; returns the exit status (2: a usage error, 1: no trial completed, 130: stopped)."""
    args = _parser().parse_args(argv)
    stopped = "stopped: running trials told FAIL; the same command continues the study"
    with stop_signals_handled(signal.default_int_handler):
        return run_command(PROGRAM, lambda: sweep(args), REPORTED_ERRORS, stopped, mask_url)


if __name__ == "__main__":
    sys.exit(main())

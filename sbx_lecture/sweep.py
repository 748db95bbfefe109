"""``sbx-lecture sweep ALGO ENV``: hyperparameter search with several seeds per trial on Dask, a held-out
confirmation of the best setting, and that setting as an RL Zoo section.

::

    sbx-lecture sweep ppo CartPole-v1 --trials 20 --seeds 3 --jobs 3
    sbx-lecture sweep tnpg Pendulum-v1 --storage postgresql://user:pw@db/optuna --scheduler tcp://node1:8786

- **Sampler**: the algorithm's zoo sampler (the registry's ``zoo_sampler`` for ours and the plugins', the RL Zoo's
  ``HYPERPARAMS_SAMPLER`` for SB3's). What it returns lies over the algorithm's zoo entry for ENV, and the ``-p``
  values over both (pinned), as in the zoo's ``-optimize``.
- **Trial**: run by ``study.optimize``, with workers ÷ K trials at once (``n_jobs``); its K seeds (0..K-1, the same
  for every trial) train at once as Dask tasks with the bench's run engine (:func:`.bench.runner.execute_run`); its
  value is the IQM over seeds of each seed's score (:func:`.bench.stats.run_score`: the mean evaluation return in
  the last 10 % of training).
- **Pruning**: the IQM over seeds at each evaluation point is reported to the pruner while the seeds train. When it
  prunes, or a seed fails (NaN or infinity stop training with ``NonFiniteError``; any other error too), the trial's
  other seeds are stopped and the trial is told PRUNED with the reason in its user attribute ``pruned``. Its user
  attributes ``seed_scores`` and ``hyperparams`` hold the finished seeds' scores and the zoo section it trained.
- **Sharing**: ``--trials N`` is the study's size. A process asks for trials while the study holds fewer than N
  complete, pruned or running ones (optuna's ``MaxTrialsCallback``, after each trial); several processes, on several
  machines, share a study through its storage, and each trial is asked once and trained by the process that asked it
  (two processes that look at the same moment may add one trial beyond N).
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
import sys
import threading
import time
import uuid
from collections.abc import Sequence
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
from sbx_lecture.infra.studies import ensure_study, mask_url
from sbx_lecture.infra.validation import CommandLineParser, one_line, positive_integer, run_command
from sbx_lecture.training import USER_ERRORS, UsageError, make_environment, resolve_algorithm
from sbx_lecture.zoo import ZooBridgeError, register_with_zoo, zoo_sampler
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
#: The samplers' ``additional_args``: the sweep trains without HER.
NO_HER = {"using_her_replay_buffer": False, "her_kwargs": {}}
#: Set by Ctrl-C or SIGTERM: the trials that run in optuna's threads stop.
_STOPPING = threading.Event()


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
    sampled = dict(args.sample(trial, args.n_actions, args.n_envs, NO_HER))
    if sampled.pop("action_noise", None) is not None:
        sampled.update({key: trial.params[key] for key in ("noise_type", "noise_std")})
    return sampled


def open_study(args: argparse.Namespace) -> Any:
    """The study ``args.study_name`` in ``args.storage``, created unless it exists (safely when several processes
    start at once on a fresh database), with the sampler and pruner asked for."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a trial stopped by Ctrl-C: no traceback
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


def _objective(trial: Any, client: Any, args: argparse.Namespace, curves: dict[int, dict[int, list[Any]]]) -> float:
    """Train the K seeds of ``trial`` at once and return the IQM over seeds of their scores. The IQM over seeds at
    each evaluation point all seeds have reached goes to the pruner; when it prunes, or a seed fails, the other seeds
    stop and the trial is PRUNED with the reason in its user attribute ``pruned``. Ctrl-C or SIGTERM tells it FAIL
    (optuna does, for the ``KeyboardInterrupt``) with the user attribute ``stopped``."""
    from distributed import Event

    stop = f"{args.topic}-stop-{trial.number}"
    futures: dict[Any, int] = {}
    seen = curves.setdefault(trial.number, {})  # seed -> evaluation points, from the workers and then the results
    results: dict[int, dict[str, Any]] = {}
    reported, reason = 0, ""  # evaluation points reported to the pruner; why the trial ends early
    try:  # from the first line on: a stop signal tells the trial FAIL with ``stopped``
        # the zoo entry with the sampled and the pinned values on top (checked as train checks it), as zoo-file
        # text, with the sweep's budget as n_timesteps
        raw = zoo_settings(args.algo, args.env, {**sample(trial, args), **args.pins}).raw
        section = {**{key: zoo_text(value) for key, value in raw.items()}, "n_timesteps": args.timesteps}
        trial.set_user_attr("hyperparams", section)
        futures = {_submit(client, args, section, seed, trial.number, stop): seed for seed in range(args.seeds)}
        _say(f"trial {trial.number}: started seeds 0-{args.seeds - 1}")
        while not reason and len(results) < args.seeds:
            time.sleep(0.3)
            if _STOPPING.is_set():  # the signal interrupted the main thread, which waits for this one
                raise KeyboardInterrupt
            results.update({seed: _result(f) for f, seed in futures.items() if f.done() and seed not in results})
            bad = {seed: result for seed, result in sorted(results.items()) if result["status"] not in FINISHED}
            reason = next((f"seed {k} {r['status']}: {r.get('error', r.get('detail'))}" for k, r in bad.items()), "")
            seen.update({seed: [point[:2] for point in r["curve"]] for seed, r in results.items() if seed not in bad})
            if reason or len(seen) < args.seeds:
                continue
            count = min(len(curve) for curve in seen.values())  # the IQM over seeds at each point all have reached
            for index in range(reported, count):
                iqm = column_iqm(np.array([curve[index][1] for curve in seen.values()]))
                trial.report(float(iqm), int(seen[0][index][0]))
            reported = count
            if count and len(results) < args.seeds and trial.should_prune():
                reason = f"{args.pruner} pruner at step {int(seen[0][count - 1][0])}"
    except KeyboardInterrupt:
        trial.set_user_attr("stopped", "interrupted (Ctrl-C or SIGTERM): told FAIL, not run again")
        raise
    finally:
        Event(stop, client=client).set()
        client.cancel(list(futures))
    scores = {seed: run_score(result) for seed, result in results.items() if result["status"] in FINISHED}
    trial.set_user_attr("seed_scores", {str(seed): score for seed, score in sorted(scores.items())})
    if reason:
        trial.set_user_attr("pruned", reason)
        _say(f"trial {trial.number}: pruned ({reason})")
        raise optuna.TrialPruned(reason)
    value = float(column_iqm(np.array(list(scores.values()))))
    _say(f"trial {trial.number}: IQM {value:.2f} (seeds: {_text(scores.values())})")
    return value


def _stop(signum: int, frame: Any) -> None:
    """Stop-signal handler of the sweep: every trial's thread stops (optuna's main thread waits for them)."""
    _STOPPING.set()
    raise KeyboardInterrupt


def search(study: Any, client: Any, args: argparse.Namespace) -> None:
    """Run trials until the study holds ``args.trials`` (complete, pruned or running), as many at once as the cluster
    has workers for (workers ÷ K); Ctrl-C tells the running ones FAIL (``stopped``)."""
    if len(study.get_trials(deepcopy=False, states=COUNTED)) >= args.trials:
        return
    curves: dict[int, dict[int, list[Any]]] = {}  # trial -> seed -> evaluation points, as the workers send them

    def received(event: Any) -> None:
        number, seed, curve = event[1]
        if len(curve) > len(curves.setdefault(number, {}).get(seed, [])):
            curves[number][seed] = curve

    client.subscribe_topic(args.topic, received)
    try:
        study.optimize(
            lambda trial: _objective(trial, client, args, curves),
            n_jobs=max(-(-sum(client.nthreads().values()) // args.seeds), 1),
            callbacks=[optuna.study.MaxTrialsCallback(args.trials, states=COUNTED)],
        )
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
    # a scheduler or a storage that cannot be reached leaves nothing behind: no folder, no study
    with connect(args.jobs or args.seeds, args.scheduler) as client:
        if args.storage == str(args.out / "study.log"):  # the default journal file lives in the folder
            args.out.mkdir(parents=True, exist_ok=True)
        study = open_study(args)
        args.out.mkdir(parents=True, exist_ok=True)
        search(study, client, args)
        best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value, default=None)
        confirmation = confirm(client, args, best) if best is not None and args.confirm_seeds else []
    _say(f"{PROGRAM}: {write_report(study, args, best, confirmation)}; report: {args.out / 'report.md'}")
    return 0 if best is not None else NOTHING_COMPLETE_STATUS


def main(argv: Sequence[str] | None = None) -> int:
    """``sbx-lecture sweep``; returns the exit status (2: a usage error, 1: no trial completed, 130: stopped)."""
    args = _parser().parse_args(argv)
    stopped = "stopped: running trials told FAIL; the same command continues the study"
    _STOPPING.clear()
    with stop_signals_handled(_stop):
        return run_command(PROGRAM, lambda: sweep(args), REPORTED_ERRORS, stopped, mask_url)


if __name__ == "__main__":
    sys.exit(main())

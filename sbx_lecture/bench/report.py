"""Tables from a suite's results: CSV and JSON for machines, markdown for the report.

The report gives, per environment and algorithm, the interquartile mean and the median over seeds of the final
deterministic return with 95 % stratified-bootstrap intervals (:mod:`.stats`, rliable); the published figures for
the suite's algorithms on its tasks beside our IQM at the same budget (labelled with their source and caveats: they
are not ours); then the same statistics across environments on normalised scores, and the probability that each
lecture algorithm beats its sibling.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbx_lecture.bench import baselines
from sbx_lecture.bench import stats as bench_stats
from sbx_lecture.bench.suites import FINISHED
from sbx_lecture.bench.zoo_logs import ZOO_LOGS
from sbx_lecture.runs import write_text

#: The columns of ``results.csv``, ``curves.csv`` and ``speed.csv``.
RUN_COLUMNS = [
    "algo",
    "env",
    "family",
    "seed",
    "timesteps",
    "status",
    "final_mean",
    "final_std",
    "final_episodes",
    "steps_per_second",
    "wall_seconds",
    "n_envs",
    "settings_source",
    "folder",
    "error",
]
CURVE_COLUMNS = ["algo", "env", "seed", "steps", "mean_return", "std_return"]
SPEED_COLUMNS = [
    "ours",
    "sibling",
    "env",
    "measured_on",
    "timesteps",
    "repeats",
    "status",
    "ours_steps_per_second",
    "sibling_steps_per_second",
    "ratio",
    "sbx",
    "sbx_steps_per_second",
    "ratio_vs_sbx",
    "env_steps_per_second",
    "warmup_seconds",
    "compile_seconds",
    "n_envs",
    "overrides",
    "own_defaults",
    "device",
    "sbx_backend",
    "dropped_for_sibling",
    "sbx_note",
    "error",
]
#: Column order of the compact summary: each lecture algorithm followed by its siblings.
SUMMARY_ORDER = ("npg", "tnpg", "trpo", "ppo_kl", "ppo", "dpg", "ddpg", "td3", "sql", "sac", "dqn")
#: Marks a speed ratio whose interval contains 1.0.
NO_DIFFERENCE = "≈"


@dataclass
class SuiteStatistics:
    """Everything the report states about the runs (see :func:`suite_statistics`).

    :param groups: the runs grouped by (environment, algorithm, budget)
    :param per_env: :func:`.stats.per_environment`'s DataFrame
    :param references: each environment's normalisation
    :param random_episodes: episodes of the random policy per environment
    :param matrices: each algorithm's normalised scores
    :param aggregate: :func:`.stats.aggregate`'s DataFrame
    :param improvements: :func:`.stats.improvements`'s DataFrame
    :param reps: bootstrap replications
    """

    groups: list[bench_stats.Group]
    per_env: Any
    references: dict[str, baselines.Reference]
    random_episodes: int
    matrices: dict[str, bench_stats.ScoreMatrix]
    aggregate: Any
    improvements: Any
    reps: int


def suite_statistics(
    results: list[dict[str, Any]],
    folder: Path,
    reps: int = bench_stats.DEFAULT_REPS,
    random_episodes: int = baselines.RANDOM_EPISODES,
) -> SuiteStatistics:
    """The report's statistics; the random policy's returns are measured once and cached in ``folder``."""
    groups = bench_stats.group_runs(results)
    measured_best: dict[str, tuple[float, str]] = {}
    for group in groups:
        if group.finals and max(group.finals) > measured_best.get(group.env, (-math.inf, ""))[0]:
            measured_best[group.env] = (max(group.finals), group.algo)
    refs = baselines.references(baselines.random_scores(sorted(measured_best), folder, random_episodes), measured_best)
    matrices = bench_stats.score_matrices(groups, refs)
    return SuiteStatistics(
        groups,
        bench_stats.per_environment(groups, reps),
        refs,
        random_episodes,
        matrices,
        bench_stats.aggregate(matrices, reps),
        bench_stats.improvements(matrices, reps),
        reps,
    )


def markdown_table(header: str, rows: Iterable[str], numbers: slice) -> str:
    """A markdown table. ``header`` and each of ``rows`` hold their cells separated by `` | ``; the columns in
    ``numbers`` (numbers) are aligned right, the others left."""
    columns = range(len(header.split(" | ")))
    rule = "|".join(" ---: " if column in columns[numbers] else " --- " for column in columns)
    return "\n".join([f"| {header} |", f"|{rule}|", *(f"| {row} |" for row in rows)]) + "\n"


def interval_cell(row: Any, name: str, digits: int = 1) -> str:
    """``point [low, high]``: the statistic ``name`` of a table's row with its interval (:func:`.stats._estimate`)."""
    point, low, high = (getattr(row, f"{name}{suffix}") for suffix in ("", "_low", "_high"))
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _steps(timesteps: int) -> str:
    """``100000`` → ``1e5``, ``20000`` → ``2e4``; budgets that are not a digit times a power of ten: ``2,500``."""
    mantissa, exponent = f"{timesteps:.0e}".split("e")
    if int(mantissa) * 10 ** int(exponent) != timesteps:
        return f"{timesteps:,}"
    return f"{mantissa}e{int(exponent)}"


def summary_table(stats: SuiteStatistics) -> str:
    """The markdown table of final returns per environment."""
    rows: list[str] = []
    for row in stats.per_env.itertuples():
        seeds = f"{row.seeds}" + (f" (+{row.failed} failed)" if row.failed else "")
        estimates = "no finished run | – | –"
        if row.seeds:
            estimates = f"{interval_cell(row, 'iqm')} | {interval_cell(row, 'median')} | {row.steps_per_second:.0f}"
        rows.append(f"{row.env} | {row.family} | {row.algo} | {row.timesteps:,} | {seeds} | {estimates}")
    header = "environment | family | algorithm | budget | seeds | IQM [95% CI] | median [95% CI] | steps/s"
    return markdown_table(header, rows, slice(3, 8))


def anchors_table(stats: SuiteStatistics) -> tuple[str, set[str]]:
    """The markdown table of the published figures for each (task, algorithm) of the suite, at the budgets they
    were published for, beside our IQM for the same algorithm and budget where we ran it; and the source keys it
    quotes."""
    ours = {(row.env, row.algo, row.timesteps): row for row in stats.per_env.itertuples() if row.seeds}
    rows: list[str] = []
    sources: set[str] = set()
    for env_id, algo in dict.fromkeys((row.env, row.algo) for row in stats.per_env.itertuples()):
        for figure in baselines.published_for(algo, env_id):
            sources.add(figure.source_key)
            row = ours.get((env_id, algo, figure.timesteps))
            rows.append(
                f"{env_id} | {algo} | {figure.timesteps:,} | {figure.text()} | {figure.source_key} | "
                f"{figure.env_version_note or 'as ours'} | {interval_cell(row, 'iqm') if row else '–'}"
            )
    header = "environment | algorithm | budget | published (not ours) | source | task version | ours: IQM [95% CI]"
    return (markdown_table(header, rows, slice(2, 4)) if rows else ""), sources


def normalisation_table(stats: SuiteStatistics) -> str:
    """The markdown table of each environment's normalisation: random policy and reference return."""
    rows = [
        f"{env_id} | {ref.random:.1f} | {ref.value:.1f} | "
        + (f"**no cited reference**; {ref.source}" if ref.measured else ref.source)
        for env_id, ref in sorted(stats.references.items())
    ]
    return markdown_table(
        "environment | random policy (0) | reference (1) | source of the reference", rows, slice(1, 3)
    )


def aggregate_table(stats: SuiteStatistics) -> str:
    """The markdown table of the normalised statistics across environments, one row per algorithm."""
    rows = [
        f"{row.algo} | {row.family} | {row.envs} | {row.runs}"
        + (f" ({row.dropped} dropped)" if row.dropped else "")
        + f" | {interval_cell(row, 'iqm', 2)} | {interval_cell(row, 'median', 2)}"
        for row in stats.aggregate.itertuples()
    ]
    header = "algorithm | family | environments | seeds per environment | IQM [95% CI] | median [95% CI]"
    return markdown_table(header, rows, slice(3, None))


def defaults_table(stats: SuiteStatistics) -> str:
    """The markdown table of :func:`.stats.sibling_gains`: each lecture class's gain as a fraction of its
    sibling's, per environment."""
    rows = [
        f"{row.env} | {row.algo} | {row.sibling} | {_steps(row.timesteps)} | {row.seeds} | {row.iqm:.1f} | "
        f"{row.sibling_iqm:.1f} | {row.random:.1f} | "
        + ("n/a" if math.isnan(row.fraction) else interval_cell(row, "fraction", 2))
        for row in bench_stats.sibling_gains(stats.groups, stats.references, stats.reps).itertuples()
    ]
    header = "environment | ours | sibling | steps | seeds | ours IQM | sibling IQM | random | fraction [95 % CI]"
    return markdown_table(header, rows, slice(3, None))


def improvement_table(stats: SuiteStatistics) -> str:
    """The markdown table of P(lecture algorithm > sibling)."""
    rows = [
        f"{row.algo} | {row.sibling} | {row.envs} | {row.runs} / {row.sibling_runs} "
        f"| {interval_cell(row, 'probability', 2)}"
        for row in stats.improvements.itertuples()
    ]
    return markdown_table(
        "ours (X) | sibling (Y) | environments | seeds X / Y | P(X > Y) [95% CI]", rows, slice(3, None)
    )


def compact_summary(stats: SuiteStatistics) -> str:
    """A short markdown table for the README: one row per environment, one column per algorithm, final returns.

    A cell is the IQM over seeds with its 95 % interval; the budget of each environment's runs is given in its row
    when all of them share it, else in the cell.
    """
    finished = [row for row in stats.per_env.itertuples() if row.seeds]
    if not finished:
        return ""
    present = {row.algo for row in finished}
    columns = [algo for algo in SUMMARY_ORDER if algo in present] + sorted(present - set(SUMMARY_ORDER))
    rows = []
    for env_id in dict.fromkeys(row.env for row in finished):
        cells = {row.algo: row for row in finished if row.env == env_id}
        budgets = {row.timesteps for row in cells.values()}
        single = len(budgets) == 1
        texts = {
            algo: interval_cell(row, "iqm", 0) + ("" if single else f" ({_steps(row.timesteps)})")
            for algo, row in cells.items()
        }
        label = f"{env_id} ({_steps(budgets.pop())})" if single else env_id
        rows.append(" | ".join([label, *(texts.get(algo, "–") for algo in columns)]))
    return markdown_table(" | ".join(["environment", *columns]), rows, slice(1, None))


def _speed_conditions(result: dict[str, Any]) -> list[str]:
    """What a speed row was measured with beyond our zoo settings on the CPU: own defaults, overrides, device."""
    conditions = ["each its own defaults"] if result.get("own_defaults") else []
    conditions += [f"{key}={value}" for key, value in (result.get("overrides") or {}).items()]
    if result.get("device", "cpu") != "cpu":
        conditions.append(f"device={result['device']}")
    if result.get("sbx_backend") not in (None, "cpu"):  # None: measured without JAX, or before it was recorded
        conditions.append(f"SBX on {result['sbx_backend']}")
    return conditions


def _ratio_cell(ratio: float, ours: list[float] | None, theirs: list[float] | None) -> str:
    """``ratio`` with its 95 % bootstrap interval over the rounds (:func:`.stats.ratio_interval`), marked
    :data:`NO_DIFFERENCE` where that contains 1.0; without an interval, and why, for fewer than
    :data:`.stats.MIN_SPEED_REPEATS` rounds or none kept (results written before each repeat's rate was)."""
    rounds = min(len(ours or ()), len(theirs or ()))
    if rounds < bench_stats.MIN_SPEED_REPEATS:
        return f"{ratio:.2f} (no interval: " + (f"timed {rounds}×)" if rounds else "rates per repeat not kept)")
    low, high = bench_stats.ratio_interval(ours or [], theirs or [])
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]" + (f" {NO_DIFFERENCE}" if low <= 1.0 <= high else "")


def speed_table(results: list[dict[str, Any]]) -> str:
    """The markdown table of the speed measurements."""
    speeds = [result for result in results if result.get("kind") == "speed"]
    rows = []
    for result in speeds:
        pair = (
            f"{result['ours']} | {result['sibling']} | {result['env']} | {', '.join(_speed_conditions(result)) or '–'}"
        )
        if result.get("status") not in FINISHED:
            rows.append(f"{pair} | – | – | – | {result.get('status')}: {result.get('error', '')} | – | – | – | – | –")
            continue
        sbx_rate, sbx_ratio = "–", "–"
        if "sbx_steps_per_second" in result:
            sbx_rate = f"{result['sbx_steps_per_second']:.0f}"
            sbx_ratio = _ratio_cell(result["ratio_vs_sbx"], result.get("ours_samples"), result.get("sbx_samples"))
        compiling = "–" if result.get("compile_seconds") is None else f"{result['compile_seconds']:.1f}"
        rows.append(
            f"{pair} | {result.get('measured_on', '–')} | {result['ours_steps_per_second']:.0f} "
            f"| {result['sibling_steps_per_second']:.0f} "
            f"| {_ratio_cell(result['ratio'], result.get('ours_samples'), result.get('sibling_samples'))} "
            f"| {sbx_rate} | {sbx_ratio} | {result['env_steps_per_second']:.0f} | {compiling} "
            f"| {', '.join(result.get('dropped_for_sibling') or []) or '–'}"
        )
    notes = sorted({result["sbx_note"] for result in speeds if "sbx_note" in result})
    if any(NO_DIFFERENCE in row for row in rows):
        notes.append(f"{NO_DIFFERENCE}: the ratio's 95 % interval contains 1.0: no difference in speed was shown")
    header = (
        "ours | sibling | environment | overrides | measured on | ours steps/s | sibling steps/s | ratio ours/sibling "
        "| SBX steps/s | ratio ours/SBX | env steps/s (ceiling) | ours compiling (s) | not passed to the sibling"
    )
    return markdown_table(header, rows, slice(5, 12)) + "".join(f"\n{note}.\n" for note in notes)


def failures(results: list[dict[str, Any]]) -> list[str]:
    """One line per job that did not finish."""
    lines = []
    for result in results:
        if result.get("status") in FINISHED:
            continue
        what = (
            f"{result.get('algo')} on {result.get('env')} seed {result.get('seed')}"
            if result.get("kind") == "run"
            else f"figure {result.get('name')}"
            if result.get("kind") == "figure"
            else f"speed {result.get('ours')}/{result.get('sibling')} on {result.get('env')}"
        )
        lines.append(f"- {what}: {result.get('status')} {result.get('error', '')}".rstrip())
    return lines


def markdown_report(
    suite: str,
    description: str,
    results: list[dict[str, Any]],
    images: list[Path],
    base: Path,
    stats: SuiteStatistics | None = None,
) -> str:
    """The suite's report: tables, the plots (linked relative to ``base``), caveats and unfinished jobs.

    :param stats: the runs' statistics (computed here when not given)
    """
    parts = [f"# Benchmark suite `{suite}`\n", f"{description}\n"]
    if any(result.get("kind") == "run" for result in results):
        stats = stats if stats is not None else suite_statistics(results, base)
        anchors, sources = anchors_table(stats)
        finished = [r for r in results if r.get("status") in FINISHED and r.get("kind") == "run"]
        episodes = sorted({int(r["final_episodes"]) for r in finished if "final_episodes" in r})
        count = "/".join(str(e) for e in episodes) or "the suite's"
        parts += [
            "## Final return per environment\n",
            "Score of a run: the mean of its deterministic evaluations on a separate environment in the last "
            f"10 % of training, the final one included ({count} episodes at the end). IQM: the mean of the "
            "middle half of the seeds' scores (25 % trimmed from "
            "each end); median over seeds; 95 % intervals from rliable's percentile bootstrap over seeds "
            f"({stats.reps} replications). Steps/s: median over seeds of training steps per second, "
            "evaluation time excluded.\n",
            summary_table(stats),
        ]
        if anchors:
            parts += [
                "## Published figures\n",
                "Every published figure for an algorithm of this suite on its task, at the budget it was published "
                "for, beside our IQM for the same algorithm and budget where we ran it. They are the sources' own, "
                "measured differently from ours:\n",
                *(f"- {key}: {baselines.CAVEATS.get(key, key)}" for key in sorted(sources)),
                "",
                anchors,
            ]
        if stats.references:
            parts += [
                "## Normalised scores\n",
                "Across environments scores are normalised per environment: (score − random) / (reference − "
                f"random), where *random* is the mean return of a uniformly random policy over "
                f"{stats.random_episodes} episodes (measured, cached in `{baselines.RANDOM_CACHE_FILE}`) and "
                "*reference* one cited figure per task, by one rule: the published TRPO figure for the task in "
                f"`{baselines.PUBLISHED_SOURCE}`, the RL Zoo's, or Tianshou's (10 seeds) where the zoo's single run "
                "lies far below the multi-seed figures (HalfCheetah); else the most an episode can return; else the "
                "best final return measured in this suite, marked in the table. The reference is a scale, not a "
                "ceiling: a score above it is above 1.\n",
                normalisation_table(stats),
            ]
        if len(stats.aggregate):
            parts += [
                "## Across environments (normalised)\n",
                "IQM over every (seed, environment) score; median over environments of the mean over seeds "
                "(rliable's definitions). Intervals resample seeds within each environment (stratified "
                "bootstrap). Rows with different environments are not directly comparable; an environment "
                "with fewer finished seeds limits the others to its count (the rest dropped).\n",
                aggregate_table(stats),
            ]
        if any(result.get("own_defaults") for result in results):
            parts += [
                "## Defaults: gain over random as a fraction of the sibling's\n",
                "Every class with its own constructor defaults. Fraction: (IQM − random) / (sibling's IQM − "
                "random) at the same budget; the 95 % interval resamples each side's seeds. n/a: the sibling "
                "gained less than 1 % of the return range over random, so there is no gain to compare with.\n",
                defaults_table(stats),
            ]
        if len(stats.improvements):
            parts += [
                "## Probability of improvement\n",
                "P(X > Y): per environment, the probability that a seed of the lecture's algorithm X scores "
                "above a seed of its sibling Y (ties count one half), averaged over the environments both "
                "ran. Above 0.5 favours X; an interval that contains 0.5 decides nothing.\n",
                improvement_table(stats),
            ]
    if any(result.get("kind") == "speed" for result in results):
        parts += [
            "## Speed\n",
            "Medians of interleaved repeats in one process, identical settings. Each ratio (ours / other) has "
            "its 95 % bootstrap interval, which resamples the rounds of repeats (both rates of a round together); "
            f"a pair timed fewer than {bench_stats.MIN_SPEED_REPEATS} times has none.\n",
            speed_table(results),
        ]
    figures = [r for r in results if r.get("kind") == "figure" and r.get("status") in FINISHED]
    if figures:
        parts += ["## Figures\n", *(f"- `{r['name']}`: {r.get('summary', '')}" for r in figures), ""]
    if images:
        parts.append("## Plots\n")
    if stats is not None and images:  # the curves and profiles are drawn from the runs' statistics
        parts.append(
            "Evaluation curves: IQM over seeds at each evaluation with its 95 % bootstrap interval, both "
            "clipped to the returns the environment can reach (its reward bounds and time limit; for "
            "environments without known bounds, the range of the measured returns). Performance "
            "profiles: fraction of runs whose normalised score exceeds τ.\n"
        )
    parts += [f"![{image.stem}]({_relative(image, base)})\n" for image in images]
    if (base / ZOO_LOGS).is_dir():
        parts += [
            "## RL Zoo layout\n",
            f"`{ZOO_LOGS}/<algo>/<env>_<k>/evaluations.npz` holds every run's evaluations for "
            f"`python -m rl_zoo3.cli all_plots -f {ZOO_LOGS} ...` and `plot_from_file`.\n",
        ]
    unfinished = failures(results)
    if unfinished:
        parts += ["## Unfinished jobs\n", *unfinished, ""]
    return "\n".join(parts)


def _relative(path: Path | str, base: Path) -> str:
    """``path`` as seen from ``base`` (``../runs/...`` for a run beside the report): committed reports hold no
    machine paths."""
    return os.path.relpath(Path(path).resolve(), base.resolve())


def _cell(value: Any) -> Any:
    """A CSV cell: floats to 6 significant digits, lists and dicts spelt out, nothing for ``None``."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value)
    if isinstance(value, dict):
        return " ".join(f"{key}={_cell(item)}" for key, item in value.items())
    return "" if value is None else value


def write_tables(results: list[dict[str, Any]], folder: Path, stats: SuiteStatistics | None = None) -> list[Path]:
    """``results.json`` (everything, curves included), ``results.csv``, ``curves.csv``, ``speed.csv``; with
    ``stats``, ``stats_per_env.csv``, ``normalisation.csv``, ``stats_aggregate.csv`` and
    ``probability_of_improvement.csv``. Folders are written relative to ``folder``; a table without rows is not
    written."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    results = [
        {**result, "folder": _relative(result["folder"], folder)} if "folder" in result else result
        for result in results
    ]
    write_text(folder / "results.json", json.dumps(results, indent=2))
    runs = [result for result in results if result.get("kind") == "run"]
    curves = [
        dict(zip(CURVE_COLUMNS, [run["algo"], run["env"], run["seed"], *point], strict=True))
        for run in runs
        for point in run.get("curve", [])
    ]
    speeds = [result for result in results if result.get("kind") == "speed"]
    tables = {
        name: pd.DataFrame([[_cell(row.get(key)) for key in columns] for row in rows], columns=columns)
        for name, columns, rows in (
            ("results.csv", RUN_COLUMNS, runs),
            ("curves.csv", CURVE_COLUMNS, curves),
            ("speed.csv", SPEED_COLUMNS, speeds),
        )
    }
    if stats is not None:
        tables["stats_per_env.csv"] = stats.per_env
        tables["normalisation.csv"] = pd.DataFrame([vars(ref) for ref in stats.references.values()])
        tables["stats_aggregate.csv"] = stats.aggregate
        tables["probability_of_improvement.csv"] = stats.improvements
    written = [folder / "results.json"]
    for name, frame in tables.items():
        if len(frame):
            written.append(folder / name)
            write_text(written[-1], frame.to_csv(index=False, float_format="%.6g"))
    return written

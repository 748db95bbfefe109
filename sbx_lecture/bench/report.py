"""Tables from a suite's results: CSV and JSON for machines, markdown for the report.

The report gives, per environment and algorithm, the interquartile mean and the median over seeds of the final
deterministic return with 95 % stratified-bootstrap intervals (:mod:`.stats`, rliable), next to the published
figures for the same algorithm, task and budget (labelled with their source and caveats: they are not ours); then
the same statistics across environments on normalised scores, and the probability that each lecture algorithm
beats its sibling.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbx_lecture.bench.baselines import (
    PUBLISHED_SOURCE,
    RANDOM_CACHE_FILE,
    RANDOM_EPISODES,
    Reference,
    random_scores,
    references,
)
from sbx_lecture.bench.published import CAVEATS, PublishedFigure, published_for
from sbx_lecture.bench.stats import (
    DEFAULT_REPS,
    MIN_SPEED_REPEATS,
    Group,
    ScoreMatrix,
    aggregate,
    group_runs,
    improvements,
    per_environment,
    ratio_interval,
    score_matrices,
)
from sbx_lecture.bench.suites import FINISHED
from sbx_lecture.bench.zoo_logs import ZOO_LOGS
from sbx_lecture.runs import write_text

RUN_COLUMNS = (
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
)
SPEED_COLUMNS = (
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
)


def _csv_text(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value)
    if isinstance(value, dict):
        return " ".join(f"{key}={_cell(item)}" for key, item in value.items())
    return "" if value is None else value


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

    groups: list[Group]
    per_env: Any
    references: dict[str, Reference]
    random_episodes: int
    matrices: dict[str, ScoreMatrix]
    aggregate: Any
    improvements: Any
    reps: int


def suite_statistics(
    results: list[dict[str, Any]], folder: Path, reps: int = DEFAULT_REPS, random_episodes: int = RANDOM_EPISODES
) -> SuiteStatistics:
    """The report's statistics; the random policy's returns are measured once and cached in ``folder``."""
    groups = group_runs(results)
    finished = [group for group in groups if group.finals]
    envs = sorted({group.env for group in finished})
    measured_best: dict[str, tuple[float, str]] = {}
    for group in finished:
        best = max(group.finals)
        if group.env not in measured_best or best > measured_best[group.env][0]:
            measured_best[group.env] = (best, group.algo)
    refs = references(random_scores(envs, folder, random_episodes), measured_best) if envs else {}
    matrices = score_matrices(groups, refs)
    return SuiteStatistics(
        groups,
        per_environment(groups, reps),
        refs,
        random_episodes,
        matrices,
        aggregate(matrices, reps),
        improvements(matrices, reps),
        reps,
    )


def _interval(point: float, low: float, high: float, digits: int = 1) -> str:
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_table(stats: SuiteStatistics) -> tuple[str, set[str]]:
    """The markdown table of final returns per environment and the published-source keys it quotes."""
    lines = [
        "| environment | family | algorithm | budget | seeds | IQM [95% CI] | median [95% CI] | steps/s "
        "| published, same budget (not ours) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    sources: set[str] = set()
    for row in stats.per_env.itertuples():
        figures = published_for(row.algo, row.env, row.timesteps)
        sources.update(figure.source_key for figure in figures)
        quoted = "<br>".join(_quoted(figure) for figure in figures) or "–"
        seeds = f"{row.seeds}" + (f" (+{row.failed} failed)" if row.failed else "")
        if row.seeds:
            iqm, median = (
                _interval(row.iqm, row.iqm_low, row.iqm_high),
                _interval(row.median, row.median_low, row.median_high),
            )
            speed = f"{row.steps_per_second:.0f}"
        else:
            iqm, median, speed = "no finished run", "–", "–"
        lines.append(
            f"| {row.env} | {row.family} | {row.algo} | {row.timesteps:,} | {seeds} | {iqm} | {median} "
            f"| {speed} | {quoted} |"
        )
    return "\n".join(lines) + "\n", sources


def _quoted(figure: PublishedFigure) -> str:
    note = f", {figure.env_version_note}" if figure.env_version_note else ""
    return f"{figure.text()} ({figure.source_key}{note})"


def normalisation_table(stats: SuiteStatistics) -> str:
    """The markdown table of each environment's normalisation: random policy and best published return."""
    lines = ["| environment | random policy (0) | best (1) | source of the best |", "| --- | ---: | ---: | --- |"]
    for env_id, ref in sorted(stats.references.items()):
        source = ref.best_source if ref.published else f"**no published figure**; {ref.best_source}"
        lines.append(f"| {env_id} | {ref.random:.1f} | {ref.best:.1f} | {source} |")
    return "\n".join(lines) + "\n"


def aggregate_table(stats: SuiteStatistics) -> str:
    """The markdown table of the normalised statistics across environments, one row per algorithm."""
    lines = [
        "| algorithm | family | environments | seeds per environment | IQM [95% CI] | median [95% CI] |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in stats.aggregate.itertuples():
        runs = f"{row.runs}" + (f" ({row.dropped} dropped)" if row.dropped else "")
        lines.append(
            f"| {row.algo} | {row.family} | {row.envs} | {runs} | "
            f"{_interval(row.iqm, row.iqm_low, row.iqm_high, 2)} | "
            f"{_interval(row.median, row.median_low, row.median_high, 2)} |"
        )
    return "\n".join(lines) + "\n"


def defaults_table(stats: SuiteStatistics) -> str:
    """The markdown table of :func:`.stats.sibling_gains`: each lecture class's gain as a fraction of its
    sibling's, per environment."""
    from sbx_lecture.bench.stats import sibling_gains

    lines = [
        "| environment | ours | sibling | steps | seeds | ours IQM | sibling IQM | random | fraction [95 % CI] |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in sibling_gains(stats.groups, stats.references, stats.reps).itertuples():
        cell = "n/a" if math.isnan(row.fraction) else _interval(row.fraction, row.low, row.high, 2)
        lines.append(
            f"| {row.env} | {row.algo} | {row.sibling} | {_steps(row.timesteps)} | {row.seeds} | {row.iqm:.1f} | "
            f"{row.sibling_iqm:.1f} | {row.random:.1f} | {cell} |"
        )
    return "\n".join(lines) + "\n"


def improvement_table(stats: SuiteStatistics) -> str:
    """The markdown table of P(lecture algorithm > sibling)."""
    lines = [
        "| ours (X) | sibling (Y) | environments | seeds X / Y | P(X > Y) [95% CI] |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for row in stats.improvements.itertuples():
        lines.append(
            f"| {row.algo} | {row.sibling} | {row.envs} | {row.runs} / {row.sibling_runs} | "
            f"{_interval(row.probability, row.low, row.high, 2)} |"
        )
    return "\n".join(lines) + "\n"


#: Column order of the compact summary: each lecture algorithm followed by its siblings.
SUMMARY_ORDER = ("npg", "tnpg", "trpo", "ppo_kl", "ppo", "dpg", "ddpg", "td3", "sql", "sac", "dqn")


def compact_summary(stats: SuiteStatistics) -> str:
    """A short markdown table for the README: one row per environment, one column per algorithm, final returns.

    A cell is the IQM over seeds with its 95 % interval; the budget of each environment's runs is given in its row
    when all of them share it, else in the cell.
    """
    rows = [row for row in stats.per_env.itertuples() if row.seeds]
    if not rows:
        return ""
    present = {row.algo for row in rows}
    columns = [algo for algo in SUMMARY_ORDER if algo in present] + sorted(present - set(SUMMARY_ORDER))
    lines = ["| environment | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for env_id in dict.fromkeys(row.env for row in rows):
        cells = {row.algo: row for row in rows if row.env == env_id}
        budgets = {row.timesteps for row in cells.values()}
        single = len(budgets) == 1

        label = f"{env_id} ({_steps(next(iter(budgets)))})" if single else env_id
        lines.append(f"| {label} | " + " | ".join(_summary_cell(cells.get(algo), single) for algo in columns) + " |")
    return "\n".join(lines) + "\n"


def _summary_cell(row: Any, budget_in_row: bool) -> str:
    if row is None:
        return "–"
    text = _interval(row.iqm, row.iqm_low, row.iqm_high, 0)
    return text if budget_in_row else f"{text} ({_steps(row.timesteps)})"


def _steps(timesteps: int) -> str:
    """``100000`` → ``1e5``, ``20000`` → ``2e4``; budgets that are not a digit times a power of ten: ``2,500``."""
    mantissa, exponent = f"{timesteps:.0e}".split("e")
    if int(mantissa) * 10 ** int(exponent) != timesteps:
        return f"{timesteps:,}"
    return f"{mantissa}e{int(exponent)}"


def _speed_conditions(result: dict[str, Any]) -> list[str]:
    """What a speed row was measured with beyond our zoo settings on the CPU: own defaults, overrides, device."""
    conditions = ["each its own defaults"] if result.get("own_defaults") else []
    conditions += [f"{key}={value}" for key, value in (result.get("overrides") or {}).items()]
    if result.get("device", "cpu") != "cpu":
        conditions.append(f"device={result['device']}")
    if result.get("sbx_backend") not in (None, "cpu"):  # None: measured without JAX, or before it was recorded
        conditions.append(f"SBX on {result['sbx_backend']}")
    return conditions


#: Marks a speed ratio whose interval contains 1.0.
NO_DIFFERENCE = "≈"


def _ratio_cell(ratio: float, ours: list[float] | None, theirs: list[float] | None) -> str:
    """``ratio`` with its 95 % bootstrap interval over the rounds (:func:`.stats.ratio_interval`), marked
    :data:`NO_DIFFERENCE` where that contains 1.0; without an interval, and why, for fewer than
    :data:`.stats.MIN_SPEED_REPEATS` rounds or none kept (results written before each repeat's rate was)."""
    rounds = min(len(ours or ()), len(theirs or ()))
    if rounds < MIN_SPEED_REPEATS:
        return f"{ratio:.2f} (no interval: " + (f"timed {rounds}×)" if rounds else "rates per repeat not kept)")
    low, high = ratio_interval(ours or [], theirs or [])
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]" + (f" {NO_DIFFERENCE}" if low <= 1.0 <= high else "")


def speed_table(results: list[dict[str, Any]]) -> str:
    """The markdown table of the speed measurements."""
    lines = [
        "| ours | sibling | environment | overrides | measured on | ours steps/s | sibling steps/s "
        "| ratio ours/sibling | SBX steps/s | ratio ours/SBX | env steps/s (ceiling) | ours compiling (s) "
        "| not passed to the sibling |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    notes = sorted({result["sbx_note"] for result in results if result.get("kind") == "speed" and "sbx_note" in result})
    for result in results:
        if result.get("kind") != "speed":
            continue
        overrides = ", ".join(_speed_conditions(result)) or "–"
        if result.get("status") not in FINISHED:
            lines.append(
                f"| {result['ours']} | {result['sibling']} | {result['env']} | {overrides} | – | – | – | "
                f"{result.get('status')}: {result.get('error', '')} | – | – | – | – | – |"
            )
            continue
        dropped = ", ".join(result.get("dropped_for_sibling") or []) or "–"
        sbx_rate, sbx_ratio = "–", "–"
        if "sbx_steps_per_second" in result:
            sbx_rate = f"{result['sbx_steps_per_second']:.0f}"
            sbx_ratio = _ratio_cell(result["ratio_vs_sbx"], result.get("ours_samples"), result.get("sbx_samples"))
        compiling = "–" if result.get("compile_seconds") is None else f"{result['compile_seconds']:.1f}"
        lines.append(
            f"| {result['ours']} | {result['sibling']} | {result['env']} | {overrides} "
            f"| {result.get('measured_on', '–')} | {result['ours_steps_per_second']:.0f} "
            f"| {result['sibling_steps_per_second']:.0f} "
            f"| {_ratio_cell(result['ratio'], result.get('ours_samples'), result.get('sibling_samples'))} "
            f"| {sbx_rate} | {sbx_ratio} | {result['env_steps_per_second']:.0f} | {compiling} | {dropped} |"
        )
    if any(NO_DIFFERENCE in line for line in lines[2:]):
        notes.append(f"{NO_DIFFERENCE}: the ratio's 95 % interval contains 1.0: no difference in speed was shown")
    return "\n".join(lines) + "\n" + "".join(f"\n{note}.\n" for note in notes)


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
        table, sources = summary_table(stats)
        episodes = sorted(
            {
                int(r["final_episodes"])
                for r in results
                if r.get("status") in FINISHED and r.get("kind") == "run" and "final_episodes" in r
            }
        )
        count = "/".join(str(e) for e in episodes) or "the suite's"
        parts += [
            "## Final return per environment\n",
            "Score of a run: the mean of its deterministic evaluations on a separate environment in the last "
            f"10 % of training, the final one included ({count} episodes at the end). IQM: the mean of the "
            "middle half of the seeds' scores (25 % trimmed from "
            "each end); median over seeds; 95 % intervals from rliable's percentile bootstrap over seeds "
            f"({stats.reps} replications). Steps/s: median over seeds of training steps per second, "
            "evaluation time excluded.\n",
            table,
        ]
        if sources:
            parts.append("Published figures are the sources' own, measured differently from ours:\n")
            parts += [f"- {key}: {CAVEATS.get(key, key)}" for key in sorted(sources)]
            parts.append("")
        if stats.references:
            parts += [
                "## Normalised scores\n",
                "Across environments scores are normalised per environment: (score − random) / (best − "
                f"random), where *random* is the mean return of a uniformly random policy over "
                f"{stats.random_episodes} episodes (measured, cached in `{RANDOM_CACHE_FILE}`) and *best* "
                f"the best published return in `{PUBLISHED_SOURCE}` for the task (any algorithm, budget or "
                "version of the task; see the caveats above). Where no figure is published, the best final "
                "return measured in this suite stands in, as the table says.\n",
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
            f"a pair timed fewer than {MIN_SPEED_REPEATS} times has none.\n",
            speed_table(results),
        ]
    figures = [r for r in results if r.get("kind") == "figure" and r.get("status") in FINISHED]
    if figures:
        parts.append("## Figures\n")
        parts += [f"- `{r['name']}`: {r.get('summary', '')}" for r in figures]
        parts.append("")
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


def write_tables(results: list[dict[str, Any]], folder: Path, stats: SuiteStatistics | None = None) -> list[Path]:
    """``results.json`` (everything, curves included), ``results.csv``, ``curves.csv``, ``speed.csv``; with
    ``stats``, ``stats_per_env.csv``, ``normalisation.csv``, ``stats_aggregate.csv`` and
    ``probability_of_improvement.csv``. Folders are written relative to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    results = [
        {**result, "folder": _relative(result["folder"], folder)} if "folder" in result else result
        for result in results
    ]
    written = [folder / "results.json"]
    write_text(written[0], json.dumps(results, indent=2))
    runs = [result for result in results if result.get("kind") == "run"]
    speeds = [result for result in results if result.get("kind") == "speed"]
    if runs:
        written.append(folder / "results.csv")
        write_text(written[-1], _csv_text(RUN_COLUMNS, runs))
        curve_rows = [
            {
                "algo": run["algo"],
                "env": run["env"],
                "seed": run["seed"],
                "steps": steps,
                "mean_return": mean,
                "std_return": std,
            }
            for run in runs
            for steps, mean, std in run.get("curve", [])
        ]
        written.append(folder / "curves.csv")
        write_text(written[-1], _csv_text(("algo", "env", "seed", "steps", "mean_return", "std_return"), curve_rows))
    if speeds:
        written.append(folder / "speed.csv")
        write_text(written[-1], _csv_text(SPEED_COLUMNS, speeds))
    if stats is not None:
        import pandas as pd

        references = pd.DataFrame([vars(ref) for ref in stats.references.values()])
        for name, frame in (
            ("stats_per_env.csv", stats.per_env),
            ("normalisation.csv", references),
            ("stats_aggregate.csv", stats.aggregate),
            ("probability_of_improvement.csv", stats.improvements),
        ):
            if len(frame):
                written.append(folder / name)
                write_text(written[-1], frame.to_csv(index=False, float_format="%.6g"))
    return written

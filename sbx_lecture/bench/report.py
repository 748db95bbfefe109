"""Tables from a suite's results: CSV and JSON for machines, markdown for the report.

The report gives, per environment and algorithm, the interquartile mean and the median over seeds of the final
deterministic return with 95 % stratified-bootstrap intervals (:mod:`.stats`, rliable); the published figures for
the suite's algorithms on its tasks beside our IQM at the same budget (labelled with their source and caveats: they
are not ours); then the same statistics across environments on normalised scores, and the probability that each
lecture algorithm beats its sibling. The report's prose and the CSV tables' columns are data: ``report.yml``.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sbx_lecture.bench import baselines
from sbx_lecture.bench import stats as bench_stats
from sbx_lecture.bench.suites import FAMILIES, FINISHED
from sbx_lecture.bench.zoo_logs import ZOO_LOGS, export_zoo_logs
from sbx_lecture.infra.files import write_json, write_text

#: Marks a speed ratio whose interval contains 1.0.
NO_DIFFERENCE = "≈"


#: ``report.yml``: each section's title, paragraph (a ``str.format`` template) and table header, the published
#: sources' caveats and the columns of the CSV tables.
REPORT_TEXT: dict[str, Any] = yaml.safe_load(Path(__file__).with_name("report.yml").read_text())
SECTIONS = REPORT_TEXT["sections"]


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
    measured_best: dict[str, tuple[float, str]] = {}  # each environment's best final return, and whose
    for group in sorted((group for group in groups if group.finals), key=lambda g: max(g.finals), reverse=True):
        measured_best.setdefault(group.env, (max(group.finals), group.algo))
    refs = baselines.references(baselines.random_scores(sorted(measured_best), folder, random_episodes), measured_best)
    matrices = bench_stats.score_matrices(groups, refs)
    per_env = bench_stats.per_environment(groups, reps)
    aggregate, improvements = bench_stats.aggregate(matrices, reps), bench_stats.improvements(matrices, reps)
    return SuiteStatistics(groups, per_env, refs, random_episodes, matrices, aggregate, improvements, reps)


def markdown_table(header: str, rows: list[str], numbers: slice) -> str:
    """A markdown table, or ``""`` without ``rows``. ``header`` and each of ``rows`` hold their cells separated by
    `` | ``; the columns in ``numbers`` (numbers) are aligned right, the others left."""
    columns = range(len(header.split(" | ")))
    rule = "|".join(" ---: " if column in columns[numbers] else " --- " for column in columns)
    return ("\n".join([f"| {header} |", f"|{rule}|", *(f"| {row} |" for row in rows)]) + "\n") if rows else ""


def interval_cell(row: Any, name: str, digits: int = 1) -> str:
    """``point [low, high]``: the statistic ``name`` of a table's row with its interval (:func:`.stats.estimates`)."""
    point, low, high = (getattr(row, f"{name}{suffix}") for suffix in ("", "_low", "_high"))
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _steps(timesteps: int) -> str:
    """``100000`` → ``1e5``, ``20000`` → ``2e4``; budgets that are not a digit times a power of ten: ``2,500``."""
    mantissa, exponent = f"{timesteps:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}" if int(mantissa) * 10 ** int(exponent) == timesteps else f"{timesteps:,}"


def summary_table(stats: SuiteStatistics) -> str:
    """The markdown table of final returns per environment."""
    rows: list[str] = []
    for row in stats.per_env.itertuples():
        seeds = f"{row.seeds}" + (f" (+{row.failed} failed)" if row.failed else "")
        estimates = "no finished run | – | –"
        if row.seeds:
            estimates = f"{interval_cell(row, 'iqm')} | {interval_cell(row, 'median')} | {row.steps_per_second:.0f}"
        budget = f"{row.timesteps:,}" + (f" ({row.taken:,} taken)" if row.taken > row.timesteps else "")
        rows.append(f"{row.env} | {row.family} | {row.algo} | {budget} | {seeds} | {estimates}")
    return markdown_table(SECTIONS["final"]["header"], rows, slice(3, 8))


def anchors_table(stats: SuiteStatistics) -> tuple[str, set[str]]:
    """The markdown table of the published figures for each (task, algorithm) of the suite, at the budgets they
    were published for, beside our IQM for the same algorithm and budget where we ran it; and the source keys it
    quotes."""
    ours = {
        (row.env, row.algo, row.timesteps): interval_cell(row, "iqm") for row in stats.per_env.itertuples() if row.seeds
    }
    pairs = dict.fromkeys((row.env, row.algo) for row in stats.per_env.itertuples())
    figures = [(env_id, figure) for env_id, algo in pairs for figure in baselines.published_for(algo, env_id)]
    rows = [
        f"{env_id} | {figure.algo} | {figure.timesteps:,} | {figure.text()} | {figure.source_key} | "
        f"{figure.env_version_note or 'as ours'} | {ours.get((env_id, figure.algo, figure.timesteps), '–')}"
        for env_id, figure in figures
    ]
    sources = {figure.source_key for _, figure in figures}
    return markdown_table(SECTIONS["published"]["header"], rows, slice(2, 4)), sources


def normalisation_table(stats: SuiteStatistics) -> str:
    """The markdown table of each environment's normalisation: random policy and reference return."""
    rows = [
        f"{env_id} | {ref.random:.1f} | {ref.value:.1f} | "
        + (f"**no cited reference**; {ref.source}" if ref.measured else ref.source)
        for env_id, ref in sorted(stats.references.items())
    ]
    return markdown_table(SECTIONS["normalised"]["header"], rows, slice(1, 3))


def aggregate_table(stats: SuiteStatistics) -> str:
    """The markdown table of the normalised statistics across environments, one row per algorithm."""
    rows = [
        f"{row.algo} | {row.family} | {row.envs} | {row.runs}"
        + (f" ({row.dropped} dropped)" if row.dropped else "")
        + f" | {interval_cell(row, 'iqm', 2)} | {interval_cell(row, 'median', 2)}"
        for row in stats.aggregate.itertuples()
    ]
    return markdown_table(SECTIONS["aggregate"]["header"], rows, slice(3, None))


def defaults_table(stats: SuiteStatistics) -> str:
    """The markdown table of :func:`.stats.sibling_gains`: each lecture class's gain as a fraction of its
    sibling's, per environment."""
    rows = [
        f"{row.env} | {row.algo} | {row.sibling} | {_steps(row.timesteps)} | {row.seeds} | {row.iqm:.1f} | "
        f"{row.sibling_iqm:.1f} | {row.random:.1f} | "
        + ("n/a" if math.isnan(row.fraction) else interval_cell(row, "fraction", 2))
        for row in bench_stats.sibling_gains(stats.groups, stats.references, stats.reps).itertuples()
    ]
    return markdown_table(SECTIONS["defaults"]["header"], rows, slice(3, None))


def improvement_table(stats: SuiteStatistics) -> str:
    """The markdown table of P(lecture algorithm > sibling)."""
    rows = [
        f"{row.algo} | {row.sibling} | {row.envs} | {row.runs} / {row.sibling_runs} "
        f"| {interval_cell(row, 'probability', 2)}"
        for row in stats.improvements.itertuples()
    ]
    return markdown_table(SECTIONS["improvement"]["header"], rows, slice(3, None))


def compact_summary(stats: SuiteStatistics) -> str:
    """A short markdown table for the README: one row per environment, one column per algorithm, final returns.

    A cell is the IQM over seeds with its 95 % interval; the budget of each environment's runs is given in its row
    when all of them share it, else in the cell.
    """
    finished = stats.per_env[stats.per_env.seeds > 0]
    budget = finished.timesteps.map(lambda timesteps: f" ({_steps(timesteps)})")
    single = finished.groupby("env").timesteps.transform("nunique") == 1
    cells = [interval_cell(row, "iqm", 0) for row in finished.itertuples()] + budget.where(~single, "")
    table = finished.assign(cell=cells, label=finished.env + budget.where(single, "")).pivot_table(
        "cell", "label", "algo", aggfunc="last", sort=False
    )
    # Columns in family order (each lecture algorithm followed by its siblings), then any other algorithm.
    columns = [algo for algo in FAMILIES if algo in table] + sorted(set(table.columns) - set(FAMILIES))
    rows = [" | ".join([label, *cells]) for label, cells in table.reindex(columns=columns).fillna("–").iterrows()]
    return markdown_table(" | ".join(["environment", *columns]), rows, slice(1, None))


def _speed_conditions(result: dict[str, Any]) -> str:
    """What a speed row was measured with beyond our zoo settings on the CPU: own defaults, overrides, device."""
    conditions = ["each its own defaults"] if result.get("own_defaults") else []
    conditions += [f"{key}={value}" for key, value in (result.get("overrides") or {}).items()]
    if result.get("device", "cpu") != "cpu":
        conditions.append(f"device={result['device']}")
    if result.get("sbx_backend") not in (None, "cpu"):  # None: measured without JAX, or before it was recorded
        conditions.append(f"SBX on {result['sbx_backend']}")
    return ", ".join(conditions) or "–"


def _ratio_cell(result: dict[str, Any], ratio: str, other: str) -> str:
    """The ratio ``result[ratio]`` of ours to ``other`` (``"sibling"``, ``"sbx"``) with its 95 % bootstrap interval
    over the rounds (:func:`.stats.ratio_interval`), marked :data:`NO_DIFFERENCE` where that contains 1.0; without
    an interval, and why, for fewer than :data:`.stats.MIN_SPEED_REPEATS` rounds or none kept (results written
    before each repeat's rate was)."""
    ours, theirs = result.get("ours_samples") or [], result.get(f"{other}_samples") or []
    rounds = min(len(ours), len(theirs))
    if rounds < bench_stats.MIN_SPEED_REPEATS:
        return f"{result[ratio]:.2f} (no interval: " + (f"timed {rounds}×)" if rounds else "rates per repeat not kept)")
    low, high = bench_stats.ratio_interval(ours, theirs)
    return f"{result[ratio]:.2f} [{low:.2f}, {high:.2f}]" + (f" {NO_DIFFERENCE}" if low <= 1.0 <= high else "")


def speed_table(results: list[dict[str, Any]]) -> str:
    """The markdown table of the speed measurements."""
    speeds = [result for result in results if result.get("kind") == "speed"]
    rows = []
    for result in speeds:
        pair = f"{result['ours']} | {result['sibling']} | {result['env']} | {_speed_conditions(result)}"
        if result.get("status") not in FINISHED:
            rows.append(f"{pair} | – | – | – | {result.get('status')}: {result.get('error', '')} | – | – | – | – | –")
            continue
        sbx = "– | –"
        if "sbx_steps_per_second" in result:
            sbx = f"{result['sbx_steps_per_second']:.0f} | {_ratio_cell(result, 'ratio_vs_sbx', 'sbx')}"
        compiling = "–" if result.get("compile_seconds") is None else f"{result['compile_seconds']:.1f}"
        dropped = ", ".join(result.get("dropped_for_sibling") or []) or "–"
        rows.append(
            f"{pair} | {result.get('measured_on', '–')} | {result['ours_steps_per_second']:.0f} "
            f"| {result['sibling_steps_per_second']:.0f} | {_ratio_cell(result, 'ratio', 'sibling')} | {sbx} "
            f"| {result['env_steps_per_second']:.0f} | {compiling} | {dropped}"
        )
    notes = sorted({result["sbx_note"] for result in speeds if "sbx_note" in result})
    if any(NO_DIFFERENCE in row for row in rows):
        notes.append(f"{NO_DIFFERENCE}: the ratio's 95 % interval contains 1.0: no difference in speed was shown")
    return markdown_table(SECTIONS["speed"]["header"], rows, slice(5, 12)) + "".join(f"\n{note}.\n" for note in notes)


def failures(results: list[dict[str, Any]]) -> list[str]:
    """One line per job that did not finish."""
    jobs = SECTIONS["unfinished"]["jobs"]
    return [
        f"- {jobs[result['kind']].format_map(result)}: {result.get('status')} {result.get('error', '')}".rstrip()
        for result in results
        if result.get("status") not in FINISHED
    ]


def markdown_report(
    suite: str,
    description: str,
    results: list[dict[str, Any]],
    images: list[Path],
    base: Path,
    stats: SuiteStatistics | None = None,
) -> str:
    """The suite's report: tables, the plots (linked relative to ``base``), caveats and unfinished jobs; each
    section's paragraph comes from ``report.yml``.

    :param stats: the runs' statistics (computed here when not given)
    """
    parts = [f"# Benchmark suite `{suite}`\n", f"{description}\n"]

    def section(key: str, *body: str, **fields: Any) -> None:
        """Add the section ``key`` of ``report.yml``: its title, its paragraph (if it has one), then ``body``. A
        section whose ``body`` is given but empty (a table without rows) is left out."""
        if body and not any(body):
            return
        known = {"stats": stats, "baselines": baselines, "bench_stats": bench_stats, "zoo_logs": ZOO_LOGS, **fields}
        paragraph = [SECTIONS[key]["text"].format(**known)] if "text" in SECTIONS[key] else []
        parts.extend([f"## {SECTIONS[key]['title']}\n", *paragraph, *body])

    runs = [result for result in results if result.get("kind") == "run"]
    if runs:
        stats = stats if stats is not None else suite_statistics(results, base)
        counts = {int(r["final_episodes"]) for r in runs if r.get("status") in FINISHED and "final_episodes" in r}
        episodes = "/".join(map(str, sorted(counts)))
        section("final", summary_table(stats), episodes=episodes or "the suite's")
        anchors, sources = anchors_table(stats)
        caveats = REPORT_TEXT["caveats"]
        section("published", *(f"- {key}: {caveats.get(key, key)}" for key in sorted(sources)), "", anchors)
        section("normalised", normalisation_table(stats))
        section("aggregate", aggregate_table(stats))
        if any(result.get("own_defaults") for result in results):
            section("defaults", defaults_table(stats))
        section("improvement", improvement_table(stats))
    section("speed", speed_table(results))
    section("figures", *(f"- `{r['name']}`: {r.get('summary', '')}" for r in _figures(results)), "")
    if images:  # with runs, the curves and profiles drawn from their statistics are described
        curves = [SECTIONS["curves"]["text"]] if stats is not None else []
        section("plots", *curves, *(f"![{image.stem}]({_relative(image, base)})\n" for image in images))
    if (base / ZOO_LOGS).is_dir():
        section("zoo_logs")
    section("unfinished", *failures(results), "")
    return "\n".join(parts)


def _relative(path: Path | str, base: Path) -> str:
    """``path`` as seen from ``base`` (``../runs/...`` for a run beside the report): committed reports hold no
    machine paths."""
    return os.path.relpath(Path(path).resolve(), base.resolve())


def _cell(value: Any) -> Any:
    """A CSV cell: floats to 6 significant digits, lists and dicts spelt out, nothing for a missing value."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value)
    if isinstance(value, dict):
        return " ".join(f"{key}={_cell(item)}" for key, item in value.items())
    return "" if value is None else value


def write_tables(results: list[dict[str, Any]], folder: Path, stats: SuiteStatistics | None = None) -> list[Path]:
    """``results.json`` (everything, curves included), ``results.csv``, ``curves.csv``, ``speed.csv`` (their columns:
    ``report.yml``); with ``stats``, ``stats_per_env.csv``, ``normalisation.csv``, ``stats_aggregate.csv`` and
    ``probability_of_improvement.csv``. Folders are written relative to ``folder``; a table without rows is not
    written."""
    import pandas as pd

    results = [{**r, "folder": _relative(r["folder"], folder)} if "folder" in r else r for r in results]
    write_json(folder / "results.json", results)
    columns = REPORT_TEXT["columns"]
    runs = [result for result in results if result.get("kind") == "run"]
    speeds = [result for result in results if result.get("kind") == "speed"]
    curves = [[r["algo"], r["env"], r["seed"], *point] for r in runs for point in r.get("curve", [])]
    tables = {
        "results.csv": pd.DataFrame(runs, columns=columns["results.csv"], dtype=object).map(_cell),
        "curves.csv": pd.DataFrame(curves, columns=columns["curves.csv"]),
        "speed.csv": pd.DataFrame(speeds, columns=columns["speed.csv"], dtype=object).map(_cell),
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


def write_report(
    suite: str, description: str, results: list[dict[str, Any]], folder: Path, plots: bool, reps: int | None
) -> Path:
    """Write the report of ``results`` into ``folder`` (:func:`sbx_lecture.bench.report_folder`): tables,
    statistics, plots, ``report.md``, ``summary.md`` (the compact table for the README) and the RL Zoo layout export
    (``zoo_logs/``); returns the report's path.

    :param reps: bootstrap replications of the report's intervals (``None``: :data:`.stats.DEFAULT_REPS`)
    """
    runs = [result for result in results if result.get("kind") == "run"]  # rliable is there: checked before
    stats = suite_statistics(runs, folder, reps or bench_stats.DEFAULT_REPS) if runs else None
    write_tables(results, folder, stats)
    export_zoo_logs(results, folder)
    summary = compact_summary(stats) if stats is not None else ""
    if summary:
        write_text(folder / "summary.md", summary)
    images: list[Path | None] = []
    if plots:
        from sbx_lecture.bench import plots as plotting

        if stats is not None:
            images += plotting.learning_curves(stats.groups, folder, suite, stats.reps)
            images.append(plotting.profile_chart(stats.matrices, folder, suite, stats.reps))
            images.append(plotting.interval_chart(stats.aggregate, folder, suite))
            images.append(plotting.improvement_chart(stats.improvements, folder, suite))
        images += [plotting.speed_chart(results, folder, suite), *_copy_figures(results, folder)]
    drawn = [image for image in images if image is not None]
    write_text(folder / "report.md", markdown_report(suite, description, results, drawn, folder, stats))
    return folder / "report.md"


def _figures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished figures of ``results``."""
    return [r for r in results if r.get("kind") == "figure" and r.get("status") in FINISHED]


def _copy_figures(results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Copy each finished figure's PNG into the report folder as ``<name>.png`` (``<name>-<hash>.png`` when the
    suite holds the figure more than once), beside the suite's other plots."""
    figures = _figures(results)
    names = [r["name"] for r in figures]
    copies = []
    for result in figures:
        source = Path(result["folder"]) / result.get("image", "figure.png")
        if source.exists():
            stem = result["name"] if names.count(result["name"]) == 1 else f"{result['name']}-{source.parent.name}"
            copies.append(folder / f"{stem}.png")
            shutil.copyfile(source, copies[-1])
    return copies

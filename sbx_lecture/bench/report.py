"""Tables from a suite's results: CSV and JSON for machines, markdown for the report.

The markdown summary gives, per environment and algorithm, the mean ± standard deviation over seeds of the final
deterministic return, next to the published figures for the same algorithm, task and budget (labelled with their
source and caveats: they are not ours).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbx_lecture.bench.published import CAVEATS, published_for
from sbx_lecture.runs import write_text

RUN_COLUMNS = ("algo", "env", "family", "seed", "timesteps", "status", "final_mean", "final_std", "final_episodes",
               "steps_per_second", "wall_seconds", "n_envs", "settings_source", "folder", "error")
SPEED_COLUMNS = ("ours", "sibling", "env", "timesteps", "repeats", "status", "ours_steps_per_second",
                 "sibling_steps_per_second", "ratio", "sbx", "sbx_steps_per_second", "ratio_vs_sbx",
                 "env_steps_per_second", "warmup_seconds", "n_envs", "overrides", "dropped_for_sibling", "sbx_note",
                 "error")
FINISHED = ("done", "skipped")


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
class Group:
    """The seeds of one algorithm on one environment at one budget."""

    algo: str
    env: str
    family: str
    timesteps: int
    finals: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)
    failed: int = 0

    @property
    def mean(self) -> float:
        """Mean over seeds of the final return."""
        return statistics.fmean(self.finals)

    @property
    def std(self) -> float:
        """Population standard deviation over seeds of the final return."""
        return statistics.pstdev(self.finals) if len(self.finals) > 1 else 0.0


def group_runs(results: list[dict[str, Any]]) -> list[Group]:
    """Finished runs grouped by (env, algorithm, budget), in the order they first appear."""
    groups: dict[tuple[str, str, int], Group] = {}
    for result in results:
        if result.get("kind") != "run":
            continue
        key = (result["env"], result["algo"], int(result.get("timesteps") or 0))
        group = groups.setdefault(key, Group(result["algo"], result["env"], result.get("family", result["algo"]),
                                             key[2]))
        if result.get("status") in FINISHED:
            group.finals.append(float(result["final_mean"]))
            group.speeds.append(float(result["steps_per_second"]))
        else:
            group.failed += 1
    return sorted(groups.values(), key=lambda g: (g.env, g.family, g.algo))


def summary_table(results: list[dict[str, Any]]) -> tuple[str, set[str]]:
    """The markdown table of final returns and the published-source keys it quotes."""
    lines = [
        "| environment | family | algorithm | budget | seeds | final return (mean ± std over seeds) | steps/s "
        "| published, same budget (not ours) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    sources: set[str] = set()
    for group in group_runs(results):
        figures = published_for(group.algo, group.env, group.timesteps)
        sources.update(figure.source_key for figure in figures)
        quoted = "<br>".join(
            f"{figure.text()} ({figure.source_key}{', ' + figure.env_version_note if figure.env_version_note else ''})"
            for figure in figures
        ) or "–"
        seeds = f"{len(group.finals)}" + (f" (+{group.failed} failed)" if group.failed else "")
        score = f"{group.mean:.1f} ± {group.std:.1f}" if group.finals else "no finished run"
        speed = f"{statistics.median(group.speeds):.0f}" if group.speeds else "–"
        lines.append(f"| {group.env} | {group.family} | {group.algo} | {group.timesteps:,} | {seeds} | {score} "
                     f"| {speed} | {quoted} |")
    return "\n".join(lines) + "\n", sources


#: Column order of the compact summary: each lecture algorithm followed by its siblings.
SUMMARY_ORDER = ("npg", "tnpg", "trpo", "ppo_kl", "ppo", "dpg", "ddpg", "td3", "sql", "sac", "dqn")


def compact_summary(results: list[dict[str, Any]]) -> str:
    """A short markdown table for the README: one row per environment, one column per algorithm, final returns.

    A cell is ``mean ± std`` over seeds; the budget of each environment's runs is given in its row when all of them
    share it, else in the cell.
    """
    groups = [group for group in group_runs(results) if group.finals]
    if not groups:
        return ""
    present = {group.algo for group in groups}
    columns = [algo for algo in SUMMARY_ORDER if algo in present] + sorted(present - set(SUMMARY_ORDER))
    lines = ["| environment | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for env_id in dict.fromkeys(group.env for group in groups):
        cells = {group.algo: group for group in groups if group.env == env_id}
        budgets = {group.timesteps for group in cells.values()}
        single = len(budgets) == 1

        label = f"{env_id} ({_steps(next(iter(budgets)))})" if single else env_id
        lines.append(f"| {label} | " + " | ".join(_summary_cell(cells.get(algo), single) for algo in columns) + " |")
    return "\n".join(lines) + "\n"


def _summary_cell(group: Group | None, budget_in_row: bool) -> str:
    if group is None:
        return "–"
    text = f"{group.mean:.0f} ± {group.std:.0f}"
    return text if budget_in_row else f"{text} ({_steps(group.timesteps)})"


def _steps(timesteps: int) -> str:
    """``100000`` → ``1e5``, ``20000`` → ``2e4``; budgets that are not a digit times a power of ten: ``2,500``."""
    mantissa, exponent = f"{timesteps:.0e}".split("e")
    if int(mantissa) * 10 ** int(exponent) != timesteps:
        return f"{timesteps:,}"
    return f"{mantissa}e{int(exponent)}"


def speed_table(results: list[dict[str, Any]]) -> str:
    """The markdown table of the speed measurements."""
    lines = [
        "| ours | sibling | environment | overrides | ours steps/s | sibling steps/s | ratio ours/sibling "
        "| SBX steps/s | ratio ours/SBX | env steps/s (ceiling) | not passed to the sibling |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    notes = sorted({result["sbx_note"] for result in results if result.get("kind") == "speed" and "sbx_note" in result})
    for result in results:
        if result.get("kind") != "speed":
            continue
        overrides = ", ".join(f"{k}={v}" for k, v in (result.get("overrides") or {}).items()) or "–"
        if result.get("status") not in FINISHED:
            lines.append(f"| {result['ours']} | {result['sibling']} | {result['env']} | {overrides} | – | – | "
                         f"{result.get('status')}: {result.get('error', '')} | – | – | – | – |")
            continue
        dropped = ", ".join(result.get("dropped_for_sibling") or []) or "–"
        sbx_rate, sbx_ratio = "–", "–"
        if "sbx_steps_per_second" in result:
            sbx_rate, sbx_ratio = f"{result['sbx_steps_per_second']:.0f}", f"{result['ratio_vs_sbx']:.2f}"
        lines.append(
            f"| {result['ours']} | {result['sibling']} | {result['env']} | {overrides} "
            f"| {result['ours_steps_per_second']:.0f} | {result['sibling_steps_per_second']:.0f} "
            f"| {result['ratio']:.2f} "
            f"| {sbx_rate} | {sbx_ratio} | {result['env_steps_per_second']:.0f} | {dropped} |"
        )
    return "\n".join(lines) + "\n" + "".join(f"\n{note}.\n" for note in notes)


def failures(results: list[dict[str, Any]]) -> list[str]:
    """One line per job that did not finish."""
    lines = []
    for result in results:
        if result.get("status") in FINISHED:
            continue
        what = (f"{result.get('algo')} on {result.get('env')} seed {result.get('seed')}" if result.get("kind") == "run"
                else f"speed {result.get('ours')}/{result.get('sibling')} on {result.get('env')}")
        lines.append(f"- {what}: {result.get('status')} {result.get('error', '')}".rstrip())
    return lines


def markdown_report(suite: str, description: str, results: list[dict[str, Any]], images: list[Path],
                    base: Path) -> str:
    """The suite's report: tables, the plots (linked relative to ``base``), caveats and unfinished jobs."""
    parts = [f"# Benchmark suite `{suite}`\n", f"{description}\n"]
    if any(result.get("kind") == "run" for result in results):
        table, sources = summary_table(results)
        episodes = sorted({int(r["final_episodes"]) for r in results if r.get("status") in FINISHED
                           and r.get("kind") == "run" and "final_episodes" in r})
        count = "/".join(str(e) for e in episodes) or "the suite's"
        parts += ["## Final return\n",
                  f"Deterministic evaluation on a separate environment after the full budget ({count} episodes per "
                  "run); mean ± standard deviation over seeds. Steps/s: median over seeds of training steps per "
                  "second, evaluation time excluded.\n", table]
        if sources:
            parts.append("Published figures are the sources' own, measured differently from ours:\n")
            parts += [f"- {key}: {CAVEATS.get(key, key)}" for key in sorted(sources)]
            parts.append("")
    if any(result.get("kind") == "speed" for result in results):
        parts += ["## Speed\n", "Median of interleaved repeats in one process, identical settings.\n",
                  speed_table(results)]
    if images:
        parts.append("## Plots\n")
        parts += [f"![{image.stem}]({_relative(image, base)})\n" for image in images]
    unfinished = failures(results)
    if unfinished:
        parts += ["## Unfinished jobs\n", *unfinished, ""]
    return "\n".join(parts)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def write_tables(results: list[dict[str, Any]], folder: Path) -> list[Path]:
    """``results.json`` (everything, curves included), ``results.csv``, ``curves.csv``, ``speed.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "results.json"]
    write_text(written[0], json.dumps(results, indent=2))
    runs = [result for result in results if result.get("kind") == "run"]
    speeds = [result for result in results if result.get("kind") == "speed"]
    if runs:
        written.append(folder / "results.csv")
        write_text(written[-1], _csv_text(RUN_COLUMNS, runs))
        curve_rows = [
            {"algo": run["algo"], "env": run["env"], "seed": run["seed"], "steps": steps, "mean_return": mean,
             "std_return": std}
            for run in runs for steps, mean, std in run.get("curve", [])
        ]
        written.append(folder / "curves.csv")
        write_text(written[-1], _csv_text(("algo", "env", "seed", "steps", "mean_return", "std_return"), curve_rows))
    if speeds:
        written.append(folder / "speed.csv")
        write_text(written[-1], _csv_text(SPEED_COLUMNS, speeds))
    return written

"""PNG plots of a suite's results (matplotlib, Agg backend): evaluation curves per environment (IQM with
bootstrap intervals), performance profiles and aggregate intervals (rliable), and the speed chart."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sbx_lecture.bench.baselines import return_range
from sbx_lecture.bench.stats import (
    DEFAULT_REPS,
    PROFILE_TAUS,
    Group,
    ScoreMatrix,
    curve_iqm,
    curve_matrix,
    performance_profiles,
)
from sbx_lecture.bench.suites import FAMILIES, FINISHED, SIBLINGS, family_of
from sbx_lecture.runs import atomic_write


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path, tight: bool = False) -> Path:
    options = {"bbox_inches": "tight"} if tight else {}
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110, **options))
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def algorithm_color(algo: str) -> str:
    """The same colour for an algorithm in every plot."""
    palette = (
        "tab:blue",
        "tab:orange",
        "tab:green",
        "tab:red",
        "tab:purple",
        "tab:brown",
        "tab:pink",
        "tab:gray",
        "tab:olive",
        "tab:cyan",
    )
    order = list(FAMILIES)
    index = order.index(algo) if algo in order else len(order) + sum(map(ord, algo))
    return palette[index % len(palette)]


def learning_curves(groups: list[Group], folder: Path, prefix: str = "", reps: int = DEFAULT_REPS) -> list[Path]:
    """One PNG per environment, one panel per family: each algorithm's IQM over seeds at each evaluation, with the
    95 % stratified-bootstrap interval shaded.

    Curve and band are clipped to the returns the environment can reach (:func:`.baselines.return_range`). The
    lecture's algorithms are drawn solid, the SB3 / sb3-contrib siblings dashed. Files are named
    ``<prefix>_curves_<env>.png`` (``prefix``: the suite, so that several suites' plots can share a folder).
    """
    plt = pyplot()
    by_env: dict[str, dict[str, list[Group]]] = defaultdict(lambda: defaultdict(list))
    for group in groups:
        if group.curves:
            by_env[group.env][group.family].append(group)
    written = []
    for env_id, families in by_env.items():
        observed = np.concatenate([np.ravel(curve_matrix(g.curves)[1]) for f in families.values() for g in f])
        bounds = return_range(env_id, observed)
        columns = min(2, len(families))
        rows = -(-len(families) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows), squeeze=False)
        for axis in axes.flat[len(families) :]:
            axis.set_visible(False)
        for axis, (family, members) in zip(axes.flat, sorted(families.items()), strict=False):
            for group in sorted(members, key=lambda g: (g.algo, g.timesteps)):
                steps, iqm, low, high = curve_iqm(group.curves, bounds, reps)
                color = algorithm_color(group.algo)
                seeds = f"{len(group.curves)} seed{'s' if len(group.curves) > 1 else ''}"
                axis.plot(
                    steps,
                    iqm,
                    linewidth=2,
                    color=color,
                    linestyle="-" if group.algo in SIBLINGS else "--",
                    label=f"{group.algo} ({seeds})",
                )
                axis.fill_between(steps, low, high, alpha=0.2, color=color)
            axis.set_title(f"{env_id}: {family}")
            axis.set_xlabel("environment steps")
            axis.set_ylabel("deterministic evaluation return, IQM")
            axis.grid(alpha=0.3)
            axis.legend(loc="best", fontsize="small")
        figure.tight_layout()
        written.append(_save(figure, folder / f"{_slug(prefix) + '_' if prefix else ''}curves_{_slug(env_id)}.png"))
        plt.close(figure)
    return written


def _colors(algos: list[str]) -> dict[str, str]:
    return {algo: algorithm_color(algo) for algo in algos}


def profile_chart(
    matrices: dict[str, ScoreMatrix], folder: Path, prefix: str = "", reps: int = DEFAULT_REPS
) -> Path | None:
    """Performance profiles (rliable): per family, the fraction of runs whose normalised score exceeds τ, with
    95 % intervals. The file is ``<prefix>_performance_profiles.png``."""
    if not matrices:
        return None
    from rliable import plot_utils

    plt = pyplot()
    families: dict[str, list[str]] = defaultdict(list)
    for algo in matrices:
        families[family_of(algo)].append(algo)
    columns = min(2, len(families))
    rows = -(-len(families) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows), squeeze=False)
    for axis in axes.flat[len(families) :]:
        axis.set_visible(False)
    for axis, (family, algos) in zip(axes.flat, sorted(families.items()), strict=False):
        chosen = {algo: matrices[algo] for algo in sorted(algos)}
        profiles, intervals = performance_profiles(chosen, PROFILE_TAUS, reps)
        plot_utils.plot_performance_profiles(
            profiles,
            PROFILE_TAUS,
            performance_profile_cis=intervals,
            colors=_colors(list(chosen)),
            ax=axis,
            xlabel="normalised score τ",
            ylabel="fraction of runs above τ",
            labelsize="medium",
            ticklabelsize="small",
        )
        axis.set_title(family)
        axis.legend(
            handles=axis.get_lines(),
            labels=[f"{algo} ({', '.join(m.envs)})" for algo, m in chosen.items()],
            fontsize="x-small",
            loc="best",
        )
    figure.tight_layout()
    path = _save(figure, folder / f"{_slug(prefix) + '_' if prefix else ''}performance_profiles.png")
    plt.close(figure)
    return path


def interval_chart(table: Any, folder: Path, prefix: str = "") -> Path | None:
    """Normalised IQM and median across environments with their 95 % intervals, one row per algorithm (rliable's
    interval plot). ``table``: :func:`.stats.aggregate`'s DataFrame. The file is ``<prefix>_aggregate.png``."""
    if table is None or len(table) == 0:
        return None
    from rliable import plot_utils

    plt = pyplot()
    algos = list(table["algo"])
    points = {row.algo: np.array([row.iqm, row.median]) for row in table.itertuples()}
    intervals = {
        row.algo: np.array([[row.iqm_low, row.median_low], [row.iqm_high, row.median_high]])
        for row in table.itertuples()
    }
    figure, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        ["IQM", "Median"],
        algorithms=algos,
        colors=_colors(algos),
        xlabel="normalised score (0: random policy, 1: best published)",
        xlabel_y_coordinate=-0.12,
    )
    path = _save(figure, folder / f"{_slug(prefix) + '_' if prefix else ''}aggregate.png", tight=True)
    plt.close(figure)
    return path


def improvement_chart(table: Any, folder: Path, prefix: str = "") -> Path | None:
    """P(lecture algorithm > sibling) with 95 % intervals, one row per pair (rliable's plot). ``table``:
    :func:`.stats.improvements`'s DataFrame. The file is ``<prefix>_probability_of_improvement.png``."""
    if table is None or len(table) == 0:
        return None
    from rliable import plot_utils

    plt = pyplot()
    points = {f"{row.algo},{row.sibling}": np.array([row.probability]) for row in table.itertuples()}
    intervals = {f"{row.algo},{row.sibling}": np.array([[row.low], [row.high]]) for row in table.itertuples()}
    figure, axis = plt.subplots(figsize=(5, 0.5 * len(points) + 1.2))
    plot_utils.plot_probability_of_improvement(
        points,
        intervals,
        ax=axis,
        colors=[algorithm_color(key.split(",")[0]) for key in points],
        xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
        left_ylabel="ours (X)",
        right_ylabel="sibling (Y)",
        ticklabelsize="medium",
        labelsize="medium",
    )
    path = _save(figure, folder / f"{_slug(prefix) + '_' if prefix else ''}probability_of_improvement.png", tight=True)
    plt.close(figure)
    return path


def speed_chart(results: list[dict[str, Any]], folder: Path, prefix: str = "") -> Path | None:
    """Ratio of steps per second (ours / sibling) per pair, and the absolute rates with the environment's ceiling.

    The file is ``<prefix>_steps_per_second.png``.
    """
    rows = [r for r in results if r.get("kind") == "speed" and r.get("status") in FINISHED]
    if not rows:
        return None
    plt = pyplot()
    labels = [f"{r['ours']} / {r['sibling']}\n{r['env']}" for r in rows]
    positions = np.arange(len(rows))
    figure, (ratio_axis, rate_axis) = plt.subplots(1, 2, figsize=(max(9, 1.6 * len(rows) + 4), 4.5))
    ratio_axis.bar(positions, [r["ratio"] for r in rows], color="tab:blue")
    ratio_axis.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ratio_axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize="small")
    ratio_axis.set_ylabel("steps/s ratio, ours / SB3 sibling")
    ratio_axis.set_title("relative speed at identical settings")
    width = 0.38
    rate_axis.bar(positions - width / 2, [r["ours_steps_per_second"] for r in rows], width, label="ours")
    rate_axis.bar(positions + width / 2, [r["sibling_steps_per_second"] for r in rows], width, label="sibling")
    rate_axis.scatter(
        positions,
        [r["env_steps_per_second"] for r in rows],
        marker="_",
        s=400,
        color="black",
        label="environment alone",
    )
    rate_axis.set_yscale("log")
    rate_axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize="small")
    rate_axis.set_ylabel("environment steps per second")
    rate_axis.set_title("absolute rates (log scale)")
    rate_axis.legend(fontsize="small")
    figure.tight_layout()
    path = _save(figure, folder / f"{_slug(prefix) + '_' if prefix else ''}steps_per_second.png")
    plt.close(figure)
    return path


def sweep_chart(
    runs: list[tuple[str, list[float], float, float, float]], importances: dict[str, float], path: Path
) -> Path:
    """A sweep's top trials and its confirmation: each run's per-seed scores (dots) and IQM with its 95 % interval
    (bar), one row per run (``runs``: label, scores, IQM, low, high); beside it Optuna's parameter importances."""
    plt = pyplot()
    figure, (score_axis, importance_axis) = plt.subplots(1, 2, figsize=(11, 0.45 * max(len(runs), 4) + 1.5))
    for row, (label, scores, iqm, low, high) in enumerate(runs):
        color = "tab:orange" if label == "confirmation" else "tab:blue"
        score_axis.plot([low, high], [row, row], color=color, linewidth=6, alpha=0.35, solid_capstyle="butt")
        score_axis.plot([iqm], [row], marker="|", markersize=14, color=color)
        score_axis.scatter(scores, [row] * len(scores), s=14, color="black", zorder=3)
    score_axis.set_yticks(range(len(runs)), [run[0] for run in runs])
    score_axis.invert_yaxis()
    score_axis.set_xlabel("score per seed (dots); IQM and 95 % interval (bar)")
    names = list(importances)[::-1]
    importance_axis.barh(names, [importances[name] for name in names], color="tab:green")
    importance_axis.set_xlabel("parameter importance (fANOVA)")
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
    return path

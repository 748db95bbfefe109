"""PNG plots of a suite's results (matplotlib, Agg backend): evaluation curves per environment (IQM with
bootstrap intervals), performance profiles and aggregate intervals (rliable), and the speed chart."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np

from sbx_lecture.bench import stats as bench_stats
from sbx_lecture.bench.baselines import return_range
from sbx_lecture.bench.suites import FAMILIES, FINISHED, SIBLINGS, family_of
from sbx_lecture.infra.files import atomic_write


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_file(folder: Path, prefix: str, name: str) -> Path:
    """``<folder>/<prefix>_<name>.png`` (``prefix``: the suite, so that several suites' plots can share a folder)."""
    return folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', f'{prefix}_{name}' if prefix else name)}.png"


def save_figure(figure: Any, path: Path, tight: bool = False, dpi: int = 110) -> Path:
    """Write ``figure`` to ``path`` as a PNG, atomically, and close it; ``tight``: crop it to what it draws (for
    figures laid out by rliable), else lay its panels out first (matplotlib's ``tight_layout``)."""
    if not tight:
        figure.tight_layout()
    options = {"bbox_inches": "tight"} if tight else {}
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=dpi, **options))
    pyplot().close(figure)
    return path


def _panels(count: int) -> tuple[Any, list[Any]]:
    """A figure with ``count`` panels, two to a row, and its panels' axes."""
    columns = min(2, count)
    rows = -(-count // columns)
    figure = pyplot().figure(figsize=(6 * columns, 4 * rows))
    return figure, [figure.add_subplot(rows, columns, index + 1) for index in range(count)]


def seeds_label(seeds: list[int]) -> str:
    """``"seed 3"``, ``"seeds 5-9"`` (consecutive) or ``"seeds 0, 2, 7"``: which seeds a curve or score stands on."""
    ordered = sorted(seeds)
    if len(ordered) == 1:
        return f"seed {ordered[0]}"
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"seeds {ordered[0]}-{ordered[-1]}"
    return "seeds " + ", ".join(map(str, ordered))


def algorithm_color(algo: str) -> tuple[float, ...]:
    """The same colour for an algorithm in every plot (matplotlib's ``tab10`` palette, in family order)."""
    import matplotlib

    order = list(FAMILIES)
    index = order.index(algo) if algo in order else len(order) + sum(map(ord, algo))
    return tuple(matplotlib.colormaps["tab10"](index % 10))


def learning_curves(
    groups: list[bench_stats.Group], folder: Path, prefix: str = "", reps: int = bench_stats.DEFAULT_REPS
) -> list[Path]:
    """One PNG per environment, one panel per family: each algorithm's IQM over seeds at each evaluation, with the
    95 % stratified-bootstrap interval shaded.

    Curve and band are clipped to the returns the environment can reach (:func:`.baselines.return_range`). The
    lecture's algorithms are drawn solid, the SB3 / sb3-contrib siblings dashed. Files are named
    ``<prefix>_curves_<env>.png``.

    :param groups: in the order :func:`.stats.group_runs` returns them (by environment, then family)
    """
    written = []
    for env_id, in_env in itertools.groupby((group for group in groups if group.curves), lambda group: group.env):
        families = {family: list(members) for family, members in itertools.groupby(in_env, lambda g: g.family)}
        observed = [bench_stats.curve_matrix(g.curves)[1].ravel() for members in families.values() for g in members]
        bounds = return_range(env_id, np.concatenate(observed))
        figure, axes = _panels(len(families))
        for axis, (family, members) in zip(axes, families.items(), strict=True):
            for group in sorted(members, key=lambda g: (g.algo, g.timesteps)):
                steps, iqm, low, high = bench_stats.curve_iqm(group.curves, bounds, reps)
                label = f"{group.algo} ({seeds_label(group.seeds)})"
                style = "-" if group.algo in SIBLINGS else "--"  # the lecture's solid, its siblings dashed
                axis.plot(steps, iqm, linewidth=2, color=algorithm_color(group.algo), linestyle=style, label=label)
                axis.fill_between(steps, low, high, alpha=0.2, color=algorithm_color(group.algo))
            axis.set(
                title=f"{env_id}: {family}",
                xlabel="environment steps",
                ylabel="evaluation return: IQM, 95 % CI shaded",
            )
            axis.grid(alpha=0.3)
            axis.legend(loc="best", fontsize="small")
        written.append(save_figure(figure, _plot_file(folder, prefix, f"curves_{env_id}")))
    return written


def profile_chart(
    matrices: dict[str, bench_stats.ScoreMatrix], folder: Path, prefix: str = "", reps: int = bench_stats.DEFAULT_REPS
) -> Path | None:
    """Performance profiles (rliable): per family, the fraction of runs whose normalised score exceeds τ, with
    95 % intervals. The file is ``<prefix>_performance_profiles.png``."""
    if not matrices:
        return None
    from rliable import plot_utils

    by_family = itertools.groupby(sorted(matrices, key=lambda algo: (family_of(algo), algo)), family_of)
    families = {family: list(algos) for family, algos in by_family}
    figure, axes = _panels(len(families))
    for axis, (family, algos) in zip(axes, families.items(), strict=True):
        chosen = {algo: matrices[algo] for algo in algos}
        profiles, intervals = bench_stats.performance_profiles(chosen, reps)
        plot_utils.plot_performance_profiles(
            profiles,
            bench_stats.PROFILE_TAUS,
            performance_profile_cis=intervals,
            colors={algo: algorithm_color(algo) for algo in algos},
            ax=axis,
            xlabel="normalised score τ",
            ylabel="fraction of runs above τ, 95 % CI",
            labelsize="medium",
            ticklabelsize="small",
        )
        axis.set_title(family)
        labels = [f"{algo}, {len(matrix.scores)} seeds ({', '.join(matrix.envs)})" for algo, matrix in chosen.items()]
        axis.legend(handles=axis.get_lines(), labels=labels, fontsize="x-small", loc="best")
    return save_figure(figure, _plot_file(folder, prefix, "performance_profiles"))


def _estimates(table: Any, key: str, statistics: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's point estimates and intervals, keyed by the column ``key``, of the ``statistics`` columns of a
    :mod:`.stats` table (``<name>``, ``<name>_low``, ``<name>_high``)."""
    columns = [f"{name}{end}" for end in ("", "_low", "_high") for name in statistics]
    values = table[columns].to_numpy(float).reshape(len(table), 3, len(statistics))
    return dict(zip(table[key], values[:, 0], strict=True)), dict(zip(table[key], values[:, 1:], strict=True))


def interval_chart(table: Any, folder: Path, prefix: str = "") -> Path | None:
    """Normalised IQM and median across environments with their 95 % intervals, one row per algorithm (rliable's
    interval plot). ``table``: :func:`.stats.aggregate`'s DataFrame. The file is ``<prefix>_aggregate.png``."""
    if len(table) == 0:
        return None
    from rliable import plot_utils

    labelled = table.assign(label=[f"{row.algo} ({row.runs} seeds)" for row in table.itertuples()])
    labels = list(labelled["label"])
    figure, _ = plot_utils.plot_interval_estimates(
        *_estimates(labelled, "label", ["iqm", "median"]),
        ["IQM", "Median"],
        algorithms=labels,
        colors={label: algorithm_color(algo) for label, algo in zip(labels, table["algo"], strict=True)},
        xlabel="normalised score (0: random, 1: the task's reference), 95 % CI",
        xlabel_y_coordinate=-0.3,
    )
    return save_figure(figure, _plot_file(folder, prefix, "aggregate"), tight=True)


def improvement_chart(table: Any, folder: Path, prefix: str = "") -> Path | None:
    """P(lecture algorithm > sibling) with 95 % intervals, one row per pair (rliable's plot). ``table``:
    :func:`.stats.improvements`'s DataFrame. The file is ``<prefix>_probability_of_improvement.png``."""
    if len(table) == 0:
        return None
    from rliable import plot_utils

    pairs = [f"{row.algo} ({row.runs} seeds),{row.sibling} ({row.sibling_runs} seeds)" for row in table.itertuples()]
    points, intervals = _estimates(table.assign(pair=pairs), "pair", ["probability"])
    figure, axis = pyplot().subplots(figsize=(5, 0.5 * len(points) + 1.2))
    plot_utils.plot_probability_of_improvement(
        points,
        intervals,
        ax=axis,
        colors=[algorithm_color(algo) for algo in table["algo"]],
        xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
        left_ylabel="ours (X)",
        right_ylabel="sibling (Y)",
        ticklabelsize="medium",
        labelsize="medium",
    )
    axis.set_title("P(X > Y) per seed, 95 % CI", fontsize="medium")
    return save_figure(figure, _plot_file(folder, prefix, "probability_of_improvement"), tight=True)


def speed_chart(results: list[dict[str, Any]], folder: Path, prefix: str = "") -> Path | None:
    """Ratio of steps per second (ours / sibling) per pair, and the absolute rates with the environment's ceiling.

    The file is ``<prefix>_steps_per_second.png``.
    """
    rows = [r for r in results if r.get("kind") == "speed" and r.get("status") in FINISHED]
    if not rows:
        return None
    labels = [f"{r['ours']} / {r['sibling']}\n{r['env']}" for r in rows]
    positions = np.arange(len(rows))
    figure, (ratio_axis, rate_axis) = pyplot().subplots(1, 2, figsize=(max(9, 1.6 * len(rows) + 4), 4.5))
    ratio_axis.bar(positions, [r["ratio"] for r in rows], color="tab:blue")
    ratio_axis.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ratio_axis.set(ylabel="steps/s ratio, ours / SB3 sibling", title="relative speed at identical settings")
    for offset, side in ((-0.19, "ours"), (0.19, "sibling")):  # bars 0.38 wide, side by side
        rate_axis.bar(positions + offset, [r[f"{side}_steps_per_second"] for r in rows], 0.38, label=side)
    ceiling = [r["env_steps_per_second"] for r in rows]
    rate_axis.scatter(positions, ceiling, marker="_", s=400, color="black", label="environment alone")
    rate_axis.set(yscale="log", ylabel="environment steps per second", title="absolute rates (log scale)")
    rate_axis.legend(fontsize="small")
    for axis in (ratio_axis, rate_axis):
        axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize="small")
    return save_figure(figure, _plot_file(folder, prefix, "steps_per_second"))


def sweep_chart(
    runs: list[tuple[str, list[float], float, float, float]], importances: dict[str, float], path: Path
) -> Path:
    """A sweep's top trials and its confirmation: each run's per-seed scores (dots) and IQM with its 95 % interval
    (bar), one row per run (``runs``: label, scores, IQM, low, high); beside it Optuna's parameter importances."""
    figure, (score_axis, importance_axis) = pyplot().subplots(1, 2, figsize=(11, 0.45 * max(len(runs), 4) + 1.5))
    for row, (label, scores, iqm, low, high) in enumerate(runs):
        color = "tab:orange" if label == "confirmation" else "tab:blue"
        score_axis.plot([low, high], [row, row], color=color, linewidth=6, alpha=0.35, solid_capstyle="butt")
        score_axis.plot([iqm], [row], marker="|", markersize=14, color=color)
        score_axis.scatter(scores, [row] * len(scores), s=14, color="black", zorder=3)
    score_axis.set_yticks(range(len(runs)), [run[0] for run in runs])
    score_axis.invert_yaxis()
    score_axis.set_xlabel("score per seed (dots); IQM and 95 % interval (bar)")
    importance_axis.barh(list(importances)[::-1], list(importances.values())[::-1], color="tab:green")
    importance_axis.set_xlabel("parameter importance (fANOVA)")
    return save_figure(figure, path)

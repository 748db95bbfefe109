"""PNG plots of a suite's results (matplotlib, Agg backend): learning curves per environment and the speed chart."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sbx_lecture.bench.suites import FAMILIES, SIBLINGS
from sbx_lecture.runs import atomic_write

FINISHED = ("done", "skipped")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def mean_and_spread(curves: list[list[tuple[float, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves on a common grid (the shortest curve's steps, others interpolated): steps, mean, std."""
    grid = np.array([steps for steps, _ in min(curves, key=len)], dtype=float)
    values = np.array([
        np.interp(grid, [s for s, _ in curve], [v for _, v in curve]) for curve in curves
    ])
    return grid, values.mean(axis=0), values.std(axis=0)


def algorithm_color(algo: str) -> str:
    """The same colour for an algorithm in every plot."""
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
               "tab:olive", "tab:cyan")
    order = list(FAMILIES)
    index = order.index(algo) if algo in order else len(order) + sum(map(ord, algo))
    return palette[index % len(palette)]


def learning_curves(results: list[dict[str, Any]], folder: Path, prefix: str = "") -> list[Path]:
    """One PNG per environment, one panel per family: each algorithm's mean curve over seeds, ± std shaded.

    The lecture's algorithms are drawn solid, the SB3 / sb3-contrib siblings dashed. Files are named
    ``<prefix>_curves_<env>.png`` (``prefix``: the suite, so that several suites' plots can share a folder).
    """
    plt = _pyplot()
    by_env: dict[str, dict[str, dict[str, list[list[tuple[float, float]]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for result in results:
        if result.get("kind") == "run" and result.get("status") in FINISHED and result.get("curve"):
            curve = [(float(steps), float(mean)) for steps, mean, _ in result["curve"]]
            by_env[result["env"]][result.get("family", result["algo"])][result["algo"]].append(curve)
    written = []
    for env_id, families in by_env.items():
        columns = min(2, len(families))
        rows = -(-len(families) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4 * rows), squeeze=False)
        for axis in axes.flat[len(families):]:
            axis.set_visible(False)
        for axis, (family, algorithms) in zip(axes.flat, sorted(families.items()), strict=False):
            for algo, curves in sorted(algorithms.items()):
                steps, mean, std = mean_and_spread(curves)
                color = algorithm_color(algo)
                seeds = f"{len(curves)} seed{'s' if len(curves) > 1 else ''}"
                axis.plot(steps, mean, linewidth=2, color=color, linestyle="-" if algo in SIBLINGS else "--",
                          label=f"{algo} ({seeds})")
                axis.fill_between(steps, mean - std, mean + std, alpha=0.2, color=color)
            axis.set_title(f"{env_id}: {family}")
            axis.set_xlabel("environment steps")
            axis.set_ylabel("deterministic evaluation return")
            axis.grid(alpha=0.3)
            axis.legend(loc="best", fontsize="small")
        figure.tight_layout()
        written.append(_save(figure, folder / f"{_slug(prefix) + '_' if prefix else ''}curves_{_slug(env_id)}.png"))
        plt.close(figure)
    return written


def speed_chart(results: list[dict[str, Any]], folder: Path, prefix: str = "") -> Path | None:
    """Ratio of steps per second (ours / sibling) per pair, and the absolute rates with the environment's ceiling.

    The file is ``<prefix>_steps_per_second.png``.
    """
    rows = [r for r in results if r.get("kind") == "speed" and r.get("status") in FINISHED]
    if not rows:
        return None
    plt = _pyplot()
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
    rate_axis.scatter(positions, [r["env_steps_per_second"] for r in rows], marker="_", s=400, color="black",
                      label="environment alone")
    rate_axis.set_yscale("log")
    rate_axis.set_xticks(positions, labels, rotation=45, ha="right", fontsize="small")
    rate_axis.set_ylabel("environment steps per second")
    rate_axis.set_title("absolute rates (log scale)")
    rate_axis.legend(fontsize="small")
    figure.tight_layout()
    path = _save(figure, folder / f"{_slug(prefix) + '_' if prefix else ''}steps_per_second.png")
    plt.close(figure)
    return path

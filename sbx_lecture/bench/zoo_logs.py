"""A suite's evaluations in the RL Zoo's log layout, so that ``rl_zoo3``'s ``all_plots`` and ``plot_from_file`` read
them.

``all_plots -f FOLDER`` looks for ``FOLDER/<algo>/<dirs whose name holds the env id>/evaluations.npz``; the run
folders (``runs/<algo>/<env>/t<budget>/seed_<k>/``) nest one level deeper, so they are exported as
``<report folder>/zoo_logs/<algo>/<env_id>_<k>/evaluations.npz`` with ``k`` = 1, 2, … in seed order::

    python -m rl_zoo3.cli all_plots -a ppo trpo -e CartPole-v1 -f bench_results/classic/zoo_logs -o classic
    python -m rl_zoo3.cli plot_from_file -i classic.pkl -l ppo trpo

``results`` (and ``ep_lengths``) hold one row per evaluation point and one column per episode of the periodic
evaluations. The final evaluation runs more episodes than fit in that width; its row holds its mean return in every
column (NaN padding, as the run folder's file has, would turn the zoo's averages into NaN). ``all_plots`` averages
each row, then the seeds, so its curves and final returns are ours; at least two columns are written, because it
squeezes a single one away.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sbx_lecture.bench.suites import FINISHED
from sbx_lecture.evaluation import EVALUATIONS_FILE, Evaluations

ZOO_LOGS = "zoo_logs"


def rectangular(rows: list[list[float]]) -> np.ndarray:
    """Rows of the most common length kept as they are (at least two columns); any other row as its mean repeated."""
    lengths = [len(row) for row in rows]
    width = max(max(set(lengths), key=lengths.count), 2)
    return np.array([row if len(row) == width else [float(np.mean(row))] * width for row in rows], dtype=float)


def export_zoo_logs(results: list[dict[str, Any]], folder: Path) -> Path | None:
    """Write the finished runs' evaluations to ``folder/zoo_logs`` in the RL Zoo's layout (replacing an older
    export); returns that folder, or ``None`` when no finished run has evaluations.

    Runs of one algorithm on one environment at several budgets are numbered on together, the smallest budget
    first (``all_plots`` merges them; filter the suite to one budget to avoid that).
    """
    runs = sorted(
        (r for r in results if r.get("kind") == "run" and r.get("status") in FINISHED and r.get("folder")),
        key=lambda r: (r["algo"], r["env"], int(r.get("timesteps") or 0), int(r.get("seed", 0))),
    )
    target = folder / ZOO_LOGS
    shutil.rmtree(target, ignore_errors=True)
    counts: Counter[tuple[str, str]] = Counter()
    for run in runs:
        evaluations = Evaluations.load(Path(run["folder"]) / EVALUATIONS_FILE)
        if evaluations.timesteps:
            counts[run["algo"], run["env"]] += 1
            path = target / run["algo"] / f"{run['env']}_{counts[run['algo'], run['env']]}" / EVALUATIONS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            evaluations.save(path, rectangular)
    return target if counts else None

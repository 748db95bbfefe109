"""Statistics of a suite's results with rliable (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"): interquartile mean and median with stratified-bootstrap confidence intervals, performance profiles and
probabilities of improvement.

The score of a run is the mean of its deterministic evaluations in the last 10 % of training, the final one included
(:func:`run_score`): one evaluation of a few episodes is too noisy a number. Per environment the statistics are over
seeds, in the environment's own units. Across environments they are over normalised scores (:mod:`.baselines`: 0 a
uniformly random policy, 1 the task's cited reference): the IQM over every (seed, environment) score, the median over
environments of the per-environment mean (rliable's definitions). Every interval is rliable's percentile bootstrap
that resamples seeds within each environment; the bootstrap draws from a seeded generator, so a report is the same
each time it is written. Every statistic has one definition below: its point estimate is the one rliable returns
beside the interval, computed by the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sbx_lecture.bench.baselines import Reference, return_range
from sbx_lecture.bench.suites import FINISHED, SIBLINGS, SuiteError, family_of

#: Bootstrap replications of a report (``--bootstrap-reps``).
DEFAULT_REPS = 2000
CONFIDENCE = 0.95
#: Seed of the bootstrap's generator.
BOOTSTRAP_SEED = 0
#: Thresholds of the performance profiles, in normalised score.
PROFILE_TAUS = np.linspace(-0.25, 1.25, 61)
#: The share of training, at its end, whose evaluations make a run's score.
SCORE_WINDOW = 0.1
#: Repeats a speed ratio needs for a bootstrap interval: fewer rounds give too few distinct resamples.
MIN_SPEED_REPEATS = 5


def check_packages() -> None:
    """Raise :class:`.SuiteError` when a package the statistics need (the ``bench`` extra) is not installed."""
    import importlib.util

    missing = [name for name in ("rliable", "pandas") if importlib.util.find_spec(name) is None]
    if missing:
        raise SuiteError(f"the report's statistics need {' and '.join(missing)}: pip install 'sbx-lecture[bench]'")


def run_score(result: dict[str, Any]) -> float:
    """The mean of a run's evaluations at or after ``(1 − SCORE_WINDOW)`` of its budget (its curve's points, the
    final evaluation included), or its final evaluation when it has no curve."""
    budget = float(result.get("timesteps") or 0)
    late = [float(point[1]) for point in result.get("curve") or [] if float(point[0]) >= (1 - SCORE_WINDOW) * budget]
    return float(np.mean(late)) if late else float(result["final_mean"])


@dataclass
class Group:
    """The seeds of one algorithm on one environment at one budget."""

    algo: str
    env: str
    family: str
    timesteps: int
    seeds: list[int] = field(default_factory=list)
    finals: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)
    curves: list[list[tuple[float, float]]] = field(default_factory=list)
    failed: int = 0


def group_runs(results: list[dict[str, Any]]) -> list[Group]:
    """Runs grouped by (env, algorithm, budget), sorted by environment, family and algorithm; failures counted."""
    groups: dict[tuple[str, str, int], Group] = {}
    for result in (result for result in results if result.get("kind") == "run"):
        key = (result["env"], result["algo"], int(result.get("timesteps") or 0))
        group = groups.setdefault(key, Group(result["algo"], result["env"], result.get("family", key[1]), key[2]))
        if result.get("status") in FINISHED:
            group.seeds.append(int(result.get("seed", len(group.seeds))))
            group.finals.append(run_score(result))
            group.speeds.append(float(result.get("steps_per_second") or 0.0))
            if result.get("curve"):
                group.curves.append([(float(point[0]), float(point[1])) for point in result["curve"]])
        else:
            group.failed += 1
    return sorted(groups.values(), key=lambda g: (g.env, g.family, g.algo))


@contextmanager
def seeded_bootstrap() -> Iterator[None]:
    """Seed numpy's global generator, which rliable's bootstrap draws from, with :data:`BOOTSTRAP_SEED`, and restore
    its state afterwards."""
    state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        yield
    finally:
        np.random.set_state(state)


def estimates(scores: np.ndarray | list[np.ndarray], func: Callable[..., np.ndarray], reps: int) -> np.ndarray:
    """rliable's point estimates of ``func`` on ``scores`` and their percentile-bootstrap 95 % intervals: three rows
    (points, lower bounds, upper bounds), one column per value ``func`` returns."""
    from rliable import library

    with seeded_bootstrap():
        points, intervals = library.get_interval_estimates(
            {"scores": scores}, func, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return np.vstack([np.ravel(points["scores"]), np.asarray(intervals["scores"]).reshape(2, -1)])


def _columns(name: str, values: np.ndarray) -> dict[str, float]:
    """The columns of one statistic in a table's row: ``name`` (the point), ``name_low`` and ``name_high`` (its
    interval), from a column of :func:`estimates`."""
    return dict(zip((name, f"{name}_low", f"{name}_high"), map(float, values), strict=True))


# The bootstrap evaluates its statistic once per replication, and scipy's trim_mean and mannwhitneyu (behind
# rliable's aggregate_iqm and probability_of_improvement) cost milliseconds a call. The statistics below are the same
# numbers (tests/test_bench_stats.py asserts it) from plain numpy, vectorised over columns.


def column_iqm(scores: np.ndarray) -> np.ndarray:
    """The IQM of each column over axis 0: ``rliable.metrics.aggregate_iqm`` of each ``scores[:, j, ...]``.

    The 25 % trimmed mean: ``int(0.25 n)`` values cut from each end of the sorted ``n``.
    """
    ordered = np.sort(scores, axis=0)
    cut = int(0.25 * ordered.shape[0])
    return np.asarray(ordered[cut : ordered.shape[0] - cut].mean(axis=0))


def iqm_and_median(scores: np.ndarray) -> np.ndarray:
    """rliable's aggregate IQM (over every score) and median (over environments of the per-environment mean) of
    ``runs × environments`` scores."""
    return np.array([column_iqm(scores.reshape(-1))[()], np.median(scores.mean(axis=0))])


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
    """``rliable.metrics.probability_of_improvement``: per environment (column) the fraction of (x, y) seed pairs
    with x > y, ties counting one half, averaged over environments."""
    above = scores_x[:, None, :] > scores_y[None, :, :]
    tied = scores_x[:, None, :] == scores_y[None, :, :]
    return np.array([np.mean(above.mean(axis=(0, 1)) + 0.5 * tied.mean(axis=(0, 1)))])


def per_environment(groups: list[Group], reps: int = DEFAULT_REPS) -> Any:
    """IQM and median over seeds of the final return, with 95 % intervals, per (environment, algorithm, budget).

    Groups with the same number of seeds share one stratified bootstrap, one group a column: it resamples each
    column on its own, so every group gets the interval of its own bootstrap.

    :return: a pandas DataFrame, one row per group
    """
    import pandas as pd

    columns = ["env", "family", "algo", "timesteps", "seeds", "failed"]
    frame = pd.DataFrame(
        [[g.env, g.family, g.algo, g.timesteps, len(g.finals), g.failed] for g in groups], columns=columns
    )
    for _, members in frame[frame.seeds > 0].groupby("seeds"):
        scores = np.stack([groups[index].finals for index in members.index], axis=1)
        found = estimates(scores, lambda s: np.concatenate([column_iqm(s), np.median(s, axis=0)]), reps)
        for name, values in (("iqm", found[:, : len(members)]), ("median", found[:, len(members) :])):
            frame.loc[members.index, [name, f"{name}_low", f"{name}_high"]] = values.T
    # SB3's on-policy learn ends at the first whole rollout past the budget: the steps the runs took, when more
    taken = [max((int(curve[-1][0]) for curve in g.curves if curve), default=g.timesteps) for g in groups]
    speeds = [float(np.median(g.speeds)) if g.finals else np.nan for g in groups]
    return frame.assign(steps_per_second=speeds, taken=taken)


@dataclass
class ScoreMatrix:
    """One algorithm's normalised final scores, ``runs × environments`` (rliable's layout).

    :param envs: the environments, in column order
    :param scores: normalised scores; each column keeps the first ``runs`` seeds of its environment
    :param dropped: seeds left out so that every environment has as many as the sparsest
    """

    envs: list[str]
    scores: np.ndarray
    dropped: int = 0

    def restrict(self, envs: list[str]) -> np.ndarray:
        """The scores of the columns of ``envs`` only."""
        return self.scores[:, [self.envs.index(env) for env in envs]]


def score_matrices(groups: list[Group], refs: dict[str, Reference]) -> dict[str, ScoreMatrix]:
    """Each algorithm's normalised :class:`ScoreMatrix` over the environments it ran on.

    Where an algorithm ran one environment at several budgets, the largest is used. Environments with fewer
    finished seeds than others limit every column to their count (seeds in order, the rest dropped).
    """
    chosen: dict[str, dict[str, Group]] = {}
    for group in sorted(groups, key=lambda g: g.timesteps):  # the largest budget comes last and stays
        if group.finals and group.env in refs:
            chosen.setdefault(group.algo, {})[group.env] = group
    matrices = {}
    for algo, by_env in chosen.items():
        envs = sorted(by_env)
        ordered = [np.array(by_env[env].finals)[np.argsort(by_env[env].seeds, kind="stable")] for env in envs]
        runs = min(map(len, ordered))
        scores = np.stack([refs[env].normalise(finals[:runs]) for env, finals in zip(envs, ordered, strict=True)], 1)
        matrices[algo] = ScoreMatrix(envs, scores, sum(map(len, ordered)) - scores.size)
    return matrices


def aggregate(matrices: dict[str, ScoreMatrix], reps: int = DEFAULT_REPS) -> Any:
    """Normalised IQM and median across environments with 95 % intervals, one row per algorithm (a DataFrame)."""
    import pandas as pd

    rows = []
    for algo, matrix in sorted(matrices.items(), key=lambda item: (family_of(item[0]), item[0])):
        found = estimates(matrix.scores, iqm_and_median, reps)
        row = {"algo": algo, "family": family_of(algo), "envs": ", ".join(matrix.envs), "n_envs": len(matrix.envs)}
        row |= {"runs": matrix.scores.shape[0], "dropped": matrix.dropped}
        rows.append(row | _columns("iqm", found[:, 0]) | _columns("median", found[:, 1]))
    return pd.DataFrame(rows)


def improvements(matrices: dict[str, ScoreMatrix], reps: int = DEFAULT_REPS) -> Any:
    """P(X > Y) of each lecture algorithm X over each sibling Y, on the environments both ran, with its interval.

    P(X > Y) is rliable's: per environment the probability that a seed of X scores above a seed of Y (ties count
    one half), averaged over environments; the interval resamples the seeds of X and of Y independently within
    each environment. A DataFrame, one row per pair.
    """
    import pandas as pd

    rows = []
    pairs = [(x, y) for x, siblings in SIBLINGS.items() for y in siblings if x in matrices and y in matrices]
    for ours, sibling in pairs:
        shared = [env for env in matrices[ours].envs if env in matrices[sibling].envs]
        if shared:
            x, y = matrices[ours].restrict(shared), matrices[sibling].restrict(shared)
            found = estimates([x, y], improvement_probability, reps)
            row = {"algo": ours, "sibling": sibling, "envs": ", ".join(shared), "runs": x.shape[0]}
            rows.append(row | {"sibling_runs": y.shape[0]} | _columns("probability", found[:, 0]))
    return pd.DataFrame(rows)


def sibling_gains(groups: list[Group], refs: dict[str, Reference], reps: int = DEFAULT_REPS) -> Any:
    """Each lecture algorithm's gain over the random policy as a fraction of its sibling's, per environment.

    ``(IQM(ours) − random) / (IQM(sibling) − random)`` over seeds at the same budget, with a 95 % interval that
    resamples the seeds of each side independently. Where the sibling gains less than 1 % of the environment's
    return range over random, the fraction is NaN: there is no gain to compare with. A resample in which the
    sibling's gain falls below that floor divides by the floor, so a sibling whose seeds gain little widens the
    interval rather than voiding it. A DataFrame, one row per pair.
    """
    import pandas as pd

    found = {(group.env, group.algo): group for group in groups if group.finals and group.env in refs}
    rows = []
    for (env, ours), group in found.items():
        for other in (found[env, sibling] for sibling in SIBLINGS.get(ours, ()) if (env, sibling) in found):
            random = refs[env].random
            low, high = return_range(env, np.array(group.finals + other.finals + [random, refs[env].value]))
            floor = 0.01 * (high - low)

            def fraction(x: np.ndarray, y: np.ndarray, random: float = random, floor: float = floor) -> np.ndarray:
                return (column_iqm(x) - random) / np.maximum(column_iqm(y) - random, floor)

            x, y = np.array(group.finals)[:, None], np.array(other.finals)[:, None]
            row = {"env": env, "algo": ours, "sibling": other.algo, "timesteps": group.timesteps}
            row |= {"seeds": f"{len(x)}/{len(y)}", "iqm": column_iqm(x)[0], "sibling_iqm": column_iqm(y)[0]}
            no_gain = column_iqm(y)[0] - random <= floor
            fractions = np.full(3, np.nan) if no_gain else estimates([x, y], fraction, reps)[:, 0]
            rows.append(row | {"random": random} | _columns("fraction", fractions))
    return pd.DataFrame(rows)


def performance_profiles(
    matrices: dict[str, ScoreMatrix], reps: int = DEFAULT_REPS
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fraction of runs with a normalised score above each τ of :data:`PROFILE_TAUS`, per algorithm, with 95 %
    intervals (rliable's score distributions)."""
    from rliable import library

    scores = {algo: matrix.scores for algo, matrix in matrices.items()}
    with seeded_bootstrap():
        found = library.create_performance_profile(scores, PROFILE_TAUS, reps=reps, confidence_interval_size=CONFIDENCE)
    return found  # type: ignore[no-any-return]


def curve_matrix(curves: list[list[tuple[float, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Seeds' evaluation curves on a common grid (the shortest curve's steps, others interpolated).

    :return: the grid and the returns, ``seeds × points``
    """
    grid = np.array([steps for steps, _ in min(curves, key=len)], dtype=float)
    values = np.array([np.interp(grid, [s for s, _ in curve], [v for _, v in curve]) for curve in curves])
    return grid, values


def curve_iqm(
    curves: list[list[tuple[float, float]]], bounds: tuple[float, float], reps: int = DEFAULT_REPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IQM over seeds at each evaluation point with its 95 % interval, clipped to ``bounds``.

    Each point is a column of the stratified bootstrap (resampled on its own, as in rliable's sample-efficiency
    curves).

    :param curves: each seed's ``(steps, mean return)`` points
    :param bounds: the returns an episode can reach (:func:`.baselines.return_range`)
    :return: steps, IQM, lower and upper bound of the interval
    """
    grid, values = curve_matrix(curves)
    return grid, *np.clip(estimates(values, column_iqm, reps), *bounds)


def ratio_interval(ours: list[float], theirs: list[float], reps: int = DEFAULT_REPS) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the speed ratio ``median(ours) / median(theirs)``.

    Entry ``k`` of both lists is the steps/s of round ``k`` of the interleaved repeats (:mod:`.speed`), timed one
    after the other in one process. The bootstrap resamples whole rounds, the pair of a round together, and computes
    the same ratio of medians as the reported point: a change of load on the machine that slowed one round slowed
    both contestants of it, and resampling the two lists independently would count that shared noise as a
    difference between them. The generator is seeded (:data:`BOOTSTRAP_SEED`), so that a report is the same each
    time it is written.

    :param ours: our algorithm's steps/s, one per round
    :param theirs: the sibling's steps/s in the same rounds
    :param reps: bootstrap replications
    :return: the lower and upper bound
    """
    from arch.bootstrap import IIDBootstrap  # rliable's bootstrap library

    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} rounds of ours against {len(theirs)} of theirs: the rates are not paired")
    rounds = IIDBootstrap(np.asarray(ours, float), np.asarray(theirs, float), seed=BOOTSTRAP_SEED)  # rows paired
    ratio = rounds.conf_int(lambda x, y: np.median(x) / np.median(y), reps, method="percentile", size=CONFIDENCE)
    return float(ratio[0, 0]), float(ratio[1, 0])

"""The benchmark's statistics (rliable) against independent computations on a fixed score table, the normalisation,
the report's tables, clipped evaluation curves and the RL Zoo log-layout export read by ``all_plots``.

No training: the score table is drawn once from a fixed generator (3 algorithms x 2 environments x 10 seeds).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rliable import metrics

from sbx_lecture.bench import baselines
from sbx_lecture.bench.baselines import RANDOM_CACHE_FILE, RETURN_RANGES, Reference, random_scores, return_range
from sbx_lecture.bench.plots import improvement_chart, interval_chart, learning_curves, profile_chart, seeds_label
from sbx_lecture.bench.report import anchors_table, markdown_report, suite_statistics
from sbx_lecture.bench.stats import (
    PROFILE_TAUS,
    column_iqm,
    curve_iqm,
    group_runs,
    improvement_probability,
    iqm_and_median,
    performance_profiles,
    ratio_interval,
)
from sbx_lecture.bench.zoo_logs import export_zoo_logs
from sbx_lecture.evaluation import Evaluations

ALGOS = ("npg", "trpo", "ppo")  # npg's sibling is trpo; ppo is nobody's sibling here
ENVS = ("CartPole-v1", "Pendulum-v1")
SEEDS = 10
#: Random-policy means written into the cache, so that no test measures them.
RANDOM = {"CartPole-v1": 20.0, "Pendulum-v1": -1200.0}
#: The normalisation references: the RL Zoo's TRPO rows marked ``reference`` in published_results.yml.
REFERENCE = {"CartPole-v1": 500.0, "Pendulum-v1": -174.6}
REPS = 4000


def score_table() -> dict[tuple[str, str], np.ndarray]:
    """(algo, env) -> 10 final returns, from a fixed generator; npg better than trpo, with a few ties."""
    rng = np.random.default_rng(20260101)
    table = {}
    for shift, algo in zip((0.15, 0.0, -0.1), ALGOS, strict=True):
        for env in ENVS:
            level = np.clip(rng.beta(4, 3, SEEDS) + shift, 0.0, 1.0)
            table[algo, env] = np.round(RANDOM[env] + level * (REFERENCE[env] - RANDOM[env]), 0)
    return table


def results_of(table: dict[tuple[str, str], np.ndarray], folder: Path | None = None) -> list[dict]:
    """Run results as the runner writes them; with ``folder``, each run also gets an ``evaluations.npz``."""
    results = []
    for (algo, env), finals in table.items():
        for seed, final in enumerate(finals):
            curve = [
                (0, float(RANDOM[env]), 0.0),
                (500, float(final) / 2 + RANDOM[env] / 2, 1.0),
                (1000, float(final), 2.0),
            ]
            result = {
                "kind": "run",
                "status": "done",
                "algo": algo,
                "env": env,
                "seed": seed,
                "family": algo,
                "timesteps": 1000,
                "final_mean": float(final),
                "final_std": 2.0,
                "final_episodes": 4,
                "steps_per_second": 100.0,
                "curve": [list(point) for point in curve],
            }
            if folder is not None:
                run_dir = folder / "runs" / algo / env / f"seed_{seed}"
                run_dir.mkdir(parents=True)
                evaluations = Evaluations()
                for steps, mean, _ in curve[:-1]:
                    evaluations.add(steps, [mean - 1.0, mean + 1.0], [10, 10])
                evaluations.add(
                    1000, [float(final) - 1.0, float(final) + 1.0, float(final) - 0.5, float(final) + 0.5], [10] * 4
                )  # the final evaluation has more episodes
                evaluations.save(run_dir / "evaluations.npz")
                result["folder"] = str(run_dir)
            results.append(result)
    return results


@pytest.fixture()
def report_dir(tmp_path: Path) -> Path:
    """A report folder whose random-policy cache already holds :data:`RANDOM`."""
    cache = {env: {"episodes": 3, "returns": [value, value, value]} for env, value in RANDOM.items()}
    (tmp_path / RANDOM_CACHE_FILE).write_text(json.dumps(cache))
    return tmp_path


@pytest.fixture()
def stats(report_dir: Path):
    return suite_statistics(results_of(score_table()), report_dir, reps=REPS, random_episodes=3)


# --- independent computations: plain numpy ------------------------------------------------------------------------


def numpy_iqm(values: np.ndarray) -> float:
    ordered = np.sort(np.ravel(values))
    cut = len(ordered) // 4
    return float(np.mean(ordered[cut : len(ordered) - cut]))


def pairwise_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over environments of P(x > y) + P(x = y) / 2 over all seed pairs, counted one by one."""
    per_env = []
    for task in range(x.shape[1]):
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x[:, task] for b in y[:, task])
        per_env.append(wins / (x.shape[0] * y.shape[0]))
    return float(np.mean(per_env))


def bootstrap_distribution(samples: list[np.ndarray], statistic, reps: int, seed: int = 7) -> np.ndarray:
    """``statistic(*resampled)`` over ``reps`` replications; each sample (seeds x environments) is resampled by
    drawing seeds with replacement within each environment, independently per environment and per sample."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(reps):
        resampled = []
        for sample in samples:
            rows = rng.integers(0, sample.shape[0], size=sample.shape)
            resampled.append(np.take_along_axis(sample, rows, axis=0))
        values.append(statistic(*resampled))
    return np.array(values)


def normalised(algo: str) -> np.ndarray:
    table = score_table()
    return np.stack([(table[algo, env] - RANDOM[env]) / (REFERENCE[env] - RANDOM[env]) for env in sorted(ENVS)], axis=1)


def assert_within_bootstrap_noise(found: tuple[float, float], distribution: np.ndarray) -> None:
    """``found`` is a 95 % percentile interval of ``distribution`` up to Monte-Carlo noise.

    Compared in probability: the lower bound must sit at the 2.5 % level of the independent bootstrap's
    distribution, the upper at 97.5 % (``P(T < bound) <= level + tol <= P(T <= bound) + 2 tol``). Statistics of ten
    seeds, the median above all, have atoms, so bounds can jump between neighbouring values while their level
    stays put. With 4000 replications on each side the level's noise is about 0.004; ``tol`` = 0.012. A 90 %
    interval (levels 5 % and 95 %) fails.
    """
    tolerance = 0.012
    for bound, level in zip(found, (0.025, 0.975), strict=True):
        below, at_most = np.mean(distribution < bound), np.mean(distribution <= bound)
        assert below <= level + tolerance and at_most >= level - tolerance, (bound, level, below, at_most)


# --- point estimates ----------------------------------------------------------------------------------------------


def test_per_environment_iqm_and_median_equal_numpy(stats):
    table = score_table()
    assert len(stats.per_env) == len(table)
    for row in stats.per_env.itertuples():
        finals = table[row.algo, row.env]
        assert row.seeds == SEEDS
        assert row.iqm == pytest.approx(numpy_iqm(finals), rel=1e-12)
        assert row.median == pytest.approx(float(np.median(finals)), rel=1e-12)
        assert row.iqm != pytest.approx(float(np.mean(finals)), rel=1e-6)  # the IQM is not the mean here


def test_aggregate_iqm_and_median_equal_numpy_on_normalised_scores(stats):
    rows = {row.algo: row for row in stats.aggregate.itertuples()}
    assert set(rows) == set(ALGOS)
    for algo in ALGOS:
        scores = normalised(algo)
        assert rows[algo].runs == SEEDS and rows[algo].n_envs == 2
        assert rows[algo].iqm == pytest.approx(numpy_iqm(scores), rel=1e-12)
        assert rows[algo].median == pytest.approx(float(np.median(scores.mean(axis=0))), rel=1e-12)


def test_probability_of_improvement_equals_the_pairwise_count(stats):
    (row,) = stats.improvements.itertuples()  # npg over trpo: the only lecture/sibling pair in the table
    assert (row.algo, row.sibling, row.envs) == ("npg", "trpo", "CartPole-v1, Pendulum-v1")
    expected = pairwise_improvement(normalised("npg"), normalised("trpo"))
    assert row.probability == pytest.approx(expected, rel=1e-12)
    assert row.probability > 0.5


def test_vectorised_statistics_equal_rliable_metrics():
    # The bootstrap evaluates these instead of rliable.metrics for speed: they must be the same numbers.
    rng = np.random.default_rng(3)
    for runs, tasks in ((10, 1), (10, 4), (7, 3), (3, 2), (1, 1)):
        scores = np.round(rng.normal(size=(runs, tasks)), 1)  # rounded: ties
        other = np.round(rng.normal(size=(runs + 2, tasks)), 1)
        assert column_iqm(scores.reshape(-1))[()] == pytest.approx(metrics.aggregate_iqm(scores), rel=1e-12)
        assert iqm_and_median(scores) == pytest.approx(
            [metrics.aggregate_iqm(scores), metrics.aggregate_median(scores)], rel=1e-12
        )
        for task in range(tasks):
            assert column_iqm(scores)[task] == pytest.approx(metrics.aggregate_iqm(scores[:, [task]]), rel=1e-12)
        assert improvement_probability(scores, other)[0] == pytest.approx(
            metrics.probability_of_improvement(scores, other), rel=1e-12
        )
        assert improvement_probability(scores, scores)[0] == pytest.approx(0.5)


# --- intervals: within bootstrap noise of an independent stratified percentile bootstrap -------------------------


def test_per_environment_intervals_match_an_independent_bootstrap(stats):
    table = score_table()
    for row in stats.per_env.itertuples():
        finals = table[row.algo, row.env][:, None]
        assert_within_bootstrap_noise((row.iqm_low, row.iqm_high), bootstrap_distribution([finals], numpy_iqm, REPS))
        assert_within_bootstrap_noise(
            (row.median_low, row.median_high), bootstrap_distribution([finals], lambda s: float(np.median(s)), REPS)
        )
        assert row.iqm_low <= row.iqm <= row.iqm_high


def test_aggregate_intervals_match_an_independent_stratified_bootstrap(stats):
    for row in stats.aggregate.itertuples():
        scores = normalised(row.algo)
        assert_within_bootstrap_noise((row.iqm_low, row.iqm_high), bootstrap_distribution([scores], numpy_iqm, REPS))
        assert_within_bootstrap_noise(
            (row.median_low, row.median_high),
            bootstrap_distribution([scores], lambda s: float(np.median(s.mean(axis=0))), REPS),
        )


def test_improvement_interval_matches_an_independent_bootstrap(stats):
    (row,) = stats.improvements.itertuples()
    distribution = bootstrap_distribution([normalised("npg"), normalised("trpo")], pairwise_improvement_fast, REPS)
    assert_within_bootstrap_noise((row.probability_low, row.probability_high), distribution)


def pairwise_improvement_fast(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`pairwise_improvement` with numpy (the bootstrap calls it 4000 times)."""
    return float(np.mean((x[:, None, :] > y[None, :, :]) + 0.5 * (x[:, None, :] == y[None, :, :])))


def test_a_speed_ratio_interval_resamples_rounds_and_is_the_same_each_time():
    """Load shared by both contestants of a round leaves the paired interval alone; the interval brackets the ratio of
    the medians, comes from a seeded generator, and widens with noise that is not shared."""
    load = np.array([1.0, 0.6, 1.3, 0.8, 1.1, 0.7])  # the machine's speed in each round
    assert ratio_interval(list(110 * load), list(100 * load)) == pytest.approx((1.1, 1.1))
    rng = np.random.default_rng(3)
    ours, theirs = list(110 * load * rng.uniform(0.9, 1.1, 6)), list(100 * load * rng.uniform(0.9, 1.1, 6))
    low, high = ratio_interval(ours, theirs)
    assert low <= np.median(ours) / np.median(theirs) <= high and high - low > 0.01
    assert ratio_interval(ours, theirs) == (low, high)
    with pytest.raises(ValueError, match="not paired"):
        ratio_interval(ours, theirs[:5])


def test_performance_profiles_are_the_fraction_of_runs_above_each_threshold(stats):
    profiles, intervals = performance_profiles(stats.matrices, reps=200)
    for algo in ALGOS:
        expected = [np.mean(normalised(algo) > tau) for tau in PROFILE_TAUS]
        assert profiles[algo] == pytest.approx(expected)
        assert np.all(intervals[algo][0] <= np.asarray(expected) + 1e-12)
        assert np.all(np.asarray(expected) <= intervals[algo][1] + 1e-12)


def test_a_report_is_the_same_each_time_it_is_written(report_dir):
    results = results_of(score_table())
    first = suite_statistics(results, report_dir, reps=300, random_episodes=3)
    second = suite_statistics(results, report_dir, reps=300, random_episodes=3)
    assert first.per_env.equals(second.per_env) and first.aggregate.equals(second.aggregate)
    state = np.random.get_state()[1].copy()
    suite_statistics(results, report_dir, reps=10, random_episodes=3)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is left as it was


# --- normalisation ------------------------------------------------------------------------------------------------


def test_normalisation_uses_the_random_policy_and_the_cited_reference_without_clipping(stats):
    refs = stats.references
    source = "rl-zoo benchmark.md: trpo at 100,000 steps"
    assert refs["CartPole-v1"] == Reference("CartPole-v1", 20.0, 500.0, source, False)
    assert refs["Pendulum-v1"].random == -1200.0 and refs["Pendulum-v1"].value == -174.6
    assert "trpo at 100,000 steps" in refs["Pendulum-v1"].source
    assert np.allclose(stats.matrices["ppo"].scores, normalised("ppo"))
    above = refs["Pendulum-v1"].normalise(np.array([-150.0]))  # better than the reference: above 1, kept
    assert above[0] == pytest.approx(1050.0 / 1025.4)


def test_every_task_has_one_cited_reference_by_the_stated_rule():
    cited = [figure for figure in baselines.PUBLISHED_FIGURES if figure.reference]
    by_task = {figure.env: (figure.source_key, figure.algo, figure.mean) for figure in cited}
    assert len(by_task) == len(cited)  # one a task
    assert by_task == {
        "CartPole-v1": ("rl-zoo", "trpo", 500.0),
        "Acrobot-v1": ("rl-zoo", "trpo", -83.114),
        "Pendulum-v1": ("rl-zoo", "trpo", -174.6),
        "MountainCarContinuous-v0": ("rl-zoo", "trpo", 92.5),
        "HalfCheetah": ("tianshou", "trpo", 4471.2),  # the zoo's single run (1 785.5) lies far below
        "Hopper": ("rl-zoo", "trpo", 3618.4),
        "Walker2d": ("rl-zoo", "trpo", 4933.1),
    }


def test_published_results_hold_every_row_of_the_reference_csv():
    csv = Path(__file__).resolve().parents[1] / baselines.PUBLISHED_SOURCE
    if not csv.exists():
        pytest.skip(f"{csv} is not beside this checkout")
    rows = pd.read_csv(csv, keep_default_na=False).to_dict("records")
    figures = baselines.PUBLISHED_FIGURES
    assert len(figures) == len(rows)
    for row, figure in zip(rows, figures, strict=True):
        std = float(row["std_return"]) if row["std_return"] != "" else None
        assert (figure.source, figure.algo, figure.env, figure.env_version_note, figure.notes) == (
            row["source"],
            row["algo"],
            row["env"],
            row["env_version_note"],
            row["notes"],
        )
        assert (figure.timesteps, figure.mean, figure.std) == (row["timesteps"], float(row["mean_return"]), std)


@pytest.mark.parametrize(
    ("env_id", "value", "source", "measured"),
    [
        ("InvertedPendulum-v5", 1000.0, "maximum possible return", False),
        ("Swimmer-v5", -80.0, "**no cited reference**; measured in this suite: trpo", True),
    ],
)
def test_task_without_cited_reference_uses_its_maximum_else_the_best_measured(
    report_dir, env_id, value, source, measured
):
    results = [
        {
            "kind": "run",
            "status": "done",
            "algo": algo,
            "env": env_id,
            "seed": seed,
            "family": algo,
            "timesteps": 1000,
            "final_mean": final,
            "final_std": 0.0,
            "steps_per_second": 1.0,
        }
        for algo, finals in (("npg", (-100.0, -90.0)), ("trpo", (-120.0, -80.0)))
        for seed, final in enumerate(finals)
    ]
    cache = json.loads((report_dir / RANDOM_CACHE_FILE).read_text())
    cache[env_id] = {"episodes": 3, "returns": [-500.0] * 3}
    (report_dir / RANDOM_CACHE_FILE).write_text(json.dumps(cache))
    found = suite_statistics(results, report_dir, reps=50, random_episodes=3)
    reference = found.references[env_id]
    assert (reference.random, reference.value, reference.measured) == (-500.0, value, measured)
    text = markdown_report("t", "d", results, [], report_dir, found)
    assert f"| {env_id} | -500.0 | {value:.1f} | {source} |" in text


def test_random_policy_returns_are_measured_once_and_cached(tmp_path, monkeypatch):
    returns = baselines.random_rollout("CartPole-v1", 1, seed=1, episodes=4)[0]
    assert len(returns) == 4 and all(5 <= value <= 500 and value == int(value) for value in returns)
    assert returns == baselines.random_rollout("CartPole-v1", 1, seed=1, episodes=4)[0]
    first = random_scores(["CartPole-v1"], tmp_path, episodes=4)
    monkeypatch.setattr(baselines, "random_rollout", lambda *args, **kwargs: pytest.fail("measured again"))
    assert random_scores(["CartPole-v1"], tmp_path, episodes=4) == first


# --- the report and the curves ------------------------------------------------------------------------------------


def test_report_holds_the_tables(stats, report_dir):
    text = markdown_report("fixed", "a fixed table", results_of(score_table()), [], report_dir, stats)
    row = next(r for r in stats.per_env.itertuples() if r.algo == "npg" and r.env == "CartPole-v1")
    assert (
        f"| CartPole-v1 | npg | npg | 1,000 | 10 | {row.iqm:.1f} [{row.iqm_low:.1f}, {row.iqm_high:.1f}] | "
        f"{row.median:.1f} [{row.median_low:.1f}, {row.median_high:.1f}] |"
    ) in text
    assert "| environment | family | algorithm | budget | seeds | IQM [95% CI] | median [95% CI] |" in text
    assert "../shared/reference/published_results.csv" in text and "/work/" not in text
    assert "| CartPole-v1 | 20.0 | 500.0 | rl-zoo benchmark.md: trpo at 100,000 steps |" in text
    aggregate = next(r for r in stats.aggregate.itertuples() if r.algo == "ppo")
    assert (
        f"| ppo | proximal | CartPole-v1, Pendulum-v1 | 10 | {aggregate.iqm:.2f} [{aggregate.iqm_low:.2f}, "
        f"{aggregate.iqm_high:.2f}] |"
    ) in text
    improvement = stats.improvements.iloc[0]
    assert (
        f"| npg | trpo | CartPole-v1, Pendulum-v1 | 10 / 10 | {improvement.probability:.2f} "
        f"[{improvement.probability_low:.2f}, {improvement.probability_high:.2f}] |"
    ) in text
    ours = text.split("## Published figures")[0] + text.split("## Normalised scores")[1]
    assert "±" not in ours  # published figures carry their std; ours are IQMs with intervals
    assert "| Pendulum-v1 | trpo | 100,000 | -174.6 ± 127.6 | rl-zoo | as ours | – |" in text  # not at our budget


def test_published_figures_stand_beside_our_iqm_at_their_budget(report_dir):
    results = [{**result, "timesteps": 100_000} for result in results_of(score_table())]
    stats = suite_statistics(results, report_dir, reps=50, random_episodes=3)
    table, sources = anchors_table(stats)
    ours = next(row for row in stats.per_env.itertuples() if row.algo == "trpo" and row.env == "Pendulum-v1")
    iqm = f"{ours.iqm:.1f} [{ours.iqm_low:.1f}, {ours.iqm_high:.1f}]"
    assert f"| Pendulum-v1 | trpo | 100,000 | -174.6 ± 127.6 | rl-zoo | as ours | {iqm} |" in table
    assert sources == {"rl-zoo"} and "| npg |" not in table  # nothing published for npg on these tasks


def test_evaluation_curves_are_iqm_with_bands_clipped_to_the_achievable_range():
    assert return_range("CartPole-v1", np.array([-3.0, 7.0])) == (0.0, 500.0)  # known bounds, not the measured
    assert RETURN_RANGES["Pendulum-v1"][0] == pytest.approx(-16.2736044 * 200)
    assert return_range("HalfCheetah-v5", np.array([-3.0, 7.0])) == (-3.0, 7.0)
    rng = np.random.default_rng(0)
    curves = [[(0.0, 20.0 + rng.normal()), (100.0, 480.0 + 40 * rng.normal()), (200.0, 520.0)] for _ in range(10)]
    steps, iqm, low, high = curve_iqm(curves, RETURN_RANGES["CartPole-v1"], reps=500)
    assert list(steps) == [0.0, 100.0, 200.0]
    values = np.array([[value for _, value in curve] for curve in curves])
    assert iqm[:2] == pytest.approx([numpy_iqm(values[:, 0]), numpy_iqm(values[:, 1])], rel=1e-12)
    assert iqm[2] == 500.0 and high[2] == 500.0  # 520 is not a CartPole return: clipped
    assert np.all(high <= 500.0) and np.all(low >= 0.0) and np.all(low <= iqm) and np.all(iqm <= high)


def test_plots_are_written(tmp_path, stats):
    images = learning_curves(group_runs(results_of(score_table())), tmp_path, "fixed", reps=50)
    assert sorted(path.name for path in images) == ["fixed_curves_CartPole-v1.png", "fixed_curves_Pendulum-v1.png"]
    images += [
        profile_chart(stats.matrices, tmp_path, "fixed", reps=50),
        interval_chart(stats.aggregate, tmp_path, "fixed"),
        improvement_chart(stats.improvements, tmp_path, "fixed"),
    ]
    assert [path.name for path in images[2:]] == [
        "fixed_performance_profiles.png",
        "fixed_aggregate.png",
        "fixed_probability_of_improvement.png",
    ]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in images)


def test_curve_legends_name_the_seeds_they_stand_on(tmp_path, monkeypatch):
    """A figure states its seeds: held-out curves read "seeds 5-9", not just a count."""
    assert [seeds_label(seeds) for seeds in ([3], [9, 5, 6, 7, 8], [0, 2, 7])] == [
        "seed 3",
        "seeds 5-9",
        "seeds 0, 2, 7",
    ]
    legends: list[str] = []
    import matplotlib.axes

    original = matplotlib.axes.Axes.legend

    def record(axis, *args, **kwargs):
        legends.extend(text.get_label() for text in axis.get_lines())
        return original(axis, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", record)
    groups = group_runs(results_of(score_table()))
    learning_curves(groups, tmp_path, "fixed", reps=50)
    assert {f"{group.algo} ({seeds_label(group.seeds)})" for group in groups} <= set(legends)


# --- the RL Zoo's log layout --------------------------------------------------------------------------------------


def test_all_plots_and_plot_from_file_read_the_zoo_layout_export(tmp_path):
    table = score_table()
    target = export_zoo_logs(results_of(table, tmp_path), tmp_path / "report")
    assert target == tmp_path / "report" / "zoo_logs"
    assert sorted(p.name for p in (target / "npg").iterdir())[:3] == [
        "CartPole-v1_1",
        "CartPole-v1_10",
        "CartPole-v1_2",
    ]
    environment = {**os.environ, "MPLBACKEND": "Agg"}
    output = tmp_path / "post"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_zoo3.plots.all_plots",
            "-a",
            "npg",
            "trpo",
            "-e",
            "CartPole-v1",
            "Pendulum-v1",
            "-f",
            str(target),
            "-l",
            "ours",
            "-o",
            str(output),
            "--no-display",
            "--no-million",
        ],
        check=True,
        capture_output=True,
        env=environment,
        cwd=tmp_path,
    )
    with open(f"{output}.pkl", "rb") as handle:
        post = pickle.load(handle)
    for algo in ("npg", "trpo"):
        for env in ENVS:
            found = post[env][f"{algo.upper()}-ours"]
            assert list(found["timesteps"]) == [0, 500, 1000]
            assert sorted(found["last_evals"]) == pytest.approx(sorted(table[algo, env]))  # our final returns
    figure = tmp_path / "figure.png"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_zoo3.plots.plot_from_file",
            "-i",
            f"{output}.pkl",
            "-o",
            str(figure),
            "--format",
            "png",
        ],
        check=True,
        capture_output=True,
        env=environment,
        cwd=tmp_path,
    )
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_missing_statistics_packages_are_one_line_before_any_training(tmp_path, monkeypatch, capsys):
    import importlib.util

    from sbx_lecture.bench import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rliable" else real(name, *a))
    assert main(["smoke", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "sbx-lecture bench: error: the report's statistics need rliable: pip install 'sbx-lecture[bench]'"
    assert not (tmp_path / "runs").exists()

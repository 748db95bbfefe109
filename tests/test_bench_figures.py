"""The benchmark figures that are not training runs (sbx_lecture.bench.figures), as suite entries the command draws.

Tiny budgets: a few hundred bandit steps, a 64-state batch on CartPole-v1, 600 multi-goal steps.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml

from sbx_lecture.bench import main
from sbx_lecture.bench.figures import FIGURES, IMAGE_FILE
from sbx_lecture.bench.harness import execute
from sbx_lecture.bench.speed import interleaved_samples
from sbx_lecture.bench.suites import SUITES, FigureJob, Selection, expand, load_suite_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_FISHER = {"env": "CartPole-v1", "batch_size": 64, "repeats": 3}


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path


def test_builtin_figures_exist_and_take_their_parameters():
    figures = SUITES["figures"].figures
    assert {figure.name for figure in figures} == set(FIGURES)
    for figure in figures:
        inspect.signature(FIGURES[figure.name]).bind(Path("."), **figure.params)


def test_interleaved_samples_alternate_the_order():
    calls: list[str] = []
    samples = interleaved_samples([lambda k: calls.append(f"a{k}") or 1.0, lambda k: calls.append(f"b{k}") or 2.0], 3)
    assert calls == ["a0", "b0", "b1", "a1", "a2", "b2"]  # each measure is told its round
    assert samples == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]


def test_figure_jobs_are_filtered_and_scaled_like_runs():
    suite = SUITES["figures"]
    (bandit,) = expand(suite, Selection(algos=frozenset({"dpg"}), timesteps_scale=0.1))
    assert isinstance(bandit, FigureJob) and bandit.name == "dpg_bandit"
    assert bandit.params["timesteps"] == 1_000 and bandit.params["dims"] == [10, 25, 50]
    assert bandit.folder.parts[:2] == ("figures", "dpg_bandit")
    (fisher,) = expand(suite, Selection(envs=frozenset({"HalfCheetah-v5"})))
    assert fisher.name == "fisher_product"  # type: ignore[union-attr]
    assert expand(suite, Selection(algos=frozenset({"ppo"}))) == []


def test_dpg_beats_a2c_on_the_bandit_and_the_figure_is_written(tmp_path):
    job = FigureJob("dpg_bandit", {"dims": [25], "seeds": 1, "timesteps": 600, "a2c_learning_rates": [0.03]})
    result = execute(job, tmp_path)
    assert result["status"] == "done", result
    (row,) = result["rows"]
    assert row["m"] == 25 and row["a2c_learning_rate"] == 0.03
    assert row["dpg_final_cost"] < row["initial_cost"] / 5
    assert row["dpg_final_cost"] < row["a2c_final_cost"] / 3, row  # 20 against 182 at seed 0
    assert_png(tmp_path / job.folder / IMAGE_FILE)
    assert json.loads((tmp_path / job.folder / "result.json").read_text())["rows"][0]["m"] == 25


def test_fisher_product_timing_gives_positive_times_and_their_ratio(tmp_path):
    job = FigureJob("fisher_product", TINY_FISHER)
    result = execute(job, tmp_path)
    assert result["status"] == "done", result
    assert result["ours_seconds"] > 0 and result["trpo_seconds"] > 0
    assert result["ratio"] == pytest.approx(result["ours_seconds"] / result["trpo_seconds"])
    assert len(result["ours_samples"]) == len(result["trpo_samples"]) == 3
    assert result["relative_difference"] < 1e-4  # both compute the same product
    assert "ratio" in result["summary"]
    assert_png(tmp_path / job.folder / IMAGE_FILE)


def test_multigoal_figure_is_written(tmp_path):
    job = FigureJob("sql_multigoal", {"timesteps": 600, "episodes": 3})
    result = execute(job, tmp_path)
    assert result["status"] == "done", result
    assert len(result["goal_counts"]) == 4 and sum(result["goal_counts"]) + result["no_goal"] == 3
    assert_png(tmp_path / job.folder / IMAGE_FILE)


def test_a_failing_figure_is_reported_in_one_line(tmp_path):
    job = FigureJob("fisher_product", {**TINY_FISHER, "env": "NoSuchEnv-v0"})
    result = execute(job, tmp_path)
    assert result["status"] == "failed" and "NoSuchEnv-v0" in result["error"] and "\n" not in result["error"]
    assert not (tmp_path / job.folder / "result.json").exists()


def test_a_figure_suite_is_drawn_by_the_command_reported_and_skipped(tmp_path, capsys):
    suite_file = tmp_path / "figs.yml"
    suite_file.write_text(
        yaml.safe_dump(
            {
                "name": "figs",
                "figures": [
                    {"name": "fisher_product", "params": TINY_FISHER, "algos": ["npg", "trpo"], "env": "CartPole-v1"}
                ],
            }
        )
    )
    out = tmp_path / "out"
    assert main([str(suite_file), "--out", str(out), "--plain"]) == 0
    (job,) = expand(load_suite_file(suite_file), Selection())
    folder = out / job.folder  # type: ignore[union-attr]
    assert json.loads((folder / "result.json").read_text())["kind"] == "figure"
    report = (out / "figs" / "report.md").read_text()
    assert "## Figures" in report and "](fisher_product.png)" in report
    assert_png(out / "figs" / "fisher_product.png")  # copied beside the suite's other plots
    first = (folder / "result.json").read_text()
    capsys.readouterr()
    assert main([str(suite_file), "--out", str(out), "--plain"]) == 0
    assert "figure fisher_product: skipped: " in capsys.readouterr().out
    assert (folder / "result.json").read_text() == first


def test_unknown_figure_in_a_suite_file_is_one_line(tmp_path, capsys):
    suite_file = tmp_path / "bad.yml"
    suite_file.write_text(yaml.safe_dump({"figures": [{"name": "no_such_figure"}]}))
    assert main([str(suite_file), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "suite 'bad': unknown figure no_such_figure; choose from dpg_bandit" in error and error.count("\n") == 1


def test_the_speed_suite_holds_the_dpg_variants_and_their_settings_pass_the_zoo_checks():
    from sbx_lecture.infra.validation import InvalidValueError
    from sbx_lecture.zoo_config import zoo_settings

    dpg_rows = [entry for entry in SUITES["speed"].speed_entries if entry.ours == "dpg" and entry.sibling == "td3"]
    variants = [entry.hyperparams for entry in dpg_rows]
    assert {} in variants and any(row.get("critic") == "compatible" for row in variants)
    assert any("buffer_size" in row and row.get("critic") is None for row in variants)  # mlp critic, online
    assert any(row.get("policy_kwargs", {}).get("optimizer_kwargs") == {"fused": True} for row in variants)
    for row in variants:  # DPG's buffer_size=None (online updates) is a setting, not a missing value
        settings = zoo_settings("dpg", "Pendulum-v1", row)
        if "buffer_size" in row:
            assert settings.kwargs["buffer_size"] is None
    with pytest.raises(InvalidValueError, match="buffer_size must be a positive integer, got 0"):
        zoo_settings("dpg", "Pendulum-v1", {"buffer_size": 0})

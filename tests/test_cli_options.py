"""The command line an SB3 / RL Zoo user expects: spaces in ``list``, ``hyperparams``, evaluation during training,
subprocess environments, a zoo hyperparameter file, ``eval --device``, normalisation statistics found wherever our
``train`` or the zoo put them, and the ``inspect`` of what a file would need."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sbx_lecture import loading
from sbx_lecture.cli import main
from sbx_lecture.plugins import get_plugin_manager

TINY_PPO = [
    "-p",
    "n_envs=1",
    "-p",
    "n_steps=64",
    "-p",
    "batch_size=32",
    "-p",
    "n_epochs=1",
    "-p",
    "policy_kwargs=dict(net_arch=[8])",
]


def test_list_check_shows_the_spaces_each_algorithm_supports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--check", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["algorithms"]}
    assert rows["dqn"]["action_spaces"] == ["Discrete"]
    assert rows["sql"]["action_spaces"] == ["Box", "Discrete"]
    assert "Dict" in rows["dpg"]["observation_spaces"] and "Dict" not in rows["crossq"]["observation_spaces"]
    assert main(["list", "--check"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "actions" in table[0] and "observations" in table[0]
    assert any(line.startswith("td3 ") and " Box " in line for line in table)


def test_plain_list_imports_no_algorithm_module() -> None:
    """Listing never imports an algorithm (the design's rule): the spaces, read from the classes, need ``--check``."""
    code = "import sys; from sbx_lecture.cli import main; main(['list']); print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules = out.splitlines()[-1]
    for module in (
        "sbx_lecture.dpg.dpg",
        "sbx_lecture.sql.sql",
        "sbx_lecture.npg.npg",
        "sbx_lecture.ppo_kl",
        "sb3_contrib",
    ):
        assert f"'{module}'" not in modules


def test_declared_spaces_are_the_ones_the_classes_support() -> None:
    """What ``list`` shows without importing anything is what the classes do (probed by the conformance kit)."""
    from sbx_lecture.testing import supported_action_spaces

    for spec in get_plugin_manager().registry:
        if spec.action_spaces is None:
            continue
        cls = spec.load()
        probed = sorted(kind.__name__ for kind in supported_action_spaces(cls))
        assert sorted(spec.action_spaces) == probed, spec.name
        multi_input = any(alias.startswith("MultiInput") for alias in getattr(cls, "policy_aliases", {}))
        assert ("Dict" in (spec.observation_spaces or ())) == multi_input, spec.name


def test_hyperparams_lists_every_argument_with_default_and_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hyperparams", "tnpg", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["target_kl"]["default"] == "0.01" and "KL bound" in rows["target_kl"]["meaning"]
    assert rows["cg_max_steps"]["meaning"]
    assert main(["hyperparams", "sac"]) == 0
    text = capsys.readouterr().out
    assert "ent_coef" in text and "default 'auto'" in text
    assert main(["hyperparams", "nosuch"]) == 2


def test_eval_freq_keeps_evaluations_and_the_best_model(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--timesteps",
                "256",
                "--eval-freq",
                "64",
                "--eval-episodes",
                "2",
                "--out",
                "run",
                "--no-progress",
                *TINY_PPO,
            ]
        )
        == 0
    )
    with np.load(workdir / "run" / "evaluations.npz") as saved:
        assert saved["timesteps"].tolist() == [0, 64, 128, 192, 256]
        assert saved["results"].shape == (5, 2) and saved["ep_lengths"].shape == (5, 2)
    assert (workdir / "run" / "best_model.zip").exists()
    capsys.readouterr()
    assert main(["eval", "run/best_model.zip", "--episodes", "1"]) == 0
    assert "ppo on CartPole-v1" in capsys.readouterr().out


def test_subprocess_environments_and_a_zoo_file(workdir: Path) -> None:
    conf = workdir / "mine.yml"
    conf.write_text(
        yaml.safe_dump(
            {
                "CartPole-v1": {
                    "n_envs": 2,
                    "n_steps": 32,
                    "batch_size": 32,
                    "n_epochs": 1,
                    "policy_kwargs": "dict(net_arch=[8])",
                }
            }
        )
    )
    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--timesteps",
                "128",
                "--vec-env",
                "subproc",
                "-conf",
                str(conf),
                "--out",
                "run",
                "--no-progress",
            ]
        )
        == 0
    )
    run = json.loads((workdir / "run" / "run.json").read_text())
    assert run["hyperparams_source"].endswith("mine.yml[CartPole-v1]")
    assert run["vec_env"] == "subproc" and run["n_envs"] == 2
    assert run["hyperparams"]["policy_kwargs"] == {"net_arch": [8]}, "run.json holds typed values"
    assert len(list((workdir / "run" / "monitor" / "segment_0").glob("*.monitor.csv"))) == 2


def test_a_conf_file_without_the_section_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "other.yml").write_text(yaml.safe_dump({"Pendulum-v1": {"n_steps": 32}}))
    assert main(["train", "ppo", "CartPole-v1", "-conf", "other.yml", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no section for CartPole-v1" in err


def test_a_conf_path_that_is_a_folder_or_missing_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "folder.yml").mkdir()
    for conf, says in (("folder.yml", "is a folder, not a file"), ("missing.yml", "does not exist")):
        assert main(["train", "ppo", "CartPole-v1", "-conf", conf, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"hyperparameter file {conf} {says}: pass -conf FILE.yml" in err
    assert [path.name for path in workdir.iterdir()] == ["folder.yml"], "nothing is left behind"


def test_run_file_records_typed_hyperparameters(workdir: Path) -> None:
    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--timesteps",
                "64",
                "--out",
                "run",
                "--no-progress",
                *[value.replace("=64", "=6.4e1") for value in TINY_PPO[:-2]],  # a whole float: n_steps stays an int
                # all but its policy_kwargs, given below (a key given twice is refused)
                "-p",
                "learning_rate=lin_0.001",
                "-p",
                "policy_kwargs=dict(net_arch=[8], activation_fn=nn.ReLU)",
            ]
        )
        == 0
    )
    hyperparams = json.loads((workdir / "run" / "run.json").read_text())["hyperparams"]
    assert hyperparams["learning_rate"] == "lin_0.001"
    assert hyperparams["policy_kwargs"] == {"net_arch": [8], "activation_fn": "nn.ReLU"}
    assert hyperparams["n_steps"] == 64 and isinstance(hyperparams["n_steps"], int)
    model = loading.load(workdir / "run" / "model.zip")
    assert model.n_steps == 64 and isinstance(model.n_steps, int)


def test_eval_device_and_normalisation_found_beside_the_model(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "train",
                "ppo",
                "CartPole-v1",
                "--timesteps",
                "128",
                "--out",
                "run",
                "--no-progress",
                *TINY_PPO,
                "-p",
                "normalize=True",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", "run/model.zip", "--episodes", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "normalisation statistics: run/vecnormalize.npz" in out


def test_eval_of_a_zoo_run_uses_the_zoos_statistics_as_the_zoo_does(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zoo run with ``normalize: true`` (model ``<env>.zip`` beside ``<env>/vecnormalize.pkl``) evaluates on the
    normalised observations: the same episode returns as the zoo's own ``enjoy`` with the same seed."""
    assert (
        main(
            [
                "zoo",
                "train",
                "--algo",
                "ppo",
                "--env",
                "Acrobot-v1",
                "-n",
                "512",
                "-f",
                "logs",
                "--seed",
                "0",
                "--eval-freq",
                "-1",
                "-params",
                "n_envs:1",
                "n_steps:128",
                "batch_size:64",
                "n_epochs:1",
                "normalize:True",
            ]
        )
        == 0
    )
    run = workdir / "logs" / "ppo" / "Acrobot-v1_1"
    model_path, stats = run / "Acrobot-v1.zip", run / "Acrobot-v1" / "vecnormalize.pkl"
    assert model_path.exists() and stats.exists()
    capsys.readouterr()
    assert main(["eval", str(model_path), "Acrobot-v1", "--algo", "ppo", "--episodes", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert f"normalisation statistics: {stats}" in out
    ours = float(out.split("Acrobot-v1: ")[1].split(" ±")[0])
    # the run folder says which algorithm and environment (Acrobot-v1/args.yml): nothing to pass
    assert main(["eval", str(model_path), "--episodes", "3", "--seed", "5"]) == 0
    assert capsys.readouterr().out == out

    # the zoo's own enjoy (its own loading: our test's file), deterministic, same seed, episode returns printed
    assert (
        main(
            [
                "zoo",
                "enjoy",
                "--trusted",
                "--algo",
                "ppo",
                "--env",
                "Acrobot-v1",
                "-f",
                "logs",
                "--no-render",
                "--seed",
                "5",
                "--deterministic",
                "-n",
                "1500",
            ]
        )
        == 0
    )
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Episode Reward:")]
    zoo_returns = [float(line.split(":")[1]) for line in printed[:3]]
    assert len(zoo_returns) == 3
    assert ours == pytest.approx(float(np.mean(zoo_returns)), abs=0.01)

    # a Python tag other than the zoo's OrderedDict is refused in one line, without running it
    marker = workdir / "marker"
    (run / "Acrobot-v1" / "args.yml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["eval", str(model_path), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "args.yml: a YAML tag of a Python object needs unpickling" in err
    assert not marker.exists()


def test_eval_of_a_zoo_run_builds_its_environment_as_the_zoo_does(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zoo run whose section wraps the environment (``env_wrapper``, a class the zoo imports by name) and stacks
    frames evaluates on the same observations: the stack always, the wrapper with ``--trusted`` only."""
    wrapper = "sb3_contrib.common.wrappers.TimeFeatureWrapper"  # adds one observation feature
    section = {"policy": "MlpPolicy", "n_timesteps": 256, "n_envs": 1, "n_steps": 128, "batch_size": 64, "n_epochs": 1}
    section |= {"env_wrapper": wrapper, "frame_stack": 2}
    (workdir / "mine.yml").write_text(yaml.safe_dump({"Pendulum-v1": section}))
    arguments = ["--algo", "ppo", "--env", "Pendulum-v1", "-n", "256", "-f", "logs", "--eval-freq", "-1"]
    assert main(["zoo", "train", *arguments, "-conf", "mine.yml"]) == 0
    model_path = workdir / "logs" / "ppo" / "Pendulum-v1_1" / "Pendulum-v1.zip"
    capsys.readouterr()
    assert main(["eval", str(model_path), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"wraps its environment in {wrapper}" in err and "--trusted" in err
    assert main(["eval", str(model_path), "--episodes", "1", "--trusted"]) == 0  # (1 + 1) features, stacked twice
    assert "Pendulum-v1: " in capsys.readouterr().out


def test_inspect_names_what_would_need_trust(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "ppo", "CartPole-v1", "--timesteps", "64", "--out", "run", "--no-progress", *TINY_PPO]) == 0
    capsys.readouterr()
    assert main(["inspect", "run/model.zip", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["needs_trust"] == [] and report["metadata"]["algo"] == "ppo"


def test_a_short_off_policy_run_leaves_logs_with_content(workdir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (
        main(
            [
                "train",
                "sac",
                "Pendulum-v1",
                "--timesteps",
                "60",
                "--out",
                "run",
                "--no-progress",
                "-p",
                "learning_starts=20",
                "-p",
                "batch_size=16",
                "-p",
                "policy_kwargs=dict(net_arch=[8])",
            ]
        )
        == 0
    )
    assert len((workdir / "run" / "progress.csv").read_text().splitlines()) >= 2
    (events,) = (workdir / "run").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert "time/total_timesteps" in accumulator.Tags()["scalars"]
    # a run that records nothing after SB3's last row (here: no update at all) gets no row of total_timesteps alone
    idle = [
        "train",
        "sac",
        "Pendulum-v1",
        "--timesteps",
        "30",
        "--out",
        "idle",
        "--no-progress",
        "-p",
        "learning_starts=99",
    ]
    assert main(idle) == 0
    rows = [row for row in csv.reader((workdir / "idle" / "progress.csv").read_text().splitlines()[1:]) if row]
    assert all(sum(bool(cell) for cell in row) > 1 for row in rows), rows


def test_train_bench_and_the_zoo_bridge_read_the_same_section() -> None:
    """One reader and one section rule for ``train``, ``bench`` and the zoo bridge: the exact id; else the same task's
    newest older version (the zoo's MuJoCo sections are ``-v4``); else the zoo's own fallbacks."""
    from sbx_lecture.zoo_config import read_sections, section_for, zoo_file, zoo_settings

    pairs = [("ppo", "CartPole-v1"), ("tnpg", "Pendulum-v1"), ("sql", "CartPole-v1"), ("td3", "Pendulum-v1")]
    for algo, env_id in pairs:
        settings = zoo_settings(algo, env_id)
        path = zoo_file(algo)
        assert path is not None and settings.source.endswith(f"{path.name}[{env_id}]")
        assert section_for(read_sections(path), env_id, algo, path) == (env_id, settings.raw)
    mujoco = zoo_settings("ppo", "HalfCheetah-v5")  # rl_zoo3 names it -v4: train, bench and the bridge read that one
    assert mujoco.source.endswith("ppo.yml[HalfCheetah-v4]") and mujoco.normalize
    path = zoo_file("ppo")
    assert path is not None
    assert section_for(read_sections(path), "HalfCheetah-v5", "ppo", path) == ("HalfCheetah-v4", mujoco.raw)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["train", "--timestep", "10"], "unrecognized arguments: --timestep"),  # no prefix of --timesteps
        (["eval", "model.zip", "--episode", "3"], "unrecognized arguments: --episode"),
        (["train", "-p", "n_steps=64", "-p", "n_steps=32"], "'n_steps' is given twice"),
        (["train", "--out", ""], "argument --out: an empty path names no file or folder"),  # not the current folder
        (["train", "-conf", ""], "argument -conf/--conf-file: an empty path"),
        (["eval", ""], "argument model: an empty path"),
        (["eval", "model.zip", "--episodes", "1000000"], "--episodes must be at most 100000"),
    ],
)
def test_abbreviations_and_repeated_keys_are_refused_in_one_line(
    argv: list[str], says: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main([*argv, "--out", str(workdir / "run")] if argv[:2] == ["train", "-p"] else argv)
    except SystemExit as stop:  # argparse's own refusal
        status = stop.code
    assert status == 2 and says in capsys.readouterr().err
    assert not any(workdir.iterdir()), "nothing is left behind"

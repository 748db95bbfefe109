"""The RL Zoo bridge: every registered algorithm in rl_zoo3's train, enjoy and --optimize, with our zoo files.

The lecture's algorithms run in this process (rl_zoo3 is imported once); the third-party plugin runs in
subprocesses of ``sbx-lecture zoo``, found through a temporary distribution on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch as th
import yaml

from sbx_lecture.builtin import LECTURE_ALGORITHMS
from sbx_lecture.hookspecs import hookimpl
from sbx_lecture.hyperparams import check_hyperparameters
from sbx_lecture.plugins import PluginManager, get_plugin_manager
from sbx_lecture.zoo import ZOO_SCRIPTS, LazyAlgorithms, main, register_with_zoo
from sbx_lecture.zoo_config import read_sections

LECTURE = [row.name for row in LECTURE_ALGORITHMS]
ZOO_CONFIGS = Path(__file__).resolve().parent.parent / "zoo_configs"

#: A small environment per algorithm and the overrides that make one zoo run take a second or two.
TINY_RUNS: dict[str, tuple[str, list[str]]] = {
    "npg": ("CartPole-v1", ["n_envs:1", "n_steps:64", "batch_size:64", "n_critic_updates:1", "cg_max_steps:5"]),
    "tnpg": ("CartPole-v1", ["n_envs:1", "n_steps:64", "batch_size:64", "n_critic_updates:1", "cg_max_steps:5"]),
    "ppo_kl": ("CartPole-v1", ["n_envs:1", "n_steps:64", "batch_size:64", "n_epochs:1"]),
    "dpg": ("Pendulum-v1", ["n_envs:1", "learning_starts:32", "batch_size:32"]),
    "sql": ("CartPole-v1", ["n_envs:1", "learning_starts:32", "batch_size:32", "buffer_size:1000"]),
    "ppo": ("CartPole-v1", ["n_envs:1", "n_steps:64", "batch_size:64", "n_epochs:1"]),
}
TINY_TIMESTEPS = "128"


def _train(algo: str, log_folder: Path, *extra: str) -> list[str]:
    env_id, overrides = TINY_RUNS[algo]
    return [
        "train",
        "--algo",
        algo,
        "--env",
        env_id,
        "-n",
        TINY_TIMESTEPS,
        "-f",
        str(log_folder),
        "--seed",
        "0",
        "--eval-freq",
        "-1",
        *extra,
        "-params",
        *overrides,
    ]


def _saved_config(run: Path) -> Any:
    """The hyperparameters the zoo saved with a run (an OrderedDict, in PyYAML's python tag)."""
    return yaml.load((run / run.name.rsplit("_", 1)[0] / "config.yml").read_text(), Loader=yaml.UnsafeLoader)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("sbx-lecture zoo: error: "), err
    return err


# ---------------------------------------------------------------------------------------------------------------
# Registration with the zoo
# ---------------------------------------------------------------------------------------------------------------


def test_help_lists_the_scripts_and_every_algorithm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for script in ("train", "enjoy", "record_video", "plot_train", "plot_from_file", "all_plots"):
        assert script in ZOO_SCRIPTS
        assert f"  {script} " in out
    for name in [*LECTURE, "ppo", "trpo"]:
        assert name in out


def test_sbx_lecture_zoo_help_reaches_the_bridge(capsys: pytest.CaptureFixture[str]) -> None:
    from sbx_lecture.cli import main as cli_main

    assert cli_main(["zoo", "--help"]) == 0
    assert "record_video" in capsys.readouterr().out
    assert cli_main(["zoo", "train", "--help"]) == 0
    assert "--conf-file" in capsys.readouterr().out


def test_unknown_script_is_refused_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian", "--algo", "ppo"]) == 2
    assert "did you mean 'train'" in _error(capsys)
    assert main(["plot-train"]) == 2
    assert "'plot_train'" in _error(capsys)


def test_register_with_zoo_fills_the_tables_once_for_all_modules() -> None:
    import rl_zoo3
    import rl_zoo3.hyperparams_opt as zoo_optimization
    import rl_zoo3.utils
    from stable_baselines3 import PPO

    table = register_with_zoo()
    import rl_zoo3.enjoy
    import rl_zoo3.exp_manager
    import rl_zoo3.train

    assert register_with_zoo() is table  # idempotent
    assert isinstance(table, LazyAlgorithms)
    for module in (rl_zoo3, rl_zoo3.utils, rl_zoo3.train, rl_zoo3.enjoy, rl_zoo3.exp_manager):
        assert module.ALGOS is table
    assert set(get_plugin_manager().registry.names()) <= set(table)
    assert table["ppo"] is PPO
    for name in LECTURE:
        assert name in zoo_optimization.HYPERPARAMS_SAMPLER
        assert name in zoo_optimization.HYPERPARAMS_CONVERTER
    # SB3's algorithms keep the zoo's own samplers.
    assert zoo_optimization.HYPERPARAMS_SAMPLER["ppo"] is zoo_optimization.sample_ppo_params


class _ProbePlugin:
    """Registers an algorithm whose module does not exist: only a lookup may try to import it."""

    @hookimpl
    def register_algorithms(self, register: Any) -> None:
        register("lazyprobe", "sbx_lecture_no_such_module:Algorithm", description="never imported by listing")


def test_algorithms_are_imported_on_lookup_only_and_a_resync_drops_them() -> None:
    from sbx_lecture.registry import InvalidAlgorithmError

    manager = PluginManager(load_entry_points=False)
    assert manager.add_plugin(_ProbePlugin(), "probe")
    table = register_with_zoo(manager)
    try:
        assert "lazyprobe" in list(table)
        spec = table.spec("lazyprobe")
        assert spec is not None and not spec.is_loaded
        with pytest.raises(InvalidAlgorithmError, match="sbx_lecture_no_such_module"):
            table["lazyprobe"]
    finally:
        register_with_zoo()
    assert "lazyprobe" not in table
    assert "ppo" in table


def test_unknown_algorithm_is_refused_with_suggestions(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--algo", "tnpo", "--env", "CartPole-v1"]) == 2
    assert "'tnpg'" in _error(capsys)
    assert main(["enjoy", "--algo", "ppo_lk", "--env", "CartPole-v1"]) == 2
    assert "'ppo_kl'" in _error(capsys)
    for spelling in ("PPO-KL", "TNPG"):  # not silently another name: the zoo takes the exact name, as train does
        assert main(["train", "--algo", spelling, "--env", "CartPole-v1"]) == 2
        assert f"unknown algorithm '{spelling}'; did you mean '{spelling.lower().replace('-', '_')}'?" in _error(capsys)


@pytest.mark.parametrize("flag", ["--threads", "--workers"])
def test_zoo_counts_are_bounded(flag: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--algo", "ppo", "--env", "CartPole-v1", flag, "100000"]) == 2
    assert f"{flag} must be at most 1024, got 100000" in _error(capsys)
    assert main(["train", "--algo", "ppo", "--env", "CartPole-v1", flag, "x"]) == 2
    assert f"argument {flag}: invalid int value: 'x'" in _error(capsys)
    assert not any(workdir.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# The lecture's zoo files and samplers
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", LECTURE)
def test_zoo_file_keys_are_accepted_by_the_constructor(algo: str) -> None:
    spec = get_plugin_manager().registry.spec(algo)
    path = spec.resolve_zoo_hyperparams()
    assert path is not None, f"{algo} registers no zoo file"
    assert path.parent.name == "zoo_configs" and path.name == f"{algo}.yml"
    config = read_sections(path)
    assert config, f"{path} has no section"
    algorithm = spec.load()
    for section, hyperparams in config.items():
        check_hyperparameters(algorithm, hyperparams, f"section {section!r} of {path}")
        assert "n_timesteps" in hyperparams, f"section {section!r} of {path} sets no n_timesteps"
        policy = hyperparams.get("policy", "MlpPolicy")
        assert policy in algorithm.policy_aliases or "." in policy, f"unknown policy {policy!r} in {section!r}"


def test_every_zoo_file_belongs_to_a_registered_algorithm() -> None:
    registry = get_plugin_manager().registry
    files = sorted(ZOO_CONFIGS.glob("*.yml"))
    assert files
    for path in files:
        assert path.stem in registry, f"{path.name} names no registered algorithm"
        registered = registry.spec(path.stem).resolve_zoo_hyperparams()
        assert registered is not None and registered.resolve() == path.resolve()
        yaml.safe_load(path.read_text())


@pytest.mark.parametrize("n_actions", [0, 2], ids=["discrete", "continuous"])
@pytest.mark.parametrize("algo", LECTURE)
def test_sampler_proposes_accepted_hyperparameters_and_converts_stored_trials(algo: str, n_actions: int) -> None:
    import rl_zoo3.hyperparams_opt as zoo_optimization

    register_with_zoo()
    algorithm = get_plugin_manager().registry.get(algo)
    sampler, converter = zoo_optimization.HYPERPARAMS_SAMPLER[algo], zoo_optimization.HYPERPARAMS_CONVERTER[algo]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        hyperparams = sampler(trial, n_actions, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
        check_hyperparameters(algorithm, hyperparams, "a sampled trial")
        stored = converter(dict(trial.params))  # what the zoo rebuilds for --trial-id
        check_hyperparameters(algorithm, stored, "a stored trial")
        expected = set(hyperparams) - {"action_noise"}
        assert set(stored) - {"noise_type", "noise_std"} == expected
        assert ("action_noise" in hyperparams) == ("noise_type" in stored)
        study.tell(trial, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Train, enjoy, optimize
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", [*LECTURE, "ppo"])
def test_zoo_train_writes_a_run_that_enjoy_loads(algo: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_id = TINY_RUNS[algo][0]
    logs = workdir / "logs"
    assert main(_train(algo, logs)) == 0
    out = capsys.readouterr().out
    run = logs / algo / f"{env_id}_1"
    assert (run / f"{env_id}.zip").is_file()
    assert (run / "0.monitor.csv").is_file()
    assert (run / env_id / "config.yml").is_file()
    if algo in LECTURE:  # our zoo file, not the zoo's
        assert f"zoo_configs/{algo}.yml" in out.replace(os.sep, "/")
    else:
        assert "rl_zoo3/hyperparams/ppo.yml" in out.replace(os.sep, "/")

    enjoy = ["enjoy", "--algo", algo, "--env", env_id, "-f", str(logs), "--no-render", "-n", "20", "--seed", "0"]
    assert main(enjoy) == 0
    assert f"Loading {run / env_id}.zip" in capsys.readouterr().out


@pytest.mark.parametrize("algo", LECTURE)
def test_zoo_optimize_runs_a_trial_into_the_default_journal(algo: str, workdir: Path) -> None:
    env_id, _ = TINY_RUNS[algo]
    arguments = _train(
        algo,
        workdir / "logs",
        "-optimize",
        "--n-trials",
        "1",
        "--n-startup-trials",
        "1",
        "--n-evaluations",
        "1",
        "--eval-episodes",
        "1",
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--no-optim-plots",
    )
    assert main(arguments) == 0
    journal = workdir / "logs" / algo / f"{env_id}_optuna.log"
    assert journal.is_file()
    from sbx_lecture.zoo import open_study_storage

    # The default study name carries the budget (-n), so that another budget starts another study.
    study_name = f"{algo}_{env_id}_n{TINY_TIMESTEPS}"
    study = optuna.load_study(study_name=study_name, storage=open_study_storage(str(journal)))
    assert [trial.state for trial in study.trials] in (
        [optuna.trial.TrialState.COMPLETE],
        [optuna.trial.TrialState.PRUNED],
    )
    # The zoo's own report (study.trials_dataframe(), with pandas) lists the trial with its parameters.
    (report,) = (workdir / "logs" / algo).glob(f"report_{env_id}_*.csv")
    header, row = report.read_text().splitlines()[:2]
    assert "params_learning_rate" in header.split(",") and row.startswith("0,")


# ---------------------------------------------------------------------------------------------------------------
# User configuration files
# ---------------------------------------------------------------------------------------------------------------


def _write_conf(path: Path, **hyperparams: Any) -> Path:
    section = {"policy": "MlpPolicy", "n_timesteps": 128, "n_envs": 1, **hyperparams}
    path.write_text(yaml.safe_dump({"CartPole-v1": section}))
    return path


def test_user_conf_file_for_a_lecture_algorithm(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = _write_conf(workdir / "mine.yml", n_steps=32, batch_size=32, n_epochs=1, kl_coef=0.5, adaptive_kl=False)
    arguments = ["train", "--algo", "ppo_kl", "--env", "CartPole-v1", "-f", "logs", "--seed", "0", "-conf", str(conf)]
    assert main(arguments) == 0
    assert f"Loading hyperparameters from: {conf}" in capsys.readouterr().out
    assert dict(_saved_config(workdir / "logs/ppo_kl/CartPole-v1_1"))["kl_coef"] == 0.5


def test_unknown_key_in_user_conf_is_a_clear_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = _write_conf(workdir / "typo.yml", n_stepz=32)
    assert main(["train", "--algo", "ppo_kl", "--env", "CartPole-v1", "-conf", str(conf)]) == 2
    err = _error(capsys)
    assert "'n_stepz' is not an argument of KLPPO (did you mean 'n_steps'?)" in err
    assert "section 'CartPole-v1' of" in err and "typo.yml" in err
    assert not (workdir / "logs").exists()


def test_bad_overrides_and_missing_sections_are_clear_errors(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = _write_conf(workdir / "mine.yml")
    assert main(["train", "--algo", "ppo_kl", "--env", "Pendulum-v1", "-conf", str(conf)]) == 2
    assert "Hyperparameters not found for ppo_kl-Pendulum-v1" in _error(capsys)
    assert main(["train", "--algo", "ppo_kl", "-conf", str(conf), "-params", "klcoef:0.1"]) == 2
    assert "'klcoef' is not an argument of KLPPO (did you mean 'kl_coef'" in _error(capsys)
    assert main(["train", "--algo", "ppo_kl", "-conf", str(conf), "-params", "seed:3"]) == 2
    assert "'seed' is set on the command line (sbx-lecture zoo train --seed N)" in _error(capsys)


def test_a_command_line_key_is_refused_naming_the_option_of_the_command_in_use(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sbx_lecture.cli import main as cli_main

    assert cli_main(["train", "ppo", "CartPole-v1", "-p", "seed=3", "-p", "device=cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "'seed' is set on the command line (sbx-lecture train --seed N)" in line
    assert "'device' is set on the command line (sbx-lecture train --device cpu)" in line
    assert main(["train", "--algo", "ppo", "--env", "CartPole-v1", "-params", "tensorboard_log:'tb'"]) == 2
    assert "(sbx-lecture zoo train --tensorboard-log DIR)" in _one_line_error(capsys)


#: Hyperparameter text that runs code when rl_zoo3 evaluates it.
PAYLOAD = "__import__('os').system('touch MARK')"


@pytest.mark.parametrize("algo", ["tnpg", "ppo"])
@pytest.mark.parametrize(
    "arguments",
    [
        ["-params", f"policy_kwargs:{PAYLOAD}"],
        ["-params", f"policy_kwargs:{PAYLOAD!r}"],  # text the zoo would evaluate after parsing it
        ["--hyperparams", f"normalize:{PAYLOAD}"],
        ["--env-kwargs", f"g:{PAYLOAD}"],
        ["-conf", "payload.yml"],
    ],
    ids=["params", "quoted", "hyperparams", "env-kwargs", "conf"],
)
def test_no_code_runs_from_the_command_line_or_a_section(
    algo: str, arguments: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "payload.yml").write_text(yaml.safe_dump({"Pendulum-v1": {"n_timesteps": 64, "policy_kwargs": PAYLOAD}}))
    assert main(["train", "--algo", algo, "--env", "Pendulum-v1", "-n", "64", "-f", "logs", *arguments]) == 2
    message = _one_line_error(capsys)
    assert message.startswith(
        ("hyperparameter 'policy_kwargs': ", "hyperparameter 'normalize': ", "hyperparameter 'g': ")
    )
    assert "dict(...)" in message
    assert sorted(path.name for path in workdir.iterdir()) == ["payload.yml"]  # no MARK, no logs


def test_safe_text_keeps_working_on_the_zoo_path(workdir: Path) -> None:
    from torch import nn

    from sbx_lecture.zoo import zoo_value

    assert zoo_value("policy_kwargs", "dict(net_arch=[64, 64])") == {"net_arch": [64, 64]}
    assert zoo_value("activation_fn", "nn.Tanh") is nn.Tanh
    assert zoo_value("learning_rate", "lin_0.001") == "lin_0.001"  # the zoo builds the schedule
    assert zoo_value("policy", "MlpPolicy") == "MlpPolicy"
    safe = ["policy_kwargs:dict(net_arch=[8], activation_fn=nn.Tanh)", "learning_rate:lin_0.001"]
    assert main([*_train("tnpg", workdir / "logs"), *safe]) == 0
    saved = dict(_saved_config(workdir / "logs" / "tnpg" / "CartPole-v1_1"))
    assert saved["policy_kwargs"] == {"net_arch": [8], "activation_fn": nn.Tanh}
    assert saved["learning_rate"] == "lin_0.001"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            ["train", "--algo", "ppo", "--env", "CartPole-v1", "-params", "n_stepz:256"],
            "'n_stepz' is not an argument of PPO (did you mean 'n_steps'?)",
        ),
        (["train", "--algo", "ppo", "--env", "NoSuch-v0"], "unknown environment 'NoSuch-v0'"),
        (["train", "--algo", "ppo", "--env", "CartPole-v1", "--n-timestep", "64"], "unrecognized arguments"),
        (
            ["enjoy", "--algo", "ppo", "--env", "CartPole-v1", "-f", "/no/such/folder"],
            "The /no/such/folder/ppo folder was not found: pass -f the log folder of `sbx-lecture zoo train`",
        ),
        (["train", "--algo", "ppo", "--env", "CartPole-v1", "--device", "mps"], "SB3 trains on cpu or cuda"),
        (["train", "--algo", "tnpg", "--env", "CartPole-v1", "--device", "foo"], "--device must be auto, cpu, cuda"),
        (
            ["enjoy", "--algo", "ppo", "--env", "CartPole-v1", "--device", f"cuda:{th.cuda.device_count()}"],
            "CUDA devices; use --device cpu or auto",
        ),
    ],
    ids=[
        "unknown-key",
        "unknown-environment",
        "option-prefix",
        "no-such-folder",
        "device-mps",
        "device-unknown",
        "device-missing",
    ],
)
def test_mistakes_of_the_zoo_s_own_algorithms_are_one_line(
    arguments: list[str], expected: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(arguments) == 2
    assert expected in _one_line_error(capsys)
    assert list(workdir.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# One-line errors on the zoo path, optimization studies
# ---------------------------------------------------------------------------------------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = _error(capsys)
    assert len(err.strip().splitlines()) == 1, err
    return err.strip().removeprefix("sbx-lecture zoo: error: ")


def test_unsupported_action_space_is_the_message_of_train(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sbx_lecture.cli import main as cli_main

    assert cli_main(["train", "dpg", "CartPole-v1", "--timesteps", "64", "--out", str(workdir / "runs")]) == 2
    train_message = capsys.readouterr().err.strip().split("error: ", 1)[1]
    assert main(["train", "--algo", "dpg", "--env", "CartPole-v1", "-n", "64", "-f", str(workdir / "logs")]) == 2
    message = _one_line_error(capsys)
    assert message.startswith("algorithm 'dpg' does not support the action space Discrete(2)")
    assert message == train_message


@pytest.mark.parametrize(
    ("missing", "arguments", "expected"),
    [
        ("wandb", ["--track"], "pip install wandb"),  # the zoo's own message, in one line
        ("psycopg", ["-optimize", "--storage", "postgresql://me:hush@127.0.0.1/db"], "pip install 'sbx-lecture[zoo]'"),
        ("redis", ["-optimize", "--storage", "redis://:hush@127.0.0.1:6379/0"], "pip install 'sbx-lecture[zoo]'"),
    ],
)
def test_missing_optional_package_is_one_line_with_the_pip_install(
    missing: str,
    arguments: list[str],
    expected: str,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # importlib.util.find_spec(missing) is None now
    assert main(["train", "--algo", "tnpg", "--env", "CartPole-v1", "-n", "64", *arguments]) == 2
    message = _one_line_error(capsys)
    assert expected in message and "hush" not in message
    assert not (workdir / "logs").exists()


def test_unreachable_storage_is_one_line_without_the_password(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = "postgresql://me:hush@127.0.0.1:1/optuna"  # nothing listens on port 1
    assert main(["train", "--algo", "tnpg", "--env", "CartPole-v1", "-n", "64", "-optimize", "--storage", storage]) == 2
    message = _one_line_error(capsys)
    assert message.startswith("cannot open the Optuna storage postgresql://me:***@127.0.0.1:1/optuna: ")
    assert "hush" not in message


def test_default_study_name_carries_the_budget_and_workers_join_it(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--workers K`` checks the command line once, creates the default study (or says it joins it), then starts K
    workers with seeds of their own; the study's name carries the budget, from ``-n`` or else the section in force."""
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, env: started.append(command) or SimpleNamespace(wait=int))
    optimize = ["train", "--algo", "tnpg", "--env", "CartPole-v1", "-f", str(workdir / "logs"), "--workers", "2"]
    assert main(optimize) == 2  # without -optimize
    assert "--workers starts optimization workers: it needs -optimize" in _one_line_error(capsys)
    optimize += ["-optimize", "--seed", "3"]
    journal = workdir / "logs" / "tnpg" / "CartPole-v1_optuna.log"
    # Without -n, the budget is the n_timesteps of the section in force (zoo_configs/tnpg.yml: 1e5 on CartPole-v1).
    assert main(optimize) == 0
    out = capsys.readouterr().out
    assert f"sbx-lecture zoo: created the study 'tnpg_CartPole-v1_n100000' at {journal}" in out
    assert "sbx-lecture zoo: worker 2/2 on study 'tnpg_CartPole-v1_n100000'" in out
    assert [command[-4:] for command in started] == [
        ["--threads", "1", "--seed", "3"],
        ["--threads", "1", "--seed", "4"],
    ]
    assert main([*optimize, "-n", "5000"]) == main([*optimize, "-n", "5000"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "the study" in line or "existing study" in line]
    assert said[0] == f"sbx-lecture zoo: created the study 'tnpg_CartPole-v1_n5000' at {journal}"
    assert said[1].startswith("sbx-lecture zoo: joining the existing study 'tnpg_CartPole-v1_n5000'")
    assert "(0 trials so far)" in said[1] and "--study-name" in said[1] and len(said) == 2


# ---------------------------------------------------------------------------------------------------------------
# A third-party plugin, in subprocesses
# ---------------------------------------------------------------------------------------------------------------

FAKE_PLUGIN = '''
"""A third-party sbx-lecture plugin: SB3's PPO under another name, with its own zoo file and sampler."""
from sbx_lecture import hookimpl


def sample_myppo_params(trial, n_actions, n_envs, additional_args):
    return convert_myppo_params({"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)})


def convert_myppo_params(params):
    return dict(params)


@hookimpl
def register_algorithms(register):
    register("myppo", "stable_baselines3:PPO", description="PPO from a plugin",
             zoo_hyperparams="fake_plugin_module:myppo.yml", zoo_sampler=sample_myppo_params,
             zoo_converter=convert_myppo_params)
'''

FAKE_PLUGIN_ZOO_FILE = """
CartPole-v1:
  policy: MlpPolicy
  n_timesteps: 128
  n_envs: 1
  n_steps: 32
  batch_size: 32
  n_epochs: 1
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    info = root / "fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sbx_lecture]\nfake = fake_plugin_module\n")
    package = root / "fake_plugin_module"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_PLUGIN))
    (package / "myppo.yml").write_text(FAKE_PLUGIN_ZOO_FILE)
    return root


def _sbx_lecture(arguments: list[str], cwd: Path, plugin_path: Path) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_path), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-c", "import sys; from sbx_lecture.cli import main; sys.exit(main())", *arguments]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, check=False)


def test_third_party_plugin_trains_with_its_own_zoo_file(plugin_path: Path, tmp_path: Path) -> None:
    result = _sbx_lecture(
        ["zoo", "train", "--algo", "myppo", "--env", "CartPole-v1", "-f", "logs", "--seed", "0", "--num-threads", "1"],
        tmp_path,
        plugin_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fake_plugin_module/myppo.yml" in result.stdout.replace(os.sep, "/")
    run = tmp_path / "logs" / "myppo" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file()
    assert dict(_saved_config(run))["n_steps"] == 32


def test_two_optimize_workers_fill_one_journal_study(plugin_path: Path, tmp_path: Path) -> None:
    requested = 3
    result = _sbx_lecture(
        [
            "zoo",
            "train",
            "--algo",
            "myppo",
            "--env",
            "CartPole-v1",
            "-f",
            "logs",
            "-optimize",
            "--workers",
            "2",
            "--max-total-trials",
            str(requested),
            "--n-evaluations",
            "1",
            "--eval-episodes",
            "1",
            "--sampler",
            "random",
            "--pruner",
            "none",
            "--no-optim-plots",
            "--num-threads",
            "1",
            "--seed",
            "0",
        ],
        tmp_path,
        plugin_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "worker 1/2" in result.stdout and "worker 2/2" in result.stdout
    from sbx_lecture.zoo import open_study_storage

    storage = open_study_storage(str(tmp_path / "logs" / "myppo" / "CartPole-v1_optuna.log"))
    study = optuna.load_study(study_name="myppo_CartPole-v1_n128", storage=storage)  # n_timesteps of myppo.yml
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = [trial for trial in study.trials if trial.state in done]
    # Each worker checks the budget before it starts a trial, so a worker may start one while the other finishes.
    assert requested <= len(finished) <= requested + 1
    assert len(finished) == len(study.trials)
    # Seeds 0 and 1: the two random samplers do not propose the same learning rates.
    assert len({trial.params["learning_rate"] for trial in finished}) == len(finished)


def test_plot_train_draws_the_curve_of_a_lecture_algorithm(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    logs = workdir / "logs"
    assert main(_train("tnpg", logs)) == 0
    shown: list[int] = []
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: shown.append(len(plt.gca().lines)))
    assert main(["plot_train", "-a", "tnpg", "-e", "CartPole-v1", "-f", str(logs), "-w", "2"]) == 0
    assert shown and shown[0] >= 1, "plot_train drew no training curve"


def test_plot_from_file_and_record_training_on_one_run_per_algorithm(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = workdir / "logs"
    for algo in ("tnpg", "ppo_kl"):
        arguments = _train(algo, logs)
        evaluated = [*arguments[: arguments.index("--eval-freq")], "--eval-freq", "64", "--eval-episodes", "2",
                     *arguments[arguments.index("--eval-freq") + 2 :]]  # fmt: skip
        assert main(evaluated) == 0
    output = workdir / "cartpole"
    assert main(["all_plots", "-a", "tnpg", "ppo_kl", "-e", "CartPole-v1", "-f", str(logs), "-o", str(output),
                 "--no-display"]) == 0  # fmt: skip
    # One run per algorithm: the zoo's plot_from_file alone skips both and fails on min() of no runs.
    assert main(["plot_from_file", "-i", f"{output}.pkl", "-o", f"{output}.png", "--format", "png"]) == 0
    assert (workdir / "cartpole.png").stat().st_size > 0
    assert "Skipping" not in capsys.readouterr().out

    # record_training with no ffmpeg on PATH: the bridge lends imageio-ffmpeg's; a relative -o works too.
    import shutil

    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None if name == "ffmpeg" else which(name))
    recorded = ["record_training", "--algo", "tnpg", "--env", "CartPole-v1", "-f", str(logs), "-n", "20"]
    recorded += ["-o", "videos"]
    assert main(recorded) == 0
    assert (workdir / "videos" / "training.mp4").stat().st_size > 0


def test_push_to_hub_is_not_offered_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert "push_to_hub" not in ZOO_SCRIPTS
    assert main(["push_to_hub", "--algo", "tnpg"]) == 2
    assert "generate_metadata" in _one_line_error(capsys)


# ---------------------------------------------------------------------------------------------------------------
# The adapters of other packages, and one section rule
# ---------------------------------------------------------------------------------------------------------------

#: Every function of another package that the bridge adapts (or calls as the zoo does), with the signature its
#: adapter was written for: a new rl_zoo3, Optuna or Python that changes one fails here, not in a user's run.
ADAPTED_SIGNATURES = {
    "rl_zoo3.exp_manager:ExperimentManager.read_hyperparameters": (
        "(self) -> tuple[dict[str, typing.Any], dict[str, typing.Any]]"
    ),
    "rl_zoo3.exp_manager:ExperimentManager.setup_experiment": (
        "(self) -> tuple[stable_baselines3.common.base_class.BaseAlgorithm, dict[str, typing.Any]] | None"
    ),
    "rl_zoo3.exp_manager:ExperimentManager.create_envs": (
        "(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> "
        "stable_baselines3.common.vec_env.base_vec_env.VecEnv"
    ),
    "rl_zoo3.exp_manager:ExperimentManager.objective": "(self, trial: optuna.trial._trial.Trial) -> float",
    "rl_zoo3.exp_manager:ExperimentManager.hyperparameters_optimization": "(self) -> None",
    "rl_zoo3.utils:StoreDict.__call__": "(self, parser, namespace, values, option_string=None)",
    "rl_zoo3.utils:get_model_path": (
        "(exp_id: int, folder: str, algo: str, env_name: huggingface_sb3.naming_schemes.EnvironmentName, "
        "load_best: bool = False, load_checkpoint: str | None = None, load_last_checkpoint: bool = False) -> "
        "tuple[str, str, str]"
    ),
    "optuna.storages:get_storage": "(storage: 'None | str | BaseStorage') -> 'BaseStorage'",
    "stable_baselines3.common.vec_env:VecNormalize.load": (
        "(load_path: str, venv: stable_baselines3.common.vec_env.base_vec_env.VecEnv) -> 'VecNormalize'"
    ),
    "subprocess:call": "(*popenargs, timeout=None, **kwargs)",
    "argparse:ArgumentParser.parse_args": "(self, args=None, namespace=None)",
    "yaml:safe_load": "(stream)",
    "pickle:load": "(file, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())",
}


@pytest.mark.parametrize("target", sorted(ADAPTED_SIGNATURES))
def test_adapted_functions_keep_the_signature_their_adapter_was_written_for(target: str) -> None:
    import inspect
    import pkgutil

    register_with_zoo()  # the adapters wrap with functools.wraps: the signature shown is the original's
    function = pkgutil.resolve_name(target)
    assert str(inspect.signature(function)) == ADAPTED_SIGNATURES[target], f"{target} changed: check its adapter"


def test_the_zoo_still_names_its_reports_by_the_second_and_pickles_the_study() -> None:
    """``hyperparameters_optimization``'s adapter replaces the ``time`` and ``pkl`` of ``rl_zoo3.exp_manager`` for
    these two calls only: it fails when the zoo writes its reports otherwise."""
    import inspect

    from rl_zoo3.exp_manager import ExperimentManager

    register_with_zoo()
    source = inspect.getsource(ExperimentManager.hyperparameters_optimization.__wrapped__)
    assert source.count("time.") == source.count("int(time.time())") == 1
    assert source.count("pkl.") == source.count("pkl.dump(study, f)") == 1


def test_the_adapters_are_installed_once_and_keep_the_originals() -> None:
    import optuna
    from rl_zoo3.exp_manager import ExperimentManager

    names = ("read_hyperparameters", "setup_experiment", "objective", "hyperparameters_optimization")
    register_with_zoo()
    adapted = *(getattr(ExperimentManager, name) for name in names), optuna.storages.get_storage
    register_with_zoo()
    assert (*(getattr(ExperimentManager, name) for name in names), optuna.storages.get_storage) == adapted
    for function in adapted:
        assert not hasattr(function.__wrapped__, "__wrapped__"), "an adapter wraps another adapter"


def test_train_and_zoo_train_pick_the_same_section_of_one_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One rule: the exact id; else the same task's newest older version; else the zoo's fallbacks."""
    from sbx_lecture.zoo_config import zoo_settings

    tiny = {"policy": "MlpPolicy", "n_timesteps": 64, "n_envs": 1, "batch_size": 32, "n_epochs": 1}
    sections = {
        "CartPole-v0": {**tiny, "n_steps": 16},  # the newest older version of CartPole-v1
        "CartPole-v2": {**tiny, "n_steps": 48},  # a newer version: never read for CartPole-v1
        "atari": {**tiny, "n_steps": 24},
        "default": {**tiny, "n_steps": 32},
        "Acrobot-v1": {**tiny, "n_steps": 64},
    }
    conf = workdir / "sections.yml"
    conf.write_text(yaml.safe_dump(sections))
    for env_id, expected in (("CartPole-v1", "CartPole-v0"), ("Acrobot-v1", "Acrobot-v1"), ("Pendulum-v1", "default")):
        settings = zoo_settings("ppo_kl", env_id, conf_file=conf)  # what `sbx-lecture train -conf` (and bench) read
        assert settings.source.endswith(f"sections.yml[{expected}]")
        logs = workdir / f"logs-{env_id}"
        arguments = ["train", "--algo", "ppo_kl", "--env", env_id, "-f", str(logs), "--seed", "0", "-conf", str(conf)]
        assert main([*arguments, "--eval-freq", "-1"]) == 0
        said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Using the section")]
        assert said == ([] if expected == env_id else [f"Using the section {expected!r} of {conf} for {env_id}"])
        saved = dict(_saved_config(logs / "ppo_kl" / f"{env_id}_1"))
        assert saved["n_steps"] == settings.raw["n_steps"] == sections[expected]["n_steps"]

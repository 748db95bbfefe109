"""The ``sbx-lecture`` command: list, train end to end, resume, eval, and each bad input's clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sbx_lecture.checkpoints import newest_valid_bundle
from sbx_lecture.cli import main
from sbx_lecture.loading import read_model_metadata

TINY_TRPO = [
    "-p",
    "n_steps=128",
    "-p",
    "batch_size=64",
    "-p",
    "n_critic_updates=2",
    "-p",
    "policy_kwargs=dict(net_arch=[16])",
]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sbx-lecture: error: ")
    return lines[0]


def test_list_json_shows_plugins_and_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {row["name"]: row for row in listing["algorithms"]}
    assert by_name["tnpg"]["target"] == "sbx_lecture.npg:TNPG"
    assert by_name["trpo"]["plugin"] == "builtin"
    assert by_name["ppo"]["distribution"].startswith("sbx-lecture==")
    assert listing["failed_plugins"] == []
    assert main(["list"]) == 0
    table = capsys.readouterr().out
    assert "trpo" in table and "sb3_contrib:TRPO" in table


def test_list_reports_failed_plugins(plugin_site, capsys: pytest.CaptureFixture[str]) -> None:
    broken = {"broken_dist_module": "raise ImportError('x')"}
    plugin_site("broken-dist", "0.3", {"broken": "broken_dist_module"}, broken)
    with pytest.warns(UserWarning):
        assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "failed plugins" in out and "broken (broken-dist==0.3): ImportError: x" in out


def test_train_resume_and_eval_end_to_end(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = workdir / "run"
    args = [
        "train",
        "trpo",
        "Pendulum-v1",
        "--timesteps",
        "256",
        "--seed",
        "3",
        "--out",
        str(out),
        "--checkpoint-freq",
        "128",
        "--n-envs",
        "1",
        "--no-progress",
        *TINY_TRPO,
    ]
    assert main(args) == 0
    for name in ["model.zip", "run.json", "progress.csv", "learning_curve.png", "monitor/segment_0/0.monitor.csv"]:
        assert (out / name).exists(), name
    assert list(out.glob("events.out.tfevents.*"))
    assert newest_valid_bundle(out)[0].steps == 256
    assert read_model_metadata(out / "model.zip")["algo"] == "trpo"
    assert not list(out.rglob("*.tmp*")), "temporary files of atomic saves must not remain"

    assert (
        main(["train", "trpo", "Pendulum-v1", "--timesteps", "512", "--out", str(out), "--resume", "--no-progress"])
        == 0
    )
    assert "trained 512 steps" in capsys.readouterr().out
    assert newest_valid_bundle(out)[0].steps == 512
    assert (out / "progress.csv").exists() and (out / "progress_1.csv").exists()  # one log per segment
    episodes = [
        len((out / "monitor" / segment / "0.monitor.csv").read_text().splitlines()) - 2
        for segment in ("segment_0", "segment_1")
    ]
    assert episodes == [1, 1]  # 256 steps each: one 200-step episode per segment

    assert main(["eval", str(out / "model.zip"), "--episodes", "2"]) == 0
    evaluation = capsys.readouterr().out
    assert "trpo on Pendulum-v1:" in evaluation and "over 2 episodes" in evaluation


def test_resume_continues_replay_buffer(workdir: Path) -> None:
    out = workdir / "sac"
    tiny = [
        "-p",
        "learning_starts=50",
        "-p",
        "buffer_size=1000",
        "-p",
        "batch_size=16",
        "-p",
        "policy_kwargs=dict(net_arch=[16])",
    ]
    assert main(["train", "sac", "Pendulum-v1", "--timesteps", "100", "--out", str(out), "--no-progress", *tiny]) == 0
    assert (newest_valid_bundle(out)[0].path / "replay_buffer.npz").exists()
    from sbx_lecture import loading

    assert (
        main(["train", "sac", "Pendulum-v1", "--timesteps", "150", "--out", str(out), "--resume", "--no-progress"]) == 0
    )
    bundle = newest_valid_bundle(out)[0]
    model = loading.load(out / "model.zip")
    loading.load_replay_buffer(model, bundle.path / "replay_buffer.npz")
    assert model.num_timesteps == 150 == bundle.steps
    assert model.replay_buffer.size() == 150  # the 100 transitions of the first segment were kept


def test_default_run_folder_and_bad_out(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "40", "--no-progress"]) == 0
    assert (workdir / "runs" / "a2c_CartPole-v1_1" / "model.zip").exists()
    assert (
        main(["train", "a2c", "CartPole-v1", "--timesteps", "40", "--no-progress", "--out", "runs/a2c_CartPole-v1_1"])
        == 2
    )
    assert "not empty" in _error_line(capsys)
    assert main(["train", "a2c", "CartPole-v1", "--resume", "--out", "nowhere", "--no-progress"]) == 2
    assert "no run folder" in _error_line(capsys)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "tnpo", "Pendulum-v1"], "unknown algorithm 'tnpo'; did you mean"),
        (["train", "ppo", "Pendulm-v1"], "unknown environment 'Pendulm-v1'"),
        (
            ["train", "ppo", "CartPole-v1", "-p", "n_stepz=64"],
            "'n_stepz' is not an argument of PPO (did you mean 'n_steps'?)",
        ),
        (["train", "ppo", "CartPole-v1", "-p", "n_steps=__import__('os')"], "cannot parse"),
        (["train", "dqn", "Pendulum-v1"], "does not support the action space Box"),
        (["train", "td3", "CartPole-v1"], "does not support the action space Discrete"),
        (["eval", "missing.zip"], "does not exist"),
    ],
)
def test_bad_input_gives_one_clear_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main([*args, *(["--no-progress", "--timesteps", "10"] if args[0] == "train" else [])]) == 2
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir()), "a failed start leaves a folder"
    line = _error_line(capsys)
    assert expected in line
    if "tnpo" in args:
        assert "'tnpg'" in line and "'trpo'" in line


def test_truncated_and_corrupted_models(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "a2c", "CartPole-v1", "--timesteps", "40", "--out", "run", "--no-progress"]) == 0
    model = (workdir / "run" / "model.zip").read_bytes()
    (workdir / "truncated.zip").write_bytes(model[: len(model) // 2])
    assert main(["eval", "truncated.zip"]) == 2
    assert "truncated or corrupted" in _error_line(capsys)

    corrupted = bytearray(model)
    with zipfile.ZipFile(workdir / "run" / "model.zip") as archive:
        offset = archive.getinfo("data").header_offset + 60
    corrupted[offset : offset + 8] = b"XXXXXXXX"
    (workdir / "corrupted.zip").write_bytes(bytes(corrupted))
    assert main(["eval", "corrupted.zip"]) == 2
    assert "corrupted" in _error_line(capsys)

    (workdir / "notes.zip").write_bytes(b"")
    with zipfile.ZipFile(workdir / "notes.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert main(["eval", "notes.zip", "CartPole-v1", "--algo", "a2c"]) == 2
    assert "not a Stable-Baselines3 model" in _error_line(capsys)

    (workdir / "garbage.zip").write_bytes(b"not a zip at all")
    assert main(["eval", "garbage.zip", "CartPole-v1", "--algo", "a2c"]) == 2
    assert "truncated or corrupted (not a readable zip archive: " in _error_line(capsys)


def test_console_script_exit_status() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sbx_lecture.cli", "train", "nosuchalgo"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("sbx-lecture: error: unknown algorithm 'nosuchalgo'")
    assert "Traceback" not in result.stderr

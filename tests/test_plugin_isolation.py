"""Plugins cannot take the tool down: ``sys.exit()``, ``SystemExit``, ``KeyboardInterrupt`` at import or in the hook,
lazy targets that are not algorithms or whose module raises; ``list --check``; one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import stable_baselines3

import sbx_lecture
from sbx_lecture.cli import CHECK_FAILED_STATUS, main
from sbx_lecture.plugins import PluginLoadError, PluginManager, PluginWarning
from sbx_lecture.registry import InvalidAlgorithmError

GOOD = """
from sbx_lecture import hookimpl

@hookimpl
def register_algorithms(register):
    register("goodppo", "stable_baselines3:PPO")
"""

HOOK_RAISING = """
from sbx_lecture import hookimpl

@hookimpl
def register_algorithms(register):
    register("{name}", "stable_baselines3:PPO")
    raise {exception}
"""

LAZY_TARGETS = """
from sbx_lecture import hookimpl

@hookimpl
def register_algorithms(register):
    register("notalgo", "collections:OrderedDict")
    register("raisingmodule", "lazy_raising_module:Algo")
    register("exitingmodule", "lazy_exiting_module:Algo")
    register("missingattr", "stable_baselines3:NoSuchAlgorithm")
    register("badsampler", "stable_baselines3:A2C", zoo_sampler="lazy_raising_module:sample")
    register("fineppo", "stable_baselines3:PPO")
"""

BROKEN_MODULES = {
    "exit_at_import_module": "import sys\nsys.exit(3)\n",
    "system_exit_hook_module": HOOK_RAISING.format(name="sysexithook", exception="SystemExit(4)"),
    "interrupt_hook_module": HOOK_RAISING.format(name="interrupthook", exception="KeyboardInterrupt"),
    "interrupt_at_import_module": "raise KeyboardInterrupt\n",
    "lazy_targets_module": LAZY_TARGETS,
    "lazy_raising_module": "raise RuntimeError('module exploded\\n  on two lines')\n",
    "lazy_exiting_module": "import sys\nsys.exit(5)\n",
}
BROKEN_ENTRY_POINTS = {
    "exitimport": "exit_at_import_module",
    "sysexithook": "system_exit_hook_module",
    "interrupthook": "interrupt_hook_module",
    "interruptimport": "interrupt_at_import_module",
    "lazy": "lazy_targets_module",
}
LAZY_BROKEN = ["badsampler", "exitingmodule", "missingattr", "notalgo", "raisingmodule"]


@pytest.fixture
def broken_site(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_site("good-plugin", "1.0", {"good": "good_module"}, {"good_module": GOOD})
    plugin_site("broken-plugins", "0.0.1", BROKEN_ENTRY_POINTS, BROKEN_MODULES)
    # only these: whatever else is installed in the environment stays out of the counts
    monkeypatch.setenv("SBX_LECTURE_LOAD_PLUGINS", ",".join(["good", *BROKEN_ENTRY_POINTS]))


def _single_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sbx-lecture: error: ")
    return lines[0]


def test_exits_and_interrupts_are_reported_and_skipped(broken_site) -> None:
    with pytest.warns(PluginWarning) as caught:
        manager = PluginManager()
    assert manager.registry.get("goodppo") is stable_baselines3.PPO
    assert "fineppo" in manager.registry and "ppo" in manager.registry
    assert "sysexithook" not in manager.registry and "interrupthook" not in manager.registry
    reasons = {failure.name: failure.reason for failure in manager.failures}
    assert set(reasons) == {"exitimport", "sysexithook", "interrupthook", "interruptimport"}
    assert reasons["exitimport"].startswith("SystemExit(3)") and "sys.exit()" in reasons["exitimport"]
    assert reasons["sysexithook"].startswith("SystemExit(4)")
    assert reasons["interrupthook"].startswith("KeyboardInterrupt") and "Ctrl-C" in reasons["interrupthook"]
    assert "SBX_LECTURE_DISABLE_PLUGINS" in reasons["interruptimport"]
    assert all("\n" not in reason for reason in reasons.values())
    assert len(caught) == 4


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notalgo", "not a subclass of stable_baselines3's BaseAlgorithm"),
        ("raisingmodule", "RuntimeError: module exploded on two lines"),
        ("exitingmodule", "SystemExit(5)"),
        ("missingattr", "has no attribute 'NoSuchAlgorithm'"),
    ],
)
def test_lazy_target_failures_are_one_line_naming_plugin_and_fix(broken_site, name: str, expected: str) -> None:
    with pytest.warns(PluginWarning):
        manager = PluginManager()
    with pytest.raises(InvalidAlgorithmError) as error:
        manager.registry.get(name)
    message = str(error.value)
    assert "\n" not in message and expected in message
    assert f"'{name}'" in message and "lazy (broken-plugins==0.0.1)" in message
    assert "SBX_LECTURE_DISABLE_PLUGINS=lazy" in message


def test_list_still_lists_the_others(broken_site, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(PluginWarning):
        assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["goodppo", "fineppo", "tnpg", *LAZY_BROKEN]:
        assert name in out
    for plugin in ["exitimport", "sysexithook", "interrupthook", "interruptimport"]:
        assert f"{plugin} (broken-plugins==0.0.1):" in out


def test_list_check_reports_each_failure_in_one_line(broken_site, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.warns(PluginWarning):
        assert main(["list", "--check"]) == CHECK_FAILED_STATUS
    out = capsys.readouterr().out
    report = out[out.index("\ncheck: ") :].strip().splitlines()
    assert report[0].startswith("check: ") and "5 problems" in report[0]
    problems = report[1:]
    assert len(problems) == len(LAZY_BROKEN)
    for name in LAZY_BROKEN:
        [line] = [line for line in problems if line.strip().startswith(f"algorithm '{name}'")]
        assert "SBX_LECTURE_DISABLE_PLUGINS=lazy" in line
    assert "zoo sampler 'lazy_raising_module:sample'" in " ".join(problems)

    assert main(["list", "--check", "--json"]) == CHECK_FAILED_STATUS  # the same manager: no new warnings
    listing = json.loads(capsys.readouterr().out)
    assert listing["check"] == {"ok": False, "failed": LAZY_BROKEN}
    checks = {entry["name"]: entry["check"] for entry in listing["algorithms"]}
    assert checks["fineppo"] == [] and checks["tnpg"] == []
    assert len(checks["notalgo"]) == 1 and "BaseAlgorithm" in checks["notalgo"][0]


def test_list_check_passes_when_everything_resolves(
    plugin_site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin_site("good-plugin", "1.0", {"good": "good_module"}, {"good_module": GOOD})
    monkeypatch.setenv("SBX_LECTURE_LOAD_PLUGINS", "good")
    assert main(["list", "--check"]) == 0
    out = capsys.readouterr().out
    assert "check: " in out and "problem" not in out
    assert main(["list", "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["check"] == {"ok": True, "failed": []}


@pytest.mark.parametrize("name", LAZY_BROKEN[1:])
def test_train_and_eval_of_a_broken_target_are_one_line(
    broken_site, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.warns(PluginWarning):
        assert main(["train", name, "CartPole-v1", "--timesteps", "10", "--out", str(tmp_path / "run")]) == 2
    line = _single_error_line(capsys)
    assert f"algorithm '{name}'" in line and "SBX_LECTURE_DISABLE_PLUGINS=lazy" in line

    model = tmp_path / "model.zip"
    stable_baselines3.A2C("MlpPolicy", "CartPole-v1", n_steps=8).save(model)
    assert main(["eval", str(model), "CartPole-v1", "--algo", name, "--episodes", "1"]) == 2
    line = _single_error_line(capsys)
    assert f"algorithm '{name}'" in line


@pytest.mark.parametrize("entry_point", ["exitimport", "sysexithook", "interrupthook", "interruptimport"])
def test_strict_mode_is_one_line_with_exit_status_2(
    plugin_site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], entry_point: str
) -> None:
    plugin_site("broken-plugins", "0.0.1", {entry_point: BROKEN_ENTRY_POINTS[entry_point]}, BROKEN_MODULES)
    monkeypatch.setenv("SBX_LECTURE_LOAD_PLUGINS", entry_point)
    monkeypatch.setenv("SBX_LECTURE_STRICT", "1")
    with pytest.raises(PluginLoadError):
        PluginManager()
    for command in (["list"], ["train", "goodppo", "CartPole-v1", "--timesteps", "10"]):
        assert main(command) == 2
        line = _single_error_line(capsys)
        assert f"plugin {entry_point} (broken-plugins==0.0.1) failed" in line
        assert f"SBX_LECTURE_DISABLE_PLUGINS={entry_point}" in line


def test_disable_variable_skips_a_plugin_before_importing_it(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    hang = "raise AssertionError('imported although disabled')\n"
    plugin_site("hanging-plugin", "1.0", {"hangs": "hanging_module"}, {"hanging_module": hang})
    monkeypatch.setenv("SBX_LECTURE_STRICT", "1")
    monkeypatch.setenv("SBX_LECTURE_DISABLE_PLUGINS", "hangs")
    manager = PluginManager()
    assert not manager.failures and not manager.pluggy.has_plugin("hangs")


def test_console_process_survives_and_reports_in_one_line(plugin_site) -> None:
    """In a real process: a plugin's sys.exit(3) does not end the command, and each report is one line."""
    info = plugin_site("broken-plugins", "0.0.1", {"exitimport": "exit_at_import_module"}, BROKEN_MODULES)
    repo = Path(sbx_lecture.__file__).resolve().parent.parent
    path = os.pathsep.join([str(info.parent), str(repo)])
    env = {**os.environ, "PYTHONPATH": path, "SBX_LECTURE_LOAD_PLUGINS": "exitimport"}
    command = [sys.executable, "-m", "sbx_lecture.cli", "list"]
    listing = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert listing.returncode == 0, listing.stderr
    assert "tnpg" in listing.stdout and "exitimport (broken-plugins==0.0.1): SystemExit(3)" in listing.stdout
    assert listing.stderr.splitlines() == [
        "sbx-lecture: plugin exitimport (broken-plugins==0.0.1) failed while importing it and was skipped: "
        "SystemExit(3): it called sys.exit()"
    ]
    strict = subprocess.run(
        command, capture_output=True, text=True, env={**env, "SBX_LECTURE_STRICT": "1"}, check=False
    )
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    [line] = strict.stderr.splitlines()
    assert line.startswith("sbx-lecture: error: plugin exitimport (broken-plugins==0.0.1) failed while importing it")

"""The registry and the plugin manager: built-ins, lazy resolution, conflicts, override, entry points, failures."""

from __future__ import annotations

import subprocess
import sys

import pytest
import stable_baselines3
from sb3_contrib import TRPO

import sbx_lecture
from sbx_lecture.plugins import PluginLoadError, PluginManager, PluginWarning, get_plugin_manager
from sbx_lecture.registry import (
    AlgorithmConflictError,
    AlgorithmRegistry,
    AlgorithmSpec,
    InvalidAlgorithmError,
    UnknownAlgorithmError,
    normalize_name,
)

SB3_NAMES = ["a2c", "ddpg", "dqn", "ppo", "sac", "td3"]
LECTURE_NAMES = ["dpg", "npg", "ppo_kl", "sql", "tnpg"]

GOOD_PLUGIN = """
from sbx_lecture import hookimpl

@hookimpl
def register_algorithms(register):
    register("myppo", "stable_baselines3:PPO", description="PPO under another name", future_keyword=1)
"""


def test_builtins_are_listed() -> None:
    names = [spec.name for spec in sbx_lecture.list_algorithms()]
    for name in [*SB3_NAMES, "trpo", *LECTURE_NAMES]:
        assert name in names
    assert names == sorted(names)
    spec = get_plugin_manager().registry.spec("ppo")
    assert spec.plugin == "builtin" and spec.distribution == "sbx-lecture"


def test_public_names_are_the_same_class_objects() -> None:
    for name in ["PPO", "A2C", "DDPG", "TD3", "SAC", "DQN"]:
        assert getattr(sbx_lecture, name) is getattr(stable_baselines3, name)
    assert sbx_lecture.TRPO is TRPO
    assert sbx_lecture.get_algorithm("trpo") is TRPO
    assert sbx_lecture.get_algorithm("PPO") is stable_baselines3.PPO


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownAlgorithmError) as error:
        sbx_lecture.get_algorithm("tnpo")
    message = str(error.value)
    assert "'tnpo'" in message and "'tnpg'" in message and "'trpo'" in message


def test_listing_does_not_import_algorithms() -> None:
    code = (
        "import sys, sbx_lecture\n"
        "specs = sbx_lecture.list_algorithms()\n"
        "assert len(specs) > 10\n"
        "assert not any(spec.is_loaded for spec in specs)\n"
        "heavy = [m for m in ('torch', 'stable_baselines3', 'sb3_contrib', 'sbx_lecture.npg') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_resolution_is_cached() -> None:
    registry = AlgorithmRegistry()
    spec = AlgorithmSpec("lazy", "sb3_contrib:TRPO", plugin="test")
    registry.add(spec)
    assert not spec.is_loaded
    assert registry.get("lazy") is TRPO
    assert spec.is_loaded and registry.get("LAZY") is TRPO


def test_name_normalisation_and_validation() -> None:
    assert normalize_name(" PPO-KL ") == "ppo_kl"
    registry = PluginManager(load_entry_points=False)
    assert "PPO-KL" in registry.registry
    with pytest.raises(InvalidAlgorithmError, match=r"module:ClassName"):
        AlgorithmSpec("x", "no_colon_here", plugin="test")
    with pytest.raises(InvalidAlgorithmError, match=r"invalid algorithm name '1x'"):
        AlgorithmSpec("1x", "stable_baselines3:PPO", plugin="test")


def test_target_that_is_not_an_algorithm_fails_on_use_naming_the_plugin() -> None:
    registry = AlgorithmRegistry()
    registry.add(
        AlgorithmSpec("notalgo", "collections:OrderedDict", plugin="shady", distribution="shady-dist", version="0.1")
    )
    with pytest.raises(InvalidAlgorithmError, match=r"shady \(shady-dist==0.1\).*not a subclass"):
        registry.get("notalgo")
    registry.add(AlgorithmSpec("missing", "no_such_module_xyz:Algo", plugin="shady"))
    with pytest.raises(InvalidAlgorithmError, match="cannot import module"):
        registry.get("missing")


def test_conflict_names_both_plugins_and_override_replaces() -> None:
    registry = AlgorithmRegistry()
    registry.add(
        AlgorithmSpec("algo", "stable_baselines3:PPO", plugin="first", distribution="first-dist", version="1.0")
    )
    with pytest.raises(AlgorithmConflictError) as error:
        registry.add(AlgorithmSpec("algo", "stable_baselines3:A2C", plugin="second"))
    assert "first (first-dist==1.0)" in str(error.value) and "second" in str(error.value)
    registry.add(AlgorithmSpec("algo", "stable_baselines3:A2C", plugin="second"), override=True)
    assert registry.get("algo") is stable_baselines3.A2C


def test_entry_point_plugin_reports_distribution_and_version(plugin_site) -> None:
    plugin_site("good-plugin", "1.2.3", {"good": "good_plugin_module"}, {"good_plugin_module": GOOD_PLUGIN})
    manager = PluginManager()
    spec = manager.registry.spec("myppo")
    assert (spec.plugin, spec.distribution, spec.version) == ("good", "good-plugin", "1.2.3")
    assert spec.extra == {"future_keyword": 1}
    assert manager.registry.get("myppo") is stable_baselines3.PPO
    assert [spec.name for spec in manager.registry if spec.plugin == "good"] == ["myppo"]
    assert not manager.failures


def test_conflicting_plugin_is_reported_with_both_names(plugin_site) -> None:
    clash = GOOD_PLUGIN.replace('"myppo"', '"ppo"')
    plugin_site("clash-plugin", "0.1", {"clash": "clash_module"}, {"clash_module": clash})
    with pytest.warns(PluginWarning, match="builtin"):
        manager = PluginManager()
    assert manager.registry.get("ppo") is stable_baselines3.PPO
    [failure] = manager.failures
    assert failure.name == "clash" and "builtin" in failure.reason and "clash" in failure.reason


def test_plugin_override_replaces_a_builtin(plugin_site) -> None:
    source = GOOD_PLUGIN.replace('"myppo", "stable_baselines3:PPO"', '"ppo", "stable_baselines3:A2C", override=True')
    plugin_site("override-plugin", "0.1", {"over": "override_module"}, {"override_module": source})
    manager = PluginManager()
    assert manager.registry.get("ppo") is stable_baselines3.A2C
    assert manager.registry.spec("ppo").plugin == "over"


BROKEN_PLUGINS = {
    "import_error_module": "import no_such_dependency_xyz\n",
    "raising_hook_module": """
        from sbx_lecture import hookimpl

        @hookimpl
        def register_algorithms(register):
            register("half", "stable_baselines3:PPO")
            raise RuntimeError("hook exploded")
    """,
    "bad_target_module": """
        from sbx_lecture import hookimpl

        @hookimpl
        def register_algorithms(register):
            register("badtarget", dict)
    """,
}


def test_broken_plugins_are_skipped_and_the_good_one_loads(plugin_site) -> None:
    plugin_site("good-plugin", "1.0", {"good": "good_plugin_module"}, {"good_plugin_module": GOOD_PLUGIN})
    plugin_site(
        "broken-plugins",
        "0.0.1",
        {"importerror": "import_error_module", "raising": "raising_hook_module", "badtarget": "bad_target_module"},
        BROKEN_PLUGINS,
    )
    with pytest.warns(PluginWarning):
        manager = PluginManager()
    assert "myppo" in manager.registry and "ppo" in manager.registry
    assert "half" not in manager.registry and "badtarget" not in manager.registry
    reasons = {failure.name: failure for failure in manager.failures}
    assert set(reasons) == {"importerror", "raising", "badtarget"}
    assert "no_such_dependency_xyz" in reasons["importerror"].reason
    assert "hook exploded" in reasons["raising"].reason
    assert "BaseAlgorithm" in reasons["badtarget"].reason
    assert all(f.distribution == "broken-plugins" and f.version == "0.0.1" for f in manager.failures)


def test_strict_mode_raises(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_site("broken-plugins", "0.0.1", {"raising": "raising_hook_module"}, BROKEN_PLUGINS)
    monkeypatch.setenv("SBX_LECTURE_STRICT", "1")
    with pytest.raises(PluginLoadError, match=r"raising \(broken-plugins==0.0.1\).*hook exploded"):
        PluginManager()


def test_load_and_disable_variables(plugin_site, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_site("good-plugin", "1.0", {"good": "good_plugin_module"}, {"good_plugin_module": GOOD_PLUGIN})
    other = GOOD_PLUGIN.replace("myppo", "othera2c").replace("stable_baselines3:PPO", "stable_baselines3:A2C")
    plugin_site("other-plugin", "1.0", {"other": "other_plugin_module"}, {"other_plugin_module": other})

    monkeypatch.setenv("SBX_LECTURE_LOAD_PLUGINS", "good")
    names = PluginManager().registry.names()
    assert "myppo" in names and "othera2c" not in names and "ppo" in names

    monkeypatch.setenv("SBX_LECTURE_LOAD_PLUGINS", "")
    names = PluginManager().registry.names()
    assert "myppo" not in names and "othera2c" not in names and "tnpg" in names

    monkeypatch.delenv("SBX_LECTURE_LOAD_PLUGINS")
    monkeypatch.setenv("SBX_LECTURE_DISABLE_PLUGINS", "good, unrelated")
    names = PluginManager().registry.names()
    assert "myppo" not in names and "othera2c" in names

    monkeypatch.setenv("SBX_LECTURE_DISABLE_PLUGINS", "other-plugin")  # a distribution name works too
    names = PluginManager().registry.names()
    assert "myppo" in names and "othera2c" not in names


def test_add_plugin_in_code() -> None:
    class InCode:
        @sbx_lecture.hookimpl
        def register_algorithms(self, register):
            register("incode", stable_baselines3.SAC, description="registered from a notebook")

    manager = PluginManager(load_entry_points=False)
    assert manager.add_plugin(InCode(), "incode-plugin")
    assert manager.registry.get("incode") is stable_baselines3.SAC
    with pytest.warns(PluginWarning, match="loaded already"):
        assert not manager.add_plugin(InCode(), "incode-plugin")

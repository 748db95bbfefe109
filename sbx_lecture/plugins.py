"""Plugin manager: the built-in plugin, entry-point plugins, isolation of broken plugins, environment variables.

Environment variables:

- ``SBX_LECTURE_LOAD_PLUGINS=a,b``: load only these entry points (set but empty: none of them);
- ``SBX_LECTURE_DISABLE_PLUGINS=a,b``: never load these entry points;
- ``SBX_LECTURE_STRICT=1``: a broken plugin raises :class:`PluginLoadError` instead of being reported and skipped.

Plugins are named by their entry-point name (a distribution name is accepted too in the two lists). The built-in
plugin is always loaded.

Isolation: anything a plugin raises while it is imported or while its ``register_algorithms`` hook runs is reported
and the plugin skipped, ``SystemExit`` (a ``sys.exit()`` in the plugin), ``KeyboardInterrupt`` and
``GeneratorExit`` included, so a plugin cannot end the command. A Ctrl-C pressed while a plugin is being imported
therefore counts as that plugin's failure: the plugin is skipped and the command goes on. A plugin that *hangs* at
import (waits on the network, a lock, input) cannot be skipped from inside the process: interrupt it and block it
with ``SBX_LECTURE_DISABLE_PLUGINS=<name>`` (its entry-point or distribution name, as ``sbx-lecture list`` shows).
Lazy ``"module:Class"`` targets are imported on first use; ``sbx-lecture list --check`` imports every one of them
and reports each failure in one line.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from dataclasses import dataclass
from importlib import metadata

import pluggy

from sbx_lecture import hookspecs
from sbx_lecture.registry import AlgorithmRegistry, RegistryError, describe_exception, plugin_fix, plugin_origin

STRICT_VARIABLE = "SBX_LECTURE_STRICT"


class PluginLoadError(RegistryError):
    """A plugin failed while ``SBX_LECTURE_STRICT`` is set (a :class:`RegistryError`: the command line reports it
    in one line with exit status 2)."""


class PluginWarning(UserWarning):
    """A plugin failed and was skipped; the other plugins keep working."""


@dataclass
class PluginInfo:
    """A plugin that was skipped, and why (what a loaded plugin registered, each :class:`AlgorithmSpec` says).

    :param reason: one line saying why it failed
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    reason: str = ""

    @property
    def origin(self) -> str:
        """``name (distribution==version)``."""
        return plugin_origin(self.name, self.distribution, self.version)


def _names_from_variable(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    return None if value is None else {part.strip() for part in value.split(",") if part.strip()}


class PluginManager:
    """Collects algorithms from the built-in plugin and every entry point of the group ``sbx_lecture``.

    :param load_entry_points: look up third-party plugins through entry points
    """

    def __init__(self, load_entry_points: bool = True) -> None:
        from sbx_lecture import builtin

        self.pluggy = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pluggy.add_hookspecs(hookspecs)
        self.registry = AlgorithmRegistry()
        self.failures: list[PluginInfo] = []
        self.add_plugin(builtin, "builtin", "sbx-lecture", builtin.VERSION)
        only = _names_from_variable("SBX_LECTURE_LOAD_PLUGINS")
        blocked = _names_from_variable("SBX_LECTURE_DISABLE_PLUGINS") or set()
        for entry_point in metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP) if load_entry_points else ():
            dist = entry_point.dist  # the entry point's name or its distribution's name selects it
            info = PluginInfo(entry_point.name, dist.name if dist else None, dist.version if dist else None)
            aliases = {info.name, info.distribution}
            if (only is not None and not aliases & only) or aliases & blocked:
                continue
            try:
                plugin = entry_point.load()
            except BaseException as exc:  # sys.exit() or KeyboardInterrupt at import included
                self._fail(info, exc, "importing it")
            else:
                self.add_plugin(plugin, info.name, info.distribution, info.version)

    def add_plugin(
        self, plugin: object, name: str, distribution: str | None = None, version: str | None = None
    ) -> bool:
        """Register ``plugin`` (an object with hook implementations) and collect its algorithms now, all or none.

        :return: whether it loaded; a broken plugin is reported and skipped (or raises in strict mode)
        """
        register = hookspecs.RegisterFunction(name, distribution, version)
        try:
            if self.pluggy.has_plugin(name):
                raise ValueError(f"a plugin named {name!r} is loaded already")
            self.pluggy.register(plugin, name=name)
            # the hook of this plugin alone: the others ran when they were added
            others = [other for other in self.pluggy.get_plugins() if other is not plugin]
            self.pluggy.subset_hook_caller("register_algorithms", others)(register=register)
            self.registry.add_all(register.registrations)
        except BaseException as exc:  # a plugin must not end the command: sys.exit() or Ctrl-C in a hook included
            if self.pluggy.get_plugin(name) is plugin:
                self.pluggy.unregister(name=name)
            self._fail(PluginInfo(name, distribution, version), exc, "registering its algorithms")
            return False
        return True

    def _fail(self, info: PluginInfo, exc: BaseException, while_doing: str) -> None:
        info.reason = describe_exception(exc)
        failed = f"plugin {info.origin} failed while {while_doing}"
        if os.environ.get(STRICT_VARIABLE, "").strip().lower() not in ("", "0", "false", "no", "off"):
            fix = plugin_fix(info.name, info.distribution)
            raise PluginLoadError(f"{failed}: {info.reason} ({STRICT_VARIABLE} is set; {fix})") from exc
        self.failures.append(info)
        warnings.warn(f"sbx-lecture: {failed} and was skipped: {info.reason}", PluginWarning, stacklevel=3)


_manager_lock = threading.Lock()


@functools.cache
def _manager() -> PluginManager:
    """The plugin manager of the process, made on the first call after a reset."""
    return PluginManager()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created (and every plugin loaded) on first use."""
    with _manager_lock:
        return _manager()


def reset_plugin_manager() -> None:
    """Forget the loaded plugins; the next :func:`get_plugin_manager` reloads them (after env-variable changes)."""
    _manager.cache_clear()

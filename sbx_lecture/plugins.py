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

import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from sbx_lecture.hookspecs import ENTRY_POINT_GROUP, PROJECT_NAME, AlgorithmHookSpecs
from sbx_lecture.registry import (
    AlgorithmRegistry,
    AlgorithmSpec,
    RegistryError,
    describe_exception,
    space_names,
    validate_registration,
)

LOAD_PLUGINS_VARIABLE = "SBX_LECTURE_LOAD_PLUGINS"
DISABLE_PLUGINS_VARIABLE = "SBX_LECTURE_DISABLE_PLUGINS"
STRICT_VARIABLE = "SBX_LECTURE_STRICT"
BUILTIN_PLUGIN_NAME = "builtin"


class PluginLoadError(RegistryError):
    """A plugin failed while ``SBX_LECTURE_STRICT`` is set (a :class:`RegistryError`: the command line reports it
    in one line with exit status 2)."""


class PluginWarning(UserWarning):
    """A plugin failed and was skipped; the other plugins keep working."""


@dataclass
class PluginInfo:
    """A loaded plugin and what it registered."""

    name: str
    distribution: str | None = None
    version: str | None = None
    algorithms: list[str] = field(default_factory=list)


@dataclass
class PluginFailure:
    """A plugin that was skipped, with a one-line reason."""

    name: str
    distribution: str | None
    version: str | None
    reason: str

    @property
    def origin(self) -> str:
        """``name (distribution==version)``."""
        return f"{self.name} ({self.distribution}=={self.version})" if self.distribution else self.name


def _names_from_variable(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _is_strict() -> bool:
    return os.environ.get(STRICT_VARIABLE, "").strip().lower() not in ("", "0", "false", "no", "off")


class PluginManager:
    """Collects algorithms from the built-in plugin and every entry point of the group ``sbx_lecture``.

    :param load_entry_points: look up third-party plugins through entry points
    """

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pluggy = pluggy.PluginManager(PROJECT_NAME)
        self.pluggy.add_hookspecs(AlgorithmHookSpecs)
        self.registry = AlgorithmRegistry()
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self._lock = threading.RLock()
        from sbx_lecture import builtin

        self.add_plugin(builtin, BUILTIN_PLUGIN_NAME, "sbx-lecture", _own_version())
        if load_entry_points:
            self._load_entry_points(metadata.entry_points(group=ENTRY_POINT_GROUP))

    def add_plugin(
        self, plugin: object, name: str, distribution: str | None = None, version: str | None = None
    ) -> bool:
        """Register ``plugin`` (an object with hook implementations) and collect its algorithms now.

        :return: whether it loaded; a broken plugin is reported and skipped (or raises in strict mode)
        """
        with self._lock:
            info = PluginInfo(name, distribution, version)
            try:
                if name in self.plugins:
                    raise ValueError(f"a plugin named {name!r} is loaded already")
                self.pluggy.register(plugin, name=name)
            except BaseException as exc:  # a plugin must not end the command
                self._fail(info, exc)
                return False
            try:
                staged = self._call_hook(name, info)
                names = [spec.name for spec, _ in staged]
                for duplicate in {n for n in names if names.count(n) > 1}:
                    raise ValueError(f"plugin {name!r} registers {duplicate!r} more than once")
                for spec, override in staged:
                    self.registry.check_can_add(spec, override)
            except BaseException as exc:  # sys.exit() or KeyboardInterrupt in a hook included
                self.pluggy.unregister(name=name)
                self._fail(info, exc)
                return False
            for spec, override in staged:
                self.registry.add(spec, override)
            info.algorithms = [spec.name for spec, _ in staged]
            self.plugins[name] = info
            return True

    def _call_hook(self, name: str, info: PluginInfo) -> list[tuple[AlgorithmSpec, bool]]:
        staged: list[tuple[AlgorithmSpec, bool]] = []

        def register(
            algorithm_name: str,
            target: object,
            *,
            description: str = "",
            zoo_hyperparams: str | None = None,
            zoo_sampler: Any = None,
            action_spaces: Sequence[str] | None = None,
            observation_spaces: Sequence[str] | None = None,
            override: bool = False,
            **extra: Any,
        ) -> None:
            normalized = validate_registration(algorithm_name, target)
            spec = AlgorithmSpec(
                name=normalized,
                target=target,  # type: ignore[arg-type]
                plugin=name,
                distribution=info.distribution,
                version=info.version,
                description=description,
                zoo_hyperparams=zoo_hyperparams,
                zoo_sampler=zoo_sampler,
                action_spaces=space_names(action_spaces, "action_spaces"),
                observation_spaces=space_names(observation_spaces, "observation_spaces"),
                extra=extra,
            )
            staged.append((spec, override))

        for hook_impl in self.pluggy.hook.register_algorithms.get_hookimpls():
            if hook_impl.plugin_name == name:
                hook_impl.function(*[{"register": register}[arg] for arg in hook_impl.argnames])
        return staged

    def _load_entry_points(self, entry_points: Iterable[metadata.EntryPoint]) -> None:
        only = _names_from_variable(LOAD_PLUGINS_VARIABLE)
        blocked = _names_from_variable(DISABLE_PLUGINS_VARIABLE) or set()
        for entry_point in entry_points:
            distribution = entry_point.dist.name if entry_point.dist is not None else None
            version = entry_point.dist.version if entry_point.dist is not None else None
            aliases = {entry_point.name, distribution}
            if only is not None and not aliases & only:
                continue
            if aliases & blocked:
                continue
            try:
                plugin = entry_point.load()
            except BaseException as exc:  # sys.exit() or KeyboardInterrupt at import included
                self._fail(PluginInfo(entry_point.name, distribution, version), exc, while_doing="importing it")
                continue
            self.add_plugin(plugin, entry_point.name, distribution, version)

    def _fail(self, info: PluginInfo, exc: BaseException, while_doing: str = "registering its algorithms") -> None:
        failure = PluginFailure(info.name, info.distribution, info.version, describe_exception(exc))
        if _is_strict():
            raise PluginLoadError(
                f"plugin {failure.origin} failed while {while_doing}: {failure.reason} ({STRICT_VARIABLE} is set; "
                f"fix or update the plugin, or skip it with {DISABLE_PLUGINS_VARIABLE}={info.name})"
            ) from exc
        self.failures.append(failure)
        warnings.warn(
            f"sbx-lecture: plugin {failure.origin} failed while {while_doing} and was skipped: {failure.reason}",
            PluginWarning,
            stacklevel=3,
        )


def _own_version() -> str | None:
    try:
        return metadata.version("sbx-lecture")
    except metadata.PackageNotFoundError:
        return None


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created (and every plugin loaded) on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the loaded plugins; the next :func:`get_plugin_manager` reloads them (after env-variable changes)."""
    global _manager
    with _manager_lock:
        _manager = None

"""The algorithm registry: names, lazy ``"module:Class"`` targets, conflicts and lookups with suggestions."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sbx_lecture.infra.validation import one_line

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: How SB3's and sb3-contrib's classes declare their action spaces: in their call of the base constructor.
_BASE_CONSTRUCTOR_SPACES = re.compile(r"supported_action_spaces=\(([^)]*)\)")
#: gymnasium's four basic spaces: the observation spaces SB3's policies take (``Dict`` as well where the class has a
#: ``MultiInputPolicy``).
BASIC_SPACES = ("Box", "Discrete", "MultiBinary", "MultiDiscrete")


class RegistryError(Exception):
    """Base class of the registry's errors."""


class UnknownAlgorithmError(RegistryError, KeyError):
    """No algorithm is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AlgorithmConflictError(RegistryError):
    """Two plugins registered the same name and the later one did not pass ``override=True``."""


class InvalidAlgorithmError(RegistryError):
    """A registration or its target is malformed: bad name, bad ``module:Class``, not a ``BaseAlgorithm``."""


def normalize_name(name: str) -> str:
    """Registry names are lower case with underscores, as the RL Zoo's ``--algo``: ``"PPO-KL"`` → ``"ppo_kl"``."""
    return name.strip().lower().replace("-", "_")


def plugin_origin(plugin: str, distribution: str | None, version: str | None) -> str:
    """Who provides a plugin: ``plugin (distribution==version)``, or its name alone for code registered by hand."""
    return f"{plugin} ({distribution}=={version})" if distribution else plugin


def plugin_fix(plugin: str, distribution: str | None) -> str:
    """What a user can do about a broken plugin: reinstall sbx-lecture (the built-in one), fix, update or skip a
    third-party one, or fix the code that added it by hand."""
    if distribution == "sbx-lecture":
        return "reinstall sbx-lecture"
    if distribution:
        return f"fix or update {distribution}, or skip the plugin with SBX_LECTURE_DISABLE_PLUGINS={plugin}"
    return f"fix the code that registered it (plugin {plugin!r})"


def describe_exception(exc: BaseException) -> str:
    """One line for any exception, ``SystemExit`` and ``KeyboardInterrupt`` raised by plugin code included."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): it called sys.exit()"
    if isinstance(exc, KeyboardInterrupt):
        return (
            "KeyboardInterrupt: raised by it, or Ctrl-C while it loaded (a plugin that hangs: skip it with "
            "SBX_LECTURE_DISABLE_PLUGINS)"
        )
    return one_line(exc, 300, typed=True)


def did_you_mean(name: str, known: Iterable[str], otherwise: str = "", cutoff: float = 0.6) -> str:
    """``did you mean 'a', 'b' or 'c'?`` with up to three of ``known`` close to ``name``; ``otherwise`` when none is."""
    close = [repr(match) for match in difflib.get_close_matches(name, list(known), n=3, cutoff=cutoff)]
    if not close:
        return otherwise
    listed = f"{', '.join(close[:-1])} or {close[-1]}" if len(close) > 1 else close[0]
    return f"did you mean {listed}?"


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """``unknown algorithm 'tnpo'; did you mean 'tnpg' or 'trpo'?``: up to three close names, else the known ones."""
    hint = did_you_mean(normalize_name(name), known, f"known: {', '.join(known)}", cutoff=0.5)
    return f"unknown {kind} {name!r}; {hint}"


@dataclass
class AlgorithmSpec:
    """One registered algorithm.

    :param name: normalised registry name
    :param target: the class, or ``"module:Class"`` imported on first :meth:`load`
    :param plugin: name of the plugin that registered it
    :param distribution: the installed distribution that provides the plugin (``None`` for code registered by hand)
    :param version: that distribution's version
    :param description: one-line description
    :param zoo_hyperparams: rl-zoo yml of the algorithm (path or ``"package:relative/path"``)
    :param zoo_sampler: Optuna hyperparameter sampler for the zoo's ``--optimize`` (or its ``"module:function"``)
    :param extra: keyword arguments of later contract versions, kept as given
    """

    name: str
    target: str | type
    plugin: str
    distribution: str | None = None
    version: str | None = None
    description: str = ""
    zoo_hyperparams: str | None = None
    zoo_sampler: Callable[..., dict[str, Any]] | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _loaded: type | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Normalise the name and check the registration: the name, and the syntax of a ``"module:Class"`` target
        (imported on first use) or, at once, a class (or whatever else was given)."""
        name = normalize_name(self.name) if isinstance(self.name, str) else ""
        if not _NAME_PATTERN.match(name):
            raise InvalidAlgorithmError(
                f"invalid algorithm name {self.name!r}: use lower-case letters, digits and underscores, starting "
                "with a letter"
            )
        self.name = name
        if not isinstance(self.target, str):
            self.load()
        elif not _TARGET_PATTERN.match(self.target):
            raise InvalidAlgorithmError(
                f"invalid target {self.target!r} for algorithm {name!r}: expected 'package.module:ClassName'"
            )

    @property
    def target_path(self) -> str:
        """``"module:Class"`` of the target, without importing it."""
        return self.target if isinstance(self.target, str) else f"{self.target.__module__}:{self.target.__qualname__}"

    @property
    def origin(self) -> str:
        """Who provides it: ``plugin (distribution==version)``."""
        return plugin_origin(self.plugin, self.distribution, self.version)

    @property
    def is_loaded(self) -> bool:
        """Whether the target class has been imported already."""
        return self._loaded is not None

    def _invalid(self, problem: str) -> InvalidAlgorithmError:
        """The one-line error of a broken registration: what is wrong, who registered it, how to get rid of it."""
        fix = plugin_fix(self.plugin, self.distribution)
        return InvalidAlgorithmError(f"algorithm {self.name!r} from plugin {self.origin} {problem}; {fix}")

    def _import(self, target: str, what: str) -> Any:
        """Import ``"module:attribute"``; whatever goes wrong, ``sys.exit()`` in the module included, raises
        :class:`InvalidAlgorithmError` with a one-line message naming the plugin and the fix."""
        try:
            return pkgutil.resolve_name(target)
        except BaseException as exc:  # SystemExit or KeyboardInterrupt raised by the plugin's module included
            module = f"cannot import module {target.partition(':')[0]!r}: " if isinstance(exc, ImportError) else ""
            raise self._invalid(f"cannot be loaded: {what} {target!r}: {module}{describe_exception(exc)}") from exc

    def load(self) -> type[BaseAlgorithm]:
        """Import the target on first use (then cached) and check that it is a ``BaseAlgorithm`` subclass.

        Whatever goes wrong (the module is missing or raises while imported, ``sys.exit()`` included, the attribute is
        missing, it is not a ``BaseAlgorithm``) raises :class:`InvalidAlgorithmError` with a one-line message.
        """
        if self._loaded is None:
            from stable_baselines3.common.base_class import BaseAlgorithm

            cls = self._import(self.target, "target") if isinstance(self.target, str) else self.target
            if not (inspect.isclass(cls) and issubclass(cls, BaseAlgorithm)):
                where = f"points to {self.target}, which " if isinstance(self.target, str) else ""
                raise self._invalid(
                    f"{where}is {one_line(repr(cls), 120)}, not a subclass of stable_baselines3's BaseAlgorithm"
                )
            self._loaded = cls
        return self._loaded

    def load_zoo_sampler(self) -> Callable[..., dict[str, Any]] | None:
        """The Optuna sampler, importing it first when it was given as ``"module:function"``."""
        if isinstance(self.zoo_sampler, str):
            return self._import(self.zoo_sampler, "zoo sampler")  # type: ignore[no-any-return]
        return self.zoo_sampler

    @property
    def action_spaces(self) -> tuple[str, ...] | None:
        """Names of the action spaces the class supports (it is imported), in alphabetical order: its
        ``supported_action_spaces`` attribute, else what it passes to SB3's base constructor in its source (SB3's and
        sb3-contrib's classes declare theirs there); ``None`` when neither says."""
        cls = self.load()
        if getattr(cls, "supported_action_spaces", None) is not None:
            return tuple(sorted(space.__name__ for space in cls.supported_action_spaces))  # type: ignore[attr-defined]
        with contextlib.suppress(OSError, TypeError):  # a class without source
            declared = _BASE_CONSTRUCTOR_SPACES.search("".join(map(inspect.getsource, cls.__mro__[:-1])))  # not object
            return tuple(sorted(re.findall(r"spaces\.(\w+)", declared[1]))) if declared else None
        return None

    @property
    def observation_spaces(self) -> tuple[str, ...]:
        """Names of the observation spaces the class takes (it is imported): ``Dict`` with a ``MultiInputPolicy``."""
        aliases = getattr(self.load(), "policy_aliases", {})
        multi_input = any(alias.startswith("MultiInput") for alias in aliases)
        return (*BASIC_SPACES, "Dict") if multi_input else BASIC_SPACES

    def resolve_zoo_hyperparams(self) -> Path | None:
        """The zoo file the plugin registered (``None`` when it registered none): :attr:`zoo_hyperparams`, a
        ``"package:relative/path"`` inside the installed package or a plain path (a Windows drive letter included).

        :raises InvalidAlgorithmError: when the registered file does not exist (a broken plugin)
        """
        location = self.zoo_hyperparams
        if location is None:
            return None
        if ":" in location and not re.match(r"^[A-Za-z]:[\\/]", location):
            package, relative = location.split(":", 1)
            location = str(files(package).joinpath(relative))
        if not Path(location).is_file():
            raise self._invalid(
                f"registers the zoo hyperparameter file {self.zoo_hyperparams!r}, but {location} does not exist"
            )
        return Path(location)


class AlgorithmRegistry:
    """Name → :class:`AlgorithmSpec`, filled by the plugins' ``register_algorithms`` hooks."""

    def __init__(self) -> None:
        self._specs: dict[str, AlgorithmSpec] = {}

    def add(self, spec: AlgorithmSpec, override: bool = False) -> None:
        """Add ``spec``; a name taken by another plugin is an error unless ``override`` is set."""
        self.add_all([(spec, override)])

    def add_all(self, registrations: list[tuple[AlgorithmSpec, bool]]) -> None:
        """Add every ``(spec, override)`` or, when one name is taken and its ``override`` not set, none of them:
        :class:`AlgorithmConflictError` names both plugins."""
        for spec, override in registrations:
            existing = self._specs.get(spec.name)
            if existing is not None and not override:
                raise AlgorithmConflictError(
                    f"algorithm {spec.name!r} is registered by both plugin {existing.origin} and plugin "
                    f"{spec.origin}; the later one must pass override=True to replace it (or disable one plugin with "
                    "SBX_LECTURE_DISABLE_PLUGINS)"
                )
        self._specs.update((spec.name, spec) for spec, _ in registrations)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._specs

    def __iter__(self) -> Iterator[AlgorithmSpec]:
        return iter(sorted(self._specs.values(), key=lambda spec: spec.name))

    def names(self) -> list[str]:
        """Sorted registry names."""
        return sorted(self._specs)

    def spec(self, name: str) -> AlgorithmSpec:
        """The spec registered under ``name``; an unknown name raises an error that suggests close names."""
        try:
            return self._specs[normalize_name(name)]
        except KeyError:
            raise UnknownAlgorithmError(unknown_name_message("algorithm", name, self.names())) from None

    def get(self, name: str) -> type[BaseAlgorithm]:
        """The algorithm class registered under ``name``, imported on first use."""
        return self.spec(name).load()

    def check(self) -> dict[str, list[str]]:
        """Import every lazy target (algorithm classes, zoo samplers) now: name → one-line problems, failures only."""
        problems: dict[str, list[str]] = {}
        for spec in self:
            for resolve in (spec.load, spec.load_zoo_sampler):
                try:
                    resolve()
                except InvalidAlgorithmError as exc:
                    problems.setdefault(spec.name, []).append(str(exc))
        return problems

"""The algorithm registry: names, lazy ``"module:Class"`` targets, conflicts and lookups with suggestions."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_TARGET_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


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


#: The gymnasium space classes a registration may name.
SPACE_NAMES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict", "Tuple", "Text", "Graph", "Sequence")


def space_names(names: Sequence[str] | None, keyword: str) -> tuple[str, ...] | None:
    """A registration's ``action_spaces``/``observation_spaces`` as a tuple of known space names (``None`` stays)."""
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise InvalidAlgorithmError(f"{keyword} must be a list of space names such as ('Box', 'Discrete')")
    unknown = [name for name in names if name not in SPACE_NAMES]
    if unknown:
        raise InvalidAlgorithmError(f"{keyword} names unknown spaces {unknown}: use {', '.join(SPACE_NAMES)}")
    return tuple(names)


def normalize_name(name: str) -> str:
    """Registry names are lower case with underscores, as the RL Zoo's ``--algo``: ``"PPO-KL"`` → ``"ppo_kl"``."""
    return name.strip().lower().replace("-", "_")


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
    :param action_spaces: gymnasium action-space names it declares (``None``: not declared)
    :param observation_spaces: gymnasium observation-space names it declares (``None``: not declared)
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
    action_spaces: tuple[str, ...] | None = None
    observation_spaces: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _loaded: type | None = field(default=None, repr=False, compare=False)

    @property
    def target_path(self) -> str:
        """``"module:Class"`` of the target, without importing it."""
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"

    @property
    def origin(self) -> str:
        """Who provides it: ``plugin (distribution==version)``."""
        if self.distribution:
            return f"{self.plugin} ({self.distribution}=={self.version})"
        return self.plugin

    @property
    def is_loaded(self) -> bool:
        """Whether the target class has been imported already."""
        return self._loaded is not None

    def load(self) -> type[BaseAlgorithm]:
        """Import the target on first use (then cached) and check that it is a ``BaseAlgorithm`` subclass.

        Whatever goes wrong (the module is missing or raises while imported, ``sys.exit()`` included, the attribute is
        missing, it is not a ``BaseAlgorithm``) raises :class:`InvalidAlgorithmError` with a one-line message.
        """
        if self._loaded is None:
            cls = _import_target(self.target, self) if isinstance(self.target, str) else self.target
            _check_algorithm_class(cls, self)
            self._loaded = cls
        return self._loaded

    def load_zoo_sampler(self) -> Callable[..., dict[str, Any]] | None:
        """The Optuna sampler, importing it first when it was given as ``"module:function"``."""
        if isinstance(self.zoo_sampler, str):
            return _import_target(self.zoo_sampler, self, "zoo sampler")  # type: ignore[return-value]
        return self.zoo_sampler

    def check(self) -> list[str]:
        """Resolve every lazy target of this registration now; one one-line message per failure (empty: all fine)."""
        problems = []
        for resolve in (self.load, self.load_zoo_sampler):
            try:
                resolve()
            except InvalidAlgorithmError as exc:
                problems.append(str(exc))
        return problems

    @property
    def fix_hint(self) -> str:
        """How a user gets rid of a broken registration."""
        if self.distribution and self.plugin != "builtin":
            return (
                f"fix or update {self.distribution}, or skip the plugin with SBX_LECTURE_DISABLE_PLUGINS={self.plugin}"
            )
        if self.plugin == "builtin":
            return "reinstall sbx-lecture"
        return f"fix the code that registered it (plugin {self.plugin!r})"

    def resolve_zoo_hyperparams(self) -> str | None:
        """Filesystem path of :attr:`zoo_hyperparams` (``"package:relative/path"`` resolved inside the package)."""
        if self.zoo_hyperparams is None:
            return None
        return resolve_resource(self.zoo_hyperparams)


def resolve_resource(location: str) -> str:
    """``"package:relative/path"`` → a path inside that installed package; a plain path is returned unchanged."""
    if ":" not in location or re.match(r"^[A-Za-z]:[\\/]", location):
        return location
    package, relative = location.split(":", 1)
    from importlib.resources import files

    return str(files(package).joinpath(relative))


def describe_exception(exc: BaseException) -> str:
    """One line for any exception, ``SystemExit`` and ``KeyboardInterrupt`` raised by plugin code included."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): it called sys.exit()"
    if isinstance(exc, KeyboardInterrupt):
        return (
            "KeyboardInterrupt: raised by it, or Ctrl-C while it loaded (a plugin that hangs: skip it with "
            "SBX_LECTURE_DISABLE_PLUGINS)"
        )
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import_target(target: str, spec: AlgorithmSpec, what: str = "target") -> Any:
    module_name, _, attribute_path = target.partition(":")

    def failure(reason: str) -> InvalidAlgorithmError:
        return InvalidAlgorithmError(
            f"algorithm {spec.name!r} from plugin {spec.origin} cannot be loaded: {what} {target!r}: {reason}; "
            f"{spec.fix_hint}"
        )

    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise failure(f"cannot import module {module_name!r}: {describe_exception(exc)}") from exc
    except BaseException as exc:  # SystemExit or KeyboardInterrupt raised by the plugin's module included
        raise failure(f"module {module_name!r} raised while imported: {describe_exception(exc)}") from exc
    for attribute in attribute_path.split("."):
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise failure(f"module {module_name!r} has no attribute {attribute_path!r}") from None
        except Exception as exc:
            raise failure(f"looking up {attribute_path!r} raised {describe_exception(exc)}") from exc
    return obj


def _check_algorithm_class(cls: object, spec: AlgorithmSpec) -> None:
    from stable_baselines3.common.base_class import BaseAlgorithm

    if not (inspect.isclass(cls) and issubclass(cls, BaseAlgorithm)):
        shown = " ".join(repr(cls).split())[:120]
        raise InvalidAlgorithmError(
            f"algorithm {spec.name!r} from plugin {spec.origin} points to {spec.target_path}, which is "
            f"{shown}, not a subclass of stable_baselines3's BaseAlgorithm; {spec.fix_hint}"
        )


def validate_registration(name: str, target: object) -> str:
    """Check a registration's name and target syntax (without importing); return the normalised name."""
    if not isinstance(name, str):
        raise InvalidAlgorithmError(f"algorithm name must be a string, got {name!r}")
    normalized = normalize_name(name)
    if not _NAME_PATTERN.match(normalized):
        raise InvalidAlgorithmError(
            f"invalid algorithm name {name!r}: use lower-case letters, digits and underscores, starting with a letter"
        )
    if isinstance(target, str):
        if not _TARGET_PATTERN.match(target):
            raise InvalidAlgorithmError(
                f"invalid target {target!r} for algorithm {normalized!r}: expected 'package.module:ClassName'"
            )
    elif not inspect.isclass(target):
        raise InvalidAlgorithmError(
            f"invalid target {target!r} for algorithm {normalized!r}: give a BaseAlgorithm subclass or 'module:Class'"
        )
    else:
        from stable_baselines3.common.base_class import BaseAlgorithm

        if not issubclass(target, BaseAlgorithm):
            raise InvalidAlgorithmError(
                f"target {target.__qualname__} of algorithm {normalized!r} is not a subclass of BaseAlgorithm"
            )
    return normalized


class AlgorithmRegistry:
    """Name → :class:`AlgorithmSpec`, filled by the plugins' ``register_algorithms`` hooks."""

    def __init__(self) -> None:
        self._specs: dict[str, AlgorithmSpec] = {}

    def add(self, spec: AlgorithmSpec, override: bool = False) -> None:
        """Add ``spec``; a name taken by another plugin is an error unless ``override`` is set."""
        self.check_can_add(spec, override)
        self._specs[spec.name] = spec

    def check_can_add(self, spec: AlgorithmSpec, override: bool = False) -> None:
        """Raise :class:`AlgorithmConflictError` if ``spec.name`` is taken and ``override`` is not set."""
        existing = self._specs.get(spec.name)
        if existing is not None and not override:
            raise AlgorithmConflictError(
                f"algorithm {spec.name!r} is registered by both plugin {existing.origin} and plugin {spec.origin}; "
                f"the later one must pass override=True to replace it (or disable one plugin with "
                f"SBX_LECTURE_DISABLE_PLUGINS)"
            )

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._specs

    def __iter__(self) -> Iterator[AlgorithmSpec]:
        return iter(sorted(self._specs.values(), key=lambda spec: spec.name))

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        """Sorted registry names."""
        return sorted(self._specs)

    def spec(self, name: str) -> AlgorithmSpec:
        """The spec registered under ``name``; an unknown name raises an error that suggests close names."""
        key = normalize_name(name)
        try:
            return self._specs[key]
        except KeyError:
            raise UnknownAlgorithmError(unknown_name_message("algorithm", name, self.names())) from None

    def get(self, name: str) -> type[BaseAlgorithm]:
        """The algorithm class registered under ``name``, imported on first use."""
        return self.spec(name).load()

    def check(self) -> dict[str, list[str]]:
        """Import every lazy target (algorithm classes, zoo samplers) now: name → one-line problems, failures only."""
        return {spec.name: problems for spec in self if (problems := spec.check())}


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """``unknown algorithm 'tnpo'; did you mean 'tnpg' or 'trpo'?`` with up to three close names."""
    close = difflib.get_close_matches(normalize_name(name), known, n=3, cutoff=0.5)
    message = f"unknown {kind} {name!r}"
    if close:
        quoted = [repr(candidate) for candidate in close]
        joined = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
        return f"{message}; did you mean {joined}?"
    return f"{message}; known: {', '.join(known)}"

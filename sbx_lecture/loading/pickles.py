"""Reading pickles without running them: a symbolic unpickler and an allow-listed rebuild of plain data.

:func:`decode` parses a pickle with an unpickler whose ``find_class`` never returns a real object except numpy's
array and dtype reconstructors (C functions that only build arrays from bytes) and a recorder standing in for
cloudpickle's ``_function_setstate``. Every other global the pickle names becomes an inert stand-in class; "calling"
it, creating it or setting its state only records what was asked. So nothing named in the file runs, whatever it
holds.

:func:`materialize` then turns that tree into real objects, from plain data only: numpy arrays and containers;
instances of a short list of classes (gymnasium's standard spaces, SB3's schedules, action noise, ``TrainFreq``,
``RunningMeanStd``), replayed as pickle would (call or ``__new__``, items, state) once their contents are plain
data; rl-zoo3's ``SimpleLinearSchedule``; sbx-lecture's ``lin_X`` schedule (a function pickled by value, recognised by
its module and name and rebuilt from our own code); and *classes* (never instances) that :func:`resolve_class`
allows: torch.nn modules, torch.optim optimizers, SB3 / sb3-contrib classes and those of the packages of registered
algorithms. Anything else raises :class:`RefusedContent`, which names it.

:func:`allowed_global` tells whether a global that a pickle names is one of these (or inert): a pickle may name a
global that its value does not hold (a call whose result it drops), which a trusted load would still import and run.
"""

from __future__ import annotations

import io
import pickle
import pkgutil
import re
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from sbx_lecture.registry import AlgorithmSpec

try:  # numpy 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class RefusedContent(Exception):
    """Something in a pickle that is not plain data; the message says which global or construct."""


class _StandInMeta(type):
    """Metaclass of stand-ins: calling one (pickle's REDUCE) records the call instead of making anything."""

    target: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        node: _Node = object.__new__(cls)  # type: ignore[arg-type]
        node._init(args, kwargs, "call")
        return node


class _Node(metaclass=_StandInMeta):
    """What a pickle built from a global: the global's name, the arguments, the state and items it was given."""

    target = "(code pickled by value)"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Node:  # pickle's NEWOBJ
        node = object.__new__(cls)
        node._init(args, kwargs, "new")
        return node

    def _init(self, args: tuple[Any, ...], kwargs: dict[str, Any], how: str) -> None:
        self.args, self.kwargs, self.how = args, kwargs, how
        self.state: Any = None
        self.items: list[Any] = []
        self.entries: list[tuple[Any, Any]] = []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries.append((key, value))

    def __call__(self, *args: Any, **kwargs: Any) -> _Node:  # REDUCE on what a call returned (code by value)
        return _Node(*args, **kwargs)  # a call of the stand-in class, recorded by its metaclass

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)


def _record_function_state(function: Any, state: Any) -> None:
    """Stands for cloudpickle's ``_function_setstate``: the state is only recorded on the function's stand-in."""
    if isinstance(function, _Node):
        function.__setstate__(state)


#: Globals a pickle gets as real objects: numpy's array reconstructors (numpy 1 and 2 module paths), as they only
#: build arrays, and the recorder above.
_REAL_GLOBALS: dict[str, Any] = {
    "numpy:ndarray": np.ndarray,
    "numpy:dtype": np.dtype,
    "_codecs:encode": lambda text, encoding="utf-8": str(text).encode("latin1" if encoding == "latin1" else "utf-8"),
    "cloudpickle.cloudpickle:_function_setstate": _record_function_state,
}
for _package in ("numpy.core", "numpy._core"):
    _REAL_GLOBALS[f"{_package}.multiarray:_reconstruct"] = _multiarray._reconstruct
    _REAL_GLOBALS[f"{_package}.multiarray:scalar"] = _multiarray.scalar
    _REAL_GLOBALS[f"{_package}.numeric:_frombuffer"] = _numeric._frombuffer  # type: ignore[attr-defined]


class _SymbolicUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, references: list[str]) -> None:
        super().__init__(file)
        self._stand_ins: dict[str, _StandInMeta] = {}
        self.references = references

    def find_class(self, module: str, name: str) -> Any:
        target = f"{module}:{name}"
        self.references.append(target)
        if target in _REAL_GLOBALS:
            return _REAL_GLOBALS[target]
        if target not in self._stand_ins:  # one stand-in class per global, made when first met
            self._stand_ins[target] = _StandInMeta(name, (_Node,), {"target": target})
        return self._stand_ins[target]

    # no persistent_load: pickle raises UnpicklingError for a persistent reference


def decode(raw: bytes, references: list[str] | None = None) -> Any:
    """Parse pickle bytes into plain values and inert :class:`_Node` stand-ins; nothing named in them runs.

    :param references: a list that gets the ``"module:name"`` of every global the pickle refers to (for reports)
    :raises pickle.UnpicklingError: for bytes that are not a well-formed pickle (also ``EOFError`` when truncated)
    :raises RefusedContent: for a pickle that the stand-ins cannot follow (it is not plain data)
    """
    try:
        return _SymbolicUnpickler(io.BytesIO(raw), [] if references is None else references).load()
    except (pickle.UnpicklingError, EOFError):
        raise
    except Exception as exc:
        raise RefusedContent(f"a pickle that is not plain data ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------------- allow-list

_ALLOWED_PACKAGES = ("torch.nn", "torch.optim", "stable_baselines3", "sb3_contrib", "sbx_lecture")


def _registered() -> list[AlgorithmSpec]:
    """The registered algorithms; none when the plugin set is broken (that must not open the allow-list, only narrow
    it)."""
    from sbx_lecture.plugins import get_plugin_manager

    with suppress(Exception):
        return list(get_plugin_manager().registry)
    return []


def registered_classes() -> dict[type[BaseAlgorithm], str]:
    """Every registered algorithm class that imports, with its registry name (a file never names what is imported)."""
    from sbx_lecture.registry import RegistryError

    classes: dict[type[BaseAlgorithm], str] = {}
    for spec in _registered():
        with suppress(RegistryError, ImportError):
            classes.setdefault(spec.load(), spec.name)
    return classes


def resolve_class(target: str) -> type:
    """The class ``"module:qualname"`` if the allow-list admits it, else :class:`RefusedContent`.

    Admitted: numpy's scalar types (``numpy:float32``, a dtype given as a type), and classes deriving from
    ``torch.nn.Module`` (activations, policies, features extractors), ``torch.optim.Optimizer`` or SB3's
    ``BaseBuffer``, defined in torch.nn, torch.optim, stable_baselines3, sb3_contrib, sbx_lecture or the top-level
    package of a registered algorithm. No other module is imported.
    """
    import torch as th
    from stable_baselines3.common.buffers import BaseBuffer

    module_name, _, qualname = target.partition(":")
    numpy_type = getattr(np, qualname, None) if module_name == "numpy" else None
    if isinstance(numpy_type, type) and issubclass(numpy_type, np.generic):
        return numpy_type
    # the registered algorithms' packages, read from their targets: nothing is imported to decide
    allowed = (*_ALLOWED_PACKAGES, *sorted({spec.target_path.split(":")[0].split(".")[0] for spec in _registered()}))
    if not qualname or "<" in qualname or not any(module_name == p or module_name.startswith(p + ".") for p in allowed):
        raise RefusedContent(f"class {target} (outside the allow-list)")
    try:
        obj = pkgutil.resolve_name(target)
    except (ImportError, AttributeError, ValueError):
        raise RefusedContent(f"class {target} (not found)") from None
    if not (isinstance(obj, type) and issubclass(obj, (th.nn.Module, th.optim.Optimizer, BaseBuffer))):
        raise RefusedContent(f"{target} (not an allowed class)")
    return obj


def class_path(cls: type) -> str:
    """``"module:qualname"`` of a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


# --------------------------------------------------------------------------------------------------- rebuilding


#: Classes whose instances a pickle may rebuild as pickle itself does (called or created with ``__new__``, then
#: given their items and their state), but from plain data only: containers, gymnasium's standard spaces, SB3's
#: schedules, ``TrainFreq``, ``RunningMeanStd`` and action noise. Their constructors and ``__setstate__`` only
#: store what they are given.
_PLAIN_CLASSES = {
    "collections:deque",
    "collections:OrderedDict",
    "builtins:set",
    "builtins:frozenset",
    "gymnasium.spaces.box:Box",
    "gymnasium.spaces.discrete:Discrete",
    "gymnasium.spaces.multi_discrete:MultiDiscrete",
    "gymnasium.spaces.multi_binary:MultiBinary",
    "gymnasium.spaces.dict:Dict",
    "gymnasium.spaces.tuple:Tuple",
    "stable_baselines3.common.utils:FloatSchedule",
    "stable_baselines3.common.utils:ConstantSchedule",
    "stable_baselines3.common.utils:LinearSchedule",
    "stable_baselines3.common.type_aliases:TrainFrequencyUnit",
    "stable_baselines3.common.type_aliases:TrainFreq",
    "stable_baselines3.common.running_mean_std:RunningMeanStd",
    "stable_baselines3.common.noise:NormalActionNoise",
    "stable_baselines3.common.noise:OrnsteinUhlenbeckActionNoise",
    "stable_baselines3.common.noise:VectorizedActionNoise",
}
#: State entries holding a random generator (a space's): not rebuilt, the object seeds a fresh one when it needs it.
_RANDOM_STATE = ("_np_random", "np_random")


def _replay(node: _Node, path: str) -> Any:
    """An instance of an allowed class, rebuilt the way pickle would from the node's materialized contents."""
    cls = pkgutil.resolve_name(node.target)
    args = [_materialize(arg, f"{path}[{i}]") for i, arg in enumerate(node.args)]
    obj = cls(*args) if node.how == "call" else cls.__new__(cls, *args)
    if node.items:
        obj.extend(_materialize(node.items, f"{path}[]"))
    for key, value in node.entries:
        obj[_materialize(key, path)] = _materialize(value, f"{path}[{key!r}]")
    if node.state is None:
        return obj
    state = node.state
    if isinstance(state, dict):
        state = {key: None if key in _RANDOM_STATE else value for key, value in state.items()}
    state = _materialize(state, f"{path}.__dict__")
    if hasattr(obj, "__setstate__"):
        obj.__setstate__(state)
    elif isinstance(state, dict) and all(isinstance(key, str) for key in state):
        obj.__dict__.update(state)
    else:
        raise RefusedContent(f"{node.target} with a state that is not a dict")
    return obj


def _zoo_linear_schedule_from_node(node: _Node, path: str) -> Any:
    """rl_zoo3's ``SimpleLinearSchedule`` (progress_remaining · initial_value) as SB3's ``LinearSchedule`` to 0."""
    from stable_baselines3.common.utils import LinearSchedule

    return LinearSchedule(float(_materialize(node.state["initial_value"], path)), 0.0, 1.0)


#: ``__qualname__`` that :func:`sbx_lecture.hyperparams.linear_schedule` gives its schedule (every version so far).
_OUR_LINEAR = re.compile(r"linear_schedule\(([^()\s]+)\)")


def _function_from_node(node: _Node, path: str) -> Any:
    """A function pickled by value (cloudpickle's ``_make_function``) is code: it is never run. Only sbx-lecture's
    ``linear_schedule(X)`` is recognised, by the module and qualified name in its state, and rebuilt by our own
    :func:`~sbx_lecture.hyperparams.linear_schedule`; any other function is refused."""
    slots = node.state[1] if isinstance(node.state, tuple) and len(node.state) == 2 else None
    match = _OUR_LINEAR.fullmatch(str(slots.get("__qualname__"))) if isinstance(slots, dict) else None
    if match is None or slots.get("__module__") != "sbx_lecture.hyperparams":  # type: ignore[union-attr]
        raise RefusedContent(f"code pickled by value ({node.target})")
    from sbx_lecture.hyperparams import linear_schedule

    return linear_schedule(float(match.group(1)))


_RECIPES = {
    **dict.fromkeys(_PLAIN_CLASSES, _replay),
    "rl_zoo3.utils:SimpleLinearSchedule": _zoo_linear_schedule_from_node,
    "cloudpickle.cloudpickle:_make_function": _function_from_node,
}


#: Globals that pickles of plain data name and whose objects are dropped or never run: numpy's random generator
#: reconstructors (a space's generator, not rebuilt) and cloudpickle's helpers for a function pickled by value (of
#: which only sbx-lecture's ``linear_schedule`` is recognised, and rebuilt from our own code: see ``_RECIPES``).
_INERT_GLOBALS = {
    "numpy.random._pickle:__bit_generator_ctor",
    "numpy.random._pickle:__generator_ctor",
    "numpy.random._pickle:__randomstate_ctor",
    "numpy.random._pcg64:PCG64",
    "numpy.random._mt19937:MT19937",
    "numpy.random.bit_generator:SeedSequence",
    "numpy.random.bit_generator:__pyx_unpickle_SeedSequence",
    "cloudpickle.cloudpickle:_builtin_type",
    "cloudpickle.cloudpickle:_make_cell",
    "cloudpickle.cloudpickle:_make_empty_cell",
}


def allowed_global(target: str) -> bool:
    """Whether the global ``"module:name"`` is one that plain data may name: numpy's array reconstructors, a class
    with a recipe above, an inert global or a class :func:`resolve_class` admits."""
    with suppress(RefusedContent):
        return target in {*_REAL_GLOBALS, *_RECIPES, *_INERT_GLOBALS} or isinstance(resolve_class(target), type)
    return False


#: What a constructor or ``__setstate__`` of an allowed class raises for contents it cannot take.
_CONTENT_ERRORS = (LookupError, TypeError, ValueError, ArithmeticError, AssertionError, AttributeError, MemoryError)


def materialize(value: Any, path: str = "") -> Any:
    """Real objects from :func:`decode`'s tree, through the recipes for plain data only.

    :param value: what :func:`decode` returned (or a part of it)
    :param path: where ``value`` sits, for messages
    :raises RefusedContent: for anything that is not plain data or an allowed class
    """
    try:
        return _materialize(value, path)
    except RecursionError:
        raise RefusedContent("data nested too deeply") from None


def _materialize(value: Any, path: str) -> Any:
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.hasobject:
        raise RefusedContent("a numpy array or scalar of Python objects")
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic, np.dtype, np.ndarray)):
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_materialize(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else type(value)(items)
    if isinstance(value, dict):
        return {_materialize(k, path): _materialize(v, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, _StandInMeta):  # a class named by reference
        return resolve_class(value.target)
    if isinstance(value, _Node):
        recipe = _RECIPES.get(value.target)
        if recipe is None:
            raise RefusedContent(value.target)
        try:
            return recipe(value, path)
        except _CONTENT_ERRORS as exc:
            raise RefusedContent(f"{value.target} with unexpected contents ({type(exc).__name__})") from None
    raise RefusedContent(f"an object of type {type(value).__name__}")

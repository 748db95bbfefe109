"""Reading pickles without running them: a symbolic unpickler and an allow-listed rebuild of plain data.

:func:`decode` parses a pickle with an unpickler whose ``find_class`` never returns a real object except numpy's
array and dtype reconstructors (C functions that only build arrays from bytes) and a recorder standing in for
cloudpickle's ``_function_setstate``. Every other global the pickle names becomes an inert stand-in class; "calling"
it, creating it or setting its state only records what was asked. So nothing named in the file runs, whatever it
holds.

:func:`materialize` then turns that tree into real objects, but only through recipes for plain data: numpy arrays,
containers, gymnasium's standard spaces, SB3's schedules, rl-zoo3's ``SimpleLinearSchedule``, sbx-lecture's
``lin_X`` schedule (a function pickled by value, recognised by its module and name and rebuilt from our own code),
SB3's action noise, ``TrainFreq``, ``RunningMeanStd``, and *classes* (never instances) that :func:`resolve_class`
allows: torch.nn modules, torch.optim optimizers, SB3 / sb3-contrib classes and those of the packages of registered
algorithms. Anything else raises :class:`RefusedContent`, which names it.
"""

from __future__ import annotations

import collections
import importlib
import io
import pickle
import pickletools
import re
from typing import Any

import numpy as np

try:  # numpy 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

#: Numpy's array reconstructors (numpy 1 and 2 module paths): real objects for the pickle, as they only build arrays.
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {}
for _package in ("numpy.core", "numpy._core"):
    _NUMPY_GLOBALS[(f"{_package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _NUMPY_GLOBALS[(f"{_package}.multiarray", "scalar")] = _multiarray.scalar
    _NUMPY_GLOBALS[(f"{_package}.numeric", "_frombuffer")] = _numeric._frombuffer  # type: ignore[attr-defined]
_NUMPY_GLOBALS[("numpy", "ndarray")] = np.ndarray
_NUMPY_GLOBALS[("numpy", "dtype")] = np.dtype
_NUMPY_GLOBALS[("_codecs", "encode")] = lambda text, encoding="utf-8": str(text).encode(
    "latin1" if encoding == "latin1" else "utf-8"
)


class RefusedContent(Exception):
    """Something in a pickle that is not plain data: ``what`` says which global or construct."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _StandInMeta(type):
    """Metaclass of stand-ins: calling one (pickle's REDUCE) records the call instead of making anything."""

    _target: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        node: _Node = object.__new__(cls)  # type: ignore[arg-type]
        node._init(args, kwargs, "call")
        return node


class _Node(metaclass=_StandInMeta):
    """What a pickle built from a global: the global's name, the arguments, the state and items it was given."""

    _target = "(code pickled by value)"

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
        result = object.__new__(_Node)
        result._init(args, kwargs, "call")
        return result

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    @property
    def target(self) -> str:
        return type(self)._target


def _record_function_state(function: Any, state: Any) -> None:
    """Stands for cloudpickle's ``_function_setstate``: the state is only recorded on the function's stand-in."""
    if isinstance(function, _Node):
        function.__setstate__(state)


#: Globals a pickle gets as real objects: numpy's array reconstructors, and the recorder above.
_REAL_GLOBALS = {**_NUMPY_GLOBALS, ("cloudpickle.cloudpickle", "_function_setstate"): _record_function_state}


class _SymbolicUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self._stand_ins: dict[str, _StandInMeta] = {}

    def find_class(self, module: str, name: str) -> Any:
        real = _REAL_GLOBALS.get((module, name))
        if real is not None:
            return real
        target = f"{module}:{name}"
        if target not in self._stand_ins:
            self._stand_ins[target] = _StandInMeta(name, (_Node,), {"_target": target})
        return self._stand_ins[target]

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are not supported")


def decode(raw: bytes) -> Any:
    """Parse pickle bytes into plain values and inert :class:`_Node` stand-ins; nothing named in them runs.

    :raises pickle.UnpicklingError: for bytes that are not a well-formed pickle (also ``EOFError`` when truncated)
    :raises RefusedContent: for a pickle that the stand-ins cannot follow (it is not plain data)
    """
    try:
        return _SymbolicUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError):
        raise
    except Exception as exc:
        raise RefusedContent(f"a pickle that is not plain data ({type(exc).__name__}: {exc})") from None


def referenced_globals(raw: bytes) -> list[str]:
    """``"module:name"`` of every global a pickle refers to, read from its opcodes only (for reports)."""
    found: list[str] = []
    strings: list[str] = []
    for opcode, argument, _ in pickletools.genops(raw):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(str(argument))
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}:{strings[-1]}")
        elif opcode.name in ("GLOBAL", "INST"):
            found.append(str(argument).replace(" ", ":", 1))
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------------------------------- allow-list

_ALLOWED_PACKAGES = ("torch.nn", "torch.optim", "stable_baselines3", "sb3_contrib", "sbx_lecture")


def _registered_packages() -> set[str]:
    try:
        from sbx_lecture.plugins import get_plugin_manager

        return {spec.target_path.split(":")[0].split(".")[0] for spec in get_plugin_manager().registry}
    except Exception:  # a broken plugin set must not open the allow-list; it only narrows it
        return set()


def _allowed_bases() -> tuple[type, ...]:
    import torch as th
    from stable_baselines3.common.buffers import BaseBuffer

    return (th.nn.Module, th.optim.Optimizer, BaseBuffer)


def resolve_class(target: str) -> type:
    """The class ``"module:qualname"`` if the allow-list admits it, else :class:`RefusedContent`.

    Admitted: classes deriving from ``torch.nn.Module`` (activations, policies, features extractors),
    ``torch.optim.Optimizer`` or SB3's ``BaseBuffer``, defined in torch.nn, torch.optim, stable_baselines3,
    sb3_contrib, sbx_lecture or the top-level package of a registered algorithm. No other module is imported.
    """
    module_name, _, qualname = target.partition(":")
    allowed = (*_ALLOWED_PACKAGES, *sorted(_registered_packages()))
    if not qualname or "<" in qualname or not any(module_name == p or module_name.startswith(p + ".") for p in allowed):
        raise RefusedContent(f"class {target} (outside the allow-list)")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise RefusedContent(f"class {target} (not found)") from None
    if not (isinstance(obj, type) and issubclass(obj, _allowed_bases())):
        raise RefusedContent(f"{target} (not an allowed class)")
    return obj


def class_path(cls: type) -> str:
    """``"module:qualname"`` of a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


# --------------------------------------------------------------------------------------------------- rebuilding


def build_space(kind: str, parts: dict[str, Any]) -> Any:
    """A standard gymnasium space from its parts (``kind`` is the class name)."""
    from gymnasium import spaces

    if kind == "Box":
        dtype = np.dtype(parts["dtype"])
        low, high = np.asarray(parts["low"], dtype=dtype), np.asarray(parts["high"], dtype=dtype)
        return spaces.Box(low=low, high=high, shape=tuple(parts["shape"]), dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(parts["n"]), start=int(parts.get("start", 0)))
    if kind == "MultiDiscrete":
        dtype = np.dtype(parts.get("dtype", "int64"))
        start = parts.get("start")
        return spaces.MultiDiscrete(
            np.asarray(parts["nvec"], dtype=dtype), dtype=dtype, start=None if start is None else np.asarray(start)
        )
    if kind == "MultiBinary":
        n = parts["n"]
        return spaces.MultiBinary(int(n) if np.ndim(n) == 0 else [int(v) for v in np.asarray(n).ravel()])
    if kind == "Dict":
        return spaces.Dict(collections.OrderedDict(parts["spaces"]))
    if kind == "Tuple":
        return spaces.Tuple(tuple(parts["spaces"]))
    raise RefusedContent(f"space {kind} (not a standard gymnasium space)")


_SPACE_TARGETS = {
    f"gymnasium.spaces.{module}:{name}": name
    for module, name in (
        ("box", "Box"),
        ("discrete", "Discrete"),
        ("multi_discrete", "MultiDiscrete"),
        ("multi_binary", "MultiBinary"),
        ("dict", "Dict"),
        ("tuple", "Tuple"),
    )
}


def _space_from_node(node: _Node, path: str) -> Any:
    state = node.state if isinstance(node.state, dict) else {}
    kind = _SPACE_TARGETS[node.target]
    wanted = {
        "Box": ("dtype", "_shape", "low", "high"),
        "Discrete": ("n", "start"),
        "MultiDiscrete": ("nvec", "dtype", "start"),
        "MultiBinary": ("n",),
        "Dict": ("spaces",),
        "Tuple": ("spaces",),
    }[kind]
    parts = {key.lstrip("_"): _materialize(state[key], f"{path}.{key}") for key in wanted if key in state}
    return build_space(kind, parts)


def _schedule_from_node(node: _Node, path: str) -> Any:
    from stable_baselines3.common import utils

    state = {k: _materialize(v, f"{path}.{k}") for k, v in (node.state or {}).items()}
    name = node.target.split(":")[1]
    if name == "FloatSchedule":
        return utils.FloatSchedule(state["value_schedule"])
    if name == "ConstantSchedule":
        return utils.ConstantSchedule(float(state["val"]))
    if name == "LinearSchedule":
        return utils.LinearSchedule(float(state["start"]), float(state["end"]), float(state["end_fraction"]))
    # rl_zoo3's SimpleLinearSchedule: progress_remaining · initial_value, i.e. linear from initial_value to 0
    return utils.LinearSchedule(float(state["initial_value"]), 0.0, 1.0)


def _container_from_node(node: _Node, path: str) -> Any:
    name = node.target.split(":")[1]
    args = [_materialize(a, f"{path}[{i}]") for i, a in enumerate(node.args)]
    items = [_materialize(item, f"{path}[]") for item in node.items]
    entries = [(_materialize(k, path), _materialize(v, f"{path}[{k!r}]")) for k, v in node.entries]
    if name == "deque":
        maxlen = args[1] if len(args) > 1 else None
        return collections.deque([*(args[0] if args else []), *items], maxlen=maxlen)
    if name == "OrderedDict":
        return collections.OrderedDict([*(args[0] if args else []), *entries])
    if name in ("set", "frozenset"):
        return {"set": set, "frozenset": frozenset}[name]([*(args[0] if args else []), *items])
    raise RefusedContent(node.target)


def _other_from_node(node: _Node, path: str) -> Any:
    if node.target == "stable_baselines3.common.type_aliases:TrainFrequencyUnit":
        from stable_baselines3.common.type_aliases import TrainFrequencyUnit

        return TrainFrequencyUnit(str(_materialize(node.args[0], path)))
    if node.target == "stable_baselines3.common.type_aliases:TrainFreq":
        from stable_baselines3.common.type_aliases import TrainFreq

        frequency, unit = (_materialize(a, path) for a in node.args)
        return TrainFreq(int(frequency), unit)
    if node.target == "stable_baselines3.common.running_mean_std:RunningMeanStd":
        from stable_baselines3.common.running_mean_std import RunningMeanStd

        state = node.state or {}
        mean = np.asarray(_materialize(state["mean"], f"{path}.mean"), dtype=np.float64)
        rms = RunningMeanStd(shape=mean.shape)
        rms.mean, rms.var = mean, np.asarray(_materialize(state["var"], f"{path}.var"), dtype=np.float64)
        rms.count = float(_materialize(state["count"], f"{path}.count"))
        return rms
    raise RefusedContent(node.target)


#: ``__qualname__`` that :func:`sbx_lecture.hyperparams.linear_schedule` gives its schedule (every version so far).
_OUR_LINEAR = re.compile(r"linear_schedule\(([^()\s]+)\)")


def _function_from_node(node: _Node, path: str) -> Any:
    """A function pickled by value (cloudpickle's ``_make_function``) is code: it is never run. Only sbx-lecture's
    ``linear_schedule(X)`` is recognised, by the module and qualified name in its state, and rebuilt by our own
    :func:`~sbx_lecture.hyperparams.linear_schedule`; any other function is refused."""
    slots = node.state[1] if isinstance(node.state, tuple) and len(node.state) == 2 else None
    match = _OUR_LINEAR.fullmatch(str(slots.get("__qualname__"))) if isinstance(slots, dict) else None
    if match is None or slots.get("__module__") != "sbx_lecture.hyperparams":  # type: ignore[union-attr]
        raise RefusedContent(node.target)
    from sbx_lecture.hyperparams import linear_schedule

    return linear_schedule(float(match.group(1)))


#: Plain classes of SB3 whose state is only arrays and numbers: rebuilt as ``object.__new__`` plus their state.
_PLAIN_OBJECTS = {
    f"stable_baselines3.common.noise:{name}"
    for name in ("NormalActionNoise", "OrnsteinUhlenbeckActionNoise", "VectorizedActionNoise")
}


def _plain_object_from_node(node: _Node, path: str) -> Any:
    module_name, _, name = node.target.partition(":")
    cls = getattr(importlib.import_module(module_name), name)
    state = _materialize(node.state, f"{path}.__dict__")
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise RefusedContent(f"{node.target} with a state that is not a dict")
    obj = object.__new__(cls)
    obj.__dict__.update(state)
    return obj


_RECIPES = {
    "cloudpickle.cloudpickle:_make_function": _function_from_node,
    **dict.fromkeys(_PLAIN_OBJECTS, _plain_object_from_node),
    **dict.fromkeys(_SPACE_TARGETS, _space_from_node),
    **dict.fromkeys(
        [
            "stable_baselines3.common.utils:FloatSchedule",
            "stable_baselines3.common.utils:ConstantSchedule",
            "stable_baselines3.common.utils:LinearSchedule",
            "rl_zoo3.utils:SimpleLinearSchedule",
        ],
        _schedule_from_node,
    ),
    **dict.fromkeys(
        ["collections:deque", "collections:OrderedDict", "builtins:set", "builtins:frozenset"], _container_from_node
    ),
    **dict.fromkeys(
        [
            "stable_baselines3.common.type_aliases:TrainFrequencyUnit",
            "stable_baselines3.common.type_aliases:TrainFreq",
            "stable_baselines3.common.running_mean_std:RunningMeanStd",
        ],
        _other_from_node,
    ),
}


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
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic, np.dtype)):
        if isinstance(value, np.generic) and value.dtype == object:
            raise RefusedContent("a numpy object scalar")
        return value
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise RefusedContent("a numpy array of Python objects")
        return value
    if isinstance(value, (list, tuple)):
        items = [_materialize(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {_materialize(k, path): _materialize(v, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, _StandInMeta):  # a class named by reference
        module_name, _, name = value._target.partition(":")
        numpy_type = getattr(np, name, None) if module_name == "numpy" else None
        if isinstance(numpy_type, type) and issubclass(numpy_type, np.generic):  # a dtype given as np.float32
            return numpy_type
        return resolve_class(value._target)
    if isinstance(value, _Node):
        recipe = _RECIPES.get(value.target)
        if recipe is None:
            raise RefusedContent(value.target)
        try:
            return recipe(value, path)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise RefusedContent(f"{value.target} with unexpected contents ({type(exc).__name__})") from None
    raise RefusedContent(f"an object of type {type(value).__name__}")

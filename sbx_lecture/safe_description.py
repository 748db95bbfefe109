"""Plain-JSON descriptions of the values SB3 would pickle into a model's ``data``, and their allow-listed rebuild.

A description is JSON; values that JSON cannot hold are tagged dicts ``{"$type": ..., ...}``: ``class`` (a
``"module:qualname"`` checked against :func:`sbx_lecture.safe_pickle.resolve_class` when read), ``ndarray`` (dtype,
shape, base64 bytes), ``scalar``, ``tuple``, ``dict`` (non-string keys), ``deque``, ``space`` (a standard gymnasium
space by its parts), ``schedule`` (constant, linear, SB3's float wrapper, sbx-lecture's ``lin_X``) and
``train_freq``.
"""

from __future__ import annotations

import base64
import collections
from typing import Any

import numpy as np

from sbx_lecture.safe_pickle import RefusedContent, build_space, class_path, resolve_class

_TAG = "$type"
_SPACE_PARTS = {
    "Box": ("low", "high", "shape", "dtype"),
    "Discrete": ("n", "start"),
    "MultiDiscrete": ("nvec", "dtype", "start"),
    "MultiBinary": ("n",),
    "Dict": ("spaces",),
    "Tuple": ("spaces",),
}


class DescriptionError(Exception):
    """A value that has no description, or a description that does not rebuild."""


def _is_our_linear(value: Any) -> bool:
    return (
        callable(value)
        and getattr(value, "__module__", None) == "sbx_lecture.hyperparams"
        and str(getattr(value, "__qualname__", "")).startswith("linear_schedule(")
    )


def _describe_schedule(value: Any) -> dict[str, Any] | None:
    from stable_baselines3.common import utils

    if isinstance(value, utils.FloatSchedule):
        return {_TAG: "schedule", "kind": "float", "inner": describe_value(value.value_schedule)}
    if isinstance(value, utils.ConstantSchedule):
        return {_TAG: "schedule", "kind": "constant", "value": describe_value(value.val)}
    if isinstance(value, utils.LinearSchedule):
        parts = {key: describe_value(getattr(value, key)) for key in ("start", "end", "end_fraction")}
        return {_TAG: "schedule", "kind": "linear", **parts}
    if _is_our_linear(value):
        return {_TAG: "schedule", "kind": "lin", "start": float(value.__qualname__[len("linear_schedule(") : -1])}
    return None


def describe_value(value: Any) -> Any:
    """Plain JSON for ``value``.

    :raises DescriptionError: for a value with no description (a lambda, an arbitrary object, ...)
    """
    from gymnasium import spaces
    from stable_baselines3.common.type_aliases import TrainFreq

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise DescriptionError("object array")
        data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
        return {_TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "data": data}
    if isinstance(value, np.generic):
        return {_TAG: "scalar", "value": describe_value(np.asarray(value))}
    if isinstance(value, type):
        return {_TAG: "class", "path": class_path(value)}
    if isinstance(value, TrainFreq):
        return {_TAG: "train_freq", "frequency": int(value.frequency), "unit": value.unit.value}
    if isinstance(value, collections.deque):
        return {_TAG: "deque", "items": [describe_value(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [describe_value(v) for v in value]}
    if isinstance(value, list):
        return [describe_value(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and _TAG not in value:
            return {k: describe_value(v) for k, v in value.items()}
        return {_TAG: "dict", "items": [[describe_value(k), describe_value(v)] for k, v in value.items()]}
    if (
        isinstance(value, spaces.Space)
        and type(value).__name__ in _SPACE_PARTS
        and type(value).__module__.startswith("gymnasium.spaces")
    ):
        kind = type(value).__name__
        parts: dict[str, Any] = {}
        if kind in ("Dict", "Tuple"):
            inner = value.spaces  # type: ignore[attr-defined]
            parts["spaces"] = dict(inner) if kind == "Dict" else list(inner)
        for key in _SPACE_PARTS[kind]:
            if key not in parts and hasattr(value, key):
                attribute = getattr(value, key)
                parts[key] = str(attribute) if key == "dtype" else attribute
        return {_TAG: "space", "kind": kind, **{k: describe_value(v) for k, v in parts.items()}}
    schedule = _describe_schedule(value)
    if schedule is not None:
        return schedule
    raise DescriptionError(f"no description for {type(value).__qualname__}")


def _schedule(description: dict[str, Any], path: str) -> Any:
    from stable_baselines3.common import utils

    kind = description["kind"]
    if kind == "float":
        return utils.FloatSchedule(_decode(description["inner"], path))
    if kind == "constant":
        return utils.ConstantSchedule(float(description["value"]))
    if kind == "linear":
        return utils.LinearSchedule(
            float(description["start"]), float(description["end"]), float(description["end_fraction"])
        )
    if kind == "lin":
        from sbx_lecture.hyperparams import linear_schedule

        return linear_schedule(float(description["start"]))
    raise DescriptionError(f"unknown schedule kind {kind!r}")


def _tagged(value: dict[str, Any], path: str) -> Any:
    tag = value[_TAG]
    if tag == "ndarray":
        dtype = np.dtype(value["dtype"])
        if dtype.hasobject:
            raise DescriptionError("object array")
        return np.frombuffer(base64.b64decode(value["data"]), dtype=dtype).reshape(value["shape"]).copy()
    if tag == "scalar":
        return _decode(value["value"], path)[()]
    if tag == "class":
        return resolve_class(str(value["path"]))
    if tag == "train_freq":
        from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

        return TrainFreq(int(value["frequency"]), TrainFrequencyUnit(value["unit"]))
    if tag == "deque":
        return collections.deque([_decode(v, path) for v in value["items"]], maxlen=value["maxlen"])
    if tag == "tuple":
        return tuple(_decode(v, path) for v in value["items"])
    if tag == "dict":
        return {_decode(k, path): _decode(v, path) for k, v in value["items"]}
    if tag == "space":
        parts = {k: _decode(v, f"{path}.{k}") for k, v in value.items() if k not in (_TAG, "kind")}
        return build_space(str(value["kind"]), parts)
    if tag == "schedule":
        return _schedule(value, path)
    raise DescriptionError(f"unknown description type {tag!r}")


def decode_described(value: Any, path: str = "") -> Any:
    """The value a :func:`describe_value` description stands for.

    :raises DescriptionError: for a malformed description
    :raises RefusedContent: for a class outside the allow-list
    """
    try:
        return _decode(value, path)
    except RecursionError:
        raise DescriptionError("description nested too deeply") from None


def _decode(value: Any, path: str = "") -> Any:
    if isinstance(value, list):
        return [_decode(v, path) for v in value]
    if isinstance(value, dict):
        if _TAG not in value:
            return {k: _decode(v, f"{path}[{k!r}]") for k, v in value.items()}
        try:
            return _tagged(value, path)
        except RefusedContent:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise DescriptionError(f"malformed description ({type(exc).__name__}: {exc})") from None
    return value

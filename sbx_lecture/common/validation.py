"""Checks of user-given values with one uniform message: ``<name> must be <rule>, got <value>``.

Every check raises :class:`InvalidValueError` (a ``ValueError``), whose message names the value and what it must be,
so the command line can print it as one line and an SB3 user sees a plain ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class InvalidValueError(ValueError):
    """A value outside what its name allows."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def require_integer(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (``bool`` and fractional numbers refused), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise InvalidValueError(f"{name} must be an integer, got {_shown(value)}")
    number = int(value)
    if minimum is not None and number < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise InvalidValueError(f"{name} must be {rule}, got {_shown(value)}")
    return number


def require_number(
    name: str, value: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False
) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidValueError(f"{name} must be a number, got {_shown(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValueError(f"{name} must be a finite number, got {_shown(value)}")
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and number > high
    if below or above:
        left = "(" if low_open else "["
        bounds = f"{left}{'-inf' if low is None else low:g}, {'inf' if high is None else high:g}]"
        raise InvalidValueError(f"{name} must be in {bounds}, got {_shown(value)}")
    return number


def require_finite_values(name: str, value: Any) -> None:
    """Refuse NaN and infinities anywhere inside ``value`` (numbers, lists, tuples, dicts)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidValueError(f"{name} must be a finite number, got {_shown(value)}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            require_finite_values(f"{name}[{key!r}]", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            require_finite_values(f"{name}[{index}]", item)


#: Constructor arguments shared by SB3's algorithms and ours, with the range SB3's semantics allow. Values that are
#: schedules (callables) are not checked here: the algorithm sees them per update; nor is ``None``, which some
#: algorithms take as a setting (DPG's ``buffer_size=None``: online updates) and the others refuse themselves.
COMMON_RANGES: dict[str, tuple[str, float, float | None]] = {
    "n_steps": ("integer", 1, None),
    "batch_size": ("integer", 1, None),
    "n_epochs": ("integer", 1, None),
    "buffer_size": ("integer", 1, None),
    "learning_starts": ("integer", 0, None),
    "gradient_steps": ("integer", -1, None),
    "target_update_interval": ("integer", 1, None),
    "gamma": ("number", 0.0, 1.0),
    "gae_lambda": ("number", 0.0, 1.0),
    "tau": ("number", 0.0, 1.0),
}


def check_common_arguments(arguments: Mapping[str, Any]) -> None:
    """Check the arguments of :data:`COMMON_RANGES` that are given as plain values, and NaN/inf everywhere."""
    for key, value in arguments.items():
        require_finite_values(key, value)
        rule = COMMON_RANGES.get(key)
        if rule is None or value is None or callable(value):
            continue
        kind, low, high = rule
        if kind == "integer":
            require_integer(key, value, int(low))
        else:
            require_number(key, value, low, high)

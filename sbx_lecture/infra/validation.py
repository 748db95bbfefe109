"""Checks of user-given values with one uniform message: ``<name> must be <rule>, got <value>``.

Every check raises :class:`InvalidValueError` (a ``ValueError``), whose message names the value and what it must be,
so the command line can print it as one line and an SB3 user sees a plain ``ValueError``.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any, NoReturn

#: Exit statuses of every command: a refused input, and a stop by Ctrl-C or SIGTERM.
USAGE_ERROR_STATUS, INTERRUPTED_STATUS = 2, 130


class InvalidValueError(ValueError):
    """A value outside what its name allows."""


class InvalidValueAssertion(InvalidValueError, AssertionError):
    """A value that the SB3 sibling refuses with an ``assert``: an ``AssertionError`` too, so that code written for
    the sibling (``pytest.raises(AssertionError)``, the RL Zoo's pruning) catches it as it would the sibling's."""


def one_line(error: BaseException | str, limit: int | None = None, *, typed: bool = False) -> str:
    """The message of ``error`` on one line (its type's name when it has none), as the command line prints it: the one
    way an exception (or a long text, such as a value's ``repr``) becomes one line.

    :param error: the exception, or a text
    :param limit: cut the text to this many characters, ending it with ``...``
    :param typed: put the exception's type in front: ``ValueError: message``
    """
    text = " ".join(str(error).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if typed and text else text or type(error).__name__


def _fail(name: str, rules: list[str], value: Any, error: type[InvalidValueError] = InvalidValueError) -> Exception:
    """``<name> must be <rule> or <rule>, got <value>``: the one message of every check."""
    return error(f"{name} must be {' or '.join(rules)}, got {one_line(repr(value), 60)}")


def require_integer(name: str, value: Any, minimum: int | None = None, *, optional: bool = False) -> Any:
    """``value`` as an ``int`` (``bool`` and fractional numbers refused), at least ``minimum`` when given.

    :param name: the argument's name, as the user wrote it
    :param value: its value
    :param minimum: the smallest allowed value
    :param optional: ``None`` is allowed too (and returned as is)
    :return: ``value`` as an ``int`` (or ``None``)
    """
    if optional and value is None:
        return None
    also = ["None"] if optional else []
    integral = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise _fail(name, ["an integer", *also], value)
    if minimum is not None and value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise _fail(name, [rule, *also], value)
    return int(value)


def require_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    schedule: bool = False,
    optional: bool = False,
    infinite: bool = False,
    error: type[InvalidValueError] = InvalidValueError,
) -> Any:
    """``value`` as a finite ``float`` in the range ``low``..``high`` (bounds excluded with ``low_open``/``high_open``).

    The rule in the message reads ``> 0``, ``>= 0``, ``<= 1`` for one bound and ``in (0, 1]`` for two.

    :param name: the argument's name, as the user wrote it
    :param value: its value
    :param low: the lower bound, if any
    :param high: the upper bound, if any
    :param low_open: whether ``low`` itself is refused
    :param high_open: whether ``high`` itself is refused
    :param schedule: a callable of the progress remaining is allowed too (returned as is: it is checked per use)
    :param optional: ``None`` is allowed too (and returned as is)
    :param infinite: ``±math.inf`` is allowed where the bounds allow it
    :param error: the exception raised for a number out of range (:class:`InvalidValueAssertion` where the SB3
        sibling asserts on it)
    :return: ``value`` as a ``float`` (or the schedule, or ``None``)
    """
    if (optional and value is None) or (schedule and callable(value)):
        return value
    also = [*(["a schedule"] if schedule else []), *(["None"] if optional else [])]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, ["a number", *also], value)
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not infinite):
        raise _fail(name, ["a finite number", *also], value)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        if low is not None and high is not None:
            rule = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            rule = f"{'>' if low_open else '>='} {low:g}"
        else:
            rule = f"{'<' if high_open else '<='} {high:g}"
        raise _fail(name, [rule, *also], value, error)
    return number


def require_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    :param name: the argument's name, as the user wrote it
    :param value: its value
    :param choices: the allowed values
    :return: ``value``
    """
    if value not in choices:
        raise _fail(name, ["one of " + ", ".join(repr(choice) for choice in choices)], value)
    return value


#: The rule of a rollout or minibatch whose advantages are normalized.
_TWO_ADVANTAGES = "at least 2 when normalize_advantage=True (one advantage cannot be normalized)"


def require_normalizable_rollout(n_steps: int, n_envs: int) -> None:
    """Refuse a rollout of a single transition when advantages are normalized: one advantage cannot be.

    :param n_steps: steps per environment per rollout
    :param n_envs: number of environments
    """
    if n_steps * n_envs < 2:  # SB3's PPO and sb3-contrib's TRPO assert this
        raise _fail("n_steps * n_envs", [_TWO_ADVANTAGES], n_steps * n_envs, InvalidValueAssertion)


def require_minibatch_size(batch_size: Any, normalize_advantage: bool) -> int:
    """``batch_size`` as a positive ``int``, at least 2 when advantages are normalized per minibatch.

    :param batch_size: the minibatch size
    :param normalize_advantage: whether each minibatch's advantages are normalized (one advantage cannot be)
    :return: ``batch_size`` as an ``int``
    """
    size = require_integer("batch_size", batch_size, 1)
    if normalize_advantage and size < 2:  # advantages are normalized per minibatch: SB3's PPO and TRPO assert this
        raise _fail("batch_size", [_TWO_ADVANTAGES], size, InvalidValueAssertion)
    return size


def require_finite_values(name: str, value: Any) -> None:
    """Refuse NaN and infinities anywhere inside ``value`` (numbers, lists, tuples, dicts)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(name, ["a finite number"], value)
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if isinstance(value, Mapping):
        for key, item in value.items():
            require_finite_values(f"{name}[{key!r}]", item)


#: Constructor arguments shared by SB3's algorithms and ours, with the range SB3's semantics allow: the integers'
#: minimums, and the numbers in [0, 1]. Values that are schedules (callables) are not checked here: the algorithm sees
#: them per update; nor is ``None``, which some algorithms take as a setting (DPG's ``buffer_size=None``: online
#: updates) and the others refuse themselves.
COMMON_INTEGER_MINIMUMS = {
    **dict.fromkeys(("n_steps", "batch_size", "n_epochs", "buffer_size", "target_update_interval"), 1),
    "learning_starts": 0,
    "gradient_steps": -1,  # SB3's -1: as many gradient steps as environment steps
}
COMMON_FRACTIONS = ("gamma", "gae_lambda", "tau")


def check_common_arguments(arguments: Mapping[str, Any]) -> None:
    """Check the arguments named above that are given as plain values, and NaN/inf everywhere."""
    for key, value in arguments.items():
        require_finite_values(key, value)
        if value is None or callable(value):
            continue
        if key in COMMON_INTEGER_MINIMUMS:
            require_integer(key, value, COMMON_INTEGER_MINIMUMS[key])
        elif key in COMMON_FRACTIONS:
            require_number(key, value, 0.0, 1.0)


def require_action_space(algorithm: Any, action_space: Any) -> None:
    """Refuse an action space ``algorithm`` does not declare in its ``supported_action_spaces``.

    The one check of every algorithm of ours: a ``ValueError`` that names the class, the space and the kinds it
    supports, then the class's ``action_space_hint`` (what to use instead); an ``AssertionError`` too, as SB3's
    ``BaseAlgorithm`` asserts the same.
    """
    supported = algorithm.supported_action_spaces
    if not isinstance(action_space, supported):
        names = ", ".join(space.__name__ for space in supported)
        raise InvalidValueAssertion(
            f"{algorithm.__name__} does not support the action space {action_space}: it supports {names}. "
            + getattr(algorithm, "action_space_hint", "")
        )


def is_action_space_error(error: BaseException) -> bool:
    """Whether ``error``, raised while building an algorithm, is its refusal of the action space (ours say so in
    :func:`require_action_space`'s words, SB3's own in its assertion)."""
    return re.search(r"action[ _]space", str(error), flags=re.IGNORECASE) is not None


def positive_integer(text: str) -> int:
    """argparse ``type`` of a count option: a positive integer (anything else is argparse's one-line refusal)."""
    return int(require_integer("a count", int(text), 1))


class CommandLineParser(argparse.ArgumentParser):
    """argparse with the command line's two rules: an option is never taken for a prefix of it (``--timestep`` is
    a mistake, not ``--timesteps``), and a refusal is one line with exit status 2 (no usage block above it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR_STATUS, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_command(
    program: str,
    command: Callable[[], int],
    errors: tuple[type[BaseException], ...],
    stopped: str,
    redact: Callable[[str], str] = str,
) -> int:
    """Run ``command`` and return its exit status; one of ``errors`` is told as one line (``program: error: ...``,
    through ``redact``) with :data:`USAGE_ERROR_STATUS` (``SBX_LECTURE_DEBUG=1`` raises it instead), and Ctrl-C or
    SIGTERM as ``program: stopped`` with :data:`INTERRUPTED_STATUS`."""
    try:
        return command()
    except errors as error:
        if os.environ.get("SBX_LECTURE_DEBUG"):
            raise
        print(f"{program}: error: {redact(one_line(error))}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"{program}: {stopped}", file=sys.stderr)
        return INTERRUPTED_STATUS

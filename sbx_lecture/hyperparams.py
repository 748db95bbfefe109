"""Typed hyperparameters from ``key=value`` text, as the RL Zoo writes them, without ``eval``.

Accepted values: Python literals (numbers, strings, booleans, ``None``, lists, tuples, dicts), ``lin_0.001`` (a
linear schedule from 0.001 to 0), ``dict(net_arch=[64, 64], activation_fn=nn.Tanh)`` with keyword arguments, and
the names of ``torch.nn`` activation functions and ``torch.optim`` optimizers (``nn.ReLU``, ``th.optim.Adam``).
Anything else is refused with a message that says what is allowed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sbx_lecture.infra.validation import one_line
from sbx_lecture.registry import did_you_mean

#: Attribute paths a value may name, mapped to (module, attribute); resolved only when used.
_ALLOWED_NAMES: dict[str, tuple[str, str]] = {}
for _prefix in ("nn", "th.nn", "torch.nn"):
    for _activation in ("ReLU", "Tanh", "ELU", "LeakyReLU", "SELU", "GELU", "SiLU", "Sigmoid", "Softplus", "Identity"):
        _ALLOWED_NAMES[f"{_prefix}.{_activation}"] = ("torch.nn", _activation)
for _prefix in ("optim", "th.optim", "torch.optim"):
    for _optimizer in ("Adam", "AdamW", "RMSprop", "SGD"):
        _ALLOWED_NAMES[f"{_prefix}.{_optimizer}"] = ("torch.optim", _optimizer)
_ALLOWED_CALLS = {"dict": dict, "list": list, "tuple": tuple}


class HyperparameterError(ValueError):
    """A ``key=value`` pair that cannot be parsed or is not accepted."""


def linear_schedule(initial_value: float) -> Callable[[float], float]:
    """``progress_remaining`` (1 → 0) ↦ ``progress_remaining * initial_value``, the zoo's ``lin_X``."""
    start = float(initial_value)

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * start

    schedule.__qualname__ = f"linear_schedule({start})"
    schedule.zoo_text = f"lin_{start}"  # type: ignore[attr-defined]
    return schedule


def parse_value(text: str) -> Any:
    """One hyperparameter value from its text (see the module docstring for what is accepted)."""
    text = text.strip()
    if text.startswith("lin_"):
        try:
            return linear_schedule(float(text[4:]))
        except ValueError:
            raise HyperparameterError(f"bad linear schedule {text!r}: expected lin_<number>, e.g. lin_0.001") from None
    try:
        tree = ast.parse(text, mode="eval")
        return text if isinstance(tree.body, ast.Name) else _evaluate(tree.body, text)  # a bare word: auto, MlpPolicy
    except HyperparameterError:
        raise
    except SyntaxError:
        if not text.isdigit():
            return text  # not Python at all: kept as text
        reason = f"an integer of {len(text)} digits"
    except (TypeError, ValueError, MemoryError, RecursionError) as exc:  # e.g. integers of more than 4300 digits
        reason = str(exc) or type(exc).__name__
    raise HyperparameterError(f"cannot parse {one_line(repr(text), 60)}: {reason}") from None


def _evaluate(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate(node.operand, text)
        if isinstance(operand, (int, float)):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_evaluate(element, text) for element in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_evaluate(k, text): _evaluate(v, text) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ALLOWED_CALLS:
        args = [_evaluate(arg, text) for arg in node.args]
        kwargs = {kw.arg: _evaluate(kw.value, text) for kw in node.keywords if kw.arg is not None}
        if len(kwargs) != len(node.keywords):
            raise HyperparameterError(f"cannot parse {text!r}: ** unpacking is not allowed")
        return _ALLOWED_CALLS[node.func.id](*args, **kwargs)
    if isinstance(node, (ast.Attribute, ast.Name)):
        dotted = ast.unparse(node)
        if dotted in _ALLOWED_NAMES:
            module, attribute = _ALLOWED_NAMES[dotted]
            return getattr(importlib.import_module(module), attribute)
        raise HyperparameterError(
            f"cannot parse {text!r}: {dotted!r} is not an allowed name (use nn.ReLU/nn.Tanh/... or th.optim.Adam/...)"
        )
    raise HyperparameterError(
        f"cannot parse {text!r}: use a number, string, bool, list, dict(...), lin_<number> or an nn activation"
    )


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    """``["n_steps=128", "learning_rate=lin_1e-3"]`` → ``{"n_steps": 128, "learning_rate": <schedule>}``."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        key = key.strip()
        if not separator or not key.isidentifier():
            raise HyperparameterError(f"bad hyperparameter {pair!r}: expected key=value, e.g. -p n_steps=256")
        if key in parsed:
            raise HyperparameterError(f"hyperparameter {key!r} is given twice: give each key once")
        parsed[key] = parse_value(value)
    return parsed


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON, written the way the RL Zoo writes it: ``lin_0.001`` for a linear schedule,
    ``nn.ReLU`` for a torch class, lists for tuples; anything else as its ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, type):
        for dotted, (module, attribute) in _ALLOWED_NAMES.items():
            if dotted.count(".") == 1 and value.__module__.startswith(module) and value.__name__ == attribute:
                return dotted
        return f"{value.__module__}.{value.__qualname__}"
    zoo_text = getattr(value, "zoo_text", None)
    return zoo_text if isinstance(zoo_text, str) else repr(value)


def describe_arguments(cls: type) -> list[tuple[str, str, str]]:
    """Every constructor argument of ``cls`` as (name, default, meaning), the meaning read from the ``:param:``
    fields of the reST docstrings of ``cls`` and its bases (the first class that documents a name wins)."""
    meanings: dict[str, str] = {}
    for klass in cls.__mro__:
        for match in _PARAM_FIELD.finditer(inspect.getdoc(klass) or ""):  # continuation lines joined
            meanings.setdefault(match[1], " ".join(match[2].split()))
    rows = []
    for name, parameter in inspect.signature(cls).parameters.items():
        if parameter.kind not in _NOT_KEYWORDS and not name.startswith("_"):
            default = "(required)" if parameter.default is parameter.empty else repr(parameter.default)
            rows.append((name, default, meanings.get(name, "")))
    return rows


#: Parameter kinds that a keyword argument cannot fill (``*args``, ``**kwargs`` and positional-only ones).
_NOT_KEYWORDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)


#: A ``:param [type] name: text`` field of a reST docstring: its text runs on to a blank line or the next field.
_PARAM_FIELD = re.compile(r"^[ \t]*:param\s+(?:[^:\n]*\s)?(\w+):((?:.|\n(?![ \t]*(?::|$)))*)", re.MULTILINE)


# --------------------------------------------------------------------------------------------------------------
# The one hyperparameter check: which keys of a zoo section (or of ``-p`` values) an algorithm accepts
# --------------------------------------------------------------------------------------------------------------

#: rl-zoo keys that ``train`` understands itself; they are not constructor arguments.
ZOO_KEYS = ("policy", "n_timesteps", "n_envs", "normalize", "noise_type", "noise_std", "env_kwargs")
#: rl-zoo keys that only the zoo itself applies.
ZOO_ONLY_KEYS = ("frame_stack", "env_wrapper", "callback", "vec_env_wrapper", "normalize_kwargs", "monitor_kwargs")
#: Every key of a zoo section that never reaches the algorithm's constructor.
SECTION_ONLY_KEYS = frozenset(ZOO_KEYS) | frozenset(ZOO_ONLY_KEYS)
#: The constructor arguments that each command sets from its own command line (the hyperparameters must not set
#: them), with the option that does.
_OPTIONS_OF_BOTH = {"seed": "--seed N", "verbose": "--verbose 1", "device": "--device cpu"}
COMMAND_LINE_OPTIONS: dict[str, dict[str, str]] = {
    "sbx-lecture train": {
        "env": "ALGO ENV",
        **_OPTIONS_OF_BOTH,
        "tensorboard_log": "--out DIR: the run folder holds the TensorBoard logs",
    },
    "sbx-lecture zoo train": {"env": "--env ID", **_OPTIONS_OF_BOTH, "tensorboard_log": "--tensorboard-log DIR"},
}
ZOO_COMMAND_LINE_KEYS = frozenset(COMMAND_LINE_OPTIONS["sbx-lecture zoo train"])
#: Keys whose ``lin_<value>`` strings the zoo turns into linear schedules (rl_zoo3's ``_preprocess_schedules``).
ZOO_SCHEDULE_KEYS = frozenset({"learning_rate", "clip_range", "clip_range_vf", "delta_std"})


def accepted_hyperparameters(algorithm: type) -> frozenset[str] | None:
    """The keyword arguments of ``algorithm``'s constructor, or ``None`` when it takes ``**kwargs``."""
    parameters = inspect.signature(algorithm).parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return frozenset(parameter.name for parameter in parameters if parameter.kind not in _NOT_KEYWORDS)


def check_hyperparameters(
    algorithm: type, hyperparams: Mapping[str, Any], where: str, command: str = "sbx-lecture train"
) -> None:
    """Raise :class:`HyperparameterError` naming every key of ``hyperparams`` that ``algorithm`` refuses, each with the
    reason, and the valid keys.

    Section-only keys (:data:`SECTION_ONLY_KEYS`) are accepted; ``noise_type`` only when the constructor takes
    ``action_noise``; the arguments ``command`` sets from its command line (:data:`COMMAND_LINE_OPTIONS`) are
    refused, and so is a ``lin_<value>`` string for a key the zoo does not turn into a schedule
    (:data:`ZOO_SCHEDULE_KEYS`).

    :param algorithm: the algorithm class
    :param hyperparams: the keys (and values) to check, as a zoo section or ``-p`` values give them
    :param where: what the keys come from, for the message (``"section 'CartPole-v1' of npg.yml"``)
    :param command: the command that reads them (``"sbx-lecture train"`` or ``"sbx-lecture zoo train"``), a key of
        :data:`COMMAND_LINE_OPTIONS`, whose options the message names
    """
    accepted = accepted_hyperparameters(algorithm)
    refused: dict[str, str] = {}
    for key, value in hyperparams.items():
        if key in ZOO_COMMAND_LINE_KEYS:
            option = COMMAND_LINE_OPTIONS[command][key]
            refused[key] = f"is set on the command line ({command} {option}), not by the hyperparameters"
        elif key == "noise_type" and value is not None and accepted is not None and "action_noise" not in accepted:
            refused[key] = f"becomes action_noise, which {algorithm.__name__} does not take"
        elif isinstance(value, str) and value.startswith("lin_") and key not in ZOO_SCHEDULE_KEYS:
            refused[key] = f"is a lin_ schedule, which the zoo builds only for {', '.join(sorted(ZOO_SCHEDULE_KEYS))}"
        elif key not in SECTION_ONLY_KEYS and accepted is not None and key not in accepted:
            hint = did_you_mean(key, sorted(accepted))
            refused[key] = f"is not an argument of {algorithm.__name__}{hint and f' ({hint})'}"
    if refused:
        reasons = "; ".join(f"{key!r} {reason}" for key, reason in refused.items())
        valid = sorted(((accepted or frozenset()) - ZOO_COMMAND_LINE_KEYS) | SECTION_ONLY_KEYS)
        raise HyperparameterError(
            f"Invalid hyperparameters for {algorithm.__module__}.{algorithm.__qualname__} in {where}: {reasons}. "
            f"Valid keys: {', '.join(key for key in valid if not key.startswith('_'))}"
        )

"""Typed hyperparameters from ``key=value`` text, as the RL Zoo writes them, without ``eval``.

Accepted values: Python literals (numbers, strings, booleans, ``None``, lists, tuples, dicts), ``lin_0.001`` (a
linear schedule from 0.001 to 0), ``dict(net_arch=[64, 64], activation_fn=nn.Tanh)`` with keyword arguments, and
the names of ``torch.nn`` activation functions and ``torch.optim`` optimizers (``nn.ReLU``, ``th.optim.Adam``).
Anything else is refused with a message that says what is allowed.
"""

from __future__ import annotations

import ast
import importlib
import math
from collections.abc import Callable, Iterable
from typing import Any

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
    except SyntaxError:
        if text.isdigit():  # an integer too long to convert
            raise HyperparameterError(f"cannot parse {_shorten(text)}: an integer of {len(text)} digits") from None
        return text  # a bare word such as auto or MlpPolicy
    except (ValueError, MemoryError, RecursionError) as exc:  # e.g. integers of more than 4300 digits
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HyperparameterError(f"cannot parse {_shorten(text)}: {reason}") from None
    if isinstance(tree.body, ast.Name) and tree.body.id not in ("True", "False", "None"):
        return text
    try:
        return _evaluate(tree.body, text)
    except (TypeError, ValueError, RecursionError) as exc:
        if isinstance(exc, HyperparameterError):
            raise
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HyperparameterError(f"cannot parse {_shorten(text)}: {reason}") from None


def _shorten(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


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
        if dotted in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[dotted]
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
    import inspect

    meanings: dict[str, str] = {}
    for klass in cls.__mro__:
        for name, text in _param_fields(inspect.getdoc(klass) or "").items():
            meanings.setdefault(name, text)
    rows = []
    for name, parameter in inspect.signature(cls).parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) or name.startswith("_"):
            continue
        default = "(required)" if parameter.default is inspect.Parameter.empty else repr(parameter.default)
        rows.append((name, default, meanings.get(name, "")))
    return rows


def _param_fields(docstring: str) -> dict[str, str]:
    """``:param name: text`` fields of a reST docstring, continuation lines joined."""
    fields: dict[str, str] = {}
    current: str | None = None
    for line in docstring.splitlines():
        stripped = line.strip()
        if stripped.startswith(":param "):
            name, _, text = stripped[len(":param ") :].partition(":")
            current = name.strip().split()[-1] if name.strip() else None
            if current is not None:
                fields[current] = text.strip()
        elif stripped.startswith(":") or not stripped:
            current = None
        elif current is not None:
            fields[current] = f"{fields[current]} {stripped}"
    return fields

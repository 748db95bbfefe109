"""Model state compared value by value: what a save/load round trip must keep, for the conformance kit's checks
(:mod:`sbx_lecture.testing`) and for tests."""

from __future__ import annotations

import contextlib
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sbx_lecture.infra.validation import one_line


def describe_error(exc: BaseException) -> str:
    """``Type: message (at file:line in function)`` for the innermost frame of ``exc``, on one line and in full
    (a load_state_dict error names the size mismatch after its long list of missing keys)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{one_line(exc, typed=True)}{where}"


def save_and_load(saved: Any, load: Callable[..., Any]) -> Any:
    """``saved`` (a model or a policy) written to a temporary file with its ``save`` and read back with ``load``."""
    with tempfile.TemporaryDirectory() as folder:
        saved.save(f"{folder}/saved.zip")
        return load(f"{folder}/saved.zip", device="cpu")


def same_predictions(a: Any, b: Any, obs: Any) -> bool:
    """Whether models (or policies) ``a`` and ``b`` predict the same deterministic actions on ``obs``."""
    return np.array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])


def same_values(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and compares arrays and (CPU) tensors element-wise."""
    with contextlib.suppress(TypeError):  # raised by the NaN test on what is not a number (a string, None)
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(a == b)


def list_differences(a: Any, b: Any, where: str, path: str = "") -> list[str]:
    """Where nested dicts, lists and tuples ``a`` and ``b`` (``b`` is ``a`` ``where``) differ."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        length = [f"{path.rstrip('.')} has {len(b)} entries {where}, {len(a)} before"] if len(a) != len(b) else []
        return length + list_differences(dict(enumerate(a)), dict(enumerate(b)), where, path)
    if isinstance(a, dict) and isinstance(b, dict):
        differences = [f"{path}{key} is missing {where}" for key in a if key not in b]
        for key in [key for key in a if key in b]:
            differences += list_differences(a[key], b[key], where, f"{path}{key}.")
        return differences
    if same_values(a, b):
        return []
    if isinstance(a, th.Tensor):
        return [f"{path.rstrip('.')} differs {where}"]
    return [f"{path.rstrip('.')} is {b!r} {where}, was {a!r}"]


def model_tensors(model: BaseAlgorithm) -> dict[str, Any]:
    """Every tensor of ``model``: its torch modules' state dicts, tensor attributes and ``get_parameters()``.

    The modules are read directly, not only through ``get_parameters()``, which sees just what
    ``_get_torch_save_params`` lists (the very list that may be incomplete).
    """
    modules = {key: value.state_dict() for key, value in vars(model).items() if isinstance(value, th.nn.Module)}
    tensors = {key: value.detach() for key, value in vars(model).items() if isinstance(value, th.Tensor)}
    return {**modules, **tensors, "get_parameters()": model.get_parameters()}


def scalar_attributes(model: BaseAlgorithm) -> dict[str, Any]:
    simple = (bool, int, float, str, type(None), np.integer, np.floating)
    return {key: value for key, value in vars(model).items() if isinstance(value, simple) and not key.startswith("__")}


def policy_settings(policy: th.nn.Module) -> dict[str, Any]:
    """What ``policy.save`` must keep besides the tensors: its features extractors and optimizer settings."""
    return {
        "features extractors": [
            type(module).__name__ for module in policy.modules() if isinstance(module, BaseFeaturesExtractor)
        ],
        "optimizer_class": getattr(policy, "optimizer_class", None),
        "optimizer_kwargs": getattr(policy, "optimizer_kwargs", None),
        "tensors": policy.state_dict(),
    }

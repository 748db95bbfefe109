"""Typed ``key=value`` hyperparameters, parsed safely."""

from __future__ import annotations

import pytest
import torch.nn as nn

from sbx_lecture.hyperparams import HyperparameterError, linear_schedule, parse_assignments, parse_value


def test_literals_and_words() -> None:
    parsed = parse_assignments(["n_steps=256", "lr=3e-4", "flag=True", "none=None", "sde=-1", "ent=auto", "l=[1, 2]"])
    assert parsed == {"n_steps": 256, "lr": 3e-4, "flag": True, "none": None, "sde": -1, "ent": "auto", "l": [1, 2]}


def test_linear_schedule() -> None:
    schedule = parse_value("lin_0.001")
    assert schedule(1.0) == pytest.approx(1e-3) and schedule(0.5) == pytest.approx(5e-4) and schedule(0.0) == 0.0
    assert linear_schedule(2.0)(0.25) == 0.5
    with pytest.raises(HyperparameterError, match="lin_<number>"):
        parse_value("lin_fast")


def test_policy_kwargs_with_activation() -> None:
    value = parse_value("dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh, ortho_init=False)")
    assert value == {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": nn.Tanh, "ortho_init": False}
    assert parse_value("th.nn.ReLU") is nn.ReLU


@pytest.mark.parametrize(
    "text", ["__import__('os').system('true')", "os.system", "dict(**x)", "open('f')", "1 + 2", "[x for x in y]"]
)
def test_arbitrary_code_is_refused(text: str) -> None:
    with pytest.raises(HyperparameterError):
        parse_value(text)


def test_malformed_pair() -> None:
    with pytest.raises(HyperparameterError, match="key=value"):
        parse_assignments(["n_steps"])
    with pytest.raises(HyperparameterError, match="key=value"):
        parse_assignments(["bad key=1"])

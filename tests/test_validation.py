"""The constructor checks of common/validation: one wording, ``<name> must be <rule>, got <value>``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sbx_lecture.infra.validation import (
    InvalidValueError,
    require_choice,
    require_integer,
    require_minibatch_size,
    require_normalizable_rollout,
    require_number,
)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: require_number("lr", -1.0, 0.0, low_open=True), "lr must be > 0, got -1.0"),
        (lambda: require_number("damping", -0.1, 0.0), "damping must be >= 0, got -0.1"),
        (lambda: require_number("clip", 2.0, high=1.0), "clip must be <= 1, got 2.0"),
        (lambda: require_number("gamma", 1.5, 0.0, 1.0), "gamma must be in [0, 1], got 1.5"),
        (lambda: require_number("rho", 1.0, 0.0, 1.0, low_open=True, high_open=True), "rho must be in (0, 1), got 1.0"),
        (lambda: require_number("lr", 0.0, 0.0, low_open=True, schedule=True), "lr must be > 0 or a schedule, got 0.0"),
        (
            lambda: require_number("lr", "lin_1", schedule=True, optional=True),
            "lr must be a number or a schedule or None",
        ),
        (lambda: require_number("x", math.nan), "x must be a finite number, got nan"),
        (lambda: require_number("x", math.inf, 1.0), "x must be a finite number, got inf"),
        (lambda: require_number("x", True), "x must be a number, got True"),
        (lambda: require_integer("n", 0, 1), "n must be a positive integer, got 0"),
        (lambda: require_integer("n", -2, -1), "n must be an integer of at least -1, got -2"),
        (lambda: require_integer("n", 0, 1, optional=True), "n must be a positive integer or None, got 0"),
        (lambda: require_integer("n", 1.5), "n must be an integer, got 1.5"),
        (lambda: require_choice("fisher", "lu", ("cg", "exact")), "fisher must be one of 'cg', 'exact', got 'lu'"),
        (lambda: require_minibatch_size(1, True), "batch_size must be at least 2 when normalize_advantage=True"),
        (lambda: require_normalizable_rollout(1, 1), "n_steps * n_envs must be at least 2 when normalize_advantage"),
    ],
)
def test_invalid_values_are_one_uniform_line(call, message):
    with pytest.raises(InvalidValueError) as error:
        call()
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)  # what an SB3 user catches


def test_valid_values_pass_and_come_back_converted():
    assert require_integer("n", np.int64(3), 1) == 3 and type(require_integer("n", 4.0, 1)) is int
    assert require_number("x", np.float32(0.5), 0.0, 1.0) == 0.5
    schedule = lambda progress: progress  # noqa: E731
    assert require_number("lr", schedule, 0.0, low_open=True, schedule=True) is schedule
    assert require_number("m", None, 0.0, optional=True) is None
    assert require_integer("b", None, 1, optional=True) is None
    assert require_number("rho", math.inf, 1.0, infinite=True) == math.inf
    assert require_choice("fisher", "cg", ("cg", "exact")) == "cg"
    require_normalizable_rollout(2, 1)
    assert require_minibatch_size(1, False) == 1

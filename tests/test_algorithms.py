"""Every registered algorithm, parametrised over the registry (plugins' included): it learns briefly on a suitable
environment, predicts, round-trips through save/load with identical predictions, works with ``evaluate_policy``,
``set_env`` and seeding, and declares (or is probed for) the action spaces it supports."""

from __future__ import annotations

import pytest

from sbx_lecture import get_algorithm, list_algorithms
from sbx_lecture.testing import check_algorithm

ALGORITHM_NAMES = [spec.name for spec in list_algorithms()]


def test_the_registry_covers_the_lecture() -> None:
    for name in ["npg", "tnpg", "trpo", "ppo", "ppo_kl", "a2c", "dpg", "ddpg", "td3", "sac", "sql", "dqn"]:
        assert name in ALGORITHM_NAMES


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_registered_algorithm_conforms(name: str) -> None:
    report = check_algorithm(get_algorithm(name))
    for check in ("learn", "predict", "save_load", "evaluate_policy", "set_env", "seeding"):
        assert check in report.passed, f"{name}: {check} did not run ({report})"

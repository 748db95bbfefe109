"""The allocator setting that keeps SQL's per-step temporaries in the process (sbx_lecture.infra.allocator)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sbx_lecture import SQL
from sbx_lecture.infra import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# In a fresh process: how much of a freed 16 MB tensor goes back to the kernel, with or without the setting.
_RELEASED_BYTES = """
import os, sys
import torch
from sbx_lecture.infra.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
tensor = torch.ones(4_000_000)
before = resident()
del tensor
print(before - resident())
"""


def _released(mode: str) -> int:
    env = {key: value for key, value in os.environ.items() if key not in allocator._USER_SETTINGS}
    output = subprocess.run(
        [sys.executable, "-c", _RELEASED_BYTES, mode], capture_output=True, text=True, check=True, env=env
    )
    return int(output.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_freed_tensor_memory_stays_in_the_process_once_kept() -> None:
    assert _released("default") > 12_000_000  # glibc hands a large freed block straight back (munmap)
    assert _released("keep") < 4_000_000  # kept for the next step's temporaries


@pytest.mark.parametrize("variable", ["MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD"])
def test_a_user_who_tunes_the_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "1")
    assert allocator._apply() is False


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The calls of the setting itself, in a process where it was not made yet (and is forgotten afterwards)."""
    made: list[int] = []
    allocator.keep_freed_memory.cache_clear()
    monkeypatch.setattr(allocator, "_apply", lambda: made.append(1) or True)
    yield made
    allocator.keep_freed_memory.cache_clear()


def test_it_is_applied_once_per_process(calls: list[int]) -> None:
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()
    assert calls == [1]


def test_sql_keeps_freed_memory_when_it_learns(calls: list[int]) -> None:
    SQL("MlpPolicy", "Pendulum-v1", learning_starts=10, batch_size=8, policy_kwargs=dict(net_arch=[8])).learn(20)
    assert calls == [1]

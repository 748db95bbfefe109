"""Test-wide settings: one torch thread per process (CI has two cores), headless plotting, Ctrl-C as on a terminal."""

import os
import signal

import matplotlib
import torch as th

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib.use("Agg")
th.set_num_threads(1)
# A shell that starts the tests in the background (`&`, nohup) leaves SIGINT ignored, and every process they start
# would inherit that: the tests that press Ctrl-C in a command would find it deaf. Python's own handler instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


import importlib  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from sbx_lecture.plugins import reset_plugin_manager  # noqa: E402


def write_distribution(
    site: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Write an installed-looking distribution into ``site``: ``<name>-<version>.dist-info`` with METADATA and
    ``entry_points.txt`` in the ``sbx_lecture`` group, plus the plugin modules' source files."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[sbx_lecture]\n{lines}\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return info


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """A temporary site folder on ``sys.path`` where tests install fake plugin distributions.

    The plugin manager is reset before and after, so each test sees exactly the plugins it installed.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = set(sys.modules)
    reset_plugin_manager()

    def install(name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
        info = write_distribution(site, name, version, entry_points, modules)
        importlib.invalidate_caches()
        return info

    yield install
    for module in set(sys.modules) - before:
        if getattr(sys.modules[module], "__file__", "") and str(site) in str(sys.modules[module].__file__):
            del sys.modules[module]
    reset_plugin_manager()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current folder for tests that run the command line (run folders are made relative to it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class MarkerPayload:
    """Unpickling this creates ``marker``: the stand-in for any code a malicious file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (Path(self.marker),)


@pytest.fixture
def payload_type() -> type[MarkerPayload]:
    """:class:`MarkerPayload`, for payload tests: ``pickle.dumps(payload_type(marker))`` never runs when loaded."""
    return MarkerPayload


#: The test machine's PostgreSQL server (CI has one too): trust authentication on 127.0.0.1.
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A freshly created database (no Optuna tables), dropped afterwards."""
    import secrets

    import psycopg

    name = f"sbx_test_{secrets.token_hex(6)}"
    with psycopg.connect(**POSTGRES, autocommit=True) as connection:  # type: ignore[arg-type]
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(**POSTGRES, autocommit=True) as connection:  # type: ignore[arg-type]
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

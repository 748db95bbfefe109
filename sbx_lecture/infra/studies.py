"""Optuna studies from a ``--storage`` text, for the zoo bridge (``sbx-lecture zoo train -optimize``, the plain zoo's
storages) and ``sbx-lecture sweep``: a journal file, a Redis journal or a database, created once and shared by
workers, with the storage's password masked in every message."""

from __future__ import annotations

import importlib.util
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any

from sbx_lecture.infra.validation import InvalidValueError

#: URL schemes of Optuna's Redis journal backend.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
#: Attempts at opening a database storage (creating its tables) before giving up (see :func:`open_study_storage`).
STUDY_CREATION_ATTEMPTS = 8
#: The package each storage scheme needs, and the ``pip install`` that brings it.
STORAGE_DRIVERS = {
    "postgresql": ("psycopg", "pip install 'sbx-lecture[zoo]' (or: pip install 'psycopg[binary]')"),
    "postgresql+psycopg": ("psycopg", "pip install 'psycopg[binary]'"),
    "postgresql+psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
    **dict.fromkeys(("redis", "rediss", "unix"), ("redis", "pip install 'sbx-lecture[zoo]' (or: pip install redis)")),
}


class StudyStorageError(InvalidValueError):
    """A storage that cannot be opened (its driver is missing, it cannot be reached), said in one line."""


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``postgresql://user:***@host/db``)."""
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^@/\s]*@", r"\1***@", text)


def open_study_storage(storage: str) -> Any:
    """An Optuna storage from the zoo's ``--storage``.

    A path ending in ``.log`` is a journal file, a ``redis://`` (``rediss://``, ``unix://``) URL a Redis journal, any
    other string a database URL (SQLAlchemy's; ``postgresql://`` uses psycopg 3). A Redis URL's ``?prefix=NAME``
    keeps the journal under keys ``NAME:...``, so that several journals can share one Redis database. Several
    processes started at once on a fresh database race to create Optuna's tables; the losers' attempts fail (a unique
    violation, a deadlock) and are retried after a short random pause (up to :data:`STUDY_CREATION_ATTEMPTS` times),
    when the tables exist.

    :raises StudyStorageError: when the driver of the storage's scheme is not installed
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

    if storage.endswith(".log") and "://" not in storage:
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage))
    driver = STORAGE_DRIVERS.get(storage.partition("://")[0].lower() if "://" in storage else "")
    if driver is not None and importlib.util.find_spec(driver[0]) is None:
        raise StudyStorageError(f"the storage {mask_url(storage)} needs the package {driver[0]!r}: {driver[1]}")
    if storage.startswith(REDIS_SCHEMES):
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(storage)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = "".join(value for key, value in query if key == "prefix")
        url = urlunsplit(parts._replace(query=urlencode([(key, value) for key, value in query if key != "prefix"])))
        with warnings.catch_warnings():  # "JournalRedisBackend is experimental", at every start of every worker
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            return JournalStorage(JournalRedisBackend(url, prefix=prefix))
    for attempt in range(1, STUDY_CREATION_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(storage)
        except Exception as error:
            if not _is_creation_race(error):
                raise
            time.sleep(random.uniform(0.1, 0.5) * attempt)
    return optuna.storages.RDBStorage(storage)


def ensure_study(storage: str, study_name: str, **options: Any) -> tuple[Any, bool]:
    """Create the study ``study_name`` in ``storage`` (and a database's tables) unless it exists, and open it.

    Of several processes that create it at once, one does and the others load it (Optuna's ``DuplicatedStudyError``).
    A storage that cannot be opened is a :class:`StudyStorageError` that names it, its password masked (a missing
    driver is said as :func:`open_study_storage` says it).

    :param options: for ``optuna.create_study``/``load_study`` (``sampler``, ``pruner``)
    :return: the study and whether it existed already
    """
    import optuna

    try:
        opened = open_study_storage(storage)
        try:
            return optuna.create_study(study_name=study_name, storage=opened, direction="maximize", **options), False
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=study_name, storage=opened, **options), True
    except StudyStorageError:
        raise
    except Exception as error:
        reason = mask_url(" ".join(str(error).split("\n")[0].split())) or type(error).__name__
        raise StudyStorageError(f"cannot open the Optuna storage {mask_url(storage)}: {reason}") from None


def _is_creation_race(error: Exception) -> bool:
    """Whether ``error``, a database's (SQLAlchemy's) error, is another process creating the same tables, type or
    study at the same time: a unique (duplicate) key, an object that already exists, a deadlock between the creators."""
    words = ("already exists", "duplicate", "unique", "deadlock")
    return type(error).__module__.startswith("sqlalchemy") and any(word in str(error).lower() for word in words)

"""Files written whole or not at all, with the user's permissions, and the one reader of our JSON records: the
bottom layer that loading, the run engine and the bench write through."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from sbx_lecture.infra.validation import one_line

#: Prefix of the temporary files :func:`atomic_write` makes; a crash can leave them, :func:`remove_stale` cleans up.
TEMPORARY_MARK = ".tmp"


def user_file_mode() -> int:
    """Permission bits a new file gets from the user's umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object], suffix: str = "") -> None:
    """Call ``write(temporary_path)``, flush it to disk, then rename it over ``path``: readers never see half a file.

    The file gets the permissions the user's umask gives a new file (not the 0600 of a temporary file).

    :param path: final location
    :param write: writes the whole file at the path it is given
    :param suffix: ending the temporary name needs (SB3 appends ``.zip`` to a name without it)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{TEMPORARY_MARK}{suffix}", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, user_file_mode())
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def write_json(path: str | os.PathLike[str], content: Any) -> None:
    """Write ``content`` as indented JSON, atomically."""
    write_text(path, json.dumps(content, indent=2))


def json_record(
    raw: str | bytes, where: str, fix: str, error: type[Exception] = ValueError, text_keys: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The JSON object ``raw`` holds, whose ``text_keys`` (where present) are text: the one reader of the run file,
    the metadata and ``data`` of a model zip, the settings of our ``.npz`` files and the manifest of a bundle.

    :param where: what ``raw`` is, for the message (``"run file runs/a2c_1/run.json"``)
    :param fix: what the user can do about a damaged one, appended to the message
    :param error: the exception to raise, with a one-line message
    """
    try:
        content = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise error(f"{where} is not JSON ({one_line(exc)}); {fix}") from None
    if not isinstance(content, dict):
        raise error(f"{where} holds a JSON {type(content).__name__}, not a JSON object; {fix}")
    for key in text_keys:
        if key in content and not isinstance(content[key], str):
            raise error(f"{where} has a {key!r} that is not text: {content[key]!r}; {fix}")
    return content


def write_npz(path: str | os.PathLike[str], arrays: dict[str, Any]) -> None:
    """Write ``arrays`` (numpy arrays, or what ``np.asarray`` takes) as an uncompressed ``.npz``, atomically."""
    atomic_write(path, lambda temporary: np.savez(temporary, **arrays), suffix=".npz")


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened)."""
    with suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

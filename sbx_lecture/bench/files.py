"""Atomic text and JSON writes for the benchmark's files (readers never see half a file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sbx_lecture.runs import atomic_write


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""

    def write(temporary: str) -> None:
        Path(temporary).write_text(text)

    atomic_write(path, write)


def write_json(path: Path, content: Any) -> None:
    """Write ``content`` as indented JSON, atomically."""
    write_text(path, json.dumps(content, indent=2))

"""setuptools' build backend, plus one file: ``sbx_lecture_zoo_hook.pth`` at the top of every wheel.

A ``.pth`` file must sit directly in ``site-packages``, which setuptools' configuration cannot express for both a
regular wheel and a PEP 660 editable one. This backend lets setuptools build either wheel, then adds the file (and
its line in ``RECORD``). The file's one line runs at every interpreter start-up and imports nothing: it puts a
finder on ``sys.meta_path`` that ignores every module but ``rl_zoo3``; that one it hands to
``_sbx_lecture_zoo_hook.find_spec``, which lets the plain RL Zoo see every registered algorithm (see that module).
The line is kept short: ``site`` compiles it at every start-up.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the rest of the PEP 517 / PEP 660 interface, unchanged)

PTH_NAME = "sbx_lecture_zoo_hook.pth"
PTH_CONTENT = (
    b'import sys; sys.meta_path.insert(0, type("SbxLectureZooFinder", (), {"find_spec": staticmethod('
    b'lambda n, p=None, t=None: n == "rl_zoo3" and __import__("_sbx_lecture_zoo_hook").find_spec(n) or None)})())\n'
)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def add_pth(wheel_path: str) -> None:
    """Add :data:`PTH_NAME` to the wheel at ``wheel_path`` and to its ``RECORD``, in place."""
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
    if PTH_NAME in names:
        return
    record = next(name for name in names if name.endswith(".dist-info/RECORD"))
    temporary = wheel_path + ".tmp"
    with zipfile.ZipFile(wheel_path) as source, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == record:
                data = data + _record_line(PTH_NAME, PTH_CONTENT).encode()
                target.writestr(PTH_NAME, PTH_CONTENT)
            target.writestr(item, data)
    os.replace(temporary, wheel_path)


def build_wheel(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    name: str = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    add_pth(os.path.join(wheel_directory, name))
    return name


def build_editable(wheel_directory: str, config_settings: Any = None, metadata_directory: Any = None) -> str:
    name: str = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    add_pth(os.path.join(wheel_directory, name))
    return name

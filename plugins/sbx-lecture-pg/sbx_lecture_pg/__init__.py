"""sbx-lecture-pg: the lecture's opening slides (REINFORCE, importance-sampled off-policy policy gradient) as an
sbx-lecture plugin.

The classes are imported on first access, so that ``sbx-lecture list`` (which imports :mod:`sbx_lecture_pg.plugin`)
never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sbx_lecture_pg.ispg import ISPG
    from sbx_lecture_pg.reinforce import REINFORCE

__version__ = "0.1.0"

_LAZY = {"REINFORCE": "sbx_lecture_pg.reinforce", "ISPG": "sbx_lecture_pg.ispg"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sbx_lecture_pg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["ISPG", "REINFORCE", "__version__"]

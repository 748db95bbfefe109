"""The one place our algorithm classes reach the safe loader: a ``load`` that never unpickles unless asked.

This is the lowest module of :mod:`sbx_lecture.loading` and imports nothing of sbx-lecture: the algorithm classes
inherit it, and ``load`` imports the loader (:mod:`sbx_lecture.loading.model`, which sits above the algorithms and
never imports one) when it is called. ``trusted=True`` goes through the same function, which hands the file to SB3's
own ``BaseAlgorithm.load``, so nothing in the loader needs to know this class.
"""

from __future__ import annotations

import io
import os
from typing import Any, TypeVar

SelfSafeLoad = TypeVar("SelfSafeLoad", bound="SafeLoadMixin")


class SafeLoadMixin:
    """Makes ``cls.load`` read model zips through :func:`sbx_lecture.loading.load` (nothing unpickled).

    Put it first among the bases: ``class TNPG(SafeLoadMixin, ClampedProgressMixin, OnPolicyAlgorithm)``.
    ``trusted=True`` uses Stable-Baselines3's own ``load``, which unpickles the file's pickled fields.
    """

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfSafeLoad],
        path: str | os.PathLike[str] | io.BufferedIOBase,
        env: Any = None,
        device: Any = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        trusted: bool = False,
        **kwargs: Any,
    ) -> SelfSafeLoad:
        """Load a model of this class from ``path`` (see :func:`sbx_lecture.loading.load`).

        :param trusted: unpickle with Stable-Baselines3's ``load``: only for files from a source you trust
        """
        from sbx_lecture.loading.model import load

        return load(  # type: ignore[return-value]
            path,
            env,
            trusted=trusted,
            device=device,
            algo=cls,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

"""``load`` that never unpickles unless asked: mixed into the lecture's algorithm classes."""

from __future__ import annotations

import io
import os
from typing import Any, TypeVar

SelfSafeLoad = TypeVar("SelfSafeLoad", bound="SafeLoadMixin")


class SafeLoadMixin:
    """Makes ``cls.load`` read model zips through :func:`sbx_lecture.serialization.load` (nothing unpickled).

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
        """Load a model of this class from ``path`` (see :func:`sbx_lecture.serialization.load`).

        :param trusted: unpickle with Stable-Baselines3's ``load``: only for files from a source you trust
        """
        if trusted or isinstance(path, io.BufferedIOBase):
            if not trusted:
                raise TypeError(f"{cls.__name__}.load reads a file path; a file object needs trusted=True")
            return super().load(  # type: ignore[misc, no-any-return]
                path, env, device, custom_objects, print_system_info, force_reset, **kwargs
            )
        from sbx_lecture.serialization import load

        return load(  # type: ignore[return-value]
            path, env, device=device, algo=cls, custom_objects=custom_objects, force_reset=force_reset, **kwargs
        )

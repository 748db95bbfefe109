"""Lets the plain RL Zoo (``python -m rl_zoo3.train``, ``rl_zoo3 train``, ...) see every sbx-lecture algorithm.

The wheel puts ``sbx_lecture_zoo_hook.pth`` into ``site-packages``. Its one line, run when the interpreter starts,
imports nothing: it puts at the front of ``sys.meta_path`` a finder whose ``find_spec`` compares the module name with
``"rl_zoo3"`` and returns ``None`` for every other name (a third of a microsecond per import). Only when ``rl_zoo3``
is first imported does it import this module and call :func:`find_spec`, which

1. takes the finder off ``sys.meta_path`` (it acts once) and, if ``SBX_LECTURE_ZOO_AUTOREGISTER`` switches the
   registration off, stops there;
2. lets the usual finders locate the package and wraps its loader, so that
3. once ``rl_zoo3`` (and with it ``rl_zoo3.utils`` and its ``ALGOS``) has executed,
   :func:`sbx_lecture.zoo_adapters.autoregister` fills the zoo's tables (``ALGOS``, samplers, converters) and
   adapts it (registered zoo files, one-line errors, Redis storages) before any zoo script builds its parser.

``SBX_LECTURE_ZOO_AUTOREGISTER=0`` (or ``false``, ``no``, ``off``) switches it off: the zoo
then behaves as it does without sbx-lecture (``sbx-lecture zoo ...`` and ``register_with_zoo()`` still work).
"""

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: this module must stay cheap to import
if TYPE_CHECKING:
    from typing import Any

ENVIRONMENT_VARIABLE = "SBX_LECTURE_ZOO_AUTOREGISTER"
TARGET = "rl_zoo3"
#: Class name of the finder that the ``.pth`` line puts on ``sys.meta_path``.
FINDER_NAME = "SbxLectureZooFinder"


def enabled() -> bool:
    """Whether the environment leaves the automatic registration on (the default)."""
    return os.environ.get(ENVIRONMENT_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


class _RegisteringLoader:
    """Wraps rl_zoo3's loader: executes the package as usual, then registers sbx-lecture's algorithms."""

    def __init__(self, loader: "Any") -> None:
        self.loader = loader

    def create_module(self, spec: "Any") -> "Any":
        return self.loader.create_module(spec)

    def exec_module(self, module: "Any") -> None:
        self.loader.exec_module(module)
        try:
            from sbx_lecture.zoo_adapters import autoregister
        except ImportError as error:  # sbx-lecture removed or broken: leave the zoo as it is
            print(f"sbx-lecture: the RL Zoo sees only its own algorithms ({error})", file=sys.stderr)
            return
        autoregister()

    def __getattr__(self, name: str) -> "Any":  # get_resource_reader, is_package, get_filename, ...
        return getattr(self.loader, name)


def find_spec(name: str, path: "Any" = None, target: "Any" = None) -> "Any":
    """The finder's work once ``rl_zoo3`` is imported: its spec, with a loader that registers after executing."""
    if name != TARGET:
        return None
    sys.meta_path[:] = [finder for finder in sys.meta_path if type(finder).__name__ != FINDER_NAME]  # acts once
    if not enabled():
        return None
    from importlib.util import find_spec as usual_find_spec

    spec = usual_find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return spec
    spec.loader = _RegisteringLoader(spec.loader)  # type: ignore[assignment]
    return spec

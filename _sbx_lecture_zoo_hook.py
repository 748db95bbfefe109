"""Lets the plain RL Zoo (``python -m rl_zoo3.train``, ``rl_zoo3 train``, ...) see every sbx-lecture algorithm.

The wheel puts ``sbx_lecture_zoo_hook.pth`` into ``site-packages``. Its one line, run when the interpreter starts,
imports nothing: it puts at the front of ``sys.meta_path`` a finder whose ``find_spec`` compares the module name with
``"rl_zoo3"`` and returns ``None`` for every other name (a third of a microsecond per import). Only when ``rl_zoo3``
is first imported does it import this module and call :func:`find_spec`, which

1. takes the finder off ``sys.meta_path`` if ``SBX_LECTURE_ZOO_AUTOREGISTER`` switches the registration off;
2. else lets the usual finders locate the package and wraps its loader's ``exec_module``, which takes the finder off
   ``sys.meta_path`` (it acts once) and, once ``rl_zoo3`` (and with it ``rl_zoo3.utils`` and its ``ALGOS``) has
   executed, calls :func:`sbx_lecture.zoo.autoregister`: it fills the zoo's tables (``ALGOS``, samplers,
   converters) and adapts it (registered zoo files, one-line errors, Redis storages) before any zoo script builds
   its parser. A registration that fails (a broken plugin) leaves the zoo with its own algorithms and is said in one
   line (``SBX_LECTURE_DEBUG=1``: the traceback).

``SBX_LECTURE_ZOO_AUTOREGISTER=0`` (or ``false``, ``no``, ``off``) switches it off: the zoo
then behaves as it does without sbx-lecture (``sbx-lecture zoo ...`` and ``register_with_zoo()`` still work).
"""

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: this module must stay cheap to import
if TYPE_CHECKING:
    from typing import Any

ENVIRONMENT_VARIABLE = "SBX_LECTURE_ZOO_AUTOREGISTER"
#: Class name of the finder that the ``.pth`` line puts on ``sys.meta_path``.
FINDER_NAME = "SbxLectureZooFinder"


def _remove_finder() -> None:
    """Take the ``.pth`` line's finder off ``sys.meta_path``."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if type(finder).__name__ != FINDER_NAME]


def find_spec(name: str, path: "Any" = None, target: "Any" = None) -> "Any":
    """The finder's work once ``rl_zoo3`` is imported (the ``.pth`` line calls it for that name only): its spec, whose
    loader registers after executing it (the finder is removed then: a mere ``importlib.util.find_spec("rl_zoo3")``
    leaves it in place)."""
    finders = sys.meta_path[:]
    _remove_finder()  # the usual finders locate the package
    if os.environ.get(ENVIRONMENT_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return None  # the environment switches the registration off (it is on by default)
    from importlib.util import find_spec as usual_find_spec

    spec = usual_find_spec(name)
    sys.meta_path[:] = finders
    if spec is None or not hasattr(spec.loader, "exec_module"):
        return spec
    execute = spec.loader.exec_module  # type: ignore[union-attr]

    def exec_module(module: "Any") -> None:  # this spec's own loader object: executes the package, then registers
        _remove_finder()
        execute(module)
        try:  # every sbx-lecture algorithm (sbx_lecture.zoo.autoregister)
            from sbx_lecture.zoo import autoregister

            autoregister()
        except Exception as error:  # a broken sbx-lecture or plugin leaves the zoo with its own algorithms
            if os.environ.get("SBX_LECTURE_DEBUG"):
                raise
            reason = " ".join(str(error).split()) or type(error).__name__
            print(
                f"sbx-lecture: the RL Zoo sees only its own algorithms ({reason}); "
                f"{ENVIRONMENT_VARIABLE}=0 stops this registration",
                file=sys.stderr,
            )

    spec.loader.exec_module = exec_module  # type: ignore[method-assign,union-attr]
    return spec

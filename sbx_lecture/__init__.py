"""sbx-lecture: the algorithms of a lecture on advanced policy optimization, as Stable-Baselines3 plugins.

The algorithm classes are imported on first access, so ``import sbx_lecture`` and :func:`list_algorithms` stay
light; ``from sbx_lecture import PPO`` gives the very class object of Stable-Baselines3.
"""

from __future__ import annotations

import pkgutil
from typing import TYPE_CHECKING, Any

from sbx_lecture.builtin import LECTURE_ALGORITHMS, SB3_ALGORITHMS, SB3_CONTRIB_ALGORITHMS, VERSION
from sbx_lecture.hookspecs import hookimpl
from sbx_lecture.plugins import get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec

if TYPE_CHECKING:  # the lazy names below, for type checkers (F401: __all__ lists them through _LAZY_NAMES)
    from sb3_contrib import TRPO  # noqa: F401
    from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3  # noqa: F401
    from stable_baselines3.common.base_class import BaseAlgorithm

    from sbx_lecture.dpg import DPG  # noqa: F401
    from sbx_lecture.loading import load  # noqa: F401
    from sbx_lecture.npg import NPG, TNPG  # noqa: F401
    from sbx_lecture.ppo_kl import KLPPO  # noqa: F401
    from sbx_lecture.sql import SQL  # noqa: F401

__version__ = VERSION

#: Public name → its ``"module:attribute"``, imported on first access by :func:`__getattr__`: the classes of the
#: built-in plugin's tables (the lecture's, SB3's, sb3-contrib's TRPO) under their class names, and the safe loader.
_LAZY_NAMES = {
    **{row.target.partition(":")[2]: row.target for row in (*LECTURE_ALGORITHMS, *SB3_ALGORITHMS)},
    "TRPO": SB3_CONTRIB_ALGORITHMS["trpo"].target,
    "load": "sbx_lecture.loading:load",  # safe loading of any registered algorithm's model zip
}


def get_algorithm(name: str) -> type[BaseAlgorithm]:
    """The algorithm class registered under ``name`` (``"tnpg"``, ``"ppo"``, a plugin's name, ...).

    :raises UnknownAlgorithmError: for an unknown name, suggesting the closest registered ones
    """
    return get_plugin_manager().registry.get(name)


def list_algorithms() -> list[AlgorithmSpec]:
    """Every registered algorithm, sorted by name, without importing any of them."""
    return list(get_plugin_manager().registry)


def __getattr__(name: str) -> Any:
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module 'sbx_lecture' has no attribute {name!r}")
    value = pkgutil.resolve_name(_LAZY_NAMES[name])
    globals()[name] = value
    return value


__all__ = ["AlgorithmSpec", "__version__", "get_algorithm", "hookimpl", "list_algorithms", *_LAZY_NAMES]

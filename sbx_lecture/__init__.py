"""sbx-lecture: the algorithms of a lecture on advanced policy optimization, as Stable-Baselines3 plugins.

The algorithm classes are imported on first access, so ``import sbx_lecture`` and :func:`list_algorithms` stay
light; ``from sbx_lecture import PPO`` gives the very class object of Stable-Baselines3.
"""

from __future__ import annotations

import pkgutil
from typing import TYPE_CHECKING, Any

from sbx_lecture.hookspecs import hookimpl
from sbx_lecture.plugins import get_plugin_manager
from sbx_lecture.registry import AlgorithmSpec

if TYPE_CHECKING:
    from sb3_contrib import TRPO
    from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
    from stable_baselines3.common.base_class import BaseAlgorithm

    from sbx_lecture.dpg import DPG
    from sbx_lecture.loading import load
    from sbx_lecture.npg import NPG, TNPG
    from sbx_lecture.ppo_kl import KLPPO
    from sbx_lecture.sql import SQL

__version__ = "0.1.0"

#: Public name → its ``"module:attribute"``, imported on first access by :func:`__getattr__`.
_LAZY_NAMES = {
    "NPG": "sbx_lecture.npg:NPG",
    "TNPG": "sbx_lecture.npg:TNPG",
    "KLPPO": "sbx_lecture.ppo_kl:KLPPO",
    "DPG": "sbx_lecture.dpg:DPG",
    "SQL": "sbx_lecture.sql:SQL",
    "PPO": "stable_baselines3:PPO",
    "A2C": "stable_baselines3:A2C",
    "DDPG": "stable_baselines3:DDPG",
    "TD3": "stable_baselines3:TD3",
    "SAC": "stable_baselines3:SAC",
    "DQN": "stable_baselines3:DQN",
    "TRPO": "sb3_contrib:TRPO",
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


__all__ = [
    "A2C",
    "DDPG",
    "DPG",
    "DQN",
    "KLPPO",
    "NPG",
    "PPO",
    "SAC",
    "SQL",
    "TD3",
    "TNPG",
    "TRPO",
    "AlgorithmSpec",
    "__version__",
    "get_algorithm",
    "hookimpl",
    "list_algorithms",
    "load",
]

"""The built-in plugin: SB3's and sb3-contrib's algorithms as they are, and the lecture's own, through the hook.

It is registered in code by :mod:`sbx_lecture.plugins` (not through an entry point), so a source checkout works.
Nothing here imports an algorithm module: every target is a ``"module:Class"`` string resolved on first use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

from sbx_lecture.hookspecs import RegisterFunction, hookimpl

#: Action spaces: every kind SB3's distributions cover, continuous only, discrete only.
ALL_ACTIONS = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
BOX = ("Box",)
DISCRETE = ("Discrete",)
#: Observation spaces: with a MultiInputPolicy (Dict observations) or without.
WITH_DICT = ("Box", "Discrete", "MultiDiscrete", "MultiBinary", "Dict")
WITHOUT_DICT = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")


class BuiltinAlgorithm(NamedTuple):
    """One row of the built-in table."""

    name: str
    target: str
    description: str
    action_spaces: tuple[str, ...]
    observation_spaces: tuple[str, ...] = WITH_DICT
    zoo_hyperparams: str | None = None
    zoo_sampler: str | None = None


def _lecture(name: str, target: str, description: str, action_spaces: tuple[str, ...]) -> BuiltinAlgorithm:
    zoo_file = f"sbx_lecture.zoo_configs:{name}.yml"
    sampler = f"sbx_lecture.zoo_samplers:sample_{name}_params"
    return BuiltinAlgorithm(name, target, description, action_spaces, WITH_DICT, zoo_file, sampler)


#: The lecture's additions; their rl-zoo files ship in the wheel as ``sbx_lecture.zoo_configs``.
LECTURE_ALGORITHMS: tuple[BuiltinAlgorithm, ...] = (
    _lecture("npg", "sbx_lecture.npg:NPG", "natural policy gradient: θ ← θ + α F⁻¹∇J", ALL_ACTIONS),
    _lecture(
        "tnpg",
        "sbx_lecture.npg:TNPG",
        "truncated natural gradient: fixed CG iterations, step from the KL bound",
        ALL_ACTIONS,
    ),
    _lecture("ppo_kl", "sbx_lecture.ppo_kl:KLPPO", "PPO with an adaptive (or fixed) KL penalty", ALL_ACTIONS),
    _lecture(
        "dpg", "sbx_lecture.dpg:DPG", "deterministic policy gradient, compatible or MLP critic (Silver et al.)", BOX
    ),
    _lecture(
        "sql",
        "sbx_lecture.sql:SQL",
        "soft Q-learning with energy-based policies (Haarnoja et al. 2017)",
        ("Box", "Discrete"),
    ),
)

#: Stable-Baselines3's algorithms, reused as they are (the RL Zoo's own hyperparameters stay in force).
SB3_ALGORITHMS: tuple[BuiltinAlgorithm, ...] = (
    BuiltinAlgorithm("a2c", "stable_baselines3:A2C", "advantage actor-critic (SB3)", ALL_ACTIONS),
    BuiltinAlgorithm("ppo", "stable_baselines3:PPO", "proximal policy optimization with clipping (SB3)", ALL_ACTIONS),
    BuiltinAlgorithm("ddpg", "stable_baselines3:DDPG", "deep deterministic policy gradient (SB3)", BOX),
    BuiltinAlgorithm("td3", "stable_baselines3:TD3", "twin delayed DDPG (SB3)", BOX),
    BuiltinAlgorithm("sac", "stable_baselines3:SAC", "soft actor-critic (SB3)", BOX),
    BuiltinAlgorithm("dqn", "stable_baselines3:DQN", "deep Q-network (SB3)", DISCRETE),
)

#: sb3-contrib's algorithms; rows whose sub-package the installed sb3-contrib lacks are left out.
#: MaskablePPO is not registered: it needs environments that expose action masks, which ``train`` cannot supply.
SB3_CONTRIB_ALGORITHMS: tuple[tuple[str, BuiltinAlgorithm], ...] = (
    (
        "trpo",
        BuiltinAlgorithm("trpo", "sb3_contrib:TRPO", "trust region policy optimization (sb3-contrib)", ALL_ACTIONS),
    ),
    ("qrdqn", BuiltinAlgorithm("qrdqn", "sb3_contrib:QRDQN", "quantile regression DQN (sb3-contrib)", DISCRETE)),
    ("tqc", BuiltinAlgorithm("tqc", "sb3_contrib:TQC", "truncated quantile critics (sb3-contrib)", BOX)),
    (
        "ars",
        BuiltinAlgorithm(
            "ars", "sb3_contrib:ARS", "augmented random search (sb3-contrib)", ("Box", "Discrete"), WITHOUT_DICT
        ),
    ),
    (
        "crossq",
        BuiltinAlgorithm(
            "crossq", "sb3_contrib:CrossQ", "CrossQ, batch-normalised SAC (sb3-contrib)", BOX, WITHOUT_DICT
        ),
    ),
    (
        "ppo_recurrent",
        BuiltinAlgorithm("ppo_lstm", "sb3_contrib:RecurrentPPO", "PPO with an LSTM policy (sb3-contrib)", ALL_ACTIONS),
    ),
)


def _sb3_contrib_subpackages() -> set[str]:
    """Sub-package folders of the installed sb3-contrib, found without importing it (which would import torch)."""
    spec = importlib.util.find_spec("sb3_contrib")
    if spec is None or not spec.submodule_search_locations:
        return set()
    return {path.name for location in spec.submodule_search_locations for path in Path(location).iterdir()}


def builtin_algorithms() -> list[BuiltinAlgorithm]:
    """Every row the built-in plugin registers, in order."""
    available = _sb3_contrib_subpackages()
    contrib = [row for folder, row in SB3_CONTRIB_ALGORITHMS if folder in available]
    return [*LECTURE_ALGORITHMS, *SB3_ALGORITHMS, *contrib]


@hookimpl
def register_algorithms(register: RegisterFunction) -> None:
    """Register the built-in algorithms."""
    for row in builtin_algorithms():
        register(
            row.name,
            row.target,
            description=row.description,
            zoo_hyperparams=row.zoo_hyperparams,
            zoo_sampler=row.zoo_sampler,
            action_spaces=row.action_spaces,
            observation_spaces=row.observation_spaces,
        )

"""The built-in plugin: SB3's and sb3-contrib's algorithms as they are, and the lecture's own, through the hook.

It is registered in code by :mod:`sbx_lecture.plugins` (not through an entry point), so a source checkout works.
Nothing here imports an algorithm module: every target is a ``"module:Class"`` string resolved on first use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

from sbx_lecture.hookspecs import RegisterFunction, hookimpl

#: The version of the sbx-lecture distribution (``sbx_lecture.__version__``), reported for the built-in plugin.
VERSION = "0.1.0"


class BuiltinAlgorithm(NamedTuple):
    """One row of the built-in tables (each class declares the action spaces it supports itself)."""

    name: str
    target: str
    description: str


#: The lecture's additions; their rl-zoo files ship in the wheel as ``sbx_lecture.zoo_configs``.
LECTURE_ALGORITHMS = (
    BuiltinAlgorithm("npg", "sbx_lecture.npg:NPG", "natural policy gradient: θ ← θ + α F⁻¹∇J"),
    BuiltinAlgorithm(
        "tnpg", "sbx_lecture.npg:TNPG", "truncated natural gradient: fixed CG iterations, step from the KL bound"
    ),
    BuiltinAlgorithm("ppo_kl", "sbx_lecture.ppo_kl:KLPPO", "PPO with an adaptive (or fixed) KL penalty"),
    BuiltinAlgorithm(
        "dpg", "sbx_lecture.dpg:DPG", "deterministic policy gradient, compatible or MLP critic (Silver et al.)"
    ),
    BuiltinAlgorithm("sql", "sbx_lecture.sql:SQL", "soft Q-learning with energy-based policies (Haarnoja et al. 2017)"),
)

#: Stable-Baselines3's algorithms, reused as they are (the RL Zoo's own hyperparameters stay in force).
SB3_ALGORITHMS = (
    BuiltinAlgorithm("a2c", "stable_baselines3:A2C", "advantage actor-critic (SB3)"),
    BuiltinAlgorithm("ppo", "stable_baselines3:PPO", "proximal policy optimization with clipping (SB3)"),
    BuiltinAlgorithm("ddpg", "stable_baselines3:DDPG", "deep deterministic policy gradient (SB3)"),
    BuiltinAlgorithm("td3", "stable_baselines3:TD3", "twin delayed DDPG (SB3)"),
    BuiltinAlgorithm("sac", "stable_baselines3:SAC", "soft actor-critic (SB3)"),
    BuiltinAlgorithm("dqn", "stable_baselines3:DQN", "deep Q-network (SB3)"),
)

#: sb3-contrib's algorithms by sub-package; those the installed sb3-contrib lacks are left out. MaskablePPO is not
#: registered: it needs environments that expose action masks, which ``train`` cannot supply.
SB3_CONTRIB_ALGORITHMS = {
    "trpo": BuiltinAlgorithm("trpo", "sb3_contrib:TRPO", "trust region policy optimization (sb3-contrib)"),
    "qrdqn": BuiltinAlgorithm("qrdqn", "sb3_contrib:QRDQN", "quantile regression DQN (sb3-contrib)"),
    "tqc": BuiltinAlgorithm("tqc", "sb3_contrib:TQC", "truncated quantile critics (sb3-contrib)"),
    "ars": BuiltinAlgorithm("ars", "sb3_contrib:ARS", "augmented random search (sb3-contrib)"),
    "crossq": BuiltinAlgorithm("crossq", "sb3_contrib:CrossQ", "CrossQ, batch-normalised SAC (sb3-contrib)"),
    "ppo_recurrent": BuiltinAlgorithm("ppo_lstm", "sb3_contrib:RecurrentPPO", "PPO with an LSTM policy (sb3-contrib)"),
}


@hookimpl
def register_algorithms(register: RegisterFunction) -> None:
    """Register the built-in algorithms."""
    for row in LECTURE_ALGORITHMS:
        register(
            row.name,
            row.target,
            description=row.description,
            zoo_hyperparams=f"sbx_lecture.zoo_configs:{row.name}.yml",
            zoo_sampler=f"sbx_lecture.zoo_samplers:sample_{row.name}_params",
        )
    # the sub-package folders of the installed sb3-contrib, found without importing it (which would import torch)
    spec = importlib.util.find_spec("sb3_contrib")
    locations = (spec.submodule_search_locations or []) if spec is not None else []
    available = {path.name for location in locations for path in Path(location).iterdir()}
    contrib = [row for folder, row in SB3_CONTRIB_ALGORITHMS.items() if folder in available]
    for row in [*SB3_ALGORITHMS, *contrib]:
        register(row.name, row.target, description=row.description)

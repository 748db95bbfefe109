# ruff: noqa: E501  (the reference table keeps its rows as published)
"""Published results to quote beside ours: the RL Baselines3 Zoo's benchmark, Tianshou's MuJoCo examples, OpenAI
Baselines' 1M-step MuJoCo benchmark and table 1 of the PPO paper.

They are the sources' figures, never ours, and they are not measured the way we measure: the RL Zoo reports one run
with deterministic evaluation; Tianshou the maximum average return over training; OpenAI Baselines and Tianshou ran
older MuJoCo versions (v1, v3) than the v5 tasks we run; the PPO paper gives a normalised score over seven tasks.
:func:`published_for` only returns figures for the same algorithm, task and budget, each with its caveat.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

#: The reference table as the sources publish it (source, algo, env, env_version_note, timesteps, mean, std, notes).
PUBLISHED_CSV = """\
source,algo,env,env_version_note,timesteps,mean_return,std_return,notes
rl-zoo benchmark.md,trpo,Pendulum-v1,,100000,-174.6,127.6,single run deterministic eval
rl-zoo benchmark.md,ppo,Pendulum-v1,,100000,-172.2,104.2,
rl-zoo benchmark.md,a2c,Pendulum-v1,,1000000,-163.0,103.2,
rl-zoo benchmark.md,ddpg,Pendulum-v1,,20000,-152.1,94.3,
rl-zoo benchmark.md,td3,Pendulum-v1,,20000,-151.9,90.2,
rl-zoo benchmark.md,sac,Pendulum-v1,,20000,-157.0,88.7,
rl-zoo benchmark.md,trpo,CartPole-v1,,100000,500.0,0.0,
rl-zoo benchmark.md,ppo,CartPole-v1,,100000,500.0,0.0,
rl-zoo benchmark.md,a2c,CartPole-v1,,500000,500.0,0.0,
rl-zoo benchmark.md,dqn,CartPole-v1,,50000,500.0,0.0,
rl-zoo benchmark.md,qrdqn,CartPole-v1,,50000,500.0,0.0,
rl-zoo benchmark.md,trpo,MountainCarContinuous-v0,,50000,92.5,0.4,
rl-zoo benchmark.md,ppo,MountainCarContinuous-v0,,20000,88.3,2.6,
rl-zoo benchmark.md,a2c,MountainCarContinuous-v0,,100000,91.2,0.3,
rl-zoo benchmark.md,ddpg,MountainCarContinuous-v0,,300000,93.5,0.05,
rl-zoo benchmark.md,td3,MountainCarContinuous-v0,,300000,93.5,0.08,
rl-zoo benchmark.md,sac,MountainCarContinuous-v0,,50000,94.7,1.1,
rl-zoo benchmark.md,trpo,HalfCheetah,MuJoCo v3,1000000,1785.5,68.7,
rl-zoo benchmark.md,ppo,HalfCheetah,MuJoCo v3,1000000,5819.1,663.5,
rl-zoo benchmark.md,a2c,HalfCheetah,MuJoCo v3,1000000,3041.2,157.3,
rl-zoo benchmark.md,td3,HalfCheetah,MuJoCo v3,1000000,9655.7,969.9,
rl-zoo benchmark.md,sac,HalfCheetah,MuJoCo v3,1000000,9535.5,100.5,
rl-zoo benchmark.md,trpo,Hopper,MuJoCo v3,1000000,3618.4,356.8,
rl-zoo benchmark.md,ppo,Hopper,MuJoCo v3,1000000,2410.4,10.0,
rl-zoo benchmark.md,a2c,Hopper,MuJoCo v3,1000000,733.5,376.6,
rl-zoo benchmark.md,td3,Hopper,MuJoCo v3,1000000,3606.4,4.0,
rl-zoo benchmark.md,sac,Hopper,MuJoCo v3,1000000,2325.5,1129.7,
rl-zoo benchmark.md,trpo,Walker2d,MuJoCo v3,1000000,4933.1,1452.5,
rl-zoo benchmark.md,ppo,Walker2d,MuJoCo v3,1000000,3478.8,821.7,
rl-zoo benchmark.md,a2c,Walker2d,MuJoCo v3,1000000,581.8,127.6,
rl-zoo benchmark.md,td3,Walker2d,MuJoCo v3,1000000,4717.8,46.3,
rl-zoo benchmark.md,sac,Walker2d,MuJoCo v3,1000000,3863.2,254.3,
Tianshou examples/mujoco README,npg,HalfCheetah,MuJoCo v3,1000000,3485.2,716.6,max average return over training; 10 seeds
Tianshou examples/mujoco README,npg,Hopper,MuJoCo v3,1000000,1915.2,550.5,max average return over training; 10 seeds
Tianshou examples/mujoco README,npg,Walker2d,MuJoCo v3,1000000,2503.2,963.3,max average return over training; 10 seeds
Tianshou examples/mujoco README,npg,InvertedPendulum,MuJoCo v3,1000000,1000.0,0.0,max average return over training; 10 seeds
Tianshou examples/mujoco README,trpo,HalfCheetah,MuJoCo v3,1000000,4471.2,804.9,max average return over training; 10 seeds
Tianshou examples/mujoco README,trpo,Hopper,MuJoCo v3,1000000,2046.0,1037.9,max average return over training; 10 seeds
Tianshou examples/mujoco README,trpo,Walker2d,MuJoCo v3,1000000,3826.7,782.7,max average return over training; 10 seeds
OpenAI baselines benchmarks_mujoco1M,trpo,HalfCheetah,MuJoCo v1,1000000,1289.7,,6 seeds
OpenAI baselines benchmarks_mujoco1M,trpo,Hopper,MuJoCo v1,1000000,1912.9,,6 seeds
OpenAI baselines benchmarks_mujoco1M,trpo,Walker2d,MuJoCo v1,1000000,2342.6,,6 seeds
OpenAI baselines benchmarks_mujoco1M,ppo,HalfCheetah,MuJoCo v1,1000000,1668.6,,6 seeds (ppo2)
OpenAI baselines benchmarks_mujoco1M,ppo,Hopper,MuJoCo v1,1000000,2316.2,,6 seeds (ppo2)
OpenAI baselines benchmarks_mujoco1M,ppo,Walker2d,MuJoCo v1,1000000,3425.0,,6 seeds (ppo2)
Schulman et al. 2017 PPO table 1,ppo_clip_0.2,7 MuJoCo tasks,normalized score,1000000,0.82,,normalized: random=0 best=1; 3 seeds
Schulman et al. 2017 PPO table 1,ppo_kl_adaptive_0.01,7 MuJoCo tasks,normalized score,1000000,0.74,,d_targ=0.01
Schulman et al. 2017 PPO table 1,ppo_kl_adaptive_0.003,7 MuJoCo tasks,normalized score,1000000,0.68,,
Schulman et al. 2017 PPO table 1,ppo_kl_adaptive_0.03,7 MuJoCo tasks,normalized score,1000000,0.71,,
Schulman et al. 2017 PPO table 1,ppo_kl_fixed_1,7 MuJoCo tasks,normalized score,1000000,0.71,,beta=1
"""

#: How each source measured, in a few words, for the table's footnotes.
CAVEATS: dict[str, str] = {
    "rl-zoo": "RL Zoo benchmark.md: a single run, deterministic evaluation",
    "tianshou": "Tianshou MuJoCo examples: maximum average return over training, 10 seeds, MuJoCo v3",
    "openai": "OpenAI Baselines 1M-step benchmark: 6 seeds, MuJoCo v1",
    "ppo-paper": "Schulman et al. 2017, table 1: normalised score over 7 MuJoCo tasks",
}
_VERSION = re.compile(r"-v\d+$")


@dataclass(frozen=True)
class PublishedFigure:
    """One published result."""

    source: str
    algo: str
    env: str
    env_version_note: str
    timesteps: int
    mean: float
    std: float | None
    notes: str

    @property
    def source_key(self) -> str:
        """Short key of the source: ``rl-zoo``, ``tianshou``, ``openai`` or ``ppo-paper``."""
        lowered = self.source.lower()
        for key, marker in (
            ("rl-zoo", "rl-zoo"),
            ("tianshou", "tianshou"),
            ("openai", "openai"),
            ("ppo-paper", "schulman"),
        ):
            if marker in lowered:
                return key
        return lowered

    def text(self) -> str:
        """``mean ± std`` (or the mean alone when the source gives no spread)."""
        return f"{self.mean:.1f} ± {self.std:.1f}" if self.std is not None else f"{self.mean:.1f}"


def published_figures() -> list[PublishedFigure]:
    """Every row of :data:`PUBLISHED_CSV`."""
    rows = csv.DictReader(io.StringIO(PUBLISHED_CSV))
    return [
        PublishedFigure(
            row["source"],
            row["algo"],
            row["env"],
            row["env_version_note"],
            int(float(row["timesteps"])),
            float(row["mean_return"]),
            float(row["std_return"]) if row["std_return"] else None,
            row["notes"],
        )
        for row in rows
    ]


def same_task(published_env: str, env_id: str) -> bool:
    """Whether a published env name is our ``env_id`` (an unversioned name matches every version)."""
    if published_env == env_id:
        return True
    return _VERSION.search(published_env) is None and _VERSION.sub("", env_id) == published_env


def published_for(algo: str, env_id: str, timesteps: int) -> list[PublishedFigure]:
    """Published figures for ``algo`` on ``env_id`` at the same budget."""
    return [
        figure
        for figure in published_figures()
        if figure.algo == algo and figure.timesteps == timesteps and same_task(figure.env, env_id)
    ]

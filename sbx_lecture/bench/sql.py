"""Soft Q-learning benchmark: returns on CartPole-v1 and Pendulum-v1, speed against DQN/SAC, multi-goal plot.

Run ``python -m sbx_lecture.bench.sql --help``. Every figure is measured in the same run as its SB3 sibling
(DQN for discrete actions, SAC for Box actions, with the same network sizes and batch size), and evaluated with
``evaluate_policy(..., deterministic=True)``. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule

from sbx_lecture.envs.multigoal import MultiGoalEnv
from sbx_lecture.sql import SQL


@dataclass
class Suite:
    """One environment: SQL's and the sibling's hyperparameters, budget and target."""

    env_id: str
    timesteps: int
    target: float
    sql_kwargs: dict[str, Any]
    sibling: type[BaseAlgorithm]
    sibling_kwargs: dict[str, Any] = field(default_factory=dict)


CARTPOLE_COMMON: dict[str, Any] = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    train_freq=256,
    gradient_steps=128,
    policy_kwargs=dict(net_arch=[256, 256]),
)
PENDULUM_COMMON: dict[str, Any] = dict(learning_rate=1e-3, batch_size=64, policy_kwargs=dict(net_arch=[64, 64]))

SUITES: dict[str, Suite] = {
    "CartPole-v1": Suite(
        "CartPole-v1",
        50_000,
        475.0,
        # As zoo_configs/sql.yml: the zoo's "lin_2.3e-3" (the learning rate decays linearly to 0), α = 0.02 and one
        # hard target update per train call (128 gradient steps).
        sql_kwargs=dict(
            CARTPOLE_COMMON,
            learning_rate=LinearSchedule(2.3e-3, 0.0, 1.0),
            ent_coef=0.02,
            tau=1.0,
            target_update_interval=128,
        ),
        sibling=DQN,
        sibling_kwargs=dict(
            CARTPOLE_COMMON,
            target_update_interval=10,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
        ),
    ),
    "Pendulum-v1": Suite(
        "Pendulum-v1",
        20_000,
        -200.0,
        sql_kwargs=dict(PENDULUM_COMMON, ent_coef=0.1),
        sibling=SAC,
        sibling_kwargs=dict(PENDULUM_COMMON),
    ),
}


def evaluate(model: BaseAlgorithm, env_id: str, n_episodes: int, seed: int) -> float:
    """Mean return of the deterministic policy over ``n_episodes`` fresh episodes."""
    mean_return, _ = evaluate_policy(model, make_vec_env(env_id, seed=seed), n_episodes, deterministic=True)
    assert isinstance(mean_return, float)
    return mean_return


def timed_learn(model: BaseAlgorithm, timesteps: int) -> tuple[float, float]:
    """Train for ``timesteps`` steps; return steps per second of wall-clock time and of process CPU time.

    On a shared machine the CPU-time figure is the fairer one: it does not count time the process waited.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(timesteps)
    return timesteps / (time.perf_counter() - wall), timesteps / (time.process_time() - cpu)


def train_and_measure(
    make_model: Callable[[int], BaseAlgorithm], env_id: str, timesteps: int, seed: int, n_eval: int
) -> dict[str, float]:
    """Final deterministic return and speeds of one seed."""
    model = make_model(seed)
    wall_speed, cpu_speed = timed_learn(model, timesteps)
    final_return = evaluate(model, env_id, n_eval, seed=10_000 + seed)
    return {"return": final_return, "steps_per_s": wall_speed, "steps_per_cpu_s": cpu_speed}


def model_factory(
    algorithm: type[BaseAlgorithm], env_id: str, kwargs: dict[str, Any]
) -> Callable[[int], BaseAlgorithm]:
    """A constructor per seed; kwargs are deep-copied because SB3 adds entries to the policy_kwargs it is given."""
    return lambda seed: algorithm("MlpPolicy", env_id, seed=seed, **copy.deepcopy(kwargs))


def run_suite(suite: Suite, seeds: list[int], timesteps: int, n_eval: int) -> dict[str, float]:
    """Train SQL and its SB3 sibling on every seed (interleaved); print and return medians and ratios."""
    sibling = suite.sibling.__name__
    makers = {
        "SQL": model_factory(SQL, suite.env_id, suite.sql_kwargs),
        sibling: model_factory(suite.sibling, suite.env_id, suite.sibling_kwargs),
    }
    results: dict[str, dict[str, list[float]]] = {name: {} for name in makers}
    for seed in seeds:
        for name, make_model in makers.items():
            measured = train_and_measure(make_model, suite.env_id, timesteps, seed, n_eval)
            for key, value in measured.items():
                results[name].setdefault(key, []).append(value)
            print(
                f"  {suite.env_id} {name:4s} seed={seed}: return {measured['return']:8.1f}  "
                f"{measured['steps_per_s']:7.1f} steps/s  {measured['steps_per_cpu_s']:7.1f} steps/cpu-s",
                flush=True,
            )
    median = {name: {key: statistics.median(values) for key, values in res.items()} for name, res in results.items()}
    summary = {
        "sql_return": median["SQL"]["return"],
        "sql_min_return": min(results["SQL"]["return"]),
        "sibling_return": median[sibling]["return"],
        "speed_ratio_wall": median["SQL"]["steps_per_s"] / median[sibling]["steps_per_s"],
        "speed_ratio_cpu": median["SQL"]["steps_per_cpu_s"] / median[sibling]["steps_per_cpu_s"],
    }
    reached = sum(r >= suite.target for r in results["SQL"]["return"])
    print(
        f"{suite.env_id} after {timesteps} steps, {len(seeds)} seeds: SQL median return {summary['sql_return']:.1f} "
        f"(min {summary['sql_min_return']:.1f}; {reached}/{len(seeds)} seeds >= {suite.target:g}), "
        f"{sibling} median {summary['sibling_return']:.1f}; speed SQL/{sibling}: "
        f"{median['SQL']['steps_per_s']:.0f}/{median[sibling]['steps_per_s']:.0f} steps/s = "
        f"{summary['speed_ratio_wall']:.2f} (wall), "
        f"{median['SQL']['steps_per_cpu_s']:.0f}/{median[sibling]['steps_per_cpu_s']:.0f} = "
        f"{summary['speed_ratio_cpu']:.2f} (CPU time)",
        flush=True,
    )
    return summary


MULTIGOAL_KWARGS: dict[str, Any] = dict(
    learning_rate=1e-3, batch_size=64, learning_starts=500, ent_coef=10.0, policy_kwargs=dict(net_arch=[100, 100])
)


def sample_trajectories(model: BaseAlgorithm, env: MultiGoalEnv, n_episodes: int) -> tuple[list[np.ndarray], list[int]]:
    """Roll out the stochastic policy; return the paths and the goal index reached (-1: none)."""
    paths, goals = [], []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=episode)
        path, done, info = [obs], False, {"goal": -1}
        while not done:
            action, _ = model.predict(obs, deterministic=False)
            obs, _, terminated, truncated, info = env.step(action)
            path.append(obs)
            done = terminated or truncated
        paths.append(np.array(path))
        goals.append(int(info["goal"]))
    return paths, goals


def plot_trajectories(paths: list[np.ndarray], env: MultiGoalEnv, path: Path) -> None:
    """Save the sampled trajectories with the goals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for trajectory in paths:
        ax.plot(trajectory[:, 0], trajectory[:, 1], color="tab:blue", alpha=0.5, linewidth=1)
    ax.scatter(env.goals[:, 0], env.goals[:, 1], s=300, color="tab:red", marker="*", zorder=3, label="goals")
    ax.set_xlim(-env.bound, env.bound)
    ax.set_ylim(-env.bound, env.bound)
    ax.set_aspect("equal")
    ax.set_title("SQL on the multi-goal environment: sampled trajectories")
    ax.legend(loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def run_multigoal(timesteps: int, seed: int, n_episodes: int, plot_path: Path | None) -> list[int]:
    """Train SQL on the multi-goal environment and count how many sampled trajectories reach each goal."""
    model = SQL("MlpPolicy", MultiGoalEnv(), seed=seed, **MULTIGOAL_KWARGS)
    model.learn(timesteps)
    env = MultiGoalEnv()
    paths, goals = sample_trajectories(model, env, n_episodes)
    counts = np.bincount(np.array(goals) + 1, minlength=len(env.goals) + 1)
    print(
        f"multi-goal after {timesteps} steps (seed {seed}): of {n_episodes} sampled trajectories "
        f"{counts[1:].tolist()} reached goals {[tuple(g) for g in env.goals.tolist()]}, {counts[0]} none",
        flush=True,
    )
    if plot_path is not None:
        plot_trajectories(paths, env, plot_path)
        print(f"  plot: {plot_path}")
    return counts.tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=[*SUITES, "multigoal"], choices=[*SUITES, "multigoal"])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--timesteps", type=int, default=None, help="override every suite's budget")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--multigoal-timesteps", type=int, default=20000)
    parser.add_argument("--plot", type=Path, default=Path("docs/img/sql_multigoal.png"))
    parser.add_argument("--quick", action="store_true", help="one seed, 2000 steps: a smoke run of the script")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    n_seeds = 1 if args.quick else args.seeds
    for env_name in args.envs:
        if env_name == "multigoal":
            steps = 1000 if args.quick else args.multigoal_timesteps
            run_multigoal(steps, seed=0, n_episodes=50, plot_path=None if args.quick else args.plot)
            continue
        suite = SUITES[env_name]
        timesteps = 2000 if args.quick else (args.timesteps or suite.timesteps)
        seeds = list(range(args.first_seed, args.first_seed + n_seeds))
        run_suite(suite, seeds, timesteps, args.eval_episodes)


if __name__ == "__main__":
    main()

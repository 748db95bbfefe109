"""Benchmark of KL-penalty PPO against SB3's PPO (clip) with the same settings, measured in the same run.

Targets (issue 4): over 3 seeds, CartPole-v1 >= 475 and Pendulum-v1 >= -200 within 1e5 steps, and at least
0.95x SB3 PPO's steps per second at identical settings. HalfCheetah-v5 (1e6 steps) is available through ``--envs``.

    python -m sbx_lecture.bench.ppo_kl                                  # CartPole-v1 and Pendulum-v1, 3 seeds
    python -m sbx_lecture.bench.ppo_kl --quick                          # 1 seed, 20k steps: a smoke run
    python -m sbx_lecture.bench.ppo_kl --envs HalfCheetah-v5 --seeds 3  # the paper's table-1 comparison
    python -m sbx_lecture.bench.ppo_kl --speed --envs CartPole-v1       # steps/s only, interleaved repeats

KLPPO's settings are ``zoo_configs/ppo_kl.yml``; the PPO sibling gets the same entry without the KL arguments
and with the zoo's PPO clip range. Evaluation: ``evaluate_policy(..., deterministic=True)`` on a fresh env.
"""

from __future__ import annotations

import argparse
import importlib.resources
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch as th
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn

from sbx_lecture.ppo_kl import KLPPO

# The RL Zoo's clip range for SB3's PPO on each environment (the sibling's only extra setting).
ZOO_PPO_CLIP_RANGE: dict[str, float | str] = {
    "CartPole-v1": "lin_0.2",
    "Pendulum-v1": 0.2,
    "MountainCarContinuous-v0": 0.1,
    "HalfCheetah-v5": 0.1,
    "Hopper-v5": 0.2,
    "Walker2d-v5": 0.1,
}
KL_ONLY_ARGUMENTS = (
    "target_kl",
    "kl_coef",
    "adaptive_kl",
    "kl_tolerance",
    "kl_coef_factor",
    "min_kl_coef",
    "max_kl_coef",
)
TARGETS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
ZOO_KEYS = ("n_envs", "n_timesteps", "policy", "normalize")


@dataclass
class Setting:
    """One algorithm's settings on one environment, ready for the SB3 constructor."""

    env_id: str
    policy: str
    n_envs: int
    normalize: bool
    n_timesteps: int
    kwargs: dict[str, Any]


@dataclass
class RunResult:
    """What one training run measured."""

    mean_reward: float
    steps_per_second: float
    steps_per_cpu_second: float


def zoo_entry(env_id: str) -> dict[str, Any]:
    """KLPPO's entry for ``env_id`` in ``zoo_configs/ppo_kl.yml`` (the ``default`` entry for other envs)."""
    try:
        text = (importlib.resources.files("sbx_lecture.zoo_configs") / "ppo_kl.yml").read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        text = (Path(__file__).resolve().parents[2] / "zoo_configs" / "ppo_kl.yml").read_text()
    entries = yaml.safe_load(text)
    return dict(entries.get(env_id, entries["default"]))


def parse_schedule(value: Any) -> Any:
    """The zoo's ``lin_X`` strings as linear schedules from X to 0; other values unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[len("lin_") :]), 0.0, 1.0)
    return value


def setting_from_zoo(env_id: str, entry: dict[str, Any]) -> Setting:
    """Turn a zoo entry into constructor arguments (schedules and ``policy_kwargs`` strings evaluated)."""
    kwargs = {key: parse_schedule(value) for key, value in entry.items() if key not in ZOO_KEYS}
    if isinstance(kwargs.get("policy_kwargs"), str):
        kwargs["policy_kwargs"] = eval(kwargs["policy_kwargs"], {"nn": nn, "dict": dict})
    return Setting(
        env_id=env_id,
        policy=entry.get("policy", "MlpPolicy"),
        n_envs=int(entry.get("n_envs", 1)),
        normalize=bool(entry.get("normalize", False)),
        n_timesteps=int(float(entry.get("n_timesteps", 1e6))),
        kwargs=kwargs,
    )


def ppo_sibling(setting: Setting) -> Setting:
    """SB3 PPO's setting: KLPPO's without the KL arguments, with the zoo's PPO clip range."""
    kwargs = {key: value for key, value in setting.kwargs.items() if key not in KL_ONLY_ARGUMENTS}
    kwargs["clip_range"] = parse_schedule(ZOO_PPO_CLIP_RANGE.get(setting.env_id, 0.2))
    return Setting(setting.env_id, setting.policy, setting.n_envs, setting.normalize, setting.n_timesteps, kwargs)


def make_training_env(setting: Setting, seed: int) -> VecEnv:
    env = make_vec_env(setting.env_id, n_envs=setting.n_envs, seed=seed)
    return VecNormalize(env, gamma=setting.kwargs.get("gamma", 0.99)) if setting.normalize else env


def evaluate(model: BaseAlgorithm, setting: Setting, n_episodes: int, seed: int) -> float:
    """Mean return of the deterministic policy on a fresh env (observations normalised as in training)."""
    env = make_vec_env(setting.env_id, n_envs=1, seed=seed + 10_000)
    training_env = model.get_env()
    if isinstance(training_env, VecNormalize):
        env = VecNormalize(env, training=False, norm_reward=False)
        env.obs_rms = training_env.obs_rms
    mean_reward, _ = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True)
    env.close()
    return float(mean_reward)  # type: ignore[arg-type]


def timed_learn(model: BaseAlgorithm, timesteps: int) -> tuple[float, float]:
    """Train for ``timesteps``; return the steps per wall-clock second and per CPU second of this process.

    On a shared machine the CPU-time figure is the steadier one (single-threaded torch, in-process envs).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(timesteps)
    return timesteps / (time.perf_counter() - wall), timesteps / (time.process_time() - cpu)


def run(algo: type[BaseAlgorithm], setting: Setting, timesteps: int, seed: int, n_episodes: int) -> RunResult:
    model = algo(setting.policy, make_training_env(setting, seed), seed=seed, **setting.kwargs)
    per_second, per_cpu_second = timed_learn(model, timesteps)
    mean_reward = evaluate(model, setting, n_episodes, seed) if n_episodes > 0 else float("nan")
    return RunResult(mean_reward, per_second, per_cpu_second)


def learning_benchmark(env_id: str, seeds: list[int], timesteps: int | None, n_episodes: int) -> None:
    ours = setting_from_zoo(env_id, zoo_entry(env_id))
    sibling = ppo_sibling(ours)
    budget = timesteps or ours.n_timesteps
    results: dict[str, list[RunResult]] = {"KLPPO": [], "PPO": []}
    for seed in seeds:
        # Interleaved, so that load on a shared machine affects both algorithms alike.
        pairs: list[tuple[str, type[BaseAlgorithm], Setting]] = [("KLPPO", KLPPO, ours), ("PPO", PPO, sibling)]
        for name, algo, setting in pairs:
            result = run(algo, setting, budget, seed, n_episodes)
            results[name].append(result)
            print(
                f"{env_id:<24} {name:<6} seed {seed}: return {result.mean_reward:9.1f}   "
                f"{result.steps_per_second:8.0f} steps/s {result.steps_per_cpu_second:8.0f} steps/CPU-s",
                flush=True,
            )
    report(env_id, budget, results)


def median_of(runs: list[RunResult], field: str) -> float:
    return statistics.median(getattr(run, field) for run in runs)


def report(env_id: str, budget: int, results: dict[str, list[RunResult]]) -> None:
    ours, ppo = results["KLPPO"], results["PPO"]
    ours_return, ppo_return = median_of(ours, "mean_reward"), median_of(ppo, "mean_reward")
    target = TARGETS.get(env_id)
    verdict = "" if target is None else f"  (target >= {target:g}: {'met' if ours_return >= target else 'NOT met'})"
    print(f"\n{env_id}, {budget} steps, median over {len(ours)} seeds")
    print(f"  return           KLPPO {ours_return:9.1f}   PPO {ppo_return:9.1f}{verdict}")
    for label, field in (("steps/s", "steps_per_second"), ("steps/CPU-s", "steps_per_cpu_second")):
        ours_speed, ppo_speed = median_of(ours, field), median_of(ppo, field)
        print(
            f"  {label:<16} KLPPO {ours_speed:9.0f}   PPO {ppo_speed:9.0f}   "
            f"ratio {ours_speed / ppo_speed:.3f} (target >= 0.95)"
        )
    print(f"  per-seed returns KLPPO {[round(r.mean_reward, 1) for r in results['KLPPO']]}")
    print(f"  per-seed returns PPO   {[round(r.mean_reward, 1) for r in results['PPO']]}\n", flush=True)


def speed_benchmark(env_id: str, repeats: int, timesteps: int) -> None:
    """Steps per second of KLPPO and PPO at identical settings (no evaluation), interleaved ``repeats`` times."""
    ours = setting_from_zoo(env_id, zoo_entry(env_id))
    sibling = ppo_sibling(ours)
    results: dict[str, list[RunResult]] = {"KLPPO": [], "PPO": []}
    for repeat in range(repeats):
        pairs: list[tuple[str, type[BaseAlgorithm], Setting]] = [("KLPPO", KLPPO, ours), ("PPO", PPO, sibling)]
        for name, algo, setting in pairs if repeat % 2 == 0 else pairs[::-1]:
            results[name].append(run(algo, setting, timesteps, seed=repeat, n_episodes=0))
    for label, field in (("wall-clock", "steps_per_second"), ("CPU", "steps_per_cpu_second")):
        ours_speed, ppo_speed = median_of(results["KLPPO"], field), median_of(results["PPO"], field)
        print(
            f"{env_id}: {timesteps} steps x {repeats} repeats, median steps per {label} second: "
            f"KLPPO {ours_speed:.0f}, PPO {ppo_speed:.0f}, ratio {ours_speed / ppo_speed:.3f} (target >= 0.95)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pendulum-v1"], help="environment ids")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--timesteps", type=int, default=None, help="training budget (default: the zoo entry's)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per run")
    parser.add_argument("--quick", action="store_true", help="1 seed, 20k steps, 5 evaluation episodes")
    parser.add_argument("--speed", action="store_true", help="only compare steps/s (interleaved repeats)")
    parser.add_argument("--speed-repeats", type=int, default=4, help="repeats per algorithm with --speed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.timesteps, args.eval_episodes = 1, args.timesteps or 20_000, 5
    for env_id in args.envs:
        if args.speed:
            speed_benchmark(env_id, args.speed_repeats, args.timesteps or 20_000)
        else:
            learning_benchmark(env_id, list(range(args.seeds)), args.timesteps, args.eval_episodes)


if __name__ == "__main__":
    main()

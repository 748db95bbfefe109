"""Benchmark of the natural policy gradient family against sb3-contrib's TRPO (not a test).

Sample efficiency (deterministic evaluation after training, medians over seeds) and speed (Fisher-vector product
against TRPO's Hessian-vector product on the same batch; whole-training steps per second), each measured side by
side with TRPO in the same run. Targets (issue 3): CartPole-v1 >= 475 and Pendulum-v1 >= -200 within 1e5 steps;
HalfCheetah-v5 >= 1800 at 1e6 steps (TNPG); Fisher product <= 0.4x TRPO's product; TNPG steps/s >= 1.05x TRPO's.

    python -m sbx_lecture.bench.npg --envs CartPole-v1 Pendulum-v1 --seeds 3
    python -m sbx_lecture.bench.npg --speed-only
    python -m sbx_lecture.bench.npg --envs HalfCheetah-v5 --seeds 3      # 1e6 steps: hours on a laptop
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import kl_divergence
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize

from sbx_lecture.common.fisher import FisherVectorProduct, policy_parameters_of_distribution
from sbx_lecture.common.flat_params import flatten_tensors
from sbx_lecture.npg import NPG, TNPG

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"tnpg": TNPG, "npg": NPG, "trpo": TRPO}

# Settings shared by all algorithms on an environment (the zoo's TRPO settings), then per-algorithm extras.
SETTINGS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(timesteps=100_000, n_envs=2, normalize=False, common=dict(
        n_steps=512, batch_size=512, gae_lambda=0.98, gamma=0.99, learning_rate=1e-3, n_critic_updates=20,
        cg_damping=1e-3)),
    "Pendulum-v1": dict(timesteps=100_000, n_envs=2, normalize=False, common=dict(
        n_steps=1024, gamma=0.9, gae_lambda=0.95, learning_rate=1e-3, n_critic_updates=20, use_sde=True,
        sde_sample_freq=4)),
    "HalfCheetah-v5": dict(timesteps=1_000_000, n_envs=2, normalize=True, common=dict(
        n_steps=1024, batch_size=128, gamma=0.99, gae_lambda=0.95, cg_damping=0.1, n_critic_updates=20,
        learning_rate=1e-3)),
}
EXTRAS: dict[str, dict[str, dict[str, Any]]] = {
    "tnpg": {"HalfCheetah-v5": dict(cg_max_steps=25, target_kl=0.04)},
    "trpo": {"HalfCheetah-v5": dict(cg_max_steps=25, target_kl=0.04)},
    "npg": {"Pendulum-v1": dict(step_size=0.5)},
}
TARGETS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0, "HalfCheetah-v5": 1800.0}


def make_model(algo: str, env_id: str, seed: int, **overrides: Any) -> BaseAlgorithm:
    """The algorithm with the benchmark's settings for the environment."""
    settings = SETTINGS[env_id]
    env = make_vec_env(env_id, n_envs=settings["n_envs"], seed=seed)
    if settings["normalize"]:
        env = VecNormalize(env)
    kwargs = {**settings["common"], **EXTRAS.get(algo, {}).get(env_id, {}), **overrides}
    return ALGORITHMS[algo]("MlpPolicy", env, seed=seed, **kwargs)


def evaluate(model: BaseAlgorithm, env_id: str, seed: int, n_episodes: int = 10) -> float:
    """Mean return of the deterministic policy on fresh episodes (observation statistics frozen)."""
    env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed)
    train_env = model.get_env()
    if isinstance(train_env, VecNormalize):
        env = VecNormalize(env, training=False, norm_reward=False)
        env.obs_rms = copy.deepcopy(train_env.obs_rms)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True)
    return float(mean_return)  # type: ignore[arg-type]


def train_and_evaluate(algo: str, env_id: str, timesteps: int, seed: int) -> tuple[float, float]:
    """(deterministic return after training, environment steps per second of the training)."""
    th.manual_seed(seed)
    model = make_model(algo, env_id, seed)
    start = time.perf_counter()
    model.learn(timesteps)
    elapsed = time.perf_counter() - start
    return evaluate(model, env_id, seed), timesteps / elapsed


def median_times(functions: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Median CPU time of each function in seconds, the functions interleaved so that load drifts hit all alike.

    CPU time of this process (not wall time), so that other jobs sharing the machine do not count.
    """
    for fn in functions:  # warm-up
        fn()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for fn, samples in zip(functions, times, strict=True):
            start = time.process_time()
            fn()
            samples.append(time.process_time() - start)
    return [statistics.median(samples) for samples in times]


def visited_observations(model: BaseAlgorithm, n_states: int) -> np.ndarray:
    """States visited by the untrained policy (random samples of an unbounded Box would saturate the network)."""
    env = model.get_env()
    assert env is not None
    observations: list[np.ndarray] = [np.asarray(env.reset())]
    while len(observations) * env.num_envs < n_states:
        actions, _ = model.predict(observations[-1])
        observations.append(np.asarray(env.step(actions)[0]))
    return np.concatenate(observations)[:n_states]


def time_fisher_products(env_id: str, batch_size: int, repeats: int = 100) -> tuple[float, float]:
    """(our Fisher-vector product, TRPO's Hessian-vector product) in seconds, same policy, same batch."""
    model = make_model("trpo", env_id, seed=0)
    assert isinstance(model, TRPO) and isinstance(model.policy, ActorCriticPolicy)
    policy = model.policy
    observations = th.as_tensor(visited_observations(model, batch_size), dtype=th.float32, device=model.device)
    names = policy_parameters_of_distribution(policy, observations)
    fvp = FisherVectorProduct(policy, observations, names, action_reduction="mean")
    vector = th.randn(fvp.n_parameters)

    with th.no_grad():
        old = copy.copy(policy.get_distribution(observations))
    new = policy.get_distribution(observations)
    params = [dict(policy.named_parameters())[name] for name in names]
    grad_kl = flatten_tensors(th.autograd.grad(kl_divergence(new, old).mean(), params, create_graph=True))
    trpo_product = model.hessian_vector_product
    ours, theirs = median_times([lambda: fvp(vector), lambda: trpo_product(params, grad_kl, vector)], repeats)
    return ours, theirs


def time_update(algo: str, env_id: str, repeats: int = 3) -> tuple[float, float]:
    """(CPU seconds of one ``train()`` call, of its actor part alone) on one rollout, medians over repeats."""
    model = make_model(algo, env_id, seed=0)
    assert isinstance(model, OnPolicyAlgorithm) and model.env is not None
    model._setup_learn(model.n_steps * model.n_envs)
    model.set_logger(configure(None, [""]))
    model.collect_rollouts(model.env, model._init_callback(None), model.rollout_buffer, n_rollout_steps=model.n_steps)
    (whole,) = median_times([model.train], repeats)
    model.n_critic_updates = 0  # type: ignore[attr-defined]
    with warnings.catch_warnings():  # TRPO logs the mean of an empty list of value losses
        warnings.simplefilter("ignore", RuntimeWarning)
        (actor,) = median_times([model.train], repeats)
    return whole, actor


def time_training(algo: str, env_id: str, timesteps: int, seed: int = 0) -> float:
    """Environment steps per CPU second of ``learn`` (rollouts and updates; CPU time of this process)."""
    model = make_model(algo, env_id, seed)
    start = time.process_time()
    model.learn(timesteps)
    return timesteps / (time.process_time() - start)


def sample_efficiency(algos: list[str], envs: list[str], seeds: int, timesteps: int | None) -> None:
    for env_id in envs:
        budget = timesteps or SETTINGS[env_id]["timesteps"]
        medians = {}
        for algo in algos:
            results = [train_and_evaluate(algo, env_id, budget, seed) for seed in range(seeds)]
            returns = [r for r, _ in results]
            medians[algo] = statistics.median(returns)
            print(f"{env_id} {algo}: returns {[round(r, 1) for r in returns]} median {medians[algo]:.1f} "
                  f"(target {TARGETS[env_id]}) steps/s median {statistics.median(s for _, s in results):.0f} "
                  f"[{budget} steps, {seeds} seeds]", flush=True)
        if "trpo" in medians:
            for algo, value in medians.items():
                if algo != "trpo":
                    print(f"{env_id} {algo} - trpo median return difference: {value - medians['trpo']:+.1f}")


def speed(env_id: str, batch_size: int, timesteps: int) -> None:
    ours, theirs = time_fisher_products(env_id, batch_size)
    print(f"{env_id} batch {batch_size}: Fisher-vector product {ours * 1e3:.2f} ms, TRPO Hessian-vector product "
          f"{theirs * 1e3:.2f} ms, ratio {ours / theirs:.2f} (target <= 0.4)", flush=True)
    for algo in ("tnpg", "trpo"):
        whole, actor = time_update(algo, env_id)
        print(f"{env_id} one update ({algo}): train() {whole * 1e3:.0f} ms CPU, actor step alone {actor * 1e3:.0f} ms",
              flush=True)
    tnpg = time_training("tnpg", env_id, timesteps)
    trpo = time_training("trpo", env_id, timesteps)
    print(f"{env_id} training {timesteps} steps: TNPG {tnpg:.0f} steps/s, TRPO {trpo:.0f} steps/s, "
          f"ratio {tnpg / trpo:.2f} (target >= 1.05)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["tnpg", "trpo"], choices=sorted(ALGORITHMS))
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pendulum-v1"], choices=sorted(SETTINGS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=None, help="training budget (default: the target's)")
    parser.add_argument("--speed-env", default="HalfCheetah-v5", choices=sorted(SETTINGS))
    parser.add_argument("--speed-batch", type=int, default=2048)
    parser.add_argument("--speed-timesteps", type=int, default=20_480)
    parser.add_argument("--speed-only", action="store_true", help="only the speed comparison")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed comparison")
    parser.add_argument("--quick", action="store_true", help="one seed, 10k steps, short speed run (smoke test)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.timesteps, args.speed_timesteps = 1, 10_000, 4096
    if not args.speed_only:
        sample_efficiency(args.algos, args.envs, args.seeds, args.timesteps)
    if not args.no_speed:
        speed(args.speed_env, args.speed_batch, args.speed_timesteps)


if __name__ == "__main__":
    main()

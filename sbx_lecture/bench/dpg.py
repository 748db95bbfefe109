"""DPG benchmarks: the paper's continuous bandit, control tasks, and speed against SB3's TD3.

Run ``python -m sbx_lecture.bench.dpg --help``. Suites:

- ``bandit``: cost against steps for DPG (COPDAC, online) and a stochastic policy gradient (SB3 A2C) on the
  quadratic-cost bandit of Silver et al. (2014) with m = 10, 25, 50 (their figure 1); writes a PNG.
- ``control``: final return of DPG (best configuration: neural critic, replay, target networks) and of SB3 TD3
  with the same networks on Pendulum-v1 / InvertedPendulum-v5, deterministic evaluation, median over seeds.
- ``speed``: environment steps per second of DPG and TD3 with the same network sizes, in one process.
"""


from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import A2C, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

from sbx_lecture.dpg import DPG
from sbx_lecture.envs.continuous_bandit import ContinuousBandit

NET_ARCH = [64, 64]


# ----------------------------------------------------------------------------- reusable pieces
def evaluate(model: BaseAlgorithm, episodes: int = 10) -> float:
    """Mean deterministic return over ``episodes`` episodes of the model's own env."""
    env = model.get_env()
    assert env is not None
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True)
    return float(mean_return)  # type: ignore[arg-type]


def steps_per_second(model: BaseAlgorithm, timesteps: int) -> float:
    """Wall-clock environment steps per second of ``model.learn(timesteps)`` (collection + updates)."""
    start = time.perf_counter()
    model.learn(timesteps)
    return timesteps / (time.perf_counter() - start)


def gaussian_noise(action_dim: int, sigma: float) -> NormalActionNoise:
    return NormalActionNoise(np.zeros(action_dim), sigma * np.ones(action_dim))


class BanditCostRecorder(BaseCallback):
    """Records the cost of the deterministic action (the policy mean for A2C) every ``every`` steps."""

    def __init__(self, bandit: ContinuousBandit, every: int):
        super().__init__()
        self.bandit, self.every = bandit, every
        self.steps: list[int] = []
        self.costs: list[float] = []

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0 or not self.steps:
            action, _ = self.model.predict(np.zeros(1, np.float32), deterministic=True)
            self.steps.append(self.num_timesteps)
            self.costs.append(self.bandit.cost(action))
        return True


# ----------------------------------------------------------------------------- bandit
def bandit_dpg(bandit: ContinuousBandit, seed: int) -> DPG:
    """COPDAC-B as in the paper: a linear actor (here tanh-squashed), the compatible critic with a baseline, plain SGD,
    fixed-width Gaussian behaviour noise. The critic step is normalised by the feature scale 1 + mσ² (the largest
    stable step is about 2 / (1 + mσ²)); the actor is slower than the critic (two time-scales); both decay linearly."""
    m = bandit.action_dim
    sigma = 0.3
    critic_rate = 0.5 / (1.0 + m * sigma**2)
    model = DPG(
        "MlpPolicy",
        bandit,
        learning_rate=lambda progress: 3e-5 * progress,
        critic_learning_rate=lambda progress: critic_rate * progress,
        learning_starts=0,
        gamma=0.0,
        action_noise=gaussian_noise(m, sigma),
        policy_kwargs=dict(net_arch=[], optimizer_class=th.optim.SGD),
        seed=seed,
    )
    start_at_zero(model.actor)
    return model


A2C_LEARNING_RATES = (0.01, 0.03, 0.1)


def bandit_a2c(bandit: ContinuousBandit, seed: int, learning_rate: float = 0.03) -> A2C:
    """The stochastic policy gradient: Gaussian N(θ, exp(y)) adapting mean and variance, with a baseline."""
    model = A2C(
        "MlpPolicy",
        bandit,
        learning_rate=learning_rate,
        n_steps=5,
        gamma=0.0,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[])),
        seed=seed,
    )
    start_at_zero(model.policy.action_net)
    return model


def start_at_zero(module: th.nn.Module) -> None:
    """Both policies start from the action 0 (cost 16 Σ eig(C)), so curves are comparable."""
    with th.no_grad():
        for parameter in module.parameters():
            parameter.zero_()


def a2c_with_rate(learning_rate: float) -> Callable[[ContinuousBandit, int], BaseAlgorithm]:
    return lambda bandit, seed: bandit_a2c(bandit, seed, learning_rate)


def bandit_curve(build: Callable[[ContinuousBandit, int], BaseAlgorithm], m: int, seeds: list[int],
                 timesteps: int) -> tuple[list[int], np.ndarray]:
    """Median (over seeds) cost of the deterministic action against steps."""
    curves, steps = [], []
    for seed in seeds:
        bandit = ContinuousBandit(action_dim=m)
        recorder = BanditCostRecorder(bandit, max(timesteps // 50, 1))
        build(bandit, seed).learn(timesteps, callback=recorder)
        curves.append(recorder.costs)
        steps = recorder.steps
    length = min(len(c) for c in curves)
    return steps[:length], np.median(np.array([c[:length] for c in curves]), axis=0)


def run_bandit(dims: list[int], seeds: list[int], timesteps: int, out: Path | None) -> dict[Any, Any]:
    """DPG against A2C (its learning rate picked from a small grid, best final cost, as the paper's grid search)."""
    results: dict[Any, Any] = {}
    for m in dims:
        results[("DPG", m)] = bandit_curve(bandit_dpg, m, seeds, timesteps)
        a2c_runs = {rate: bandit_curve(a2c_with_rate(rate), m, seeds, timesteps) for rate in A2C_LEARNING_RATES}
        best_rate = min(a2c_runs, key=lambda rate: a2c_runs[rate][1][-1])
        results[("A2C", m)] = a2c_runs[best_rate]
        for name in ("DPG", "A2C"):
            steps, costs = results[(name, m)]
            label = f"{name} (lr {best_rate})" if name == "A2C" else name
            print(f"bandit m={m:>3} {label:<15} cost {costs[0]:8.2f} -> {costs[-1]:8.3f} after {timesteps} steps "
                  f"(median of {len(seeds)} seeds); steps to 10% of the initial cost: "
                  f"{first_below(steps, costs, 0.1 * costs[0])}", flush=True)
        dpg_final, a2c_final = results[("DPG", m)][1][-1], results[("A2C", m)][1][-1]
        print(f"bandit m={m:>3} final cost ratio A2C / DPG: {a2c_final / max(dpg_final, 1e-12):.1f}", flush=True)
    if out is not None:
        plot_bandit(results, dims, out)
    return results


def first_below(steps: list[int], costs: np.ndarray, threshold: float) -> int | None:
    for step, cost in zip(steps, costs, strict=False):
        if cost < threshold:
            return step
    return None


def plot_bandit(results: dict[Any, Any], dims: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3.2), squeeze=False)
    for ax, m in zip(axes[0], dims, strict=True):
        for name, style in (("DPG", "-"), ("A2C", "--")):
            steps, costs = results[(name, m)]
            ax.plot(steps, costs, style, label="DPG (COPDAC-B)" if name == "DPG" else "stochastic PG (A2C)")
        ax.set_yscale("log")
        ax.set_title(f"action dimension m = {m}")
        ax.set_xlabel("time-steps")
        ax.set_ylabel("cost")
        ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"figure: {out}")


# ----------------------------------------------------------------------------- control and speed
def control_dpg(env_id: str, seed: int) -> DPG:
    """Best configuration found: neural critic, replay buffer and target networks (the step to DDPG)."""
    return DPG(
        "MlpPolicy",
        env_id,
        critic="mlp",
        buffer_size=100_000,
        batch_size=64,
        learning_starts=1000,
        gamma=0.98 if env_id.startswith("Pendulum") else 0.99,
        target_networks=True,
        tau=0.01,
        action_noise=gaussian_noise(1, 0.1),
        policy_kwargs=dict(net_arch=NET_ARCH),
        seed=seed,
    )


def control_td3(env_id: str, seed: int) -> TD3:
    """The SB3 sibling with the same networks, batch, buffer, discount and noise."""
    return TD3(
        "MlpPolicy",
        env_id,
        buffer_size=100_000,
        batch_size=64,
        learning_starts=1000,
        gamma=0.98 if env_id.startswith("Pendulum") else 0.99,
        tau=0.01,
        action_noise=gaussian_noise(1, 0.1),
        policy_kwargs=dict(net_arch=NET_ARCH),
        seed=seed,
    )


def run_control(env_ids: list[str], seeds: list[int], timesteps: int) -> None:
    for env_id in env_ids:
        finals: dict[str, list[float]] = {"DPG": [], "TD3": []}
        for seed in seeds:
            for name, build in (("DPG", control_dpg), ("TD3", control_td3)):
                model: BaseAlgorithm = build(env_id, seed)
                model.learn(timesteps)
                finals[name].append(evaluate(model))
                print(f"{env_id} seed {seed} {name}: {finals[name][-1]:.1f}", flush=True)
        dpg, td3 = statistics.median(finals["DPG"]), statistics.median(finals["TD3"])
        print(f"{env_id} after {timesteps} steps, median over {len(seeds)} seeds: DPG {dpg:.1f}, TD3 {td3:.1f}, "
              f"DPG/TD3 return ratio {dpg / td3:.2f}")


SpeedBuilder = Callable[[str, int], BaseAlgorithm]


def speed_builders() -> dict[str, SpeedBuilder]:
    """Same networks ([64, 64]), batch size 256 for the replay variants, one gradient step per env step."""

    def dpg_online(env_id: str, seed: int) -> BaseAlgorithm:
        return DPG("MlpPolicy", env_id, critic="mlp", learning_starts=100, action_noise=gaussian_noise(1, 0.1),
                   policy_kwargs=dict(net_arch=NET_ARCH), seed=seed)

    def dpg_compatible(env_id: str, seed: int) -> BaseAlgorithm:
        return DPG("MlpPolicy", env_id, learning_starts=100, action_noise=gaussian_noise(1, 0.1),
                   policy_kwargs=dict(net_arch=NET_ARCH), seed=seed)

    def dpg_replay(env_id: str, seed: int) -> BaseAlgorithm:
        return DPG("MlpPolicy", env_id, critic="mlp", buffer_size=100_000, batch_size=256, learning_starts=100,
                   action_noise=gaussian_noise(1, 0.1), policy_kwargs=dict(net_arch=NET_ARCH), seed=seed)

    def td3(env_id: str, seed: int) -> BaseAlgorithm:
        return TD3("MlpPolicy", env_id, buffer_size=100_000, batch_size=256, learning_starts=100,
                   action_noise=gaussian_noise(1, 0.1), policy_kwargs=dict(net_arch=NET_ARCH), seed=seed)

    def td3_fused(env_id: str, seed: int) -> BaseAlgorithm:
        # DPG uses PyTorch's fused Adam by default; this row shows how much of the gap that alone explains
        return TD3("MlpPolicy", env_id, buffer_size=100_000, batch_size=256, learning_starts=100,
                   action_noise=gaussian_noise(1, 0.1), seed=seed,
                   policy_kwargs=dict(net_arch=NET_ARCH, optimizer_kwargs=dict(fused=True)))

    return {"DPG mlp online": dpg_online, "DPG compatible online": dpg_compatible,
            "DPG mlp replay (batch 256)": dpg_replay, "TD3 (batch 256)": td3,
            "TD3 (batch 256, fused Adam)": td3_fused}


def run_speed(env_id: str, seeds: list[int], timesteps: int) -> None:
    rates: dict[str, list[float]] = {name: [] for name in speed_builders()}
    for seed in seeds:
        for name, build in speed_builders().items():  # interleaved, so load changes hit all alike
            rates[name].append(steps_per_second(build(env_id, seed), timesteps))
    td3 = statistics.median(rates["TD3 (batch 256)"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"speed {env_id} {name:<28} {rate:8.1f} steps/s   ratio to TD3 {rate / td3:5.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", nargs="?", choices=["bandit", "control", "speed", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--timesteps", type=int, default=None, help="steps per run (suite default if omitted)")
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "InvertedPendulum-v5"], help="control envs")
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 25, 50], help="bandit action dimensions")
    parser.add_argument("--plot", type=Path, default=Path("docs/img/dpg_bandit.png"), help="bandit figure")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run of every suite")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    seeds = [args.first_seed + i for i in range(1 if args.quick else args.seeds)]
    if args.suite in ("bandit", "all"):
        run_bandit(args.dims, seeds, args.timesteps or (300 if args.quick else 5000), args.plot)
    if args.suite in ("control", "all"):
        run_control(args.envs, seeds, args.timesteps or (1500 if args.quick else 50_000))
    if args.suite in ("speed", "all"):
        run_speed(args.envs[0], seeds, args.timesteps or (500 if args.quick else 5000))


if __name__ == "__main__":
    main()

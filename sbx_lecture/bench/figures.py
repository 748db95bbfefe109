"""The lecture's measurements that are not training runs, as suite entries (:class:`~.suites.FigureJob`).

- ``dpg_bandit``: the cost of the deterministic action against steps for DPG (COPDAC-B, online) and a stochastic
  policy gradient (SB3's A2C, its learning rate picked from a small grid by final cost) on the quadratic-cost
  bandit of Silver et al. (2014), figure 1, for several action dimensions m.
- ``sql_multigoal``: trajectories sampled from SQL's stochastic policy on the multi-goal environment of
  Haarnoja et al. (2017), and how many reach each goal (SQL's settings: ``zoo_configs/sql.yml``).
- ``fisher_product``: CPU time of our Fisher-vector product against sb3-contrib TRPO's Hessian-vector product of
  the KL, same policy, same batch (TRPO's zoo settings), median of interleaved repeats.

Each is a function ``(folder, **params) -> measurements`` that draws ``figure.png`` into ``folder``; the harness runs
it as it runs the other jobs (:func:`.harness.execute`), but in the command's own process, one figure after the
other, never on the Dask workers: it writes ``result.json`` (``<out>/figures/<name>/<settings hash>``), skips it once
finished, and the suite's report shows it.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from sbx_lecture.bench.plots import pyplot, save_figure
from sbx_lecture.bench.speed import Contestant, build_with_environment, interleaved_samples, timed
from sbx_lecture.zoo_config import ZooSettings

IMAGE_FILE = "figure.png"
MULTIGOAL_ID = "sbx_lecture/MultiGoal-v0"


# --- the continuous bandit: DPG against a stochastic policy gradient -----------------------------------------------

BANDIT_NOISE = 0.3


def _start_at_zero(module: Any) -> None:
    """Both policies start from the action 0, so that their curves start at the same cost."""
    import torch as th

    for parameter in module.parameters():
        th.nn.init.zeros_(parameter)


def bandit_dpg(bandit: Any, seed: int) -> Any:
    """COPDAC-B as in the paper: a linear actor, the compatible critic with a baseline, plain SGD, fixed Gaussian
    behaviour noise. The critic step is normalised by the feature scale 1 + mσ²; the actor is the slower time-scale;
    both decay linearly."""
    import torch as th
    from stable_baselines3.common.noise import NormalActionNoise

    from sbx_lecture.dpg import DPG

    m = bandit.action_dim
    critic_rate = 0.5 / (1.0 + m * BANDIT_NOISE**2)
    model = DPG(
        "MlpPolicy",
        bandit,
        **DPG.paper_settings,
        learning_rate=lambda progress: 3e-5 * progress,
        critic_learning_rate=lambda progress: critic_rate * progress,
        learning_starts=0,
        gamma=0.0,
        action_noise=NormalActionNoise(np.zeros(m), BANDIT_NOISE * np.ones(m)),
        policy_kwargs=dict(net_arch=[], optimizer_class=th.optim.SGD),
        seed=seed,
    )
    _start_at_zero(model.actor)
    return model


def bandit_a2c(bandit: Any, seed: int, learning_rate: float) -> Any:
    """The stochastic policy gradient: a Gaussian policy adapting mean and log-std, with a baseline."""
    from stable_baselines3 import A2C

    model = A2C(
        "MlpPolicy",
        bandit,
        learning_rate=learning_rate,
        n_steps=5,
        gamma=0.0,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[])),
        seed=seed,
    )
    _start_at_zero(model.policy.action_net)
    return model


def bandit_curve(
    build: Callable[[Any, int], Any], m: int, seeds: int, timesteps: int
) -> tuple[list[int], list[float], list[float], list[float]]:
    """The cost of the deterministic action every ``timesteps / 50`` steps: the steps, the median over seeds, and the
    lowest and highest seed's cost (the seeds' range)."""
    from stable_baselines3.common.callbacks import ConvertCallback, EveryNTimesteps

    from sbx_lecture.envs.continuous_bandit import ContinuousBandit

    def cost_curve(seed: int) -> tuple[list[int], list[float]]:
        bandit = ContinuousBandit(action_dim=m)
        model = build(bandit, seed)
        steps: list[int] = []
        costs: list[float] = []

        def record(*_: Any) -> bool:  # the cost of the deterministic action now
            steps.append(model.num_timesteps)
            costs.append(bandit.cost(model.predict(np.zeros(1, np.float32), deterministic=True)[0]))
            return True

        record()
        model.learn(timesteps, callback=EveryNTimesteps(max(timesteps // 50, 1), ConvertCallback(record)))
        return steps, costs

    runs = [cost_curve(seed) for seed in range(seeds)]
    length = min(len(costs) for _, costs in runs)
    costs = np.array([costs[:length] for _, costs in runs])
    return runs[0][0][:length], *(statistic(costs, axis=0).tolist() for statistic in (np.median, np.min, np.max))


def _first_below(steps: list[int], costs: list[float], threshold: float) -> int | None:
    return next((step for step, cost in zip(steps, costs, strict=False) if cost < threshold), None)


def dpg_bandit(
    folder: Path,
    dims: tuple[int, ...] = (10, 25, 50),
    seeds: int = 3,
    timesteps: int = 5_000,
    a2c_learning_rates: tuple[float, ...] = (0.01, 0.03, 0.1),
) -> dict[str, Any]:
    """DPG against A2C on the continuous bandit for each action dimension in ``dims``; plot the cost curves.

    :param seeds: seeds 0 .. seeds - 1; the curves are their medians
    :param timesteps: steps of each run
    :param a2c_learning_rates: A2C's grid (the best final cost is kept, as the paper's grid search)
    """
    rows: list[dict[str, Any]] = []
    for m in dims:
        steps, dpg_costs, *dpg_range = bandit_curve(bandit_dpg, m, seeds, timesteps)
        a2c_runs = {
            rate: bandit_curve(partial(bandit_a2c, learning_rate=rate), m, seeds, timesteps)
            for rate in a2c_learning_rates
        }
        best_rate = min(a2c_runs, key=lambda rate: a2c_runs[rate][1][-1])
        a2c_steps, a2c_costs, *a2c_range = a2c_runs[best_rate]
        rows.append(
            {
                "m": m,
                "initial_cost": dpg_costs[0],
                "dpg_final_cost": dpg_costs[-1],
                "a2c_final_cost": a2c_costs[-1],
                "a2c_learning_rate": best_rate,
                "ratio_a2c_to_dpg": a2c_costs[-1] / max(dpg_costs[-1], 1e-12),
                "dpg_steps_to_10_percent": _first_below(steps, dpg_costs, 0.1 * dpg_costs[0]),
                "a2c_steps_to_10_percent": _first_below(a2c_steps, a2c_costs, 0.1 * a2c_costs[0]),
                "steps": steps,
                "dpg_costs": dpg_costs,
                "dpg_cost_range": dpg_range,
                "a2c_steps": a2c_steps,
                "a2c_costs": a2c_costs,
                "a2c_cost_range": a2c_range,
            }
        )
    fig, axes = pyplot().subplots(1, len(rows), figsize=(4 * len(rows), 3.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        curves = (
            ("steps", "dpg", "-", "DPG (COPDAC-B)"),
            ("a2c_steps", "a2c", "--", f"stochastic PG (A2C, lr {row['a2c_learning_rate']})"),
        )
        for steps_key, algo, style, label in curves:
            line = ax.plot(row[steps_key], row[f"{algo}_costs"], style, label=label)[0]
            low, high = row[f"{algo}_cost_range"]
            ax.fill_between(row[steps_key], low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(yscale="log", title=f"action dimension m = {row['m']}", xlabel="time-steps", ylabel="cost")
        ax.legend()
    fig.suptitle(f"cost of the deterministic action: median of seeds 0-{seeds - 1} (line), their range (shaded)")
    save_figure(fig, folder / IMAGE_FILE, dpi=100)
    ratios = ", ".join(f"m={row['m']}: {row['ratio_a2c_to_dpg']:.1f}" for row in rows)
    return {"summary": f"final cost A2C / DPG after {timesteps} steps, median of {seeds} seeds: {ratios}", "rows": rows}


def _zoo_model(algo: str, env_id: str, seed: int) -> tuple[Any, ZooSettings]:
    """``algo`` with its zoo settings for ``env_id``, on the CPU, and those settings."""
    from sbx_lecture.training import resolve_algorithm
    from sbx_lecture.zoo_config import zoo_settings

    settings = zoo_settings(algo, env_id)
    return build_with_environment(
        Contestant(algo, resolve_algorithm(algo)[1], settings, settings.kwargs), env_id, seed
    ), settings


# --- soft Q-learning on the multi-goal environment ---------------------------------------------------------------


def sql_multigoal(folder: Path, timesteps: int = 20_000, seed: int = 0, episodes: int = 50) -> dict[str, Any]:
    """Train SQL with its zoo settings on the multi-goal environment; sample ``episodes`` stochastic trajectories.

    A policy that keeps the reward's multimodality reaches several goals; the plot shows the trajectories.
    """
    from sbx_lecture.envs.multigoal import MultiGoalEnv

    model, settings = _zoo_model("sql", MULTIGOAL_ID, seed)
    model.learn(timesteps)
    model.get_env().close()
    env = MultiGoalEnv()
    paths: list[np.ndarray] = []
    goals: list[int] = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=episode)
        visited, done, info = [observation], False, {"goal": -1}
        while not done:
            action, _ = model.predict(observation, deterministic=False)
            observation, _, terminated, truncated, info = env.step(action)
            visited.append(observation)
            done = terminated or truncated
        paths.append(np.array(visited))
        goals.append(int(info["goal"]))
    counts = np.bincount(np.array(goals) + 1, minlength=len(env.goals) + 1).tolist()
    fig, ax = pyplot().subplots(figsize=(5, 5))
    for trajectory in paths:
        ax.plot(trajectory[:, 0], trajectory[:, 1], color="tab:blue", alpha=0.5, linewidth=1)
    ax.scatter(env.goals[:, 0], env.goals[:, 1], s=300, color="tab:red", marker="*", zorder=3, label="goals")
    ax.set(xlim=(-env.bound, env.bound), ylim=(-env.bound, env.bound), aspect="equal")
    ax.set_title(
        f"SQL on the multi-goal environment: {episodes} sampled trajectories\n(seed {seed}, {timesteps} steps)"
    )
    ax.legend(loc="upper right")
    save_figure(fig, folder / IMAGE_FILE, tight=True, dpi=100)
    goal_list = [tuple(goal) for goal in env.goals.tolist()]
    return {
        "summary": f"of {episodes} sampled trajectories after {timesteps} steps, {counts[1:]} reached the goals "
        f"{goal_list}, {counts[0]} none",
        "goal_counts": counts[1:],
        "no_goal": counts[0],
        "goals": goal_list,
        "settings_source": settings.source,
    }


# --- the Fisher-vector product against TRPO's Hessian-vector product ---------------------------------------------


def _visited_observations(model: Any, n_states: int) -> np.ndarray:
    """States the untrained policy visits (random samples of an unbounded Box would saturate the network)."""
    env = model.get_env()
    observations: list[np.ndarray] = [np.asarray(env.reset())]
    while len(observations) * env.num_envs < n_states:
        actions, _ = model.predict(observations[-1])
        observations.append(np.asarray(env.step(actions)[0]))
    return np.concatenate(observations)[:n_states]


def fisher_product(
    folder: Path, env: str = "HalfCheetah-v5", batch_size: int = 2048, repeats: int = 100
) -> dict[str, Any]:
    """CPU seconds of our Fisher-vector product and of TRPO's Hessian-vector product on the same policy and batch.

    The policy is TRPO's, built with TRPO's zoo settings for ``env``; both products use the mean over the batch.
    One warm-up call each, then ``repeats`` interleaved calls; the medians and their ratio are reported.
    """
    import torch as th
    from stable_baselines3.common.distributions import kl_divergence

    from sbx_lecture.common.fisher import FisherVectorProduct, policy_parameters_of_distribution
    from sbx_lecture.common.flat_params import flatten_tensors

    model, settings = _zoo_model("trpo", env, 0)
    policy = model.policy
    observations = th.as_tensor(_visited_observations(model, batch_size), dtype=th.float32)
    model.get_env().close()
    names = policy_parameters_of_distribution(policy, observations)
    product = FisherVectorProduct(policy, observations, names, action_reduction="mean")
    vector = th.randn(product.n_parameters, generator=th.Generator().manual_seed(0))
    with th.no_grad():
        old = copy.copy(policy.get_distribution(observations))
    params = [dict(policy.named_parameters())[name] for name in names]
    kl = kl_divergence(policy.get_distribution(observations), old).mean()
    grad_kl = flatten_tensors(th.autograd.grad(kl, params, create_graph=True))

    theirs = partial(model.hessian_vector_product, params, grad_kl, vector)
    # One call each as the warm-up, and a check that both compute the same product (TRPO's adds its damping).
    expected = theirs().detach() - model.cg_damping * vector
    difference = float((product(vector).detach() - expected).norm() / expected.norm().clamp_min(1e-12))
    samples = interleaved_samples(
        [timed(lambda: product(vector), time.process_time), timed(theirs, time.process_time)], repeats
    )
    ours_seconds, theirs_seconds = (statistics.median(values) for values in samples)
    fig, ax = pyplot().subplots(figsize=(5, 3.2))
    ax.boxplot([np.array(values) * 1e3 for values in samples], tick_labels=["Fisher-vector product", "TRPO's HVP"])
    ax.set(ylabel="CPU ms per product", title=f"{env}, batch {batch_size}, {repeats} interleaved repeats")
    save_figure(fig, folder / IMAGE_FILE, dpi=100)
    ratio = ours_seconds / theirs_seconds
    return {
        "summary": f"{env} batch {batch_size}: Fisher-vector product {ours_seconds * 1e3:.2f} ms, TRPO's "
        f"Hessian-vector product {theirs_seconds * 1e3:.2f} ms CPU, ratio {ratio:.2f}",
        "ours_seconds": ours_seconds,
        "trpo_seconds": theirs_seconds,
        "ratio": ratio,
        "ours_samples": samples[0],
        "trpo_samples": samples[1],
        "n_parameters": product.n_parameters,
        "relative_difference": difference,
        "settings_source": settings.source,
    }


#: Every figure by name: ``function(folder, **params) -> measurements`` (the function writes ``figure.png``).
FIGURES: dict[str, Callable[..., dict[str, Any]]] = {
    "dpg_bandit": dpg_bandit,
    "sql_multigoal": sql_multigoal,
    "fisher_product": fisher_product,
}

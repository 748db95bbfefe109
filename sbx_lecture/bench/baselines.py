"""The two ends of the normalised score: a uniformly random policy's return and the best published return.

A score ``x`` on an environment becomes ``(x - random) / (best - random)``: 0 is the random policy, 1 the best figure
in ``../shared/reference/published_results.csv`` (the table :mod:`.published` holds). The random policy's return is
measured (:func:`random_policy_returns`) and cached in the report folder; an environment without a published figure
uses the best final return measured in the suite instead, and the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbx_lecture.bench.published import published_figures, same_task
from sbx_lecture.runs import write_text

#: Where the published figures come from, named by their path in the repository.
PUBLISHED_SOURCE = "../shared/reference/published_results.csv"
RANDOM_CACHE_FILE = "random_policy.json"
#: Episodes of the random policy per environment (the mean is the normalisation's zero).
RANDOM_EPISODES = 50

#: Return bounds from each environment's reward definition and time limit (gymnasium's documentation): CartPole
#: +1 a step for at most 500 steps; Acrobot -1 a step for at most 500; Pendulum at worst -(π² + 0.1·8² + 0.001·2²)
#: a step for 200 steps, at best 0; MountainCarContinuous +100 at the goal less 0.1·a² (|a| ≤ 1) a step for at most
#: 999 steps. Environments not listed here are bounded by the returns measured on them.
RETURN_RANGES: dict[str, tuple[float, float]] = {
    "CartPole-v1": (0.0, 500.0),
    "Acrobot-v1": (-500.0, 0.0),
    "Pendulum-v1": (-(np.pi**2 + 0.1 * 8.0**2 + 0.001 * 2.0**2) * 200, 0.0),
    "MountainCarContinuous-v0": (-0.1 * 999, 100.0),
}


def return_range(env_id: str, observed: np.ndarray | None = None) -> tuple[float, float]:
    """The returns an episode of ``env_id`` can reach: :data:`RETURN_RANGES`, else the range of ``observed``.

    :param env_id: gymnasium environment id
    :param observed: returns measured on it (used when the environment has no known bounds)
    """
    if env_id in RETURN_RANGES:
        return RETURN_RANGES[env_id]
    if observed is None or np.size(observed) == 0:
        return -np.inf, np.inf
    return float(np.min(observed)), float(np.max(observed))


def random_policy_returns(env_id: str, episodes: int = RANDOM_EPISODES, seed: int = 0) -> list[float]:
    """Returns of ``episodes`` episodes of a policy that samples the action space uniformly.

    :param env_id: gymnasium environment id
    :param episodes: number of episodes
    :param seed: seeds the first reset and the action space
    """
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    try:
        for episode in range(episodes):
            env.reset(seed=seed if episode == 0 else None)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def random_scores(env_ids: list[str], folder: Path, episodes: int = RANDOM_EPISODES) -> dict[str, float]:
    """Mean return of the random policy on each environment, measured once and cached in ``folder``.

    The cache (``random_policy.json``) keeps each environment's returns and episode count; a different count is
    measured again.
    """
    path = folder / RANDOM_CACHE_FILE
    try:
        cache = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        cache = {}
    changed = False
    for env_id in env_ids:
        if cache.get(env_id, {}).get("episodes") != episodes:
            cache[env_id] = {"episodes": episodes, "returns": random_policy_returns(env_id, episodes)}
            changed = True
    if changed:
        folder.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(cache, indent=2))
    return {env_id: float(np.mean(cache[env_id]["returns"])) for env_id in env_ids}


@dataclass(frozen=True)
class Reference:
    """The normalisation of one environment.

    :param env: environment id
    :param random: mean return of the uniformly random policy
    :param best: the best published return, or the best measured in the suite
    :param best_source: where ``best`` comes from (``"<source> <algo> <budget>"`` or ``"measured: <algo>"``)
    :param published: whether ``best`` is a published figure
    """

    env: str
    random: float
    best: float
    best_source: str
    published: bool

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """``(scores - random) / (best - random)``."""
        span = self.best - self.random
        return (np.asarray(scores, dtype=float) - self.random) / (span if span != 0 else 1.0)


def best_published(env_id: str) -> tuple[float, str] | None:
    """The best published return on ``env_id`` (any algorithm, any budget) and its source, or ``None``."""
    figures = [figure for figure in published_figures() if same_task(figure.env, env_id)]
    if not figures:
        return None
    best = max(figures, key=lambda figure: figure.mean)
    note = f", {best.env_version_note}" if best.env_version_note else ""
    return best.mean, f"{best.source}: {best.algo} at {best.timesteps:,} steps{note}"


def references(random: dict[str, float], measured_best: dict[str, tuple[float, str]]) -> dict[str, Reference]:
    """Each environment's :class:`Reference`.

    :param random: the random policy's mean return per environment
    :param measured_best: per environment, the best final return measured in the suite and the algorithm that got
        it (used where nothing is published)
    """
    found = {}
    for env_id, zero in random.items():
        published = best_published(env_id)
        if published is not None:
            found[env_id] = Reference(env_id, zero, published[0], published[1], True)
        else:
            value, algo = measured_best[env_id]
            found[env_id] = Reference(env_id, zero, value, f"measured in this suite: {algo}", False)
    return found

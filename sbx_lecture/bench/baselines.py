"""The figures ours are set beside: published results, a uniformly random policy's return, and the two ends of the
normalised score.

Published results (``published_results.yml``, taken from ``../shared/reference/published_results.csv``): the RL
Baselines3 Zoo's benchmark, Tianshou's MuJoCo examples, OpenAI Baselines' 1M-step MuJoCo benchmark and table 1 of
the PPO paper. They are the sources' figures, never ours, and they are not measured the way we measure: the RL Zoo
reports one run with deterministic evaluation; Tianshou the maximum average return over training; OpenAI Baselines
and Tianshou ran older MuJoCo versions (v1, v3) than the v5 tasks we run; the PPO paper gives a normalised score over
seven tasks. :func:`published_for` gives the figures for an algorithm on a task, at one budget or at any.

A score ``x`` on a task becomes ``(x - random) / (reference - random)``: 0 is the random policy, 1 the task's
reference. The random policy's return is measured (:func:`random_rollout`, one environment, seed 0) and cached in
the report folder. The reference is one cited figure per task, a scale and not a ceiling (scores above 1 are kept as
they are), chosen by one rule: the published figure of the lecture's on-policy baseline, TRPO, on the task, the RL
Zoo's where it ran the task, else Tianshou's (10 seeds); the RL Zoo's single old run is passed over where it lies far
below the multi-seed figures (HalfCheetah: the zoo's 1 785.5 against Tianshou's 4 471.2, the only such task). The
chosen row carries ``reference: true`` in ``published_results.yml``. A task without it is scaled by the most an
episode can return where that is known (:data:`RETURN_RANGES`: InvertedPendulum-v5's 1 000), else by the best final
return measured in the suite, which the report marks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from sbx_lecture.infra.files import write_json

#: Where the published figures come from, named by their path in the repository.
PUBLISHED_SOURCE = "../shared/reference/published_results.csv"
RANDOM_CACHE_FILE = "random_policy.json"
#: Episodes of the random policy per environment (the mean is the normalisation's zero).
RANDOM_EPISODES = 50

#: The short key of a source, by a word of its name.
SOURCE_KEYS = {"rl-zoo": "rl-zoo", "tianshou": "tianshou", "openai": "openai", "schulman": "ppo-paper"}
_VERSION = re.compile(r"-v\d+$")

#: Return bounds from each environment's reward definition and time limit (gymnasium's documentation): CartPole
#: +1 a step for at most 500 steps; Acrobot -1 a step for at most 500; Pendulum at worst -(π² + 0.1·8² + 0.001·2²)
#: a step for 200 steps, at best 0; MountainCarContinuous +100 at the goal less 0.1·a² (|a| ≤ 1) a step for at most
#: 999 steps; InvertedPendulum +1 a step for at most 1 000 steps. Environments not listed here are bounded by the
#: returns measured on them.
RETURN_RANGES: dict[str, tuple[float, float]] = {
    "CartPole-v1": (0.0, 500.0),
    "Acrobot-v1": (-500.0, 0.0),
    "Pendulum-v1": (-(np.pi**2 + 0.1 * 8.0**2 + 0.001 * 2.0**2) * 200, 0.0),
    "MountainCarContinuous-v0": (-0.1 * 999, 100.0),
    "InvertedPendulum-v5": (0.0, 1000.0),
}


@dataclass(frozen=True)
class PublishedFigure:
    """One published result: a row of ``published_results.yml``."""

    source: str
    algo: str
    env: str
    timesteps: int
    mean: float
    std: float | None = None
    env_version_note: str = ""
    notes: str = ""
    #: whether this is the task's normalisation reference (one row per task)
    reference: bool = False

    @property
    def source_key(self) -> str:
        """Short key of the source: ``rl-zoo``, ``tianshou``, ``openai`` or ``ppo-paper``."""
        lowered = self.source.lower()
        return next((key for marker, key in SOURCE_KEYS.items() if marker in lowered), lowered)

    def text(self) -> str:
        """``mean ± std`` (or the mean alone when the source gives no spread)."""
        return f"{self.mean:.1f} ± {self.std:.1f}" if self.std is not None else f"{self.mean:.1f}"


#: Every row of ``published_results.yml``.
PUBLISHED_FIGURES = tuple(
    PublishedFigure(**row) for row in yaml.safe_load(Path(__file__).with_name("published_results.yml").read_text())
)


def same_task(published_env: str, env_id: str) -> bool:
    """Whether a published env name is our ``env_id`` (an unversioned name matches every version)."""
    return published_env == (env_id if _VERSION.search(published_env) else _VERSION.sub("", env_id))


def published_for(algo: str, env_id: str, timesteps: int | None = None) -> list[PublishedFigure]:
    """Published figures for ``algo`` on ``env_id``, at the budget ``timesteps`` or, without it, at any."""
    return [
        figure
        for figure in PUBLISHED_FIGURES
        if figure.algo == algo and timesteps in (None, figure.timesteps) and same_task(figure.env, env_id)
    ]


def return_range(env_id: str, observed: np.ndarray) -> tuple[float, float]:
    """The returns an episode of ``env_id`` can reach: :data:`RETURN_RANGES`, else the range of ``observed``.

    :param env_id: gymnasium environment id
    :param observed: returns measured on it (used when the environment has no known bounds)
    """
    if env_id in RETURN_RANGES:
        return RETURN_RANGES[env_id]
    return float(np.min(observed)), float(np.max(observed))


def random_rollout(env_id: str, n_envs: int, seed: int, steps: int = 0, episodes: int = 0) -> tuple[list[float], float]:
    """A policy that samples the action space uniformly, on ``env_id`` vectorised as ``train`` builds it, for at least
    ``steps`` environment steps and ``episodes`` finished episodes.

    :param seed: seeds the environments and the action space
    :return: the returns of the first ``episodes`` finished episodes (all of them when ``episodes`` is 0), and the
        environment steps per second
    """
    import time

    from sbx_lecture.factory import make_environment

    env = make_environment(env_id, n_envs, seed)
    env.action_space.seed(seed)
    env.reset()
    returns: list[float] = []
    taken, start = 0, time.perf_counter()
    while taken < steps or len(returns) < episodes:
        infos = env.step(np.array([env.action_space.sample() for _ in range(n_envs)]))[3]
        returns += [float(info["episode"]["r"]) for info in infos if "episode" in info]  # Monitor's episode return
        taken += n_envs
    seconds = time.perf_counter() - start
    env.close()
    return returns[: episodes or None], taken / seconds


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
    stale = [env_id for env_id in env_ids if cache.get(env_id, {}).get("episodes") != episodes]
    for env_id in stale:
        cache[env_id] = {"episodes": episodes, "returns": random_rollout(env_id, 1, 0, episodes=episodes)[0]}
    if stale:
        write_json(path, cache)
    return {env_id: float(np.mean(cache[env_id]["returns"])) for env_id in env_ids}


@dataclass(frozen=True)
class Reference:
    """The normalisation of one environment.

    :param env: environment id
    :param random: mean return of the uniformly random policy (normalised to 0)
    :param value: the task's reference return (normalised to 1)
    :param source: where ``value`` comes from (``"<source>: <algo> at <budget> steps"``, ``"maximum possible
        return"`` or ``"measured in this suite: <algo>"``)
    :param measured: whether ``value`` was measured in the suite (no cited reference exists for the task)
    """

    env: str
    random: float
    value: float
    source: str
    measured: bool

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """``(scores - random) / (value - random)``, not clipped: a score above the reference is above 1."""
        span = self.value - self.random
        return (np.asarray(scores, dtype=float) - self.random) / (span if span != 0 else 1.0)


def references(random: dict[str, float], measured_best: dict[str, tuple[float, str]]) -> dict[str, Reference]:
    """Each environment's :class:`Reference`: its row marked ``reference`` in ``published_results.yml``, else the
    most an episode can return (:data:`RETURN_RANGES`), else the best measured in the suite.

    :param random: the random policy's mean return per environment
    :param measured_best: per environment, the best final return measured in the suite and the algorithm that got
        it (used where no reference is cited)
    """
    found = {}
    for env_id, zero in random.items():
        figure = next((f for f in PUBLISHED_FIGURES if f.reference and same_task(f.env, env_id)), None)
        if figure is not None:
            version = f", {figure.env_version_note}" if figure.env_version_note else ""  # the task version it ran
            source = f"{figure.source}: {figure.algo} at {figure.timesteps:,} steps{version}"
            found[env_id] = Reference(env_id, zero, figure.mean, source, False)
        elif env_id in RETURN_RANGES:
            found[env_id] = Reference(env_id, zero, RETURN_RANGES[env_id][1], "maximum possible return", False)
        else:
            value, algo = measured_best[env_id]
            found[env_id] = Reference(env_id, zero, value, f"measured in this suite: {algo}", True)
    return found

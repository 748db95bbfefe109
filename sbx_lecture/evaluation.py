"""Periodic deterministic evaluation on a separate environment, kept in the RL Zoo's ``evaluations.npz`` layout.

Like SB3's ``EvalCallback``: every ``eval_freq`` environment steps the deterministic policy runs a few episodes on
its own environment (normalised like the training one, statistics synchronised first). Unlike it, every file is
written atomically, the best model is saved so that it loads without unpickling, and a resumed run keeps the
points measured up to the checkpoint it resumed from. ``rl_zoo3.plots.plot_from_file`` and ``all_plots`` read the
``evaluations.npz`` it writes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from sbx_lecture.runs import atomic_write

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

EVALUATIONS_FILE = "evaluations.npz"
BEST_MODEL_FILE = "best_model.zip"
#: ``report(steps_done)``: how a caller hears about progress about once a second.
ProgressReport = Callable[[int], None]


@dataclass
class Evaluations:
    """Evaluation points: environment steps and the returns and lengths of each point's episodes."""

    timesteps: list[int] = field(default_factory=list)
    returns: list[list[float]] = field(default_factory=list)
    lengths: list[list[int]] = field(default_factory=list)

    def add(self, steps: int, returns: list[float], lengths: list[int]) -> None:
        """Record a point (replacing one at the same step)."""
        self.truncate(steps - 1)
        self.timesteps.append(steps)
        self.returns.append(returns)
        self.lengths.append(lengths)

    def truncate(self, steps: int) -> None:
        """Drop the points measured after ``steps`` (a resumed run measures them again)."""
        keep = [index for index, point in enumerate(self.timesteps) if point <= steps]
        self.timesteps = [self.timesteps[i] for i in keep]
        self.returns = [self.returns[i] for i in keep]
        self.lengths = [self.lengths[i] for i in keep]

    def curve(self) -> list[tuple[int, float, float]]:
        """(steps, mean return, standard deviation) of each point."""
        return [
            (steps, float(np.mean(returns)), float(np.std(returns)))
            for steps, returns in zip(self.timesteps, self.returns, strict=True)
        ]

    def save(self, path: Path, layout: Callable[[list[list[float]]], np.ndarray] | None = None) -> None:
        """Write the RL Zoo's ``evaluations.npz`` (``timesteps``, ``results``, ``ep_lengths``) atomically.

        :param layout: turns rows of different lengths into a 2-D array (default: shorter rows padded with NaN)
        """
        rows_to_array = layout or _padded_with_nan

        def write(temporary: str) -> None:
            buffer = io.BytesIO()
            np.savez(
                buffer,
                allow_pickle=False,
                timesteps=np.array(self.timesteps, dtype=np.int64),
                results=rows_to_array(self.returns),
                ep_lengths=rows_to_array([[float(x) for x in row] for row in self.lengths]),
            )
            Path(temporary).write_bytes(buffer.getvalue())

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path) -> Evaluations:
        """Read an ``evaluations.npz`` (empty when there is none or it is unreadable)."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                timesteps = [int(x) for x in saved["timesteps"]]
                returns = [[float(x) for x in row if not np.isnan(x)] for row in saved["results"]]
                lengths = [[int(x) for x in row if not np.isnan(x)] for row in saved["ep_lengths"]]
        except (OSError, ValueError, KeyError):
            return cls()
        return cls(timesteps, returns, lengths)


def _padded_with_nan(rows: list[list[float]]) -> np.ndarray:
    """Rows of equal length as a 2-D array; shorter rows padded with NaN."""
    width = max((len(row) for row in rows), default=0)
    array: np.ndarray = np.full((len(rows), width), np.nan, dtype=float)
    for index, row in enumerate(rows):
        array[index, : len(row)] = row
    return array


def evaluate_model(model: BaseAlgorithm, eval_env: VecEnv, episodes: int) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``episodes`` deterministic episodes on ``eval_env``.

    Observation statistics are copied from the training environment first when it is normalised; the returns are
    the raw ones that the Monitor wrapper records.
    """
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    training_env = model.get_env()
    if training_env is not None:
        sync_envs_normalization(training_env, eval_env)
    returns, lengths = evaluate_policy(
        model, eval_env, n_eval_episodes=episodes, deterministic=True, warn=False, return_episode_rewards=True
    )
    return [float(x) for x in returns], [int(x) for x in lengths]  # type: ignore[union-attr]


class ProgressCallback(BaseCallback):
    """Tell ``report`` the model's step count about once a second (and at the first step); stop training at
    ``stop_after`` steps (how tests interrupt a run).

    ``report`` may raise :class:`KeyboardInterrupt` to stop ``learn`` at once: that is how a stop request reaches
    a job running in a worker process, which Ctrl-C does not reach.
    """

    def __init__(self, report: ProgressReport | None, stop_after: int | None = None) -> None:
        super().__init__()
        self.report = report
        self.stop_after = stop_after
        self._last = -float("inf")

    def _on_step(self) -> bool:
        now = time.monotonic()
        if self.report is not None and now - self._last >= 1.0:
            self._last = now
            self.report(self.model.num_timesteps)
        return self.stop_after is None or self.model.num_timesteps < self.stop_after


class PeriodicEvaluation(BaseCallback):
    """Evaluate every ``eval_freq`` environment steps; keep ``evaluations.npz`` and the best model.

    :param eval_env: a separate environment (normalised like the training one, with ``training=False``)
    :param eval_freq: environment steps between evaluations, counted over all training environments
    :param episodes: deterministic episodes per evaluation
    :param folder: where ``evaluations.npz`` (and ``best_model.zip``) go; points already there up to the model's
        step count are kept, later ones are measured again
    :param save_model: ``save(model, path)`` for the best model (``None``: no best model is kept)
    :param final_at: the run's budget when a final evaluation follows training: no periodic point at or past it
    """

    def __init__(
        self,
        eval_env: VecEnv,
        eval_freq: int,
        episodes: int,
        folder: Path,
        save_model: Callable[[BaseAlgorithm, Path], None] | None = None,
        final_at: int | None = None,
    ) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.eval_freq = max(int(eval_freq), 1)
        self.episodes = episodes
        self.folder = folder
        self.save_model = save_model
        self.final_at = final_at
        self.evaluations = Evaluations.load(folder / EVALUATIONS_FILE)
        self.best_mean = -np.inf
        self.eval_seconds = 0.0
        self._next_eval = 0

    def _on_training_start(self) -> None:
        steps = self.model.num_timesteps
        self.evaluations.truncate(steps)
        self.best_mean = max((float(np.mean(r)) for r in self.evaluations.returns), default=-np.inf)
        if not self.evaluations.timesteps:
            self.evaluate_now()
        self._next_eval = (steps // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        steps = self.model.num_timesteps
        if steps >= self._next_eval:
            if self.final_at is None or steps < self.final_at:
                self.evaluate_now()
            self._next_eval = (steps // self.eval_freq + 1) * self.eval_freq
        return True

    def evaluate_now(self, episodes: int | None = None, record: bool = True) -> tuple[int, float, float]:
        """Evaluate the current policy; record the point (and the best model) unless ``record`` is false.

        :return: (steps, mean return, standard deviation)
        """
        start = time.perf_counter()
        returns, lengths = evaluate_model(self.model, self.eval_env, episodes or self.episodes)
        self.eval_seconds += time.perf_counter() - start
        steps, mean = int(self.model.num_timesteps), float(np.mean(returns))
        if record:
            self.evaluations.add(steps, returns, lengths)
            self.evaluations.save(self.folder / EVALUATIONS_FILE)
            if self.save_model is not None and mean > self.best_mean:
                self.best_mean = mean
                self.save_model(self.model, self.folder / BEST_MODEL_FILE)
        return steps, mean, float(np.std(returns))

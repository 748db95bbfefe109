"""Periodic deterministic evaluation on a separate environment, recorded as a learning curve.

Like SB3's ``EvalCallback``, but the curve lives in a CSV written atomically after every point, so a run that is
interrupted and resumed keeps the points it had (those after its last checkpoint are dropped and measured again).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stable_baselines3.common.callbacks import BaseCallback

from sbx_lecture.bench.files import write_text

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

#: One point of a learning curve: (environment steps, mean return, standard deviation of the return).
CurvePoint = tuple[int, float, float]
#: ``report(steps_done)``: how the harness hears about progress.
ProgressReport = Callable[[int], None]
CURVE_FILE = "curve.csv"
_CURVE_HEADER = ("steps", "mean_return", "std_return")


def read_curve(path: Path) -> list[CurvePoint]:
    """The points of a curve file (empty when it does not exist)."""
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(int(row["steps"]), float(row["mean_return"]), float(row["std_return"])) for row in rows]


def write_curve(path: Path, points: list[CurvePoint]) -> None:
    """Write the curve file atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CURVE_HEADER)
    writer.writerows(points)
    write_text(path, buffer.getvalue())


def evaluate_model(model: BaseAlgorithm, eval_env: VecEnv, episodes: int) -> tuple[float, float]:
    """Mean and standard deviation of the deterministic policy's return over ``episodes`` episodes.

    Observation statistics are copied from the training environment first when it is normalised; the returns are
    the raw ones that the Monitor wrapper records.
    """
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    training_env = model.get_env()
    if training_env is not None:
        sync_envs_normalization(training_env, eval_env)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True, warn=False)
    return float(mean), float(std)  # type: ignore[arg-type]


class PeriodicEvaluation(BaseCallback):
    """Evaluate every ``eval_freq`` environment steps, append the point to the curve file, report progress.

    :param eval_env: a separate environment (normalised like the training one, with ``training=False``)
    :param eval_freq: environment steps between evaluations, counted over all training environments
    :param episodes: deterministic episodes per evaluation
    :param curve_path: the curve CSV (points already there are kept: they come from an earlier segment)
    :param target: the run's budget; no periodic point is taken at or past it (the final evaluation is)
    :param report: called with the step count about once a second
    :param stop_after: stop training once this many steps are done (simulates an interruption in tests)
    """

    def __init__(
        self,
        eval_env: VecEnv,
        eval_freq: int,
        episodes: int,
        curve_path: Path,
        target: int,
        report: ProgressReport | None = None,
        stop_after: int | None = None,
    ):
        super().__init__()
        self.eval_env = eval_env
        self.eval_freq = max(int(eval_freq), 1)
        self.episodes = episodes
        self.curve_path = curve_path
        self.target = target
        self.report = report
        self.stop_after = stop_after
        self.points: list[CurvePoint] = read_curve(curve_path)
        self.eval_seconds = 0.0
        self._next_eval = 0
        self._last_report = 0.0

    def _on_training_start(self) -> None:
        steps = self.model.num_timesteps
        if not self.points:
            self.evaluate_now()
        self._next_eval = (steps // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        steps = self.model.num_timesteps
        if steps >= self._next_eval:
            if steps < self.target:
                self.evaluate_now()
            self._next_eval = (steps // self.eval_freq + 1) * self.eval_freq
        now = time.monotonic()
        if self.report is not None and now - self._last_report >= 1.0:
            self._last_report = now
            self.report(steps)
        return self.stop_after is None or steps < self.stop_after

    def evaluate_now(self, episodes: int | None = None) -> CurvePoint:
        """Evaluate the current policy, record the point and return it."""
        start = time.perf_counter()
        mean, std = evaluate_model(self.model, self.eval_env, episodes or self.episodes)
        self.eval_seconds += time.perf_counter() - start
        point = (int(self.model.num_timesteps), mean, std)
        self.points = [p for p in self.points if p[0] != point[0]] + [point]
        write_curve(self.curve_path, self.points)
        return point

"""Reading hyperparameter schedules safely."""

from __future__ import annotations

from stable_baselines3.common.type_aliases import Schedule


def scheduled_value(schedule: Schedule, progress_remaining: float) -> float:
    """``schedule(progress_remaining)`` with the progress clamped to [0, 1].

    SB3 computes the progress as ``1 − steps / total_timesteps``; the last rollout of a run may overshoot the budget
    (``n_steps · n_envs`` does not divide it), which makes the progress slightly negative. A linear schedule such
    as the zoo's ``lin_0.01`` would then turn negative: a negative KL bound, step size or temperature.

    :param schedule: maps the remaining progress (1 at the start, 0 at the end) to a value
    :param progress_remaining: the algorithm's ``_current_progress_remaining``
    :return: the value at the clamped progress
    """
    return float(schedule(min(max(progress_remaining, 0.0), 1.0)))

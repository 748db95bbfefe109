"""Schedules read at a progress that stays in [0, 1]."""

from __future__ import annotations


class ClampedProgressMixin:
    """Keeps ``_current_progress_remaining`` at or above 0, so that every schedule stays in its range.

    SB3 computes the remaining progress as ``1 − steps / total_timesteps``. The last rollout of a run may overshoot the
    budget (``n_steps · n_envs`` or ``train_freq`` does not divide it), which makes the progress negative, and a
    linear schedule such as the zoo's ``lin_1e-3`` then turns negative: the last update would ascend the loss with a
    negative learning rate, or step with a negative KL bound, step size or temperature. Mix this class in before the
    SB3 base class: ``class TNPG(ClampedProgressMixin, OnPolicyAlgorithm)``.
    """

    _current_progress_remaining: float

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        super()._update_current_progress_remaining(num_timesteps, total_timesteps)  # type: ignore[misc]
        self._current_progress_remaining = max(0.0, self._current_progress_remaining)

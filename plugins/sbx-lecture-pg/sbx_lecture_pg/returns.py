"""Monte-Carlo returns and importance weights over stacked episodes (see :class:`~sbx_lecture_pg.buffers.EpisodeBatch`).

All functions take flat ``(N,)`` arrays of several episodes laid end to end and never mix two episodes.
"""

from __future__ import annotations

import numpy as np
import torch as th


def reward_to_go(
    rewards: np.ndarray, last_step_mask: np.ndarray, gamma: float, step_weights: np.ndarray | None = None
) -> np.ndarray:
    """G_t = Σ_{t'≥t} γ^{t'-t} r_{t'}, summed to the end of each episode.

    With ``step_weights`` c_t it is the per-decision recursion G_t = c_t (r_t + γ G_{t+1}) of Precup et al. (2000),
    which with c_t = π(a_t|s_t)/β(a_t|s_t) estimates V^π(s_t) from actions sampled by β.

    :param rewards: ``(N,)`` rewards (or weighted rewards) of stacked episodes
    :param last_step_mask: ``(N,)`` true on the last step of each episode
    :param gamma: discount factor γ
    :param step_weights: ``(N,)`` optional per-step factors c_t
    :return: ``(N,)`` discounted reward-to-go
    """
    returns = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if last_step_mask[t]:
            running = 0.0
        running = float(rewards[t]) + gamma * running
        if step_weights is not None:
            running *= float(step_weights[t])
        returns[t] = running
    return returns


def episode_return(rewards: np.ndarray, episode_ids: np.ndarray, starts: np.ndarray, gamma: float) -> np.ndarray:
    """G_0 = Σ_t γ^t r_t of the episode of every step (the same value on all steps of an episode).

    :param rewards: ``(N,)`` rewards of stacked episodes
    :param episode_ids: ``(N,)`` episode index of each step
    :param starts: ``(E,)`` first step of each episode
    :param gamma: discount factor γ
    :return: ``(N,)`` discounted return of the whole episode, broadcast to its steps
    """
    time_in_episode = np.arange(len(rewards)) - starts[episode_ids]
    discounted = rewards * np.power(gamma, time_in_episode)
    totals = np.bincount(episode_ids, weights=discounted, minlength=len(starts))
    return totals[episode_ids]  # type: ignore[no-any-return]


def cumulative_log_ratio(log_ratio: th.Tensor, episode_ids: np.ndarray, starts: np.ndarray) -> th.Tensor:
    """Σ_{k=0}^{t} log(π(a_k|s_k) / β(a_k|s_k)) within each episode, i.e. the log of ρ_{0:t}.

    :param log_ratio: ``(N,)`` per-step log-ratios
    :param episode_ids: ``(N,)`` episode index of each step
    :param starts: ``(E,)`` first step of each episode
    :return: ``(N,)`` log ρ_{0:t}
    """
    total = th.cumsum(log_ratio.double(), dim=0)
    ids = th.as_tensor(episode_ids, device=log_ratio.device)
    first = th.as_tensor(starts, device=log_ratio.device)[ids]
    before_episode = total[first] - log_ratio.double()[first]
    return (total - before_episode).to(log_ratio.dtype)

"""KL divergence between two SB3 action distributions, one value per state.

The lecture's trust region and KL penalty both use the mean of KL[π_old(·|s) ‖ π_θ(·|s)] over visited states.
"""

from __future__ import annotations

import torch as th
from stable_baselines3.common.distributions import Distribution, kl_divergence


def kl_estimate_from_log_ratio(log_ratio: th.Tensor) -> th.Tensor:
    """Low-variance, always non-negative sample estimate of KL[π_old ‖ π_θ] per sample.

    With ``log_ratio = log π_θ(a|s) − log π_old(a|s)`` for actions ``a ~ π_old``, the estimator
    ``(r − 1) − log r`` (r the probability ratio) is unbiased and never negative (Schulman, "Approximating KL
    divergence", 2020).

    :param log_ratio: log-probability ratio of the new over the old policy at the sampled actions
    :return: per-sample KL estimates
    """
    return th.expm1(log_ratio) - log_ratio


def policy_kl(
    old_distribution: Distribution,
    new_distribution: Distribution,
    log_ratio: th.Tensor | None = None,
) -> th.Tensor:
    """KL[π_old(·|s) ‖ π_new(·|s)] for every state of the batch, summed over action dimensions.

    The closed form is used wherever PyTorch has one for the underlying distributions (diagonal Gaussian, gSDE,
    tanh-squashed Gaussian — KL is invariant under the tanh bijection —, categorical, multi-categorical,
    Bernoulli). Otherwise the sample estimator :func:`kl_estimate_from_log_ratio` is used, which needs
    ``log_ratio`` at actions drawn from the old policy.

    :param old_distribution: π_old, usually built from detached parameters
    :param new_distribution: π_new, the distribution being optimised
    :param log_ratio: ``log π_new(a|s) − log π_old(a|s)`` at actions sampled from π_old, for the fallback
    :return: tensor of shape ``(batch_size,)``
    """
    try:
        kl = kl_divergence(old_distribution, new_distribution)
    except (NotImplementedError, AssertionError, AttributeError):
        if log_ratio is None:
            raise ValueError(
                f"No closed-form KL for {type(new_distribution).__name__}; pass log_ratio for the sample estimate"
            ) from None
        return kl_estimate_from_log_ratio(log_ratio)
    if kl.ndim > 1:
        kl = kl.sum(dim=-1)
    return kl

"""Soft (maximum-entropy) state values and Boltzmann policies.

The lecture's maximum-entropy objective J(π) = E[Σ_t r_t + α H(π(·|s_t))] has the optimal policy
π(a|s) ∝ exp(Q(s, a)/α) and the soft value V(s) = α log ∫ exp(Q(s, a)/α) da. With finitely many actions the
integral is a sum and V is an exact log-sum-exp; over a continuous action box it is estimated by importance
sampling (Haarnoja et al., 2017, eq. 10).
"""

from __future__ import annotations

import math

import torch as th


def soft_value_discrete(q_values: th.Tensor, ent_coef: float) -> th.Tensor:
    """Exact soft value V(s) = α log Σ_a exp(Q(s, a)/α) over the last dimension.

    Tends to max_a Q(s, a) as α → 0.

    :param q_values: Q(s, ·), shape ``(..., n_actions)``
    :param ent_coef: temperature α > 0
    :return: soft values, shape ``(...)``
    """
    return ent_coef * th.logsumexp(q_values / ent_coef, dim=-1)


def boltzmann_log_probabilities(q_values: th.Tensor, ent_coef: float) -> th.Tensor:
    """log π(a|s) of the energy-based policy π(a|s) = exp((Q(s, a) − V(s))/α) = softmax(Q(s, ·)/α).

    :param q_values: Q(s, ·), shape ``(..., n_actions)``
    :param ent_coef: temperature α > 0
    :return: log-probabilities, same shape as ``q_values``
    """
    return th.log_softmax(q_values / ent_coef, dim=-1)


def boltzmann_entropy(q_values: th.Tensor, ent_coef: float) -> th.Tensor:
    """Exact entropy H(π(·|s)) = −Σ_a π(a|s) log π(a|s) of the Boltzmann policy softmax(Q/α).

    :param q_values: Q(s, ·), shape ``(..., n_actions)``
    :param ent_coef: temperature α > 0
    :return: entropies, shape ``(...)``
    """
    log_probs = boltzmann_log_probabilities(q_values, ent_coef)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def uniform_box_log_density(action_dim: int, low: float = -1.0, high: float = 1.0) -> float:
    """log q(a) of the uniform density on the box [low, high]^action_dim.

    :param action_dim: dimension d of the action box
    :param low: lower bound of every coordinate
    :param high: upper bound of every coordinate
    :return: −d log(high − low)
    """
    return -action_dim * math.log(high - low)


def soft_value_importance_sampled(
    q_particles: th.Tensor,
    ent_coef: float,
    proposal_log_density: th.Tensor | float,
) -> th.Tensor:
    """Importance-sampled soft value V(s) ≈ α log( (1/K) Σ_k exp(Q(s, a_k)/α) / q(a_k) ), a_k ~ q.

    The log-density correction −log q(a_k) makes the estimate target the integral over the action set rather
    than the expectation under the proposal. The estimator is consistent (exact as K → ∞) and computed stably in
    log space.

    :param q_particles: Q(s, a_k) for K proposal samples per state, shape ``(..., K)``
    :param ent_coef: temperature α > 0
    :param proposal_log_density: log q(a_k), a scalar or a tensor broadcastable to ``q_particles``
    :return: soft values, shape ``(...)``
    """
    n_particles = q_particles.shape[-1]
    log_weights = q_particles / ent_coef - proposal_log_density
    return ent_coef * (th.logsumexp(log_weights, dim=-1) - math.log(n_particles))

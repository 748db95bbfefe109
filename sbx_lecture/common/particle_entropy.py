"""Non-parametric entropy estimate of a sample-based (implicit) policy."""

from __future__ import annotations

import math

import torch as th


def nearest_neighbour_entropy(particles: th.Tensor, eps: float = 1e-12) -> th.Tensor:
    """Kozachenko–Leonenko estimate of the differential entropy from M samples of a d-dimensional density.

    H ≈ ψ(M) − ψ(1) + log V_d + (d/M) Σ_i log ε_i, with ε_i the distance from x_i to its nearest neighbour and
    V_d the volume of the unit d-ball. Used to log the entropy of the soft Q-learning sampler, whose density has
    no closed form.

    :param particles: samples, shape ``(..., M, d)`` with M ≥ 2
    :param eps: floor on the distances (coinciding samples)
    :return: entropy estimates, shape ``(...)``
    """
    n_particles, dim = particles.shape[-2], particles.shape[-1]
    distances = th.cdist(particles, particles)
    diagonal = th.eye(n_particles, dtype=th.bool, device=particles.device)
    nearest = distances.masked_fill(diagonal, math.inf).min(dim=-1).values.clamp_min(eps)
    digamma_m = float(th.special.digamma(th.tensor(float(n_particles))))
    euler_gamma = 0.5772156649015329  # −ψ(1)
    log_unit_ball = (dim / 2) * math.log(math.pi) - math.lgamma(dim / 2 + 1)
    return digamma_m + euler_gamma + log_unit_ball + dim * nearest.log().mean(dim=-1)

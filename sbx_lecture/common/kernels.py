"""RBF kernel with the median-heuristic bandwidth and the Stein variational gradient direction.

Stein variational gradient descent (Liu & Wang, 2016) moves particles x_1..x_M towards a target density p along

    φ(x_i) = (1/M) Σ_j [ κ(x_j, x_i) ∇_{x_j} log p(x_j) + ∇_{x_j} κ(x_j, x_i) ],

the first term pulling particles to high density, the second (the kernel's gradient) pushing them apart. Soft
Q-learning amortizes this update into a sampling network (Haarnoja et al., 2017, eq. 13).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch as th


def pairwise_differences(particles: th.Tensor) -> th.Tensor:
    """``diff[..., j, i, :] = x_j − x_i`` for particles of shape ``(..., M, d)``.

    :param particles: particle set, shape ``(..., M, d)``
    :return: differences, shape ``(..., M, M, d)``
    """
    return particles.unsqueeze(-2) - particles.unsqueeze(-3)


def median_heuristic_bandwidth(squared_distances: th.Tensor, min_bandwidth: float = 1e-6) -> th.Tensor:
    """Bandwidth h = med(‖x_j − x_i‖²) / log(M + 1) of the kernel exp(−‖x − x'‖²/h).

    The median runs over the M(M − 1)/2 distinct pairs (the lower median for an even count). With this choice a
    typical particle has Σ_j κ(x_j, x_i) ≈ M·exp(−log(M + 1)) ≈ 1, which balances the driving and the repulsive
    SVGD terms (Liu & Wang, 2016). The result is treated as a constant (no gradient).

    :param squared_distances: ``‖x_j − x_i‖²``, shape ``(..., M, M)`` with M ≥ 2
    :param min_bandwidth: lower clamp that keeps the kernel finite when all particles coincide
    :return: one bandwidth per particle set, shape ``(...)``
    """
    n_particles = squared_distances.shape[-1]
    rows, cols = th.triu_indices(n_particles, n_particles, offset=1, device=squared_distances.device)
    pairs = squared_distances.detach()[..., rows, cols]
    # the lower median as the k-th smallest value: the number ``median`` gives, by a faster selection
    median = pairs.kthvalue((pairs.shape[-1] + 1) // 2, dim=-1).values
    return (median / math.log(n_particles + 1)).clamp_min(min_bandwidth)


def rbf_kernel(particles: th.Tensor, bandwidth: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """RBF kernel matrix and its gradient with respect to the first argument.

    :param particles: particle set, shape ``(..., M, d)``
    :param bandwidth: h per particle set, shape ``(...)``; the median heuristic when ``None``
    :return: ``(kappa, kappa_grad, bandwidth)`` with ``kappa[..., j, i] = κ(x_j, x_i)`` of shape
        ``(..., M, M)``, ``kappa_grad[..., j, i, :] = ∇_{x_j} κ(x_j, x_i)`` of shape ``(..., M, M, d)``
    """
    diff = pairwise_differences(particles)
    squared_distances = diff.pow(2).sum(dim=-1)
    if bandwidth is None:
        bandwidth = median_heuristic_bandwidth(squared_distances)
    h = bandwidth.unsqueeze(-1).unsqueeze(-1)
    kappa = th.exp(-squared_distances / h)
    kappa_grad = -2.0 * diff / h.unsqueeze(-1) * kappa.unsqueeze(-1)
    return kappa, kappa_grad, bandwidth


def svgd_direction(
    particles: th.Tensor,
    score: th.Tensor,
    bandwidth: th.Tensor | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """Stein variational gradient φ(x_i) for every particle, batched over leading dimensions.

    :param particles: x_1..x_M, shape ``(..., M, d)``
    :param score: ∇_x log p at every particle, shape ``(..., M, d)``
    :param bandwidth: kernel bandwidth per particle set; the median heuristic when ``None``
    :return: ``(direction, bandwidth)``: φ of shape ``(..., M, d)`` and the bandwidth used, shape ``(...)``
    """
    n_particles = particles.shape[-2]
    kappa, kappa_grad, bandwidth = rbf_kernel(particles, bandwidth)
    # Σ_j κ(x_j, x_i) score_j: contract over j (dimension -2 of kappa, -2 of score).
    driving = th.einsum("...ji,...jd->...id", kappa, score)
    repulsive = kappa_grad.sum(dim=-3)
    return (driving + repulsive) / n_particles, bandwidth


def amortized_svgd_loss(
    particles: th.Tensor,
    log_density: Callable[[th.Tensor], th.Tensor],
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Surrogate loss whose gradient moves a sampler's outputs along the Stein direction (amortized SVGD).

    With particles x_i = f_φ(ξ_i) the update ∂φ ∝ Σ_i φ(x_i)ᵀ ∂x_i/∂φ (Haarnoja et al., 2017, eq. 14) is the
    gradient of ``−mean_i ⟨stopgrad(φ(x_i)), x_i⟩``: minimising this loss follows the Stein direction.

    :param particles: sampler outputs with their graph, shape ``(..., M, d)``
    :param log_density: maps detached particles ``(..., M, d)`` to unnormalised log p, shape ``(..., M)``;
        it must be differentiable with respect to its input
    :return: ``(loss, direction, bandwidth)``
    """
    fixed = particles.detach().requires_grad_(True)
    with th.enable_grad():
        (score,) = th.autograd.grad(log_density(fixed).sum(), fixed)
    direction, bandwidth = svgd_direction(fixed.detach(), score)
    loss = -(direction * particles).sum(dim=-1).mean()
    return loss, direction, bandwidth

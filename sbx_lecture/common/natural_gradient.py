"""The natural-gradient core shared by NPG, TNPG (and, through its line search, TRPO).

One update of the family, on a batch of states with old policy π_old = π_θ₀:

    g  = ∇_θ L(θ₀),         L(θ) = (1/N) Σᵢ π_θ(aᵢ|sᵢ)/π_old(aᵢ|sᵢ) Âᵢ   (the surrogate)
    x  ≈ F⁻¹ g,             F the Fisher matrix (:mod:`sbx_lecture.common.fisher`), solved by CG or exactly
    θ  = θ₀ + β x,          β chosen by the algorithm: a fixed α (NPG) or the KL bound sqrt(2δ / xᵀFx) (TNPG/TRPO)

This module holds the pieces that do not depend on SB3's training loop: the solve, the KL step length and the
backtracking line search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch as th

from sbx_lecture.common.conjugate_gradient import conjugate_gradient

FisherSolver = Literal["cg", "exact"]


@dataclass
class NaturalGradientDirection:
    """The search direction x ≈ F⁻¹ g of one update.

    :param direction: x
    :param n_iterations: CG iterations spent (0 for the exact solve)
    :param relative_residual: ‖(F + λI) x − g‖ / ‖g‖
    """

    direction: th.Tensor
    n_iterations: int
    relative_residual: float


def solve_natural_gradient(
    fisher_vector_product: Callable[[th.Tensor], th.Tensor],
    gradient: th.Tensor,
    damping: float,
    max_iterations: int,
    residual_tolerance: float,
) -> NaturalGradientDirection:
    """x ≈ (F + λI)⁻¹ g by conjugate gradient with Fisher-vector products.

    :param fisher_vector_product: v ↦ F v
    :param gradient: g
    :param damping: λ
    :param max_iterations: CG budget (TNPG: a small fixed number; NPG: generous)
    :param residual_tolerance: relative residual at which CG stops
    :return: the direction and the solve's diagnostics
    """
    result = conjugate_gradient(fisher_vector_product, gradient, max_iterations, residual_tolerance, damping)
    return NaturalGradientDirection(result.solution, result.n_iterations, result.relative_residual)


def solve_natural_gradient_exactly(fisher: th.Tensor, gradient: th.Tensor, damping: float) -> NaturalGradientDirection:
    """x = (F + λI)⁻¹ g with the full Fisher matrix: the lecture's literal form, for small policies.

    Uses a least-squares solve, so a singular F (λ = 0) gives the minimum-norm solution.

    :param fisher: F, shape ``(P, P)``
    :param gradient: g
    :param damping: λ
    :return: the direction and its relative residual
    """
    system = fisher + damping * th.eye(fisher.shape[0], dtype=fisher.dtype, device=fisher.device)
    direction = th.linalg.lstsq(system, gradient.unsqueeze(-1)).solution.squeeze(-1)
    gradient_norm = float(th.linalg.vector_norm(gradient))
    residual = float(th.linalg.vector_norm(system @ direction - gradient))
    return NaturalGradientDirection(direction, 0, residual / gradient_norm if gradient_norm > 0 else 0.0)


def kl_step_length(direction: th.Tensor, fisher_direction: th.Tensor, target_kl: float) -> float:
    """β = sqrt(2δ / xᵀFx): the step along x whose quadratic KL model ½ β² xᵀFx equals δ.

    :param direction: x
    :param fisher_direction: F x (damped or not, as the caller's trust region is defined)
    :param target_kl: δ
    :return: β (0 when the curvature along x vanishes)
    """
    curvature = float(direction @ fisher_direction)
    if curvature <= 0.0 or not math.isfinite(curvature):
        return 0.0
    return math.sqrt(2.0 * target_kl / curvature)


@dataclass
class LineSearchResult:
    """Outcome of :func:`backtracking_line_search`.

    :param accepted: whether a step passed the test (if not, the parameters are back at θ₀)
    :param fraction: the fraction ρⁱ of the full step that was kept (0 when rejected)
    :param n_evaluations: how many candidate steps were evaluated
    """

    accepted: bool
    fraction: float
    n_evaluations: int


def backtracking_line_search(
    apply_step: Callable[[float], None],
    is_acceptable: Callable[[], bool],
    max_iterations: int,
    shrinking_factor: float,
) -> LineSearchResult:
    """Try the fractions 1, ρ, ρ², … of the full step and keep the first one that passes the test.

    With ``max_iterations=1`` this is rllab's single accept/reject check; with 10 and ρ = 0.8, sb3-contrib TRPO's
    line search. When no fraction passes, the step is undone (``apply_step(0.0)``).

    :param apply_step: sets θ = θ₀ + fraction · full step
    :param is_acceptable: the test at the current θ (typically: KL below δ and surrogate improved)
    :param max_iterations: number of fractions to try (>= 1)
    :param shrinking_factor: ρ in (0, 1)
    :return: what was kept
    """
    fraction = 1.0
    for evaluation in range(1, max_iterations + 1):
        apply_step(fraction)
        if is_acceptable():
            return LineSearchResult(True, fraction, evaluation)
        fraction *= shrinking_factor
    apply_step(0.0)
    return LineSearchResult(False, 0.0, max_iterations)

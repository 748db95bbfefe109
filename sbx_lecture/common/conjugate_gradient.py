"""Conjugate gradient for the natural-gradient system (F + λI) x = g, F symmetric positive semi-definite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch as th


@dataclass
class ConjugateGradientResult:
    """Outcome of :func:`conjugate_gradient`.

    :param solution: the approximate solution x
    :param n_iterations: number of matrix-vector products spent inside the iterations
    :param relative_residual: ‖b − A x‖ / ‖b‖ as tracked by the recursion (0 when b = 0)
    """

    solution: th.Tensor
    n_iterations: int
    relative_residual: float


def conjugate_gradient(
    matrix_vector_product: Callable[[th.Tensor], th.Tensor],
    b: th.Tensor,
    max_iterations: int = 10,
    residual_tolerance: float = 1e-10,
    damping: float = 0.0,
) -> ConjugateGradientResult:
    """Solve (A + λI) x = b for a symmetric positive (semi-)definite A known only through products A v.

    Starts from x = 0 and stops after ``max_iterations`` iterations or as soon as the relative residual
    ‖b − (A + λI) x‖ / ‖b‖ drops to ``residual_tolerance``. With a fixed, small ``max_iterations`` this is the
    truncated solve of TNPG/TRPO; with a tolerance and a generous budget it is NPG's solve.

    :param matrix_vector_product: v ↦ A v
    :param b: right-hand side (the policy gradient g)
    :param max_iterations: iteration budget (each iteration costs one product)
    :param residual_tolerance: stop when the relative residual is at most this
    :param damping: λ ≥ 0 added to the diagonal (Tikhonov damping)
    :return: the solution, the iterations used and the final relative residual
    """
    if max_iterations < 0:
        raise ValueError(f"max_iterations must be >= 0, got {max_iterations}")
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")

    def damped_product(vector: th.Tensor) -> th.Tensor:
        product = matrix_vector_product(vector)
        return product + damping * vector if damping > 0 else product

    x = th.zeros_like(b)
    b_norm = float(th.linalg.vector_norm(b))
    if b_norm == 0.0:
        return ConjugateGradientResult(x, 0, 0.0)
    residual = b.clone()
    direction = b.clone()
    residual_sq = residual.dot(residual)
    n_iterations = 0
    for _ in range(max_iterations):
        if float(residual_sq.sqrt()) <= residual_tolerance * b_norm:
            break
        product = damped_product(direction)
        curvature = direction.dot(product)
        if float(curvature) <= 0.0:
            # The matrix is singular along this direction (possible without damping): stop with what we have.
            break
        alpha = residual_sq / curvature
        x = x + alpha * direction
        residual = residual - alpha * product
        new_residual_sq = residual.dot(residual)
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
        n_iterations += 1
    return ConjugateGradientResult(x, n_iterations, float(residual_sq.sqrt()) / b_norm)

"""The adaptive KL-penalty coefficient of Schulman et al. (2017), "Proximal Policy Optimization Algorithms", §4.

After each policy update the measured KL ``d = E_s[KL[π_old(·|s) ‖ π_θ(·|s)]]`` is compared with a target
``d_targ``::

    d < d_targ / tolerance   →   β ← β / factor      (the policy moved too little: weaken the penalty)
    d > d_targ · tolerance   →   β ← β · factor      (the policy moved too much: strengthen it)

and β is left alone inside the dead band. The paper uses ``tolerance = 1.5`` and ``factor = 2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

DEFAULT_KL_TOLERANCE = 1.5
DEFAULT_KL_COEF_FACTOR = 2.0


def adapt_kl_coef(
    kl_coef: float,
    kl: float,
    target_kl: float,
    tolerance: float = DEFAULT_KL_TOLERANCE,
    factor: float = DEFAULT_KL_COEF_FACTOR,
    min_kl_coef: float = 0.0,
    max_kl_coef: float = math.inf,
) -> float:
    """One step of the adaptive-β rule: the coefficient for the next update.

    :param kl_coef: the current penalty coefficient β
    :param kl: the KL divergence d measured after the update
    :param target_kl: the target KL divergence d_targ (> 0)
    :param tolerance: width of the dead band (> 1): β changes only when d leaves
        ``[d_targ / tolerance, d_targ · tolerance]``
    :param factor: multiplicative step of β (> 1)
    :param min_kl_coef: lower bound on the returned β
    :param max_kl_coef: upper bound on the returned β
    :return: the new β, clipped to ``[min_kl_coef, max_kl_coef]``
    """
    if kl < target_kl / tolerance:
        kl_coef = kl_coef / factor
    elif kl > target_kl * tolerance:
        kl_coef = kl_coef * factor
    return float(min(max(kl_coef, min_kl_coef), max_kl_coef))


def check_kl_penalty_arguments(
    kl_coef: float,
    target_kl: float | Callable[[float], float] | None,
    adaptive_kl: bool,
    tolerance: float,
    factor: float,
    min_kl_coef: float,
    max_kl_coef: float,
) -> None:
    """Raise a ``ValueError`` naming the argument and its valid range when a KL-penalty setting is invalid.

    ``target_kl`` is checked only when it is a number (a schedule is checked when it is evaluated).

    :param kl_coef: the initial penalty coefficient β
    :param target_kl: the target KL divergence d_targ, a number, a schedule, or ``None`` (fixed β only)
    :param adaptive_kl: whether β follows :func:`adapt_kl_coef` (``False``: β stays fixed)
    :param tolerance: the dead-band factor of the rule
    :param factor: the multiplicative step of the rule
    :param min_kl_coef: the lower bound on β
    :param max_kl_coef: the upper bound on β
    """
    if not (isinstance(kl_coef, (int, float)) and math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"kl_coef (the initial β) must be a finite number >= 0, got {kl_coef!r}")
    if not adaptive_kl:
        return
    if target_kl is None:
        raise ValueError(
            "target_kl (d_targ) is required when adaptive_kl=True; pass a value > 0 such as 0.01, "
            "or set adaptive_kl=False for a fixed β"
        )
    if isinstance(target_kl, (int, float)) and not target_kl > 0:
        raise ValueError(f"target_kl (d_targ) must be > 0, got {target_kl!r}")
    if not tolerance > 1:
        raise ValueError(f"kl_tolerance must be > 1 (the paper uses 1.5), got {tolerance!r}")
    if not factor > 1:
        raise ValueError(f"kl_coef_factor must be > 1 (the paper uses 2), got {factor!r}")
    if not 0 < min_kl_coef <= max_kl_coef:
        raise ValueError(
            f"the β bounds must satisfy 0 < min_kl_coef <= max_kl_coef, got min_kl_coef={min_kl_coef!r}, "
            f"max_kl_coef={max_kl_coef!r} (a zero lower bound would let β reach 0 and never grow again)"
        )
    if not min_kl_coef <= kl_coef <= max_kl_coef:
        raise ValueError(
            f"kl_coef (the initial β) must lie in [min_kl_coef, max_kl_coef] = [{min_kl_coef}, {max_kl_coef}], "
            f"got {kl_coef!r}"
        )

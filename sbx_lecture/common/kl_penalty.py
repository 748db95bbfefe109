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

from sbx_lecture.infra.validation import InvalidValueError, require_number

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
    """Raise an :class:`~sbx_lecture.infra.validation.InvalidValueError` naming an invalid KL-penalty setting.

    ``target_kl`` is checked only when it is a number (a schedule is checked when it is evaluated).

    :param kl_coef: the initial penalty coefficient β
    :param target_kl: the target KL divergence d_targ, a number, a schedule, or ``None`` (fixed β only)
    :param adaptive_kl: whether β follows :func:`adapt_kl_coef` (``False``: β stays fixed)
    :param tolerance: the dead-band factor of the rule
    :param factor: the multiplicative step of the rule
    :param min_kl_coef: the lower bound on β
    :param max_kl_coef: the upper bound on β
    """
    require_number("kl_coef", kl_coef, 0.0)
    if not adaptive_kl:
        return
    if target_kl is None:
        raise InvalidValueError(
            "target_kl must be > 0 or a schedule when adaptive_kl=True (or set adaptive_kl=False for a fixed β), "
            "got None"
        )
    require_number("target_kl", target_kl, 0.0, low_open=True, schedule=True)
    require_number("kl_tolerance", tolerance, 1.0, low_open=True)
    require_number("kl_coef_factor", factor, 1.0, low_open=True)
    require_number("min_kl_coef", min_kl_coef, 0.0, low_open=True)  # at 0, β could never grow again
    require_number("max_kl_coef", max_kl_coef, min_kl_coef, infinite=True)
    require_number("kl_coef", kl_coef, min_kl_coef, max_kl_coef, infinite=True)

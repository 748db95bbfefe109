"""Optimizer settings for algorithms that take one small gradient step per environment step.

With networks of a few thousand parameters the cost of an optimizer step is mostly per-tensor overhead. PyTorch's
fused Adam/AdamW (one kernel over all parameters, on CPU as on GPU) and multi-tensor SGD/RMSprop
(``foreach=True``) remove most of it without changing the update. SB3 leaves the choice to PyTorch's default,
which on CPU is a Python loop over the parameters.
"""

from __future__ import annotations

from typing import Any

import torch as th

FUSED_OPTIMIZERS: tuple[type[th.optim.Optimizer], ...] = (th.optim.Adam, th.optim.AdamW)
FOREACH_OPTIMIZERS: tuple[type[th.optim.Optimizer], ...] = (th.optim.SGD, th.optim.RMSprop)


def fast_optimizer_kwargs(
    optimizer_class: type[th.optim.Optimizer], optimizer_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The optimizer keyword arguments with ``fused=True`` (Adam, AdamW) or ``foreach=True`` (SGD, RMSprop) added.

    Nothing is added when the caller already chose ``fused`` or ``foreach``, or for other optimizer classes
    (subclasses included: they may not accept the arguments).

    :param optimizer_class: the optimizer class
    :param optimizer_kwargs: the caller's keyword arguments (not modified)
    :return: a new dictionary
    """
    if "fused" in optimizer_kwargs or "foreach" in optimizer_kwargs:
        return dict(optimizer_kwargs)
    if optimizer_class in FUSED_OPTIMIZERS:
        return {**optimizer_kwargs, "fused": True}
    if optimizer_class in FOREACH_OPTIMIZERS:
        return {**optimizer_kwargs, "foreach": True}
    return dict(optimizer_kwargs)

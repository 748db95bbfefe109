"""Target networks: the Polyak average of the parameters, plus a copy of the batch-norm running statistics.

A target network θ′ tracks the online network θ by θ′ ← (1 − τ) θ′ + τ θ after each update (τ = 1: a hard copy,
τ = 0: frozen). Running statistics of batch normalization (``running_mean``, ``running_var``) are not parameters:
they are estimates of the data's moments, not something to average towards, so the target copies them each update
whatever τ is, as SB3's SAC and TD3 do.
"""

from __future__ import annotations

import torch as th
from stable_baselines3.common.utils import get_parameters_by_name
from torch import nn

from sbx_lecture.infra.validation import require_number

#: The name fragment that identifies batch-norm running statistics among a module's buffers.
RUNNING_STATISTICS = ("running_",)


def check_tau(tau: float) -> None:
    """Raise an :class:`~sbx_lecture.infra.validation.InvalidValueError` unless the Polyak τ lies in [0, 1].

    :param tau: the soft update coefficient (1: hard copy, 0: frozen target)
    """
    require_number("tau", tau, 0.0, 1.0)


class PolyakTarget:
    """The pairing of an online network with its target copy, found once so that each update is cheap.

    :param online: the network being trained
    :param target: its target copy (same architecture)
    """

    def __init__(self, online: nn.Module, target: nn.Module) -> None:
        self.parameters: list[th.Tensor] = list(online.parameters())
        self.target_parameters: list[th.Tensor] = list(target.parameters())
        self.statistics: list[th.Tensor] = get_parameters_by_name(online, list(RUNNING_STATISTICS))
        self.target_statistics: list[th.Tensor] = get_parameters_by_name(target, list(RUNNING_STATISTICS))
        if len(self.parameters) != len(self.target_parameters) or len(self.statistics) != len(self.target_statistics):
            raise ValueError("the target network must have the same architecture as the online network")

    def update(self, tau: float) -> None:
        """θ′ ← (1 − τ) θ′ + τ θ for the parameters; the running statistics are copied.

        :param tau: the soft update coefficient in [0, 1]
        """
        with th.no_grad():
            if tau >= 1.0:  # a hard copy, exact (θ′ + 1·(θ − θ′) need not round to θ)
                th._foreach_copy_(self.target_parameters, self.parameters)
            elif tau > 0.0:  # one fused call over all tensors: θ′ + τ (θ − θ′)
                th._foreach_lerp_(self.target_parameters, self.parameters, tau)
            if self.statistics:
                th._foreach_copy_(self.target_statistics, self.statistics)

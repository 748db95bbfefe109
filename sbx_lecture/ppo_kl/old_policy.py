"""π_old kept as tensors: the action distribution of the policy that collected a rollout, at every rollout state.

KL-penalty PPO needs KL[π_old(·|s) ‖ π_θ(·|s)] on every minibatch. Evaluating a frozen copy of the network per
minibatch would cost one more forward pass per gradient step; instead the old distribution's parameters are
computed once per rollout (one pass without gradients) and each minibatch picks its rows.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple, TypeVar

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from torch.distributions import Bernoulli, Categorical, Normal

SamplesT = TypeVar("SamplesT", bound=NamedTuple)
Rows = th.Tensor | slice


def select_rows(samples: SamplesT, rows: Rows) -> SamplesT:
    """The given rows of every tensor of a rollout-buffer sample (dict observations included).

    :param samples: a ``RolloutBufferSamples``-like named tuple of tensors (or dicts of tensors)
    :param rows: an index tensor or a slice
    :return: a named tuple of the same type holding only those rows
    """
    fields: list[Any] = []
    for value in samples:
        if isinstance(value, dict):
            fields.append({key: tensor[rows] for key, tensor in value.items()})
        else:
            fields.append(value[rows])
    return type(samples)(*fields)


def _parameters(distribution: Any) -> list[th.Tensor] | None:
    """The tensors that define a PyTorch action distribution, or ``None`` for a kind not known here."""
    if isinstance(distribution, list):
        parts = [_parameters(part) for part in distribution]
        if any(part is None for part in parts):
            return None
        return [tensor for part in parts for tensor in part]  # type: ignore[union-attr]
    if type(distribution) is Normal:
        return [distribution.loc, distribution.scale]
    if type(distribution) in (Categorical, Bernoulli):
        return [distribution.logits]
    return None


def _rebuild(template: Any, parameters: list[th.Tensor]) -> Any:
    """A PyTorch distribution of the same kind as ``template`` from (row-selected) parameters."""
    if isinstance(template, list):
        return [_rebuild(part, [tensor]) for part, tensor in zip(template, parameters, strict=True)]
    if isinstance(template, Normal):
        return Normal(parameters[0], parameters[1], validate_args=False)
    return type(template)(logits=parameters[0], validate_args=False)


class OldPolicyDistribution:
    """The action distribution of π_old at every state of a rollout, computed once without gradients.

    :param policy: the policy that collected the rollout, before any update
    :param observations: all observations of the rollout (a tensor, or a dict of tensors)
    :param n_states: the number of states in ``observations``
    :param chunk_size: how many states one forward pass evaluates (bounds the memory of large rollouts)
    """

    def __init__(self, policy: ActorCriticPolicy, observations: PyTorchObs, n_states: int, chunk_size: int) -> None:
        chunks: list[list[th.Tensor]] = []
        template: Distribution | None = None
        supported = True
        with th.no_grad():
            for start in range(0, n_states, chunk_size):
                chunk = slice(start, start + chunk_size)
                obs = (
                    {k: v[chunk] for k, v in observations.items()}
                    if isinstance(observations, dict)
                    else observations[chunk]
                )
                distribution = policy.get_distribution(obs)
                parameters = _parameters(distribution.distribution)
                if parameters is None:
                    supported = False
                    break
                chunks.append(parameters)
                # SB3 policies reuse one Distribution object: keep a private shallow copy as the template.
                template = copy.copy(distribution)
        self._template = template if supported else None
        self._parameters = [th.cat(column) for column in zip(*chunks, strict=True)] if supported else []

    @property
    def available(self) -> bool:
        """Whether π_old could be stored (SB3's Gaussian, gSDE, categorical and Bernoulli distributions can)."""
        return self._template is not None

    def rows(self, rows: Rows) -> Distribution | None:
        """π_old at the given states, as an SB3 distribution, or ``None`` when it could not be stored.

        :param rows: an index tensor or a slice into the rollout's states
        :return: an SB3 ``Distribution`` whose parameters are the selected rows
        """
        if self._template is None:
            return None
        old = copy.copy(self._template)
        old.distribution = _rebuild(self._template.distribution, [tensor[rows] for tensor in self._parameters])
        return old

"""π_old kept in the rollout buffer: the action distribution of the policy that collected a rollout, at every state.

KL-penalty PPO needs KL[π_old(·|s) ‖ π_θ(·|s)] on every minibatch. Evaluating a frozen copy of the network per
minibatch would cost one more forward pass per gradient step; instead the old distribution's parameters are
computed once per rollout (one pass without gradients) and stored next to the rollout, and SB3's own minibatches
(``rollout_buffer.get(batch_size)``) carry their rows.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.vec_env import VecNormalize
from torch.distributions import Bernoulli, Categorical, Normal

# States per forward pass when π_old is stored (bounds the memory of large rollouts).
OLD_POLICY_CHUNK = 4096


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
    :param observation_chunks: the rollout's observations, in order, a chunk (tensor or dict of tensors) at a time
    """

    def __init__(self, policy: ActorCriticPolicy, observation_chunks: Iterable[PyTorchObs]) -> None:
        chunks: list[list[th.Tensor]] = []
        template: Distribution | None = None
        with th.no_grad():
            for observations in observation_chunks:
                distribution = policy.get_distribution(observations)
                parameters = _parameters(distribution.distribution)
                if parameters is None:
                    template, chunks = None, []
                    break
                chunks.append(parameters)
                # SB3 policies reuse one Distribution object: keep a private shallow copy as the template.
                template = copy.copy(distribution)
        self._template = template
        self._parameters = [th.cat(column) for column in zip(*chunks, strict=True)]

    @property
    def available(self) -> bool:
        """Whether π_old could be stored (SB3's Gaussian, gSDE, categorical and Bernoulli distributions can)."""
        return self._template is not None

    def rows(self, rows: th.Tensor) -> Distribution | None:
        """π_old at the given states, as an SB3 distribution, or ``None`` when it could not be stored.

        :param rows: indices into the rollout's states
        :return: an SB3 ``Distribution`` whose parameters are the selected rows
        """
        if self._template is None:
            return None
        old = copy.copy(self._template)
        old.distribution = _rebuild(self._template.distribution, [tensor[rows] for tensor in self._parameters])
        return old


class KLRolloutBufferSamples(NamedTuple):
    """SB3's ``RolloutBufferSamples`` (or ``DictRolloutBufferSamples``) plus π_old at the same states."""

    observations: PyTorchObs
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    # None when π_old was not stored for this rollout or its distribution has no stored form
    old_distribution: Distribution | None


def _flat_observation_chunks(buffer: RolloutBuffer | DictRolloutBuffer, chunk_size: int) -> Iterator[PyTorchObs]:
    """The rollout's observations in the row order of ``buffer.get()``, ``chunk_size`` states at a time."""

    def flat(array: np.ndarray) -> np.ndarray:
        # get() swaps and flattens (steps, envs) into env-major rows on its first call
        return array if buffer.generator_ready else buffer.swap_and_flatten(array)

    observations = buffer.observations
    flat_observations = (
        {key: flat(array) for key, array in observations.items()}
        if isinstance(observations, dict)
        else flat(observations)
    )
    for start in range(0, buffer.buffer_size * buffer.n_envs, chunk_size):
        chunk = slice(start, start + chunk_size)
        if isinstance(flat_observations, dict):
            yield {key: buffer.to_torch(array[chunk]) for key, array in flat_observations.items()}
        else:
            yield buffer.to_torch(flat_observations[chunk])


class _OldPolicyRows:
    """Stores π_old once per rollout and returns its rows with every minibatch (mixed into SB3's rollout buffers).

    Call :meth:`store_old_policy` once the rollout is complete; until then (and after each ``reset``) the samples'
    ``old_distribution`` is ``None``.
    """

    old_policy: OldPolicyDistribution | None
    device: th.device

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self.old_policy = None

    def store_old_policy(self, policy: ActorCriticPolicy, chunk_size: int = OLD_POLICY_CHUNK) -> None:
        """Evaluate π_old at every state of the rollout, ``chunk_size`` states per forward pass, without gradients.

        :param policy: the policy that collected the rollout (in the training mode it collected it in)
        :param chunk_size: states per forward pass
        """
        self.old_policy = OldPolicyDistribution(policy, _flat_observation_chunks(self, chunk_size))  # type: ignore[arg-type]

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> KLRolloutBufferSamples:
        samples = super()._get_samples(batch_inds, env)  # type: ignore[misc]
        rows = None if self.old_policy is None else self.old_policy.rows(th.as_tensor(batch_inds, device=self.device))
        return KLRolloutBufferSamples._make((*samples, rows))


class KLRolloutBuffer(_OldPolicyRows, RolloutBuffer):  # type: ignore[misc]
    """SB3's ``RolloutBuffer`` that also stores π_old and returns its rows with every minibatch."""


class KLDictRolloutBuffer(_OldPolicyRows, DictRolloutBuffer):  # type: ignore[misc]
    """SB3's ``DictRolloutBuffer`` that also stores π_old and returns its rows with every minibatch."""

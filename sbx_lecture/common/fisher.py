"""Fisher-vector products of SB3 policies, in closed form.

For a policy whose action distribution has parameters φ(s; θ) (the "distribution coordinates"), the Fisher
information of the state-averaged KL is

    F = (1/N) Σᵢ Jᵢᵀ Mᵢ Jᵢ,        Jᵢ = ∂φ(sᵢ; θ)/∂θ,    Mᵢ = Fisher of the distribution in the coordinates φ,

the Hessian at θ_old of  (1/N) Σᵢ KL[π_old(·|sᵢ) ‖ π_θ(·|sᵢ)]  (KL summed over action dimensions). M is known in
closed form for SB3's distributions:

* diagonal Gaussian and gSDE, coordinates (μ, log σ) per sample and action dimension: M = diag(1/σ², 2);
* categorical, coordinates the logits z: M = diag(p) − p pᵀ (per component for multi-categorical);
* Bernoulli, coordinates the logits: M = p (1 − p).

The product F v = Jᵀ M J v is evaluated with one forward-mode product (J v) and one reverse-mode product (Jᵀ u).
The policy is linearised once per update (one forward pass whose graph is kept) and both linear maps are reused by
every conjugate-gradient iteration. F is positive semi-definite by construction. Distributions without
a closed form fall back to the double-backpropagation Hessian of the KL (:class:`KLHessianVectorProduct`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Literal

import torch as th
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    StateDependentNoiseDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
from stable_baselines3.common.torch_layers import MlpExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sbx_lecture.common.flat_params import flatten_tensors, unflatten_like
from sbx_lecture.common.kl import policy_kl
from sbx_lecture.common.linearization import AutogradLinearization, LinearChainLinearization, is_linear_chain
from sbx_lecture.infra.validation import require_choice

ActionReduction = Literal["sum", "mean"]

_GAUSSIAN_DISTRIBUTIONS = (DiagGaussianDistribution, StateDependentNoiseDistribution)
_CLOSED_FORM_DISTRIBUTIONS = (
    *_GAUSSIAN_DISTRIBUTIONS,
    CategoricalDistribution,
    MultiCategoricalDistribution,
    BernoulliDistribution,
)


def has_closed_form_fisher(distribution: Distribution) -> bool:
    """Whether :func:`distribution_coordinates` and :func:`fisher_metric_product` know this distribution.

    :param distribution: an SB3 distribution
    :return: True for diagonal Gaussian (also squashed), gSDE, categorical, multi-categorical and Bernoulli
    """
    return isinstance(distribution, _CLOSED_FORM_DISTRIBUTIONS)


def distribution_coordinates(distribution: Distribution) -> tuple[th.Tensor, ...]:
    """The parameters φ of an SB3 distribution in which its Fisher metric has a closed form.

    :param distribution: an SB3 distribution on which ``proba_distribution`` has been called
    :return: ``(mean, log_std)`` for Gaussians (each ``(batch, action_dim)``), ``(logits,)`` for categorical and
        Bernoulli, one logits tensor per component for multi-categorical
    """
    if isinstance(distribution, _GAUSSIAN_DISTRIBUTIONS):
        normal = distribution.distribution
        return normal.loc, th.log(normal.scale)
    if isinstance(distribution, MultiCategoricalDistribution):
        return tuple(component.logits for component in distribution.distribution)
    if isinstance(distribution, CategoricalDistribution | BernoulliDistribution):
        return (distribution.distribution.logits,)
    raise NotImplementedError(f"No closed-form Fisher metric for {type(distribution).__name__}")


def fisher_metric_product(
    distribution: Distribution, coordinates: Sequence[th.Tensor], tangents: Sequence[th.Tensor]
) -> tuple[th.Tensor, ...]:
    """Apply the per-sample Fisher metric M of the distribution to tangent vectors of its coordinates.

    Tangents may carry extra leading dimensions (broadcast against the coordinates).

    :param distribution: the distribution type (only its class is used)
    :param coordinates: :func:`distribution_coordinates` at the point where M is taken (detached)
    :param tangents: one tangent per coordinate tensor
    :return: M u, one tensor per coordinate tensor
    """
    if isinstance(distribution, _GAUSSIAN_DISTRIBUTIONS):
        (mean_tangent, log_std_tangent), (_, log_std) = tangents, coordinates
        return mean_tangent * th.exp(-2.0 * log_std), 2.0 * log_std_tangent
    if isinstance(distribution, CategoricalDistribution | MultiCategoricalDistribution):
        products = []
        for logits, tangent in zip(coordinates, tangents, strict=True):
            probs = th.softmax(logits, dim=-1)
            weighted = probs * tangent
            products.append(weighted - probs * weighted.sum(dim=-1, keepdim=True))
        return tuple(products)
    if isinstance(distribution, BernoulliDistribution):
        probs = th.sigmoid(coordinates[0])
        return (probs * (1.0 - probs) * tangents[0],)
    raise NotImplementedError(f"No closed-form Fisher metric for {type(distribution).__name__}")


def action_reduction_scale(
    distribution: Distribution, coordinates: Sequence[th.Tensor], action_reduction: ActionReduction
) -> float:
    """Factor turning the KL summed over action dimensions into the KL reduced as requested.

    ``"sum"`` (the lecture's KL of the joint action distribution) gives 1. ``"mean"`` reproduces
    ``stable_baselines3.common.distributions.kl_divergence(...).mean()`` as sb3-contrib's TRPO uses it: that
    averages over the action dimensions of Gaussians and Bernoullis (categoricals already give one value per state).

    :param distribution: the distribution type
    :param coordinates: its coordinates (for the action dimension)
    :param action_reduction: ``"sum"`` or ``"mean"``
    :return: the factor
    """
    if action_reduction == "sum":
        return 1.0
    if action_reduction != "mean":
        raise ValueError(f"action_reduction must be 'sum' or 'mean', got {action_reduction!r}")
    if isinstance(distribution, (*_GAUSSIAN_DISTRIBUTIONS, BernoulliDistribution)):
        return 1.0 / coordinates[0].shape[-1]
    return 1.0


@contextlib.contextmanager
def _preserved_state(distribution: Distribution) -> Iterator[None]:
    """Trace-friendly evaluation of an SB3 distribution.

    Restores the attributes the distribution caches (``distribution``, gSDE's latent) afterwards, and switches
    off PyTorch's argument validation meanwhile (its data-dependent checks cannot be traced by
    :func:`torch.func.linearize`).
    """
    saved = dict(vars(distribution))
    validate = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(validate)
        vars(distribution).clear()
        vars(distribution).update(saved)


class _PolicyCoordinates(nn.Module):
    """φ(s; θ): the policy's distribution coordinates as a module, so that :func:`torch.func.functional_call` works."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, observations: PyTorchObs) -> tuple[th.Tensor, ...]:
        return distribution_coordinates(self.policy.get_distribution(observations))


def policy_parameters_of_distribution(policy: ActorCriticPolicy, observations: PyTorchObs) -> list[str]:
    """Names of the policy parameters that the action distribution depends on (the actor's θ).

    Found by differentiation, as sb3-contrib's TRPO does, so shared feature extractors are included and the critic's
    own layers are not.

    :param policy: the actor-critic policy
    :param observations: a batch of observations
    :return: parameter names in ``named_parameters()`` order
    """
    named = [(name, param) for name, param in policy.named_parameters() if param.requires_grad]
    with _preserved_state(policy.action_dist):
        distribution = policy.get_distribution(observations)
        if has_closed_form_fisher(distribution):
            output = th.stack([coordinate.sum() for coordinate in distribution_coordinates(distribution)]).sum()
        else:
            output = distribution.log_prob(distribution.sample()).sum()
    grads = th.autograd.grad(output, [param for _, param in named], allow_unused=True)
    return [name for (name, _), grad in zip(named, grads, strict=True) if grad is not None]


def _chain_coordinate_sizes(distribution: Distribution, chain_output: th.Tensor) -> list[int]:
    """How the actor chain's output splits into distribution coordinates (one block per categorical component)."""
    if isinstance(distribution, MultiCategoricalDistribution):
        return list(distribution.action_dims)
    return [chain_output.shape[-1]]


def linear_chain_actor(policy: ActorCriticPolicy, parameter_names: Sequence[str]) -> list[nn.Module] | None:
    """The actor as one Linear/activation chain, when the policy is SB3's MLP actor-critic; None otherwise.

    The chain is ``mlp_extractor.policy_net`` followed by ``action_net``; its output is the Gaussian's mean or the
    logits. The remaining distribution coordinate (a Gaussian's log σ) may depend on ``log_std`` only, with gSDE's
    latent features detached as SB3 does by default. Anything else (a features extractor with parameters of θ,
    overridden forward methods, non-elementwise layers, ``learn_features=True``) returns None, and the Fisher product
    falls back to :class:`AutogradLinearization` of the whole policy.

    :param policy: the actor-critic policy
    :param parameter_names: the parameters θ of the product
    :return: the chain's modules, or None
    """
    policy_type, extractor = type(policy), getattr(policy, "mlp_extractor", None)
    if (
        not isinstance(policy, ActorCriticPolicy)
        or policy_type.get_distribution is not ActorCriticPolicy.get_distribution
        or policy_type._get_action_dist_from_latent is not ActorCriticPolicy._get_action_dist_from_latent
        or not isinstance(extractor, MlpExtractor)
        or type(extractor).forward_actor is not MlpExtractor.forward_actor
        or not isinstance(extractor.policy_net, nn.Sequential)
        or not has_closed_form_fisher(policy.action_dist)
        or getattr(policy.action_dist, "learn_features", False)
    ):
        return None
    modules = [*extractor.policy_net, policy.action_net]
    if not is_linear_chain(modules):
        return None
    chain_ids = {id(param) for module in modules for param in module.parameters()}
    chain_names = {name for name, param in policy.named_parameters() if id(param) in chain_ids}
    if not chain_names <= set(parameter_names) or not set(parameter_names) - chain_names <= {"log_std"}:
        return None
    return modules


class FisherVectorProduct:
    """v ↦ F v = Jᵀ M J v for a policy and a batch of states, linearised once at the current parameters.

    The constructor runs the policy forward once and keeps the two linear maps v ↦ J v and u ↦ Jᵀ u of that point;
    every call then costs one product with J, one with M and one with Jᵀ, and no KL is ever differentiated twice.

    For SB3's MLP actor (:func:`linear_chain_actor`) the mean or logits come from
    :class:`~sbx_lecture.common.linearization.LinearChainLinearization` (plain matrix products on cached
    activations) and a Gaussian's log σ, which depends on ``log_std`` alone, from :class:`AutogradLinearization`
    of that small piece: J is block diagonal over the two. Other policies are linearised whole by autograd
    (``linearization="autograd"`` forces that path, which tests use as a cross-check).

    :param policy: the actor-critic policy (its parameters are read, never changed)
    :param observations: the states sᵢ over which the KL is averaged (the Fisher batch)
    :param parameter_names: names of the parameters θ the product is taken over, in the order of the flat vectors
    :param action_reduction: ``"sum"`` for the KL summed over action dimensions (the lecture), ``"mean"`` for
        sb3-contrib TRPO's mean over them
    :param linearization: ``"auto"`` (the matrix-product path where the policy allows it) or ``"autograd"``
    """

    def __init__(
        self,
        policy: ActorCriticPolicy,
        observations: PyTorchObs,
        parameter_names: Sequence[str],
        action_reduction: ActionReduction = "sum",
        linearization: Literal["auto", "autograd"] = "auto",
    ) -> None:
        require_choice("linearization", linearization, ("auto", "autograd"))
        named = dict(policy.named_parameters())
        self.parameter_names = list(parameter_names)
        self.params = [named[name] for name in self.parameter_names]
        chain_modules = linear_chain_actor(policy, self.parameter_names) if linearization == "auto" else None
        self._chain: LinearChainLinearization | None = None
        with th.enable_grad(), _preserved_state(policy.action_dist):
            if chain_modules is None:
                distribution = policy.get_distribution(observations)
                outputs = distribution_coordinates(distribution)
                self._whole = AutogradLinearization(outputs, self.params)
                coordinates = tuple(output.detach() for output in outputs)
            else:
                distribution, coordinates = self._linearize_chain(policy, observations, chain_modules)
            self._distribution = copy.copy(distribution)
        self.coordinates = coordinates
        n_states = self.coordinates[0].shape[0]
        self.scale = action_reduction_scale(self._distribution, self.coordinates, action_reduction) / n_states

    def _linearize_chain(
        self, policy: ActorCriticPolicy, observations: PyTorchObs, chain_modules: Sequence[nn.Module]
    ) -> tuple[Distribution, tuple[th.Tensor, ...]]:
        """Linearise the mean/logits chain by matrix products and the remaining coordinates (log σ) by autograd."""
        with th.no_grad():
            features = BaseModel.extract_features(policy, observations, policy.pi_features_extractor)
            latent = policy.mlp_extractor.forward_actor(features)
        self._chain = LinearChainLinearization(chain_modules, features)
        distribution = policy._get_action_dist_from_latent(latent)
        chain_ids = {id(param) for param in self._chain.parameters()}
        self._chain_positions = [i for i, param in enumerate(self.params) if id(param) in chain_ids]
        self._side_positions = [i for i, param in enumerate(self.params) if id(param) not in chain_ids]
        self._chain_sizes = _chain_coordinate_sizes(distribution, self._chain.output)
        side_outputs = distribution_coordinates(distribution)[len(self._chain_sizes) :]
        self._side = AutogradLinearization(side_outputs, [self.params[i] for i in self._side_positions])
        chain_coordinates = self._chain.output.split(self._chain_sizes, dim=-1)
        return distribution, (*chain_coordinates, *(output.detach() for output in side_outputs))

    @property
    def n_parameters(self) -> int:
        """Length P of the flat vectors."""
        return sum(param.numel() for param in self.params)

    @property
    def uses_linear_chain(self) -> bool:
        """Whether the mean or logits are linearised by matrix products (True) or by autograd (False)."""
        return self._chain is not None

    def jacobian_product(self, vector: th.Tensor) -> tuple[th.Tensor, ...]:
        """J v: the change of the distribution coordinates along the flat parameter direction v."""
        directions = unflatten_like(vector, self.params)
        if self._chain is None:
            return self._whole.jacobian_product(directions)
        chain_tangent = self._chain.jacobian_product([directions[i] for i in self._chain_positions])
        side_tangents = self._side.jacobian_product([directions[i] for i in self._side_positions])
        return (*chain_tangent.split(self._chain_sizes, dim=-1), *side_tangents)

    def metric_product(self, coordinate_tangents: Sequence[th.Tensor]) -> tuple[th.Tensor, ...]:
        """M u, scaled by 1/N (and by the action reduction)."""
        products = fisher_metric_product(self._distribution, self.coordinates, coordinate_tangents)
        return tuple(self.scale * product for product in products)

    def transpose_jacobian_product(self, coordinate_cotangents: Sequence[th.Tensor]) -> th.Tensor:
        """Jᵀ u as a flat parameter vector."""
        if self._chain is None:
            return flatten_tensors(self._whole.transpose_jacobian_product(coordinate_cotangents))
        n_chain = len(self._chain_sizes)
        chain_cotangent = (
            th.cat(list(coordinate_cotangents[:n_chain]), dim=-1) if n_chain > 1 else coordinate_cotangents[0]
        )
        pulled: list[th.Tensor] = [th.empty(0)] * len(self.params)
        for position, grad in zip(
            self._chain_positions, self._chain.transpose_jacobian_product(chain_cotangent), strict=True
        ):
            pulled[position] = grad
        for position, grad in zip(
            self._side_positions, self._side.transpose_jacobian_product(coordinate_cotangents[n_chain:]), strict=True
        ):
            pulled[position] = grad
        return flatten_tensors(pulled)

    def __call__(self, vector: th.Tensor) -> th.Tensor:
        """F v."""
        return self.transpose_jacobian_product(self.metric_product(self.jacobian_product(vector))).detach()


class KLHessianVectorProduct:
    """v ↦ ∇²_θ KL̄(θ) v at θ_old by double back-propagation: the fallback for distributions without a closed form.

    KL̄ is the state average of :func:`sbx_lecture.common.kl.policy_kl` (KL[π_old ‖ π_θ] summed over action
    dimensions), so this equals :class:`FisherVectorProduct` wherever both exist.

    :param policy: the actor-critic policy
    :param observations: the Fisher batch
    :param parameter_names: names of the parameters θ, in flat-vector order
    :param action_reduction: ``"sum"`` or ``"mean"`` over action dimensions (as in :class:`FisherVectorProduct`)
    """

    def __init__(
        self,
        policy: ActorCriticPolicy,
        observations: PyTorchObs,
        parameter_names: Sequence[str],
        action_reduction: ActionReduction = "sum",
    ) -> None:
        named = dict(policy.named_parameters())
        self.params = [named[name] for name in parameter_names]
        with _preserved_state(policy.action_dist):
            with th.no_grad():
                old_distribution = copy.copy(policy.get_distribution(observations))
                old_distribution.distribution = copy.copy(old_distribution.distribution)
            new_distribution = policy.get_distribution(observations)
            kl = policy_kl(old_distribution, new_distribution)
        if action_reduction == "mean" and isinstance(
            new_distribution, (*_GAUSSIAN_DISTRIBUTIONS, BernoulliDistribution)
        ):
            kl = kl / new_distribution.distribution.mean.shape[-1]
        grads = th.autograd.grad(kl.mean(), self.params, create_graph=True)
        self._flat_grad = flatten_tensors(grads)

    @property
    def n_parameters(self) -> int:
        """Length P of the flat vectors."""
        return self._flat_grad.numel()

    def __call__(self, vector: th.Tensor) -> th.Tensor:
        """H v."""
        hessian_vector = th.autograd.grad(self._flat_grad @ vector, self.params, retain_graph=True)
        return flatten_tensors(hessian_vector).detach()


def make_fisher_vector_product(
    policy: ActorCriticPolicy,
    observations: PyTorchObs,
    parameter_names: Sequence[str],
    action_reduction: ActionReduction = "sum",
) -> FisherVectorProduct | KLHessianVectorProduct:
    """The closed-form product where the distribution has one, the KL-Hessian product otherwise.

    :param policy: the actor-critic policy
    :param observations: the Fisher batch
    :param parameter_names: names of the parameters θ, in flat-vector order
    :param action_reduction: ``"sum"`` or ``"mean"`` over action dimensions
    :return: a callable v ↦ F v
    """
    if has_closed_form_fisher(policy.action_dist):
        return FisherVectorProduct(policy, observations, parameter_names, action_reduction)
    return KLHessianVectorProduct(policy, observations, parameter_names, action_reduction)


def exact_fisher_matrix(
    policy: ActorCriticPolicy,
    observations: PyTorchObs,
    parameter_names: Sequence[str],
    action_reduction: ActionReduction = "sum",
) -> th.Tensor:
    """The full P × P Fisher matrix F = (1/N) Σᵢ Jᵢᵀ Mᵢ Jᵢ from the full Jacobian (small policies only).

    :param policy: the actor-critic policy (closed-form distributions only)
    :param observations: the Fisher batch
    :param parameter_names: names of the parameters θ, in flat-vector order
    :param action_reduction: ``"sum"`` or ``"mean"`` over action dimensions
    :return: F, shape ``(P, P)``
    """
    if not has_closed_form_fisher(policy.action_dist):
        raise ValueError(
            f"fisher='exact' needs a closed-form Fisher metric; {type(policy.action_dist).__name__} has none. "
            "Use fisher='cg'."
        )
    named = dict(policy.named_parameters())
    primals = tuple(named[name].detach() for name in parameter_names)
    module = _PolicyCoordinates(policy)
    prefixed = ["policy." + name for name in parameter_names]

    def coordinates_of(*params: th.Tensor) -> tuple[th.Tensor, ...]:
        return th.func.functional_call(module, dict(zip(prefixed, params, strict=True)), (observations,))

    with _preserved_state(policy.action_dist):
        distribution = copy.copy(policy.get_distribution(observations))
        coordinates = tuple(coordinate.detach() for coordinate in coordinates_of(*primals))
        jacobians = th.func.jacrev(coordinates_of, argnums=tuple(range(len(primals))))(*primals)
    n_params = sum(primal.numel() for primal in primals)
    # One (P, *coordinate_shape) tangent block per coordinate tensor: row k is J e_k.
    tangents = []
    for coordinate, per_param in zip(coordinates, jacobians, strict=True):
        flat = th.cat([jac.reshape(*coordinate.shape, -1) for jac in per_param], dim=-1)
        tangents.append(flat.movedim(-1, 0))
    metric_tangents = fisher_metric_product(distribution, coordinates, tangents)
    fisher = th.zeros(n_params, n_params, dtype=coordinates[0].dtype, device=coordinates[0].device)
    for tangent, metric_tangent in zip(tangents, metric_tangents, strict=True):
        fisher += tangent.reshape(n_params, -1) @ metric_tangent.reshape(n_params, -1).T
    scale = action_reduction_scale(distribution, coordinates, action_reduction) / coordinates[0].shape[0]
    return scale * fisher

"""Compatible function approximation for deterministic policies (Silver et al., 2014, theorem 3).

For a deterministic actor μθ: S → R^m with n parameters, write ∇θμθ(s) for the n×m Jacobian transposed. The
compatible features and the compatible critic are

    φ(s, a) = ∇θμθ(s) (a − μθ(s))                    (n numbers per state-action pair)
    Q^w(s, a) = φ(s, a)ᵀ w + V^v(s) = (a − μθ(s))ᵀ ∇θμθ(s)ᵀ w + V^v(s)

and the actor step is ∇θμθ(s) ∇θμθ(s)ᵀ w. None of these needs the Jacobian itself:

- ``∇θμθ(s)ᵀ w`` (m numbers) is the directional derivative of the network output along ``w`` in parameter space: a
  Jacobian-vector product, one forward-mode pass (:func:`parameter_jvp`).
- ``∇θμθ(s) c`` for any cotangent ``c`` in action space is a vector-Jacobian product, one backward pass. φ(s, a) is
  the VJP with ``c = a − μθ(s)``; the actor step is the VJP with ``c = ∇θμθ(s)ᵀ w``.

:class:`ActorLinearization` gives both products at one batch of states; for SB3's MLP actor they are plain matrix
products on the cached activations (:class:`~sbx_lecture.common.linearization.LinearChainLinearization`).

Parameter-space vectors (``w``, the actor step) are dictionaries ``{parameter name: tensor of that shape}`` so that
they plug straight into :func:`torch.func.functional_call`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch as th
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.td3.policies import Actor
from torch import nn
from torch.autograd import forward_ad
from torch.func import functional_call, vjp, vmap

from sbx_lecture.common.linearization import AutogradLinearization, LinearChainLinearization, is_linear_chain

ParameterVector = Mapping[str, th.Tensor]


def parameter_jvp(
    module: nn.Module,
    inputs: PyTorchObs,
    direction: ParameterVector,
    params: ParameterVector | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """Output of ``module`` and its derivative along ``direction`` in parameter space, in one forward-mode pass.

    The parameters enter :func:`torch.func.functional_call` as dual tensors (primal θ, tangent w), so a single
    forward pass carries both μθ(s) and ∇θμθ(s)ᵀ w; this costs about two plain forward passes.

    :param module: the network μθ, called as ``module(inputs)``
    :param inputs: a batch of inputs (observations)
    :param direction: w, one tensor per named parameter of ``module``
    :param params: parameter values to evaluate at (default: the module's own parameters, so that μθ(s) keeps its
        autograd graph to θ)
    :return: ``(μθ(s), ∇θμθ(s)ᵀ w)``, both of shape ``(batch, m)``
    """
    if params is None:
        params = dict(module.named_parameters())
    with forward_ad.dual_level():
        duals = {name: forward_ad.make_dual(value, direction[name]) for name, value in params.items()}
        output = forward_ad.unpack_dual(functional_call(module, duals, (inputs,)))
        assert output.tangent is not None, "the module's output does not depend on its parameters"
        return output.primal, output.tangent


def actor_chain(actor: nn.Module, params: Mapping[str, th.Tensor]) -> list[nn.Module] | None:
    """SB3's deterministic actor μθ(s) = mu(features(s)) as a Linear/activation chain over exactly ``params``.

    :param actor: the deterministic actor
    :param params: its parameters θ, ``{name: parameter}``
    :return: the chain's modules, or None when the actor is not such a chain (then autograd linearises it)
    """
    if not isinstance(actor, Actor) or type(actor).forward is not Actor.forward:
        return None
    chain = list(actor.mu)
    if not is_linear_chain(chain):
        return None
    chain_params = [param for module in chain if isinstance(module, nn.Linear) for param in module.parameters()]
    if [id(param) for param in chain_params] != [id(param) for param in params.values()]:
        return None  # the features extractor has parameters of its own, or some layer is frozen
    return chain


class ActorLinearization:
    """μθ(s) on a batch of states with its two linear maps v ↦ ∇θμθ(s)ᵀ v and c ↦ ∇θμθ(s) c, fixed once.

    For SB3's TD3-style actor with an MLP head both maps are matrix products on cached activations; any other
    actor is linearised with autograd on one retained graph.

    :param actor: the deterministic actor
    :param states: the states s
    :param params: the actor's parameters θ, ``{name: parameter}`` in the order directions are given
    :param chain: :func:`actor_chain` of this actor when the caller has it already (it depends on the actor's
        structure only, so a training loop finds it once instead of on every step); found here when omitted
    """

    def __init__(
        self,
        actor: nn.Module,
        states: PyTorchObs,
        params: Mapping[str, th.Tensor],
        chain: Sequence[nn.Module] | Literal["find"] | None = "find",
    ) -> None:
        if isinstance(chain, str):
            chain = actor_chain(actor, params)
        self._chain: LinearChainLinearization | None = None
        if chain is not None:
            assert isinstance(actor, Actor)
            with th.no_grad():
                features = actor.extract_features(states, actor.features_extractor)
            self._chain = LinearChainLinearization(chain, features)
            self.output = self._chain.output
        else:
            with th.enable_grad():
                output = actor(states)
            self._autograd = AutogradLinearization((output,), list(params.values()))
            self.output = output.detach()

    @property
    def uses_linear_chain(self) -> bool:
        """Whether the maps are matrix products on cached activations (True) or autograd products (False)."""
        return self._chain is not None

    def jacobian_product(self, directions: Sequence[th.Tensor]) -> th.Tensor:
        """∇θμθ(s)ᵀ v for a parameter direction v (one tensor per parameter), shape ``(batch, m)``."""
        if self._chain is not None:
            return self._chain.jacobian_product(directions)
        return self._autograd.jacobian_product(directions)[0]

    def transpose_jacobian_product(self, cotangent: th.Tensor) -> list[th.Tensor]:
        """∇θμθ(s) c summed over the batch, one tensor per parameter."""
        if self._chain is not None:
            return self._chain.transpose_jacobian_product(cotangent)
        return self._autograd.transpose_jacobian_product((cotangent,))


def compatible_advantage(actions: th.Tensor, mu: th.Tensor, mu_jvp: th.Tensor) -> th.Tensor:
    """Advantage part of the compatible critic, A^w(s, a) = (a − μθ(s))ᵀ ∇θμθ(s)ᵀ w = φ(s, a)ᵀ w.

    :param actions: the actions a, shape ``(batch, m)``
    :param mu: μθ(s), shape ``(batch, m)``
    :param mu_jvp: ∇θμθ(s)ᵀ w from :func:`parameter_jvp`, shape ``(batch, m)``
    :return: shape ``(batch, 1)``
    """
    return ((actions - mu) * mu_jvp).sum(dim=-1, keepdim=True)


def compatible_features(module: nn.Module, inputs: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """The compatible features φ(s, a) = ∇θμθ(s)(a − μθ(s)), flattened, one row per sample.

    One vector-Jacobian product per sample (vectorised with :func:`torch.func.vmap`); the n×m Jacobian is never
    built. The training loop does not need φ explicitly (its critic gradient is the same VJP summed over the
    batch); this function is for analysis and tests.

    :param module: the network μθ
    :param inputs: a batch of inputs, shape ``(batch, ...)``
    :param actions: a batch of actions, shape ``(batch, m)``
    :return: shape ``(batch, n)``, parameters in ``module.named_parameters()`` order
    """
    params = {name: value.detach() for name, value in module.named_parameters()}

    def features_of_one(single_input: th.Tensor, action: th.Tensor) -> th.Tensor:
        def output(p: dict[str, th.Tensor]) -> th.Tensor:
            return functional_call(module, p, (single_input.unsqueeze(0),)).squeeze(0)

        mu, pullback = vjp(output, params)[:2]
        (gradient,) = pullback(action - mu)
        return th.cat([gradient[name].reshape(-1) for name in params])

    return vmap(features_of_one)(inputs, actions)


def parameter_vector_norm(vector: ParameterVector) -> th.Tensor:
    """Euclidean norm of a parameter-space vector given as ``{name: tensor}``."""
    return th.linalg.vector_norm(th.stack([th.linalg.vector_norm(value) for value in vector.values()]))

"""Linearisations of a network at fixed inputs: the linear maps v ↦ J v and u ↦ Jᵀ u of its parameters.

:class:`LinearChainLinearization` handles a chain of ``nn.Linear`` layers and elementwise activations with plain
matrix products; :class:`AutogradLinearization` handles anything differentiable with autograd on a retained graph.

For the chain x₀ → z₁ = x₀W₁ᵀ + b₁ → x₁ = f₁(z₁) → … → output, the Jacobian J of the output with respect to the
weights and biases is a linear map that one forward pass fixes: it needs only each layer's input xₗ₋₁ and each
activation's slope f'(zₗ). Along a parameter direction (dWₗ, dbₗ) the output moves by

    tₗ = f'(zₗ) ⊙ (tₗ₋₁ Wₗᵀ + xₗ₋₁ dWₗᵀ + dbₗ),      t₀ = 0                      (J v, forward)

and a cotangent g on the output pulls back to the parameters as

    dWₗ = gₗᵀ xₗ₋₁,   dbₗ = Σᵢ gₗ,   gₗ₋₁ = f'(zₗ₋₁) ⊙ (gₗ Wₗ)                      (Jᵀ u, reverse)

Both are a handful of matrix products on cached tensors, with no autograd graph: this is what makes the
Fisher-vector product F v = Jᵀ M J v cheap to repeat in every conjugate-gradient iteration
(:mod:`sbx_lecture.common.fisher`), and the compatible critic's products in DPG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch as th
from torch import nn

from sbx_lecture.common.flat_params import zeros_for_unused

#: Activations that act on each entry separately, so that their Jacobian is the diagonal matrix of slopes f'(z).
ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Tanh,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.LogSigmoid,
    nn.Tanhshrink,
    nn.Identity,
)


# f'(z) from the pre-activation z and the output y = f(z), where a closed form is cheaper than a forward-mode pass.
_SLOPES = {
    nn.Tanh: lambda z, y: 1.0 - y * y,
    nn.ReLU: lambda z, y: (z > 0).to(y.dtype),
    nn.Sigmoid: lambda z, y: y * (1.0 - y),
}


def _activation_and_slope(module: nn.Module, inputs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """f(z) and f'(z) of an elementwise activation."""
    slope_of = _SLOPES.get(type(module))
    if slope_of is not None:
        outputs = module(inputs)
        return outputs, slope_of(inputs, outputs)
    outputs, slope = th.func.jvp(module, (inputs,), (th.ones_like(inputs),))[:2]
    return outputs, slope


def is_linear_chain(modules: Sequence[nn.Module]) -> bool:
    """Whether the modules are ``nn.Linear`` layers and elementwise activations only, with at least one layer.

    :param modules: the chain, in evaluation order
    :return: True if :class:`LinearChainLinearization` can linearise it
    """
    return any(isinstance(module, nn.Linear) for module in modules) and all(
        isinstance(module, (nn.Linear, *ELEMENTWISE_ACTIVATIONS)) for module in modules
    )


@dataclass
class _Layer:
    weight: th.Tensor
    inputs: th.Tensor
    has_bias: bool
    # Slope of the activation(s) applied after this layer, or None when there is none (or only identities).
    slope: th.Tensor | None = None


class LinearChainLinearization:
    """J v and Jᵀ u of a Linear/activation chain at fixed inputs, for directions in its weights and biases.

    Parameters are ordered as :meth:`parameters` lists them: for each ``nn.Linear`` in chain order, its weight, then
    its bias if it has one.

    :param modules: the chain in evaluation order (see :func:`is_linear_chain`)
    :param inputs: the chain's inputs x₀, ``(batch, in_features)``; treated as constants
    """

    def __init__(self, modules: Sequence[nn.Module], inputs: th.Tensor) -> None:
        if not is_linear_chain(modules):
            raise ValueError("LinearChainLinearization needs nn.Linear layers and elementwise activations only")
        self._linears = [module for module in modules if isinstance(module, nn.Linear)]
        self._layers: list[_Layer] = []
        value = inputs.detach()
        with th.no_grad():
            for module in modules:
                if isinstance(module, nn.Linear):
                    self._layers.append(_Layer(module.weight.detach(), value, module.bias is not None))
                    value = module(value)
                elif not isinstance(module, nn.Identity):
                    if not self._layers:  # an activation before the first layer only changes the constant inputs
                        value = module(value)
                        continue
                    value, slope = _activation_and_slope(module, value)
                    layer = self._layers[-1]
                    layer.slope = slope if layer.slope is None else layer.slope * slope
        self.output = value

    def parameters(self) -> list[th.Tensor]:
        """The chain's parameters in the order the products use."""
        params: list[th.Tensor] = []
        for linear in self._linears:
            params.append(linear.weight)
            if linear.bias is not None:
                params.append(linear.bias)
        return params

    def jacobian_product(self, directions: Sequence[th.Tensor]) -> th.Tensor:
        """J v: how the output moves along the parameter directions (one per :meth:`parameters` entry).

        :param directions: tensors shaped like the parameters
        :return: the output tangent, ``(batch, out_features)``
        """
        tangent: th.Tensor | None = None
        position = 0
        for layer in self._layers:
            weight_direction = directions[position]
            if layer.has_bias:
                moved = th.addmm(directions[position + 1], layer.inputs, weight_direction.T)
                position += 2
            else:
                moved = layer.inputs @ weight_direction.T
                position += 1
            if tangent is not None:
                moved = moved.addmm_(tangent, layer.weight.T)
            tangent = moved if layer.slope is None else moved.mul_(layer.slope)
        assert tangent is not None
        return tangent

    def transpose_jacobian_product(self, cotangent: th.Tensor) -> list[th.Tensor]:
        """Jᵀ u: the output cotangent pulled back to the parameters.

        :param cotangent: ``(batch, out_features)``
        :return: one tensor per :meth:`parameters` entry, shaped like it
        """
        pulled: list[th.Tensor] = []
        signal = cotangent
        for index in range(len(self._layers) - 1, -1, -1):
            layer = self._layers[index]
            if layer.slope is not None:
                signal = signal * layer.slope
            if layer.has_bias:
                pulled.append(signal.sum(dim=0))
            pulled.append(signal.T @ layer.inputs)
            if index > 0:
                signal = signal @ layer.weight
        pulled.reverse()
        return pulled


class AutogradLinearization:
    """u ↦ Jᵀ u and v ↦ J v of some outputs with respect to some parameters, on one retained autograd graph.

    The reverse-mode product u ↦ Jᵀ u is built once with its own graph kept (``create_graph=True``), so that the
    reverse-mode product of that linear map gives the forward-mode product v ↦ J v (the "double-vjp"
    construction). Works for any differentiable network; :class:`LinearChainLinearization` is the faster special
    case for MLPs.

    :param outputs: the outputs, computed from ``params`` with autograd recording
    :param params: the parameters
    """

    def __init__(self, outputs: Sequence[th.Tensor], params: Sequence[th.Tensor]) -> None:
        self._outputs = tuple(outputs)
        self.params = list(params)
        self._cotangents = tuple(th.zeros_like(output, requires_grad=True) for output in self._outputs)
        transposed: Sequence[th.Tensor | None] = ()
        if self.params and self._outputs:
            with th.enable_grad():
                transposed = th.autograd.grad(
                    self._outputs, self.params, self._cotangents, create_graph=True, allow_unused=True
                )
        # Parameters the outputs do not depend on (or only linearly with a constant Jacobian) drop out of J v.
        self._connected = [index for index, grad in enumerate(transposed) if grad is not None and grad.requires_grad]
        self._transposed = [grad for grad in transposed if grad is not None and grad.requires_grad]

    def jacobian_product(self, directions: Sequence[th.Tensor]) -> tuple[th.Tensor, ...]:
        """J v for parameter directions shaped like the parameters."""
        if not self._connected:
            return tuple(th.zeros_like(output) for output in self._outputs)
        products = th.autograd.grad(
            self._transposed,
            self._cotangents,
            [directions[index] for index in self._connected],
            retain_graph=True,
            allow_unused=True,
        )
        return tuple(
            product if product is not None else th.zeros_like(output)
            for product, output in zip(products, self._outputs, strict=True)
        )

    def transpose_jacobian_product(self, cotangents: Sequence[th.Tensor]) -> list[th.Tensor]:
        """Jᵀ u, one tensor per parameter."""
        if not self.params or not self._outputs:
            return [th.zeros_like(param) for param in self.params]
        grads = th.autograd.grad(self._outputs, self.params, tuple(cotangents), retain_graph=True, allow_unused=True)
        return zeros_for_unused(grads, self.params)

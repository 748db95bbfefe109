"""Flat-vector views of a list of parameters: the natural gradient lives in one long vector θ ∈ ℝᴾ."""

from __future__ import annotations

from collections.abc import Sequence

import torch as th


def flatten_tensors(tensors: Sequence[th.Tensor]) -> th.Tensor:
    """Concatenate tensors of any shapes into one vector, in order.

    :param tensors: the tensors (parameters, gradients, tangents)
    :return: vector of length ``sum(t.numel() for t in tensors)``
    """
    return th.cat([tensor.reshape(-1) for tensor in tensors])


def zeros_for_unused(grads: Sequence[th.Tensor | None], params: Sequence[th.Tensor]) -> list[th.Tensor]:
    """Gradients with zeros for the parameters autograd reported as unused (``None``).

    :param grads: the output of ``torch.autograd.grad(..., allow_unused=True)``
    :param params: the parameters the gradients belong to, in the same order
    :return: one tensor per parameter, shaped like it
    """
    return [grad if grad is not None else th.zeros_like(param) for grad, param in zip(grads, params, strict=True)]


def unflatten_like(flat: th.Tensor, like: Sequence[th.Tensor]) -> tuple[th.Tensor, ...]:
    """Split a vector into tensors with the shapes of ``like`` (the inverse of :func:`flatten_tensors`).

    :param flat: vector of length ``sum(t.numel() for t in like)``
    :param like: tensors giving the shapes
    :return: views into ``flat``, one per tensor of ``like``
    """
    n_expected = sum(tensor.numel() for tensor in like)
    if flat.numel() != n_expected:
        raise ValueError(f"Flat vector has {flat.numel()} entries, the parameters have {n_expected}")
    chunks = th.split(flat, [tensor.numel() for tensor in like])
    return tuple(chunk.view_as(tensor) for chunk, tensor in zip(chunks, like, strict=True))


def get_flat_params(params: Sequence[th.Tensor]) -> th.Tensor:
    """Detached copy of the parameters as one vector θ.

    :param params: the parameters
    :return: θ
    """
    return flatten_tensors([param.detach() for param in params]).clone()


@th.no_grad()
def set_flat_params_(params: Sequence[th.Tensor], flat: th.Tensor) -> None:
    """Overwrite the parameters in place with the entries of the vector θ.

    :param params: the parameters to overwrite
    :param flat: θ, laid out as :func:`flatten_tensors` lays it out
    """
    for param, value in zip(params, unflatten_like(flat, params), strict=True):
        param.copy_(value)

"""Stop training at the first NaN or infinity, before it reaches the parameters, with a message that says where.

A NaN reward, an infinite observation or a step that overflows turns every parameter into NaN within one update; the
algorithm then keeps running, and the failure shows up much later as ``nan ± nan`` or as a torch traceback from a
distribution that refuses NaN arguments. The algorithms call :func:`check_finite` on the few quantities an update is
made of (the rollout or replay rewards, the loss, the gradient or natural-gradient direction, the step) right before
they change a parameter, and :class:`NonFiniteError` reaches the caller of ``model.learn()``.

Each call costs one host synchronisation at most, whatever the number of accelerator tensors it is given: their
``isfinite(...).all()`` flags are stacked and read once (CPU tensors are read directly, which is cheaper than torch
operations on small tensors). The counts of the message and the ``causes`` are computed only on failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch as th

Value = th.Tensor | np.ndarray | float | int

#: What to do about non-finite values, by the word their quantity holds (rewards, observations); else UPDATE_HINT, for
#: anything the update itself computed.
HINTS = {
    "reward": "check the environment's rewards (or clip them with a wrapper)",
    "observation": "check the environment's observations (SB3's VecCheckNan wrapper finds the step that makes them)",
}
UPDATE_HINT = "lower the learning rate or step size, and check the environment's rewards and observations"


class NonFiniteError(FloatingPointError, ValueError):
    """NaN or infinity in a quantity an algorithm was about to use to change its parameters.

    A ``ValueError`` too, so that the RL Zoo's hyperparameter search prunes a trial that diverges (its objective
    prunes on ``AssertionError`` and ``ValueError``) and the search goes on.

    :param message: the one-line message
    :param algorithm: name of the algorithm class
    :param quantity: what held the non-finite values, e.g. ``"the rollout rewards"``
    :param step: ``num_timesteps`` of the model when it was found (``None`` if unknown)
    """

    def __init__(self, message: str, algorithm: str = "", quantity: str = "", step: int | None = None) -> None:
        super().__init__(message)
        self.algorithm = algorithm
        self.quantity = quantity
        self.step = step


def _as_numpy(value: Value) -> np.ndarray:
    if isinstance(value, th.Tensor):
        tensor = value.detach().cpu()
        return (tensor.float() if tensor.dtype == th.bfloat16 else tensor).numpy()  # numpy has no bfloat16
    return np.asarray(value)


def _describe(values: Iterable[Value]) -> tuple[str, str]:
    """``("NaN and inf", " (2 of 8 values)")`` for ``values``: the slow path, on failure only."""
    arrays = [_as_numpy(value) for value in values]
    n_nan = sum(int(np.isnan(array).sum()) for array in arrays)
    n_inf = sum(int(np.isinf(array).sum()) for array in arrays)
    n_total = sum(array.size for array in arrays)
    kinds = " and ".join(kind for kind, count in (("NaN", n_nan), ("inf", n_inf)) if count) or "NaN/inf"
    return kinds, f" ({n_nan + n_inf} of {n_total} values)" if n_total else ""


def all_finite(*values: Value) -> bool:
    """Whether every value (tensors, arrays, numbers) is free of NaN and infinity.

    Tensors on an accelerator cost one host synchronisation in all (their ``isfinite(...).all()`` flags are stacked
    and read once); CPU tensors, arrays and numbers are read directly through numpy, cheaper than torch's per-operation
    overhead on small tensors.
    """
    flags: list[th.Tensor] = []
    for value in values:
        if isinstance(value, th.Tensor) and value.device.type != "cpu":
            flags.append(th.isfinite(value).all())
        elif not np.isfinite(_as_numpy(value)).all():
            return False
    return not flags or bool(th.stack(flags).all())


def check_finite(
    quantity: str,
    *values: Value,
    algorithm: object,
    step: int | None = None,
    hint: str | None = None,
    causes: Mapping[str, Sequence[Value]] | None = None,
) -> None:
    """Raise :class:`NonFiniteError` if any of ``values`` holds NaN or infinity.

    :param quantity: what the values are, as it reads in the message: ``"the rollout rewards"``, ``"the actor loss"``
    :param values: tensors, arrays or numbers
    :param algorithm: the model (its class name and ``num_timesteps`` go into the message) or a name
    :param step: the step to report (default: ``algorithm.num_timesteps``)
    :param hint: what the user can do (default: from the quantity: rewards, observations, or the update's settings)
    :param causes: inputs the values were computed from, looked at only on failure (no cost otherwise): the first
        of them that is not finite is reported instead, e.g. ``{"the sampled rewards": [batch.rewards]}``
    """
    if all_finite(*values):
        return
    for cause, cause_values in (causes or {}).items():
        if not all_finite(*cause_values):
            quantity, values, hint = cause, tuple(cause_values), None  # the cause is reported, with its own hint
            break
    name = algorithm if isinstance(algorithm, str) else type(algorithm).__name__
    step = getattr(algorithm, "num_timesteps", None) if step is None else step
    kinds, counts = _describe(values)
    where = f" at step {step}" if step is not None else ""
    hint = hint or next((text for word, text in HINTS.items() if word in quantity), UPDATE_HINT)
    message = f"{name} found {kinds} in {quantity}{where}{counts}; training stopped: {hint}"
    raise NonFiniteError(message, name, quantity, step)


def _arrays(source: Any, *fields: str) -> list[Value]:
    """The arrays held by the attributes ``fields`` of ``source`` (a batch, a rollout buffer, a model's ``_last_obs``):
    a dict observation's values each, nothing for a missing or ``None`` attribute."""
    values = [getattr(source, field, None) for field in fields]
    arrays = [item for value in values for item in (value.values() if isinstance(value, Mapping) else [value])]
    return [array for array in arrays if array is not None]


def batch_causes(batch: Any) -> dict[str, list[Value]]:
    """The rewards and observations of a replay or rollout batch, as :func:`check_finite`'s ``causes``.

    :param batch: anything with ``rewards``, ``observations`` and optionally ``next_observations`` (dicts allowed)
    """
    # observations first: a NaN observation often makes NaN actions, states and then rewards, never the reverse
    return {
        "the sampled observations": _arrays(batch, "observations", "next_observations"),
        "the sampled rewards": _arrays(batch, "rewards"),
    }


def check_rollout_finite(model: Any) -> None:
    """Raise :class:`NonFiniteError` before an on-policy update whose rollout holds NaN or infinity: the rewards
    first (the usual source), then the advantages and returns computed from them, blaming the observations of the
    rollout buffer and the last observation."""
    buffer = model.rollout_buffer
    check_finite("the rollout rewards", buffer.rewards, algorithm=model)
    causes = {"the observations": [*_arrays(buffer, "observations"), *_arrays(model, "_last_obs")]}
    check_finite("the advantages and returns", buffer.advantages, buffer.returns, algorithm=model, causes=causes)


def assert_finite_parameters(
    model: Any, hint: str = "retrain it, or use a checkpoint saved before it diverged"
) -> None:
    """Raise :class:`NonFiniteError` naming the first parameter or buffer of ``model`` that holds NaN or infinity.

    :param model: an SB3 algorithm (every module it saves is checked, optimizers excepted) or a torch module
    :param hint: what the user can do, appended to the message
    """
    is_module = isinstance(model, th.nn.Module)
    states = {"": model.state_dict()} if is_module else model.get_parameters()  # SB3's: "policy", "policy.optimizer"
    tensors = {
        f"{prefix}.{name}" if prefix else name: tensor
        for prefix, state in states.items()
        if "optimizer" not in prefix
        for name, tensor in state.items()
        if isinstance(tensor, th.Tensor) and tensor.is_floating_point()
    }
    if all_finite(*tensors.values()):
        return
    name = next(name for name, tensor in tensors.items() if not all_finite(tensor))
    kinds, counts = _describe([tensors[name]])
    algorithm = type(model).__name__
    message = f"the {algorithm} {'module' if is_module else 'model'} has non-finite weights: {kinds} in {name}{counts}"
    raise NonFiniteError(f"{message}; {hint}", algorithm, name)


def raise_for_non_finite_observations(model: Any, error: BaseException) -> None:
    """Raise :class:`NonFiniteError` from ``error`` if the model's last observation holds NaN or infinity.

    Call it where collecting experience failed (a torch distribution refuses NaN parameters with a ``ValueError``):
    it costs nothing while nothing fails, and turns the torch traceback into the one line about the observations.

    :param model: an SB3 algorithm (``model._last_obs`` is checked)
    :param error: the exception being handled
    """
    try:
        check_finite("the observations", *_arrays(model, "_last_obs"), algorithm=model)
    except NonFiniteError as non_finite:
        raise non_finite from error


class RolloutObservationCheck:
    """Mixin for on-policy algorithms: when a torch distribution refuses NaN or infinity while the rollout is
    collected, the error names the observations that caused it (a :class:`NonFiniteError`) instead of the logits."""

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().collect_rollouts(*args, **kwargs)  # type: ignore[misc,no-any-return]
        except ValueError as error:
            raise_for_non_finite_observations(self, error)
            raise

"""An update's loss computation compiled once with ``torch.compile``, or the same function run eagerly.

The off-policy algorithms take one small gradient step per environment step; on an accelerator most of such a step
is the launch overhead of many tiny kernels, which a compiled graph removes (LeanRL does this for CleanRL). The loss
functions are written once, as plain functions of the batch; :class:`CompiledUpdate` runs them compiled or eagerly,
so the compiled and the eager update are the same mathematics by construction, and a test checks that they give the
same parameters.

Compiling costs time once (seconds to a minute, reported as ``compile_seconds``), so an algorithm asks for it only
when its run is long enough (:data:`MIN_COMPILED_UPDATES` gradient steps). Where compiling fails (no C++ compiler,
a backend that does not support the device) the eager function is used from then on, with one warning.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import TrainFrequencyUnit

#: Compile only for a ``learn`` call expected to take at least this many gradient steps: shorter runs would spend
#: more time compiling than they save.
MIN_COMPILED_UPDATES = 10_000


@contextlib.contextmanager
def _distribution_checks_kept() -> Iterator[None]:
    """Restore the process-wide argument checks of torch.distributions on the way out.

    torch.compile turns them off for the whole process when first used; the other algorithms rely on them (NaN
    logits are reported as such, not sampled from), and the compiled losses use no distribution.
    """
    validate_arguments = th.distributions.Distribution._validate_args
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(validate_arguments)


def frozen_forward(module: th.nn.Module, *inputs: Any) -> Any:
    """``module(*inputs)`` with the module's parameters as constants to autograd: gradients reach the inputs only.

    Eagerly the parameters' ``requires_grad`` is switched off for the call, the cheapest way; under
    ``torch.compile``, where that switch breaks the graph, the detached parameters go through
    :func:`torch.func.functional_call` instead. Both give the same values and the same input gradients.
    """
    if th.compiler.is_compiling():
        detached = {name: parameter.detach() for name, parameter in module.named_parameters()}
        return th.func.functional_call(module, detached, inputs)
    trainable = [parameter for parameter in module.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        return module(*inputs)
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


class CompiledUpdate:
    """A loss function that runs eagerly until :meth:`compile` is called, compiled from its next call on.

    :param function: the loss computation (pure: it may read parameters, it must not change them)
    :param name: who asks, for the warning when compiling fails (e.g. ``"DPG"``)
    """

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        self.function = function
        self.name = name
        self._compiled: Callable[..., Any] | None = None
        self._failed = False
        #: Seconds the first compiled call took (tracing and code generation included); ``None`` until then.
        self.compile_seconds: float | None = None

    @property
    def is_compiled(self) -> bool:
        """Whether calls run the compiled function (after a successful first call) or will try to."""
        return self._compiled is not None

    def compile(self) -> None:
        """Use ``torch.compile`` from the next call on (nothing happens if compiling failed before)."""
        if self._compiled is None and not self._failed:
            with _distribution_checks_kept():
                self._compiled = th.compile(self.function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.function(*args, **kwargs)
        if self.compile_seconds is not None:
            return self._compiled(*args, **kwargs)
        start = time.perf_counter()
        try:
            with _distribution_checks_kept():
                result = self._compiled(*args, **kwargs)
        except Exception as error:  # no C++ compiler, a backend without support for this device, ...
            self._compiled = None
            self._failed = True
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"{self.name}: compiling the update failed ({reason}); using the eager update", stacklevel=2)
            return self.function(*args, **kwargs)
        self.compile_seconds = time.perf_counter() - start
        return result


class CompiledUpdateMixin:
    """``compile_update`` for an SB3 off-policy algorithm: its loss functions wrapped once, compiled when worth it.

    The algorithm wraps each loss function with :meth:`_compiled_update` in ``_setup_model`` and calls
    :meth:`_prepare_compilation` at the start of ``learn``.
    """

    compile_update: bool
    verbose: int
    num_timesteps: int
    learning_starts: int
    gradient_steps: int
    n_envs: int
    train_freq: Any
    _compiled_updates: dict[str, CompiledUpdate]

    def _compiled_update(self, function: Callable[..., Any]) -> CompiledUpdate:
        """``function`` wrapped for compilation (a second setup of the model replaces the wrapper of the same name)."""
        update = CompiledUpdate(function, type(self).__name__)
        self._compiled_updates = {**getattr(self, "_compiled_updates", {}), function.__name__: update}
        return update

    @property
    def compile_seconds(self) -> float | None:
        """Seconds spent compiling the update (``None`` when nothing was compiled)."""
        updates = self._compiled_updates.values()
        seconds = [update.compile_seconds for update in updates if update.compile_seconds is not None]
        return sum(seconds) if seconds else None

    def _prepare_compilation(self, total_timesteps: int, reset_num_timesteps: bool) -> None:
        """Compile from the next update on if ``compile_update`` is set and this call is long enough to pay for it."""
        updates = self._compiled_updates.values()
        if not self.compile_update or all(update.is_compiled for update in updates):
            return
        done = 0 if reset_num_timesteps else self.num_timesteps
        learning_steps = max(0, total_timesteps - max(0, self.learning_starts - done))
        frequency = self.train_freq.frequency if self.train_freq.unit == TrainFrequencyUnit.STEP else 1
        per_step = 1.0 if self.gradient_steps < 0 else self.gradient_steps / (frequency * self.n_envs)
        expected = int(learning_steps * per_step)
        if expected < MIN_COMPILED_UPDATES:
            if self.verbose >= 1:
                print(
                    f"compile_update: about {expected} gradient steps, fewer than {MIN_COMPILED_UPDATES}: "
                    "the eager update is used for this call"
                )
            return
        for update in updates:
            update.compile()

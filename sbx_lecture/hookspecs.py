"""The plugin contract of sbx-lecture.

A plugin is a module (or any object) with a function named ``register_algorithms`` marked with
:data:`hookimpl`. It is found through the ``sbx_lecture`` entry-point group::

    [project.entry-points.sbx_lecture]
    pg = "sbx_lecture_pg.plugin"

and is called once with a ``register`` function, which it calls once per algorithm::

    @hookimpl
    def register_algorithms(register):
        register("reinforce", "sbx_lecture_pg.reinforce:REINFORCE", description="...")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pluggy

PROJECT_NAME = "sbx_lecture"
ENTRY_POINT_GROUP = "sbx_lecture"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegisterFunction(Protocol):
    """Signature of the ``register`` callable handed to :func:`register_algorithms`.

    :param name: registry name, lower case like the RL Zoo's ``--algo`` (``-`` and upper case are normalised)
    :param target: the algorithm class, or ``"module:Class"`` resolved on first use
    :param description: one line shown by ``sbx-lecture list``
    :param zoo_hyperparams: the algorithm's rl-zoo yml, as a path or ``"package:relative/path.yml"``
    :param zoo_sampler: Optuna sampler ``(trial, n_actions, n_envs, additional_args) -> dict`` for ``--optimize``
    :param action_spaces: names of the gymnasium action spaces it supports (``("Box", "Discrete")``), shown by
        ``sbx-lecture list`` without importing the algorithm
    :param observation_spaces: likewise for observation spaces (``"Dict"`` when it has a ``MultiInputPolicy``)
    :param override: replace an algorithm of the same name registered earlier instead of failing
    :param extra: keyword arguments added by later versions of the contract; unknown ones are kept, not refused
    """

    def __call__(
        self,
        name: str,
        target: object,
        *,
        description: str = "",
        zoo_hyperparams: str | None = None,
        zoo_sampler: object | None = None,
        action_spaces: Sequence[str] | None = None,
        observation_spaces: Sequence[str] | None = None,
        override: bool = False,
        **extra: object,
    ) -> None: ...


class AlgorithmHookSpecs:
    """Hook specifications; pluggy reads the marked methods' names and arguments."""

    @hookspec
    def register_algorithms(self, register: RegisterFunction) -> None:
        """Register algorithms by calling ``register(name, target, ...)`` once per algorithm.

        :param register: see :class:`RegisterFunction`
        """

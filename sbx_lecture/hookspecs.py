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

from typing import Any

import pluggy

from sbx_lecture.registry import AlgorithmSpec

#: The markers' project name, and the entry-point group of the plugins.
PROJECT_NAME = ENTRY_POINT_GROUP = "sbx_lecture"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegisterFunction:
    """The ``register`` callable handed to one plugin's :func:`register_algorithms`: it keeps what the plugin
    registers, for the plugin manager to add all at once.

    :param plugin: the plugin's name
    :param distribution: the installed distribution that provides it (``None`` for code registered by hand)
    :param version: that distribution's version
    """

    def __init__(self, plugin: str, distribution: str | None = None, version: str | None = None) -> None:
        #: Who registers: the fields of every :class:`AlgorithmSpec` this plugin makes.
        self.origin: dict[str, Any] = {"plugin": plugin, "distribution": distribution, "version": version}
        #: Each registration and whether it may replace an earlier one of the same name.
        self.registrations: list[tuple[AlgorithmSpec, bool]] = []

    def __call__(
        self,
        name: str,
        target: Any,
        *,
        description: str = "",
        zoo_hyperparams: str | None = None,
        zoo_sampler: Any = None,
        override: bool = False,
        **extra: Any,
    ) -> None:
        """Register one algorithm.

        :param name: registry name, lower case like the RL Zoo's ``--algo`` (``-`` and upper case are normalised)
        :param target: the algorithm class, or ``"module:Class"`` resolved on first use
        :param description: one line shown by ``sbx-lecture list``
        :param zoo_hyperparams: the algorithm's rl-zoo yml, as a path or ``"package:relative/path.yml"``
        :param zoo_sampler: Optuna sampler ``(trial, n_actions, n_envs, additional_args) -> dict`` for
            ``--optimize``, or its ``"module:function"``
        :param override: replace an algorithm of the same name registered earlier instead of failing
        :param extra: keyword arguments added by later versions of the contract; unknown ones are kept, not refused
        """
        fields = {"description": description, "zoo_hyperparams": zoo_hyperparams, "zoo_sampler": zoo_sampler}
        spec = AlgorithmSpec(name, target, **fields, extra=extra, **self.origin)
        if any(spec.name == other.name for other, _ in self.registrations):
            raise ValueError(f"plugin {spec.plugin!r} registers {spec.name!r} more than once")
        self.registrations.append((spec, override))


@hookspec
def register_algorithms(register: RegisterFunction) -> None:
    """The hook: register algorithms by calling ``register(name, target, ...)`` once per algorithm (pluggy reads its
    name and arguments; this module is the plugin manager's hook specification).

    :param register: see :class:`RegisterFunction`
    """

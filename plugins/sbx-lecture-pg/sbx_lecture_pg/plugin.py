"""The hook implementation that sbx-lecture finds through the entry point ``pg = "sbx_lecture_pg.plugin"``.

It imports nothing heavy: targets and samplers are ``"module:attribute"`` strings resolved on first use.
"""

from __future__ import annotations

from sbx_lecture import hookimpl
from sbx_lecture.hookspecs import RegisterFunction


@hookimpl
def register_algorithms(register: RegisterFunction) -> None:
    """Register ``reinforce`` and ``ispg``."""
    register(
        "reinforce",
        "sbx_lecture_pg.reinforce:REINFORCE",
        description="REINFORCE: Monte-Carlo policy gradient, reward-to-go, optional learned baseline",
        zoo_hyperparams="sbx_lecture_pg:zoo/reinforce.yml",
        zoo_sampler="sbx_lecture_pg.samplers:sample_reinforce_params",
    )
    register(
        "ispg",
        "sbx_lecture_pg.ispg:ISPG",
        description="off-policy policy gradient from the last K rollouts, per-decision weights truncated at rho_bar",
        zoo_hyperparams="sbx_lecture_pg:zoo/ispg.yml",
        zoo_sampler="sbx_lecture_pg.samplers:sample_ispg_params",
    )

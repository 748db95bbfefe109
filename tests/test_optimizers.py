"""Optimizer settings: fused Adam for the per-step off-policy learners, unless the user chose otherwise."""

from __future__ import annotations

import torch as th

from sbx_lecture import DPG, SQL
from sbx_lecture.common.optimizers import fast_optimizer_kwargs


def test_fast_optimizer_kwargs_adds_fused_or_foreach_only_where_unset():
    assert fast_optimizer_kwargs(th.optim.Adam, {"eps": 1e-5}) == {"eps": 1e-5, "fused": True}
    assert fast_optimizer_kwargs(th.optim.AdamW, {}) == {"fused": True}
    assert fast_optimizer_kwargs(th.optim.SGD, {"momentum": 0.9}) == {"momentum": 0.9, "foreach": True}
    assert fast_optimizer_kwargs(th.optim.Adam, {"foreach": True}) == {"foreach": True}
    assert fast_optimizer_kwargs(th.optim.Adam, {"fused": False}) == {"fused": False}
    assert fast_optimizer_kwargs(th.optim.Adagrad, {"lr_decay": 0.1}) == {"lr_decay": 0.1}
    caller = {"eps": 1e-5}
    fast_optimizer_kwargs(th.optim.Adam, caller)
    assert caller == {"eps": 1e-5}, "the caller's dictionary must not change"


def test_dpg_and_sql_optimizers_are_fused_unless_told_otherwise():
    dpg = DPG("MlpPolicy", "Pendulum-v1", seed=0)
    assert dpg.actor.optimizer.defaults["fused"] and dpg.critic.optimizer.defaults["fused"]
    sql = SQL("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(optimizer_kwargs=dict(foreach=True)))
    assert sql.policy.q_net.optimizer.defaults["foreach"] and not sql.policy.q_net.optimizer.defaults["fused"]

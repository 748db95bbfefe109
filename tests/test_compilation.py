"""``compile_update``: the compiled and the eager update are the same update; compiling falls back and reports.

The compiled runs here compile for real (``torch.compile`` with its default CPU backend), a few seconds each.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch as th
from stable_baselines3.common.utils import set_random_seed

import sbx_lecture.infra.compilation as compilation
from sbx_lecture.dpg import DPG
from sbx_lecture.infra.validation import InvalidValueError
from sbx_lecture.sql import SQL
from sbx_lecture.testing import check_algorithm

TINY: dict[str, Any] = {
    "batch_size": 32,
    "learning_starts": 50,
    "buffer_size": 1_000,
    "policy_kwargs": {"net_arch": [16, 16]},
    "seed": 0,
}


@pytest.fixture
def compile_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile whatever the length of the run (the threshold is for users' short runs, not for tests)."""
    monkeypatch.setattr(compilation, "MIN_COMPILED_UPDATES", 0)


def _dpg(**kwargs: Any) -> DPG:
    return DPG("MlpPolicy", "Pendulum-v1", critic="mlp", target_networks=True, **{**TINY, **kwargs})


def _sql(env_id: str, **kwargs: Any) -> SQL:
    return SQL("MlpPolicy", env_id, **{**TINY, **kwargs})


def _trained(make: Any, *args: Any) -> Any:
    """A model after 100 steps (50 of them learning): each built and trained before the next is, since both seed the
    global generators that the buffer samples with."""
    model = make(*args)
    model.learn(100)
    return model


def _steps(model: DPG | SQL, n_steps: int = 4) -> None:
    """``n_steps`` gradient steps on one fixed batch, the random draws inside the update seeded alike."""
    assert model.replay_buffer is not None
    set_random_seed(123)  # the buffer samples with numpy
    if isinstance(model, DPG):
        batch = model.replay_buffer.sample_transitions(32)  # type: ignore[attr-defined]
        assert batch is not None
        th.manual_seed(7)
        for _ in range(n_steps):
            model._deep_dpg_update(batch)
            model._update_targets()
        return
    data = model.replay_buffer.sample(32)
    th.manual_seed(7)
    for _ in range(n_steps):
        if model.is_discrete:
            model._discrete_update(data, 0.1)
        else:
            model._continuous_update(data, 0.1)
        model._q_net_target_update.update(model.tau)


def _assert_same_parameters(first: th.nn.Module, second: th.nn.Module) -> None:
    for (name, ours), (_, theirs) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        th.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=f"{name} differs")


@pytest.mark.parametrize(
    "make",
    [_dpg, lambda: _sql("Pendulum-v1"), lambda: _sql("CartPole-v1")],
    ids=["dpg", "sql-box", "sql-discrete"],
)
def test_compiled_and_eager_updates_give_the_same_parameters(make: Any) -> None:
    eager, compiled = _trained(make), _trained(make)
    _assert_same_parameters(eager.policy, compiled.policy)
    for update in compiled._compiled_updates.values():
        update.compile()
    _steps(eager)
    _steps(compiled)
    assert compiled.compile_seconds is not None and compiled.compile_seconds > 0
    # torch.compile turns off torch.distributions' argument checks when first used; the other algorithms need them
    assert th.distributions.Distribution._validate_args
    assert eager.compile_seconds is None
    _assert_same_parameters(eager.policy, compiled.policy)
    # the steps moved the parameters: the comparison above is not between untouched networks
    fresh = _trained(make)
    with pytest.raises(AssertionError):
        _assert_same_parameters(fresh.policy, compiled.policy)


def test_a_failed_compilation_warns_once_and_runs_the_eager_update(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(function: Any, **_: Any) -> Any:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return broken

    monkeypatch.setattr(compilation.th, "compile", no_compiler)
    eager, fallback = _trained(_sql, "Pendulum-v1"), _trained(_sql, "Pendulum-v1")
    for update in fallback._compiled_updates.values():
        update.compile()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _steps(eager)
        _steps(fallback)
    lines = [str(warning.message) for warning in caught if "compiling the update failed" in str(warning.message)]
    # one line per loss function of the update (soft Q, SVGD), each only on its first call
    reason = "InvalidCxxCompiler: No working C++ compiler found"
    assert lines == [f"SQL: compiling the update failed ({reason}); using the eager update"] * 2
    assert fallback.compile_seconds is None
    assert not fallback._continuous_q_update.is_compiled and not fallback._svgd_update.is_compiled
    _assert_same_parameters(eager.policy, fallback.policy)


def test_a_short_run_uses_the_eager_update_and_says_so_once(capsys: pytest.CaptureFixture[str]) -> None:
    model = _dpg(compile_update=True, verbose=1)
    model.learn(300)
    assert model.compile_seconds is None
    assert not any(update.is_compiled for update in model._compiled_updates.values())
    out = capsys.readouterr().out
    assert out.count("compile_update: about 250 gradient steps, fewer than 10000") == 1


def test_compiled_training_saves_loads_and_resumes(compile_every_run: None, tmp_path: Any) -> None:
    model = _sql("Pendulum-v1", compile_update=True)
    model.learn(150)
    assert model.compile_seconds is not None
    path = tmp_path / "sql.zip"
    model.save(path)
    loaded = SQL.load(path, env=model.get_env())
    assert loaded.compile_update is True
    observation = th.zeros(1, 3).numpy()
    assert (
        loaded.predict(observation, deterministic=True)[0] == model.predict(observation, deterministic=True)[0]
    ).all()
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps == 250
    assert loaded.compile_seconds is not None  # the loaded model compiled its own update
    assert all(th.isfinite(parameter).all() for parameter in loaded.policy.parameters())


def test_dpg_compiles_only_the_neural_critic() -> None:
    with pytest.raises(InvalidValueError, match="compile_update=True needs critic='mlp'"):
        DPG("MlpPolicy", "Pendulum-v1", critic="compatible", compile_update=True)


@pytest.mark.parametrize(
    ("cls", "hyperparams"),
    [(DPG, {"critic": "mlp", "compile_update": True}), (SQL, {"compile_update": True})],
    ids=["dpg", "sql"],
)
def test_the_conformance_kit_passes_with_compilation_on(
    compile_every_run: None, cls: type, hyperparams: dict[str, Any]
) -> None:
    check_algorithm(cls, hyperparams=hyperparams)


def test_frozen_forward_sends_gradients_to_the_inputs_only_eagerly_and_compiled() -> None:
    """Q(s, a) with the critic's parameters held constant: the eager switch and the compiled detached-parameter path
    give the input gradient of an independent functional_call, leave no parameter gradient, and restore the flags."""
    th.manual_seed(0)
    critic = th.nn.Sequential(th.nn.Linear(3, 8), th.nn.Tanh(), th.nn.Linear(8, 1))
    critic[0].bias.requires_grad_(False)  # a parameter the caller froze on purpose stays frozen afterwards
    inputs = th.randn(5, 3)
    constants = {name: parameter.detach().clone() for name, parameter in critic.named_parameters()}
    expected_input = inputs.clone().requires_grad_(True)
    th.func.functional_call(critic, constants, (expected_input,)).sum().backward()

    for forward in (compilation.frozen_forward, th.compile(compilation.frozen_forward)):
        actual_input = inputs.clone().requires_grad_(True)
        forward(critic, actual_input).sum().backward()
        assert actual_input.grad is not None and expected_input.grad is not None
        th.testing.assert_close(actual_input.grad, expected_input.grad)
        assert all(parameter.grad is None for parameter in critic.parameters())
        assert [parameter.requires_grad for parameter in critic.parameters()] == [True, False, True, True]

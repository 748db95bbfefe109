"""NPG and TNPG: the update against the lecture's equations, TRPO reproduction, learning, save/load, errors."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution, kl_divergence
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import FloatSchedule

from sbx_lecture.common.fisher import exact_fisher_matrix, make_fisher_vector_product
from sbx_lecture.common.flat_params import flatten_tensors
from sbx_lecture.common.natural_gradient import kl_step_length
from sbx_lecture.npg import NPG, TNPG

TINY = dict(net_arch=[16])


def collected(model, n_steps: int):
    """A model with one rollout in its buffer and a logger, ready for ``train()``."""
    model._setup_learn(n_steps)
    model.collect_rollouts(model.env, model._init_callback(None), model.rollout_buffer, n_rollout_steps=model.n_steps)
    model.set_logger(configure(None, [""]))
    return model


def actor_state(model):
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


# --- the update against the lecture's equations ----------------------------------------------------------------------


@pytest.mark.parametrize("sub_sampling", [1, 3])
def test_npg_step_is_alpha_times_exact_natural_gradient(sub_sampling):
    """θ_new − θ_old = α (F + λI)⁻¹ g with F and g computed independently of the training loop.

    With Fisher sub-sampling, F comes from every k-th state while g still uses the whole rollout.
    """
    model = collected(
        NPG(
            "MlpPolicy",
            "CartPole-v1",
            n_steps=128,
            step_size=0.05,
            fisher="cg",
            cg_max_steps=500,
            cg_residual_tol=1e-10,
            cg_damping=0.1,
            policy_kwargs=dict(net_arch=[8]),
            fisher_sub_sampling_factor=sub_sampling,
            seed=1,
        ),
        128,
    )
    np.random.seed(0)  # the buffer shuffles: same order here and in train(), hence the same sub-sample
    data = next(model.rollout_buffer.get(batch_size=None))
    names = [n for n, _ in model.policy.named_parameters() if "value" not in n]
    params = [dict(model.policy.named_parameters())[n] for n in names]
    adv = (data.advantages - data.advantages.mean()) / (data.advantages.std() + 1e-8)
    log_prob = model.policy.get_distribution(data.observations).log_prob(data.actions.long().flatten())
    gradient = flatten_tensors(th.autograd.grad((th.exp(log_prob - data.old_log_prob) * adv).mean(), params))
    fisher = exact_fisher_matrix(model.policy, data.observations[::sub_sampling], names).double()
    expected = 0.05 * th.linalg.solve(fisher + 0.1 * th.eye(len(fisher), dtype=th.float64), gradient.double())
    before = flatten_tensors(params).detach().clone()
    np.random.seed(0)
    model.train()
    step = flatten_tensors(params).detach() - before
    th.testing.assert_close(step.double(), expected, rtol=2e-3, atol=1e-6)
    logged = model.logger.name_to_value
    assert logged["train/surrogate_improvement_predicted"] == pytest.approx(float(gradient @ step), rel=1e-4)
    assert logged["train/cg_residual"] <= 1e-6


def test_exact_and_cg_directions_agree():
    def direction(fisher: str):
        th.manual_seed(0)
        model = collected(
            NPG(
                "MlpPolicy",
                "Pendulum-v1",
                n_steps=128,
                fisher=fisher,
                cg_max_steps=1000,
                cg_residual_tol=1e-8,
                policy_kwargs=TINY,
                seed=3,
            ),
            128,
        )
        before = flatten_tensors(list(model.policy.parameters())).detach().clone()
        np.random.seed(0)
        model.train()
        return flatten_tensors(list(model.policy.parameters())).detach() - before

    th.testing.assert_close(direction("cg"), direction("exact"), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("line_search_max_iter", [0, 1])
def test_tnpg_step_puts_the_quadratic_kl_model_at_delta(line_search_max_iter):
    """½ Δθᵀ F Δθ = δ after a TNPG step (β = sqrt(2δ / xᵀFx)), F built exactly and independently at θ_old."""
    target_kl = 0.005
    model = collected(
        TNPG(
            "MlpPolicy",
            "Pendulum-v1",
            n_steps=256,
            target_kl=target_kl,
            cg_max_steps=5,
            line_search_max_iter=line_search_max_iter,
            policy_kwargs=TINY,
            seed=2,
        ),
        256,
    )
    names = [n for n, _ in model.policy.named_parameters() if "value" not in n]
    params = [dict(model.policy.named_parameters())[n] for n in names]
    data = next(model.rollout_buffer.get(batch_size=None))
    fisher = exact_fisher_matrix(model.policy, data.observations, names).double()
    before = flatten_tensors(params).detach().clone()
    model.train()
    step = (flatten_tensors(params).detach() - before).double()
    assert model.logger.name_to_value["train/step_accepted"] == 1.0
    assert 0.5 * float(step @ fisher @ step) == pytest.approx(target_kl, rel=1e-3)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_tnpg_kl_is_close_to_the_bound(env_id):
    target_kl = 0.01
    model = collected(TNPG("MlpPolicy", env_id, n_steps=512, target_kl=target_kl, policy_kwargs=TINY, seed=0), 512)
    model.train()
    kl = model.logger.name_to_value["train/kl_divergence"]
    assert 0.5 * target_kl <= kl <= 1.5 * target_kl


def test_npg_kl_grows_as_alpha_squared():
    model = collected(NPG("MlpPolicy", "Pendulum-v1", n_steps=512, policy_kwargs=TINY, seed=0), 512)
    initial = actor_state(model)
    kls = []
    for alpha in (0.01, 0.02, 0.04):
        model.policy.load_state_dict(initial)
        model.step_size_schedule = FloatSchedule(alpha)
        model.train()
        kls.append(model.logger.name_to_value["train/kl_divergence"])
    assert kls[1] / kls[0] == pytest.approx(4.0, rel=0.15)
    assert kls[2] / kls[1] == pytest.approx(4.0, rel=0.15)


class TNPGWithTRPOConventions(TNPG):
    """Our update with sb3-contrib TRPO's conventions, which differ from the lecture's in three places.

    The Fisher matrix is that of the KL averaged (not summed) over action dimensions, the step length uses the
    damped quadratic form xᵀ(F + λI)x, and the measured KL is KL[new ‖ old] averaged over action dimensions.
    """

    def _fisher_vector_product(self, observations):
        return make_fisher_vector_product(
            self.policy, self._fisher_batch(observations), self._actor_parameter_names, action_reduction="mean"
        )

    def _step_length(self, direction, fisher_vector_product):
        damped = fisher_vector_product(direction) + self.cg_damping * direction
        return kl_step_length(direction, damped, self._kl_bound())

    def _mean_kl(self, old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor:
        return kl_divergence(new_distribution, old_distribution).mean()


class _Snapshot(BaseCallback):
    """Keeps TRPO's rollout and parameters just before its train(), and fixes the minibatch shuffling."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.buffer = copy.deepcopy(self.model.rollout_buffer)
        self.state = actor_state(self.model)
        self.optimizer_state = copy.deepcopy(self.model.policy.optimizer.state_dict())
        np.random.seed(123)


@pytest.mark.parametrize("env_id", ["Reacher-v5", "CartPole-v1"])
def test_core_with_trpo_line_search_reproduces_sb3_contrib_trpo(env_id):
    common = dict(
        n_steps=256,
        batch_size=64,
        cg_max_steps=15,
        cg_damping=0.1,
        target_kl=0.01,
        line_search_max_iter=10,
        line_search_shrinking_factor=0.8,
        n_critic_updates=3,
        policy_kwargs=TINY,
        seed=0,
    )
    trpo = TRPO("MlpPolicy", env_id, **common)
    snapshot = _Snapshot()
    trpo.learn(256, callback=snapshot)
    ours = TNPGWithTRPOConventions("MlpPolicy", env_id, cg_residual_tol=0.0, **common)
    ours.policy.load_state_dict(snapshot.state)
    ours.policy.optimizer.load_state_dict(snapshot.optimizer_state)
    ours.rollout_buffer = snapshot.buffer
    ours.set_logger(configure(None, [""]))
    np.random.seed(123)
    ours.train()
    assert ours.logger.name_to_value["train/step_accepted"] == trpo.logger.name_to_value["train/is_line_search_success"]
    for name, theirs in trpo.policy.state_dict().items():
        their_update = theirs - snapshot.state[name]
        our_update = ours.policy.state_dict()[name] - snapshot.state[name]
        # Same update up to float32 round-off (sb3-contrib's CG starts from 1e-4 noise, ours from zero).
        assert float((our_update - their_update).abs().max()) <= 1e-3 * float(their_update.abs().max()) + 1e-6, name
        assert float(their_update.abs().max()) > 1e-4, name  # every tensor moved: the comparison is not vacuous
    assert ours.logger.name_to_value["train/kl_divergence"] == pytest.approx(
        trpo.logger.name_to_value["train/kl_divergence_loss"], rel=1e-3
    )


# --- learning ----------------------------------------------------------------------------------------------------


def test_npg_learns_cartpole():
    model = NPG("MlpPolicy", "CartPole-v1", n_steps=512, step_size=0.1, seed=0)
    # The untrained policy is close to uniform: its behaviour is the stochastic one (its argmax is arbitrary).
    before, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=10, deterministic=False)
    model.learn(15_000)
    after, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=10, deterministic=True)
    assert before < 100
    assert after >= 400


def test_tnpg_learns_pendulum_with_gsde():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = TNPG(
        "MlpPolicy",
        env,
        n_steps=1024,
        gamma=0.9,
        gae_lambda=0.95,
        n_critic_updates=20,
        use_sde=True,
        sde_sample_freq=4,
        target_kl=0.03,
        seed=0,
    )
    before, _ = evaluate_policy(model, env, n_eval_episodes=10, deterministic=True)
    model.learn(30_000)
    after, _ = evaluate_policy(model, env, n_eval_episodes=10, deterministic=True)
    assert after > before + 300


# --- save/load, predict, schedules, spaces ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, env_id, kwargs",
    [
        (NPG, "CartPole-v1", dict(step_size=lambda progress: 0.05 * progress)),
        (TNPG, "Pendulum-v1", dict(target_kl=lambda progress: 0.02 * progress, use_sde=True, line_search_max_iter=1)),
    ],
)
def test_save_load_round_trip(tmp_path, cls, env_id, kwargs):
    model = cls(
        "MlpPolicy",
        env_id,
        n_steps=64,
        batch_size=32,
        policy_kwargs=TINY,
        seed=0,
        learning_rate=lambda progress: 1e-3 * progress,
        **kwargs,
    )
    model.learn(128)
    obs = np.stack([model.observation_space.sample() for _ in range(5)])
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape[0] == 5 and model.action_space.contains(actions[0])
    model.save(tmp_path / "model.zip")
    loaded = cls.load(tmp_path / "model.zip", env=model.get_env(), trusted=True)  # lambdas need unpickling
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    for key, value in model.policy.optimizer.state_dict()["state"].items():
        th.testing.assert_close(loaded.policy.optimizer.state_dict()["state"][key]["exp_avg"], value["exp_avg"])
    assert loaded._actor_parameter_names == model._actor_parameter_names
    schedule_name = "step_size_schedule" if cls is NPG else "target_kl_schedule"
    assert getattr(loaded, schedule_name)(0.5) == pytest.approx(getattr(model, schedule_name)(0.5))
    loaded.learn(64, reset_num_timesteps=False)  # keeps training after load


def test_schedules_are_followed():
    model = NPG(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        policy_kwargs=TINY,
        seed=0,
        step_size=lambda progress: 0.1 * progress,
        learning_rate=lambda progress: 1e-3 * progress,
    )
    model.learn(128)
    progress = model._current_progress_remaining
    assert model.logger.name_to_value["train/step_size"] == pytest.approx(0.1 * progress)
    assert model.logger.name_to_value["train/learning_rate"] == pytest.approx(1e-3 * progress)
    tnpg = TNPG(
        "MlpPolicy", "Pendulum-v1", n_steps=256, policy_kwargs=TINY, seed=0, target_kl=lambda progress: 0.02 * progress
    )
    tnpg.learn(512)
    kl = tnpg.logger.name_to_value["train/kl_divergence"]
    assert kl < 1.5 * 0.02 * tnpg._current_progress_remaining + 1e-6


@pytest.mark.parametrize("env_cls", [IdentityEnvMultiDiscrete, IdentityEnvMultiBinary])
@pytest.mark.parametrize("cls", [NPG, TNPG])
def test_multi_discrete_and_multi_binary(cls, env_cls):
    model = cls("MlpPolicy", env_cls(dim=2, ep_length=100), n_steps=64, policy_kwargs=TINY, seed=0)
    model.learn(128)
    assert np.isfinite(model.logger.name_to_value["train/kl_divergence"])
    assert model.action_space.contains(model.predict(model.observation_space.sample(), deterministic=True)[0])


def test_double_backprop_fallback_gives_the_same_update(monkeypatch):
    """Distributions without a closed-form Fisher use the Hessian of the KL: same step, other route."""
    import sbx_lecture.common.fisher as fisher_module

    def one_step(closed_form: bool):
        model = collected(
            NPG("MlpPolicy", "Pendulum-v1", n_steps=128, cg_residual_tol=1e-8, policy_kwargs=TINY, seed=0), 128
        )
        names = [n for n, _ in model.policy.named_parameters() if "value" not in n]
        kind = type(make_fisher_vector_product(model.policy, th.zeros(4, 3), names)).__name__
        before = flatten_tensors(list(model.policy.parameters())).detach().clone()
        np.random.seed(0)
        model.train()
        return kind, flatten_tensors(list(model.policy.parameters())).detach() - before

    kind, closed_form_step = one_step(True)
    assert kind == "FisherVectorProduct"
    monkeypatch.setattr(fisher_module, "has_closed_form_fisher", lambda distribution: False)
    kind, fallback_step = one_step(False)
    assert kind == "KLHessianVectorProduct"
    th.testing.assert_close(fallback_step, closed_form_step, rtol=1e-3, atol=1e-6)


# --- clear errors ------------------------------------------------------------------------------------------------


class TupleActionEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


@pytest.mark.parametrize("cls", [NPG, TNPG])
def test_unsupported_action_space_is_a_clear_error(cls):
    expected = r"supports Box, Discrete, MultiDiscrete, MultiBinary.*Wrap the environment"
    with pytest.raises(ValueError, match=expected):
        cls("MlpPolicy", TupleActionEnv())


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (NPG, dict(step_size=0.0), "step_size must be > 0 or a schedule, got 0.0"),
        (NPG, dict(fisher="lu"), "fisher must be one of 'cg', 'exact', got 'lu'"),
        (TNPG, dict(target_kl=-0.01), "target_kl must be > 0 or a schedule, got -0.01"),
        (TNPG, dict(line_search_shrinking_factor=1.0), r"line_search_shrinking_factor must be in \(0, 1\), got 1.0"),
        (TNPG, dict(line_search_max_iter=-1), "line_search_max_iter must be an integer of at least 0, got -1"),
        (TNPG, dict(cg_max_steps=0), "cg_max_steps must be a positive integer, got 0"),
        (NPG, dict(cg_damping=-0.1), "cg_damping must be >= 0, got -0.1"),
        (NPG, dict(fisher_sub_sampling_factor=0), "fisher_sub_sampling_factor must be a positive integer, got 0"),
        (NPG, dict(gamma=1.5), r"gamma must be in \[0, 1\], got 1.5"),
        (TNPG, dict(learning_rate=-1e-3), "learning_rate must be > 0 or a schedule, got -0.001"),
        (TNPG, dict(n_steps=1), "n_steps \\* n_envs must be at least 2"),
    ],
)
def test_invalid_hyperparameters_are_clear_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls("MlpPolicy", "Pendulum-v1" if cls is TNPG else "CartPole-v1", **kwargs)


def test_exact_fisher_refuses_large_policies():
    model = collected(
        NPG("MlpPolicy", "CartPole-v1", n_steps=64, fisher="exact", policy_kwargs=dict(net_arch=[256, 256]), seed=0), 64
    )
    with pytest.raises(ValueError, match="fisher='cg'"):
        model.train()


@pytest.mark.parametrize("name, cls", [("npg", NPG), ("tnpg", TNPG)])
def test_zoo_configs_use_constructor_arguments(name, cls):
    import inspect
    from pathlib import Path

    import yaml

    zoo_keys = {"normalize", "n_envs", "n_timesteps", "policy", "policy_kwargs", "frame_stack", "env_wrapper"}
    accepted = set(inspect.signature(cls.__init__).parameters)
    config = yaml.safe_load((Path(__file__).parents[1] / "zoo_configs" / f"{name}.yml").read_text())
    assert {"default", "CartPole-v1", "Pendulum-v1", "HalfCheetah-v5"} <= set(config)
    for env_id, hyperparams in config.items():
        assert set(hyperparams) - zoo_keys <= accepted, env_id


@pytest.mark.parametrize("cls", [NPG, TNPG])
def test_conformance(cls):
    from sbx_lecture.testing import check_algorithm

    report = check_algorithm(cls)
    assert set(report.action_spaces) == set(cls.supported_action_spaces)

"""DPG (Silver et al., 2014): compatible features, compatibility theorem, exact updates, TD targets, errors, I/O."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sbx_lecture.common.compatible_features import (
    ActorLinearization,
    compatible_advantage,
    compatible_features,
    parameter_jvp,
)
from sbx_lecture.dpg import DPG, CompatibleCritic
from sbx_lecture.envs.continuous_bandit import ContinuousBandit

OBS_DIM, ACTION_DIM = 3, 2


class TinyEnv(gym.Env):
    """A 3-d observation, 2-d action env whose dynamics never matter here (the tests feed transitions directly)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def tiny_model(**kwargs) -> DPG:
    """The paper's online DPG (compatible critic unless ``critic`` says otherwise) on :class:`TinyEnv`."""
    kwargs.setdefault("policy_kwargs", dict(net_arch=[4]))
    return DPG("MlpPolicy", TinyEnv(), seed=0, **{**DPG.paper_settings, **kwargs})


def explicit_jacobian(actor: th.nn.Module, obs: th.Tensor) -> th.Tensor:
    """∂μ_j(s_i)/∂θ row by row with reverse-mode autograd: shape (batch, m, n)."""
    params = list(actor.parameters())
    mu = actor(obs)
    rows = []
    for i in range(obs.shape[0]):
        per_action = []
        for j in range(mu.shape[1]):
            grads = th.autograd.grad(mu[i, j], params, retain_graph=True)
            per_action.append(th.cat([g.reshape(-1) for g in grads]))
        rows.append(th.stack(per_action))
    return th.stack(rows)


def flat(vector: dict[str, th.Tensor] | list[th.Tensor]) -> th.Tensor:
    values = vector.values() if isinstance(vector, dict) else vector
    return th.cat([v.detach().reshape(-1) for v in values])


def random_direction(actor: th.nn.Module, seed: int = 1) -> dict[str, th.Tensor]:
    generator = th.Generator().manual_seed(seed)
    return {name: th.randn(p.shape, generator=generator) for name, p in actor.named_parameters()}


def test_jvp_features_and_q_equal_explicit_jacobian():
    model = tiny_model()
    actor = model.actor
    obs = th.rand(6, OBS_DIM) * 2 - 1
    actions = th.rand(6, ACTION_DIM) * 2 - 1
    w = random_direction(actor)
    jacobian = explicit_jacobian(actor, obs)  # (batch, m, n)
    mu = actor(obs).detach()

    mu_jvp_ref = jacobian @ flat(w)
    phi_ref = th.einsum("bmn,bm->bn", jacobian, actions - mu)

    mu_out, mu_jvp = parameter_jvp(actor, obs, w)
    assert th.allclose(mu_out, mu, atol=1e-6)
    assert th.allclose(mu_jvp, mu_jvp_ref, atol=1e-5)
    assert th.allclose(compatible_features(actor, obs, actions), phi_ref, atol=1e-5)
    assert th.allclose(compatible_advantage(actions, mu_out, mu_jvp).squeeze(1), phi_ref @ flat(w), atol=1e-5)

    # the critic module: Q^w(s, a) = φ(s, a)ᵀ w + V(s)
    critic = model.critic
    assert isinstance(critic, CompatibleCritic)
    with th.no_grad():
        for param, value in zip(critic.w, w.values(), strict=True):
            param.copy_(value)
    q = compatible_advantage(actions, *parameter_jvp(actor, obs, critic.direction())) + critic.value(obs)
    assert th.allclose(q.squeeze(1), phi_ref @ flat(w) + critic.value(obs).squeeze(1), atol=1e-5)


def quadratic_q(obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """Q(s, a) = −(a − c(s))ᵀ A (a − c(s)) with c(s) linear in s and A positive definite."""
    a_matrix = th.tensor([[2.0, 0.5], [0.5, 1.0]])
    centre = 0.3 * obs[:, :ACTION_DIM] - 0.1
    error = actions - centre
    return -(error @ a_matrix * error).sum(dim=1)


def test_compatibility_theorem_actor_direction():
    """With w the least-squares fit of ∇aQ^w = ∇θμᵀw to ∇aQ, ∇θμ∇θμᵀw = ∇θμ∇aQ (averaged over states)."""
    model = tiny_model()
    actor = model.actor
    obs = th.rand(40, OBS_DIM) * 2 - 1  # 80 equations > 30 parameters: the fit is not exact
    jacobian = explicit_jacobian(actor, obs)
    mu = actor(obs).detach().requires_grad_(True)
    grad_a_q = th.autograd.grad(quadratic_q(obs, mu).sum(), mu)[0]
    # least squares by pseudo-inverse in float64; the Jacobian is rank-deficient (dead ReLUs, the tanh output layer's
    # redundancy), and the directions at float32 noise level (σ < 1e-6 σ_max) are dropped instead of amplified
    design = jacobian.reshape(-1, jacobian.shape[-1]).double()
    w_flat = (th.linalg.pinv(design, rtol=1e-6) @ grad_a_q.reshape(-1).double()).float()
    assert not th.allclose(jacobian @ w_flat, grad_a_q, atol=1e-3)  # the critic is only a projection
    w, offset = {}, 0
    for name, p in actor.named_parameters():
        w[name] = w_flat[offset : offset + p.numel()].reshape(p.shape)
        offset += p.numel()

    # the COPDAC actor step E_s[∇θμθ(s) ∇θμθ(s)ᵀ w]: a JVP, then a VJP with that cotangent, averaged over states
    linearization = ActorLinearization(actor, obs, dict(actor.named_parameters()))

    def actor_direction(w: dict[str, th.Tensor]) -> th.Tensor:
        return flat(linearization.transpose_jacobian_product(linearization.jacobian_product(list(w.values())))) / len(
            obs
        )

    direction = actor_direction(w)
    params = list(actor.parameters())
    true_gradient = flat(th.autograd.grad(quadratic_q(obs, actor(obs)).mean(), params))
    assert th.allclose(direction, true_gradient, atol=1e-5)
    # and an arbitrary w does not give it
    arbitrary = actor_direction(random_direction(actor))
    assert not th.allclose(arbitrary, true_gradient, atol=1e-2)


def hand_made_batch(model: DPG, n_transitions: int = 4):
    """Feeds transitions to the model's buffer and returns (batch, raw arrays)."""
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (n_transitions + 1, 1, OBS_DIM)).astype(np.float32)
    next_obs = rng.uniform(-1, 1, (n_transitions + 1, 1, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-1, 1, (n_transitions + 1, 1, ACTION_DIM)).astype(np.float32)
    rewards = np.arange(1, n_transitions + 2, dtype=np.float32)
    # row 0 continues, row 1 is truncated by a time limit, row 2 terminates, row 3 continues, row 4 is the newest
    dones = [False, True, True, False, False]
    infos = [{}, {"TimeLimit.truncated": True}, {}, {}, {}]
    buffer = model.replay_buffer
    assert buffer is not None
    for t in range(n_transitions + 1):
        buffer.add(obs[t], next_obs[t], actions[t], rewards[t : t + 1], np.array([dones[t]]), [infos[t]])
    return obs[:, 0], next_obs[:, 0], actions[:, 0], rewards


@pytest.mark.parametrize("critic", ["mlp", "compatible"])
@pytest.mark.parametrize("on_policy", [False, True])
def test_td_targets_on_hand_made_transitions(critic, on_policy):
    gamma = 0.9
    model = tiny_model(critic=critic, on_policy=on_policy, buffer_size=16, gamma=gamma)
    _, next_obs, actions, rewards = hand_made_batch(model)
    # rows 0-3 (SARSA lags one row behind the newest; the off-policy batch also holds the newest, row 4)
    batch = model.replay_buffer.latest(4 if on_policy else 5, with_next_actions=on_policy)
    assert th.equal(batch.dones.squeeze(1)[:4], th.tensor([0.0, 0.0, 1.0, 0.0]))  # truncation bootstraps

    s_next = th.as_tensor(next_obs[:4])
    jacobian = explicit_jacobian(model.actor, s_next).detach()
    if critic == "compatible":
        with th.no_grad():  # a non-zero w makes the SARSA advantage term visible
            for param in model.critic.w:
                param.normal_()
    with th.no_grad():
        mu_next = model.actor(s_next)
        if on_policy:
            # executed next action, except after the truncation (row 1) where μ(s′) stands in
            a_next = th.as_tensor(np.stack([actions[1], actions[0], actions[0], actions[4]]))
            a_next[1] = mu_next[1]
            a_next[2] = mu_next[2]  # irrelevant: row 2 terminates
        else:
            a_next = mu_next
        if critic == "mlp":
            q_next = model.critic.q1_forward(s_next, a_next).squeeze(1)
        else:
            advantage = th.einsum("bmn,bm,n->b", jacobian, a_next - mu_next, flat(list(model.critic.w)))
            q_next = model.critic.value(s_next).squeeze(1) + advantage
        expected = th.as_tensor(rewards[:4]) + gamma * th.tensor([1.0, 1.0, 0.0, 1.0]) * q_next
    if critic == "compatible" and on_policy:
        assert not th.allclose(advantage[[0, 3]], th.zeros(2), atol=1e-4)
    assert th.allclose(model.td_target(batch).squeeze(1)[:4], expected, atol=1e-5)


def test_sarsa_batches_wait_for_the_next_action():
    model = tiny_model(on_policy=True, buffer_size=16)
    buffer = model.replay_buffer
    obs = np.zeros((1, OBS_DIM), np.float32)
    buffer.add(obs, obs, np.zeros((1, ACTION_DIM), np.float32), np.zeros(1), np.array([False]), [{}])
    assert buffer.latest(1, with_next_actions=True) is None
    assert buffer.sample_transitions(8, with_next_actions=True) is None
    assert buffer.latest(1, with_next_actions=False) is not None


class LinearFeatures(BaseFeaturesExtractor):
    """A features extractor with parameters: the actor is then no plain MLP, and is linearised by autograd."""

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space, features_dim=3)
        self.linear = th.nn.Linear(OBS_DIM, 3)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.tanh(self.linear(observations))


@pytest.mark.parametrize(
    ("natural", "on_policy", "target_networks", "features"),
    [
        (False, False, False, "flatten"),
        (True, False, False, "flatten"),
        (False, True, False, "flatten"),
        (False, True, True, "flatten"),
        (False, False, False, "linear"),
        (False, True, False, "linear"),
    ],
)
def test_copdac_update_equals_the_paper_with_sgd(natural, on_policy, target_networks, features):
    """θ += α_θ E[∇θμ∇θμᵀw] (or α_θ w), w += α_w E[δ φ(s, a)], v += α_v E[δ ∇v V(s)], all from the old values."""
    alpha_theta, alpha_w = 0.05, 0.2
    extractor = dict(features_extractor_class=LinearFeatures) if features == "linear" else {}
    model = tiny_model(
        natural=natural,
        on_policy=on_policy,
        target_networks=target_networks,
        buffer_size=16,
        learning_rate=alpha_theta,
        critic_learning_rate=alpha_w,
        policy_kwargs=dict(net_arch=[4], optimizer_class=th.optim.SGD, **extractor),
    )
    # SB3's MLP actor is linearised by matrix products, the one with a parametrised extractor by autograd
    linearized = ActorLinearization(model.actor, th.zeros(1, OBS_DIM), dict(model.actor.named_parameters()))
    assert linearized.uses_linear_chain == (features == "flatten")
    hand_made_batch(model)
    batch = model.replay_buffer.latest(4, with_next_actions=on_policy)
    actor, critic = model.actor, model.critic
    with th.no_grad():
        for param in critic.w:
            param.normal_()
        if target_networks:  # the targets start as copies; a non-zero w there too
            for param, online in zip(model.policy.critic_target.w, critic.w, strict=True):
                param.copy_(online)
    theta_old = flat(list(actor.parameters())).clone()
    w_old = flat(list(critic.w)).clone()
    value_old = [p.detach().clone() for p in critic.value_net.parameters()]

    jacobian = explicit_jacobian(actor, batch.observations).detach()
    mu = actor(batch.observations).detach()
    phi = th.einsum("bmn,bm->bn", jacobian, batch.actions - mu)
    values = critic.value(batch.observations)
    target = model.td_target(batch)
    delta = (target.squeeze(1) - phi @ w_old - values.squeeze(1)).detach()
    value_grads = th.autograd.grad((delta * values.squeeze(1)).mean(), list(critic.value_net.parameters()))
    actor_direction = w_old if natural else th.einsum("bmn,bm->n", jacobian, jacobian @ w_old) / len(delta)

    model._update_learning_rates()
    model._copdac_q_update(batch)
    assert th.allclose(flat(list(critic.w)), w_old + alpha_w * (delta[:, None] * phi).mean(0), atol=1e-5)
    for new, old, grad in zip(critic.value_net.parameters(), value_old, value_grads, strict=True):
        assert th.allclose(new, old + alpha_w * grad, atol=1e-5)
    assert th.allclose(flat(list(actor.parameters())), theta_old + alpha_theta * actor_direction, atol=1e-5)


@pytest.mark.parametrize(("on_policy", "target_networks"), [(False, False), (True, False), (False, True)])
def test_mlp_critic_update_equals_td_regression_and_dpg(on_policy, target_networks):
    """Q ← Q − α_w ∇½δ², θ ← θ + α_θ ∇θ E[Q(s, μθ(s))], both gradients at the old parameters (plain SGD)."""
    alpha_theta, alpha_w = 0.05, 0.2
    model = tiny_model(
        critic="mlp",
        on_policy=on_policy,
        target_networks=target_networks,
        buffer_size=16,
        learning_rate=alpha_theta,
        critic_learning_rate=alpha_w,
        policy_kwargs=dict(net_arch=[4], optimizer_class=th.optim.SGD),
    )
    hand_made_batch(model)
    batch = model.replay_buffer.latest(4, with_next_actions=on_policy)
    actor, critic = model.actor, model.critic
    target = model.td_target(batch)
    critic_params, actor_params = list(critic.parameters()), list(actor.parameters())
    critic_old = [p.detach().clone() for p in critic_params]
    actor_old = [p.detach().clone() for p in actor_params]
    critic_grads = th.autograd.grad(
        0.5 * (target - critic.q1_forward(batch.observations, batch.actions)).pow(2).mean(), critic_params
    )
    q_of_mu = critic.q1_forward(batch.observations, actor(batch.observations))
    actor_grads = th.autograd.grad(q_of_mu.mean(), actor_params)

    model._update_learning_rates()
    model._deep_dpg_update(batch)
    for new, old, grad in zip(critic_params, critic_old, critic_grads, strict=True):
        assert th.allclose(new, old - alpha_w * grad, atol=1e-6)
    for new, old, grad in zip(actor_params, actor_old, actor_grads, strict=True):
        assert th.allclose(new, old + alpha_theta * grad, atol=1e-6)


def test_discrete_action_space_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"Box.*'sql'.*'dqn'"):
        DPG("MlpPolicy", "CartPole-v1")


def test_dict_observations_learn_with_the_multi_input_policy():
    class DictObsEnv(TinyEnv):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)})

    model = DPG("MultiInputPolicy", DictObsEnv(), learning_starts=5, seed=0).learn(30)
    assert model._n_updates > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(gamma=1.5), r"gamma must be in \[0, 1\], got 1.5"),
        (dict(tau=1.5), r"tau must be in \[0, 1\], got 1.5"),
        (dict(critic="linear"), "critic must be one of .*, got 'linear'"),
        (dict(critic="mlp", natural=True), "natural=True .* needs critic='compatible'"),
        (dict(buffer_size=0), "buffer_size must be a positive integer or None, got 0"),
        (dict(learning_rate=-1.0), "learning_rate must be > 0 or a schedule, got -1.0"),
        (dict(critic_learning_rate=0.0), "critic_learning_rate must be > 0 or a schedule or None, got 0.0"),
        (
            dict(critic_learning_rate="lin_0.001"),
            ("critic_learning_rate must be a number or a schedule or None, got 'lin_0.001'"),
        ),
        (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
        (dict(gradient_steps=-2), "gradient_steps must be an integer of at least -1, got -2"),
        (dict(train_freq=(1, "episode")), "Online DPG .* needs train_freq in steps"),
    ],
)
def test_invalid_hyperparameters_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**kwargs)


def test_schedules_are_accepted_and_applied():
    model = DPG(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=lambda progress: 1e-3 * progress,
        critic_learning_rate=lambda progress: 2e-3 * progress,
        learning_starts=10,
        policy_kwargs=dict(net_arch=[8]),
        seed=0,
    ).learn(50)
    remaining = model._current_progress_remaining
    assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * remaining, rel=0.1)
    assert model.critic.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * remaining, rel=0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(DPG.paper_settings),
        dict(critic="mlp", on_policy=True, buffer_size=500, batch_size=16, target_networks=True, n_envs=2),
    ],
)
def test_save_load_round_trip(tmp_path, kwargs):
    from stable_baselines3.common.env_util import make_vec_env

    n_envs = kwargs.pop("n_envs", 1)
    env = make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0)
    noise = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
    model = DPG(
        "MlpPolicy", env, action_noise=noise, learning_starts=50, policy_kwargs=dict(net_arch=[16]), seed=0, **kwargs
    )
    model.learn(200)
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    before, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "dpg")
    loaded = DPG.load(tmp_path / "dpg", env=env)
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, after)

    for name, value in model.policy.state_dict().items():  # actor, critic (w, V or Q), targets
        assert th.equal(value, loaded.policy.state_dict()[name]), name
    for optimizer in ("actor", "critic"):
        saved = getattr(model, optimizer).optimizer.state_dict()["state"]
        restored = getattr(loaded, optimizer).optimizer.state_dict()["state"]
        assert saved.keys() == restored.keys() and len(saved) > 0
        for key in saved:
            assert th.equal(saved[key]["exp_avg"], restored[key]["exp_avg"])
    assert (loaded.on_policy, loaded.critic_type, loaded.target_networks) == (
        model.on_policy,
        model.critic_type,
        model.target_networks,
    )
    assert (loaded.policy.actor_target is None) == (not model.target_networks)
    loaded.learn(20, reset_num_timesteps=False)  # training resumes after loading


def test_predict_is_deterministic_and_in_bounds():
    model = DPG("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), seed=0)
    obs = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -3.0]], dtype=np.float32)
    actions, state = model.predict(obs, deterministic=True)
    assert actions.shape == (2, 1) and state is None
    assert np.all(np.abs(actions) <= 2.0)
    np.testing.assert_array_equal(actions, model.predict(obs, deterministic=False)[0])
    single, _ = model.predict(obs[0], deterministic=True)
    assert single.shape == (1,)


def test_learns_the_continuous_bandit():
    """Online COPDAC-B with plain SGD (the paper's bandit setting): the cost of μθ falls by more than 20x."""
    m = 5
    env = ContinuousBandit(action_dim=m)
    model = DPG(
        "MlpPolicy",
        env,
        **DPG.paper_settings,
        learning_rate=3e-5,
        critic_learning_rate=0.3,
        learning_starts=0,
        gamma=0.0,
        action_noise=NormalActionNoise(np.zeros(m), 0.3 * np.ones(m)),
        policy_kwargs=dict(net_arch=[], optimizer_class=th.optim.SGD),
        seed=0,
    )
    with th.no_grad():  # start from the action 0
        for parameter in model.actor.parameters():
            parameter.zero_()
    initial = env.cost(model.predict(np.zeros(1, np.float32), deterministic=True)[0])
    model.learn(1500)
    final = env.cost(model.predict(np.zeros(1, np.float32), deterministic=True)[0])
    assert final < initial / 20, (initial, final)


@pytest.mark.slow
def test_learns_pendulum():
    """Neural critic, replay and target networks (the step to DDPG), fixed seed: far above random (about −1200)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    model = DPG(
        "MlpPolicy",
        "Pendulum-v1",
        critic="mlp",
        buffer_size=10_000,
        batch_size=64,
        learning_starts=500,
        gamma=0.98,
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        seed=0,
        target_networks=True,
        tau=0.01,
    ).learn(5000)
    mean_return, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=5, deterministic=True)
    assert mean_return > -400, mean_return


def test_the_callers_policy_kwargs_are_left_as_given() -> None:
    """DPG adds its critic settings to its own copy, so one dict can configure DPG and then TD3."""
    from stable_baselines3 import TD3

    policy_kwargs = {"net_arch": [8]}
    DPG("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)
    assert policy_kwargs == {"net_arch": [8]}
    TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)

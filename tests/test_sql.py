"""Soft Q-learning: soft values, Boltzmann policy, SVGD, the update rules, save/load, errors, learning."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sbx_lecture import load
from sbx_lecture.common.kernels import amortized_svgd_loss, median_heuristic_bandwidth, svgd_direction
from sbx_lecture.common.particle_entropy import nearest_neighbour_entropy
from sbx_lecture.common.soft_value import (
    boltzmann_entropy,
    boltzmann_log_probabilities,
    soft_value_discrete,
    soft_value_importance_sampled,
    uniform_box_log_density,
)
from sbx_lecture.envs.multigoal import MultiGoalEnv
from sbx_lecture.sql import SQL, SQLPolicy
from sbx_lecture.sql.policies import SamplingNetwork
from sbx_lecture.sql.sql import squash_log_jacobian

TINY = dict(net_arch=[16, 16])


# ----------------------------------------------------------------------------------------------------------------
# Discrete soft value and Boltzmann policy
# ----------------------------------------------------------------------------------------------------------------
def test_discrete_soft_value_is_alpha_logsumexp() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 4)) * 3
    for alpha in (0.3, 1.0, 5.0):
        expected = alpha * np.log(np.exp(q / alpha).sum(axis=1))
        got = soft_value_discrete(th.as_tensor(q), alpha).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10)
        probs = np.exp(q / alpha) / np.exp(q / alpha).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(boltzmann_log_probabilities(th.as_tensor(q), alpha).exp().numpy(), probs, rtol=1e-10)
        entropy = -(probs * np.log(probs)).sum(axis=1)
        np.testing.assert_allclose(boltzmann_entropy(th.as_tensor(q), alpha).numpy(), entropy, rtol=1e-10)


def test_discrete_soft_value_tends_to_max_and_policy_to_greedy() -> None:
    q = th.tensor([[1.0, 3.0, 2.5], [-4.0, -5.0, -4.2]], dtype=th.float64)
    gaps = []
    for alpha in (1.0, 0.1, 1e-3, 1e-6):
        value = soft_value_discrete(q, alpha)
        gap = (value - q.max(dim=1).values).abs().max().item()
        # max Q ≤ V ≤ max Q + α log |A|
        assert (value >= q.max(dim=1).values - 1e-12).all()
        assert gap <= alpha * math.log(3) + 1e-12
        gaps.append(gap)
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-5
    greedy = boltzmann_log_probabilities(q, 1e-3).exp()
    np.testing.assert_allclose(greedy.numpy(), [[0, 1, 0], [1, 0, 0]], atol=1e-6)


def test_discrete_policy_samples_softmax_q_over_alpha() -> None:
    model = SQL("MlpPolicy", "CartPole-v1", ent_coef=0.5, policy_kwargs=TINY, seed=3)
    obs = np.tile(np.array([[0.1, -0.3, 0.05, 0.2]], dtype=np.float32), (20_000, 1))
    with th.no_grad():
        q = model.policy.soft_q(th.as_tensor(obs[:1])).numpy()[0]
    # Make the two actions clearly unequal so the test discriminates softmax(Q/α) from uniform/greedy.
    with th.no_grad():
        head = model.policy.q_net.heads[0]
        assert isinstance(head, th.nn.Sequential) and isinstance(head[-1], th.nn.Linear)
        head[-1].bias.copy_(th.tensor([0.0, 0.4]))
        q = model.policy.soft_q(th.as_tensor(obs[:1])).numpy()[0]
    expected = np.exp(q / 0.5) / np.exp(q / 0.5).sum()
    actions, _ = model.predict(obs, deterministic=False)
    frequencies = np.bincount(actions, minlength=2) / len(actions)
    np.testing.assert_allclose(frequencies, expected, atol=0.015)
    assert abs(expected[0] - 0.5) > 0.05
    greedy, _ = model.predict(obs[:5], deterministic=True)
    assert (greedy == q.argmax()).all()
    model.policy.ent_coef = 1e-6
    near_greedy, _ = model.predict(obs[:500], deterministic=False)
    assert (near_greedy == q.argmax()).all()


# ----------------------------------------------------------------------------------------------------------------
# Continuous soft value and SVGD
# ----------------------------------------------------------------------------------------------------------------
def test_importance_sampled_soft_value_converges_to_closed_form() -> None:
    # Q(a) = β a on [-1, 1]: ∫ exp(β a/α) da = (α/β)(exp(β/α) − exp(−β/α)).
    alpha, beta = 0.5, 1.5
    exact = alpha * math.log(alpha / beta * (math.exp(beta / alpha) - math.exp(-beta / alpha)))
    generator = th.Generator().manual_seed(0)
    errors = []
    for n_particles in (10, 1_000, 200_000):
        actions = th.rand(64, n_particles, 1, generator=generator, dtype=th.float64) * 2 - 1
        q = beta * actions[..., 0]
        estimate = soft_value_importance_sampled(q, alpha, uniform_box_log_density(1))
        errors.append((estimate.mean().item() - exact, estimate.std().item()))
    assert abs(errors[-1][0]) < 2e-3 and errors[-1][1] < 5e-3
    assert errors[-1][1] < errors[0][1] / 30  # the spread shrinks like 1/sqrt(K)
    # Without the log-density correction the estimate is off by α·d·log 2.
    wrong = soft_value_importance_sampled(q, alpha, 0.0).mean().item()
    assert abs(wrong - (exact - alpha * math.log(2))) < 2e-3


def test_svgd_direction_two_particles_by_hand() -> None:
    # x = (0, 1), scores (1, −1): h = 1/log 3, κ(0, 1) = 1/3, ∇_{x_1} κ(x_1, x_0) = −2 (1 − 0) log 3 / 3.
    particles = th.tensor([[0.0], [1.0]], dtype=th.float64)
    score = th.tensor([[1.0], [-1.0]], dtype=th.float64)
    direction, bandwidth = svgd_direction(particles, score)
    assert bandwidth.item() == pytest.approx(1 / math.log(3))
    expected_first = 0.5 * (1 - 1 / 3 - 2 * math.log(3) / 3)
    assert direction[0, 0].item() == pytest.approx(expected_first)
    assert direction[1, 0].item() == pytest.approx(-expected_first)


def test_svgd_direction_matches_loop_over_pairs() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3))
    score = rng.normal(size=(7, 3))
    pair_distances = [np.sum((x[i] - x[j]) ** 2) for i in range(7) for j in range(i + 1, 7)]
    h = np.sort(pair_distances)[(len(pair_distances) - 1) // 2] / np.log(8)
    expected = np.zeros_like(x)
    for i in range(7):
        for j in range(7):
            kappa = np.exp(-np.sum((x[j] - x[i]) ** 2) / h)
            expected[i] += kappa * score[j] - 2 * (x[j] - x[i]) / h * kappa
    expected /= 7
    direction, bandwidth = svgd_direction(th.as_tensor(x)[None], th.as_tensor(score)[None])
    assert bandwidth.item() == pytest.approx(h)
    np.testing.assert_allclose(direction[0].numpy(), expected, rtol=1e-10)
    assert median_heuristic_bandwidth(th.zeros(2, 4, 4)).shape == (2,)


def test_median_heuristic_takes_the_lower_median_of_an_even_pair_count() -> None:
    # 4 particles on a line: 6 pairs with squared distances 1, 4, 9, 1, 4, 1 → sorted 1 1 1 4 4 9, lower median 1.
    x = th.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=th.float64)
    squared = (x - x.T).pow(2)
    assert median_heuristic_bandwidth(squared[None]).item() == pytest.approx(1 / math.log(5))
    # 5 particles at 0, 1, 3, 6, 10: 10 pairs, sorted distances² 1 4 9 9 16 25 36 49 81 100: lower median 16.
    y = th.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]], dtype=th.float64)
    assert median_heuristic_bandwidth((y - y.T).pow(2)[None]).item() == pytest.approx(16 / math.log(6))


def test_nearest_neighbour_entropy_of_uniform_square() -> None:
    samples = th.rand(20, 500, 2, generator=th.Generator().manual_seed(0), dtype=th.float64) * 2 - 1
    assert nearest_neighbour_entropy(samples).mean().item() == pytest.approx(math.log(4), abs=0.05)


def _four_mode_log_density(actions: th.Tensor) -> th.Tensor:
    modes = th.tensor([[0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]])
    squared = (actions.unsqueeze(-2) - modes).pow(2).sum(-1)
    return th.logsumexp(-squared / (2 * 0.1**2), dim=-1)


def test_amortized_svgd_sampler_covers_four_modes() -> None:
    th.manual_seed(0)
    sampler = SamplingNetwork(FlattenExtractor(spaces.Box(-1, 1, (1,))), 1, 2, [64, 64], th.nn.ReLU)
    optimizer = th.optim.Adam(sampler.parameters(), lr=1e-3)
    features = th.zeros(4, 1)

    def log_density(pre_squash: th.Tensor) -> th.Tensor:
        return _four_mode_log_density(th.tanh(pre_squash)) + squash_log_jacobian(pre_squash)

    for _ in range(600):
        particles = sampler(features, th.randn(4, 32, 2))
        loss, _, _ = amortized_svgd_loss(particles, log_density)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with th.no_grad():
        actions = th.tanh(sampler(th.zeros(1, 1), th.randn(1, 2000, 2)))[0]
    modes = th.tensor([[0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]])
    nearest = th.cdist(actions, modes)
    close = nearest.min(dim=1).values < 0.25
    assert close.float().mean() > 0.7
    shares = th.bincount(nearest.argmin(dim=1)[close], minlength=4).float() / close.sum()
    assert (shares > 0.1).all(), shares


# ----------------------------------------------------------------------------------------------------------------
# One update step against an independent computation of the lecture's equations
# ----------------------------------------------------------------------------------------------------------------
def _fixed_batch(model: SQL, n: int, seed: int) -> ReplayBufferSamples:
    rng = np.random.default_rng(seed)
    obs_dim = model.observation_space.shape[0]  # type: ignore[index]
    if isinstance(model.action_space, spaces.Discrete):
        actions = rng.integers(0, model.action_space.n, size=(n, 1)).astype(np.float32)
    else:
        actions = rng.uniform(-1, 1, size=(n, get_action_dim(model.action_space))).astype(np.float32)
    as_t = lambda a: th.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    return ReplayBufferSamples(
        observations=as_t(rng.normal(size=(n, obs_dim))),
        actions=as_t(actions),
        next_observations=as_t(rng.normal(size=(n, obs_dim))),
        dones=as_t(rng.integers(0, 2, size=(n, 1))),
        rewards=as_t(rng.normal(size=(n, 1))),
    )


def _sgd_model(env: str, **kwargs) -> SQL:
    model = SQL(
        "MlpPolicy",
        env,
        learning_rate=0.05,
        gamma=0.9,
        policy_kwargs=dict(net_arch=[8], optimizer_class=th.optim.SGD),
        seed=0,
        **kwargs,
    )
    model.set_logger(__import__("stable_baselines3.common.logger", fromlist=["configure"]).configure(None, [""]))
    return model


def test_discrete_update_follows_soft_bellman_equation(monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, scale = 0.7, 2.0
    model = _sgd_model("CartPole-v1", ent_coef=alpha, reward_scale=scale, tau=0.5)
    batch = _fixed_batch(model, 6, seed=0)
    monkeypatch.setattr(ReplayBuffer, "sample", lambda self, *a, **k: batch)
    q_net, target_net = model.policy.q_net, model.policy.q_net_target
    with th.no_grad():  # make the target network differ from the online one
        for p in target_net.parameters():
            p.add_(0.1)
    old_params = [p.detach().clone() for p in q_net.parameters()]
    old_target = [p.detach().clone() for p in target_net.parameters()]

    # Independent computation: y = c r + γ (1 − d) α log Σ_a' exp(Q_target(s', a')/α), L = ½ mean (Q(s, a) − y)².
    next_q = target_net(batch.next_observations)[0].detach().double().numpy()
    soft_v = alpha * np.log(np.exp(next_q / alpha).sum(axis=1))
    y = scale * batch.rewards.numpy()[:, 0] + 0.9 * (1 - batch.dones.numpy()[:, 0]) * soft_v
    q_taken = q_net(batch.observations)[0].gather(1, batch.actions.long()).squeeze(1)
    loss = 0.5 * ((q_taken - th.as_tensor(y, dtype=th.float32)) ** 2).mean()
    grads = th.autograd.grad(loss, list(q_net.parameters()))

    model.train(gradient_steps=1, batch_size=6)
    for new, old, grad in zip(q_net.parameters(), old_params, grads, strict=True):
        th.testing.assert_close(new.detach(), old - 0.05 * grad, rtol=1e-5, atol=1e-6)
    for new_target, old_t, new in zip(target_net.parameters(), old_target, q_net.parameters(), strict=True):
        th.testing.assert_close(new_target, 0.5 * old_t + 0.5 * new.detach())
    assert model.logger.name_to_value["train/soft_value"] == pytest.approx(soft_v.mean(), rel=1e-5)


def test_continuous_update_uses_importance_sampled_soft_value(monkeypatch: pytest.MonkeyPatch) -> None:
    alpha, k_v = 0.4, 5
    model = _sgd_model("Pendulum-v1", ent_coef=alpha, value_n_particles=k_v, svgd_n_particles=4)
    batch = _fixed_batch(model, 6, seed=1)
    monkeypatch.setattr(ReplayBuffer, "sample", lambda self, *a, **k: batch)
    q_net, target_net, sampler = model.policy.q_net, model.policy.q_net_target, model.policy.sampler
    assert sampler is not None
    old_q = [p.detach().clone() for p in q_net.parameters()]
    old_sampler = [p.detach().clone() for p in sampler.parameters()]

    th.manual_seed(123)
    proposal = th.rand(6, k_v, 1) * 2 - 1
    with th.no_grad():
        q_next = target_net(batch.next_observations, proposal)[0].double().numpy()
    # V(s') = α log( (1/K) Σ_k exp(Q/α) / q(a_k) ), q = 1/2 on [-1, 1].
    soft_v = alpha * np.log(np.mean(np.exp(q_next / alpha) / 0.5, axis=1))
    y = batch.rewards.numpy()[:, 0] + 0.9 * (1 - batch.dones.numpy()[:, 0]) * soft_v
    q_taken = q_net(batch.observations, batch.actions)[0]
    loss = 0.5 * ((q_taken - th.as_tensor(y, dtype=th.float32)) ** 2).mean()
    q_grads = th.autograd.grad(loss, list(q_net.parameters()))
    expected_q = [old - 0.05 * g for old, g in zip(old_q, q_grads, strict=True)]

    # Sampler step with the same noise, computed by hand from the updated Q (the algorithm updates Q first).
    noise = th.randn(6, 4, 1)
    with th.no_grad():
        for p, e in zip(q_net.parameters(), expected_q, strict=True):
            p.copy_(e)
    particles = sampler(batch.observations, noise)
    u = particles.detach().requires_grad_(True)
    a = th.tanh(u)
    log_p = q_net(batch.observations, a)[0] / alpha + th.log(1 - a.pow(2)).sum(-1)
    (score,) = th.autograd.grad(log_p.sum(), u)
    direction = th.zeros_like(score)
    for b in range(6):
        direction[b] = svgd_direction(u[b].detach(), score[b])[0]
    sampler_loss = -(direction * particles).sum(-1).mean()
    sampler_grads = th.autograd.grad(sampler_loss, list(sampler.parameters()))
    with th.no_grad():
        for p, old in zip(q_net.parameters(), old_q, strict=True):
            p.copy_(old)

    th.manual_seed(123)
    model.train(gradient_steps=1, batch_size=6)
    for new, expected in zip(q_net.parameters(), expected_q, strict=True):
        th.testing.assert_close(new.detach(), expected, rtol=1e-5, atol=1e-6)
    for new, old, g in zip(sampler.parameters(), old_sampler, sampler_grads, strict=True):
        th.testing.assert_close(new.detach(), old - 0.05 * g, rtol=1e-4, atol=1e-6)
    assert model.logger.name_to_value["train/soft_value"] == pytest.approx(soft_v.mean(), rel=1e-5)
    for key in ("train/td_loss", "train/kernel_bandwidth", "train/entropy"):
        assert key in model.logger.name_to_value


def test_entropy_diagnostics_are_computed_once_per_interval_not_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import sbx_lecture.sql.sql as sql_module

    calls = []

    def counting(particles: th.Tensor) -> th.Tensor:
        calls.append(particles.shape)
        return nearest_neighbour_entropy(particles)

    monkeypatch.setattr(sql_module, "nearest_neighbour_entropy", counting)
    model = SQL("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, learning_starts=20, batch_size=8, seed=0)
    model.learn(20)
    assert model._n_updates == 0
    for _ in range(3):  # the first call computes them, the next ones (one gradient step each) do not
        model.train(gradient_steps=1, batch_size=8)
    assert len(calls) == 1 and "train/entropy" in model.logger.name_to_value
    model._n_updates = sql_module.DIAGNOSTICS_INTERVAL - 1
    model.train(gradient_steps=1, batch_size=8)  # crosses the interval
    model.train(gradient_steps=1, batch_size=8)
    assert len(calls) == 2


# ----------------------------------------------------------------------------------------------------------------
# Policies, save/load, predict, options
# ----------------------------------------------------------------------------------------------------------------
def test_mlp_policy_builds_right_parts_for_each_action_space() -> None:
    discrete = SQL("MlpPolicy", "CartPole-v1", policy_kwargs=TINY)
    continuous = SQL("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY)
    assert isinstance(discrete.policy, SQLPolicy) and discrete.policy.sampler is None
    assert continuous.policy.sampler is not None
    assert SQL.supported_action_spaces == (spaces.Discrete, spaces.Box)
    assert set(SQL.policy_aliases) == {"MlpPolicy", "CnnPolicy", "MultiInputPolicy"}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_save_load_round_trip(env_id: str, tmp_path) -> None:
    model = SQL("MlpPolicy", env_id, policy_kwargs=TINY, learning_starts=20, batch_size=16, twin_critics=True, seed=0)
    model.learn(60)
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    before, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "sql.zip")
    loaded = SQL.load(tmp_path / "sql.zip")
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, after)
    for name, tensor in model.policy.state_dict().items():  # Q, target Q and sampler
        th.testing.assert_close(loaded.policy.state_dict()[name], tensor)
    assert any(name.startswith("q_net_target.") for name in model.policy.state_dict())
    assert loaded.policy.n_critics == 2 and loaded.ent_coef == model.ent_coef
    optimizers = [("q_net", model.q_net.optimizer, loaded.q_net.optimizer)]
    if model.sampler is not None:
        assert loaded.sampler is not None
        assert any(name.startswith("sampler.") for name in model.policy.state_dict())
        optimizers.append(("sampler", model.sampler.optimizer, loaded.sampler.optimizer))
    for _, original, restored in optimizers:
        original_state, restored_state = original.state_dict()["state"], restored.state_dict()["state"]
        assert original_state and original_state.keys() == restored_state.keys()
        for key in original_state:
            th.testing.assert_close(restored_state[key]["exp_avg"], original_state[key]["exp_avg"])
    env = model.get_env()
    assert env is not None
    loaded.set_env(env)
    loaded.learn(20)


def test_predict_shapes_and_bounds() -> None:
    model = SQL("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, seed=0)
    actions, _ = model.predict(np.zeros((5, 3), dtype=np.float32))
    assert actions.shape == (5, 1) and (np.abs(actions) <= 2.0).all()
    single, _ = model.predict(np.zeros(3, dtype=np.float32), deterministic=True)
    assert single.shape == (1,)
    stochastic = [model.predict(np.zeros(3, dtype=np.float32))[0][0] for _ in range(5)]
    assert len(set(stochastic)) > 1
    discrete = SQL("MlpPolicy", "CartPole-v1", policy_kwargs=TINY, seed=0)
    action, _ = discrete.predict(np.zeros(4, dtype=np.float32))
    assert action.shape == () and discrete.action_space.contains(int(action))


def test_schedules_and_twin_critics() -> None:
    model = SQL(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=lambda progress: 1e-3 * progress,
        ent_coef=lambda progress: 0.2 * progress + 0.05,
        twin_critics=True,
        policy_kwargs=TINY,
        learning_starts=10,
        batch_size=8,
        seed=0,
    )
    model.learn(40)
    assert model.policy.n_critics == 2
    assert model.logger.name_to_value["train/ent_coef"] < 0.25
    assert model.q_net.optimizer.param_groups[0]["lr"] < 1e-3


# ----------------------------------------------------------------------------------------------------------------
# State-dependent exploration (use_sde): the sampler's noise held between draws
# ----------------------------------------------------------------------------------------------------------------
def test_use_sde_holds_the_sampler_noise_until_it_is_drawn_again() -> None:
    model = SQL("MlpPolicy", "Pendulum-v1", use_sde=True, policy_kwargs=TINY, seed=0)
    obs = np.zeros((3, 3), dtype=np.float32)
    model.policy.reset_noise(3)
    first, _ = model.predict(obs)
    np.testing.assert_array_equal(model.predict(obs)[0], first)  # the same ξ: the same actions
    assert len(set(first[:, 0])) == 3  # one ξ per environment
    model.policy.reset_noise(3)
    assert not np.array_equal(model.predict(obs)[0], first)
    # The held ξ is the input of the sampler: the action is tanh(f_φ(ξ; s)) rescaled to the box.
    assert model.sampler is not None and model.sampler.held_noise is not None
    with th.no_grad():
        expected = th.tanh(model.sampler(th.zeros(3, 3), model.sampler.held_noise)).numpy()
    np.testing.assert_allclose(model.predict(obs)[0], 2.0 * expected, rtol=1e-6)
    # Deterministic actions ignore it; without use_sde every call draws fresh noise.
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    plain = SQL("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, seed=0)
    assert not np.array_equal(plain.predict(obs)[0], plain.predict(obs)[0])


@pytest.mark.parametrize(("sde_sample_freq", "draws"), [(-1, 1), (4, 5)])
def test_use_sde_draws_noise_at_each_rollout_and_every_sde_sample_freq_steps(sde_sample_freq: int, draws: int) -> None:
    model = SQL(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=True,
        sde_sample_freq=sde_sample_freq,
        use_sde_at_warmup=True,
        train_freq=16,
        learning_starts=1000,
        policy_kwargs=TINY,
        seed=0,
    )
    assert model.sampler is not None
    counted: list[int] = []
    draw = model.sampler.reset_noise

    def counting_draw(n_envs: int = 1) -> None:
        counted.append(n_envs)
        draw(n_envs)

    model.sampler.reset_noise = counting_draw  # type: ignore[method-assign]
    model.learn(16)  # one rollout of 16 steps
    assert len(counted) == draws and set(counted) == {1}


def test_use_sde_finds_the_mountain_car_goal_that_white_noise_misses() -> None:
    """Before any learning, the untrained sampler with held noise reaches MountainCarContinuous' flag; white noise
    (fresh ξ each step, or SB3's uniform warm-up actions) averages out and never does."""

    def goals_reached(**kwargs) -> int:
        model = SQL("MlpPolicy", "MountainCarContinuous-v0", learning_starts=5_000, train_freq=32, seed=0, **kwargs)
        model.learn(5_000)
        return sum(info["r"] > 0 for info in model.ep_info_buffer)

    assert goals_reached(use_sde=True, use_sde_at_warmup=True) >= 3
    assert goals_reached() == 0


def test_use_sde_round_trips_and_is_refused_for_discrete_actions(tmp_path) -> None:
    model = SQL("MlpPolicy", "Pendulum-v1", use_sde=True, sde_sample_freq=8, policy_kwargs=TINY, seed=0)
    model.save(tmp_path / "sql.zip")
    loaded = load(tmp_path / "sql.zip")
    assert loaded.use_sde and loaded.sde_sample_freq == 8 and loaded.policy.use_sde
    loaded.policy.reset_noise(1)
    action, _ = loaded.predict(np.zeros(3, dtype=np.float32))
    np.testing.assert_array_equal(loaded.predict(np.zeros(3, dtype=np.float32))[0], action)
    with pytest.raises(ValueError, match="continuous actions"):
        SQL("MlpPolicy", "CartPole-v1", use_sde=True)


# ----------------------------------------------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------------------------------------------
class _MultiDiscreteEnv(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,))
    action_space = spaces.MultiDiscrete([2, 3])


def test_unsupported_action_space_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"Discrete, Box.*PPO"):
        SQL("MlpPolicy", _MultiDiscreteEnv())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(ent_coef=0.0), "ent_coef"),
        (dict(ent_coef=lambda _: -1.0), "ent_coef"),
        (dict(reward_scale=-1.0), "reward_scale"),
        (dict(value_n_particles=0), "value_n_particles"),
        (dict(svgd_n_particles=1), "svgd_n_particles"),
        (dict(tau=-0.5), "tau"),
        (dict(gamma=1.5), "gamma"),
        (dict(target_update_interval=0), "target_update_interval"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
        (dict(sde_sample_freq=-2), "sde_sample_freq"),
    ],
)
def test_invalid_hyperparameters_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SQL("MlpPolicy", "Pendulum-v1", **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Multi-goal environment and learning
# ----------------------------------------------------------------------------------------------------------------
def test_multigoal_env_rewards_and_terminates_at_goals() -> None:
    env = MultiGoalEnv(init_sigma=0.0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0, 0])
    rewards = []
    terminated = False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, -1.0]))
        rewards.append(reward)
        assert not truncated
    assert info["goal"] == 3 and len(rewards) == 5
    assert rewards[0] == pytest.approx(-30.0 - 4.0) and rewards[-1] == pytest.approx(-30.0 - 0.0 + 10.0)


@pytest.mark.slow
def test_learns_cartpole() -> None:
    model = SQL(
        "MlpPolicy",
        "CartPole-v1",
        learning_rate=2.3e-3,
        batch_size=64,
        learning_starts=1000,
        gamma=0.98,
        train_freq=256,
        gradient_steps=128,
        tau=1.0,
        target_update_interval=5,
        ent_coef=0.1,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=0,
    )
    model.learn(12_000)
    assert model.env is not None
    mean_reward, _ = evaluate_policy(model, model.env, n_eval_episodes=5, deterministic=True)
    assert isinstance(mean_reward, float) and mean_reward > 150


@pytest.mark.slow
def test_learns_pendulum() -> None:
    model = SQL(
        "MlpPolicy",
        "Pendulum-v1",
        learning_rate=1e-3,
        batch_size=64,
        ent_coef=0.1,
        policy_kwargs=dict(net_arch=[64, 64]),
        seed=0,
    )
    # 4000 steps were too few to be robust: across seeds 0-3 the return there ranged from -843 to -123. At 6000 all
    # four seeds were between -201 and -140 (a random policy scores about -1200).
    model.learn(6_000)
    assert model.env is not None
    mean_reward, _ = evaluate_policy(model, model.env, n_eval_episodes=5, deterministic=True)
    assert isinstance(mean_reward, float) and mean_reward > -400


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_passes_conformance_checks(env_id: str) -> None:
    from sbx_lecture.testing import check_algorithm

    report = check_algorithm(SQL, env_id)
    assert "save_load" in report.passed and "action_spaces" in report.passed


def test_the_callers_policy_kwargs_are_left_as_they_were() -> None:
    # SB3 writes ``use_sde`` into the policy keyword arguments; one dict shared with DPG (whose policy does not take
    # use_sde) must still work there.
    shared = {"net_arch": [8, 8]}
    SQL("MlpPolicy", "Pendulum-v1", policy_kwargs=shared)
    assert shared == {"net_arch": [8, 8]}

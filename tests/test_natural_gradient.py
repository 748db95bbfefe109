"""The shared natural-gradient core: conjugate gradient, Fisher-vector products, flat parameters, line search."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import TRPO
from sb3_contrib.common.utils import flat_grad
from stable_baselines3.common import policies as sb3_policies
from stable_baselines3.common.distributions import kl_divergence
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sbx_lecture.common.conjugate_gradient import conjugate_gradient
from sbx_lecture.common.fisher import (
    FisherVectorProduct,
    KLHessianVectorProduct,
    exact_fisher_matrix,
    linear_chain_actor,
    policy_parameters_of_distribution,
)
from sbx_lecture.common.flat_params import flatten_tensors, get_flat_params, set_flat_params_, unflatten_like
from sbx_lecture.common.linearization import LinearChainLinearization, is_linear_chain
from sbx_lecture.common.natural_gradient import backtracking_line_search, kl_step_length

OBS_DIM, BATCH = 3, 7


def random_spd(n: int, seed: int, condition: float = 50.0) -> th.Tensor:
    generator = th.Generator().manual_seed(seed)
    q, _ = th.linalg.qr(th.randn(n, n, generator=generator, dtype=th.float64))
    eigenvalues = th.logspace(0, np.log10(condition), n, dtype=th.float64)
    return q @ th.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conjugate_gradient_solves_random_spd_systems(seed):
    matrix = random_spd(20, seed)
    b = th.randn(20, generator=th.Generator().manual_seed(100 + seed), dtype=th.float64)
    result = conjugate_gradient(lambda v: matrix @ v, b, max_iterations=100, residual_tolerance=1e-12)
    th.testing.assert_close(result.solution, th.linalg.solve(matrix, b), rtol=1e-8, atol=1e-10)
    assert result.relative_residual <= 1e-12
    assert result.n_iterations <= 30  # n = 20 in exact arithmetic, a few more in floating point

    damped = conjugate_gradient(lambda v: matrix @ v, b, max_iterations=100, residual_tolerance=1e-12, damping=0.5)
    expected = th.linalg.solve(matrix + 0.5 * th.eye(20, dtype=th.float64), b)
    th.testing.assert_close(damped.solution, expected, rtol=1e-8, atol=1e-10)


def test_conjugate_gradient_truncation_and_errors():
    matrix = random_spd(30, 3, condition=1e4)
    b = th.ones(30, dtype=th.float64)
    truncated = conjugate_gradient(lambda v: matrix @ v, b, max_iterations=3, residual_tolerance=0.0)
    assert truncated.n_iterations == 3
    true_residual = th.linalg.vector_norm(b - matrix @ truncated.solution) / th.linalg.vector_norm(b)
    assert truncated.relative_residual == pytest.approx(float(true_residual), rel=1e-6)
    assert truncated.relative_residual > 1e-3  # three iterations cannot solve a 30-dimensional ill-conditioned system
    zero = conjugate_gradient(lambda v: matrix @ v, th.zeros(30, dtype=th.float64), max_iterations=5)
    assert zero.n_iterations == 0 and th.count_nonzero(zero.solution) == 0
    with pytest.raises(ValueError, match="damping"):
        conjugate_gradient(lambda v: v, b, damping=-1.0)
    with pytest.raises(ValueError, match="max_iterations"):
        conjugate_gradient(lambda v: v, b, max_iterations=-1)


def test_flat_params_round_trip():
    params = [th.nn.Parameter(th.randn(2, 3)), th.nn.Parameter(th.randn(4))]
    flat = get_flat_params(params)
    assert flat.shape == (10,)
    set_flat_params_(params, flat + 1.0)
    th.testing.assert_close(flatten_tensors(params).detach(), flat + 1.0)
    assert [t.shape for t in unflatten_like(flat, params)] == [(2, 3), (4,)]
    with pytest.raises(ValueError, match="11 entries"):
        unflatten_like(th.zeros(11), params)


def test_kl_step_length_and_line_search():
    direction = th.tensor([1.0, 2.0])
    fisher_direction = th.tensor([2.0, 4.0])  # xᵀFx = 10
    assert kl_step_length(direction, fisher_direction, 0.05) == pytest.approx(0.1)
    assert kl_step_length(direction, -fisher_direction, 0.05) == 0.0

    applied = []
    result = backtracking_line_search(applied.append, lambda: applied[-1] < 0.6, 10, 0.8)
    assert result.accepted and result.fraction == pytest.approx(0.8**3) and result.n_evaluations == 4
    applied.clear()
    rejected = backtracking_line_search(applied.append, lambda: False, 1, 0.8)
    assert not rejected.accepted and applied == [1.0, 0.0]


# --- Fisher-vector products against an independent construction ---------------------------------------------------


@pytest.fixture(autouse=True)
def float64_observations(monkeypatch):
    """SB3 casts Box observations to float32; the checks below run in float64 to resolve 1e-5 relative errors."""
    monkeypatch.setattr(sb3_policies, "preprocess_obs", lambda obs, space, normalize_images=True: obs)


def make_policy(action_space: gym.Space, use_sde: bool = False) -> ActorCriticPolicy:
    th.manual_seed(0)
    observation_space = gym.spaces.Box(-1.0, 1.0, (OBS_DIM,))
    policy = ActorCriticPolicy(
        observation_space, action_space, lambda _: 1e-3, net_arch=[5], use_sde=use_sde, log_std_init=-0.3
    )
    with th.no_grad():  # break the symmetry of the default initialisation (zero log std, tiny action layer)
        for param in policy.parameters():
            param.add_(0.3 * th.randn_like(param))
    return policy.double()


def independent_coordinates_and_metric(policy: ActorCriticPolicy, kind: str, params: dict, obs: th.Tensor):
    """(coordinates, per-sample metric matrices) of the lecture's formulas, written out without the library."""
    latent = th.func.functional_call(
        policy.mlp_extractor.policy_net,
        {k.removeprefix("mlp_extractor.policy_net."): v for k, v in params.items() if "policy_net" in k},
        (obs,),
    )
    out = latent @ params["action_net.weight"].T + params["action_net.bias"]
    if kind in ("gaussian", "gsde"):
        if kind == "gaussian":
            log_std = params["log_std"].expand_as(out)
        else:
            variance = (latent.detach() ** 2) @ th.exp(params["log_std"]) ** 2
            log_std = 0.5 * th.log(variance + policy.action_dist.epsilon)
        coords = th.cat([out, log_std], dim=-1)
        sigma2 = th.exp(2 * log_std.detach())
        metrics = [th.diag(th.cat([1.0 / s, 2.0 * th.ones_like(s)])) for s in sigma2]
        return coords, metrics
    if kind == "categorical":
        probs = th.softmax(out.detach(), dim=-1)
        return out, [th.diag(p) - th.outer(p, p) for p in probs]
    if kind == "multicategorical":
        blocks = th.split(out.detach(), [3, 2], dim=-1)
        metrics = []
        for i in range(out.shape[0]):
            ps = [th.softmax(block[i], dim=-1) for block in blocks]
            metrics.append(th.block_diag(*[th.diag(p) - th.outer(p, p) for p in ps]))
        return out, metrics
    if kind == "bernoulli":
        probs = th.sigmoid(out.detach())
        return out, [th.diag(p * (1 - p)) for p in probs]
    raise AssertionError(kind)


CASES = {
    "gaussian": (gym.spaces.Box(-1.0, 1.0, (2,)), False),
    "gsde": (gym.spaces.Box(-1.0, 1.0, (2,)), True),
    "categorical": (gym.spaces.Discrete(3), False),
    "multicategorical": (gym.spaces.MultiDiscrete([3, 2]), False),
    "bernoulli": (gym.spaces.MultiBinary(3), False),
}


@pytest.mark.parametrize("linearization", ["auto", "autograd"])
@pytest.mark.parametrize("kind", list(CASES))
def test_fisher_vector_product_equals_explicit_fisher(kind, linearization):
    action_space, use_sde = CASES[kind]
    policy = make_policy(action_space, use_sde)
    obs = th.randn(BATCH, OBS_DIM, dtype=th.float64, generator=th.Generator().manual_seed(1))
    names = policy_parameters_of_distribution(policy, obs)
    assert not any("value" in name for name in names)
    named = dict(policy.named_parameters())
    params = {name: named[name].detach() for name in names}
    flat = flatten_tensors(list(params.values()))

    def coords_of(theta: th.Tensor) -> th.Tensor:
        return independent_coordinates_and_metric(
            policy, kind, dict(zip(names, unflatten_like(theta, list(params.values())), strict=True)), obs
        )[0]

    jacobian = th.autograd.functional.jacobian(coords_of, flat)  # (N, k, P): per-sample Jacobians
    _, metrics = independent_coordinates_and_metric(policy, kind, params, obs)
    explicit = sum(jacobian[i].T @ metrics[i] @ jacobian[i] for i in range(BATCH)) / BATCH

    fvp = FisherVectorProduct(policy, obs, names, linearization=linearization)
    # SB3's MLP actor takes the matrix-product path unless told otherwise.
    assert fvp.uses_linear_chain == (linearization == "auto")
    vector = th.randn(flat.numel(), dtype=th.float64, generator=th.Generator().manual_seed(2))
    th.testing.assert_close(fvp(vector), explicit @ vector, rtol=1e-5, atol=1e-10)
    th.testing.assert_close(exact_fisher_matrix(policy, obs, names), explicit, rtol=1e-5, atol=1e-10)
    # The double-backprop fallback is the same matrix (the Hessian of the KL at θ_old).
    th.testing.assert_close(
        KLHessianVectorProduct(policy, obs, names)(vector), explicit @ vector, rtol=1e-5, atol=1e-10
    )
    # Positive semi-definite by construction.
    assert float(vector @ fvp(vector)) >= 0.0
    # Reading the policy must leave it usable and unchanged.
    assert flatten_tensors([named[n] for n in names]).detach().equal(flat)


@pytest.mark.parametrize("kind", ["gaussian", "gsde", "categorical", "bernoulli"])
def test_fisher_vector_product_equals_sb3_contrib_hessian_of_kl(kind):
    """sb3-contrib TRPO differentiates kl_divergence(new, old).mean() twice: our product with its reduction."""
    action_space, use_sde = CASES[kind]
    policy = make_policy(action_space, use_sde)
    obs = th.randn(BATCH, OBS_DIM, dtype=th.float64, generator=th.Generator().manual_seed(3))
    names = policy_parameters_of_distribution(policy, obs)
    named = dict(policy.named_parameters())
    params = [named[name] for name in names]
    with th.no_grad():
        old = copy.copy(policy.get_distribution(obs))
    new = policy.get_distribution(obs)
    grad_kl = flat_grad(kl_divergence(new, old).mean(), params, create_graph=True, retain_graph=True)
    vector = th.randn(grad_kl.numel(), dtype=th.float64, generator=th.Generator().manual_seed(4))
    theirs = TRPO.hessian_vector_product(SimpleNamespace(cg_damping=0.0), params, grad_kl, vector)
    ours = FisherVectorProduct(policy, obs, names, action_reduction="mean")(vector)
    th.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-10)
    if kind in ("gaussian", "gsde", "bernoulli"):  # the lecture's sum over action dimensions is d times larger
        summed = FisherVectorProduct(policy, obs, names)(vector)
        th.testing.assert_close(summed, new.distribution.mean.shape[-1] * theirs, rtol=1e-5, atol=1e-10)


def test_linear_chain_products_equal_autograd_jvp_and_vjp():
    """Layers without bias, consecutive and leading activations, ReLU kinks: J v and Jᵀ u against torch.func."""
    th.manual_seed(0)
    chain = [
        nn.Tanh(),
        nn.Linear(4, 6),
        nn.ReLU(),
        nn.ELU(),
        nn.Linear(6, 5, bias=False),
        nn.Identity(),
        nn.SiLU(),
        nn.Linear(5, 3),
    ]
    model = nn.Sequential(*chain).double()
    inputs = th.randn(9, 4, dtype=th.float64)
    linearization = LinearChainLinearization(chain, inputs)
    params = linearization.parameters()
    assert [tuple(p.shape) for p in params] == [(6, 4), (6,), (5, 6), (3, 5), (3,)]
    names = [name for name, _ in model.named_parameters()]
    th.testing.assert_close(linearization.output, model(inputs))

    def output_of(*values):
        return th.func.functional_call(model, dict(zip(names, values, strict=True)), (inputs,))

    directions = [th.randn_like(p) for p in params]
    _, expected_jvp = th.func.jvp(output_of, tuple(p.detach() for p in params), tuple(directions))
    th.testing.assert_close(linearization.jacobian_product(directions), expected_jvp)
    cotangent = th.randn(9, 3, dtype=th.float64)
    _, vjp_fn = th.func.vjp(output_of, *(p.detach() for p in params))
    for ours, theirs in zip(linearization.transpose_jacobian_product(cotangent), vjp_fn(cotangent), strict=True):
        th.testing.assert_close(ours, theirs)
    assert not is_linear_chain([nn.Tanh()]) and not is_linear_chain([nn.Linear(2, 2), nn.Softmax(dim=-1)])
    with pytest.raises(ValueError, match="elementwise"):
        LinearChainLinearization([nn.Linear(2, 2), nn.LayerNorm(2)], th.zeros(1, 2))


class _LinearFeatures(BaseFeaturesExtractor):
    """A features extractor with parameters of its own (part of the actor's θ)."""

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space, features_dim=4)
        self.linear = nn.Linear(OBS_DIM, 4)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return th.tanh(self.linear(observations))


def _policy_variant(variant: str) -> ActorCriticPolicy:
    th.manual_seed(1)
    observation_space, box = gym.spaces.Box(-1.0, 1.0, (OBS_DIM,)), gym.spaces.Box(-1.0, 1.0, (2,))
    kwargs: dict = dict(net_arch=[5], log_std_init=-0.3)
    if variant == "deep_relu":
        kwargs.update(net_arch=dict(pi=[5, 4], vf=[3]), activation_fn=nn.ReLU)
    elif variant == "gsde_expln":
        kwargs.update(use_sde=True, use_expln=True, full_std=False)
    elif variant in ("gsde_learned_features", "frozen_bias"):
        kwargs.update(use_sde=variant == "gsde_learned_features")
    elif variant == "features_with_parameters":
        kwargs.update(features_extractor_class=_LinearFeatures)
    policy = ActorCriticPolicy(observation_space, box, lambda _: 1e-3, **kwargs)
    with th.no_grad():
        for param in policy.parameters():
            param.add_(0.3 * th.randn_like(param))
    if variant == "gsde_learned_features":
        policy.action_dist.learn_features = True  # type: ignore[attr-defined]
    if variant == "frozen_bias":
        policy.action_net.bias.requires_grad_(False)
    return policy.double()


@pytest.mark.parametrize(
    ("variant", "chain_expected"),
    [
        ("deep_relu", True),
        ("gsde_expln", True),
        ("gsde_learned_features", False),
        ("frozen_bias", False),
        ("features_with_parameters", False),
    ],
)
def test_fisher_product_paths_agree_and_fall_back_where_the_actor_is_not_a_plain_mlp(variant, chain_expected):
    policy = _policy_variant(variant)
    obs = th.randn(BATCH, OBS_DIM, dtype=th.float64, generator=th.Generator().manual_seed(5))
    names = policy_parameters_of_distribution(policy, obs)
    assert (linear_chain_actor(policy, names) is not None) == chain_expected
    fvp = FisherVectorProduct(policy, obs, names)
    assert fvp.uses_linear_chain == chain_expected
    vector = th.randn(fvp.n_parameters, dtype=th.float64, generator=th.Generator().manual_seed(6))
    expected = KLHessianVectorProduct(policy, obs, names)(vector)
    th.testing.assert_close(fvp(vector), expected, rtol=1e-5, atol=1e-10)
    th.testing.assert_close(
        FisherVectorProduct(policy, obs, names, linearization="autograd")(vector), expected, rtol=1e-5, atol=1e-10
    )
    th.testing.assert_close(exact_fisher_matrix(policy, obs, names) @ vector, expected, rtol=1e-5, atol=1e-10)

"""The training loop shared by the natural policy gradient family (NPG, TNPG).

:class:`NaturalGradientAlgorithm` collects rollouts like any SB3 on-policy algorithm, computes the policy gradient
g of the surrogate, solves F x = g with the shared core (:mod:`sbx_lecture.common.natural_gradient`), asks the
subclass how far to step along x (:meth:`NaturalGradientAlgorithm._step_length`), optionally line-searches the
step, fits the critic by minibatch regression, as sb3-contrib's TRPO does, and logs the lecture's diagnostics.
:meth:`NaturalGradientAlgorithm.train` reads top to bottom as one update.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, PyTorchObs, Schedule
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from sbx_lecture.common.fisher import (
    exact_fisher_matrix,
    make_fisher_vector_product,
    policy_parameters_of_distribution,
)
from sbx_lecture.common.flat_params import flatten_tensors, get_flat_params, set_flat_params_
from sbx_lecture.common.kl import policy_kl
from sbx_lecture.common.natural_gradient import (
    FisherSolver,
    LineSearchResult,
    NaturalGradientDirection,
    backtracking_line_search,
    solve_natural_gradient,
    solve_natural_gradient_exactly,
)
from sbx_lecture.infra.finite import RolloutObservationCheck, check_finite, check_rollout_finite
from sbx_lecture.infra.schedules import ClampedProgressMixin
from sbx_lecture.infra.validation import (
    require_action_space,
    require_integer,
    require_normalizable_rollout,
    require_number,
)
from sbx_lecture.loading import SafeLoadMixin
from sbx_lecture.npg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

_MAX_EXACT_FISHER_PARAMETERS = 20_000


#: v ↦ F v, the product of the Fisher matrix at θ₀ with a vector.
FisherProduct = Callable[[th.Tensor], th.Tensor]


class SurrogateBatch(NamedTuple):
    """The rollout as the surrogate L(θ) = Ê[π_θ(a|s) / π_old(a|s) Â] and the KL to π_old see it.

    :param observations: the states s
    :param actions: the actions a (long indices for Discrete spaces)
    :param advantages: Â, normalized per rollout when ``normalize_advantage``
    :param old_log_prob: log π_old(a|s)
    :param old_distribution: π_old on the states (detached)
    """

    observations: PyTorchObs
    actions: th.Tensor
    advantages: th.Tensor
    old_log_prob: th.Tensor
    old_distribution: Distribution


class NaturalGradientAlgorithm(SafeLoadMixin, ClampedProgressMixin, RolloutObservationCheck, OnPolicyAlgorithm):
    """Base class of the natural policy gradient family; subclasses only decide how to step along F⁻¹g.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the critic's Adam optimizer; it can be a schedule of the progress
        remaining (from 1 to 0)
    :param n_steps: Number of steps to run for each environment per update (rollout size n_steps * n_envs)
    :param batch_size: Minibatch size of the critic regression
    :param gamma: Discount factor
    :param gae_lambda: Factor of the Generalized Advantage Estimator
    :param cg_max_steps: Maximum number of conjugate-gradient iterations per update
    :param cg_damping: Damping λ added to the Fisher matrix in the solve (F + λI) x = g
    :param cg_residual_tol: Relative residual ‖(F + λI)x − g‖/‖g‖ at which conjugate gradient stops
    :param n_critic_updates: Number of epochs of critic regression per update
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new gSDE noise matrix every n steps (-1: only at the start of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it is selected automatically
    :param rollout_buffer_kwargs: Keyword arguments passed to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize the advantages of each rollout
    :param fisher_sub_sampling_factor: Use every k-th state of the rollout for the Fisher matrix (the gradient
        always uses the whole rollout); see Schulman's thesis, pp. 40-42
    :param stats_window_size: Window size of the episode statistics in the logs
    :param tensorboard_log: The log location for tensorboard (if None, no logging)
    :param policy_kwargs: Additional arguments passed to the policy on creation
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (
        spaces.Box,
        spaces.Discrete,
        spaces.MultiDiscrete,
        spaces.MultiBinary,
    )
    action_space_hint: ClassVar[str] = (
        "Wrap the environment so that its actions live in one of these (e.g. a Tuple of Discrete as MultiDiscrete); "
        "no SB3 on-policy algorithm (PPO, TRPO, A2C) handles other action spaces either."
    )
    #: The line search after the step (TNPG's arguments): 0 takes θ₀ + βx as it is, 1 accepts or rejects it, more
    #: shrink it by ``line_search_shrinking_factor`` until it passes.
    line_search_max_iter: int = 0
    line_search_shrinking_factor: float = 0.8
    policy: ActorCriticPolicy

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        cg_max_steps: int = 10,
        cg_damping: float = 0.1,
        cg_residual_tol: float = 1e-10,
        n_critic_updates: int = 10,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = True,
        fisher_sub_sampling_factor: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        require_number("learning_rate", learning_rate, 0.0, low_open=True, schedule=True)
        n_steps = require_integer("n_steps", n_steps, 1)
        batch_size = require_integer("batch_size", batch_size, 1)
        require_number("gamma", gamma, 0.0, 1.0)
        require_number("gae_lambda", gae_lambda, 0.0, 1.0)
        cg_max_steps = require_integer("cg_max_steps", cg_max_steps, 1)
        require_number("cg_damping", cg_damping, 0.0)
        require_number("cg_residual_tol", cg_residual_tol, 0.0)
        n_critic_updates = require_integer("n_critic_updates", n_critic_updates, 0)
        fisher_sub_sampling_factor = require_integer("fisher_sub_sampling_factor", fisher_sub_sampling_factor, 1)
        if env is not None:
            env = maybe_make_env(env, verbose)
            require_action_space(type(self), env.action_space)

        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=0.0,  # the surrogate has no entropy bonus
            vf_coef=0.0,  # the critic is fitted separately
            max_grad_norm=0.0,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=self.supported_action_spaces,
        )
        if self.env is not None and normalize_advantage:
            require_normalizable_rollout(self.n_steps, self.env.num_envs)
        self.batch_size = batch_size
        self.cg_max_steps = cg_max_steps
        self.cg_damping = cg_damping
        self.cg_residual_tol = cg_residual_tol
        self.n_critic_updates = n_critic_updates
        self.normalize_advantage = normalize_advantage
        self.fisher_sub_sampling_factor = fisher_sub_sampling_factor
        self.fisher: FisherSolver = "cg"
        self._actor_parameter_names: list[str] | None = None

    # --- one update, as on the slide --------------------------------------------------------------------------------

    def train(self) -> None:
        """One update: g, x ≈ F⁻¹g, the step length β, θ = θ₀ + βx (optionally line-searched), the critic, the logs."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        check_rollout_finite(self)
        batch = self._surrogate_batch()
        actor_params = self._actor_parameters(batch.observations)
        old_params = get_flat_params(actor_params)

        # 1. g = ∇L(θ₀), the gradient of the importance-sampled surrogate L(θ) = Ê[π_θ(a|s) / π_old(a|s) Â]
        objective = self._surrogate(batch)
        gradient = flatten_tensors(th.autograd.grad(objective, actor_params))
        check_finite("the surrogate objective and its gradient", objective, gradient, algorithm=self)
        surrogate_before = objective.item()

        # 2. x ≈ (F + λI)⁻¹ g by conjugate gradient with Fisher-vector products (NPG's fisher="exact": the matrix)
        fisher_vector_product = self._fisher_vector_product(batch.observations)
        solve = self._natural_gradient(batch.observations, fisher_vector_product, gradient)
        check_finite("the natural-gradient direction", solve.direction, algorithm=self)

        # 3. the step length β, the one thing NPG (a fixed α) and TNPG (sqrt(2δ / xᵀFx)) do differently
        step_length = self._step_length(solve.direction, fisher_vector_product)
        full_step = step_length * solve.direction

        # 4. θ = θ₀ + βx; with a line search, the first of θ₀ + ρⁱβx that improves L and keeps the KL below δ
        search = self._line_search(batch, actor_params, old_params, full_step, surrogate_before)
        applied_step = get_flat_params(actor_params) - old_params
        surrogate_after, kl = self._surrogate_and_kl(batch)
        if not (math.isfinite(surrogate_after) and math.isfinite(kl)):
            set_flat_params_(actor_params, old_params)
            check_finite("the surrogate and the KL after the step", surrogate_after, kl, algorithm=self)

        # 5. the critic: minibatch regression of V on the returns
        value_losses = self._fit_critic(actor_params)

        # 6. the lecture's diagnostics
        self._n_updates += 1
        self._record_update_logs(
            {
                "policy_objective": surrogate_after,
                "surrogate_improvement_predicted": float(gradient @ applied_step),
                "surrogate_improvement_measured": surrogate_after - surrogate_before,
                "kl_divergence": kl,
                "step_size": step_length * search.fraction,
                "step_accepted": float(search.accepted),
                "line_search_evaluations": float(search.n_evaluations),
                "cg_residual": solve.relative_residual,
                "cg_iterations": float(solve.n_iterations),
                "value_loss": float(np.mean(value_losses)) if value_losses else float("nan"),
            }
        )

    @abstractmethod
    def _step_length(self, direction: th.Tensor, fisher_vector_product: FisherProduct) -> float:
        """The step length β along the natural gradient x; the one thing the family members differ in.

        :param direction: x ≈ F⁻¹g
        :param fisher_vector_product: v ↦ F v (undamped) at θ₀ on the Fisher batch
        :return: β
        """

    def _kl_bound(self) -> float:
        """The KL bound δ that a line search enforces (NPG has none: its KL is only logged)."""
        return math.inf

    # --- the pieces of one update -------------------------------------------------------------------------------

    def _line_search(
        self,
        batch: SurrogateBatch,
        actor_params: list[th.nn.Parameter],
        old_params: th.Tensor,
        full_step: th.Tensor,
        surrogate_before: float,
    ) -> LineSearchResult:
        """θ = θ₀ + βx, or with ``line_search_max_iter`` > 0 the first of θ₀ + ρⁱβx that passes the test.

        The test: the surrogate improved and the mean KL is below :meth:`_kl_bound`. When no fraction passes, θ stays
        at θ₀.

        :param batch: the rollout
        :param actor_params: the actor's parameters, moved in place
        :param old_params: θ₀
        :param full_step: βx
        :param surrogate_before: L(θ₀)
        :return: the fraction of the full step that was kept
        """

        def apply_step(fraction: float) -> None:
            self._set_actor_params(actor_params, old_params + fraction * full_step, old_params)

        def is_acceptable() -> bool:
            surrogate, kl = self._surrogate_and_kl(batch)
            return kl < self._kl_bound() and surrogate > surrogate_before

        if self.line_search_max_iter == 0:
            apply_step(1.0)
            return LineSearchResult(accepted=True, fraction=1.0, n_evaluations=0)
        return backtracking_line_search(
            apply_step, is_acceptable, self.line_search_max_iter, self.line_search_shrinking_factor
        )

    def _surrogate_batch(self) -> SurrogateBatch:
        """The whole rollout, its (normalized) advantages and π_old, for the surrogate and the KL."""
        rollout_data = next(self.rollout_buffer.get(batch_size=None))
        actions = rollout_data.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        advantages = rollout_data.advantages
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        with th.no_grad():
            old_distribution = copy.copy(self.policy.get_distribution(rollout_data.observations))
        return SurrogateBatch(
            rollout_data.observations, actions, advantages, rollout_data.old_log_prob, old_distribution
        )

    def _surrogate(self, batch: SurrogateBatch, distribution: Distribution | None = None) -> th.Tensor:
        """L(θ) = Ê[π_θ(a|s) / π_old(a|s) Â] at the actor's current θ.

        :param batch: the rollout
        :param distribution: π_θ on the batch, if already computed
        :return: scalar tensor
        """
        if distribution is None:
            distribution = self.policy.get_distribution(batch.observations)
        log_prob = distribution.log_prob(batch.actions)
        return (th.exp(log_prob - batch.old_log_prob) * batch.advantages).mean()

    def _surrogate_and_kl(self, batch: SurrogateBatch) -> tuple[float, float]:
        """(L(θ), mean KL[π_old ‖ π_θ]) at the actor's current θ, without gradients."""
        with th.no_grad():
            distribution = self.policy.get_distribution(batch.observations)
            return float(self._surrogate(batch, distribution)), float(
                self._mean_kl(batch.old_distribution, distribution)
            )

    def _mean_kl(self, old_distribution: Distribution, new_distribution: Distribution) -> th.Tensor:
        """The state average of KL[π_old ‖ π_new] (of the joint action distribution).

        :param old_distribution: π_old on the batch (detached)
        :param new_distribution: π_θ on the batch
        :return: scalar tensor
        """
        return policy_kl(old_distribution, new_distribution).mean()

    def _actor_parameters(self, observations: PyTorchObs) -> list[th.nn.Parameter]:
        if self._actor_parameter_names is None:
            self._actor_parameter_names = policy_parameters_of_distribution(self.policy, observations)
        named = dict(self.policy.named_parameters())
        return [named[name] for name in self._actor_parameter_names]

    def _fisher_batch(self, observations: PyTorchObs) -> PyTorchObs:
        """Every ``fisher_sub_sampling_factor``-th state of the rollout, key by key for Dict observations.

        :param observations: the rollout's observations (a tensor, or a dict of tensors for Dict spaces)
        :return: the Fisher batch, of the same structure
        """
        step = self.fisher_sub_sampling_factor
        if isinstance(observations, dict):
            return {key: value[::step] for key, value in observations.items()}
        return observations[::step]

    def _fisher_vector_product(self, observations: PyTorchObs) -> FisherProduct:
        """v ↦ F v (undamped) at the actor's current θ, on the Fisher batch of ``observations``."""
        assert self._actor_parameter_names is not None
        return make_fisher_vector_product(self.policy, self._fisher_batch(observations), self._actor_parameter_names)

    def _natural_gradient(
        self, observations: PyTorchObs, fisher_vector_product: FisherProduct, gradient: th.Tensor
    ) -> NaturalGradientDirection:
        """x ≈ (F + λI)⁻¹ g: by conjugate gradient, or with the full Fisher matrix when ``fisher == "exact"``."""
        if self.fisher == "cg":
            return solve_natural_gradient(
                fisher_vector_product, gradient, self.cg_damping, self.cg_max_steps, self.cg_residual_tol
            )
        assert self._actor_parameter_names is not None
        n_params = sum(named.numel() for named in self._actor_parameters(observations))
        if n_params > _MAX_EXACT_FISHER_PARAMETERS:
            raise ValueError(
                f"fisher='exact' builds a {n_params} x {n_params} matrix; it is meant for policies with at most "
                f"{_MAX_EXACT_FISHER_PARAMETERS} actor parameters. Use fisher='cg' or a smaller net_arch."
            )
        fisher = exact_fisher_matrix(self.policy, self._fisher_batch(observations), self._actor_parameter_names)
        return solve_natural_gradient_exactly(fisher, gradient, self.cg_damping)

    def _set_actor_params(
        self, actor_params: list[th.nn.Parameter], new_params: th.Tensor, old_params: th.Tensor
    ) -> None:
        """θ ← ``new_params``, after checking that the step from ``old_params`` is finite."""
        check_finite("the parameter step", new_params - old_params, new_params, algorithm=self)
        set_flat_params_(actor_params, new_params)

    def _fit_critic(self, actor_params: list[th.nn.Parameter]) -> list[float]:
        """``n_critic_updates`` epochs of minibatch regression of V on the returns; the actor's θ stays."""
        value_losses = []
        for _ in range(self.n_critic_updates):
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                values_pred = self.policy.predict_values(rollout_data.observations)
                value_loss = F.mse_loss(rollout_data.returns, values_pred.flatten())
                value_losses.append(value_loss.item())
                check_finite("the critic loss", value_losses[-1], algorithm=self)
                self.policy.optimizer.zero_grad()
                value_loss.backward()
                # Parameters shared with the actor move only by the natural-gradient step.
                for param in actor_params:
                    param.grad = None
                self.policy.optimizer.step()
        return value_losses

    def _record_update_logs(self, values: dict[str, float]) -> None:
        """Logs ``values`` under ``train/``, with the explained variance, the policy's std and the update count."""
        for key, value in values.items():
            self.logger.record(f"train/{key}", value)
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

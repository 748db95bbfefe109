"""Truncated Natural Policy Gradient (TNPG): a few CG iterations, step length from the KL bound δ."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule

from sbx_lecture.common.natural_gradient import kl_step_length
from sbx_lecture.infra.validation import require_integer, require_number
from sbx_lecture.npg.natural_gradient_algorithm import (
    FisherProduct,
    NaturalGradientAlgorithm,
)

SelfTNPG = TypeVar("SelfTNPG", bound="TNPG")


class TNPG(NaturalGradientAlgorithm):
    """Truncated Natural Policy Gradient (TNPG).

    The natural gradient x ≈ F⁻¹g is truncated to ``cg_max_steps`` conjugate-gradient iterations, and the step
    length is the one at which the quadratic model of the KL reaches the bound δ:

    .. math::

        θ_{k+1} = θ_k + β\\, x,\\qquad β = \\sqrt{\\frac{2δ}{x^\\top F x}},\\qquad x ≈ F^{-1} g

    so that ½ (θ_{k+1} − θ_k)ᵀ F (θ_{k+1} − θ_k) = δ. By default there is no line search. With
    ``line_search_max_iter=1`` the step is checked once and rejected (θ stays) unless the surrogate improved and
    the measured KL is below δ, as rllab's TNPG does; with more iterations the step is shrunk by
    ``line_search_shrinking_factor`` until it passes, which is TRPO's backtracking line search.

    Papers: J. Schulman et al., "Trust Region Policy Optimization", ICML 2015; Y. Duan et al., "Benchmarking Deep
    Reinforcement Learning for Continuous Control", ICML 2016 (TNPG).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the critic's Adam optimizer; it can be a schedule of the progress
        remaining (from 1 to 0)
    :param target_kl: The KL bound δ on KL[π_old ‖ π_new] (state average); it can be a schedule. The default
        0.01 is TRPO's: with it TNPG reaches 0.90-1.02 of TRPO's gain over random on nine of the ``defaults``
        suite's ten tasks and 0.68 on HalfCheetah-v5 (held-out seeds; TRPO differs by its line search;
        docs/benchmarks.md)
    :param n_steps: Number of steps to run for each environment per update (rollout size n_steps * n_envs)
    :param batch_size: Minibatch size of the critic regression
    :param gamma: Discount factor
    :param gae_lambda: Factor of the Generalized Advantage Estimator
    :param cg_max_steps: Number of conjugate-gradient iterations (the truncation)
    :param cg_damping: Damping λ added to the Fisher matrix in the solve (F + λI) x = g
    :param cg_residual_tol: Relative residual at which conjugate gradient stops before ``cg_max_steps``
    :param line_search_max_iter: 0: take the step as it is; 1: one accept/reject check; more: backtracking
    :param line_search_shrinking_factor: Step reduction factor ρ of the backtracking line search, in (0, 1)
    :param n_critic_updates: Number of epochs of critic regression per update
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new gSDE noise matrix every n steps (-1: only at the start of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it is selected automatically
    :param rollout_buffer_kwargs: Keyword arguments passed to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize the advantages of each rollout
    :param fisher_sub_sampling_factor: Use every k-th state of the rollout for the Fisher matrix (the gradient
        always uses the whole rollout)
    :param stats_window_size: Window size of the episode statistics in the logs
    :param tensorboard_log: The log location for tensorboard (if None, no logging)
    :param policy_kwargs: Additional arguments passed to the policy on creation
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = NaturalGradientAlgorithm.supported_action_spaces

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        target_kl: float | Schedule = 0.01,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        cg_max_steps: int = 10,
        cg_damping: float = 0.1,
        cg_residual_tol: float = 1e-10,
        line_search_max_iter: int = 0,
        line_search_shrinking_factor: float = 0.8,
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
        require_number("target_kl", target_kl, 0.0, low_open=True, schedule=True)
        line_search_max_iter = require_integer("line_search_max_iter", line_search_max_iter, 0)
        require_number(
            "line_search_shrinking_factor", line_search_shrinking_factor, 0.0, 1.0, low_open=True, high_open=True
        )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            gamma=gamma,
            gae_lambda=gae_lambda,
            cg_max_steps=cg_max_steps,
            cg_damping=cg_damping,
            cg_residual_tol=cg_residual_tol,
            n_critic_updates=n_critic_updates,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            normalize_advantage=normalize_advantage,
            fisher_sub_sampling_factor=fisher_sub_sampling_factor,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self.target_kl = target_kl
        self.line_search_max_iter = line_search_max_iter
        self.line_search_shrinking_factor = line_search_shrinking_factor
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self.target_kl_schedule = FloatSchedule(self.target_kl)

    def _kl_bound(self) -> float:
        """δ, from the schedule."""
        return self.target_kl_schedule(self._current_progress_remaining)

    def _step_length(self, direction: th.Tensor, fisher_vector_product: FisherProduct) -> float:
        """β = sqrt(2δ / xᵀFx): the step whose quadratic model of the KL reaches δ."""
        return kl_step_length(direction, fisher_vector_product(direction), self._kl_bound())

    def learn(
        self: SelfTNPG,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "TNPG",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTNPG:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

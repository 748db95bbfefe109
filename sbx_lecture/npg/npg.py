"""Natural Policy Gradient (NPG): θ ← θ + α F⁻¹ ∇J, with a fixed (schedulable) step α."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule

from sbx_lecture.common.natural_gradient import FisherSolver
from sbx_lecture.infra.validation import require_choice, require_number
from sbx_lecture.npg.natural_gradient_algorithm import (
    FisherProduct,
    NaturalGradientAlgorithm,
)

SelfNPG = TypeVar("SelfNPG", bound="NPG")


#: NPG's default step α. A fixed α means something in KL only relative to the task, so a model built with the
#: default says so once (:data:`DEFAULT_STEP_SIZE_WARNING`); a step size given explicitly (by a zoo entry too) does not.
DEFAULT_STEP_SIZE = 0.4
DEFAULT_STEP_SIZE_WARNING = (
    "NPG steps a fixed α = 0.4 in parameter space, and what a fixed step means in KL depends on the task: with its "
    "defaults NPG falls short of TRPO's on some tasks (Pendulum-v1 among them; see docs/algorithms/npg.md). TNPG, "
    "the lecture's remedy, takes its step from a KL bound: use TNPG, or pass step_size (TNPG logs the step its bound "
    "gives on your task as train/step_size)."
)


class NPG(NaturalGradientAlgorithm):
    """Natural Policy Gradient (NPG).

    The lecture's update, with F the Fisher information matrix of the policy averaged over visited states and g
    the gradient of the importance-sampled surrogate L(θ) = Ê[π_θ(a|s) / π_old(a|s) Â(s, a)]:

    .. math::

        θ_{k+1} = θ_k + α\\, F(θ_k)^{-1} g_k

    F⁻¹g is solved by conjugate gradient with closed-form Fisher-vector products until the relative residual
    reaches ``cg_residual_tol`` (or, with ``fisher="exact"``, by building and solving the full Fisher matrix). The
    step α is fixed: the KL between successive policies grows as α² and is only logged, never enforced (see TNPG
    for the KL-bounded step).

    Paper: S. Kakade, "A Natural Policy Gradient", NeurIPS 2001; the estimator with GAE and a fitted critic as in
    J. Schulman et al., "High-Dimensional Continuous Control Using Generalized Advantage Estimation", 2016.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the critic's Adam optimizer; it can be a schedule of the progress
        remaining (from 1 to 0)
    :param step_size: The natural-gradient step α; it can be a schedule of the progress remaining. With normalised
        advantages NPG's quadratic KL per update is at most ½α²; 0.4 learns where 0.1 barely moved (on
        InvertedDoublePendulum-v5 at 10⁵ steps: 9 323 against 232, TRPO's defaults 9 340; docs/algorithms/npg.md).
        No fixed α suits every task: with its defaults NPG reaches 0.97-1.00 of TRPO's gain over random on six of
        the ``defaults`` suite's ten tasks but 0.10 on Pendulum-v1 and 0.66-0.68 on Hopper-v5 and
        InvertedDoublePendulum-v5 (held-out seeds; docs/benchmarks.md). Built with the default, NPG warns once and
        points to TNPG, whose step comes from a KL bound
    :param n_steps: Number of steps to run for each environment per update (rollout size n_steps * n_envs)
    :param batch_size: Minibatch size of the critic regression
    :param gamma: Discount factor
    :param gae_lambda: Factor of the Generalized Advantage Estimator
    :param fisher: How F⁻¹g is computed: ``"cg"`` (conjugate gradient with Fisher-vector products) or ``"exact"``
        (the full Fisher matrix, built from the Jacobian and solved directly; small policies only)
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
        step_size: float | Schedule = DEFAULT_STEP_SIZE,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        fisher: FisherSolver = "cg",
        cg_max_steps: int = 100,
        cg_damping: float = 0.1,
        cg_residual_tol: float = 1e-3,
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
        require_number("step_size", step_size, 0.0, low_open=True, schedule=True)
        require_choice("fisher", fisher, ("cg", "exact"))
        if _init_setup_model and step_size is DEFAULT_STEP_SIZE:  # the default, not a value given (nor a load)
            warnings.warn(DEFAULT_STEP_SIZE_WARNING, UserWarning, stacklevel=2)
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
        self.step_size = step_size
        self.fisher = fisher
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self.step_size_schedule = FloatSchedule(self.step_size)

    def _step_length(self, direction: th.Tensor, fisher_vector_product: FisherProduct) -> float:
        """β = α, the step size of the schedule."""
        return self.step_size_schedule(self._current_progress_remaining)

    def learn(
        self: SelfNPG,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "NPG",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfNPG:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

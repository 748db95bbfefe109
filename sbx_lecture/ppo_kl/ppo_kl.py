"""KL-penalty PPO (the lecture's first PPO): importance-sampled surrogate minus an adaptive KL penalty."""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance
from torch.nn import functional as F

from sbx_lecture.common.kl import kl_estimate_from_log_ratio, policy_kl
from sbx_lecture.common.kl_penalty import (
    DEFAULT_KL_COEF_FACTOR,
    DEFAULT_KL_TOLERANCE,
    adapt_kl_coef,
    check_kl_penalty_arguments,
)
from sbx_lecture.infra.finite import RolloutObservationCheck, check_finite, check_rollout_finite
from sbx_lecture.infra.schedules import ClampedProgressMixin
from sbx_lecture.infra.validation import (
    InvalidValueAssertion,
    require_action_space,
    require_integer,
    require_minibatch_size,
    require_normalizable_rollout,
    require_number,
)
from sbx_lecture.loading import SafeLoadMixin
from sbx_lecture.ppo_kl.old_policy import (
    OLD_POLICY_CHUNK,
    KLDictRolloutBuffer,
    KLRolloutBuffer,
    KLRolloutBufferSamples,
)
from sbx_lecture.ppo_kl.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, evaluate_actions_and_distribution

SelfKLPPO = TypeVar("SelfKLPPO", bound="KLPPO")


class MinibatchLosses(NamedTuple):
    """The terms of one minibatch's loss (and what is logged about it)."""

    surrogate: th.Tensor
    kl_penalty: th.Tensor
    value: th.Tensor
    entropy: th.Tensor
    kl: th.Tensor
    ratio: th.Tensor


def kl_penalized_policy_loss(
    ratio: th.Tensor,
    advantages: th.Tensor,
    kl: th.Tensor,
    kl_coef: float,
    clip_range: float | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """The two terms of the KL-penalised policy loss ``-Ê[r(θ)·A] + β·Ê[KL[π_old ‖ π_θ]]``.

    With ``clip_range`` the surrogate is PPO's clipped one, ``min(r·A, clip(r, 1 - ε, 1 + ε)·A)``, so that the clip
    and the penalty can be combined.

    :param ratio: ``r(θ) = π_θ(a|s) / π_old(a|s)`` per sample
    :param advantages: advantage estimates per sample
    :param kl: ``KL[π_old(·|s) ‖ π_θ(·|s)]`` per sample
    :param kl_coef: the penalty coefficient β
    :param clip_range: PPO's ε, or ``None`` for the unclipped surrogate
    :return: ``(surrogate_loss, kl_penalty)``, whose sum is the policy loss
    """
    surrogate = ratio * advantages
    if clip_range is not None:
        surrogate = th.min(surrogate, th.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages)
    return -surrogate.mean(), kl_coef * kl.mean()


class KLPPO(SafeLoadMixin, ClampedProgressMixin, RolloutObservationCheck, OnPolicyAlgorithm):
    """Proximal Policy Optimization with an adaptive (or fixed) KL penalty.

    Each update maximises, over several epochs of minibatch gradient steps on one rollout,

    .. math::

        L^{KLPEN}(θ) = \\hat{E}_t\\left[\\frac{π_θ(a_t|s_t)}{π_{θ_{old}}(a_t|s_t)}\\hat{A}_t
                       - β\\,KL[π_{θ_{old}}(·|s_t) ‖ π_θ(·|s_t)]\\right]

    then measures ``d = Ê_t[KL[π_old ‖ π_θ]]`` over the whole rollout and adapts β:
    ``d < d_targ / 1.5 → β ← β / 2``, ``d > 1.5·d_targ → β ← 2·β``
    (Schulman, Wolski, Dhariwal, Radford, Klimov 2017, "Proximal Policy Optimization Algorithms", section 4,
    https://arxiv.org/abs/1707.06347). With ``clip_range`` set, the ratio term is PPO's clipped surrogate and the
    penalty is added on top, as later implementations combine them.

    The minibatches are SB3's own, ``rollout_buffer.get(batch_size)``, as in SB3's PPO. The default rollout buffer,
    :class:`~sbx_lecture.ppo_kl.old_policy.KLRolloutBuffer` (or ``KLDictRolloutBuffer`` for dict observations),
    stores π_old's distribution once per rollout (one pass without gradients) and hands each minibatch its rows,
    so a minibatch step costs the same forward pass as PPO's and the KL is exact wherever SB3's distribution has a
    closed form (diagonal Gaussian, gSDE, categorical, multi-categorical, Bernoulli). Otherwise, and with a
    ``rollout_buffer_class`` of the user's own, the low-variance estimator ``(r - 1) - log r`` of the sampled
    log-ratio is used.
    The current β (``kl_coef``) and the last measured KL (``last_kl``) are saved with the model, and the optimizer
    state with the policy, so training continues where it stopped after ``load``.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy or an ``ActorCriticPolicy``)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, a float or a schedule of the progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (the rollout holds ``n_steps * n_envs`` transitions)
    :param batch_size: Minibatch size
    :param n_epochs: Number of epochs over the rollout per update
    :param gamma: Discount factor
    :param gae_lambda: Factor for the bias/variance trade-off of the Generalized Advantage Estimator
    :param clip_range: PPO's clipping parameter ε, a float or a schedule; ``None`` (default) for the pure
        KL-penalty objective of the lecture
    :param clip_range_vf: Clipping parameter for the value function, a float or a schedule; ``None`` (default)
        for no clipping. Depends on the reward scaling.
    :param normalize_advantage: Whether to normalize the advantages within each minibatch
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action noise
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: once per rollout)
    :param rollout_buffer_class: Rollout buffer class to use. ``None`` (default), SB3's ``RolloutBuffer`` or
        ``DictRolloutBuffer``: ``KLRolloutBuffer`` or ``KLDictRolloutBuffer``, which store π_old for the exact KL.
        Any other class: the KL is estimated from the log-ratio, ``(r - 1) - log r`` per sample.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param target_kl: The target KL divergence ``d_targ`` of the β rule, a float or a schedule (> 0); may be
        ``None`` only with ``adaptive_kl=False``. Unlike SB3's PPO, it does not stop the epochs early. The
        defaults, d_targ = 0.01 and β₀ = 1 with PPO's own, are the paper's: they reach 0.82-1.36 of PPO's gain over
        random on eight of the ``defaults`` suite's ten tasks, and 0.63 and 0.44, intervals wide across 0.8, on
        Pendulum-v1 and Reacher-v5, where PPO's defaults gain little (held-out seeds; docs/benchmarks.md)
    :param kl_coef: The initial penalty coefficient β (>= 0)
    :param adaptive_kl: Whether β follows the adaptive rule after each update (``False``: β stays ``kl_coef``)
    :param kl_tolerance: Width of the rule's dead band (> 1): β changes only when ``d`` leaves
        ``[d_targ / kl_tolerance, d_targ · kl_tolerance]``
    :param kl_coef_factor: The factor (> 1) by which β is divided or multiplied
    :param min_kl_coef: Lower bound on the adapted β (> 0)
    :param max_kl_coef: Upper bound on the adapted β (>= min_kl_coef)
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run ("auto": the GPU if possible)
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

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
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule | None = None,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | Schedule | None = 0.01,
        kl_coef: float = 1.0,
        adaptive_kl: bool = True,
        kl_tolerance: float = DEFAULT_KL_TOLERANCE,
        kl_coef_factor: float = DEFAULT_KL_COEF_FACTOR,
        min_kl_coef: float = 1e-4,
        max_kl_coef: float = 1e4,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        check_kl_penalty_arguments(
            kl_coef, target_kl, adaptive_kl, kl_tolerance, kl_coef_factor, min_kl_coef, max_kl_coef
        )
        n_epochs = require_integer("n_epochs", n_epochs, 1)
        batch_size = require_minibatch_size(batch_size, normalize_advantage)
        require_number("clip_range", clip_range, 0.0, low_open=True, schedule=True, optional=True)
        vf_error = InvalidValueAssertion  # SB3's PPO asserts clip_range_vf > 0
        require_number("clip_range_vf", clip_range_vf, 0.0, low_open=True, schedule=True, optional=True, error=vf_error)
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
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
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
        if self.env is not None:
            _warn_truncated_minibatch(batch_size, self.n_steps, self.env.num_envs)
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.kl_coef = float(kl_coef)
        self.adaptive_kl = adaptive_kl
        self.kl_tolerance = kl_tolerance
        self.kl_coef_factor = kl_coef_factor
        self.min_kl_coef = min_kl_coef
        self.max_kl_coef = max_kl_coef
        # The KL d measured after the last update (NaN before the first one); saved with the model.
        self.last_kl = math.nan

        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        # SB3's plain buffers (also what models saved before the KL buffers hold) become the ones that store π_old.
        self.rollout_buffer_class = {
            None: KLDictRolloutBuffer if isinstance(self.observation_space, spaces.Dict) else KLRolloutBuffer,
            RolloutBuffer: KLRolloutBuffer,
            DictRolloutBuffer: KLDictRolloutBuffer,
        }.get(self.rollout_buffer_class, self.rollout_buffer_class)
        super()._setup_model()
        if self.clip_range is not None:
            self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)
        if self.target_kl is not None:
            self.target_kl = FloatSchedule(self.target_kl)

    def _current_value(self, schedule: Any) -> float | None:
        return None if schedule is None else schedule(self._current_progress_remaining)

    def train(self) -> None:
        """One KL-penalised update on the collected rollout, then the measurement of d and the β rule."""
        clip_range = self._current_value(self.clip_range)
        clip_range_vf = self._current_value(self.clip_range_vf)
        kl_coef = self.kl_coef
        check_rollout_finite(self)

        # π_old at every rollout state, computed in the mode the rollout was collected in; each minibatch of the
        # buffer then carries its rows (other buffers: the KL is estimated from the log-ratio).
        if isinstance(self.rollout_buffer, KLRolloutBuffer | KLDictRolloutBuffer):
            self.policy.set_training_mode(False)
            self.rollout_buffer.store_old_policy(self.policy, OLD_POLICY_CHUNK)

        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        surrogate_losses, kl_penalties, value_losses, entropy_losses, kls, clip_fractions = [], [], [], [], [], []
        for _ in range(self.n_epochs):
            for data in self.rollout_buffer.get(self.batch_size):
                # L(θ) = -Ê[r(θ)·A] + β·Ê[KL[π_old ‖ π_θ]] (+ value and entropy terms), one gradient step
                terms = self._minibatch_losses(data, kl_coef, clip_range, clip_range_vf)
                loss = terms.surrogate + terms.kl_penalty + self.vf_coef * terms.value
                if self.ent_coef != 0:  # a zero-weighted term would still cost a backward pass
                    loss = loss + self.ent_coef * terms.entropy
                self.policy.optimizer.zero_grad()
                loss.backward()
                grad_norm = th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                check_finite("the loss and its gradient", loss, grad_norm, algorithm=self)
                self.policy.optimizer.step()

                surrogate_losses.append(terms.surrogate.detach())
                kl_penalties.append(terms.kl_penalty.detach())
                value_losses.append(terms.value.detach())
                entropy_losses.append(terms.entropy.detach())
                kls.append(terms.kl.detach())
                if clip_range is not None:
                    clip_fractions.append(th.mean((th.abs(terms.ratio.detach() - 1) > clip_range).float()))
            self._n_updates += 1

        # The β rule on d = Ê[KL[π_old ‖ π_θ]] over the whole rollout
        self.last_kl = self._measure_kl()
        check_finite("the KL between the old and the updated policy", self.last_kl, algorithm=self)
        target_kl = self._current_value(self.target_kl)
        if self.adaptive_kl and target_kl is not None:
            self.kl_coef = adapt_kl_coef(
                kl_coef,
                self.last_kl,
                target_kl,
                self.kl_tolerance,
                self.kl_coef_factor,
                self.min_kl_coef,
                self.max_kl_coef,
            )

        def mean(values: list[th.Tensor]) -> float:
            return th.stack(values).mean().item()

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", mean(surrogate_losses))
        self.logger.record("train/kl_penalty", mean(kl_penalties))
        self.logger.record("train/value_loss", mean(value_losses))
        self.logger.record("train/approx_kl", mean(kls))
        self.logger.record("train/kl", self.last_kl)
        self.logger.record("train/kl_coef", kl_coef)
        if target_kl is not None:
            self.logger.record("train/target_kl", target_kl)
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if clip_range is not None:
            self.logger.record("train/clip_fraction", mean(clip_fractions))
            self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def _actions(self, data: Any) -> th.Tensor:
        """The minibatch's actions as the policy's ``log_prob`` takes them (indices for ``Discrete``)."""
        if isinstance(self.action_space, spaces.Discrete):
            return data.actions.long().flatten()
        return data.actions

    def _minibatch_losses(
        self, data: Any, kl_coef: float, clip_range: float | None, clip_range_vf: float | None
    ) -> MinibatchLosses:
        """The loss terms of one minibatch: surrogate, β·KL, value and entropy losses."""
        values, log_prob, entropy, distribution = evaluate_actions_and_distribution(
            self.policy, data.observations, self._actions(data)
        )
        advantages = data.advantages
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        log_ratio = log_prob - data.old_log_prob
        ratio = th.exp(log_ratio)
        old_distribution = _old_distribution(data)
        if old_distribution is None:
            kl = kl_estimate_from_log_ratio(log_ratio)
        else:
            kl = policy_kl(old_distribution, distribution, log_ratio)
        surrogate_loss, kl_penalty = kl_penalized_policy_loss(ratio, advantages, kl, kl_coef, clip_range)

        values = values.flatten()
        if clip_range_vf is not None:
            values = data.old_values + th.clamp(values - data.old_values, -clip_range_vf, clip_range_vf)
        value_loss = F.mse_loss(data.returns, values)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        return MinibatchLosses(surrogate_loss, kl_penalty, value_loss, entropy_loss, kl.mean(), ratio)

    def _measure_kl(self) -> float:
        """``d = Ê[KL[π_old ‖ π_θ]]`` over the whole rollout, with the updated policy in rollout (eval) mode."""
        self.policy.set_training_mode(False)
        total, n_states = 0.0, 0
        with th.no_grad():
            for data in self.rollout_buffer.get(OLD_POLICY_CHUNK):
                distribution = self.policy.get_distribution(data.observations)
                old_distribution = _old_distribution(data)
                if old_distribution is None:
                    kl = kl_estimate_from_log_ratio(distribution.log_prob(self._actions(data)) - data.old_log_prob)
                else:
                    kl = policy_kl(old_distribution, distribution)
                total += kl.sum().item()
                n_states += len(kl)
        return total / n_states

    def learn(
        self: SelfKLPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "KLPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfKLPPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def _old_distribution(data: Any) -> Distribution | None:
    """π_old at the minibatch's states when the buffer stored it, else ``None`` (the KL is then estimated)."""
    return data.old_distribution if isinstance(data, KLRolloutBufferSamples) else None


def _warn_truncated_minibatch(batch_size: int, n_steps: int, n_envs: int) -> None:
    """Warn, as SB3's PPO does, when the rollout does not split into whole minibatches of ``batch_size``.

    :param batch_size: minibatch size
    :param n_steps: steps per environment per rollout
    :param n_envs: number of environments
    """
    rollout_size = n_steps * n_envs
    remainder = rollout_size % batch_size
    if batch_size < rollout_size and remainder > 0:
        warnings.warn(
            f"batch_size={batch_size} does not divide the rollout of n_steps * n_envs = {n_steps} * {n_envs} = "
            f"{rollout_size} transitions: each epoch ends with a truncated mini-batch of size {remainder} after "
            f"{rollout_size // batch_size} full ones; choose a batch_size that divides n_steps * n_envs",
            UserWarning,
            stacklevel=3,
        )

"""Soft Q-learning (Haarnoja et al., 2017) for discrete and continuous (Box) actions."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import FloatSchedule

from sbx_lecture.common.kernels import amortized_svgd_loss
from sbx_lecture.common.particle_entropy import nearest_neighbour_entropy
from sbx_lecture.common.replay import TorchSampledReplayBuffer
from sbx_lecture.common.soft_value import (
    boltzmann_entropy,
    soft_value_discrete,
    soft_value_importance_sampled,
    uniform_box_log_density,
)
from sbx_lecture.common.targets import PolyakTarget, check_tau
from sbx_lecture.infra.allocator import keep_freed_memory
from sbx_lecture.infra.compilation import CompiledUpdateMixin
from sbx_lecture.infra.finite import batch_causes, check_finite
from sbx_lecture.infra.schedules import ClampedProgressMixin
from sbx_lecture.infra.validation import InvalidValueError, require_action_space, require_integer, require_number
from sbx_lecture.loading import SafeLoadMixin
from sbx_lecture.sql.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SQLPolicy

SelfSQL = TypeVar("SelfSQL", bound="SQL")

#: Gradient steps between two computations of the logged entropy diagnostics (``train/entropy``,
#: ``train/svgd_step_norm``); they do not enter the update.
DIAGNOSTICS_INTERVAL = 1000


def squash_log_jacobian(pre_squash: th.Tensor) -> th.Tensor:
    """Σ_d log(1 − tanh(u_d)²), computed stably as Σ_d 2 (log 2 − u_d − softplus(−2 u_d))."""
    return (2.0 * (np.log(2.0) - pre_squash - th.nn.functional.softplus(-2.0 * pre_squash))).sum(dim=-1)


class SQL(SafeLoadMixin, ClampedProgressMixin, CompiledUpdateMixin, OffPolicyAlgorithm):
    """Soft Q-learning: Q-learning for the maximum-entropy objective with an energy-based policy.

    The lecture's maximum-entropy RL: J(π) = E[Σ_t r_t + α H(π(·|s_t))], solved by the soft Bellman backup

        Q(s, a) ← r + γ E_{s'}[V(s')],   V(s) = α log ∫ exp(Q(s, a)/α) da,   π(a|s) ∝ exp(Q(s, a)/α).

    * Discrete actions: V is the exact α·logsumexp(Q_target(s', ·)/α); actions are drawn from softmax(Q/α)
      (``predict(deterministic=True)`` returns argmax Q).
    * Box actions (the paper's algorithm): V is estimated by importance sampling with ``value_n_particles``
      actions drawn uniformly on the squashed box [-1, 1]^d, V ≈ α log((1/K) Σ_k exp(Q(s', a_k)/α)/q(a_k)).
      Actions are a = tanh(u), u = f_φ(ξ; s), ξ ~ N(0, I); the sampler follows amortized Stein variational
      gradient descent on ``svgd_n_particles`` particles per state with an RBF kernel whose bandwidth is the median
      heuristic. SVGD runs in the pre-squash space u with the target log-density Q(s, tanh u)/α + Σ log(1 − tanh²u),
      which is exactly exp(Q/α) on the box pushed through tanh⁻¹, so the sampler and the value estimate
      describe the same density. ``predict(deterministic=True)`` uses ξ = 0.

    Paper: Haarnoja, Tang, Abbeel, Levine, "Reinforcement Learning with Deep Energy-Based Policies", ICML 2017,
    https://arxiv.org/abs/1702.08165. SAC is its actor-critic successor.

    :param policy: the policy model (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy`` or a class); one class
        serves discrete and Box action spaces
    :param env: the environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate of the Q-network and sampler optimizers; a float or a schedule of the
        remaining progress (1 → 0)
    :param buffer_size: size of the replay buffer
    :param learning_starts: how many steps of uniformly random actions to collect before learning starts
    :param batch_size: minibatch size of each gradient step
    :param tau: Polyak coefficient of the target-network update (1 for a hard copy, 0 for a frozen target), in [0, 1]
    :param gamma: discount factor, in [0, 1]
    :param train_freq: update the model every ``train_freq`` steps, or a tuple such as ``(5, "step")`` or
        ``(1, "episode")``
    :param gradient_steps: gradient steps after each rollout (-1: as many as environment steps collected)
    :param ent_coef: temperature α > 0 of the entropy bonus (float or schedule). The default 0.1 is the paper's
        fixed temperature; with it and the other defaults SQL reaches an IQM of 451 on CartPole-v1 and −88 on
        Acrobot-v1 in 5·10⁴ steps, where DQN's defaults reach 111 and −461, and −145 on Pendulum-v1, where SAC's
        reach −145; on InvertedPendulum-v5 both end at 1 000, on InvertedDoublePendulum-v5 both score about 9 358,
        and on MountainCarContinuous-v0 both hold still (held-out seeds; docs/benchmarks.md)
    :param reward_scale: factor applied to rewards in the soft Bellman target (> 0); scaling rewards by c is
        equivalent to dividing α by c
    :param value_n_particles: K_V, uniform proposal samples per next state for the importance-sampled soft value
        (Box actions only), ≥ 1
    :param svgd_n_particles: M, sampler particles per state for the SVGD update (Box actions only), ≥ 2
    :param twin_critics: train two Q heads and use their minimum for targets and acting (as later
        implementations do); ``False`` is the paper's algorithm
    :param target_update_interval: update the target network every ``target_update_interval`` gradient steps, ≥ 1
    :param max_grad_norm: clip the gradient norm of each network to this value (``None``: no clipping)
    :param replay_buffer_class: replay buffer class (``None``: chosen automatically; for Box or Discrete
        observations and one-step targets SB3's buffer with its minibatches gathered by torch,
        :class:`~sbx_lecture.common.replay.TorchSampledReplayBuffer`)
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param optimize_memory_usage: memory-efficient replay buffer variant
    :param n_steps: n-step returns (1: the standard one-step soft Bellman target)
    :param use_sde: Box actions: state-dependent exploration, SB3's gSDE switch. The sampler's noise ξ is held
        between draws, so the action follows s ↦ tanh(f_φ(ξ; s)) for a while instead of taking fresh noise each
        step; tasks that need a consistent push to find any reward (MountainCarContinuous) need it
    :param sde_sample_freq: with ``use_sde``, draw ξ anew every ``sde_sample_freq`` steps (-1: only at the start
        of each rollout, i.e. every ``train_freq`` steps)
    :param use_sde_at_warmup: with ``use_sde``, act with the sampler instead of uniformly random actions before
        ``learning_starts``
    :param compile_update: compute the losses of each gradient step (soft Q and SVGD) with functions compiled once
        by ``torch.compile``. It pays on an accelerator, where a small network's step is mostly kernel launches, and
        only for long runs: a ``learn`` call of fewer than 10 000 gradient steps, or a machine where compiling fails,
        uses the eager update (one line says so). ``model.compile_seconds`` is the time spent compiling
    :param policy_kwargs: additional arguments of the policy on creation (``net_arch``, ``activation_fn``, ...)
    :param stats_window_size: window size of the rollout logging (episodes)
    :param tensorboard_log: log location for tensorboard (``None``: no logging)
    :param verbose: verbosity level: 0 none, 1 training information, 2 debug
    :param seed: seed of the pseudo random generators
    :param device: device (cpu, cuda, ...) on which the code runs
    :param _init_setup_model: whether to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)
    action_space_hint: ClassVar[str] = "For MultiDiscrete or MultiBinary actions use PPO or A2C."
    policy: SQLPolicy

    def __init__(
        self,
        policy: str | type[SQLPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 128,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        ent_coef: float | Schedule = 0.1,
        reward_scale: float = 1.0,
        value_n_particles: int = 16,
        svgd_n_particles: int = 16,
        twin_critics: bool = False,
        target_update_interval: int = 1,
        max_grad_norm: float | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        compile_update: bool = False,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        _check_hyperparameters(
            ent_coef=ent_coef,
            reward_scale=reward_scale,
            value_n_particles=value_n_particles,
            svgd_n_particles=svgd_n_particles,
            tau=tau,
            gamma=gamma,
            target_update_interval=target_update_interval,
            max_grad_norm=max_grad_norm,
            sde_sample_freq=sde_sample_freq,
        )
        if env is not None:
            env = maybe_make_env(env, verbose)  # type: ignore[assignment]
            require_action_space(type(self), env.action_space)
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=None,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_kwargs=dict(policy_kwargs or {}),  # a copy: SB3 adds use_sde to it, the caller keeps theirs
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            sde_support=True,
            supported_action_spaces=self.supported_action_spaces,
            support_multi_env=True,
        )
        self.ent_coef = ent_coef
        self.reward_scale = reward_scale
        self.value_n_particles = value_n_particles
        self.svgd_n_particles = svgd_n_particles
        self.twin_critics = twin_critics
        self.target_update_interval = target_update_interval
        self.max_grad_norm = max_grad_norm
        self.compile_update = compile_update
        if twin_critics:
            self.policy_kwargs = {**self.policy_kwargs, "n_critics": 2}
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        dict_observations = isinstance(self.observation_space, spaces.Dict)
        if self.replay_buffer_class is None and self.n_steps == 1 and not dict_observations:
            self.replay_buffer_class = TorchSampledReplayBuffer  # SB3's buffer, minibatches gathered by torch
        super()._setup_model()
        self.ent_coef_schedule = FloatSchedule(self.ent_coef)
        self.policy.ent_coef = self._current_ent_coef()
        self._create_aliases()

    def _create_aliases(self) -> None:
        self.q_net = self.policy.q_net
        self.q_net_target = self.policy.q_net_target
        self.sampler = self.policy.sampler
        if self.sampler is not None:
            # SB3's rollout loop draws the held exploration noise (use_sde) through ``actor.reset_noise``.
            self.actor = self.sampler
        self._q_net_target_update = PolyakTarget(self.q_net, self.q_net_target)
        self._discrete_q_update = self._compiled_update(self._discrete_q_losses)
        self._continuous_q_update = self._compiled_update(self._continuous_q_losses)
        self._svgd_update = self._compiled_update(self._svgd_losses)

    def _current_ent_coef(self) -> float:
        ent_coef = self.ent_coef_schedule(self._current_progress_remaining)
        if not ent_coef > 0:
            raise ValueError(f"ent_coef must stay > 0 (the temperature α), but its schedule returned {ent_coef}.")
        return ent_coef

    @property
    def is_discrete(self) -> bool:
        return isinstance(self.action_space, spaces.Discrete)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        self.policy.set_training_mode(True)
        optimizers = [self.q_net.optimizer] + ([self.sampler.optimizer] if self.sampler is not None else [])
        self._update_learning_rate(optimizers)
        ent_coef = self._current_ent_coef()
        self.policy.ent_coef = ent_coef

        stats: dict[str, list[th.Tensor]] = {}
        # The entropy diagnostics cost extra passes (a pairwise-distance matrix per state): they are computed on the
        # last minibatch of a train call, and only in the first call and in calls that cross a multiple of
        # DIAGNOSTICS_INTERVAL updates (with one gradient step per environment step, every call is a "last step").
        diagnostics_due = self._n_updates == 0 or (self._n_updates + gradient_steps) // DIAGNOSTICS_INTERVAL > (
            self._n_updates // DIAGNOSTICS_INTERVAL
        )
        for step in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            last_step = diagnostics_due and step == gradient_steps - 1
            if self.is_discrete:
                step_stats = self._discrete_update(replay_data, ent_coef, last_step)
            else:
                step_stats = self._continuous_update(replay_data, ent_coef, last_step)
            for key, value in step_stats.items():
                stats.setdefault(key, []).append(value)
            self._n_updates += 1
            if self._n_updates % self.target_update_interval == 0:
                self._q_net_target_update.update(self.tau)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", ent_coef)
        for key, values in stats.items():
            self.logger.record(f"train/{key}", th.stack(values).mean().item())

    def _soft_bellman_target(self, replay_data: ReplayBufferSamples, next_soft_value: th.Tensor) -> th.Tensor:
        """r·reward_scale + γ (1 − done) V(s'), shape ``(batch,)``."""
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        not_done = 1.0 - replay_data.dones
        return (self.reward_scale * replay_data.rewards + not_done * discounts * next_soft_value.unsqueeze(-1)).squeeze(
            -1
        )

    def _step(self, optimizer: th.optim.Optimizer, loss: th.Tensor, parameters: Any) -> None:
        optimizer.zero_grad()
        loss.backward()
        if self.max_grad_norm is not None:
            th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        optimizer.step()

    def _discrete_update(
        self, replay_data: ReplayBufferSamples, ent_coef: float, diagnostics: bool = True
    ) -> dict[str, th.Tensor]:
        """One gradient step on ½ (Q(s, a) − r − γ α logsumexp(Q_target(s', ·)/α))², exact soft value.

        :param diagnostics: also return the exact entropy of softmax(Q/α) on this minibatch
        """
        td_loss, next_soft_value, q_all = self._discrete_q_update(replay_data, ent_coef)
        check_finite("the soft Q loss", td_loss, algorithm=self, causes=batch_causes(replay_data))
        self._step(self.q_net.optimizer, td_loss, self.q_net.parameters())
        stats = {"td_loss": td_loss.detach(), "soft_value": next_soft_value.mean()}
        if diagnostics:
            with th.no_grad():
                stats["entropy"] = boltzmann_entropy(q_all.detach().min(dim=0).values, ent_coef).mean()
        return stats

    def _discrete_q_losses(
        self, replay_data: ReplayBufferSamples, ent_coef: float
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The soft Q loss with the exact soft value, that value at s′, and Q(s, ·) of every head."""
        with th.no_grad():
            next_soft_value = soft_value_discrete(
                self.policy.soft_q(replay_data.next_observations, target=True), ent_coef
            )
            target = self._soft_bellman_target(replay_data, next_soft_value)
        q_all = self.policy.q_values(replay_data.observations)  # (n_critics, batch, n_actions)
        index = replay_data.actions.long().unsqueeze(0).expand(q_all.shape[0], -1, -1)
        q_taken = q_all.gather(-1, index).squeeze(-1)
        td_loss = 0.5 * (q_taken - target).pow(2).mean(dim=-1).sum()
        return td_loss, next_soft_value, q_all

    def _continuous_update(
        self, replay_data: ReplayBufferSamples, ent_coef: float, diagnostics: bool = True
    ) -> dict[str, th.Tensor]:
        """One soft Q step (importance-sampled soft value) and one amortized SVGD step of the sampler.

        :param diagnostics: also return the entropy estimate and the Stein step size on this minibatch
        """
        assert self.sampler is not None
        # the random draws stay outside the (possibly compiled) loss functions: compiled code has its own generator
        batch, action_dim = replay_data.rewards.shape[0], self.policy.action_dim
        proposal = th.rand(batch, self.value_n_particles, action_dim, device=self.device) * 2.0 - 1.0
        td_loss, next_soft_value = self._continuous_q_update(replay_data, proposal, ent_coef)
        check_finite("the soft Q loss", td_loss, algorithm=self, causes=batch_causes(replay_data))
        self._step(self.q_net.optimizer, td_loss, self.q_net.parameters())

        # the sampler follows the Stein direction of the Q-function just updated
        noise = th.randn(batch, self.svgd_n_particles, action_dim, device=self.device)
        sampler_loss, particles, direction, bandwidth = self._svgd_update(replay_data.observations, noise, ent_coef)
        check_finite("the SVGD sampler loss", sampler_loss, algorithm=self)
        self._step(self.sampler.optimizer, sampler_loss, self.sampler.parameters())

        stats = {
            "td_loss": td_loss.detach(),
            "soft_value": next_soft_value.mean(),
            "kernel_bandwidth": bandwidth.mean(),
        }
        if diagnostics:
            with th.no_grad():
                stats["entropy"] = nearest_neighbour_entropy(th.tanh(particles.detach())).mean()
                stats["svgd_step_norm"] = direction.norm(dim=-1).mean()
        return stats

    def _continuous_q_losses(
        self, replay_data: ReplayBufferSamples, proposal: th.Tensor, ent_coef: float
    ) -> tuple[th.Tensor, th.Tensor]:
        """The soft Q loss with the importance-sampled soft value, and that value at s′.

        :param proposal: the uniform proposal's actions on [-1, 1]^d at each s′, shape ``(batch, K_V, d)``
        """
        action_dim = self.policy.action_dim
        with th.no_grad():
            next_q = self.policy.soft_q(replay_data.next_observations, proposal, target=True)
            next_soft_value = soft_value_importance_sampled(next_q, ent_coef, uniform_box_log_density(action_dim))
            target = self._soft_bellman_target(replay_data, next_soft_value)
        q_taken = self.policy.q_values(replay_data.observations, replay_data.actions)  # (n_critics, batch)
        td_loss = 0.5 * (q_taken - target).pow(2).mean(dim=-1).sum()
        return td_loss, next_soft_value

    def _svgd_losses(
        self, observations: PyTorchObs, noise: th.Tensor, ent_coef: float
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """Amortized SVGD: the sampler loss that pushes its particles along the Stein direction of exp(Q/α) in
        pre-squash space, with the particles, that direction and the kernel bandwidth.

        :param noise: the sampler's input ξ ~ N(0, I), shape ``(batch, M, d)``
        """
        particles = self.policy.sample_particles(observations, noise=noise)  # (batch, M, d)

        def log_density(pre_squash: th.Tensor) -> th.Tensor:
            return self.policy.soft_q(observations, th.tanh(pre_squash)) / ent_coef + squash_log_jacobian(pre_squash)

        sampler_loss, direction, bandwidth = amortized_svgd_loss(particles, log_density)
        return sampler_loss, particles, direction, bandwidth

    def learn(
        self: SelfSQL,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SQL",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSQL:
        keep_freed_memory()  # the update's large temporaries would otherwise be faulted in anew at every step
        self._prepare_compilation(total_timesteps, reset_num_timesteps)
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "q_net",
            "q_net_target",
            "sampler",
            "actor",
            "_q_net_target_update",
            "_discrete_q_update",
            "_continuous_q_update",
            "_svgd_update",
            "_compiled_updates",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "q_net.optimizer"]
        if not isinstance(self.action_space, spaces.Discrete):
            state_dicts.append("sampler.optimizer")
        return state_dicts, []


def _check_hyperparameters(
    ent_coef: float | Schedule,
    reward_scale: float,
    value_n_particles: int,
    svgd_n_particles: int,
    tau: float,
    gamma: float,
    target_update_interval: int,
    max_grad_norm: float | None,
    sde_sample_freq: int,
) -> None:
    """Raise an :class:`~sbx_lecture.infra.validation.InvalidValueError` naming the first invalid hyperparameter."""
    require_number("ent_coef", ent_coef, 0.0, low_open=True, schedule=True)
    if callable(ent_coef) and not ent_coef(1.0) > 0:
        raise InvalidValueError(f"ent_coef must be a schedule that stays > 0, got one that starts at {ent_coef(1.0)}")
    require_number("reward_scale", reward_scale, 0.0, low_open=True)
    require_integer("value_n_particles", value_n_particles, 1)
    require_integer("svgd_n_particles", svgd_n_particles, 2)  # SVGD moves particles by their pairs
    check_tau(tau)
    require_number("gamma", gamma, 0.0, 1.0)
    require_integer("target_update_interval", target_update_interval, 1)
    require_integer("sde_sample_freq", sde_sample_freq, -1)
    require_number("max_grad_norm", max_grad_norm, 0.0, low_open=True, optional=True)

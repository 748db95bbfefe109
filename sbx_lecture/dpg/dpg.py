"""DPG: the deterministic policy gradient actor-critic of Silver et al. (2014)."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule, TrainFrequencyUnit
from stable_baselines3.common.utils import FloatSchedule, update_learning_rate
from stable_baselines3.td3.policies import Actor

from sbx_lecture.common.compatible_features import (
    ActorLinearization,
    actor_chain,
    compatible_advantage,
    parameter_jvp,
)
from sbx_lecture.common.targets import PolyakTarget, check_tau
from sbx_lecture.dpg.buffers import DictTransitionBuffer, TransitionBatch, TransitionBuffer
from sbx_lecture.dpg.policies import (
    CRITIC_TYPES,
    CnnPolicy,
    CompatibleCritic,
    DPGPolicy,
    MlpPolicy,
    MultiInputPolicy,
)
from sbx_lecture.infra.compilation import CompiledUpdateMixin, frozen_forward
from sbx_lecture.infra.finite import batch_causes, check_finite
from sbx_lecture.infra.schedules import ClampedProgressMixin
from sbx_lecture.infra.validation import (
    InvalidValueError,
    require_action_space,
    require_choice,
    require_integer,
    require_number,
)
from sbx_lecture.loading import SafeLoadMixin

SelfDPG = TypeVar("SelfDPG", bound="DPG")


class DPG(SafeLoadMixin, ClampedProgressMixin, CompiledUpdateMixin, OffPolicyAlgorithm):
    """Deterministic Policy Gradient (DPG): a deterministic actor μθ(s) and a critic Q^w(s, a).

    The objective and its gradient (deterministic policy gradient theorem)::

        J(θ) = ∫ d^π(s) Q^π(s, μθ(s)) ds,        ∇θJ = E_s[∇θμθ(s) ∇aQ^w(s, a)|a=μθ(s)]

    Per transition (s, a, r, s′) with TD error δ = y − Q^w(s, a), the target being

    - ``on_policy=False`` (Q-learning, COPDAC-Q / OPDAC): y = r + γ Q^w(s′, μθ(s′))
    - ``on_policy=True`` (SARSA): y = r + γ Q^w(s′, a′), a′ the action executed next

    and with no bootstrap on termination (but bootstrapping on time-limit truncation).

    ``critic="mlp"`` (the default): a neural Q(s, a) trained on the squared TD error, actor step
    ∇θμθ(s) ∇aQ(s, a)|a=μθ(s). With the default replay buffer and target networks this is deep DPG (DDPG,
    Lillicrap et al. 2016), what ``DPG("MlpPolicy", env)`` learns with on a task nobody tuned: in 5·10⁴ steps it
    reaches 1.00 of TD3's defaults' gain over random on Pendulum-v1, MountainCarContinuous-v0 (where neither class
    reaches the flag), InvertedPendulum-v5 and InvertedDoublePendulum-v5, 0.93 on Reacher-v5, 1.80 on Hopper-v5,
    0.69 on HalfCheetah-v5 and 0.29 on Swimmer-v5 (held-out seeds; docs/benchmarks.md). TD3's [400, 300] networks
    (``policy_kwargs=dict(net_arch=[400, 300])``) raise the HalfCheetah-v5 IQM of development seeds from 1 490 to
    1 720 at about a quarter of the speed. On Swimmer-v5 TD3 with DPG's [64, 64] networks keeps 0.93 of its
    defaults' gain while DPG's evaluations swing from one to the next: at equal networks what differs is what TD3
    adds (twin critics, target-policy smoothing, delayed actor updates), so where DPG swings like this, use TD3.

    ``critic="compatible"`` (COPDAC): Q^w(s, a) = (a − μθ(s))ᵀ ∇θμθ(s)ᵀ w + V^v(s), i.e. linear in the compatible
    features φ(s, a) = ∇θμθ(s)(a − μθ(s)). Updates (with SGD they are exactly the paper's; other optimizers follow
    the same directions)::

        w ← w + α_w δ φ(s, a),   v ← v + α_v δ ∇v V^v(s),
        θ ← θ + α_θ ∇θμθ(s) ∇θμθ(s)ᵀ w        (natural=False)
        θ ← θ + α_θ w                           (natural=True: w is the natural gradient)

    ∇θμθ(s)ᵀ w is a Jacobian-vector product and ∇θμθ(s) c a vector-Jacobian product; the Jacobian is never built.
    The paper's online COPDAC-Q (no replay, no target networks) is ``DPG("MlpPolicy", env, **DPG.paper_settings)``.

    Paper: D. Silver, G. Lever, N. Heess, T. Degris, D. Wierstra, M. Riedmiller, "Deterministic Policy Gradient
    Algorithms", ICML 2014. https://proceedings.mlr.press/v32/silver14.html

    :param policy: the policy model (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy`` or a :class:`DPGPolicy`
        subclass)
    :param env: the environment (a Box action space), or its gymnasium id
    :param learning_rate: actor step size α_θ, a float or a schedule of the remaining progress (1 → 0)
    :param critic_learning_rate: critic step size α_w = α_v (float or schedule); ``None``: same as ``learning_rate``
    :param critic: ``"mlp"`` (default: a neural Q(s, a)) or ``"compatible"`` (the paper's COPDAC critic)
    :param natural: actor step θ += α_θ w (natural gradient); only with ``critic="compatible"``
    :param on_policy: SARSA target with the executed next action (True) or Q-learning target with μθ(s′) (False)
    :param buffer_size: a replay buffer of that many transitions (default 10⁶, as TD3's), sampled uniformly in
        batches of ``batch_size``; ``None``: online (the paper's), each update uses the transitions of the latest
        rollout (``train_freq`` steps × ``n_envs``) in order, each once per gradient step
    :param learning_starts: steps of uniformly random actions before learning starts
    :param batch_size: minibatch size when sampling the replay buffer (unused online)
    :param tau: soft update coefficient of the target networks, in [0, 1] (1: hard copy, 0: frozen; unused without
        target networks)
    :param gamma: discount factor, in [0, 1]
    :param train_freq: update every ``train_freq`` steps, or ``(n, "step")``; ``(n, "episode")`` only with replay
    :param gradient_steps: gradient steps after each rollout (``-1``: as many as environment steps collected)
    :param action_noise: the behaviour policy's exploration noise added to μθ(s) (e.g. ``NormalActionNoise``)
    :param replay_buffer_class: ``None`` (default): DPG's own transition buffer (online or replay, SARSA targets).
        Any SB3 replay buffer class (e.g. ``HerReplayBuffer``), sampled through its ``sample()``; it needs an int
        ``buffer_size`` and ``on_policy=False`` (SB3's buffers do not return the executed next action)
    :param replay_buffer_kwargs: keyword arguments for the replay buffer on creation
    :param optimize_memory_usage: SB3's memory-efficient buffer layout (s′ stored as the next row's s); needs
        ``replay_buffer_kwargs=dict(handle_timeout_termination=False)``, and is not available for Dict observations
    :param target_networks: bootstrap from slowly tracking copies of actor and critic (on by default; the paper
        has none)
    :param compile_update: compute the losses of each gradient step with a function compiled once by
        ``torch.compile`` (``critic="mlp"`` only). It pays on an accelerator, where a small network's step is mostly
        kernel launches, and only for long runs: a ``learn`` call of fewer than 10 000 gradient steps, or a machine
        where compiling fails, uses the eager update (one line says so). ``model.compile_seconds`` is the time spent
        compiling
    :param stats_window_size: number of episodes averaged for the rollout logs
    :param tensorboard_log: TensorBoard log folder (None: no logging)
    :param policy_kwargs: keyword arguments for the policy (``net_arch``, ``optimizer_class``, ...)
    :param verbose: 0 silent, 1 info, 2 debug
    :param seed: random seed
    :param device: torch device (``"auto"``, ``"cpu"``, ``"cuda"``)
    :param _init_setup_model: whether to build the networks at construction
    """

    #: The paper's online algorithm: compatible critic, updates from the latest transitions, no target networks.
    paper_settings: ClassVar[dict[str, Any]] = {"critic": "compatible", "buffer_size": None, "target_networks": False}
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    supported_action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Box,)
    action_space_hint: ClassVar[str] = (
        "A deterministic policy gradient needs ∇aQ(s, a); for discrete actions use 'sql' (soft Q-learning) or 'dqn'."
    )
    policy: DPGPolicy
    actor: Actor
    critic: CompatibleCritic | ContinuousCritic
    replay_buffer: ReplayBuffer | None

    def __init__(
        self,
        policy: str | type[DPGPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        critic_learning_rate: float | Schedule | None = None,
        critic: str = "mlp",
        natural: bool = False,
        on_policy: bool = False,
        buffer_size: int | None = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        target_networks: bool = True,
        compile_update: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        _check_hyperparameters(
            learning_rate, critic_learning_rate, critic, natural, buffer_size, batch_size, tau, gamma, gradient_steps
        )
        _check_replay_buffer(replay_buffer_class, buffer_size, on_policy)
        if compile_update and critic != "mlp":
            raise InvalidValueError(
                "compile_update=True needs critic='mlp': the compatible critic's step is not compiled"
            )
        if env is not None:
            env = maybe_make_env(env, verbose)
            require_action_space(type(self), env.action_space)
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size=buffer_size or 1,  # the actual size is set in _setup_model
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=self.supported_action_spaces,
            support_multi_env=True,
        )
        self.online = buffer_size is None
        self.critic_learning_rate = learning_rate if critic_learning_rate is None else critic_learning_rate
        self.critic_type = critic
        self.natural = natural
        self.on_policy = on_policy
        self.target_networks = target_networks
        self.compile_update = compile_update
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._convert_train_freq()
        if self.online:
            if self.train_freq.unit != TrainFrequencyUnit.STEP:  # type: ignore[union-attr]
                raise ValueError(
                    "Online DPG (buffer_size=None) needs train_freq in steps, got "
                    f"{self.train_freq}; pass train_freq=n (steps) or set buffer_size to use a replay buffer"
                )
            # exactly the latest rollout, plus one row so that SARSA can see the successor of its oldest row
            rows = self.train_freq.frequency + (1 if self.on_policy else 0)  # type: ignore[union-attr]
            # with the memory-saving layout the row at the write position only holds the newest s′
            rows += 1 if self.optimize_memory_usage else 0
            self.buffer_size = rows * self.n_envs
        if self.replay_buffer_class is None:
            dict_observations = isinstance(self.observation_space, spaces.Dict)
            self.replay_buffer_class = DictTransitionBuffer if dict_observations else TransitionBuffer
        # the critic settings reach the policy without joining the stored policy_kwargs, which stay the user's (as
        # SB3's): load(..., policy_kwargs=<what the model was built with>) compares them with the stored ones
        given = self.policy_kwargs
        self.policy_kwargs = {**given, "critic_type": self.critic_type, "target_networks": self.target_networks}
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = given
        self.critic_lr_schedule = FloatSchedule(self.critic_learning_rate)
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self._actor_parameters = dict(self.actor.named_parameters())
        self._actor_chain = actor_chain(self.actor, self._actor_parameters)  # the actor's structure, found once
        self._value_parameters = [p for name, p in self.critic.named_parameters() if not name.startswith("w.")]
        self._target_updates: list[PolyakTarget] = []
        if self.policy.actor_target is not None and self.policy.critic_target is not None:
            self._target_updates = [
                PolyakTarget(self.critic, self.policy.critic_target),
                PolyakTarget(self.actor, self.policy.actor_target),
            ]
        self._deep_dpg_loss_fn = self._compiled_update(self._deep_dpg_losses)

    # ------------------------------------------------------------------ behaviour policy
    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """β(s) = clip(μθ(s) + noise) in the normalised action box; returns (env action, buffer action).

        The same behaviour as SB3's off-policy default, without the generic ``predict`` round trip (observation
        checks, unscale then rescale) on every environment step.
        """
        if self.num_timesteps < learning_starts or not isinstance(self.observation_space, spaces.Box):
            return super()._sample_action(learning_starts, action_noise, n_envs)
        assert self._last_obs is not None, "self._last_obs was not set"
        with th.no_grad():
            scaled_action = self.actor(th.as_tensor(self._last_obs, device=self.device)).cpu().numpy()
        scaled_action = scaled_action.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1.0, 1.0)
        return self.policy.unscale_action(scaled_action), scaled_action

    # ------------------------------------------------------------------ training
    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        self.policy.set_training_mode(True)
        actor_rate, critic_rate = self._update_learning_rates()
        self.logger.record("train/learning_rate", actor_rate)
        self.logger.record("train/critic_learning_rate", critic_rate)
        update = self._copdac_q_update if self.critic_type == "compatible" else self._deep_dpg_update
        stats: list[th.Tensor] = []
        for _ in range(gradient_steps):
            batch = self._next_batch(batch_size)
            if batch is None:  # SARSA before any transition has a successor
                break
            stats.append(th.stack(update(batch)))
            if self.target_networks:
                self._update_targets()
            self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if stats:
            means = th.stack(stats).mean(dim=0).tolist()
            for key, value in zip(("td_error", "critic_loss", "actor_loss"), means, strict=True):
                self.logger.record(f"train/{key}", value)
        if isinstance(self.critic, CompatibleCritic):
            self.logger.record("train/w_norm", self.critic.w_norm().item())

    def _next_batch(self, batch_size: int) -> TransitionBatch | None:
        """Online: the transitions of the latest rollout, in order; with replay: a uniform sample."""
        assert self.replay_buffer is not None
        if self.online:
            assert isinstance(self.replay_buffer, TransitionBuffer), "online updates need DPG's transition buffer"
            rows = self.train_freq.frequency  # type: ignore[union-attr]
            return self.replay_buffer.latest(rows, self.on_policy, env=self._vec_normalize_env)
        return self._sample_batch(batch_size)

    def _sample_batch(self, batch_size: int) -> TransitionBatch | None:
        """A replay batch: from DPG's transition buffer, or through ``sample()`` of any other SB3 buffer."""
        assert self.replay_buffer is not None
        if isinstance(self.replay_buffer, TransitionBuffer):
            return self.replay_buffer.sample_transitions(batch_size, self.on_policy, env=self._vec_normalize_env)
        samples = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
        return TransitionBatch(
            observations=samples.observations,
            actions=samples.actions,
            next_observations=samples.next_observations,
            dones=samples.dones,
            rewards=samples.rewards,
            next_actions=None,
            next_action_known=None,
            discounts=samples.discounts,
        )

    def _update_learning_rates(self) -> tuple[float, float]:
        """Set α_θ and α_w from their schedules at the current progress and return them."""
        actor_rate = self.lr_schedule(self._current_progress_remaining)
        critic_rate = self.critic_lr_schedule(self._current_progress_remaining)
        update_learning_rate(self.actor.optimizer, actor_rate)
        update_learning_rate(self.critic.optimizer, critic_rate)
        return actor_rate, critic_rate

    def td_target(self, batch: TransitionBatch) -> th.Tensor:
        """y = r + γ (1 − terminated) Q(s′, a′), with a′ = μθ(s′) (Q-learning) or the executed next action (SARSA).

        With target networks, μ and Q in the bootstrap term are the target copies. When a′ is unknown because the
        episode was truncated after s′, μθ(s′) stands in for it.

        :param batch: transitions, with next actions when ``on_policy``
        :return: targets, shape ``(batch, 1)``
        """
        actor = self.policy.actor_target or self.actor
        critic = self.policy.critic_target or self.critic
        with th.no_grad():
            if isinstance(critic, CompatibleCritic):
                next_q = critic.value(batch.next_observations)
                if self.on_policy:
                    # Q^w(s′, μ(s′)) = V(s′): only SARSA needs the advantage term at a′
                    next_mu, next_mu_jvp = parameter_jvp(actor, batch.next_observations, critic.direction())
                    next_q = next_q + compatible_advantage(self._next_actions(batch, next_mu), next_mu, next_mu_jvp)
            else:
                next_mu = actor(batch.next_observations)
                next_actions = self._next_actions(batch, next_mu) if self.on_policy else next_mu
                next_q = critic.q1_forward(batch.next_observations, next_actions)  # type: ignore[arg-type]
            return self._bootstrap(batch, next_q)

    def _bootstrap(self, batch: TransitionBatch, next_q: th.Tensor) -> th.Tensor:
        """r + γ (1 − terminated) Q(s′, a′); γ is the buffer's per-sample discount when it gives one (n-step)."""
        discount = self.gamma if batch.discounts is None else batch.discounts
        return batch.rewards + (1.0 - batch.dones) * discount * next_q

    @staticmethod
    def _next_actions(batch: TransitionBatch, next_mu: th.Tensor) -> th.Tensor:
        assert batch.next_actions is not None and batch.next_action_known is not None
        return th.where(batch.next_action_known.bool(), batch.next_actions, next_mu)

    def _copdac_q_update(self, batch: TransitionBatch) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """One COPDAC-Q step (Silver et al. 2014, section 4.3), every direction from the current θ, w and v::

            δ = y − Q^w(s, a),   Q^w(s, a) = (a − μθ(s))ᵀ ∇θμθ(s)ᵀ w + V^v(s)
            w ← w + α_w δ φ(s, a),   v ← v + α_v δ ∇v V^v(s),   θ ← θ + α_θ ∇θμθ(s) ∇θμθ(s)ᵀ w  (natural: α_θ w)

        μθ is linearised once at the batch's states: its forward map gives ∇θμθ(s)ᵀ w, its transpose the parameter
        directions φ(s, a) δ = ∇θμθ(s) (δ (a − μθ(s))) and ∇θμθ(s) (∇θμθ(s)ᵀ w). The steps are written as gradients
        of the batch mean, so that any optimizer follows them (SGD gives the paper's updates).
        """
        critic = self.critic
        assert isinstance(critic, CompatibleCritic)
        target = self.td_target(batch)
        actor = ActorLinearization(self.actor, batch.observations, self._actor_parameters, chain=self._actor_chain)
        mu, mu_jvp = actor.output, actor.jacobian_product([w.detach() for w in critic.w])
        td_error = target - compatible_advantage(batch.actions, mu, mu_jvp) - critic.value(batch.observations)
        delta = td_error.detach()
        check_finite("the TD error", delta, algorithm=self, causes=batch_causes(batch))
        n_samples = batch.actions.shape[0]
        critic_loss = 0.5 * td_error.pow(2).mean()  # its gradient reaches v only: w's is −δ φ(s, a), below
        directions = {
            tuple(self._value_parameters): th.autograd.grad(critic_loss, self._value_parameters),
            tuple(critic.w): actor.transpose_jacobian_product(-delta * (batch.actions - mu) / n_samples),
            tuple(self._actor_parameters.values()): (
                [-w.detach() for w in critic.w]
                if self.natural
                else actor.transpose_jacobian_product(-mu_jvp / n_samples)
            ),
        }
        for parameters, gradients in directions.items():
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.grad = gradient
        critic.optimizer.step()
        self.actor.optimizer.step()
        actor_loss = -(mu * mu_jvp).sum(dim=-1).mean()  # −E[μθ(s)ᵀ ∇θμθ(s)ᵀ w]: its gradient is the vanilla step
        return delta.abs().mean(), critic_loss.detach(), actor_loss.detach()

    def _deep_dpg_update(self, batch: TransitionBatch) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """One step with a neural Q (Lillicrap et al. 2016): the critic descends ½ E[(y − Q(s, a))²], the actor
        ascends Q(s, μθ(s)), whose gradient is the deterministic policy gradient ∇θμθ(s) ∇aQ(s, a)|a=μθ(s)."""
        td_error, critic_loss, actor_loss = self._deep_dpg_loss_fn(batch)
        check_finite("the critic and actor losses", critic_loss, actor_loss, algorithm=self, causes=batch_causes(batch))
        self.critic.optimizer.zero_grad()
        self.actor.optimizer.zero_grad()
        (critic_loss + actor_loss).backward()
        self.critic.optimizer.step()
        self.actor.optimizer.step()
        return td_error.detach().abs().mean(), critic_loss.detach(), actor_loss.detach()

    def _deep_dpg_losses(self, batch: TransitionBatch) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The TD error, the critic loss and the actor loss −E[Q(s, μθ(s))] with the critic held constant, so that
        the actor loss reaches θ only. A pure function of the batch and the parameters: ``compile_update`` compiles
        it as it stands."""
        assert isinstance(self.critic, ContinuousCritic)
        td_error = self.td_target(batch) - self.critic.q1_forward(batch.observations, batch.actions)  # type: ignore[arg-type]
        actor_loss = -frozen_forward(self.critic, batch.observations, self.actor(batch.observations))[0].mean()
        return td_error, 0.5 * td_error.pow(2).mean(), actor_loss

    def _update_targets(self) -> None:
        for target in self._target_updates:
            target.update(self.tau)

    def learn(
        self: SelfDPG,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DPG",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDPG:
        self._prepare_compilation(total_timesteps, reset_num_timesteps)
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    # ------------------------------------------------------------------ saving
    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "actor",
            "critic",
            "_actor_parameters",
            "_value_parameters",
            "_actor_chain",
            "_target_updates",
            "_deep_dpg_loss_fn",
            "_compiled_updates",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer"], []


def _check_replay_buffer(
    replay_buffer_class: type[ReplayBuffer] | None, buffer_size: int | None, on_policy: bool
) -> None:
    """An SB3 replay buffer other than DPG's own is sampled uniformly and has no next actions: say what it needs."""
    if replay_buffer_class is None or issubclass(replay_buffer_class, TransitionBuffer):
        return
    if buffer_size is None:
        raise ValueError(
            f"replay_buffer_class={replay_buffer_class.__name__} is a replay buffer: pass buffer_size=<int> "
            "(buffer_size=None means online updates from DPG's own transition buffer)"
        )
    if on_policy:
        raise ValueError(
            f"on_policy=True (SARSA) needs the executed next action, which {replay_buffer_class.__name__} does not "
            "store; use on_policy=False or leave replay_buffer_class=None"
        )


def _check_hyperparameters(
    learning_rate: float | Schedule,
    critic_learning_rate: float | Schedule | None,
    critic: str,
    natural: bool,
    buffer_size: int | None,
    batch_size: int,
    tau: float,
    gamma: float,
    gradient_steps: int,
) -> None:
    """Raise an :class:`~sbx_lecture.infra.validation.InvalidValueError` naming the argument and its rule."""
    require_number("learning_rate", learning_rate, 0.0, low_open=True, schedule=True)
    require_number("critic_learning_rate", critic_learning_rate, 0.0, low_open=True, schedule=True, optional=True)
    require_choice("critic", critic, CRITIC_TYPES)
    if natural and critic != "compatible":
        raise InvalidValueError(
            "natural=True (θ += α w) needs critic='compatible': w only exists for the compatible critic"
        )
    require_integer("buffer_size", buffer_size, 1, optional=True)  # None: online updates
    require_integer("batch_size", batch_size, 1)
    check_tau(tau)
    require_number("gamma", gamma, 0.0, 1.0)
    require_integer("gradient_steps", gradient_steps, -1)  # -1: one per collected step

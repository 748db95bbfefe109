"""REINFORCE: the Monte-Carlo policy gradient of the lecture's opening slides, with an optional learned baseline."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from sbx_lecture.infra.finite import batch_causes, check_finite, raise_for_non_finite_observations
from sbx_lecture.infra.schedules import ClampedProgressMixin
from sbx_lecture.infra.validation import require_integer, require_number
from sbx_lecture.loading import SafeLoadMixin
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sbx_lecture_pg.buffers import MAX_EPISODE_STEPS, EpisodeBatch, EpisodeBuffer
from sbx_lecture_pg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sbx_lecture_pg.returns import episode_return, reward_to_go

SelfREINFORCE = TypeVar("SelfREINFORCE", bound="REINFORCE")


@dataclass
class ScoreWeights:
    """What multiplies ∇log π(a_t|s_t) in the estimator, before the baseline is subtracted.

    :param returns: ``(N,)`` the return term of every step (G_t, G_0, or their importance-weighted versions)
    :param baseline_scale: ``(N,)`` factor of b(s_t) in the advantage (1 on-policy, the importance weight off-policy)
    :param baseline_targets: ``(N,)`` regression targets of the baseline, estimates of V^π(s_t)
    :param stats: extra values to log under ``train/``
    """

    returns: np.ndarray
    baseline_scale: np.ndarray
    baseline_targets: np.ndarray
    stats: dict[str, float] = field(default_factory=dict)


class REINFORCE(SafeLoadMixin, ClampedProgressMixin, OnPolicyAlgorithm):
    """REINFORCE: Monte-Carlo policy gradient with an optional learned baseline (Williams, 1992).

    The lecture's estimator, from complete episodes sampled with π_θ, with reward-to-go and a baseline b(s):

    .. math::

        \\hat g = \\frac{1}{E} \\sum_{i=1}^{E} \\sum_{t=0}^{T_i - 1}
                  \\nabla_θ \\log π_θ(a_t^i | s_t^i) \\,\\big(G_t^i - b(s_t^i)\\big),
        \\qquad G_t = \\sum_{t' \\ge t} γ^{t'-t} r_{t'}

    It is unbiased for ∇J(θ) for any b that depends on the state only (E[∇log π · b(s)] = 0); a good b lowers
    the variance. As in nearly every implementation, the γ^t factor in front of each term is dropped (see
    P. Thomas, "Bias in Natural Actor-Critic Algorithms", ICML 2014). With ``reward_to_go=False`` every step is
    weighted by the whole-episode return G_0 (the slide's first form, higher variance).

    The returns are true Monte-Carlo returns: every update uses the first ``n_episodes`` complete episodes of
    each environment and nothing is bootstrapped, except, only with ``bootstrap_truncated=True`` and a baseline,
    at a time-limit truncation, where γ·b(s_T) stands in for the rest of the cut episode. The baseline is the
    value head of an actor-critic policy, fitted by regression onto G_t in the same gradient step (loss weight
    ``vf_coef``); it is computed before that step, so it does not depend on the actions it is subtracted from.

    Paper: R. J. Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
    Learning", Machine Learning 8, 1992.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: Learning rate of the Adam optimizer; it can be a schedule of the progress remaining
        (from 1 to 0)
    :param n_episodes: Number of complete episodes per environment in each update (batch: n_episodes * n_envs).
        With the defaults (learning rate 10⁻³, 4 episodes, a baseline) REINFORCE reaches 0.89 or more of A2C's gain
        over random on CartPole-v1, MountainCarContinuous-v0, InvertedPendulum-v5, Reacher-v5 and Hopper-v5 in
        10⁵ steps, but 0.05 on Acrobot-v1, 0.45 on HalfCheetah-v5, 0.66 on Swimmer-v5 and 0.71 on
        InvertedDoublePendulum-v5 (held-out seeds; docs/benchmarks.md): long episodes leave it 25 updates where A2C
        makes 20 000. Neither 10⁻² nor one episode per update did better across those tasks.
    :param gamma: Discount factor γ in [0, 1]
    :param baseline: Whether to learn a baseline b(s) and subtract it from the returns
    :param reward_to_go: Weight ∇log π(a_t|s_t) by the reward-to-go G_t (``True``) or by the episode return G_0
    :param normalize_advantage: Whether to standardise the advantages of each batch (changes the gradient's scale
        and, slightly, its direction; off by default so that the estimator stays the lecture's)
    :param bootstrap_truncated: With a baseline, add γ·b(s_T) to the last reward of episodes cut by a time limit
    :param ent_coef: Entropy bonus coefficient; it can be a schedule of the progress remaining
    :param vf_coef: Weight of the baseline's regression loss; it can be a schedule of the progress remaining
    :param max_grad_norm: Maximum norm of the gradient (``None``: no clipping)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
    :param sde_sample_freq: Sample a new gSDE noise matrix every n steps (-1: only at the start of the rollout)
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
    rollout_buffer: EpisodeBuffer  # type: ignore[assignment]
    policy: ActorCriticPolicy

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_episodes: int = 4,
        gamma: float = 0.99,
        baseline: bool = True,
        reward_to_go: bool = True,
        normalize_advantage: bool = False,
        bootstrap_truncated: bool = False,
        ent_coef: float | Schedule = 0.0,
        vf_coef: float | Schedule = 0.5,
        max_grad_norm: float | None = None,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        n_episodes = require_integer("n_episodes", n_episodes, 1)
        require_number("gamma", gamma, 0.0, 1.0)
        require_number("learning_rate", learning_rate, 0.0, low_open=True, schedule=True)
        require_number("ent_coef", ent_coef, 0.0, schedule=True)
        require_number("vf_coef", vf_coef, 0.0, schedule=True)
        require_number("max_grad_norm", max_grad_norm, 0.0, low_open=True, optional=True)
        if env is not None:
            env = maybe_make_env(env, verbose)
            self._check_spaces(env.observation_space, env.action_space)

        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=1,  # unused: a rollout is n_episodes complete episodes per environment
            gamma=gamma,
            gae_lambda=1.0,
            ent_coef=ent_coef,  # type: ignore[arg-type]
            vf_coef=vf_coef,  # type: ignore[arg-type]
            max_grad_norm=max_grad_norm,  # type: ignore[arg-type]
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=self.supported_action_spaces,
        )
        self.n_episodes = int(n_episodes)
        self.baseline = baseline
        self.reward_to_go = reward_to_go
        self.normalize_advantage = normalize_advantage
        self.bootstrap_truncated = bootstrap_truncated
        self._steps_in_episode = np.zeros(0, dtype=np.int64)
        if _init_setup_model:
            self._setup_model()

    @classmethod
    def _check_spaces(cls, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        if not isinstance(action_space, cls.supported_action_spaces):
            supported = ", ".join(space.__name__ for space in cls.supported_action_spaces)
            raise ValueError(
                f"{cls.__name__} does not support the action space {action_space}: it supports {supported}"
            )

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        )
        self.policy = self.policy.to(self.device)
        self.rollout_buffer = EpisodeBuffer(
            self.n_episodes, self.n_envs, self.observation_space, self.action_space, self.device
        )
        self._steps_in_episode = np.zeros(self.n_envs, dtype=np.int64)

    # --- sampling ------------------------------------------------------------------------------------------------

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: EpisodeBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """Run the current policy until every environment has completed ``n_episodes`` episodes.

        An environment left in the middle of an episode by the previous rollout is reset first, so that each
        rollout starts fresh episodes (their first steps would otherwise come from an older policy).

        :param env: The training environment
        :param callback: Callback called at each step (and at the start and end of the rollout)
        :param rollout_buffer: The :class:`EpisodeBuffer` to fill
        :param n_rollout_steps: Unused (rollouts are counted in episodes)
        :return: False if the callback stopped the rollout early
        """
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        if len(self._steps_in_episode) != env.num_envs or np.any(self._steps_in_episode > 0):
            self._last_obs = env.reset()  # type: ignore[assignment]
            self._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
            self._steps_in_episode = np.zeros(env.num_envs, dtype=np.int64)
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)

        callback.on_rollout_start()
        n_steps = 0
        # per environment, this learn() call's budget: an episode that lasts as long is cut there (see _cut_at_budget)
        budget = self._total_timesteps - self._num_timesteps_at_start
        episode_limit = -(-budget // env.num_envs) if budget > 0 else MAX_EPISODE_STEPS
        while not rollout_buffer.full:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                try:
                    actions, _, log_probs = self.policy(obs_tensor)
                except ValueError as error:  # a torch distribution refusing NaN: say so if the observations did it
                    raise_for_non_finite_observations(self, error)
                    raise
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            dones = self._cut_at_budget(dones, infos, new_obs, episode_limit)
            self.num_timesteps += env.num_envs
            n_steps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                log_probs.cpu().numpy(),
                dones,
                infos,
            )
            self._steps_in_episode = np.where(dones, 0, self._steps_in_episode + 1)
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _cut_at_budget(
        self, dones: np.ndarray, infos: list[dict[str, Any]], new_obs: Any, episode_limit: int
    ) -> np.ndarray:
        """End, as a time limit would, every episode that has lasted as long as the learn budget (per environment).

        Monte-Carlo returns need episodes that end. On an environment without a time limit an episode could run
        forever and ``learn`` would never return; instead such an episode is cut after ``episode_limit`` steps and
        counted as truncated (with ``bootstrap_truncated``, γ·b(s_T) stands in for the rest), and the environment
        goes on from where it is as a new episode. An episode shorter than the budget is never cut, so runs whose
        episodes end within the budget are unchanged.

        :param dones: ``(n_envs,)`` the environments' own episode ends
        :param infos: the step's infos; a cut episode's gets ``TimeLimit.truncated`` and ``terminal_observation``
        :param new_obs: the observations after the step
        :param episode_limit: the longest episode kept whole, in steps of one environment
        :return: the episode ends, cut episodes included
        """
        cut = ~dones & (self._steps_in_episode + 1 >= episode_limit)
        if not cut.any():
            return dones
        warnings.warn(
            f"{type(self).__name__}: an episode ran for the whole learn budget ({episode_limit} steps per "
            "environment) without ending and was cut there as if by a time limit; wrap the environment in "
            "gymnasium.wrappers.TimeLimit to choose where episodes end",
            UserWarning,
            stacklevel=3,
        )
        for idx in np.flatnonzero(cut):
            final = {key: value[idx] for key, value in new_obs.items()} if isinstance(new_obs, dict) else new_obs[idx]
            infos[idx] = {**infos[idx], "TimeLimit.truncated": True, "terminal_observation": final}
        return dones | cut

    def collect_episodes(self) -> EpisodeBatch:
        """Sample one batch (``n_episodes`` per environment) with the current policy, without learning from it.

        Useful to study the estimator: ``model.policy_gradient(model.collect_episodes())``.
        """
        if self.env is None:
            raise ValueError("collect_episodes needs an environment: pass one to the constructor or call set_env()")
        if self._last_obs is None:
            _, callback = self._setup_learn(0, None, reset_num_timesteps=True)
        else:
            callback = self._init_callback(None)
        self.collect_rollouts(self.env, callback, self.rollout_buffer, 0)
        return self.rollout_buffer.batch()

    # --- the estimator -------------------------------------------------------------------------------------------

    def _rewards_with_bootstrap(self, batch: EpisodeBatch) -> np.ndarray:
        """The rewards, plus γ·b(s_T) on the last step of truncated episodes if ``bootstrap_truncated`` is set."""
        rewards = batch.rewards.copy()
        if self.bootstrap_truncated and self.baseline and batch.final_observations is not None:
            with th.no_grad():
                final_values = self.policy.predict_values(batch.final_observations).flatten().cpu().numpy()
            rewards[batch.ends[batch.final_episode_ids] - 1] += self.gamma * final_values
        return rewards

    def _score_weights(self, batch: EpisodeBatch, log_prob: th.Tensor) -> ScoreWeights:
        """On-policy: G_t (or G_0) for the score, G_t as the baseline's target."""
        rewards = self._rewards_with_bootstrap(batch)
        to_go = reward_to_go(rewards, batch.last_step_mask, self.gamma)
        returns = to_go if self.reward_to_go else episode_return(rewards, batch.episode_ids, batch.starts, self.gamma)
        return ScoreWeights(returns=returns, baseline_scale=np.ones_like(to_go), baseline_targets=to_go)

    def _losses(self, batch: EpisodeBatch) -> tuple[th.Tensor, th.Tensor, th.Tensor, dict[str, float]]:
        """(policy-gradient loss, baseline loss, entropy loss, statistics) of ``batch`` at the current θ.

        The policy-gradient loss is -Σ log π(a_t|s_t) Â_t / E, whose gradient is -ĝ.
        """
        values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, batch.actions)
        values = values.flatten()
        weights = self._score_weights(batch, log_prob.detach())
        returns = th.as_tensor(weights.returns, dtype=th.float32, device=self.device)
        advantages = returns
        if self.baseline:
            scale = th.as_tensor(weights.baseline_scale, dtype=th.float32, device=self.device)
            advantages = returns - scale * values.detach()
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(log_prob * advantages).sum() / batch.n_episodes
        targets = th.as_tensor(weights.baseline_targets, dtype=th.float32, device=self.device)
        baseline_loss = th.mean((values - targets) ** 2)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        stats = {
            "n_episodes": float(batch.n_episodes),
            "mean_return": float(np.mean(weights.returns)),
            **weights.stats,
        }
        if self.baseline:
            stats["explained_variance"] = float(
                explained_variance(values.detach().cpu().numpy().astype(np.float32), weights.baseline_targets)
            )
        return policy_loss, baseline_loss, entropy_loss, stats

    def policy_gradient(self, batch: EpisodeBatch) -> th.Tensor:
        """The estimate ĝ of ∇_θ J on ``batch``, flattened over the policy's parameters (zeros where unused).

        The ascent direction (the negative gradient of the policy-gradient loss); no parameter is changed.
        """
        self.policy.zero_grad(set_to_none=True)
        policy_loss, _, _, _ = self._losses(batch)
        parameters = list(self.policy.parameters())
        grads = th.autograd.grad(policy_loss, parameters, allow_unused=True)
        return -th.cat(
            [(g if g is not None else th.zeros_like(p)).flatten() for g, p in zip(grads, parameters, strict=True)]
        )

    def _gradient_step(self, batch: EpisodeBatch) -> dict[str, float]:
        """One Adam step on the policy-gradient loss (+ entropy and baseline terms); returns what to log."""
        ent_coef = FloatSchedule(self.ent_coef)(self._current_progress_remaining)
        vf_coef = FloatSchedule(self.vf_coef)(self._current_progress_remaining)
        policy_loss, baseline_loss, entropy_loss, stats = self._losses(batch)
        loss = policy_loss + ent_coef * entropy_loss
        if self.baseline:
            loss = loss + vf_coef * baseline_loss
        self.policy.optimizer.zero_grad()
        loss.backward()
        parameters = list(self.policy.parameters())
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        grad_norm = th.nn.utils.clip_grad_norm_(parameters, max_norm)
        check_finite("the loss and its gradient", loss, grad_norm, algorithm=self, causes=batch_causes(batch))
        self.policy.optimizer.step()
        self._n_updates += 1
        return {
            "policy_gradient_loss": policy_loss.item(),
            "baseline_loss": baseline_loss.item(),
            "entropy_loss": entropy_loss.item(),
            "grad_norm": float(grad_norm),
            "loss": loss.item(),
            **stats,
        }

    def train(self) -> None:
        """One gradient step on the episodes of the last rollout."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        stats = self._gradient_step(self.rollout_buffer.batch())
        self._log(stats)

    def _log(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    # --- SB3 plumbing --------------------------------------------------------------------------------------------

    def learn(
        self: SelfREINFORCE,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "REINFORCE",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfREINFORCE:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        # the episode buffer (base class: rollout_buffer) is rebuilt empty; the per-env step counters describe the
        # environment, which is not saved either
        return [*super()._excluded_save_params(), "_steps_in_episode"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

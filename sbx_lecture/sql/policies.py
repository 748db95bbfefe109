"""Policies for soft Q-learning: a soft Q-function and, for continuous actions, a state-conditioned sampler.

* Discrete actions: one network outputs Q(s, ·); the policy is the Boltzmann distribution softmax(Q(s, ·)/α).
* Box actions: a network Q(s, a) on the squashed action box [-1, 1]^d and a sampling network
  u = f_φ(ξ; s), ξ ~ N(0, I), whose squashed output a = tanh(u) is trained by amortized SVGD to follow
  exp(Q(s, a)/α).

One policy class builds the right parts for the environment's action space, so ``"MlpPolicy"`` works for both.
"""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sbx_lecture.common.optimizers import fast_optimizer_kwargs

#: The reference implementation's hidden layers (haarnoja/softqlearning, MuJoCo experiments: layer_size 128). Every
#: Box-action gradient step runs the networks on (K_V + 2M)·batch particle rows, so at SAC's 256 × 256 the step costs
#: about four times SAC's; at 128 × 128 with batch 128 about as much as SAC's defaults (docs/algorithms/sql.md).
DEFAULT_NET_ARCH = [128, 128]


class DiscreteSoftQNetwork(nn.Module):
    """Q(s, ·) for a discrete action set: ``n_critics`` heads on one features extractor.

    :param features_extractor: network mapping observations to features
    :param features_dim: size of the features
    :param n_actions: number of actions
    :param net_arch: hidden layer sizes of every head
    :param activation_fn: activation between hidden layers
    :param n_critics: number of independent heads (2 for twin critics, combined with a minimum)
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        n_actions: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        n_critics: int,
    ) -> None:
        super().__init__()
        self.features_extractor = features_extractor
        self.heads = nn.ModuleList(
            nn.Sequential(*create_mlp(features_dim, n_actions, net_arch, activation_fn)) for _ in range(n_critics)
        )

    def forward(self, features: th.Tensor) -> th.Tensor:
        """:return: Q-values of every head, shape ``(n_critics, batch, n_actions)``"""
        return th.stack([head(features) for head in self.heads])


class ContinuousSoftQNetwork(nn.Module):
    """Q(s, a) on the squashed action box, ``n_critics`` heads on one features extractor.

    Actions may carry a particle dimension: the features of each state are computed once and broadcast to all of
    its particles, so K particles cost a single network call.

    :param features_extractor: network mapping observations to features
    :param features_dim: size of the features
    :param action_dim: dimension of the action box
    :param net_arch: hidden layer sizes of every head
    :param activation_fn: activation between hidden layers
    :param n_critics: number of independent heads (2 for twin critics, combined with a minimum)
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        n_critics: int,
    ) -> None:
        super().__init__()
        self.features_extractor = features_extractor
        self.heads = nn.ModuleList(
            nn.Sequential(*create_mlp(features_dim + action_dim, 1, net_arch, activation_fn)) for _ in range(n_critics)
        )

    def forward(self, features: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """
        :param features: state features, shape ``(batch, features_dim)``
        :param actions: squashed actions, shape ``(batch, action_dim)`` or ``(batch, K, action_dim)``
        :return: Q-values, shape ``(n_critics, batch)`` or ``(n_critics, batch, K)``
        """
        if actions.dim() == 3:
            features = features.unsqueeze(1).expand(-1, actions.shape[1], -1)
        inputs = th.cat([features, actions], dim=-1)
        return th.stack([head(inputs).squeeze(-1) for head in self.heads])


class SamplingNetwork(nn.Module):
    """State-conditioned sampler u = f_φ(ξ; s) = ξ + g_φ(s, ξ) with ξ ~ N(0, I); the action is tanh(u).

    The residual form starts close to u = ξ, a broad distribution over the whole action box, so SVGD begins from
    particles that already see every mode of exp(Q/α) instead of a point mass that could only find one.

    For state-dependent exploration (the algorithm's ``use_sde``) the sampler also holds one draw of ξ per
    environment, :meth:`reset_noise` draws it anew: while it is held, acting follows the deterministic map
    s ↦ tanh(f_φ(ξ; s)), so exploration is consistent over many steps (as gSDE's held exploration matrix in SAC,
    Raffin et al. 2022) instead of white noise that averages out from one step to the next.

    :param features_extractor: network mapping observations to features
    :param features_dim: size of the features
    :param action_dim: dimension of the action box (and of the noise ξ)
    :param net_arch: hidden layer sizes
    :param activation_fn: activation between hidden layers
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
    ) -> None:
        super().__init__()
        self.features_extractor = features_extractor
        self.action_dim = action_dim
        self.mlp = nn.Sequential(*create_mlp(features_dim + action_dim, action_dim, net_arch, activation_fn))
        self.held_noise: th.Tensor | None = None

    def reset_noise(self, n_envs: int = 1) -> None:
        """Draw the held exploration noise ξ ~ N(0, I) anew, one row per environment."""
        device = next(self.parameters()).device
        self.held_noise = th.randn(n_envs, self.action_dim, device=device)

    def exploration_noise(self, batch_size: int, device: th.device) -> th.Tensor:
        """The held ξ for a batch of ``batch_size`` states on ``device`` (its first row for a batch of another size)."""
        if self.held_noise is None or self.held_noise.device != device:
            self.reset_noise(batch_size)
        assert self.held_noise is not None
        if self.held_noise.shape[0] == batch_size:
            return self.held_noise
        return self.held_noise[:1].expand(batch_size, -1)

    def get_std(self) -> th.Tensor:
        """Standard deviation of the exploration noise ξ (logged as ``train/std`` with ``use_sde``)."""
        return th.ones(self.action_dim)

    def forward(self, features: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """
        :param features: state features, shape ``(batch, features_dim)``
        :param noise: ξ, shape ``(batch, action_dim)`` or ``(batch, M, action_dim)``
        :return: pre-squash particles u, same shape as ``noise``
        """
        if noise.dim() == 3:
            features = features.unsqueeze(1).expand(-1, noise.shape[1], -1)
        return noise + self.mlp(th.cat([features, noise], dim=-1))


class SQLPolicy(BasePolicy):
    """Soft Q-learning policy for discrete or Box action spaces.

    Builds ``q_net`` and ``q_net_target`` (:class:`DiscreteSoftQNetwork` or :class:`ContinuousSoftQNetwork`) and,
    for Box actions, a :class:`SamplingNetwork` ``sampler``. Each network has its own features extractor and its
    own optimizer (``q_net.optimizer``, ``sampler.optimizer``).

    :param observation_space: observation space
    :param action_space: action space (Discrete or Box)
    :param lr_schedule: learning-rate schedule of both optimizers
    :param ent_coef: temperature α used when acting (the algorithm keeps it in sync with its own schedule)
    :param net_arch: hidden layers, a list shared by all networks or ``dict(qf=[...], pi=[...])``
        (``pi`` is the sampler); default ``[128, 128]``
    :param activation_fn: activation function
    :param features_extractor_class: features extractor class
    :param features_extractor_kwargs: keyword arguments of the features extractor
    :param normalize_images: whether to divide image observations by 255
    :param optimizer_class: optimizer class
    :param optimizer_kwargs: optimizer keyword arguments (excluding the learning rate; Adam and AdamW get
        ``fused=True``, SGD and RMSprop ``foreach=True`` unless either is given)
    :param n_critics: number of Q heads; 2 gives twin critics combined with a minimum
    :param use_sde: Box actions: act with the sampler's held noise ξ (drawn anew by :meth:`reset_noise`) instead of
        a fresh draw at every step
    """

    q_net: DiscreteSoftQNetwork | ContinuousSoftQNetwork
    q_net_target: DiscreteSoftQNetwork | ContinuousSoftQNetwork
    sampler: SamplingNetwork | None

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        ent_coef: float = 1.0,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        use_sde: bool = False,
    ) -> None:
        if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
            raise ValueError(
                f"SQLPolicy supports Discrete and Box action spaces, got {action_space}. "
                "Use PPO or A2C for MultiDiscrete/MultiBinary actions."
            )
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=isinstance(action_space, spaces.Box),
        )
        self.optimizer_kwargs = fast_optimizer_kwargs(optimizer_class, self.optimizer_kwargs)
        if net_arch is None:
            net_arch = list(DEFAULT_NET_ARCH)
        if isinstance(net_arch, dict):
            self.q_net_arch, self.sampler_net_arch = list(net_arch["qf"]), list(net_arch["pi"])
        else:
            self.q_net_arch, self.sampler_net_arch = list(net_arch), list(net_arch)
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.use_sde = use_sde
        self.ent_coef = ent_coef
        self.is_discrete = isinstance(action_space, spaces.Discrete)
        self.action_dim = 1 if self.is_discrete else get_action_dim(action_space)
        self._build(lr_schedule)

    def _make_q_net(self) -> DiscreteSoftQNetwork | ContinuousSoftQNetwork:
        extractor = self.make_features_extractor()
        if isinstance(self.action_space, spaces.Discrete):
            n_actions = int(self.action_space.n)
            return DiscreteSoftQNetwork(
                extractor, extractor.features_dim, n_actions, self.q_net_arch, self.activation_fn, self.n_critics
            )
        return ContinuousSoftQNetwork(
            extractor, extractor.features_dim, self.action_dim, self.q_net_arch, self.activation_fn, self.n_critics
        )

    def _build(self, lr_schedule: Schedule) -> None:
        self.q_net = self._make_q_net()
        self.q_net_target = self._make_q_net()
        self.q_net_target.load_state_dict(self.q_net.state_dict())
        self.q_net_target.requires_grad_(False)
        self.q_net_target.train(False)
        self.q_net.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.q_net.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )
        self.sampler = None
        if not self.is_discrete:
            extractor = self.make_features_extractor()
            self.sampler = SamplingNetwork(
                extractor, extractor.features_dim, self.action_dim, self.sampler_net_arch, self.activation_fn
            )
            self.sampler.optimizer = self.optimizer_class(  # type: ignore[call-arg]
                self.sampler.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
            )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                activation_fn=self.activation_fn,
                n_critics=self.n_critics,
                use_sde=self.use_sde,
                ent_coef=self.ent_coef,
                lr_schedule=self._dummy_schedule,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
            )
        )
        return data

    # ----------------------------------------------------------------------------------------------------------
    # Soft Q-values
    # ----------------------------------------------------------------------------------------------------------
    def q_values(self, obs: PyTorchObs, actions: th.Tensor | None = None, target: bool = False) -> th.Tensor:
        """Q-values of every critic head.

        :param obs: preprocessed-or-raw observation batch
        :param actions: for Box actions, squashed actions ``(batch, d)`` or particles ``(batch, K, d)``
        :param target: evaluate the target network instead of the online one
        :return: ``(n_critics, batch, n_actions)`` for discrete actions, ``(n_critics, batch[, K])`` for Box
        """
        network = self.q_net_target if target else self.q_net
        features = self.extract_features(obs, network.features_extractor)
        if isinstance(network, DiscreteSoftQNetwork):
            return network(features)
        assert actions is not None, "Q(s, a) for Box actions needs the actions"
        return network(features, actions)

    def soft_q(self, obs: PyTorchObs, actions: th.Tensor | None = None, target: bool = False) -> th.Tensor:
        """The soft Q-function used for acting and targets: the minimum over the critic heads."""
        return self.q_values(obs, actions, target).min(dim=0).values

    # ----------------------------------------------------------------------------------------------------------
    # Sampling network
    # ----------------------------------------------------------------------------------------------------------
    def sample_particles(
        self, obs: PyTorchObs, n_particles: int | None = None, noise: th.Tensor | None = None
    ) -> th.Tensor:
        """Pre-squash sampler outputs u = f_φ(ξ; s), ξ ~ N(0, I).

        :param obs: observation batch
        :param n_particles: number of particles per state, or ``None`` for one (no particle dimension)
        :param noise: ξ of the output's shape, drawn by the caller; drawn here when ``None``
        :return: ``(batch, d)`` or ``(batch, n_particles, d)``
        """
        assert self.sampler is not None, "only Box action spaces have a sampling network"
        features = self.extract_features(obs, self.sampler.features_extractor)
        if noise is None:
            shape = (
                (features.shape[0], self.action_dim)
                if n_particles is None
                else (features.shape[0], n_particles, self.action_dim)
            )
            noise = th.randn(shape, device=features.device)
        return self.sampler(features, noise)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Discrete: a ~ softmax(Q/α), or argmax Q when deterministic.
        Box: a = tanh(f_φ(ξ; s)) with ξ ~ N(0, I) (the held ξ with ``use_sde``), or ξ = 0 when deterministic."""
        if self.is_discrete:
            q_values = self.soft_q(observation)
            if deterministic:
                return q_values.argmax(dim=-1)
            # Gumbel-max trick: argmax(Q/α + Gumbel noise) is a sample of softmax(Q/α).
            uniform = th.rand_like(q_values).clamp_(min=1e-20)
            return (q_values / self.ent_coef - th.log(-th.log(uniform))).argmax(dim=-1)
        assert self.sampler is not None
        features = self.extract_features(observation, self.sampler.features_extractor)
        batch_size = features.shape[0]
        if deterministic:
            noise = th.zeros(batch_size, self.action_dim, device=features.device)
        elif self.use_sde:
            noise = self.sampler.exploration_noise(batch_size, features.device)
        else:
            noise = th.randn(batch_size, self.action_dim, device=features.device)
        return th.tanh(self.sampler(features, noise))

    def reset_noise(self, n_envs: int = 1) -> None:
        """Draw the held exploration noise anew (``use_sde``; nothing to draw for discrete actions)."""
        if self.sampler is not None:
            self.sampler.reset_noise(n_envs)

    def set_training_mode(self, mode: bool) -> None:
        self.q_net.train(mode)
        if self.sampler is not None:
            self.sampler.train(mode)
        self.training = mode


MlpPolicy = SQLPolicy


class CnnPolicy(SQLPolicy):
    """:class:`SQLPolicy` with the Nature CNN features extractor (image observations); arguments as there."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        ent_coef: float = 1.0,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        use_sde: bool = False,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            ent_coef,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            n_critics,
            use_sde,
        )


class MultiInputPolicy(SQLPolicy):
    """:class:`SQLPolicy` for Dict observation spaces (combined extractor); arguments as there."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        ent_coef: float = 1.0,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        use_sde: bool = False,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            ent_coef,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            n_critics,
            use_sde,
        )

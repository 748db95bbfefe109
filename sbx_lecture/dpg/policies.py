"""Policies for DPG: a deterministic actor μθ(s) and one of two critics.

- ``critic_type="compatible"``: :class:`CompatibleCritic`, Q^w(s, a) = (a − μθ(s))ᵀ ∇θμθ(s)ᵀ w + V^v(s), with w a
  vector in the actor's parameter space and V^v a learned state-value baseline.
- ``critic_type="mlp"``: SB3's :class:`~stable_baselines3.common.policies.ContinuousCritic` with a single Q-network.

Target copies of actor and critic exist only when ``target_networks=True``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel, BasePolicy, ContinuousCritic
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
    get_actor_critic_arch,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.td3.policies import Actor
from torch import nn

from sbx_lecture.common.compatible_features import parameter_vector_norm
from sbx_lecture.common.optimizers import fast_optimizer_kwargs
from sbx_lecture.infra.validation import require_choice

CriticType = Literal["compatible", "mlp"]
CRITIC_TYPES: tuple[str, ...] = ("compatible", "mlp")


class CompatibleCritic(BaseModel):
    """The compatible critic of COPDAC: Q^w(s, a) = (a − μθ(s))ᵀ ∇θμθ(s)ᵀ w + V^v(s).

    It holds ``w`` (one zero-initialised tensor per actor parameter, in the actor's ``named_parameters`` order) and
    the baseline network V^v. The advantage part needs the actor; it is evaluated with
    :func:`sbx_lecture.common.compatible_features.parameter_jvp`.

    :param observation_space: observation space
    :param action_space: action space
    :param net_arch: hidden layers of the baseline V^v
    :param features_extractor: features extractor of the baseline
    :param features_dim: number of features it outputs
    :param actor_parameters: ``{name: tensor}`` of the actor, to give ``w`` the same names and shapes
    :param activation_fn: activation of the baseline's hidden layers
    :param normalize_images: whether image observations are divided by 255
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        actor_parameters: dict[str, th.Tensor],
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ):
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
        )
        self.parameter_names = list(actor_parameters.keys())
        self.w = nn.ParameterList([nn.Parameter(th.zeros_like(value.detach())) for value in actor_parameters.values()])
        self.value_net = nn.Sequential(*create_mlp(features_dim, 1, net_arch, activation_fn))

    def direction(self) -> dict[str, th.Tensor]:
        """w as ``{actor parameter name: tensor}``, ready for ``functional_call``."""
        return dict(zip(self.parameter_names, self.w, strict=True))

    def value(self, obs: PyTorchObs) -> th.Tensor:
        """The baseline V^v(s), shape ``(batch, 1)``."""
        return self.value_net(self.extract_features(obs, self.features_extractor))  # type: ignore[arg-type]

    def w_norm(self) -> th.Tensor:
        """‖w‖, logged during training."""
        return parameter_vector_norm(self.direction())

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        return self.value(obs)


class DPGPolicy(BasePolicy):
    """Deterministic actor μθ(s) (tanh-squashed, as in SB3's TD3) with a compatible or an MLP critic.

    :param observation_space: observation space
    :param action_space: action space (Box)
    :param lr_schedule: learning-rate schedule for the initial optimizer settings (DPG sets the actual rates)
    :param critic_type: ``"compatible"`` (COPDAC) or ``"mlp"`` (a neural Q(s, a))
    :param target_networks: also build slowly tracking target copies of actor and critic
    :param net_arch: hidden layers, a list shared by actor and critic or ``dict(pi=[...], qf=[...])``; for the
        compatible critic ``qf`` is the architecture of the baseline V^v. Default ``[64, 64]``
    :param activation_fn: activation function of the hidden layers
    :param features_extractor_class: features extractor (actor and critic each get their own)
    :param features_extractor_kwargs: keyword arguments for the features extractor
    :param normalize_images: whether image observations are divided by 255
    :param optimizer_class: optimizer for actor and critic (``th.optim.SGD`` gives the paper's plain updates)
    :param optimizer_kwargs: extra optimizer keyword arguments, without the learning rate (Adam and AdamW get
        ``fused=True``, SGD and RMSprop ``foreach=True`` unless either is given; see
        :func:`sbx_lecture.common.optimizers.fast_optimizer_kwargs`)
    """

    actor: Actor
    critic: CompatibleCritic | ContinuousCritic
    actor_target: Actor | None
    critic_target: CompatibleCritic | ContinuousCritic | None

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        critic_type: CriticType = "compatible",
        target_networks: bool = False,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        require_choice("critic_type", critic_type, CRITIC_TYPES)
        if net_arch is None:
            net_arch = [64, 64]
        self.optimizer_kwargs = fast_optimizer_kwargs(optimizer_class, self.optimizer_kwargs)
        self.critic_type = critic_type
        self.target_networks = target_networks
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.actor_arch, self.critic_arch = get_actor_critic_arch(net_arch)
        self._build(lr_schedule)
        self.mode_dependent = any(
            isinstance(module, (nn.Dropout, nn.modules.batchnorm._BatchNorm)) for module in self.modules()
        )

    def _build(self, lr_schedule: Schedule) -> None:
        self.actor = self.make_actor()
        self.critic = self.make_critic()
        self.actor_target = None
        self.critic_target = None
        if self.target_networks:
            self.actor_target = self.make_actor()
            self.critic_target = self.make_critic()
            self.actor_target.load_state_dict(self.actor.state_dict())
            self.critic_target.load_state_dict(self.critic.state_dict())
            for target in (self.actor_target, self.critic_target):
                target.set_training_mode(False)
                target.requires_grad_(False)
        self.actor.optimizer = self.optimizer_class(
            self.actor.parameters(),
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )
        self.critic.optimizer = self.optimizer_class(
            self.critic.parameters(),
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )

    def make_actor(self) -> Actor:
        features_extractor = self.make_features_extractor()
        return Actor(
            self.observation_space,
            self.action_space,  # type: ignore[arg-type]
            net_arch=self.actor_arch,
            features_extractor=features_extractor,
            features_dim=features_extractor.features_dim,
            activation_fn=self.activation_fn,
            normalize_images=self.normalize_images,
        ).to(self.device)

    def make_critic(self) -> CompatibleCritic | ContinuousCritic:
        features_extractor = self.make_features_extractor()
        if self.critic_type == "compatible":
            return CompatibleCritic(
                self.observation_space,
                self.action_space,  # type: ignore[arg-type]
                net_arch=self.critic_arch,
                features_extractor=features_extractor,
                features_dim=features_extractor.features_dim,
                actor_parameters=dict(self.actor.named_parameters()),
                activation_fn=self.activation_fn,
                normalize_images=self.normalize_images,
            ).to(self.device)
        return ContinuousCritic(
            self.observation_space,
            self.action_space,  # type: ignore[arg-type]
            net_arch=self.critic_arch,
            features_extractor=features_extractor,
            features_dim=features_extractor.features_dim,
            activation_fn=self.activation_fn,
            normalize_images=self.normalize_images,
            n_critics=1,
            share_features_extractor=False,
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                critic_type=self.critic_type,
                target_networks=self.target_networks,
                net_arch=self.net_arch,
                activation_fn=self.activation_fn,
                lr_schedule=self._dummy_schedule,
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
            )
        )
        return data

    def forward(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(observation, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        # The target policy is deterministic; exploration comes from the algorithm's action noise.
        return self.actor(observation)

    def set_training_mode(self, mode: bool) -> None:
        if not self.mode_dependent:  # no dropout or batch norm: nothing to switch, skip the module walk
            self.training = mode
            return
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        self.training = mode


MlpPolicy = DPGPolicy


class CnnPolicy(DPGPolicy):
    """:class:`DPGPolicy` with the Nature CNN features extractor (same arguments)."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        critic_type: CriticType = "compatible",
        target_networks: bool = False,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            critic_type,
            target_networks,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )


class MultiInputPolicy(DPGPolicy):
    """:class:`DPGPolicy` for Dict observation spaces: SB3's combined features extractor (same arguments)."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        critic_type: CriticType = "compatible",
        target_networks: bool = False,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            critic_type,
            target_networks,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )

"""Policies for KL-penalty PPO: SB3's actor-critic policies, as for PPO, plus one evaluation helper."""

from __future__ import annotations

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy


def evaluate_actions_and_distribution(
    policy: ActorCriticPolicy, obs: PyTorchObs, actions: th.Tensor
) -> tuple[th.Tensor, th.Tensor, th.Tensor | None, Distribution]:
    """Values, log-probabilities and entropy as ``ActorCriticPolicy.evaluate_actions``, plus the distribution π_θ.

    The KL penalty needs π_θ itself; returning it here avoids a second forward pass through the actor.
    SB3 policies reuse one ``Distribution`` object, so the result is valid until the policy's next forward pass.

    :param policy: an SB3 actor-critic policy
    :param obs: a batch of observations
    :param actions: the actions taken in those states
    :return: state values, ``log π_θ(a|s)``, the entropy (``None`` where it has no closed form) and π_θ(·|s)
    """
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        actor_features, critic_features = features
        latent_pi = policy.mlp_extractor.forward_actor(actor_features)
        latent_vf = policy.mlp_extractor.forward_critic(critic_features)
    distribution = policy._get_action_dist_from_latent(latent_pi)
    log_prob = distribution.log_prob(actions)
    values = policy.value_net(latent_vf)
    return values, log_prob, distribution.entropy(), distribution

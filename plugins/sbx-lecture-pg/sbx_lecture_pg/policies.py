"""Policies of the policy-gradient family: SB3's actor-critic networks, where the critic is the baseline b(s).

REINFORCE and ISPG use the actor π_θ(a|s) for the score ∇log π and, with ``baseline=True``, the value head as the
learned baseline b(s) of the lecture's "subtract baseline" slide. Without a baseline the value head is built (so
every policy of the family has the same parameters and checkpoints stay interchangeable) but never trained.
"""

from __future__ import annotations

from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

#: Multi-layer perceptron actor and baseline (SB3's :class:`~stable_baselines3.common.policies.ActorCriticPolicy`).
MlpPolicy = ActorCriticPolicy
#: Convolutional actor and baseline for image observations.
CnnPolicy = ActorCriticCnnPolicy

#: Actor and baseline for Dict observations (SB3's combined features extractor).
MultiInputPolicy = MultiInputActorCriticPolicy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy"]

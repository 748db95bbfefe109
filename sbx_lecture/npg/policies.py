"""Policies of the natural policy gradient family: SB3's actor-critic policies.

The actor (θ) and the critic are updated separately (natural-gradient step for the actor, regression for the
critic), exactly as sb3-contrib's TRPO does, so the standard actor-critic policies are used as they are.
"""

from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy"]

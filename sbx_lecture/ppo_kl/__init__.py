"""KL-penalty PPO (Schulman et al. 2017, section 4): the lecture's first PPO, with an adaptive or fixed β."""

from sbx_lecture.ppo_kl.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sbx_lecture.ppo_kl.ppo_kl import KLPPO, kl_penalized_policy_loss

__all__ = ["KLPPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "kl_penalized_policy_loss"]

"""The natural policy gradient family: NPG and TNPG on one shared natural-gradient core."""

from sbx_lecture.npg.natural_gradient_algorithm import NaturalGradientAlgorithm
from sbx_lecture.npg.npg import NPG
from sbx_lecture.npg.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sbx_lecture.npg.tnpg import TNPG

__all__ = ["NPG", "TNPG", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "NaturalGradientAlgorithm"]

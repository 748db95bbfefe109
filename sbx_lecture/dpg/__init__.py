"""DPG: the deterministic policy gradient actor-critic of Silver et al. (2014), on- and off-policy."""

from sbx_lecture.dpg.dpg import DPG
from sbx_lecture.dpg.policies import CnnPolicy, CompatibleCritic, DPGPolicy, MlpPolicy

__all__ = ["DPG", "CnnPolicy", "CompatibleCritic", "DPGPolicy", "MlpPolicy"]

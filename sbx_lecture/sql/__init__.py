"""Soft Q-learning (Haarnoja et al., 2017): energy-based policies for discrete and continuous actions."""

from sbx_lecture.sql.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SQLPolicy
from sbx_lecture.sql.sql import SQL

__all__ = ["SQL", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "SQLPolicy"]

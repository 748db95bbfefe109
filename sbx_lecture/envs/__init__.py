"""Small environments the lecture's experiments use (continuous bandit, multi-goal)."""

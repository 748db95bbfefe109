"""sbx-lecture: the algorithms of a lecture on advanced policy optimization, as Stable-Baselines3 plugins."""

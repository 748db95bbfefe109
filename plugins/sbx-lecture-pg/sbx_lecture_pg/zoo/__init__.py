"""Tuned RL Zoo hyperparameters of the plugin's algorithms, one ``<algo>.yml`` each (package data)."""

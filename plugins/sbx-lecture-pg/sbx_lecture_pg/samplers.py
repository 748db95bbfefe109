"""Optuna samplers for ``sbx-lecture zoo train --optimize``: ``(trial, n_actions, n_envs, additional_args) -> dict``."""

from __future__ import annotations

from typing import Any


def sample_reinforce_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """Learning rate, episodes per update, discount, baseline and entropy bonus of REINFORCE."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "n_episodes": trial.suggest_categorical("n_episodes", [1, 2, 4, 8, 16]),
        "gamma": trial.suggest_categorical("gamma", [0.95, 0.98, 0.99, 0.995, 0.999]),
        "baseline": trial.suggest_categorical("baseline", [True, False]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.01, log=True),
    }


def sample_ispg_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """REINFORCE's parameters plus the history size K, gradient steps and truncation ρ̄ of ISPG."""
    params = sample_reinforce_params(trial, n_actions, n_envs, additional_args)
    params["history_size"] = trial.suggest_categorical("history_size", [1, 2, 4, 8])
    params["gradient_steps"] = trial.suggest_categorical("gradient_steps", [1, 2, 4])
    params["rho_bar"] = trial.suggest_categorical("rho_bar", [1.0, 2.0, 5.0, 10.0, 100.0])
    return params

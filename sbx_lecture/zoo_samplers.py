"""Optuna hyperparameter samplers of the lecture's algorithms, for the RL Zoo's ``--optimize``.

Each ``sample_<algo>_params(trial, n_actions, n_envs, additional_args) -> dict`` has the signature of the zoo's
``HYPERPARAMS_SAMPLER`` entries (``rl_zoo3/hyperparams_opt.py``) and is registered through the plugin hook
(``zoo_sampler="sbx_lecture.zoo_samplers:sample_npg_params"``). As in the zoo, a sampler first suggests raw values
(``one_minus_gamma``, ``batch_size_pow``, ``net_arch`` as a size name, ...) and then converts them with the zoo's own
``convert_onpolicy_params`` / ``convert_offpolicy_params``; the conversion is its ``convert`` attribute, which
:mod:`sbx_lecture.zoo` uses as the zoo's ``HYPERPARAMS_CONVERTER`` to rebuild the hyperparameters of a stored trial
(``--trial-id``) from ``trial.params``.

The search spaces follow the zoo's for the nearest SB3 algorithm (TRPO for NPG/TNPG, PPO for KL-PPO, TD3 for DPG,
SAC for soft Q-learning) plus each algorithm's own knobs: the natural step size α of NPG, the KL bound δ of TNPG,
the initial penalty β and the KL target of KL-PPO, the critic type of DPG, the temperature α of soft Q-learning.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from gymnasium.spaces import Box
from rl_zoo3.hyperparams_opt import convert_offpolicy_params, convert_onpolicy_params

from sbx_lecture.factory import action_noise_from_zoo

#: Network sizes the zoo's off-policy converter knows (``small`` [64, 64], ``medium`` [256, 256], ``big`` [400, 300]).
OFF_POLICY_NETS = ("small", "medium", "big")


class ZooSampler:
    """A zoo sampler made of a ``suggest`` step (Optuna calls) and a ``convert`` step (raw values → hyperparameters).

    Calling it runs both, records the derived γ, ``n_steps`` and ``batch_size`` as the trial's user attributes (as the
    zoo's samplers do), then turns the zoo keys ``noise_type``/``noise_std`` of the converted values into an
    ``action_noise`` object for ``n_actions`` dimensions (the zoo does that itself for a stored trial).

    :param suggest: ``(trial, n_actions, n_envs, additional_args) -> raw values``, suggested on the trial (their keys
        are the trial's param names)
    :param convert: maps raw values (a trial's ``params``) to the algorithm's hyperparameters
    """

    def __init__(self, suggest: Callable[..., dict[str, Any]], convert: Callable[..., dict[str, Any]]) -> None:
        self.suggest = suggest
        self.convert = convert
        self.__doc__ = suggest.__doc__

    def __call__(self, trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
        raw = self.suggest(trial, n_actions, n_envs, additional_args)
        if "one_minus_gamma" in raw:  # the derived values, recorded as the zoo's samplers do
            trial.set_user_attr("gamma", 1.0 - raw["one_minus_gamma"])
        for key in ("n_steps", "batch_size"):
            if f"{key}_pow" in raw:
                trial.set_user_attr(key, 2 ** raw[f"{key}_pow"])
        # The zoo keys noise_type/noise_std become an SB3 action_noise of n_actions dimensions, as train builds it.
        hyperparams = self.convert(raw)
        zoo = {key: hyperparams.pop(key) for key in ("noise_type", "noise_std") if key in hyperparams}
        noise = action_noise_from_zoo(zoo, SimpleNamespace(action_space=Box(-1.0, 1.0, (n_actions,))))  # type: ignore[arg-type]
        return hyperparams if noise is None else {**hyperparams, "action_noise": noise}


def _suggest_on_policy(trial: Any) -> dict[str, Any]:
    """The rollout, discount and network choices shared by NPG, TNPG and KL-PPO."""
    return {
        "n_steps_pow": trial.suggest_int("n_steps_pow", 5, 12),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 3, 10),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 1e-4, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        # names the zoo's on-policy converter knows: tiny [64], small [64, 64], medium [256, 256], with separate
        # pi and vf layers; and the activations
        "net_arch": trial.suggest_categorical("net_arch", ["tiny", "small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }


def suggest_npg_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """NPG: θ ← θ + α F⁻¹∇J; α (``step_size``) and the conjugate-gradient solve of F⁻¹∇J, plus the critic."""
    raw = _suggest_on_policy(trial)
    raw["step_size"] = trial.suggest_float("step_size", 1e-3, 1.0, log=True)
    raw["cg_max_steps"] = trial.suggest_int("cg_max_steps", 10, 100, log=True)
    raw["cg_damping"] = trial.suggest_float("cg_damping", 1e-3, 0.5, log=True)
    raw["n_critic_updates"] = trial.suggest_int("n_critic_updates", 5, 30)
    return raw


def suggest_tnpg_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """TNPG: a few CG iterations, step length from the KL bound δ (``target_kl``), plus the critic."""
    raw = _suggest_on_policy(trial)
    raw["target_kl"] = trial.suggest_float("target_kl", 1e-3, 0.1, log=True)
    raw["cg_max_steps"] = trial.suggest_int("cg_max_steps", 3, 30)
    raw["cg_damping"] = trial.suggest_float("cg_damping", 1e-3, 0.5, log=True)
    raw["n_critic_updates"] = trial.suggest_int("n_critic_updates", 5, 30)
    return raw


def suggest_ppo_kl_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """KL-penalty PPO: the initial penalty β (``kl_coef``), the KL target d_targ, adaptive or fixed β, epochs."""
    raw = _suggest_on_policy(trial)
    raw["n_epochs"] = trial.suggest_categorical("n_epochs", [1, 5, 10, 20])
    raw["ent_coef"] = trial.suggest_float("ent_coef", 1e-8, 0.1, log=True)
    raw["max_grad_norm"] = trial.suggest_float("max_grad_norm", 0.3, 2.0)
    raw["kl_coef"] = trial.suggest_float("kl_coef", 0.1, 10.0, log=True)
    raw["target_kl"] = trial.suggest_float("target_kl", 1e-3, 0.05, log=True)
    raw["adaptive_kl"] = trial.suggest_categorical("adaptive_kl", [True, False])
    return raw


def suggest_dpg_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """DPG: actor and critic step sizes, compatible or MLP critic (natural step only with the compatible one),
    online updates or a replay buffer, SARSA or Q-learning target, Gaussian or Ornstein-Uhlenbeck exploration."""
    raw: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "critic_learning_rate": trial.suggest_float("critic_learning_rate", 1e-5, 1e-2, log=True),
        "critic": trial.suggest_categorical("critic", ["compatible", "mlp"]),
        "on_policy": trial.suggest_categorical("on_policy", [False, True]),
        "buffer_size": trial.suggest_categorical("buffer_size", [None, 10_000, 100_000, 1_000_000]),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 9),
        "train_freq": trial.suggest_int("train_freq", 1, 10),
        "tau": trial.suggest_float("tau", 1e-3, 0.08, log=True),
        "target_networks": trial.suggest_categorical("target_networks", [False, True]),
        "noise_type": trial.suggest_categorical("noise_type", ["normal", "ornstein-uhlenbeck"]),
        "noise_std": trial.suggest_float("noise_std", 0.05, 0.5),
        "net_arch": trial.suggest_categorical("net_arch", OFF_POLICY_NETS),
    }
    if raw["critic"] == "compatible":
        raw["natural"] = trial.suggest_categorical("natural", [False, True])
    return raw


def convert_dpg_params(raw: dict[str, Any]) -> dict[str, Any]:
    """Raw values of a DPG trial → hyperparameters (``noise_type``/``noise_std`` stay zoo keys): the zoo's off-policy
    conversion (one gradient step per collected step), but one pass over each rollout online (no buffer)."""
    hyperparams = convert_offpolicy_params(raw)
    if hyperparams.get("buffer_size") is None:
        hyperparams["gradient_steps"] = 1
    return hyperparams


def suggest_sql_params(trial: Any, n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """Soft Q-learning: the temperature α (``ent_coef``), the particles of the soft value (and, for continuous
    actions, of SVGD), replay and target-network settings."""
    raw: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 5, 9),
        "buffer_size": trial.suggest_categorical("buffer_size", [10_000, 100_000, 1_000_000]),
        "learning_starts": trial.suggest_categorical("learning_starts", [0, 100, 1_000, 10_000]),
        "train_freq": trial.suggest_int("train_freq", 1, 10),
        "tau": trial.suggest_float("tau", 1e-3, 1.0, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-3, 1.0, log=True),
        "twin_critics": trial.suggest_categorical("twin_critics", [False, True]),
        "net_arch": trial.suggest_categorical("net_arch", OFF_POLICY_NETS),
    }
    if n_actions > 0:  # continuous actions: particles for the soft value and for amortized SVGD
        raw["value_n_particles"] = trial.suggest_categorical("value_n_particles", [8, 16, 32])
        raw["svgd_n_particles"] = trial.suggest_categorical("svgd_n_particles", [8, 16, 32])
    return raw


sample_npg_params = ZooSampler(suggest_npg_params, convert_onpolicy_params)
sample_tnpg_params = ZooSampler(suggest_tnpg_params, convert_onpolicy_params)
sample_ppo_kl_params = ZooSampler(suggest_ppo_kl_params, convert_onpolicy_params)
sample_dpg_params = ZooSampler(suggest_dpg_params, convert_dpg_params)
#: Soft Q-learning: the zoo's off-policy conversion as it is (one gradient step per collected step).
sample_sql_params = ZooSampler(suggest_sql_params, convert_offpolicy_params)
